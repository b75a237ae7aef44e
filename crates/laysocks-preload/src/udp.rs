//! UDP through the proxy: SOCKS5 UDP ASSOCIATE (RFC 1928 §7, DESIGN §5).
//!
//! A datagram socket's first datagram (or `connect`) to a destination that is not direct
//! opens a *session*: a TCP control connection of our own to the proxy carrying a UDP
//! ASSOCIATE request, whose reply names the relay. From then on every datagram the
//! program sends is wrapped in the request header (RSV, FRAG, ATYP, DST.ADDR, DST.PORT)
//! and sent from the program's own socket to the relay; datagrams from the relay are
//! unwrapped and the program is told the real source. Remote-DNS names travel as names
//! (ATYP 3). The association lives as long as the control connection (§7): the session
//! closes it when the program closes its socket, and opens a new one if the proxy drops
//! it (checked at most every [`CHECK_MS`], and on an ICMP "refused" from the relay).
//!
//! How the program's socket is used, and why:
//! - A socket the program `connect`ed is connected by us to the *relay*: the kernel then
//!   drops datagrams from anyone else, so `poll`/`epoll` readability is exact, and
//!   `send`/`write` need no address. `getpeername` reports the program's destination.
//! - So is an unconnected one, for the same reasons (`getpeername` still says
//!   `ENOTCONN`). If it also sends to a direct destination (a resolver on loopback, say),
//!   the kernel connection is dissolved so the replies get through, and from then on its
//!   receive hooks drop what comes from neither the relay nor a direct destination.
//! - The handshake is blocking, once per socket (under the connect timeout), also for a
//!   non-blocking socket: UDP has no "in progress" a program would wait for.
//!
//! Multicast and broadcast datagrams stay on the local links (direct), like loopback.
//!
//! Refusals: a proxy without UDP ASSOCIATE (microsocks) makes the send fail with
//! `ECONNREFUSED` and one line on stderr; so does an unknown placeholder. A DNS server
//! that would be reached directly (127.0.0.53) is replaced by `dns_server` through the
//! proxy, or refused (see [`crate::connect::route`]); under the seccomp guard
//! (`guarded`) it is left to the kernel instead, and the guard answers it from the shared
//! name table. Datagrams with FRAG ≠ 0 are dropped
//! (§7: "an implementation that does not support fragmentation MUST drop" them).
//! Programs that inherit a session's socket across `exec` lose it (the control
//! connection is close-on-exec): their datagrams would go direct, so don't do that.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use laysocks_proto::{
    decode_udp_header, encode_udp_header, ClientHandshake, Command, Host, TargetAddr,
};
use laysocks_sys::net::{self as sysnet, in_family};
use laysocks_sys::{real, time, Errno};
use libc::{c_int, c_uint, c_void, iovec, msghdr, sockaddr, socklen_t, ssize_t};

use crate::connect::{self, Route, DNS_PORT};
use crate::driver::{self, Driver, Failure};
use crate::fdtable::{self, Socket, SocketState};
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::{layer, report};

/// How often a session checks that its control connection is still up.
const CHECK_MS: u64 = 250;

/// Largest datagram payload plus the largest header (a 255-byte name).
const BUF_LEN: usize = 65_535 + 262;

/// The destinations a session remembers sending to, to name reply sources.
const REMEMBERED: usize = 16;

/// The control connection, closed when the last socket sharing the session goes.
#[derive(Debug)]
pub struct Control {
    fd: c_int,
    inode: u64,
}

impl Drop for Control {
    fn drop(&mut self) {
        // Only if the number still holds our connection (the program may have closed
        // it, e.g. with closefrom, and reused the number).
        if sysnet::inode(self.fd).ok() == Some(self.inode) {
            // SAFETY: closing our own control connection.
            unsafe { real::close()(self.fd) };
        }
    }
}

