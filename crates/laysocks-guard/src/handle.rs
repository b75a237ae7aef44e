//! Answering one trapped call: `connect`, `getpeername`, `sendto`, `sendmsg`, `sendmmsg`.
//!
//! The decision is made by the *socket* (`SO_DOMAIN`/`SO_TYPE`/`SO_PROTOCOL` of our copy,
//! taken with `pidfd_getfd`), not by the address: a socket's family and type never
//! change, while the address is in memory the program can rewrite after we looked.
//!
//! - Not `AF_INET`/`AF_INET6` (`AF_UNIX`, netlink…): `CONTINUE`. The kernel then runs the
//!   call itself; `AF_UNIX` paths must be resolved in the program's mount namespace and
//!   working directory, which only the kernel can do for it.
//! - Inet sockets: never `CONTINUE` a `connect` or a datagram with a destination. The
//!   supervisor makes the call on its copy with the address it read (the kernel's own
//!   checks apply to that call, and no time-of-check/time-of-use race exists), or
//!   refuses it. The one `CONTINUE` left is a TCP `sendto`/`sendmsg` without
//!   `MSG_FASTOPEN` (a register, not memory): TCP ignores the address there and never
//!   opens a connection.
//!
//! Routing follows the preload layer (DESIGN §3, §4): loopback, the unspecified
//! address, the proxy itself and exclusions go direct (`LayerConfig::is_direct`); a
//! remote-DNS placeholder goes to the proxy by its name; DNS (port 53) goes to the local
//! responder, which answers from the shared name table; everything else TCP goes
//! through the proxy, and other UDP is refused with a line (not carried yet) — except
//! datagrams to the proxy's UDP relay when it has addresses other than the configured
//! ones, which the guard learns by asking the proxy (`relay`).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use laysocks_config::net::canonical;
use laysocks_proto::{DomainName, Host, TargetAddr};
use laysocks_sys::{seccomp as sys, time, Errno};

use crate::caller::{Answer, Caller};
use crate::handshake;
use crate::relay;
use crate::state::Entry;
use crate::{report, Shared};

/// `sizeof(struct sockaddr_storage)`: the kernel refuses longer addresses (`EINVAL`).
const MAX_ADDR: u32 = 128;
/// The largest datagram read from a program (a UDP datagram is at most 65,535 bytes).
const MAX_DATAGRAM: usize = 65_536;
/// The most ancillary data read per message.
const MAX_CONTROL: usize = 4096;
/// `UIO_MAXIOV`: the kernel's limit on iovecs per message and messages per `sendmmsg`.
const UIO_MAXIOV: usize = 1024;
/// `sizeof(struct msghdr)` / `sizeof(struct mmsghdr)` on 64-bit Linux.
const MSGHDR: usize = 56;
const MMSGHDR: usize = 64;
/// TCP states (`TCP_INFO` `tcpi_state`, include/net/tcp_states.h).
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_CLOSE: u8 = 7;
/// The DNS port (RFC 1035 §4.2).
const DNS_PORT: u16 = 53;

/// Answers one notification.
pub fn handle(sh: &Shared, c: &Caller<'_>, nr: i64, args: [u64; 6]) -> Answer {
    let r = match nr {
        libc::SYS_connect => on_connect(sh, c, args),
        libc::SYS_getpeername => on_getpeername(sh, c, args),
        libc::SYS_sendto => on_sendto(sh, c, args),
        libc::SYS_recvfrom => on_recvfrom(sh, c, args),
        libc::SYS_sendmsg => on_sendmsg(sh, c, args),
        libc::SYS_sendmmsg => on_sendmmsg(sh, c, args),
        _ => Ok(Answer::Error(libc::ENOSYS)),
    };
    match r {
        Ok(a) | Err(a) => a,
    }
}

/// Our copy of the program's socket and what it is.
struct Sock {
    fd: OwnedFd,
    domain: i32,
    ty: i32,
    proto: i32,
}

