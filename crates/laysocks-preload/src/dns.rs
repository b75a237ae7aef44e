//! Remote DNS policy: which names the proxy resolves, which stay local (DESIGN §4).
//!
//! A name goes to the proxy unless it is local:
//! - a numeric address (glibc's own reading of it: `127.1`, `fe80::1%eth0`);
//! - `localhost` and `*.localhost` (RFC 6761 §6.3);
//! - a name in `/etc/hosts` (cached per thread, checked for changes at most once a
//!   second);
//! - this machine's own host name (`gethostname`), which only the system can answer;
//! - a name in the configured `direct_names` list, or under one of its entries.
//!
//! The rules themselves (hosts(5) parsing, `direct_names` matching, the `dns_server`
//! forms) are in `laysocks_names::policy`, shared with the guard's DNS responder.
//!
//! Local names are answered by the system resolver, unchanged, with one exception that
//! prevents a leak: a name `/etc/hosts` has only for the other family. glibc would fall
//! through to DNS for the missing family (`files` says NOTFOUND, then `dns` asks), so
//! the layer answers "no such name" itself.

use std::cell::RefCell;
use std::ffi::CStr;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use laysocks_config::LayerConfig;
use laysocks_proto::TargetAddr;
use laysocks_sys::{resolver, shm, stderr};

use crate::namemap::{self, policy, NameMap};

/// The remote-DNS state of the process (present when remote DNS is on).
pub struct Dns {
    pub map: NameMap,
    /// Where `res_*` queries and redirected DNS-over-TCP connections go (through the proxy).
    pub server: Option<TargetAddr>,
    direct_names: Vec<Vec<u8>>,
    full_reported: AtomicBool,
}

/// What to do with a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Class {
    /// The system resolver answers (no DNS query for names it finds in files).
    Local,
    /// In `/etc/hosts`, with addresses of these families only.
    Hosts { v4: bool, v6: bool },
    /// The proxy resolves it; this is the normalised name.
    Remote(Vec<u8>),
    /// Not something any resolver would look up.
    Invalid,
}

impl Dns {
    /// Sets up remote DNS from the config: maps the shared table (or a private one if
    /// the file cannot be used, with one line saying so).
    pub fn from_config(cfg: &LayerConfig) -> Option<Dns> {
        if !cfg.remote_dns {
            return None;
        }
        let shared = cfg.names_file.as_deref().map(|path| {
            namemap::open_shared(path, cfg.names_capacity, cfg.pool4, cfg.pool6)
                .map_err(|e| (path, e))
        });
        let map = match shared {
            Some(Ok(m)) => m,
            other => {
                if let (Some(Err((path, e))), false) = (&other, cfg.quiet) {
                    stderr::write_line(&format!(
                        "laysocks: cannot use the shared name table {path} ({e}); names resolved here are not known to programs this one starts"
                    ));
                }
                namemap::open_private(cfg.names_capacity, cfg.pool4, cfg.pool6).ok()?
            }
        };
        let server = cfg.dns_server.as_deref().and_then(policy::parse_server);
        if cfg.dns_server.is_some() && server.is_none() && !cfg.quiet {
            stderr::write_line(&format!(
                "laysocks: bad dns_server {:?}; DNS queries of the res_* kind will be refused",
                cfg.dns_server.as_deref().unwrap_or("")
            ));
        }
        Some(Dns {
            map,
            server,
            direct_names: policy::direct_list(&cfg.direct_names),
            full_reported: AtomicBool::new(false),
        })
    }

    /// Where `name` is resolved.
    pub fn classify(&self, name: &CStr) -> Class {
        let raw = name.to_bytes();
        if resolver::is_numeric_host(name) {
            return Class::Local;
        }
        let Some(norm) = namemap::normalise(raw) else {
            return Class::Invalid;
        };
        if policy::is_localhost(&norm) || policy::is_direct(&norm, &self.direct_names) {
            return Class::Local;
        }
        if let Some((v4, v6)) = hosts_families(&norm) {
            return Class::Hosts { v4, v6 };
        }
        if is_own_hostname(&norm) {
            return Class::Local;
        }
        Class::Remote(norm)
    }