/// A UDP ASSOCIATE session of one socket.
#[derive(Clone, Debug)]
pub struct Assoc {
    control: Arc<Control>,
    /// The relay, in the socket's family (IPv4 relays as `::ffff:` on IPv6 sockets).
    relay: SocketAddr,
    /// The program's `connect`ed destination: what goes to the proxy, what it is shown.
    pub peer: Option<(TargetAddr, SocketAddr)>,
    /// The kernel socket is connected to the relay (it drops everyone else's datagrams).
    /// Undone for an unconnected socket that also sends to a direct destination.
    filtered: bool,
    /// Recent destinations of an unconnected socket: target → the address the program
    /// used (a placeholder, or a resolver replaced by `dns_server`).
    /// Shared, so that the copy each datagram takes of the session is a reference count,
    /// not up to REMEMBERED names; replaced (copy on write) only for a new destination.
    sent: Arc<Vec<(TargetAddr, SocketAddr)>>,
    checked_ms: u64,
}

/// A proxy that answered UDP ASSOCIATE with "command not supported": said once, then
/// every session fails at once.
static REFUSED: AtomicBool = AtomicBool::new(false);

fn is_dgram(fd: c_int) -> bool {
    matches!(sysnet::socket_type(fd), Ok(libc::SOCK_DGRAM))
}

/// Whether a datagram to `addr` certainly needs nothing from the layer: the fast path
/// of `sendto`/`sendmsg`/`sendmmsg` (no system call).
///
/// # Safety
/// `addr` is NULL or has `len` readable bytes.
#[inline]
pub unsafe fn goes_direct(addr: *const sockaddr, len: socklen_t) -> bool {
    if addr.is_null() || !layer::is_active() {
        return true;
    }
    // SAFETY: per the contract.
    let Some(dest) = (unsafe { sysnet::read_sockaddr(addr, len) }) else {
        return true;
    };
    let cfg = &layer::get().config;
    let dns_sensitive = layer::dns().is_some_and(|d| d.map.is_placeholder(dest.ip()))
        || (dest.port() == DNS_PORT && layer::dns().is_some());
    !dns_sensitive && (cfg.is_direct(dest) || is_local_only(dest))
}