impl Sock {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn inet(&self) -> bool {
        self.domain == libc::AF_INET || self.domain == libc::AF_INET6
    }
    fn cookie(&self) -> u64 {
        sys::socket_cookie(self.fd()).unwrap_or(0)
    }
    fn v6only(&self) -> bool {
        self.domain == libc::AF_INET6
            && sys::getsockopt_int(self.fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
                .is_ok_and(|v| v != 0)
    }
}

fn socket_of(sh: &Shared, c: &Caller<'_>, fd: i32, what: &str) -> Result<Sock, Answer> {
    let copy = match c.take_fd(fd) {
        Ok(f) => f,
        Err(Answer::Error(libc::EPERM)) => return Err(not_inspectable(sh, c, what)),
        Err(a) => return Err(a),
    };
    let domain = sys::getsockopt_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let ty = sys::getsockopt_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE)?;
    let proto = sys::getsockopt_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    Ok(Sock {
        fd: copy,
        domain,
        ty,
        proto,
    })
}

/// A program we cannot read (it made itself non-dumpable, or is setuid): refused, never
/// let through.
fn not_inspectable(sh: &Shared, c: &Caller<'_>, what: &str) -> Answer {
    report::line(
        &sh.cfg.layer,
        &format!(
            "pid {} ({}) cannot be inspected (it made itself non-dumpable); its {what} is refused — run it with --no-guard if it must connect",
            c.pid(),
            c.comm()
        ),
    );
    Answer::Error(libc::EACCES)
}

fn read_mem(
    sh: &Shared,
    c: &Caller<'_>,
    addr: u64,
    len: usize,
    what: &str,
) -> Result<Vec<u8>, Answer> {
    match c.read(addr, len) {
        Err(Answer::Error(libc::EPERM)) => Err(not_inspectable(sh, c, what)),
        r => r,
    }
}

fn family_of(bytes: &[u8]) -> Option<i32> {
    (bytes.len() >= 2).then(|| i32::from(u16::from_ne_bytes([bytes[0], bytes[1]])))
}

/// The program's sockaddr as an address, as the kernel would read it: `AF_INET6`
/// needs only the RFC 2133 length (24 bytes, no scope id). `Err` is the errno the
/// kernel gives an address it cannot use.
fn parse_addr(bytes: &[u8]) -> Result<SocketAddr, Answer> {
    match family_of(bytes) {
        Some(libc::AF_INET) if bytes.len() >= 16 => {}
        Some(libc::AF_INET6) if bytes.len() >= 24 => {}
        Some(libc::AF_INET | libc::AF_INET6) | None => return Err(Answer::Error(libc::EINVAL)),
        Some(_) => return Err(Answer::Error(libc::EAFNOSUPPORT)),
    }
    let mut padded = bytes.to_vec();
    if padded.len() < 28 {
        padded.resize(28, 0);
    }
    sys::parse_sockaddr(&padded).ok_or(Answer::Error(libc::EINVAL))
}

fn result_of(r: Result<(), Errno>) -> Answer {
    match r {
        Ok(()) => Answer::Value(0),
        Err(e) => Answer::Error(e.0),
    }
}

fn shown(dest: SocketAddr) -> String {
    SocketAddr::new(canonical(dest.ip()), dest.port()).to_string()
}

// ---------------------------------------------------------------------------------
// connect

fn on_connect(sh: &Shared, c: &Caller<'_>, args: [u64; 6]) -> Result<Answer, Answer> {
    let fd = args[0] as i32;
    let len = args[2] as u32;
    let sock = socket_of(sh, c, fd, "connect")?;
    if !sock.inet() {
        return Ok(Answer::Continue);
    }
    if len > MAX_ADDR {
        return Ok(Answer::Error(libc::EINVAL));
    }
    let bytes = read_mem(sh, c, args[1], len as usize, "connect")?;
    match (sock.ty, sock.proto) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP | libc::IPPROTO_MPTCP) => {
            tcp_connect(sh, c, &sock, fd, &bytes)
        }
        (libc::SOCK_DGRAM, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) | (libc::SOCK_RAW, _) => {
            dgram_connect(sh, c, &sock, &bytes, true)
        }
        (libc::SOCK_DGRAM, _) => dgram_connect(sh, c, &sock, &bytes, false),
        _ => {
            // SCTP and friends: SOCKS5 carries TCP and UDP only.
            report::line(
                &sh.cfg.layer,
                &format!(
                    "{} ({}): a socket of type {} protocol {} cannot go through a SOCKS5 proxy; its connect is refused",
                    c.comm(),
                    c.pid(),
                    sock.ty,
                    sock.proto
                ),
            );
            Ok(Answer::Error(libc::ENETUNREACH))
        }
    }
}

