//! The `connect` hook: where a program's TCP connection is turned into a proxied one.
//!
//! Decision (DESIGN §3): only `AF_INET`/`AF_INET6` stream sockets (TCP or MPTCP) are
//! proxied; loopback, the unspecified address, the proxy itself and configured
//! exclusions go direct (`laysocks_config::LayerConfig::is_direct`). An IPv4-mapped
//! destination on an IPv6 socket (`::ffff:a.b.c.d`, Java's default) is an IPv4 target.
//!
//! Mechanics: the program's own socket is connected to the proxy — an IPv6 socket
//! reaches an IPv4 proxy through `::ffff:` unless `IPV6_V6ONLY` is set — and the SOCKS5
//! handshake runs on it under one deadline: the configured connect timeout, or the
//! socket's `SO_SNDTIMEO` if that is shorter (a blocking connect honours it). File
//! status flags are never touched: for a blocking socket the kernel's connect is bounded
//! by setting `SO_SNDTIMEO` to the time left for the duration of the call, then
//! restoring the program's value.
//!
//! A signal during a blocking connect does what it does to the kernel's
//! (`__inet_stream_connect`, measured in `tests/stress.rs`): with `SA_RESTART` the call
//! goes on; without it (or with `SO_SNDTIMEO` set) it fails with `EINTR` and the
//! handshake continues in the background as a [`pending`](crate::pending) one, which the
//! next blocking `connect()` waits for (0, then `EISCONN`) and a non-blocking one answers
//! with `EALREADY`. An fd closed or `dup2`ed over by another thread mid-handshake ends the
//! call with `EBADF` ([`driver::BlockingGuard`]).
//!
//! Non-blocking sockets get `EINPROGRESS` at once; their handshake runs in the
//! program's own readiness calls ([`pending`](crate::pending)), on the same
//! [`driver`](crate::driver).
//!
//! On failure the socket is dissolved back to "unconnected" (`connect(AF_UNSPEC)`, and
//! its pending error cleared) so a retry on the same fd behaves as after a failed direct
//! connect, and the program gets the errno a direct connect would have given.

use std::net::SocketAddr;

use laysocks_proto::{DomainName, Host, TargetAddr};
use laysocks_sys::net::{self as sysnet, sockaddr_family};
use laysocks_sys::{time, Errno};
use libc::{c_int, sockaddr, socklen_t};

use crate::driver::{self, Driver, Failure};
use crate::fdtable::{self, Socket, SocketState};
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::{epoll, layer, pending, pipeline, report};

hook! {
    /// `connect(2)`: proxied for TCP destinations that are not excluded.
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNABORTED);
    // SAFETY: the program's connect arguments, with connect(2)'s contract.
    body: unsafe { on_connect(fd, addr, len) }
}

hook! {
    /// glibc's exported alias of `connect`, used by some programs and libraries.
    fn __connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNABORTED);
    // SAFETY: the program's connect arguments, with connect(2)'s contract.
    body: unsafe { on_connect(fd, addr, len) }
}