/// Multicast and broadcast: meaningful only on this machine's own links (mDNS, SSDP,
/// DHCP), not something a relay elsewhere could deliver. They go direct.
fn is_local_only(dest: SocketAddr) -> bool {
    match laysocks_config::net::canonical(dest.ip()) {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

// ---- sessions ----

/// The session of `fd`, if it has one (checked for liveness every CHECK_MS).
fn current(fd: c_int) -> Option<Assoc> {
    current_and_peer(fd).0
}

/// The session of `fd` if it is alive, and the program's peer in any case: a session
/// found dead is ended, but the socket's peer must survive into the next one.
fn current_and_peer(fd: c_int) -> (Option<Assoc>, Option<(TargetAddr, SocketAddr)>) {
    let Some(a) = fdtable::with(fd, |s| match &s.state {
        SocketState::Udp(a) => Some((**a).clone()),
        _ => None,
    })
    .flatten() else {
        return (None, None);
    };
    let peer = a.peer;
    let now = time::now_ms();
    if now.saturating_sub(a.checked_ms) < CHECK_MS {
        return (Some(a), peer);
    }
    // Readable control connection: the proxy closed it (or broke protocol). Dead.
    let alive = matches!(sysnet::poll_one(a.control.fd, libc::POLLIN, 0), Ok(0))
        && sysnet::inode(a.control.fd).ok() == Some(a.control.inode);
    if alive {
        fdtable::with(fd, |s| {
            if let SocketState::Udp(x) = &mut s.state {
                x.checked_ms = now;
            }
        });
        (Some(a), peer)
    } else {
        end(fd);
        (None, peer)
    }
}

/// Ends `fd`'s session (the record goes; the control connection closes with it).
fn end(fd: c_int) {
    fdtable::forget(fd);
}

/// `fd`'s session, opening one if needed. Reports a failure (one line) and returns the
/// errno the program gets.
fn session(
    fd: c_int,
    target: &TargetAddr,
    keep_peer: Option<(TargetAddr, SocketAddr)>,
) -> Result<Assoc, Errno> {
    if let Some(a) = current(fd) {
        return Ok(a);
    }
    let family = sysnet::socket_domain(fd)?;
    let a = open(fd, family).map_err(|f| {
        let cfg = &layer::get().config;
        let refused = matches!(
            &f,
            Failure::Protocol(laysocks_proto::Error::Reply(
                laysocks_proto::ReplyCode::CommandNotSupported
            ))
        );
        let errno = match &f {
            Failure::Protocol(_) | Failure::NameUnreachable(_) => Errno(libc::ECONNREFUSED),
            f => f.errno(),
        };
        if refused && guard_takes_dns(target, keep_peer.map(|p| p.1)) {
            // No line: the caller hands the datagram to the guard (see guard_takes_dns).
            REFUSED.store(true, Ordering::Relaxed);
        } else if !(refused && REFUSED.swap(true, Ordering::Relaxed)) {
            report::udp_failed(cfg, target, &f, errno, refused);
        }
        errno
    })?;
    // The socket talks to the relay only (see the module docs) — except an IPv6 socket
    // reaching an IPv4 relay through `::ffff:` that the program did not connect: Linux
    // turns such a socket into an IPv4 one for as long as it is connected, and after
    // disconnecting it no longer hears native IPv6 replies (to a resolver on ::1, say).
    // That one is filtered by the receive hooks instead.
    let mapped = matches!(a.relay, SocketAddr::V6(r) if r.ip().to_ipv4_mapped().is_some());
    let filtered = keep_peer.is_some() || !mapped;
    let a = Assoc {
        peer: keep_peer,
        filtered,
        ..a
    };
    if filtered {
        sysnet::connect(fd, &a.relay)?;
    }
    let inode = sysnet::inode(fd).unwrap_or(0);
    fdtable::insert(
        fd,
        Socket {
            inode,
            family,
            shown: None,
            state: SocketState::Udp(Box::new(a.clone())),
        },
    );
    Ok(a)
}

/// Whether a DNS datagram for `target` that the proxy cannot carry (it refused UDP
/// ASSOCIATE) goes to the kernel instead: under the seccomp guard, which traps it and
/// answers from the shared name table, so nothing leaves the machine.
/// `shown` is the address the program sent to (the local stub resolver when `target`
/// is the configured `dns_server`).
fn guard_takes_dns(target: &TargetAddr, shown: Option<SocketAddr>) -> bool {
    (target.port == crate::connect::DNS_PORT
        || shown.is_some_and(|s| s.port() == crate::connect::DNS_PORT))
        && layer::get().config.guarded
        && REFUSED.load(Ordering::Relaxed)
}

/// Opens a UDP ASSOCIATE session for the datagram socket `fd` of `family`.
fn open(fd: c_int, family: c_int) -> Result<Assoc, Failure> {
    if REFUSED.load(Ordering::Relaxed) {
        return Err(Failure::Protocol(laysocks_proto::Error::Reply(
            laysocks_proto::ReplyCode::CommandNotSupported,
        )));
    }
    let cfg = &layer::get().config;
    // RFC 1928 §7: the request names the address the client will send from. The port is
    // known once the socket is bound (binding now is what the first send would do).
    let mut local = sysnet::local_addr(fd).map_err(Failure::Io)?;
    if local.port() == 0 {
        let any: SocketAddr = if family == libc::AF_INET6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let (ss, len) = sysnet::to_storage(&any);
        // SAFETY: binding our program's unbound socket to the wildcard, as its first
        // send would; bind(2) is not hooked.
        if unsafe { libc::bind(fd, &ss as *const _ as *const sockaddr, len) } != 0 {
            return Err(Failure::Io(Errno::last()));
        }
        local = sysnet::local_addr(fd).map_err(Failure::Io)?;
    }
    let from = TargetAddr::from(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        local.port(),
    ));
    let cfamily = match cfg.proxy_addrs.first() {
        Some(a) if a.is_ipv6() => libc::AF_INET6,
        _ => libc::AF_INET,
    };
    // SAFETY: a new socket of our own; socket(2) is not hooked.
    let raw = unsafe { libc::socket(cfamily, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Failure::Io(Errno::last()));
    }
    // Out of the way of the program's own numbering (it may expect the lowest free fd).
    // SAFETY: F_DUPFD_CLOEXEC on our own fd, then closing the original.
    let ctl = unsafe {
        let high = real::fcntl()(raw, libc::F_DUPFD_CLOEXEC, 512);
        if high >= 0 {
            real::close()(raw);
            high
        } else {
            raw
        }
    };
    let control = Arc::new(Control {
        fd: ctl,
        inode: sysnet::inode(ctl).unwrap_or(0),
    });
    let started = time::now_ms();
    let deadline = started + u64::from(cfg.connect_timeout_ms);
    let proxy = connect::connect_to_proxy(ctl, cfamily, 0, started, deadline)?;
    let creds = layer::get().credentials.as_ref();
    let mut d = Driver::new(
        ctl,
        ClientHandshake::with_command(Command::UdpAssociate, &from, creds),
    );
    let bound = driver::run_to_completion(&mut d, started, deadline)?;
    let Some(mut relay) = bound.to_socket_addr() else {
        return Err(Failure::Protocol(laysocks_proto::Error::BadAddressType(3)));
    };
    // "0.0.0.0" (or "::") in the reply means the proxy's own address.
    if relay.ip().is_unspecified() {
        relay.set_ip(laysocks_config::net::canonical(proxy.ip()));
    }
    let relay = match (family, relay) {
        (libc::AF_INET, SocketAddr::V6(_)) => return Err(Failure::NoProxyForFamily),
        (f, r) => in_family(r, f),
    };
    Ok(Assoc {
        control,
        relay,
        peer: None,
        filtered: false,
        sent: Arc::new(Vec::new()),
        checked_ms: time::now_ms(),
    })
}

// ---- sending ----

/// Where a datagram to `d` goes: `Some((target, shown))` through the relay, `None`
/// direct.
fn destination(d: SocketAddr) -> Result<Option<(TargetAddr, SocketAddr)>, Errno> {
    if is_local_only(d) {
        return Ok(None);
    }
    match connect::route(d, "UDP") {
        Route::Direct => Ok(None),
        Route::Refuse(e) => Err(e),
        Route::Proxy { target, shown } => Ok(Some((target, shown.unwrap_or(d)))),
    }
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn with_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut f = Some(f);
    let r = BUF.try_with(|b| {
        let mut v = b.try_borrow_mut().ok()?;
        if v.len() < BUF_LEN {
            v.resize(BUF_LEN, 0);
        }
        Some((f.take().expect("called once"))(&mut v))
    });
    match r {
        Ok(Some(r)) => r,
        // A re-entered call (a signal handler) or a thread being torn down: a fresh one.
        _ => (f.take().expect("not called yet"))(&mut vec![0u8; BUF_LEN]),
    }
}

/// Sends one datagram whose payload is in `iov` to `dest` (or the connected peer).
/// `Ok(None)`: not ours, let the real call do it.
///
/// # Safety
/// `iov` has `iovcnt` readable entries; `control` as for sendmsg.
unsafe fn send_one(
    fd: c_int,
    dest: Option<SocketAddr>,
    iov: *const iovec,
    iovcnt: usize,
    flags: c_int,
    control: Option<(*mut c_void, usize)>,
) -> Result<Option<usize>, Errno> {
    let ours = fdtable::kind_of(fd) == fdtable::kind::UDP;
    if !ours && !is_dgram(fd) {
        return Ok(None);
    }
    // One look at the record per datagram (each costs an fstat for the inode check).
    let (mut existing, peer) = if ours {
        current_and_peer(fd)
    } else {
        (None, None)
    };
    let (target, shown) = match dest {
        Some(d) => match destination(d)? {
            Some(t) => t,
            None => {
                if existing.is_some() {
                    unfilter(fd);
                }
                return Ok(None);
            }
        },
        // connect() of a datagram socket happens in on_connect; without an address,
        // only a socket whose peer is set is ours to send from.
        None => match peer {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let mut attempt = 0;
    loop {
        let a = match existing.take() {
            Some(a) => a,
            None => match session(fd, &target, peer) {
                Ok(a) => a,
                Err(_) if guard_takes_dns(&target, dest.or(Some(shown))) => return Ok(None),
                Err(e) => return Err(e),
            },
        };
        if dest.is_some() && a.peer.is_none() && !a.sent.iter().any(|(t, _)| *t == target) {
            remember(fd, target, shown);
        }
        let to = if a.peer.is_some() {
            None
        } else {
            Some(a.relay)
        };
        let r = with_buf(|buf| {
            let Some(h) = encode_udp_header(&target, buf) else {
                return Err(Errno(libc::EINVAL));
            };
            let mut n = h;
            for i in 0..iovcnt {
                // SAFETY: entry i of the program's iovec array.
                let v = unsafe { &*iov.add(i) };
                if n + v.iov_len > buf.len() {
                    return Err(Errno(libc::EMSGSIZE));
                }
                // SAFETY: the program's buffer of iov_len bytes, into ours.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        v.iov_base as *const u8,
                        buf[n..].as_mut_ptr(),
                        v.iov_len,
                    )
                };
                n += v.iov_len;
            }
            sysnet::send_datagram(
                fd,
                &buf[..n],
                to.as_ref(),
                flags & !libc::MSG_FASTOPEN,
                control,
            )
            .map(|sent| sent.saturating_sub(h))
        });
        match r {
            // ICMP "port unreachable" from the relay: the association is gone.
            Err(Errno(libc::ECONNREFUSED)) if attempt == 0 => {
                end(fd);
                attempt += 1;
            }
            r => return r.map(Some),
        }
    }
}

/// A session socket (not connected by the program) sends to a direct destination too:
/// its replies must get through, so the kernel stops filtering for the relay and the
/// receive hooks filter instead.
fn unfilter(fd: c_int) {
    let undo = fdtable::with(fd, |s| match &mut s.state {
        SocketState::Udp(a) if a.filtered && a.peer.is_none() => {
            a.filtered = false;
            true
        }
        _ => false,
    });
    if undo == Some(true) {
        // Linux unbinds a socket whose port was chosen by the kernel when it is
        // disconnected; the relay knows the client by that port, so bind it again.
        let local = sysnet::local_addr(fd);
        sysnet::disconnect(fd);
        let rebound = local.is_ok_and(|l| {
            // The wildcard address, as the socket was bound before its connect chose
            // a source address; only the port matters to the relay.
            let any = match l {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
            let (ss, len) = sysnet::to_storage(&SocketAddr::new(any, l.port()));
            // SAFETY: binding our program's socket back to its own address; bind(2) is
            // not hooked.
            let bound = unsafe { libc::bind(fd, &ss as *const _ as *const sockaddr, len) } == 0;
            bound || sysnet::local_addr(fd).is_ok_and(|now| now.port() == l.port())
        });
        if !rebound {
            // Another socket took the port meanwhile: the next datagram opens a new
            // session from the new one.
            end(fd);
        }
    }
}

fn remember(fd: c_int, target: TargetAddr, shown: SocketAddr) {
    fdtable::with(fd, |s| {
        if let SocketState::Udp(a) = &mut s.state {
            if !a.sent.iter().any(|(t, _)| *t == target) {
                let sent = Arc::make_mut(&mut a.sent);
                if sent.len() >= REMEMBERED {
                    sent.remove(0);
                }
                sent.push((target, shown));
            }
        }
    });
}

/// `connect()` of a datagram socket: a proxied destination opens the session now and
/// becomes the socket's peer.
pub fn on_connect(fd: c_int, dest: SocketAddr) -> HookResult<c_int> {
    let route = if is_local_only(dest) {
        Route::Direct
    } else {
        connect::route(dest, "UDP")
    };
    match route {
        Route::Direct => {
            fdtable::forget(fd);
            Ok(Outcome::Passthrough)
        }
        Route::Refuse(e) => Err(e.into()),
        Route::Proxy { target, shown } => {
            let peer = (target, shown.unwrap_or(dest));
            if let Some(a) = current(fd) {
                sysnet::connect(fd, &a.relay)?;
                fdtable::with(fd, |s| {
                    if let SocketState::Udp(x) = &mut s.state {
                        x.peer = Some(peer);
                    }
                });
                return Ok(Outcome::Done(0));
            }
            match session(fd, &target, Some(peer)) {
                Ok(_) => Ok(Outcome::Done(0)),
                Err(_) if guard_takes_dns(&target, Some(peer.1)) => {
                    fdtable::forget(fd);
                    Ok(Outcome::Passthrough)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

// ---- receiving ----

/// What a receive gave the program.
struct Got {
    len: usize,
    from: Option<SocketAddr>,
    truncated: bool,
    control_len: usize,
}

/// Receives one datagram for the program into `iov`, unwrapping relay datagrams.
/// `Ok(None)`: not a session socket.
///
/// # Safety
/// `iov` has `iovcnt` writable entries; `control` as for recvmsg.
unsafe fn recv_one(
    fd: c_int,
    iov: *const iovec,
    iovcnt: usize,
    flags: c_int,
    control: Option<(*mut c_void, usize)>,
) -> Result<Option<Got>, Errno> {
    let Some(a) = fdtable::with(fd, |s| match &s.state {
        SocketState::Udp(a) => Some((**a).clone()),
        _ => None,
    })
    .flatten() else {
        return Ok(None);
    };
    let relay = canonical(a.relay);
    loop {
        let r = with_buf(|buf| -> Result<Option<Got>, Errno> {
            let r = sysnet::recv_datagram(fd, buf, flags & !libc::MSG_TRUNC, control)?;
            let n = r.len.min(buf.len());
            let from = r.from.map(canonical);
            let (payload, shown): (&[u8], Option<SocketAddr>) = if from == Some(relay) {
                let Ok((h, off)) = decode_udp_header(&buf[..n]) else {
                    return Ok(None); // FRAG ≠ 0 or garbage: dropped (RFC 1928 §7)
                };
                let Some(shown) = source_shown(&a, &h.target) else {
                    return Ok(None);
                };
                (&buf[off..n], Some(shown))
            } else if a.peer.is_none()
                && r.from
                    .is_some_and(|f| matches!(connect::route(f, "UDP"), Route::Direct))
            {
                (&buf[..n], r.from)
            } else {
                return Ok(None); // from neither the relay nor a direct peer
            };
            let mut copied = 0;
            for i in 0..iovcnt {
                // SAFETY: entry i of the program's iovec array.
                let v = unsafe { &*iov.add(i) };
                let k = v.iov_len.min(payload.len() - copied);
                // SAFETY: into the program's buffer of iov_len ≥ k bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        payload[copied..].as_ptr(),
                        v.iov_base as *mut u8,
                        k,
                    )
                };
                copied += k;
                if copied == payload.len() {
                    break;
                }
            }
            Ok(Some(Got {
                len: if flags & libc::MSG_TRUNC != 0 {
                    payload.len()
                } else {
                    copied
                },
                from: shown,
                truncated: copied < payload.len(),
                control_len: r.control_len,
            }))
        })?;
        match r {
            Some(g) => return Ok(Some(g)),
            None => {
                if flags & libc::MSG_PEEK != 0 {
                    // A dropped datagram must not stay at the head of the queue.
                    let mut b = [0u8; 1];
                    let _ = sysnet::recv_datagram(fd, &mut b, libc::MSG_DONTWAIT, None);
                }
            }
        }
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(laysocks_config::net::canonical(a.ip()), a.port())
}

/// The source the program is told for a relay datagram from `target`, or `None` to
/// drop it (a connected socket only hears from its peer).
fn source_shown(a: &Assoc, target: &TargetAddr) -> Option<SocketAddr> {
    let same = |t: &TargetAddr| match (t.to_socket_addr(), target.to_socket_addr()) {
        (Some(x), Some(y)) => canonical(x) == canonical(y),
        _ => t == target,
    };
    if let Some((t, shown)) = &a.peer {
        // A name's replies come from the address the proxy resolved it to.
        return (same(t) || (matches!(t.host, Host::Domain(_)) && t.port == target.port))
            .then_some(*shown);
    }
    if let Some((_, shown)) = a.sent.iter().find(|(t, _)| same(t)) {
        return Some(*shown);
    }
    if let Some((_, shown)) = a
        .sent
        .iter()
        .find(|(t, _)| matches!(t.host, Host::Domain(_)) && t.port == target.port)
    {
        return Some(*shown);
    }
    target.to_socket_addr()
}

// ---- the hooks' bodies ----

/// `sendto`/`sendmsg` on a socket that may be a datagram one: `Ok(Passthrough)` if the
/// layer has nothing to do.
///
/// # Safety
/// As for sendmsg(2), with `msg` the program's (or an equivalent one built for sendto).
pub unsafe fn on_sendmsg(fd: c_int, msg: &msghdr, flags: c_int) -> HookResult<ssize_t> {
    // SAFETY: the program's address of msg_namelen bytes.
    let dest = unsafe { sysnet::read_sockaddr(msg.msg_name as *const sockaddr, msg.msg_namelen) };
    let control = (!msg.msg_control.is_null()).then_some((msg.msg_control, msg.msg_controllen));
    // SAFETY: per the contract.
    match unsafe { send_one(fd, dest, msg.msg_iov, msg.msg_iovlen, flags, control) } {
        Ok(Some(n)) => Ok(Outcome::Done(n as ssize_t)),
        Ok(None) => crate::io::gate(fd, flags),
        Err(e) => Err(e.into()),
    }
}

/// `sendto` in sendmsg's terms.
///
/// # Safety
/// sendto(2)'s contract.
pub unsafe fn on_sendto(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> HookResult<ssize_t> {
    let mut iov = iovec {
        iov_base: buf as *mut c_void,
        iov_len: n,
    };
    // SAFETY: msghdr is plain data.
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr as *mut c_void;
    msg.msg_namelen = if addr.is_null() { 0 } else { len };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: msg describes the program's buffer and address.
    unsafe { on_sendmsg(fd, &msg, flags) }
}

/// `write`/`send`/`writev` on a session socket (the connected peer).
///
/// # Safety
/// `iov` has `iovcnt` readable entries.
pub unsafe fn on_write(
    fd: c_int,
    iov: *const iovec,
    iovcnt: usize,
    flags: c_int,
) -> HookResult<ssize_t> {
    // SAFETY: per the contract.
    match unsafe { send_one(fd, None, iov, iovcnt, flags, None) } {
        Ok(Some(n)) => Ok(Outcome::Done(n as ssize_t)),
        Ok(None) => crate::io::gate(fd, flags),
        Err(e) => Err(e.into()),
    }
}

/// `recvmsg` (and, in its terms, every other receive) on a session socket.
///
/// # Safety
/// recvmsg(2)'s contract for `msg`.
pub unsafe fn on_recvmsg(fd: c_int, msg: &mut msghdr, flags: c_int) -> HookResult<ssize_t> {
    if flags & libc::MSG_ERRQUEUE != 0 {
        // The error queue (ICMP errors, transmit timestamps): the kernel's, as it is.
        return Ok(Outcome::Passthrough);
    }
    let control = (!msg.msg_control.is_null()).then_some((msg.msg_control, msg.msg_controllen));
    // SAFETY: per the contract.
    match unsafe { recv_one(fd, msg.msg_iov, msg.msg_iovlen, flags, control) } {
        Ok(Some(g)) => {
            if !msg.msg_name.is_null() {
                match g.from {
                    Some(f) => {
                        let mut len = msg.msg_namelen;
                        // SAFETY: the program's address buffer of msg_namelen bytes.
                        let _ = unsafe {
                            sysnet::write_sockaddr(&f, msg.msg_name as *mut sockaddr, &mut len)
                        };
                        msg.msg_namelen = len;
                    }
                    None => msg.msg_namelen = 0,
                }
            }
            msg.msg_controllen = g.control_len;
            msg.msg_flags = if g.truncated { libc::MSG_TRUNC } else { 0 };
            Ok(Outcome::Done(g.len as ssize_t))
        }
        Ok(None) => crate::io::gate(fd, flags),
        Err(e) => Err(e.into()),
    }
}

/// `recvfrom`/`recv`/`read`/`readv` on a session socket, in recvmsg's terms.
///
/// # Safety
/// `iov` has `iovcnt` writable entries; `addr`/`len` as for recvfrom(2) (may be NULL).
pub unsafe fn on_recv(
    fd: c_int,
    iov: *const iovec,
    iovcnt: usize,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> HookResult<ssize_t> {
    // SAFETY: msghdr is plain data.
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov as *mut iovec;
    msg.msg_iovlen = iovcnt;
    if !addr.is_null() && !len.is_null() {
        msg.msg_name = addr.cast();
        // SAFETY: the program's length word.
        msg.msg_namelen = unsafe { *len };
    }
    // SAFETY: msg describes the program's buffers.
    let r = unsafe { on_recvmsg(fd, &mut msg, flags) };
    if let Ok(Outcome::Done(_)) = r {
        if !addr.is_null() && !len.is_null() {
            // SAFETY: the program's length word.
            unsafe { *len = msg.msg_namelen };
        }
    }
    r
}

/// A one-buffer iovec.
pub fn iov1(buf: *mut c_void, n: usize) -> iovec {
    iovec {
        iov_base: buf,
        iov_len: n,
    }
}

hook! {
    /// `sendmmsg(2)`: each message as `sendmsg` would send it.
    fn sendmmsg(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int) -> c_int;
    // SAFETY: the program's array of n messages.
    fast_path: !fdtable::needs_data_hooks(fd) && unsafe { all_direct(msgs, n) };
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: as above.
    body: unsafe { on_sendmmsg(fd, msgs, n, flags) }
}

/// # Safety
/// `msgs` has `n` readable entries.
pub(crate) unsafe fn all_direct(msgs: *const libc::mmsghdr, n: c_uint) -> bool {
    msgs.is_null()
        || (0..n as usize).all(|i| {
            // SAFETY: entry i of the program's array.
            let h = unsafe { &(*msgs.add(i)).msg_hdr };
            // SAFETY: the program's address of msg_namelen bytes.
            unsafe { goes_direct(h.msg_name as *const sockaddr, h.msg_namelen) }
        })
}

/// # Safety
/// `msgs` has `n` entries, as for sendmmsg(2).
pub(crate) unsafe fn on_sendmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    n: c_uint,
    flags: c_int,
) -> HookResult<c_int> {
    let mut done = 0;
    for i in 0..n as usize {
        // SAFETY: entry i of the program's array.
        let m = unsafe { &mut *msgs.add(i) };
        // SAFETY: the program's message.
        let r = unsafe { on_sendmsg(fd, &m.msg_hdr, flags) };
        let sent = match r {
            Ok(Outcome::Done(k)) => k,
            Ok(Outcome::Passthrough) => {
                // SAFETY: the program's message, sent as it is.
                let k = unsafe { real::sendmsg()(fd, &m.msg_hdr, flags) };
                if k < 0 {
                    if done == 0 {
                        return Err(Errno::last().into());
                    }
                    break;
                }
                k
            }
            Err(e) => {
                if done == 0 {
                    return Err(e);
                }
                break;
            }
        };
        m.msg_len = sent as c_uint;
        done += 1;
    }
    Ok(Outcome::Done(done))
}

hook! {
    /// `recvmmsg(2)` on a session socket: each message as `recvmsg` would receive it
    /// (after the first, without waiting, as the kernel does with MSG_WAITFORONE).
    fn recvmmsg(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's array of n messages.
    body: unsafe { on_recvmmsg(fd, msgs, n, flags) }
}

/// # Safety
/// `msgs` has `n` entries, as for recvmmsg(2).
pub(crate) unsafe fn on_recvmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    n: c_uint,
    flags: c_int,
) -> HookResult<c_int> {
    if fdtable::kind_of(fd) != fdtable::kind::UDP {
        return crate::io::gate(fd, flags).map(|o| match o {
            Outcome::Done(v) => Outcome::Done(v as c_int),
            Outcome::Passthrough => Outcome::Passthrough,
        });
    }
    let mut done = 0;
    let mut f = flags & !libc::MSG_WAITFORONE;
    for i in 0..n as usize {
        // SAFETY: entry i of the program's array.
        let m = unsafe { &mut *msgs.add(i) };
        // SAFETY: the program's message.
        match unsafe { on_recvmsg(fd, &mut m.msg_hdr, f) } {
            Ok(Outcome::Done(k)) => {
                m.msg_len = k as c_uint;
                done += 1;
            }
            Ok(Outcome::Passthrough) => break,
            Err(e) => {
                if done == 0 {
                    return Err(e);
                }
                break;
            }
        }
        f |= libc::MSG_DONTWAIT;
    }
    Ok(Outcome::Done(done))
}
