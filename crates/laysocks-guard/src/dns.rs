//! The DNS responder: answers programs that send DNS queries themselves (Go's pure
//! resolver, c-ares, `dig`, aria2c) instead of asking libc, so that their names go to
//! the proxy too and nothing leaks (issue 8, DESIGN §4, §6).
//!
//! The supervisor sends every datagram and TCP connection a guarded program aims at
//! port 53 here instead (the program still sees its own resolver's address as the
//! peer). Listeners: UDP and TCP on `127.0.0.1:0`, and on `[::1]:0` when the machine has
//! IPv6 loopback. Answers, with remote DNS on (a name table):
//!
//! | query | answer |
//! |---|---|
//! | A / AAAA of a name the proxy resolves | its placeholder from the shared table: the slot the preload layer would give (same [`normalise`], same [`NameMap::slot_for`]), so a `connect` to it sends the name to the proxy; a full table is SERVFAIL and one line |
//! | `localhost`, `*.localhost` (RFC 6761 §6.3) | 127.0.0.1 / ::1; other types empty |
//! | a name in `/etc/hosts` | its addresses of the asked family (none: an empty answer, never a query elsewhere, as the preload layer does) |
//! | a numeric name (`203.0.113.7`) | itself |
//! | a `direct_names` entry, this host's name | forwarded to the system resolver (first `nameserver` of resolv.conf(5)) from the supervisor, under the timeout; its answer relayed |
//! | PTR of a placeholder | the name it stands for (`dig -x`, logging tools); PTR of a hosts address from the file |
//! | anything else (MX, SRV, TXT, ANY, other PTRs…) | with `dns_server`: DNS over TCP through the proxy (RFC 1035 §4.2.2; SOCKS5 CONNECT with the run's credentials, under the connect timeout, as the preload layer does for `res_query`); without: REFUSED and one line |
//! | SVCB / HTTPS (RFC 9460) without `dns_server` | empty (NOERROR, no records): clients ask these beside A/AAAA and then use the addresses |
//!
//! With remote DNS off (`--dns local`, no table) the user asked for names to be
//! resolved on this machine, which the preload layer then leaves to libc: every query is
//! forwarded to the system resolver, as the program would have done itself.
//!
//! **TTL**: [`TTL`] = 60 s. A placeholder never changes within a run (slots are never
//! reused), so any TTL would be correct while the run lasts; a short one bounds how long
//! a cache that outlives the run (a program that persists its cache) keeps addresses that
//! then mean nothing, while still sparing repeated queries within a burst.
//!
//! **Bounded work**: a query is parsed in one bounded pass ([`dnsmsg`]); local answers
//! cost a table lookup or a read of `/etc/hosts` (cached, re-checked at most once a
//! second). Forwarded queries run on their own threads, at most [`MAX_FORWARDS`] at once
//! (beyond that: SERVFAIL at once), each under its deadline. TCP connections get a
//! thread each, at most [`MAX_TCP`], several queries per connection in order (RFC 7766
//! §6.2.1), closed after [`TCP_IDLE`] without a query. Nothing here can block the
//! notification threads: they only redirect sockets to these addresses.
//!
//! UDP answers larger than the client takes (512 octets, or its EDNS size, RFC 6891
//! §6.2.5) are cut to the header and question with TC set, so it asks again over TCP
//! (RFC 1035 §4.2.1, RFC 2181 §9).

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use laysocks_config::LayerConfig;
use laysocks_names::dnsmsg::{self, rtype, Bad, Query, Rcode, Record, CLASS_IN};
use laysocks_names::{normalise, policy, NameMap};
use laysocks_proto::{Credentials, TargetAddr};

use crate::{handshake, report};

/// Seconds our own answers may be cached (see the module docs).
pub const TTL: u32 = 60;
/// A TCP connection without a query for this long is closed (RFC 7766 §6.2.3 leaves
/// the value to the server; resolvers reuse a connection within a lookup's burst).
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once; more are closed at once.
pub const MAX_TCP: usize = 64;
/// Forwarded UDP queries in flight at once; more are answered SERVFAIL.
pub const MAX_FORWARDS: usize = 32;
/// The longest wait for the system resolver (stub resolvers give up after 5 s too).
const SYSTEM_TIMEOUT_MS: u64 = 5_000;
/// Distinct lines said at most (a program retrying one refused query says it once).
const MAX_LINES: usize = 256;

/// Where the responder listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Responder {
    pub udp4: SocketAddr,
    pub udp6: Option<SocketAddr>,
    pub tcp4: SocketAddr,
    pub tcp6: Option<SocketAddr>,
}

/// Starts the responder on its own threads and returns where it listens. `map` is the
/// run's name table with remote DNS on, `None` with `--dns local`.
pub fn start(
    map: Option<Arc<NameMap>>,
    cfg: &LayerConfig,
    credentials: Option<(Vec<u8>, Vec<u8>)>,
) -> io::Result<Responder> {
    start_with(map, cfg, credentials, Files::system())
}

/// What the responder reads from the machine (tests point these elsewhere).
struct Files {
    hosts: PathBuf,
    resolv_conf: PathBuf,
    /// Used instead of resolv.conf's first nameserver.
    system_resolver: Option<SocketAddr>,
    tcp_idle: Duration,
}

impl Files {
    fn system() -> Files {
        Files {
            hosts: "/etc/hosts".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            system_resolver: None,
            tcp_idle: TCP_IDLE,
        }
    }
}