/// Proxy addresses a socket of this family can use, in configured order (IPv4 ones as
/// `::ffff:` on an IPv6 socket unless `IPV6_V6ONLY`).
fn candidates(sh: &Shared, family: i32, v6only: bool) -> Vec<SocketAddr> {
    let proxies = &sh.cfg.layer.proxy_addrs;
    match family {
        libc::AF_INET => proxies.iter().filter(|a| a.is_ipv4()).copied().collect(),
        libc::AF_INET6 => proxies
            .iter()
            .filter(|a| a.is_ipv6() || !v6only)
            .map(|a| laysocks_sys::net::in_family(*a, libc::AF_INET6))
            .collect(),
        _ => Vec::new(),
    }
}

fn tcp_connect(
    sh: &Shared,
    c: &Caller<'_>,
    sock: &Sock,
    fd: i32,
    bytes: &[u8],
) -> Result<Answer, Answer> {
    let cfg = &sh.cfg.layer;
    if family_of(bytes) == Some(libc::AF_UNSPEC) {
        // Dissolving the association: the kernel does it on our copy; we forget.
        let r = sys::connect_raw(sock.fd(), bytes);
        sh.state().forget(sock.cookie());
        return Ok(result_of(r));
    }
    let dest = parse_addr(bytes)?;
    let dest_family = if dest.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    if dest_family != sock.domain {
        return Ok(Answer::Error(libc::EAFNOSUPPORT));
    }
    let ip = canonical(dest.ip());
    if sock.domain == libc::AF_INET6 && ip.is_ipv4() && sock.v6only() {
        return Ok(Answer::Error(libc::ENETUNREACH));
    }
    let canon = SocketAddr::new(ip, dest.port());

    // Where it goes (see the module docs). Direct ones are connected on our copy with
    // the program's own bytes: the kernel's semantics exactly, nothing re-read.
    let remote_dns = cfg.remote_dns;
    let is_proxy = cfg
        .proxy_addrs
        .iter()
        .any(|p| SocketAddr::new(canonical(p.ip()), p.port()) == canon);
    let dns = dest.port() == DNS_PORT && remote_dns && !is_proxy;
    if cfg.is_direct(canon) && !dns {
        report::verbose(
            cfg,
            &format!(
                "{}: direct ({})",
                canon,
                if ip.is_loopback() {
                    "loopback"
                } else {
                    "excluded"
                }
            ),
        );
        return Ok(result_of(sys::connect_raw(sock.fd(), bytes)));
    }

    // A socket already connecting or connected: no new handshake, whatever the
    // address (DESIGN §6). The kernel answers EALREADY / EISCONN / 0 without opening
    // anything; the proxy's address makes sure that even a state change in between
    // cannot connect the program anywhere but the proxy.
    let state = sys::tcp_state(sock.fd())?;
    if state != TCP_CLOSE {
        let cookie = sock.cookie();
        if state == TCP_ESTABLISHED && sh.state().get(cookie).is_some() {
            return Ok(Answer::Error(libc::EISCONN));
        }
        let Some(p) = candidates(sh, sock.domain, sock.v6only()).first().copied() else {
            return Ok(Answer::Error(libc::EISCONN));
        };
        return Ok(result_of(sys::connect_raw(
            sock.fd(),
            &sys::sockaddr_bytes(&p),
        )));
    }

    let target = if dns {
        match (&sh.dns_server, sh.dns.as_ref()) {
            // Another DNS server named by the user, through the proxy.
            (Some(server), _) if cfg.is_direct(canon) => *server,
            (Some(_), _) => TargetAddr::from(canon),
            (None, Some(dns)) => {
                let to = match sock.domain {
                    libc::AF_INET => Some(dns.tcp4),
                    _ => dns.tcp6.or_else(|| {
                        (!sock.v6only())
                            .then(|| laysocks_sys::net::in_family(dns.tcp4, libc::AF_INET6))
                    }),
                };
                let Some(to) = to else {
                    return Ok(Answer::Error(libc::ENETUNREACH));
                };
                let r = sys::connect_raw(sock.fd(), &sys::sockaddr_bytes(&to));
                if matches!(r, Ok(()) | Err(Errno(libc::EINPROGRESS))) {
                    sh.state().insert(
                        sock.cookie(),
                        Entry {
                            shown: dest,
                            proxy: None,
                            family: sock.domain,
                        },
                    );
                }
                report::verbose(
                    cfg,
                    &format!("DNS over TCP to {canon}: answered by laysocks"),
                );
                return Ok(result_of(r));
            }
            (None, None) => {
                report::line(
                    cfg,
                    &format!("refused DNS over TCP to {canon}: it would bypass the proxy; set dns_server (--dns-server HOST) to send it through the proxy, or use --dns local"),
                );
                return Ok(Answer::Error(libc::ECONNREFUSED));
            }
        }
    } else {
        match placeholder_target(sh, canon) {
            Some(Ok(t)) => t,
            Some(Err(())) => {
                report::line(
                    cfg,
                    &format!("connect to {canon}: a placeholder address laysocks never handed out (a name resolved in another laysocks run?)"),
                );
                return Ok(Answer::Error(libc::EHOSTUNREACH));
            }
            None => TargetAddr::from(canon),
        }
    };
    proxied_connect(sh, c, sock, fd, dest, target)
}