/// # Safety
/// `addr`/`len` as the program passed them to `connect`.
pub(crate) unsafe fn on_connect(
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> HookResult<c_int> {
    // SAFETY: the program promised `len` readable bytes at `addr`, as connect(2) requires.
    let dest = match unsafe { sysnet::read_sockaddr(addr, len) } {
        Some(d) => d,
        None => {
            // SAFETY: as above.
            if unsafe { sockaddr_family(addr, len) } == Some(libc::AF_UNSPEC) {
                // Dissolving the association: the socket is no longer a proxied one.
                if fdtable::needs_attention(fd) {
                    epoll::unpark(fd);
                }
                fdtable::forget(fd);
            }
            return Ok(Outcome::Passthrough);
        }
    };
    // Only stream sockets over TCP (or MPTCP). Errors such as ENOTSOCK or EBADF are
    // left for the real connect to report. Datagram sockets get a UDP ASSOCIATE session
    // ([`crate::udp`]).
    match sysnet::socket_type(fd) {
        Ok(libc::SOCK_STREAM) => {}
        Ok(libc::SOCK_DGRAM) => return crate::udp::on_connect(fd, dest),
        _ => return Ok(Outcome::Passthrough),
    }
    match sysnet::socket_protocol(fd) {
        Ok(0) | Ok(libc::IPPROTO_TCP) | Ok(libc::IPPROTO_MPTCP) => {}
        _ => return Ok(Outcome::Passthrough),
    }
    let layer = layer::get();
    let family = sysnet::socket_domain(fd).map_err(crate::hook::HookError)?;
    // A socket we already manage: never start a second handshake on a stream.
    // Pending → EALREADY; established → 0 once after an asynchronous connect, then
    // EISCONN; failed → its errno once, after which a fresh connect starts over.
    if fdtable::is_ours(fd) {
        if let Some(r) = pending::reconnect(fd) {
            return r.map(|()| Outcome::Done(0)).map_err(Into::into);
        }
    }
    let (target, shown) = match route(dest, "TCP") {
        Route::Direct => {
            fdtable::forget(fd);
            report::direct(&layer.config, dest);
            return Ok(Outcome::Passthrough);
        }
        Route::Refuse(e) => {
            fdtable::forget(fd);
            return Err(e.into());
        }
        Route::Proxy { target, shown } => (target, shown),
    };
    if sysnet::is_nonblocking(fd).map_err(crate::hook::HookError)? {
        let candidates = candidates(fd, family);
        if candidates.is_empty() || layer::is_disabled() {
            let f = if candidates.is_empty() {
                Failure::NoProxyForFamily
            } else {
                Failure::LayerDisabled
            };
            report::failed(&layer.config, &target, &f, f.errno());
            return Err(f.errno().into());
        }
        return pending::start(fd, family, target, shown, candidates)
            .map(|()| Outcome::Done(0))
            .map_err(Into::into);
    }
    // The program's own blocking connect: signals and fd games end it as the kernel's
    // would (see `driver::BlockingGuard`).
    let _guard = driver::BlockingGuard::new(fd);
    match proxied_connect(fd, family, target, shown) {
        Ok(()) => Ok(Outcome::Done(0)),
        Err(e) => Err(e.into()),
    }
}

/// Where a TCP connect goes.
pub(crate) enum Route {
    Direct,
    /// Through the proxy to `target`; `shown` is what `getpeername` reports if it is
    /// not the target itself.
    Proxy {
        target: TargetAddr,
        shown: Option<SocketAddr>,
    },
    Refuse(Errno),
}

/// The routing rule (DESIGN §3, §4): a remote-DNS placeholder goes to the proxy as its
/// name; a DNS server that would be reached directly (the local stub resolver on
/// 127.0.0.53, an excluded network) is replaced by `dns_server` through the proxy, or
/// refused; other direct destinations go direct; everything else through the proxy.
///
/// Under the seccomp guard (`guarded`), what this layer would refuse — DNS over TCP or
/// UDP to a server reached directly (the local stub resolver) without a `dns_server` —
/// goes to the real libc call instead, where the guard traps it and answers it from the
/// same name table. What this layer can carry (through the proxy, to `dns_server` or
/// over UDP ASSOCIATE) it still carries. Nothing leaves the machine either way.
pub(crate) fn route(dest: SocketAddr, proto: &str) -> Route {
    let cfg = &layer::get().config;
    if let Some(dns) = layer::dns() {
        if dns.map.is_placeholder(dest.ip()) {
            let name = dns.map.slot_of(dest.ip()).and_then(|s| dns.map.name(s));
            return match name.and_then(|n| DomainName::new(&n).ok()) {
                Some(name) => Route::Proxy {
                    target: TargetAddr {
                        host: Host::Domain(name),
                        port: dest.port(),
                    },
                    shown: Some(dest),
                },
                None => {
                    report::refused(
                        cfg,
                        &format!("connect to {dest}: a placeholder address laysocks never handed out (a name resolved in another laysocks run?)"),
                    );
                    Route::Refuse(Errno(libc::EHOSTUNREACH))
                }
            };
        }
        if dest.port() == DNS_PORT && cfg.is_direct(dest) && !cfg.proxy_addrs.contains(&dest) {
            return match &dns.server {
                Some(server) => Route::Proxy {
                    target: *server,
                    shown: Some(dest),
                },
                None if cfg.guarded => Route::Direct,
                None => {
                    report::refused(
                        cfg,
                        &format!("refused DNS over {proto} to {dest}: it would bypass the proxy; set dns_server (--dns-server HOST) to send it through the proxy, or use --dns local"),
                    );
                    Route::Refuse(Errno(libc::ECONNREFUSED))
                }
            };
        }
    }
    if cfg.is_direct(dest) {
        return Route::Direct;
    }
    Route::Proxy {
        target: TargetAddr::from(dest),
        shown: None,
    }
}

/// The DNS port (RFC 1035 §4.2).
pub(crate) const DNS_PORT: u16 = 53;

/// A blocking connect: connects `fd` to the proxy and runs the handshake for `target`
/// inside the call; records the socket.
pub(crate) fn proxied_connect(
    fd: c_int,
    family: c_int,
    target: TargetAddr,
    shown: Option<SocketAddr>,
) -> Result<(), Errno> {
    let layer = layer::get();
    let cfg = &layer.config;
    let started = time::now_ms();
    // Only called for blocking sockets (on_connect sends non-blocking ones to `pending`).
    let app_sndtimeo = sysnet::send_timeout_ms(fd).unwrap_or(0);
    let mut timeout = u64::from(cfg.connect_timeout_ms);
    if app_sndtimeo > 0 {
        timeout = timeout.min(app_sndtimeo);
    }
    let deadline = started + timeout;
    // A handshake a signal interrupted, to go on in the background: its driver and
    // when a pipelined attempt gives up.
    let mut interrupted: Option<(Driver, u64)> = None;

    let result = (|| {
        if layer::is_disabled() {
            return Err((None, Failure::LayerDisabled));
        }
        let proxy =
            connect_to_proxy(fd, family, app_sndtimeo, started, deadline).map_err(|f| (None, f))?;
        if pipeline::wanted(&proxy) {
            let rtt = time::now_ms() - started;
            let patience = (time::now_ms() + pipeline::patience_ms(rtt)).min(deadline);
            let mut d = Driver::for_target(fd, &target, true);
            match driver::run_to_completion(&mut d, started, patience) {
                Ok(_) => return Ok(proxy),
                Err(f @ Failure::Interrupted { .. }) => {
                    interrupted = Some((d, patience));
                    return Err((Some(proxy), f));
                }
                Err(f) if pipeline::is_stall(&f) && time::now_ms() < deadline => {
                    // The proxy choked on the pipelined handshake: start over on the
                    // same socket with the ordinary one, and remember the proxy.
                    pipeline::remember_refuser(proxy);
                    sysnet::disconnect(fd);
                    connect_once(fd, &proxy, app_sndtimeo, started, deadline)
                        .map_err(|f| (None, f))?;
                }
                Err(f) => return Err((Some(proxy), f)),
            }
        }
        let mut d = Driver::for_target(fd, &target, false);
        match driver::run_to_completion(&mut d, started, deadline) {
            Ok(_) => Ok(proxy),
            Err(f @ Failure::Interrupted { .. }) => {
                interrupted = Some((d, 0));
                Err((Some(proxy), f))
            }
            Err(f) => Err((Some(proxy), f)),
        }
    })();

    match result {
        Ok(proxy) => {
            // The socket the handshake ran on (the number may hold another by now; the
            // table's inode check then drops the record).
            let inode = driver::start_inode(fd).unwrap_or_else(|| sysnet::inode(fd).unwrap_or(0));
            fdtable::insert(
                fd,
                Socket {
                    inode,
                    family,
                    shown,
                    state: SocketState::Established {
                        target,
                        proxy,
                        connect_reported: true,
                    },
                },
            );
            report::connected(cfg, &target, time::now_us() - started * 1000);
            Ok(())
        }
        Err((at, Failure::Interrupted { proxy })) => {
            // EINTR, and the connect goes on in the background as the kernel's does: the
            // socket becomes a pending one, finished by the program's next connect, poll
            // or read (`pending`).
            let inode = driver::start_inode(fd).unwrap_or(0);
            let candidates = candidates(fd, family);
            let current = proxy
                .or(at)
                .and_then(|p| candidates.iter().position(|c| *c == p))
                .unwrap_or(0);
            let (d, fallback) = match interrupted.take() {
                Some((d, f)) => (Some(d), f),
                None => (None, 0),
            };
            pending::adopt(
                fd,
                pending::Adopted {
                    inode,
                    family,
                    target,
                    shown,
                    candidates,
                    current,
                    driver: d,
                    fallback_at_ms: fallback,
                    started_ms: started,
                    deadline_ms: deadline,
                },
            );
            Err(Errno(libc::EINTR))
        }
        Err((_, failure)) => {
            // Another file on the number now: not ours to disconnect or forget.
            if failure != Failure::Replaced {
                sysnet::disconnect(fd);
                fdtable::forget(fd);
            }
            let errno = failure.errno();
            report::failed(cfg, &target, &failure, errno);
            Err(errno)
        }
    }
}

/// Proxy addresses this socket can reach, in configured order: IPv4 ones on an
/// `AF_INET` socket; on an `AF_INET6` socket IPv6 ones, and IPv4 ones as `::ffff:`
/// unless the socket is `IPV6_V6ONLY`.
pub(crate) fn candidates(fd: c_int, family: c_int) -> Vec<SocketAddr> {
    let cfg = &layer::get().config;
    match family {
        libc::AF_INET => cfg
            .proxy_addrs
            .iter()
            .filter(|a| a.is_ipv4())
            .copied()
            .collect(),
        libc::AF_INET6 => {
            let v6only = sysnet::v6only(fd);
            cfg.proxy_addrs
                .iter()
                .filter(|a| a.is_ipv6() || !v6only)
                .map(|a| sysnet::in_family(*a, libc::AF_INET6))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The kernel's blocking connect to the proxy, bounded by the deadline. Tries each
/// usable proxy address in turn; returns the one reached.
pub(crate) fn connect_to_proxy(
    fd: c_int,
    family: c_int,
    app_sndtimeo: u64,
    started: u64,
    deadline: u64,
) -> Result<SocketAddr, Failure> {
    let proxies = candidates(fd, family);
    if proxies.is_empty() {
        return Err(Failure::NoProxyForFamily);
    }
    let mut last = Failure::NoProxyForFamily;
    for (i, proxy) in proxies.iter().enumerate() {
        if i > 0 {
            // Linux lets a socket whose connect failed try again once dissolved.
            sysnet::disconnect(fd);
        }
        match connect_once(fd, proxy, app_sndtimeo, started, deadline) {
            Ok(()) => return Ok(*proxy),
            Err(
                f @ (Failure::Timeout { .. } | Failure::Interrupted { .. } | Failure::Replaced),
            ) => return Err(f),
            Err(f) => last = f,
        }
    }
    Err(last)
}

/// One blocking connect to `proxy`. The kernel's wait is bounded by our deadline
/// (SO_SNDTIMEO applies to connect on Linux); the program's own value is put back after.
fn connect_once(
    fd: c_int,
    proxy: &SocketAddr,
    app_sndtimeo: u64,
    started: u64,
    deadline: u64,
) -> Result<(), Failure> {
    let left = deadline.saturating_sub(time::now_ms()).max(1);
    let _ = sysnet::set_send_timeout_ms(fd, left);
    let r = sysnet::connect(fd, proxy);
    let _ = sysnet::set_send_timeout_ms(fd, app_sndtimeo);
    match r {
        Ok(()) => Ok(()),
        // SO_SNDTIMEO expired: the connect goes on in the background; we give up.
        Err(Errno(libc::EINPROGRESS)) | Err(Errno(libc::EAGAIN)) => Err(Failure::Timeout {
            after_ms: deadline.saturating_sub(started),
        }),
        // A signal interrupted the wait (always EINTR: SO_SNDTIMEO is set). The connect
        // continues; the program's own connect fails with EINTR if the kernel would
        // have failed it (`driver::wait_for`), else we wait for it here.
        Err(Errno(libc::EINTR)) => {
            let interrupt = driver::start_inode(fd).is_some()
                && (app_sndtimeo > 0 || laysocks_sys::signal::would_interrupt());
            if interrupt {
                return Err(Failure::Interrupted {
                    proxy: Some(*proxy),
                });
            }
            finish_async_connect(fd, started, deadline).map_err(|f| match f {
                Failure::Interrupted { .. } => Failure::Interrupted {
                    proxy: Some(*proxy),
                },
                f => f,
            })
        }
        Err(e) => Err(Failure::ProxyUnreachable(e)),
    }
}

/// Waits for an in-progress kernel connect and reads its outcome from `SO_ERROR`.
fn finish_async_connect(fd: c_int, started: u64, deadline: u64) -> Result<(), Failure> {
    driver::wait_for(fd, libc::POLLOUT, started, deadline)?;
    match sysnet::take_socket_error(fd) {
        Ok(0) => Ok(()),
        Ok(e) => Err(Failure::ProxyUnreachable(Errno(e))),
        Err(e) => Err(Failure::ProxyUnreachable(e)),
    }
}

// TCP Fast Open without connect(): `sendto`/`sendmsg` with `MSG_FASTOPEN` and a
// destination open the connection themselves and would go direct. The layer connects
// through the proxy first, then sends the data as an ordinary send on the stream, so
// the first bytes go after the proxy's reply.

hook! {
    /// `sendto(2)`: only `MSG_FASTOPEN` calls concern the layer.
    fn sendto(fd: c_int, buf: *const libc::c_void, n: libc::size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> libc::ssize_t;
    // SAFETY: addr/len as the program passed them.
    fast_path: flags & libc::MSG_FASTOPEN == 0 && !fdtable::needs_data_hooks(fd) && unsafe { crate::udp::goes_direct(addr, len) };
    on_panic: OnPanic::Fail(libc::ECONNABORTED);
    // SAFETY: the program's sendto arguments, with sendto(2)'s contract; with Fast Open
    // the data is sent unchanged, only without the destination and the flag.
    body: if flags & libc::MSG_FASTOPEN == 0 { unsafe { crate::udp::on_sendto(fd, buf, n, flags, addr, len) } } else { unsafe {
        on_fastopen(fd, addr, len, || {
            laysocks_sys::real::sendto()(fd, buf, n, flags & !libc::MSG_FASTOPEN, std::ptr::null(), 0)
        })
    } }
}

hook! {
    /// `sendmsg(2)`: datagrams of UDP sessions, and `MSG_FASTOPEN`.
    fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> libc::ssize_t;
    // SAFETY: msg is NULL or the program's msghdr, whose name has msg_namelen bytes.
    fast_path: msg.is_null() || (flags & libc::MSG_FASTOPEN == 0 && !fdtable::needs_data_hooks(fd)
        && unsafe { crate::udp::goes_direct((*msg).msg_name as *const sockaddr, (*msg).msg_namelen) });
    on_panic: OnPanic::Fail(libc::ECONNABORTED);
    // SAFETY: msg is non-null (fast path) and points to the program's msghdr, with
    // sendmsg(2)'s contract; the Fast Open copy differs only in having no destination.
    body: if flags & libc::MSG_FASTOPEN == 0 { unsafe { crate::udp::on_sendmsg(fd, &*msg, flags) } } else { unsafe {
        let mut copy = *msg;
        copy.msg_name = std::ptr::null_mut();
        copy.msg_namelen = 0;
        on_fastopen(fd, (*msg).msg_name as *const sockaddr, (*msg).msg_namelen, || {
            laysocks_sys::real::sendmsg()(fd, &copy, flags & !libc::MSG_FASTOPEN)
        })
    } }
}

/// # Safety
/// `addr`/`len` as the program passed them; `send` performs the program's send.
unsafe fn on_fastopen(
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
    send: impl FnOnce() -> libc::ssize_t,
) -> HookResult<libc::ssize_t> {
    // SAFETY: as for connect: `len` readable bytes at `addr`.
    match unsafe { on_connect(fd, addr, len) } {
        // Not ours to proxy (direct destination, not TCP, no address): the real call.
        Ok(Outcome::Passthrough) => Ok(Outcome::Passthrough),
        // Connected through the proxy: now it is a plain send on the stream.
        Ok(Outcome::Done(_)) => {
            let n = send();
            if n < 0 {
                Err(Errno::last().into())
            } else {
                Ok(Outcome::Done(n))
            }
        }
        Err(e) => Err(e),
    }
}