struct Inner {
    map: Option<Arc<NameMap>>,
    cfg: LayerConfig,
    server: Option<TargetAddr>,
    direct: Vec<Vec<u8>>,
    own_name: Vec<u8>,
    credentials: Option<Credentials>,
    files: Files,
    hosts: Mutex<Option<HostsCache>>,
    forwards: AtomicUsize,
    tcp_conns: AtomicUsize,
    said: Mutex<HashSet<String>>,
    full_said: AtomicBool,
}

struct HostsCache {
    key: (u64, u64, i64, i64),
    checked: Instant,
    text: Arc<Vec<u8>>,
}

/// What to do with one message.
enum Step {
    Drop,
    Reply(Vec<u8>),
    Forward(Query, Upstream),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// The system resolver, directly (local names, `--dns local`).
    System,
    /// `dns_server`, over TCP through the proxy.
    Proxy,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

fn start_with(
    map: Option<Arc<NameMap>>,
    cfg: &LayerConfig,
    credentials: Option<(Vec<u8>, Vec<u8>)>,
    files: Files,
) -> io::Result<Responder> {
    let credentials = match credentials {
        Some((u, p)) => Some(Credentials::new(&u, &p).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("proxy credentials: {e}"),
            )
        })?),
        None => None,
    };
    let server = cfg.dns_server.as_deref().and_then(policy::parse_server);
    let own_name = std::fs::read("/proc/sys/kernel/hostname")
        .map(|b| b.trim_ascii().to_ascii_lowercase())
        .unwrap_or_default();
    let inner = Arc::new(Inner {
        map,
        cfg: cfg.clone(),
        server,
        direct: policy::direct_list(&cfg.direct_names),
        own_name,
        credentials,
        files,
        hosts: Mutex::new(None),
        forwards: AtomicUsize::new(0),
        tcp_conns: AtomicUsize::new(0),
        said: Mutex::new(HashSet::new()),
        full_said: AtomicBool::new(false),
    });
    let udp4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let tcp4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    // IPv6 loopback is optional: a machine (or namespace) may have none.
    let udp6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).ok();
    let tcp6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).ok();
    let r = Responder {
        udp4: udp4.local_addr()?,
        udp6: udp6.as_ref().and_then(|s| s.local_addr().ok()),
        tcp4: tcp4.local_addr()?,
        tcp6: tcp6.as_ref().and_then(|s| s.local_addr().ok()),
    };
    for (name, sock) in [("udp4", Some(udp4)), ("udp6", udp6)] {
        if let Some(sock) = sock {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("laysocks-dns-{name}"))
                .spawn(move || serve_udp(inner, Arc::new(sock)))?;
        }
    }
    for (name, l) in [("tcp4", Some(tcp4)), ("tcp6", tcp6)] {
        if let Some(l) = l {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("laysocks-dns-{name}"))
                .spawn(move || serve_tcp(inner, l))?;
        }
    }
    Ok(r)
}

// ---- transports ----