    /// The slot for a remote name; a full table is reported once (unless quiet).
    pub fn slot_for(&self, norm: &[u8], quiet: bool) -> Option<u32> {
        match self.map.slot_for(norm) {
            Ok(s) => Some(s),
            Err(full) => {
                if !quiet && !self.full_reported.swap(true, Ordering::Relaxed) {
                    stderr::write_line(&format!(
                        "laysocks: cannot give {} a placeholder address: the name table is full ({} names); raise dns_names in the config",
                        String::from_utf8_lossy(norm),
                        full.capacity
                    ));
                }
                None
            }
        }
    }

    /// Whether a reverse lookup of `ip` may go to the system resolver: it is in
    /// `/etc/hosts` (answered from the file, no PTR query).
    pub fn reverse_is_local(&self, ip: IpAddr) -> bool {
        with_hosts(|text| policy::hosts_has_address(text, ip)).unwrap_or(false)
    }
}

fn is_own_hostname(norm: &[u8]) -> bool {
    thread_local! {
        // The host name and when it was read: looked up at most once a second per thread.
        static OWN: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
    }
    let now = laysocks_sys::time::now_ms();
    OWN.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.0 == 0 || now.saturating_sub(c.0) >= FRESH_MS {
            let mut buf = [0u8; 256];
            // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
            let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
            let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            *c = (
                now.max(1),
                if ok { buf[..len].to_vec() } else { Vec::new() },
            );
        }
        !c.1.is_empty() && c.1.eq_ignore_ascii_case(norm)
    })
    .unwrap_or(false)
}

/// How long a thread trusts what it read of `/etc/hosts` and the host name before
/// checking again (glibc reads the file on every lookup; a second is as good for a
/// person editing it, and saves two system calls per lookup).
const FRESH_MS: u64 = 1000;

// ---- /etc/hosts ----

/// A thread's copy of `/etc/hosts`, with the identity it was read under and when that
/// was last checked.
struct HostsCache {
    key: (u64, i64, i64, i64),
    checked_ms: u64,
    text: Vec<u8>,
}

thread_local! {
    static HOSTS: RefCell<Option<HostsCache>> = const { RefCell::new(None) };
}

const HOSTS_PATH: &CStr = c"/etc/hosts";

fn with_hosts<R>(f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let now = laysocks_sys::time::now_ms();
    HOSTS
        .try_with(|cell| {
            let mut c = cell.borrow_mut();
            let fresh = c
                .as_ref()
                .is_some_and(|h| now.saturating_sub(h.checked_ms) < FRESH_MS);
            if !fresh {
                // SAFETY: stat into a zeroed buffer with a NUL-terminated path.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: as above.
                if unsafe { libc::stat(HOSTS_PATH.as_ptr(), &mut st) } != 0 {
                    *c = None;
                    return None;
                }
                let key = (st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec);
                match c.as_mut() {
                    Some(h) if h.key == key => h.checked_ms = now,
                    _ => {
                        let text = shm::read_file(HOSTS_PATH, 4 << 20)?;
                        *c = Some(HostsCache {
                            key,
                            checked_ms: now,
                            text,
                        });
                    }
                }
            }
            c.as_ref().map(|h| f(&h.text))
        })
        .ok()
        .flatten()
}

/// The families `/etc/hosts` has addresses of for `norm`, if it has the name at all.
fn hosts_families(norm: &[u8]) -> Option<(bool, bool)> {
    with_hosts(|text| policy::hosts_families(text, norm)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cfg = LayerConfig {
            remote_dns: true,
            direct_names: vec![".corp.test".into(), "Intra".into()],
            names_capacity: 16,
            ..LayerConfig::default()
        };
        let d = Dns::from_config(&cfg).unwrap();
        assert_eq!(d.classify(c"203.0.113.2"), Class::Local);
        assert_eq!(d.classify(c"::1"), Class::Local);
        assert_eq!(d.classify(c"localhost"), Class::Local);
        assert_eq!(d.classify(c"db.localhost"), Class::Local);
        assert_eq!(d.classify(c"corp.test"), Class::Local);
        assert_eq!(d.classify(c"a.b.Corp.Test"), Class::Local);
        assert_eq!(d.classify(c"intra"), Class::Local);
        assert_eq!(
            d.classify(c"notcorp.test"),
            Class::Remote(b"notcorp.test".to_vec())
        );
        assert_eq!(
            d.classify(c"Remote.Test."),
            Class::Remote(b"remote.test".to_vec())
        );
        assert_eq!(d.classify(c"bad name"), Class::Invalid);
        assert_eq!(d.classify(c""), Class::Invalid);
    }
}
