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

use crate::namemap::{self, NameMap};

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
        let capacity = NameMap::usable_capacity(cfg.names_capacity, &cfg.pool4, &cfg.pool6);
        let bytes = NameMap::bytes_for(capacity);
        let shared = cfg.names_file.as_deref().map(|path| {
            std::ffi::CString::new(path)
                .map_err(|_| "bad path".to_string())
                .and_then(|c| shm::map_file(&c, bytes))
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
                shm::map_anonymous(bytes).ok()?
            }
        };
        let server = cfg.dns_server.as_deref().and_then(parse_server);
        if cfg.dns_server.is_some() && server.is_none() && !cfg.quiet {
            stderr::write_line(&format!(
                "laysocks: bad dns_server {:?}; DNS queries of the res_* kind will be refused",
                cfg.dns_server.as_deref().unwrap_or("")
            ));
        }
        Some(Dns {
            map: NameMap::new(map, capacity, cfg.pool4, cfg.pool6),
            server,
            direct_names: cfg
                .direct_names
                .iter()
                .map(|n| n.trim_start_matches('.').to_ascii_lowercase().into_bytes())
                .filter(|n| !n.is_empty())
                .collect(),
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
        if norm == b"localhost" || norm.ends_with(b".localhost") {
            return Class::Local;
        }
        if self
            .direct_names
            .iter()
            .any(|d| norm == *d || (norm.ends_with(d) && norm[norm.len() - d.len() - 1] == b'.'))
        {
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
        with_hosts(|text| hosts_has_address(text, ip)).unwrap_or(false)
    }
}

/// `host[:port]` or `[v6]:port`; port 53 when absent.
fn parse_server(s: &str) -> Option<TargetAddr> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.into());
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Some(std::net::SocketAddr::new(ip, 53).into());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (s, 53),
    };
    let name = laysocks_proto::DomainName::new(host.as_bytes()).ok()?;
    Some(TargetAddr {
        host: laysocks_proto::Host::Domain(name),
        port,
    })
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
    with_hosts(|text| hosts_lookup(text, norm)).flatten()
}

fn hosts_lines(text: &[u8]) -> impl Iterator<Item = (IpAddr, Vec<&[u8]>)> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.split(|&b| b == b'#').next().unwrap_or(b"");
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let addr = std::str::from_utf8(fields.next()?).ok()?;
        // glibc accepts a %scope on IPv6 entries; the address is what matters here.
        let addr = addr.split('%').next()?.parse::<IpAddr>().ok()?;
        Some((addr, fields.collect()))
    })
}

fn hosts_lookup(text: &[u8], norm: &[u8]) -> Option<(bool, bool)> {
    let mut found = None;
    for (addr, names) in hosts_lines(text) {
        if names.iter().any(|n| {
            let n = n.strip_suffix(b".").unwrap_or(n);
            n.eq_ignore_ascii_case(norm)
        }) {
            let (v4, v6) = found.get_or_insert((false, false));
            match addr {
                IpAddr::V4(_) => *v4 = true,
                IpAddr::V6(_) => *v6 = true,
            }
        }
    }
    found
}

fn hosts_has_address(text: &[u8], ip: IpAddr) -> bool {
    let ip = laysocks_config::net::canonical(ip);
    hosts_lines(text)
        .any(|(a, names)| !names.is_empty() && laysocks_config::net::canonical(a) == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &[u8] = b"127.0.0.1\tlocalhost\n::1 localhost ip6-localhost # comment\n\
        203.0.113.2 target.test Target-Alias.test.\n# 203.0.113.9 commented.test\n\
        2001:db8:2::2 target6.test\nnot-an-address junk.test\n";

    #[test]
    fn hosts_file_names_and_families() {
        assert_eq!(hosts_lookup(HOSTS, b"localhost"), Some((true, true)));
        assert_eq!(hosts_lookup(HOSTS, b"target.test"), Some((true, false)));
        assert_eq!(
            hosts_lookup(HOSTS, b"target-alias.test"),
            Some((true, false))
        );
        assert_eq!(hosts_lookup(HOSTS, b"target6.test"), Some((false, true)));
        assert_eq!(hosts_lookup(HOSTS, b"commented.test"), None);
        assert_eq!(hosts_lookup(HOSTS, b"junk.test"), None);
        assert!(hosts_has_address(HOSTS, "203.0.113.2".parse().unwrap()));
        assert!(hosts_has_address(
            HOSTS,
            "::ffff:203.0.113.2".parse().unwrap()
        ));
        assert!(!hosts_has_address(HOSTS, "203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn dns_server_forms() {
        assert_eq!(
            parse_server("203.0.113.2:53").unwrap().to_string(),
            "203.0.113.2:53"
        );
        assert_eq!(
            parse_server("203.0.113.2").unwrap().to_string(),
            "203.0.113.2:53"
        );
        assert_eq!(
            parse_server("[2001:db8::1]:5353").unwrap().to_string(),
            "[2001:db8::1]:5353"
        );
        assert_eq!(parse_server("dns.test").unwrap().to_string(), "dns.test:53");
        assert_eq!(
            parse_server("dns.test:54").unwrap().to_string(),
            "dns.test:54"
        );
        assert!(parse_server("dns.test:x").is_none());
    }

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