fn serve_udp(inner: Arc<Inner>, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // ICMP errors from a client that went away, ENOMEM…: not ours to fix.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let msg = &buf[..n];
        let step = guarded(|| inner.decide(msg)).unwrap_or(Step::Drop);
        match step {
            Step::Drop => {}
            Step::Reply(r) => {
                let _ = sock.send_to(&r, from);
            }
            Step::Forward(q, up) => {
                if inner.forwards.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDS {
                    inner.forwards.fetch_sub(1, Ordering::AcqRel);
                    inner.say(&format!(
                        "DNS query for {} answered SERVFAIL: {MAX_FORWARDS} forwarded queries already in flight",
                        shown(&q)
                    ));
                    let _ = sock.send_to(&dnsmsg::response(&q, Rcode::ServFail, &[], 0), from);
                    continue;
                }
                let (inner2, sock2, msg) = (inner.clone(), sock.clone(), msg.to_vec());
                let spawned = std::thread::Builder::new()
                    .name("laysocks-dns-fwd".into())
                    .spawn(move || {
                        let r = guarded(|| inner2.forward(&q, &msg, up, Transport::Udp))
                            .unwrap_or_else(|| dnsmsg::response(&q, Rcode::ServFail, &[], 0));
                        let _ = sock2.send_to(&dnsmsg::fit_udp(r, q.udp_limit()), from);
                        inner2.forwards.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    inner.forwards.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

fn serve_tcp(inner: Arc<Inner>, listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            // EMFILE and friends: wait a little rather than spin.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if inner.tcp_conns.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
            inner.tcp_conns.fetch_sub(1, Ordering::AcqRel);
            continue; // closed: the client retries or fails like with a busy server
        }
        let inner2 = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("laysocks-dns-conn".into())
            .spawn(move || {
                let _ = guarded(|| inner2.serve_conn(stream));
                inner2.tcp_conns.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            inner.tcp_conns.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Runs `f`, turning a panic into `None`: a bug must cost one answer, not the responder.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

impl Inner {
    /// One TCP connection: length-prefixed queries (RFC 1035 §4.2.2), answered in order.
    fn serve_conn(&self, mut s: TcpStream) {
        let _ = s.set_nodelay(true);
        let idle = self.files.tcp_idle;
        let _ = s.set_write_timeout(Some(idle));
        // Bounded: each turn waits at most `idle` for a query.
        for _ in 0..65_536 {
            let mut len = [0u8; 2];
            let deadline = Instant::now() + idle;
            if read_exact_by(&mut s, &mut len, deadline).is_err() {
                return;
            }
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if msg.is_empty() || read_exact_by(&mut s, &mut msg, deadline).is_err() {
                return;
            }
            let reply = match self.decide(&msg) {
                Step::Drop => continue,
                Step::Reply(r) => r,
                Step::Forward(q, up) => self.forward(&q, &msg, up, Transport::Tcp),
            };
            if write_framed(&mut s, &reply).is_err() {
                return;
            }
        }
    }

    // ---- policy ----

    fn decide(&self, msg: &[u8]) -> Step {
        let q = match dnsmsg::parse_query(msg) {
            Ok(q) => q,
            Err(Bad::Ignore) => return Step::Drop,
            Err(Bad::Reply(r)) => return Step::Reply(r),
        };
        match &self.map {
            None => Step::Forward(q, Upstream::System),
            Some(map) => self.decide_remote(q, map),
        }
    }

    fn decide_remote(&self, q: Query, map: &NameMap) -> Step {
        let answer = |rcode: Rcode, records: Vec<Record>, what: &str| {
            self.verbose(&q, what);
            Step::Reply(dnsmsg::response(&q, rcode, &records, TTL))
        };
        if q.qclass != CLASS_IN {
            return answer(Rcode::Refused, vec![], "REFUSED (not class IN)");
        }
        let text = q.name();
        let Some(norm) = text.as_deref().and_then(normalise) else {
            return match text {
                // The root (`dig . NS`): a question for real DNS.
                Some(t) if t.is_empty() => self.elsewhere(q),
                _ => answer(Rcode::NxDomain, vec![], "NXDOMAIN (not a host name)"),
            };
        };
        if let Some(ip) = std::str::from_utf8(&norm)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            let rec = match (q.qtype, ip) {
                (rtype::A, IpAddr::V4(a)) => vec![Record::A(a)],
                (rtype::AAAA, IpAddr::V6(a)) => vec![Record::Aaaa(a)],
                _ => vec![],
            };
            return answer(Rcode::NoError, rec, "a numeric name, as itself");
        }
        if policy::is_localhost(&norm) {
            let rec = match q.qtype {
                rtype::A => vec![Record::A(Ipv4Addr::LOCALHOST)],
                rtype::AAAA => vec![Record::Aaaa(Ipv6Addr::LOCALHOST)],
                _ => vec![],
            };
            return answer(Rcode::NoError, rec, "loopback (RFC 6761)");
        }
        if policy::is_direct(&norm, &self.direct)
            || (!self.own_name.is_empty() && norm == self.own_name)
        {
            return Step::Forward(q, Upstream::System);
        }
        if q.qtype == rtype::PTR {
            if let Some(ip) = dnsmsg::reverse_addr(&norm) {
                if map.is_placeholder(ip) {
                    return match map.slot_of(ip).and_then(|s| map.name(s)) {
                        Some(name) => answer(
                            Rcode::NoError,
                            vec![Record::Ptr(name)],
                            "a placeholder's name",
                        ),
                        None => answer(
                            Rcode::NxDomain,
                            vec![],
                            "NXDOMAIN (a placeholder never handed out)",
                        ),
                    };
                }
                if let Some(name) = self.with_hosts(|t| policy::hosts_name_of(t, ip)).flatten() {
                    return answer(Rcode::NoError, vec![Record::Ptr(name)], "from /etc/hosts");
                }
            }
            return self.elsewhere(q);
        }
        let hosts = self
            .with_hosts(|t| policy::hosts_addresses(t, &norm))
            .unwrap_or_default();
        if !hosts.is_empty() {
            let rec: Vec<Record> = hosts
                .iter()
                .filter_map(|ip| match (q.qtype, ip) {
                    (rtype::A, IpAddr::V4(a)) => Some(Record::A(*a)),
                    (rtype::AAAA, IpAddr::V6(a)) => Some(Record::Aaaa(*a)),
                    _ => None,
                })
                .collect();
            return match q.qtype {
                rtype::A | rtype::AAAA => answer(Rcode::NoError, rec, "from /etc/hosts"),
                _ => self.elsewhere(q),
            };
        }
        match q.qtype {
            rtype::A | rtype::AAAA => match map.slot_for(&norm) {
                Ok(slot) => {
                    let rec = if q.qtype == rtype::A {
                        Record::A(map.v4(slot))
                    } else {
                        Record::Aaaa(map.v6(slot))
                    };
                    answer(Rcode::NoError, vec![rec], "placeholder")
                }
                Err(full) => {
                    if !self.full_said.swap(true, Ordering::Relaxed) {
                        report::line(
                            &self.cfg,
                            &format!(
                                "cannot give {} a placeholder address: the name table is full ({} names); raise dns_names in the config",
                                String::from_utf8_lossy(&norm),
                                full.capacity
                            ),
                        );
                    }
                    answer(Rcode::ServFail, vec![], "SERVFAIL (name table full)")
                }
            },
            rtype::SVCB | rtype::HTTPS if self.server.is_none() => {
                answer(Rcode::NoError, vec![], "no records (use the addresses)")
            }
            _ => self.elsewhere(q),
        }
    }

    /// A question only a real DNS server can answer: `dns_server` through the proxy,
    /// or refused (never sent direct).
    fn elsewhere(&self, q: Query) -> Step {
        if self.server.is_some() {
            return Step::Forward(q, Upstream::Proxy);
        }
        self.say(&format!(
            "refused a DNS query for {} from a program's own resolver: without a DNS server laysocks answers only A/AAAA (placeholders) and placeholders' PTR; set dns_server (--dns-server HOST) to send other queries through the proxy",
            shown(&q)
        ));
        Step::Reply(dnsmsg::response(&q, Rcode::Refused, &[], TTL))
    }

    // ---- forwarding ----

    /// Sends `msg` (the client's query, as it came) upstream and returns the answer, or
    /// a SERVFAIL saying why in one line.
    fn forward(&self, q: &Query, msg: &[u8], up: Upstream, via: Transport) -> Vec<u8> {
        let r = match up {
            Upstream::Proxy => self.via_proxy(msg),
            Upstream::System => self.via_system(q, msg, via),
        };
        match r {
            Ok(resp) if dnsmsg::answers(q, &resp) => {
                self.verbose(
                    q,
                    match up {
                        Upstream::Proxy => "relayed from dns_server through the proxy",
                        Upstream::System => "relayed from the system resolver",
                    },
                );
                resp
            }
            Ok(_) => {
                self.say(&format!(
                    "DNS query for {}: the {} sent an answer to another question; answered SERVFAIL",
                    shown(q),
                    upstream_name(up)
                ));
                dnsmsg::response(q, Rcode::ServFail, &[], 0)
            }
            Err(why) => {
                self.say(&format!(
                    "DNS query for {} to the {} failed: {why}; answered SERVFAIL",
                    shown(q),
                    upstream_name(up)
                ));
                dnsmsg::response(q, Rcode::ServFail, &[], 0)
            }
        }
    }

    fn system_resolver(&self) -> SocketAddr {
        if let Some(a) = self.files.system_resolver {
            return a;
        }
        let text = read_small(&self.files.resolv_conf).unwrap_or_default();
        policy::first_nameserver(&text)
    }

    fn via_system(&self, q: &Query, msg: &[u8], via: Transport) -> Result<Vec<u8>, String> {
        let server = self.system_resolver();
        let timeout = Duration::from_millis(
            u64::from(self.cfg.connect_timeout_ms).clamp(100, SYSTEM_TIMEOUT_MS),
        );
        let deadline = Instant::now() + timeout;
        let io = |e: io::Error| format!("{server}: {e}");
        if via == Transport::Tcp {
            let mut s = TcpStream::connect_timeout(&server, timeout).map_err(io)?;
            return exchange_framed(&mut s, msg, deadline).map_err(io);
        }
        let any: SocketAddr = if server.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(any).map_err(io)?;
        s.connect(server).map_err(io)?;
        s.send(msg).map_err(io)?;
        let mut buf = vec![0u8; 65_535];
        // Datagrams that answer something else (late answers, spoofs) are skipped.
        for _ in 0..64 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s.set_read_timeout(Some(left)).map_err(io)?;
            match s.recv(&mut buf) {
                Ok(n) if dnsmsg::answers(q, &buf[..n]) => return Ok(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => break,
                Err(e) => return Err(io(e)),
            }
        }
        Err(format!(
            "{server}: no answer within {:.1} s",
            timeout.as_secs_f64()
        ))
    }

    fn via_proxy(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let Some(server) = self.server else {
            return Err("no dns_server".into());
        };
        let cfg = &self.cfg;
        let family = match cfg.proxy_addrs.first() {
            Some(a) if a.is_ipv6() => libc::AF_INET6,
            _ => libc::AF_INET,
        };
        let proxies: Vec<SocketAddr> = cfg
            .proxy_addrs
            .iter()
            .copied()
            .filter(|a| a.is_ipv6() == (family == libc::AF_INET6))
            .collect();
        let started = laysocks_sys::time::now_ms();
        let deadline_ms = started + u64::from(cfg.connect_timeout_ms);
        let deadline = Instant::now() + Duration::from_millis(u64::from(cfg.connect_timeout_ms));
        let sock = laysocks_sys::seccomp::socket(family, libc::SOCK_STREAM, 0)
            .map_err(|e| format!("cannot make a socket: {}", e.description()))?;
        handshake::connect_through(
            sock.as_fd(),
            &proxies,
            &server,
            self.credentials.as_ref(),
            started,
            deadline_ms,
        )
        .map_err(|f| {
            format!(
                "{server} through the proxy {}: {}",
                cfg.proxy_label,
                f.failure.reason()
            )
        })?;
        let mut s = TcpStream::from(sock);
        exchange_framed(&mut s, msg, deadline)
            .map_err(|e| format!("{server} through the proxy {}: {e}", cfg.proxy_label))
    }

    // ---- files and lines ----

    /// Runs `f` on `/etc/hosts` (re-read when it changed; checked at most once a second).
    fn with_hosts<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let text = {
            let mut c = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = c
                .as_ref()
                .is_some_and(|h| h.checked.elapsed() < Duration::from_secs(1));
            if !fresh {
                let Ok(md) = std::fs::metadata(&self.files.hosts) else {
                    *c = None;
                    return None;
                };
                let key = (md.ino(), md.len(), md.mtime(), md.mtime_nsec());
                match c.as_mut() {
                    Some(h) if h.key == key => h.checked = Instant::now(),
                    _ => {
                        *c = Some(HostsCache {
                            key,
                            checked: Instant::now(),
                            text: Arc::new(read_small(&self.files.hosts)?),
                        })
                    }
                }
            }
            c.as_ref()?.text.clone()
        };
        Some(f(&text))
    }

    /// One line on stderr (unless quiet), once per distinct text.
    fn say(&self, what: &str) {
        if self.cfg.quiet {
            return;
        }
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        if said.len() < MAX_LINES && said.insert(what.to_string()) {
            drop(said);
            report::line(&self.cfg, what);
        }
    }

    fn verbose(&self, q: &Query, what: &str) {
        if self.cfg.verbose && !self.cfg.quiet {
            report::verbose(&self.cfg, &format!("DNS {}: {what}", shown(q)));
        }
    }
}

fn upstream_name(up: Upstream) -> &'static str {
    match up {
        Upstream::Proxy => "DNS server (dns_server)",
        Upstream::System => "system resolver",
    }
}

/// `name (TYPE)` for messages.
fn shown(q: &Query) -> String {
    let name = match q.name() {
        Some(n) if n.is_empty() => ".".to_string(),
        Some(n) => String::from_utf8_lossy(&n).into_owned(),
        None => "an odd name".to_string(),
    };
    format!("{name} ({})", dnsmsg::type_name(q.qtype))
}

fn read_small(path: &std::path::Path) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut out = Vec::new();
    f.take(4 << 20).read_to_end(&mut out).ok()?;
    Some(out)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads exactly `buf.len()` bytes before `deadline` (EOF or the deadline: an error).
fn read_exact_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut got = 0;
    // Bounded: each turn reads at least one byte or ends.
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the answer was complete",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_framed(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len().min(65_535) as u16).to_be_bytes());
    framed.extend_from_slice(&msg[..msg.len().min(65_535)]);
    s.write_all(&framed)
}

/// One DNS-over-TCP exchange (RFC 1035 §4.2.2) before `deadline`.
fn exchange_framed(s: &mut TcpStream, msg: &[u8], deadline: Instant) -> io::Result<Vec<u8>> {
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    write_framed(s, msg)?;
    let mut len = [0u8; 2];
    read_exact_by(s, &mut len, deadline)?;
    let mut resp = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact_by(s, &mut resp, deadline)?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use laysocks_names::dnsmsg::build_query;

    fn pools() -> (laysocks_config::IpNet, laysocks_config::IpNet) {
        (
            "198.18.0.0/15".parse().unwrap(),
            "fd6c:6179:736f:636b::/64".parse().unwrap(),
        )
    }

    fn table(capacity: u32) -> Arc<NameMap> {
        let (p4, p6) = pools();
        Arc::new(laysocks_names::open_private(capacity, p4, p6).unwrap())
    }

    struct Setup {
        dir: PathBuf,
    }

    impl Setup {
        fn new(tag: &str) -> Setup {
            let dir =
                std::env::temp_dir().join(format!("laysocks-dns-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("hosts"),
                "127.0.0.1 localhost\n203.0.113.2 target.test\n2001:db8::9 six.test\n",
            )
            .unwrap();
            Setup { dir }
        }

        fn files(&self, system: Option<SocketAddr>) -> Files {
            Files {
                hosts: self.dir.join("hosts"),
                resolv_conf: self.dir.join("resolv.conf"),
                system_resolver: system,
                tcp_idle: Duration::from_millis(400),
            }
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn remote_cfg() -> LayerConfig {
        LayerConfig {
            proxy_addrs: vec!["127.0.0.1:9".parse().unwrap()],
            remote_dns: true,
            direct_names: vec![".corp.test".into()],
            connect_timeout_ms: 2_000,
            quiet: true,
            ..LayerConfig::default()
        }
    }

    fn ask_udp(to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
        let any: SocketAddr = if to.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
        .parse()
        .unwrap();
        let s = UdpSocket::bind(any).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(msg, to).unwrap();
        let mut buf = [0u8; 65_535];
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, to);
                Some(buf[..n].to_vec())
            }
            Err(_) => None,
        }
    }

    fn query(id: u16, name: &str, t: u16) -> Vec<u8> {
        build_query(id, name.as_bytes(), t, true).unwrap()
    }

    /// The records of a response's answer section: (type, rdata).
    fn records(resp: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut as_query = resp.to_vec();
        as_query[2] &= 0x7f;
        let q = dnsmsg::parse_query(&as_query).unwrap();
        let mut at = 12 + q.qname.len() + 4;
        let an = u16::from_be_bytes([resp[6], resp[7]]);
        (0..an)
            .map(|_| {
                assert_eq!(
                    &resp[at..at + 2],
                    &[0xc0, 12],
                    "owner points at the question"
                );
                let t = u16::from_be_bytes([resp[at + 2], resp[at + 3]]);
                let ttl = u32::from_be_bytes(resp[at + 6..at + 10].try_into().unwrap());
                assert_eq!(ttl, TTL);
                let len = usize::from(u16::from_be_bytes([resp[at + 10], resp[at + 11]]));
                let data = resp[at + 12..at + 12 + len].to_vec();
                at += 12 + len;
                (t, data)
            })
            .collect()
    }

    fn rcode(resp: &[u8]) -> u8 {
        resp[3] & 0x0f
    }

    #[test]
    fn udp_answers_placeholders_loopback_hosts_and_numbers() {
        let setup = Setup::new("udp");
        let map = table(64);
        let r = start_with(Some(map.clone()), &remote_cfg(), None, setup.files(None)).unwrap();
        assert!(r.udp4.ip().is_loopback() && r.tcp4.ip().is_loopback());

        let a = ask_udp(r.udp4, &query(1, "Remote.Test", rtype::A)).unwrap();
        assert_eq!(&a[..2], &[0, 1], "same id");
        assert_eq!(rcode(&a), 0);
        let slot = map.slot_for(b"remote.test").unwrap();
        assert_eq!(records(&a), [(rtype::A, map.v4(slot).octets().to_vec())]);
        // AAAA names the same slot; asking again gives the same address.
        let aaaa = ask_udp(r.udp4, &query(2, "remote.test.", rtype::AAAA)).unwrap();
        assert_eq!(
            records(&aaaa),
            [(rtype::AAAA, map.v6(slot).octets().to_vec())]
        );
        let again = ask_udp(r.udp4, &query(3, "remote.test", rtype::A)).unwrap();
        assert_eq!(records(&again), records(&a));

        let lo = ask_udp(r.udp4, &query(4, "db.localhost", rtype::A)).unwrap();
        assert_eq!(records(&lo), [(rtype::A, vec![127, 0, 0, 1])]);
        let lo6 = ask_udp(r.udp4, &query(5, "localhost", rtype::AAAA)).unwrap();
        assert_eq!(
            records(&lo6),
            [(rtype::AAAA, Ipv6Addr::LOCALHOST.octets().to_vec())]
        );

        let h = ask_udp(r.udp4, &query(6, "target.test", rtype::A)).unwrap();
        assert_eq!(records(&h), [(rtype::A, vec![203, 0, 113, 2])]);
        // The file has no IPv6 address for it: an empty answer, not a placeholder.
        let h6 = ask_udp(r.udp4, &query(7, "target.test", rtype::AAAA)).unwrap();
        assert_eq!((rcode(&h6), records(&h6)), (0, vec![]));
        let six = ask_udp(r.udp4, &query(8, "six.test", rtype::AAAA)).unwrap();
        assert_eq!(
            records(&six),
            [(
                rtype::AAAA,
                "2001:db8::9".parse::<Ipv6Addr>().unwrap().octets().to_vec()
            )]
        );

        let num = ask_udp(r.udp4, &query(9, "203.0.113.77", rtype::A)).unwrap();
        assert_eq!(records(&num), [(rtype::A, vec![203, 0, 113, 77])]);

        // PTR of the placeholder: the name.
        let rev = format!("{}.0.18.198.in-addr.arpa", slot + 1);
        let ptr = ask_udp(r.udp4, &query(10, &rev, rtype::PTR)).unwrap();
        let mut want = vec![6];
        want.extend_from_slice(b"remote");
        want.push(4);
        want.extend_from_slice(b"test");
        want.push(0);
        assert_eq!(records(&ptr), [(rtype::PTR, want)]);
        // A placeholder never handed out: NXDOMAIN.
        let none = ask_udp(r.udp4, &query(11, "200.0.18.198.in-addr.arpa", rtype::PTR)).unwrap();
        assert_eq!(rcode(&none), Rcode::NxDomain as u8);

        // Without a DNS server: other types are refused, SVCB/HTTPS are empty.
        let mx = ask_udp(r.udp4, &query(12, "remote.test", rtype::MX)).unwrap();
        assert_eq!(rcode(&mx), Rcode::Refused as u8);
        let https = ask_udp(r.udp4, &query(13, "remote.test", rtype::HTTPS)).unwrap();
        assert_eq!((rcode(&https), records(&https)), (0, vec![]));
        let other_ptr =
            ask_udp(r.udp4, &query(14, "9.113.0.203.in-addr.arpa", rtype::PTR)).unwrap();
        assert_eq!(rcode(&other_ptr), Rcode::Refused as u8);

        // Malformed: FORMERR with the id; a response or a runt: no answer at all.
        let mut two = query(15, "remote.test", rtype::A);
        two[5] = 2;
        let fe = ask_udp(r.udp4, &two).unwrap();
        assert_eq!(
            (&fe[..2], rcode(&fe)),
            (&[0u8, 15][..], Rcode::FormErr as u8)
        );
        assert_eq!(
            ask_udp_quick(r.udp4, &a),
            None,
            "responses are not answered"
        );
        assert_eq!(ask_udp_quick(r.udp4, &[1, 2, 3]), None);
        // It still answers after all that.
        assert!(ask_udp(r.udp4, &query(16, "remote.test", rtype::A)).is_some());

        // IPv6 loopback, when the machine has it.
        if let Some(u6) = r.udp6 {
            let a6 = ask_udp(u6, &query(17, "remote.test", rtype::AAAA)).unwrap();
            assert_eq!(
                records(&a6),
                [(rtype::AAAA, map.v6(slot).octets().to_vec())]
            );
        }
    }

    fn ask_udp_quick(to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.send_to(msg, to).unwrap();
        let mut buf = [0u8; 1024];
        s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn read_framed(s: &mut TcpStream) -> Vec<u8> {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut m).unwrap();
        m
    }

    #[test]
    fn tcp_serves_several_queries_per_connection_then_closes_when_idle() {
        let setup = Setup::new("tcp");
        let map = table(64);
        let r = start_with(Some(map.clone()), &remote_cfg(), None, setup.files(None)).unwrap();
        for addr in std::iter::once(r.tcp4).chain(r.tcp6) {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // Two queries in one write (pipelined), answered in order.
            let mut both = framed(&query(21, "one.test", rtype::A));
            both.extend_from_slice(&framed(&query(22, "two.test", rtype::AAAA)));
            s.write_all(&both).unwrap();
            let a = read_framed(&mut s);
            let b = read_framed(&mut s);
            assert_eq!(&a[..2], &[0, 21]);
            assert_eq!(&b[..2], &[0, 22]);
            let one = map.slot_for(b"one.test").unwrap();
            let two = map.slot_for(b"two.test").unwrap();
            assert_eq!(records(&a), [(rtype::A, map.v4(one).octets().to_vec())]);
            assert_eq!(records(&b), [(rtype::AAAA, map.v6(two).octets().to_vec())]);
            // A third, later, on the same connection.
            s.write_all(&framed(&query(23, "one.test", rtype::A)))
                .unwrap();
            assert_eq!(records(&read_framed(&mut s)), records(&a));
            // Then silence: the responder closes the connection after the idle timeout.
            let t = Instant::now();
            let mut byte = [0u8; 1];
            assert_eq!(s.read(&mut byte).unwrap(), 0, "closed");
            assert!(
                t.elapsed() >= Duration::from_millis(300),
                "{:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn a_full_table_is_servfail_and_old_names_still_work() {
        let setup = Setup::new("full");
        let map = table(1);
        let r = start_with(Some(map.clone()), &remote_cfg(), None, setup.files(None)).unwrap();
        let first = ask_udp(r.udp4, &query(31, "first.test", rtype::A)).unwrap();
        assert_eq!(records(&first), [(rtype::A, map.v4(0).octets().to_vec())]);
        let second = ask_udp(r.udp4, &query(32, "second.test", rtype::A)).unwrap();
        assert_eq!(rcode(&second), Rcode::ServFail as u8);
        let again = ask_udp(r.udp4, &query(33, "first.test", rtype::AAAA)).unwrap();
        assert_eq!(
            records(&again),
            [(rtype::AAAA, map.v6(0).octets().to_vec())]
        );
    }

    /// A stand-in for the system resolver on loopback: answers every query for
    /// `name` with `addr`, counting what it was asked.
    fn fake_system_resolver(addr: Ipv4Addr) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = s.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            for _ in 0..100 {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    return;
                };
                seen2.lock().unwrap().push(buf[..n].to_vec());
                let q = dnsmsg::parse_query(&buf[..n]).unwrap();
                let r = dnsmsg::response(&q, Rcode::NoError, &[Record::A(addr)], 77);
                let _ = s.send_to(&r, from);
            }
        });
        (at, seen)
    }

    #[test]
    fn direct_names_go_to_the_system_resolver_and_only_they() {
        let setup = Setup::new("direct");
        let (sys, seen) = fake_system_resolver(Ipv4Addr::new(192, 0, 2, 55));
        let map = table(64);
        let r = start_with(Some(map), &remote_cfg(), None, setup.files(Some(sys))).unwrap();
        let q = query(41, "git.Corp.test", rtype::A);
        let a = ask_udp(r.udp4, &q).unwrap();
        assert_eq!(&a[..2], &[0, 41]);
        // Relayed as the resolver sent it (its TTL, 77 s).
        assert_eq!(&a[a.len() - 4..], &[192, 0, 2, 55]);
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            [q],
            "the query as the program sent it"
        );
        // A remote name never reaches it.
        ask_udp(r.udp4, &query(42, "remote.test", rtype::A)).unwrap();
        ask_udp(r.udp4, &query(43, "remote.test", rtype::MX)).unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn without_remote_dns_everything_goes_to_the_system_resolver() {
        let setup = Setup::new("local");
        let (sys, seen) = fake_system_resolver(Ipv4Addr::new(192, 0, 2, 66));
        let cfg = LayerConfig {
            remote_dns: false,
            ..remote_cfg()
        };
        let r = start_with(None, &cfg, None, setup.files(Some(sys))).unwrap();
        let a = ask_udp(r.udp4, &query(51, "example.test", rtype::A)).unwrap();
        assert_eq!(&a[a.len() - 4..], &[192, 0, 2, 66]);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_system_resolver_not_answering_is_servfail_in_time() {
        let setup = Setup::new("silent");
        // A socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let cfg = LayerConfig {
            connect_timeout_ms: 300,
            ..remote_cfg()
        };
        let r = start_with(
            Some(table(8)),
            &cfg,
            None,
            setup.files(Some(silent.local_addr().unwrap())),
        )
        .unwrap();
        let t = Instant::now();
        let a = ask_udp(r.udp4, &query(61, "x.corp.test", rtype::A)).unwrap();
        assert_eq!(rcode(&a), Rcode::ServFail as u8);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    /// microsocks on loopback (Debian package `microsocks`), on a free port.
    struct Microsocks {
        child: std::process::Child,
        addr: SocketAddr,
    }

    impl Microsocks {
        /// With `auth`, microsocks takes only RFC 1929 clients with those credentials.
        fn start(auth: Option<(&str, &str)>) -> Microsocks {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = std::process::Command::new("microsocks");
            cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
            if let Some((u, p)) = auth {
                cmd.args(["-u", u, "-P", p]);
            }
            let child = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("microsocks not found: install the Debian package `microsocks`");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let t = Instant::now();
            while TcpStream::connect(addr).is_err() {
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "microsocks did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Microsocks { child, addr }
        }
    }

    impl Drop for Microsocks {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A DNS-over-TCP server on loopback (the `dns_server` behind the proxy): answers
    /// every query with NOERROR and `extra` octets of a TXT-like answer, so that its
    /// size can be chosen; returns its address and the peers it saw.
    fn tcp_dns_server(extra: usize) -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let peers2 = peers.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                let Ok((mut s, from)) = l.accept() else {
                    return;
                };
                peers2.lock().unwrap().push(from);
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let msg = read_framed(&mut s);
                let q = dnsmsg::parse_query(&msg).unwrap();
                let mut r = dnsmsg::response(&q, Rcode::NoError, &[], 300);
                // One TXT answer of `extra` octets of character-strings.
                r[7] = 1;
                r.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 1, 44]);
                let mut txt = Vec::new();
                while txt.len() < extra {
                    let k = (extra - txt.len()).min(255) - 1;
                    txt.push(k as u8);
                    txt.extend(std::iter::repeat_n(b'x', k));
                }
                r.extend_from_slice(&(txt.len() as u16).to_be_bytes());
                r.extend_from_slice(&txt);
                let _ = s.write_all(&framed(&r));
            }
        });
        (at, peers)
    }

    #[test]
    fn other_types_go_to_dns_server_through_a_real_socks_server() {
        let setup = Setup::new("proxy");
        // With credentials: microsocks then serves only RFC 1929 clients that know
        // them, so an answer proves the query went through it, authenticated.
        let proxy = Microsocks::start(Some(("dnsuser", "dnspass")));
        let (dns, peers) = tcp_dns_server(100);
        let cfg = LayerConfig {
            proxy_addrs: vec![proxy.addr],
            proxy_label: format!("socks5://dnsuser@{}", proxy.addr),
            dns_server: Some(dns.to_string()),
            ..remote_cfg()
        };
        let map = table(8);
        let creds = Some((b"dnsuser".to_vec(), b"dnspass".to_vec()));
        let r = start_with(Some(map.clone()), &cfg, creds, setup.files(None)).unwrap();
        let q = query(71, "remote.test", rtype::TXT);
        let a = ask_udp(r.udp4, &q).unwrap();
        assert_eq!((&a[..2], rcode(&a)), (&[0u8, 71][..], 0));
        assert_eq!(&a[6..8], &[0, 1], "the server's answer (TTL 300), relayed");
        assert_eq!(peers.lock().unwrap().len(), 1);
        // A and AAAA still get placeholders; PTR of a placeholder its name.
        let ph = ask_udp(r.udp4, &query(72, "remote.test", rtype::A)).unwrap();
        let slot = map.slot_for(b"remote.test").unwrap();
        assert_eq!(records(&ph), [(rtype::A, map.v4(slot).octets().to_vec())]);
        assert_eq!(peers.lock().unwrap().len(), 1);
        // Over TCP too.
        let mut s = TcpStream::connect(r.tcp4).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&framed(&query(73, "remote.test", rtype::MX)))
            .unwrap();
        let m = read_framed(&mut s);
        assert_eq!((&m[..2], rcode(&m)), (&[0u8, 73][..], 0));
        assert_eq!(peers.lock().unwrap().len(), 2);
        // Without the proxy, nothing reaches the server: SERVFAIL.
        drop(proxy);
        let gone = ask_udp(r.udp4, &query(74, "remote.test", rtype::SRV)).unwrap();
        assert_eq!(rcode(&gone), Rcode::ServFail as u8);
        assert_eq!(peers.lock().unwrap().len(), 2);
    }

    #[test]
    fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let setup = Setup::new("big");
        let proxy = Microsocks::start(None);
        let (dns, _) = tcp_dns_server(1500);
        let cfg = LayerConfig {
            proxy_addrs: vec![proxy.addr],
            dns_server: Some(dns.to_string()),
            ..remote_cfg()
        };
        let r = start_with(Some(table(8)), &cfg, None, setup.files(None)).unwrap();
        let q = query(81, "big.test", rtype::TXT);
        let a = ask_udp(r.udp4, &q).unwrap();
        assert!(a.len() <= 512, "{}", a.len());
        assert_eq!(a[2] & 0x02, 0x02, "TC: ask again over TCP");
        let mut s = TcpStream::connect(r.tcp4).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&framed(&q)).unwrap();
        let whole = read_framed(&mut s);
        assert!(whole.len() > 1500);
        assert_eq!(whole[2] & 0x02, 0);
    }

    #[test]
    fn an_unreachable_proxy_is_servfail_in_time() {
        let setup = Setup::new("noproxy");
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let cfg = LayerConfig {
            proxy_addrs: vec![closed],
            dns_server: Some("203.0.113.53".into()),
            connect_timeout_ms: 1_000,
            ..remote_cfg()
        };
        let r = start_with(Some(table(8)), &cfg, None, setup.files(None)).unwrap();
        let t = Instant::now();
        let a = ask_udp(r.udp4, &query(91, "remote.test", rtype::SRV)).unwrap();
        assert_eq!(rcode(&a), Rcode::ServFail as u8);
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