/// `Some(Ok(name target))` for a placeholder the name table knows, `Some(Err)` for one
/// it does not, `None` for an ordinary address.
fn placeholder_target(sh: &Shared, dest: SocketAddr) -> Option<Result<TargetAddr, ()>> {
    let map = sh.names.as_ref()?;
    if !map.is_placeholder(dest.ip()) {
        return None;
    }
    let name = map.slot_of(dest.ip()).and_then(|s| map.name(s));
    Some(match name.and_then(|n| DomainName::new(&n).ok()) {
        Some(name) => Ok(TargetAddr {
            host: Host::Domain(name),
            port: dest.port(),
        }),
        None => Err(()),
    })
}

fn proxied_connect(
    sh: &Shared,
    c: &Caller<'_>,
    sock: &Sock,
    fd: i32,
    dest: SocketAddr,
    target: TargetAddr,
) -> Result<Answer, Answer> {
    let cfg = &sh.cfg.layer;
    let started = time::now_ms();
    let deadline = started + u64::from(cfg.connect_timeout_ms);
    let v6only = sock.v6only();
    let mut proxies = candidates(sh, sock.domain, v6only);
    // A family the proxy cannot be reached from (IPv4 socket, IPv6-only proxy, or an
    // IPv6-only socket and an IPv4-only proxy): a new socket of the other family,
    // installed at the program's fd number once connected.
    let mut replacement = None;
    if proxies.is_empty() {
        let other = if sock.domain == libc::AF_INET {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        proxies = candidates(sh, other, false);
        if !proxies.is_empty() {
            let new = sys::socket(other, libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
            for (level, name) in [
                (libc::IPPROTO_TCP, libc::TCP_NODELAY),
                (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            ] {
                if let Ok(v) = sys::getsockopt_int(sock.fd(), level, name) {
                    if v != 0 {
                        let _ = sys::setsockopt_int(new.as_fd(), level, name, v);
                    }
                }
            }
            let fl = sys::get_status_flags(sock.fd())?;
            sys::set_status_flags(new.as_fd(), fl & libc::O_NONBLOCK)?;
            replacement = Some(new);
        }
    }
    let on: BorrowedFd<'_> = match &replacement {
        Some(r) => r.as_fd(),
        None => sock.fd(),
    };
    match handshake::connect_through(
        on,
        &proxies,
        &target,
        sh.credentials.as_ref(),
        started,
        deadline,
    ) {
        Ok(proxy) => {
            if let Some(new) = &replacement {
                c.still_valid()?;
                let flags = if c.fd_cloexec(fd) {
                    libc::O_CLOEXEC as u32
                } else {
                    0
                };
                sys::addfd_setfd(c.listener, c.id, new.as_fd(), fd, flags)?;
            }
            sh.state().insert(
                sys::socket_cookie(on).unwrap_or(0),
                Entry {
                    shown: dest,
                    proxy: Some(proxy),
                    family: sock.domain,
                },
            );
            report::verbose(
                cfg,
                &format!(
                    "{target} via {}: connected in {:.1} ms",
                    cfg.proxy_label,
                    (time::now_us() - started * 1000) as f64 / 1000.0
                ),
            );
            Ok(Answer::Value(0))
        }
        Err(failed) => {
            if failed.attached && replacement.is_none() {
                laysocks_sys::net::disconnect(on.as_raw_fd());
            }
            let errno = failed.failure.errno();
            report::line(
                cfg,
                &format!(
                    "connect to {target} via {} failed: {} ({errno})",
                    cfg.proxy_label,
                    failed.failure.reason()
                ),
            );
            Ok(Answer::Error(errno.0))
        }
    }
}

// ---------------------------------------------------------------------------------
// datagrams (UDP, ICMP, raw)

/// Where a datagram (`data`; `None` for a datagram socket's connect) to `bytes` goes:
/// `Ok(bytes to give the kernel)`, or the answer that refuses it.
fn dgram_route(
    sh: &Shared,
    c: &Caller<'_>,
    sock: &Sock,
    bytes: &[u8],
    data: Option<&[u8]>,
    icmp: bool,
    what: &str,
) -> Result<(Vec<u8>, Option<SocketAddr>), Answer> {
    let cfg = &sh.cfg.layer;
    if bytes.is_empty() || family_of(bytes) == Some(libc::AF_UNSPEC) {
        // No destination: the connected peer (already vetted when it was connected).
        return Ok((bytes.to_vec(), None));
    }
    let dest = parse_addr(bytes)?;
    if sock.domain == libc::AF_INET && dest.is_ipv6() {
        return Err(Answer::Error(libc::EAFNOSUPPORT));
    }
    let ip = canonical(dest.ip());
    if sock.domain == libc::AF_INET6 && ip.is_ipv4() && sock.v6only() {
        return Err(Answer::Error(if dest.is_ipv4() {
            libc::EAFNOSUPPORT
        } else {
            libc::ENETUNREACH
        }));
    }
    let canon = SocketAddr::new(ip, dest.port());
    let proxy_host = cfg.proxy_addrs.iter().any(|p| canonical(p.ip()) == ip);
    let dns = !icmp && dest.port() == DNS_PORT && cfg.remote_dns && !proxy_host;
    // The proxy's host: its UDP relay (RFC 1928 §7) is there, and the preload layer
    // sends its wrapped datagrams to it.
    if !dns && (cfg.is_direct(canon) || proxy_host || (!icmp && dest.port() == DNS_PORT)) {
        return Ok((bytes.to_vec(), None));
    }
    if dns {
        if let Some(d) = sh.dns.as_ref() {
            let to = match sock.domain {
                libc::AF_INET => Some(d.udp4),
                _ => d.udp6.or_else(|| {
                    (!sock.v6only()).then(|| laysocks_sys::net::in_family(d.udp4, libc::AF_INET6))
                }),
            };
            if let Some(to) = to {
                return Ok((sys::sockaddr_bytes(&to), Some(dest)));
            }
        }
    }
    // The proxy's UDP relay on an address of its own (RFC 1928 §7): the preload
    // layer's wrapped datagrams, learnt by asking the proxy (see `relay`). Placeholders
    // are never relays; the proxy is asked only for a connect (the preload layer
    // connects a socket to its relay) or a datagram that starts with a SOCKS5 UDP
    // header, not for every other datagram a program sends.
    let placeholder = sh.names.as_ref().is_some_and(|m| m.is_placeholder(ip));
    if !icmp
        && !placeholder
        && dest.port() != DNS_PORT
        && relay::is_relay(
            cfg,
            sh.credentials.as_ref(),
            ip,
            data.is_none_or(relay::looks_wrapped),
        )
    {
        return Ok((bytes.to_vec(), None));
    }
    let first = sh.state().first_warning(sock.cookie());
    if icmp {
        if first {
            report::line(
                cfg,
                &format!(
                    "{} ({}): ICMP and raw sockets cannot go through a SOCKS5 proxy; its {what} to {} is refused",
                    c.comm(),
                    c.pid(),
                    ip
                ),
            );
        }
        return Err(Answer::Error(libc::EACCES));
    }
    if first {
        report::line(
            cfg,
            &format!(
                "{} ({}): UDP to {} refused: UDP from programs the preload layer does not cover is not carried through the proxy yet",
                c.comm(),
                c.pid(),
                shown(dest)
            ),
        );
    }
    Err(Answer::Error(libc::ENETUNREACH))
}

fn dgram_connect(
    sh: &Shared,
    c: &Caller<'_>,
    sock: &Sock,
    bytes: &[u8],
    icmp: bool,
) -> Result<Answer, Answer> {
    if family_of(bytes) == Some(libc::AF_UNSPEC) {
        let r = sys::connect_raw(sock.fd(), bytes);
        sh.state().forget(sock.cookie());
        return Ok(result_of(r));
    }
    let (to, shown) = dgram_route(sh, c, sock, bytes, None, icmp, "connect")?;
    let r = sys::connect_raw(sock.fd(), &to);
    let cookie = sock.cookie();
    match (shown, r) {
        (Some(dest), Ok(())) => sh.state().insert(
            cookie,
            Entry {
                shown: dest,
                proxy: None,
                family: sock.domain,
            },
        ),
        _ => sh.state().forget(cookie),
    }
    Ok(result_of(r))
}

/// One datagram the program asked to send, read from its memory.
struct Datagram {
    dest: Vec<u8>,
    data: Vec<u8>,
    control: Vec<u8>,
}

fn send_one(
    sh: &Shared,
    c: &Caller<'_>,
    sock: &Sock,
    d: &Datagram,
    flags: i32,
) -> Result<usize, Answer> {
    let icmp = sock.ty == libc::SOCK_RAW
        || matches!(sock.proto, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6);
    let (to, shown) = dgram_route(sh, c, sock, &d.dest, Some(&d.data), icmp, "datagram")?;
    if let Some(dest) = shown {
        // Answers come from the responder: recvfrom reports the server asked instead.
        sh.state().insert(
            sock.cookie(),
            Entry {
                shown: dest,
                proxy: None,
                family: sock.domain,
            },
        );
    }
    sys::sendmsg_raw(sock.fd(), &d.data, &to, &d.control, flags).map_err(Answer::from)
}

/// The TCP side of `sendto`/`sendmsg`: only `MSG_FASTOPEN` can open a connection.
/// The socket of a send the supervisor must make itself (an inet datagram socket), or
/// the answer already decided: `CONTINUE` for other families, [`stream_send`]'s for TCP.
fn datagram_socket(
    sh: &Shared,
    c: &Caller<'_>,
    fd: i32,
    flags: i32,
    what: &str,
) -> Result<Result<Sock, Answer>, Answer> {
    let sock = socket_of(sh, c, fd, what)?;
    if !sock.inet() {
        return Ok(Err(Answer::Continue));
    }
    if sock.ty == libc::SOCK_STREAM {
        return stream_send(sh, c, &sock, flags).map(Err);
    }
    Ok(Ok(sock))
}

fn stream_send(sh: &Shared, c: &Caller<'_>, sock: &Sock, flags: i32) -> Result<Answer, Answer> {
    if flags & libc::MSG_FASTOPEN == 0 {
        return Ok(Answer::Continue);
    }
    Ok(match sys::tcp_state(sock.fd())? {
        TCP_CLOSE => {
            report::line(
                &sh.cfg.layer,
                &format!(
                    "{} ({}): TCP Fast Open (sendto with MSG_FASTOPEN) is not supported under the guard; refused",
                    c.comm(),
                    c.pid()
                ),
            );
            Answer::Error(libc::EOPNOTSUPP)
        }
        TCP_SYN_SENT | TCP_SYN_RECV => Answer::Error(libc::EALREADY),
        _ => Answer::Error(libc::EISCONN),
    })
}

fn on_sendto(sh: &Shared, c: &Caller<'_>, args: [u64; 6]) -> Result<Answer, Answer> {
    let fd = args[0] as i32;
    let flags = args[3] as i32;
    let sock = match datagram_socket(sh, c, fd, flags, "sendto")? {
        Ok(sock) => sock,
        Err(decided) => return Ok(decided),
    };
    let alen = args[5] as u32;
    if alen > MAX_ADDR {
        return Ok(Answer::Error(libc::EINVAL));
    }
    let len = args[2] as usize;
    if len > MAX_DATAGRAM {
        return Ok(Answer::Error(libc::EMSGSIZE));
    }
    let dest = if args[4] == 0 {
        Vec::new()
    } else {
        read_mem(sh, c, args[4], alen as usize, "datagram")?
    };
    let data = read_mem(sh, c, args[1], len, "datagram")?;
    let d = Datagram {
        dest,
        data,
        control: Vec::new(),
    };
    let n = send_one(sh, c, &sock, &d, flags)?;
    Ok(Answer::Value(n as i64))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

/// Reads a `struct msghdr` at `addr` and everything it points to (bounded).
fn read_msghdr(sh: &Shared, c: &Caller<'_>, addr: u64) -> Result<Datagram, Answer> {
    let h = read_mem(sh, c, addr, MSGHDR, "datagram")?;
    // struct msghdr { void *msg_name; socklen_t msg_namelen; (pad) struct iovec *msg_iov;
    //   size_t msg_iovlen; void *msg_control; size_t msg_controllen; int msg_flags; }
    let name = u64_at(&h, 0);
    let namelen = u32_at(&h, 8);
    let iov = u64_at(&h, 16);
    let iovlen = u64_at(&h, 24) as usize;
    let control = u64_at(&h, 32);
    let controllen = u64_at(&h, 40) as usize;
    if namelen > MAX_ADDR && name != 0 {
        return Err(Answer::Error(libc::EINVAL));
    }
    if iovlen > UIO_MAXIOV {
        return Err(Answer::Error(libc::EMSGSIZE));
    }
    if controllen > MAX_CONTROL {
        return Err(Answer::Error(libc::ENOBUFS));
    }
    let dest = if name == 0 {
        Vec::new()
    } else {
        read_mem(sh, c, name, namelen as usize, "datagram")?
    };
    let iovs = read_mem(sh, c, iov, iovlen * 16, "datagram")?;
    let mut data = Vec::new();
    for i in 0..iovlen {
        let base = u64_at(&iovs, 16 * i);
        let len = u64_at(&iovs, 16 * i + 8) as usize;
        if data.len() + len > MAX_DATAGRAM {
            return Err(Answer::Error(libc::EMSGSIZE));
        }
        if len > 0 {
            data.extend_from_slice(&read_mem(sh, c, base, len, "datagram")?);
        }
    }
    let control = if control == 0 || controllen == 0 {
        Vec::new()
    } else {
        read_mem(sh, c, control, controllen, "datagram")?
    };
    Ok(Datagram {
        dest,
        data,
        control,
    })
}

fn on_sendmsg(sh: &Shared, c: &Caller<'_>, args: [u64; 6]) -> Result<Answer, Answer> {
    let fd = args[0] as i32;
    let flags = args[2] as i32;
    let sock = match datagram_socket(sh, c, fd, flags, "sendmsg")? {
        Ok(sock) => sock,
        Err(decided) => return Ok(decided),
    };
    let d = read_msghdr(sh, c, args[1])?;
    let n = send_one(sh, c, &sock, &d, flags)?;
    Ok(Answer::Value(n as i64))
}

fn on_sendmmsg(sh: &Shared, c: &Caller<'_>, args: [u64; 6]) -> Result<Answer, Answer> {
    let fd = args[0] as i32;
    let vec = args[1];
    let vlen = (args[2] as u32 as usize).min(UIO_MAXIOV);
    let flags = args[3] as i32;
    let sock = match datagram_socket(sh, c, fd, flags, "sendmmsg")? {
        Ok(sock) => sock,
        Err(decided) => return Ok(decided),
    };
    let mut sent = 0usize;
    for i in 0..vlen {
        let at = vec + (i * MMSGHDR) as u64;
        let r = read_msghdr(sh, c, at).and_then(|d| send_one(sh, c, &sock, &d, flags));
        match r {
            Ok(n) => {
                // msg_len follows the msghdr.
                c.write(at + MSGHDR as u64, &(n as u32).to_ne_bytes())?;
                sent += 1;
            }
            Err(Answer::Gone) => return Err(Answer::Gone),
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(Answer::Value(sent as i64))
}

// ---------------------------------------------------------------------------------
// recvfrom

/// `recvfrom` with a source-address buffer: for a datagram socket the supervisor
/// connected to its DNS responder, receive on our copy and report the program's DNS
/// server as the source (the program's idea of its peer); everything else continues.
fn on_recvfrom(sh: &Shared, c: &Caller<'_>, args: [u64; 6]) -> Result<Answer, Answer> {
    let fd = args[0] as i32;
    let sock = socket_of(sh, c, fd, "recvfrom")?;
    if !sock.inet() || sock.ty != libc::SOCK_DGRAM {
        return Ok(Answer::Continue);
    }
    let entry = match sh.state().get(sock.cookie()) {
        Some(e) if e.proxy.is_none() => e.clone(),
        _ => return Ok(Answer::Continue),
    };
    let flags = args[3] as i32;
    let len = (args[2] as usize).min(MAX_DATAGRAM);
    let nonblocking = flags & libc::MSG_DONTWAIT != 0
        || sys::get_status_flags(sock.fd())? & libc::O_NONBLOCK != 0;
    // A blocking receive waits here, looking every 100 ms whether the program still
    // waits too (a fatal signal ends its call; nothing else can).
    if !nonblocking {
        let raw = sock.fd().as_raw_fd();
        loop {
            match laysocks_sys::net::poll_one(raw, libc::POLLIN, 100) {
                Ok(0) | Err(Errno(libc::EINTR)) => c.still_valid()?,
                Ok(_) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut buf = vec![0u8; len];
    let n = sys::recv_raw(sock.fd(), &mut buf, flags | libc::MSG_DONTWAIT)?;
    c.write(args[1], &buf[..n.min(len)])?;
    let shown = match (entry.shown, entry.family) {
        (SocketAddr::V4(a), libc::AF_INET6) => {
            laysocks_sys::net::in_family(SocketAddr::V4(a), libc::AF_INET6)
        }
        (s, _) => s,
    };
    if args[5] != 0 {
        let room = c.read_u32(args[5])? as i32;
        if room < 0 {
            return Ok(Answer::Error(libc::EINVAL));
        }
        let full = sys::sockaddr_bytes(&shown);
        c.write(args[4], &full[..(room as usize).min(full.len())])?;
        c.write(args[5], &(full.len() as u32).to_ne_bytes())?;
    }
    Ok(Answer::Value(n as i64))
}

// ---------------------------------------------------------------------------------
// getpeername

fn on_getpeername(sh: &Shared, c: &Caller<'_>, args: [u64; 6]) -> Result<Answer, Answer> {
    let fd = args[0] as i32;
    let sock = socket_of(sh, c, fd, "getpeername")?;
    if !sock.inet() {
        return Ok(Answer::Continue);
    }
    let Some(entry) = sh.state().get(sock.cookie()).cloned() else {
        return Ok(Answer::Continue);
    };
    // Not connected (any more): the kernel's answer (ENOTCONN).
    sys::peer_raw(sock.fd())?;
    let room = c.read_u32(args[2])? as i32;
    if room < 0 {
        return Ok(Answer::Error(libc::EINVAL));
    }
    let shown = match (entry.shown, entry.family) {
        (SocketAddr::V4(a), libc::AF_INET6) => {
            laysocks_sys::net::in_family(SocketAddr::V4(a), libc::AF_INET6)
        }
        (s, _) => s,
    };
    let full = sys::sockaddr_bytes(&shown);
    let n = (room as usize).min(full.len());
    c.write(args[1], &full[..n])?;
    c.write(args[2], &(full.len() as u32).to_ne_bytes())?;
    Ok(Answer::Value(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_the_kernel_reads_them() {
        let v4 = sys::sockaddr_bytes(&"203.0.113.2:80".parse().unwrap());
        assert_eq!(parse_addr(&v4).unwrap().to_string(), "203.0.113.2:80");
        assert_eq!(parse_addr(&v4[..15]), Err(Answer::Error(libc::EINVAL)));
        let v6 = sys::sockaddr_bytes(&"[2001:db8::2]:443".parse().unwrap());
        // RFC 2133 length (no scope id) is enough, as for the kernel.
        assert_eq!(
            parse_addr(&v6[..24]).unwrap().to_string(),
            "[2001:db8::2]:443"
        );
        assert_eq!(parse_addr(&v6[..23]), Err(Answer::Error(libc::EINVAL)));
        let mut unix = vec![0u8; 16];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse_addr(&unix), Err(Answer::Error(libc::EAFNOSUPPORT)));
        assert_eq!(parse_addr(&[]), Err(Answer::Error(libc::EINVAL)));
    }
}
