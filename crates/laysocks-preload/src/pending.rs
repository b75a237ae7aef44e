//! Non-blocking connects: the handshake runs inside the program's own event loop.
//!
//! This is the paper's core (DESIGN §3.4). A `connect()` on a non-blocking socket starts
//! the kernel connect to the proxy and returns `EINPROGRESS` at once. From then on the
//! handshake moves forward in whichever call the program makes that can observe the
//! socket — `poll`/`select`/`epoll_wait` ([`crate::readiness`], [`crate::epoll`]),
//! `getsockopt(SO_ERROR)`, a second `connect`, `getpeername`, a read or a write — each
//! of which calls [`advance`]. The program is told "writable" only once the proxy has
//! said the target is reached; a failure looks like a refused connect (`POLLOUT|POLLERR|
//! POLLHUP`) and its errno comes out once, where a direct connect's would ([`collect`]).
//!
//! A pending socket moves through two phases: the kernel connect to the proxy (we wait
//! for `POLLOUT`, then read `SO_ERROR`; on failure the next proxy address is tried), then
//! the SOCKS5 exchange ([`Driver::advance`], shared with the blocking path). Each call to
//! [`advance`] does what the socket allows without blocking, under the fd table's lock,
//! so two threads never drive one handshake at once. Whenever what the handshake waits
//! for changes, the socket's epoll registrations are re-parked ([`crate::epoll::park`]);
//! when it ends they are given back to the program ([`crate::epoll::unpark`]).

use std::net::SocketAddr;

use laysocks_proto::TargetAddr;
use laysocks_sys::net as sysnet;
use laysocks_sys::{time, Errno};
use libc::c_int;

use crate::driver::{Driver, Failure, Step};
use crate::fdtable::{self, Socket, SocketState};
use crate::{epoll, layer, pipeline, report};

/// A handshake in progress on a non-blocking socket.
#[derive(Debug)]
pub struct Pending {
    target: TargetAddr,
    phase: Phase,
    /// The SOCKS5 exchange, made when the proxy connect completes (it depends on the
    /// proxy: pipelined or not).
    driver: Option<Driver>,
    /// A pipelined attempt gives up and falls back to the ordinary handshake at this
    /// time (0: not pipelined).
    fallback_at_ms: u64,
    /// Proxy addresses usable from this socket, and which one is being tried.
    candidates: Vec<SocketAddr>,
    current: usize,
    started_ms: u64,
    deadline_ms: u64,
    /// The `poll` events the epoll registrations are parked on (0: not parked yet).
    parked: i16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The kernel connect to `candidates[current]` is in flight.
    ProxyConnect,
    /// Talking SOCKS5.
    Negotiate,
}

/// What a hook learns from looking at a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Not (or no longer) a socket the layer manages.
    NotOurs,
    /// Still negotiating: wait for `events` on the socket, at most until `deadline_ms`.
    Pending { events: i16, deadline_ms: u64 },
    /// Connected through the proxy.
    Established,
    /// Failed; the errno is waiting to be collected.
    Failed(Errno),
}

/// What changed during an [`advance`], to be reported after the table lock is released.
enum Transition {
    Connected {
        target: TargetAddr,
        micros: u64,
    },
    Failed {
        target: TargetAddr,
        failure: Failure,
    },
}

/// Starts a non-blocking proxied connect. `Ok(())` if the handshake already finished
/// (the program gets 0), `Err(EINPROGRESS)` normally, or the errno of an immediate
/// failure (no proxy reachable at all), as a direct non-blocking connect would.
pub fn start(
    fd: c_int,
    family: c_int,
    target: TargetAddr,
    shown: Option<SocketAddr>,
    candidates: Vec<SocketAddr>,
) -> Result<(), Errno> {
    let layer = layer::get();
    let started = time::now_ms();
    let deadline = started + u64::from(layer.config.connect_timeout_ms);
    let mut phase = None;
    let mut current = 0;
    let mut last = Failure::NoProxyForFamily;
    while current < candidates.len() {
        if current > 0 {
            sysnet::disconnect(fd);
        }
        match sysnet::connect(fd, &candidates[current]) {
            Ok(()) => {
                phase = Some(Phase::Negotiate);
                break;
            }
            Err(Errno(libc::EINPROGRESS)) => {
                phase = Some(Phase::ProxyConnect);
                break;
            }
            Err(e) => last = Failure::ProxyUnreachable(e),
        }
        current += 1;
    }
    let Some(phase) = phase else {
        sysnet::disconnect(fd);
        let errno = last.errno();
        report::failed(&layer.config, &target, &last, errno);
        return Err(errno);
    };
    let inode = sysnet::inode(fd).unwrap_or(0);
    fdtable::insert(
        fd,
        Socket {
            inode,
            family,
            shown,
            state: SocketState::Pending(Box::new(Pending {
                target,
                phase,
                driver: None,
                fallback_at_ms: 0,
                candidates,
                current,
                started_ms: started,
                deadline_ms: deadline,
                parked: 0,
            })),
        },
    );
    // On a fast link the proxy may already have answered; never make the program wait
    // for a poll it need not make.
    match advance(fd) {
        Observed::Pending { .. } => Err(Errno(libc::EINPROGRESS)),
        Observed::Established => {
            mark_connect_reported(fd);
            Ok(())
        }
        Observed::Failed(_) => Err(collect(fd).unwrap_or(Errno(libc::ECONNREFUSED))),
        Observed::NotOurs => Err(Errno(libc::EINPROGRESS)),
    }
}

/// A blocking connect a signal interrupted ([`crate::connect::proxied_connect`]), to go
/// on in the background like the kernel's: where it stood.
pub struct Adopted {
    pub inode: u64,
    pub family: c_int,
    pub target: TargetAddr,
    pub shown: Option<SocketAddr>,
    pub candidates: Vec<SocketAddr>,
    /// The proxy being connected to or negotiated with.
    pub current: usize,
    /// The SOCKS5 exchange, if it had begun (`None`: the proxy connect is in flight).
    pub driver: Option<Driver>,
    pub fallback_at_ms: u64,
    pub started_ms: u64,
    pub deadline_ms: u64,
}

/// Records an interrupted blocking connect as pending (see [`Adopted`]); its deadline is
/// the one the blocking call had.
pub fn adopt(fd: c_int, a: Adopted) {
    let phase = if a.driver.is_some() {
        Phase::Negotiate
    } else {
        Phase::ProxyConnect
    };
    fdtable::insert(
        fd,
        Socket {
            inode: a.inode,
            family: a.family,
            shown: a.shown,
            state: SocketState::Pending(Box::new(Pending {
                target: a.target,
                phase,
                driver: a.driver,
                fallback_at_ms: a.fallback_at_ms,
                candidates: a.candidates,
                current: a.current,
                started_ms: a.started_ms,
                deadline_ms: a.deadline_ms,
                parked: 0,
            })),
        },
    );
}

impl Pending {
    /// The record now lives under another fd number (the original was closed and a
    /// duplicate took the handshake over): that number's epoll registrations are not
    /// parked yet.
    pub(crate) fn moved_to_new_fd(&mut self, fd: c_int) {
        self.parked = 0;
        if let Some(d) = &mut self.driver {
            d.set_fd(fd);
        }
    }
}

/// Moves the handshake on `fd` forward as far as the socket allows now. A duplicate of
/// a pending socket drives the original's record (through the original's number: one
/// kernel socket, one handshake).
pub fn advance(fd: c_int) -> Observed {
    let lead = fdtable::leader(fd);
    let result = fdtable::with(lead, |sock| step(lead, sock));
    if !matches!(result, Some((Observed::Pending { .. }, _))) {
        fdtable::settle_aliases(lead);
    }
    match result {
        None => Observed::NotOurs,
        Some((observed, transition)) => {
            if let Some(t) = transition {
                let cfg = &layer::get().config;
                match t {
                    Transition::Connected { target, micros } => {
                        report::connected(cfg, &target, micros)
                    }
                    Transition::Failed { target, failure } => {
                        report::failed(cfg, &target, &failure, failure.errno())
                    }
                }
            }
            observed
        }
    }
}

fn step(fd: c_int, sock: &mut Socket) -> (Observed, Option<Transition>) {
    let p = match &mut sock.state {
        SocketState::Pending(p) => p,
        SocketState::Established { .. } => return (Observed::Established, None),
        SocketState::Failed { errno } => return (Observed::Failed(*errno), None),
        // A UDP session is not a handshake: nothing to advance or wait for.
        SocketState::Udp(_) => return (Observed::NotOurs, None),
    };
    let outcome = drive(fd, p);
    match outcome {
        Ok(events) => {
            // Waits must wake for the deadline, and for a pipelined attempt's patience.
            let wake = match p.fallback_at_ms {
                0 => p.deadline_ms,
                f => f.min(p.deadline_ms),
            };
            if p.parked != events {
                p.parked = events;
                epoll::park(fd, events, wake);
                for d in fdtable::duplicates_of(fd) {
                    epoll::park(d, events, wake);
                }
            }
            (
                Observed::Pending {
                    events,
                    deadline_ms: wake,
                },
                None,
            )
        }
        Err(Ok(())) => {
            let target = p.target;
            let proxy = p.candidates[p.current];
            let micros = time::now_us().saturating_sub(p.started_ms * 1000);
            sock.state = SocketState::Established {
                target,
                proxy,
                connect_reported: false,
            };
            epoll::unpark(fd);
            for d in fdtable::duplicates_of(fd) {
                epoll::unpark(d);
            }
            (
                Observed::Established,
                Some(Transition::Connected { target, micros }),
            )
        }
        Err(Err(failure)) => {
            let target = p.target;
            // Dissolve the connection to the proxy. The kernel then reports the socket
            // as a failed connect (OUT|ERR|HUP) until the program collects the error.
            sysnet::disconnect_keep_error(fd);
            let errno = failure.errno();
            sock.state = SocketState::Failed { errno };
            epoll::unpark(fd);
            for d in fdtable::duplicates_of(fd) {
                epoll::unpark(d);
            }
            (
                Observed::Failed(errno),
                Some(Transition::Failed { target, failure }),
            )
        }
    }
}

/// `Ok(events)`: still waiting for those poll events; `Err(Ok)`: established;
/// `Err(Err(f))`: failed.
fn drive(fd: c_int, p: &mut Pending) -> Result<i16, Result<(), Failure>> {
    for _ in 0..16 {
        if time::now_ms() >= p.deadline_ms {
            return Err(Err(Failure::Timeout {
                after_ms: p.deadline_ms - p.started_ms,
            }));
        }
        match p.phase {
            Phase::ProxyConnect => {
                match sysnet::poll_one(fd, libc::POLLOUT, 0) {
                    Ok(0) => return Ok(libc::POLLOUT),
                    Ok(_) => {}
                    Err(Errno(libc::EINTR)) => continue,
                    Err(e) => return Err(Err(Failure::Io(e))),
                }
                match sysnet::take_socket_error(fd) {
                    Ok(0) => p.phase = Phase::Negotiate,
                    Ok(e) => try_next_proxy(fd, p, Errno(e))?,
                    Err(e) => try_next_proxy(fd, p, e)?,
                }
            }
            Phase::Negotiate => {
                let proxy = p.candidates[p.current];
                let driver = p.driver.get_or_insert_with(|| {
                    let pipelined = pipeline::wanted(&proxy);
                    if pipelined {
                        let rtt = time::now_ms() - p.started_ms;
                        p.fallback_at_ms = time::now_ms() + pipeline::patience_ms(rtt);
                    }
                    Driver::for_target(fd, &p.target, pipelined)
                });
                let stalled = p.fallback_at_ms != 0 && time::now_ms() >= p.fallback_at_ms;
                let step = if stalled {
                    Step::Failed(Failure::Timeout { after_ms: 0 })
                } else {
                    driver.advance()
                };
                match step {
                    Step::Wait(events) => return Ok(events),
                    Step::Done(_) => return Err(Ok(())),
                    Step::Failed(f) if p.fallback_at_ms != 0 && pipeline::is_stall(&f) => {
                        // The proxy choked on the pipelined handshake: reconnect this
                        // socket and run the ordinary one (same deadline), quietly.
                        pipeline::remember_refuser(proxy);
                        p.fallback_at_ms = 0;
                        p.driver = Some(Driver::for_target(fd, &p.target, false));
                        sysnet::disconnect(fd);
                        match sysnet::connect(fd, &proxy) {
                            Ok(()) => {}
                            Err(Errno(libc::EINPROGRESS)) => p.phase = Phase::ProxyConnect,
                            Err(e) => return Err(Err(Failure::ProxyUnreachable(e))),
                        }
                    }
                    Step::Failed(f) => return Err(Err(f)),
                }
            }
        }
    }
    Ok(libc::POLLIN | libc::POLLOUT)
}

/// The proxy at `candidates[current]` refused or was unreachable: start on the next.
fn try_next_proxy(fd: c_int, p: &mut Pending, err: Errno) -> Result<(), Result<(), Failure>> {
    let mut last = err;
    while p.current + 1 < p.candidates.len() {
        p.current += 1;
        p.driver = None;
        p.fallback_at_ms = 0;
        sysnet::disconnect(fd);
        match sysnet::connect(fd, &p.candidates[p.current]) {
            Ok(()) => {
                p.phase = Phase::Negotiate;
                return Ok(());
            }
            Err(Errno(libc::EINPROGRESS)) => {
                p.phase = Phase::ProxyConnect;
                return Ok(());
            }
            Err(e) => last = e,
        }
    }
    Err(Err(Failure::ProxyUnreachable(last)))
}

/// If `fd` failed, hands its errno over exactly once: the record is dropped and the
/// kernel's own leftover error (`ECONNRESET` from the disconnect) cleared, so the
/// socket then behaves like one whose direct connect failed.
pub fn collect(fd: c_int) -> Option<Errno> {
    let errno = fdtable::with(fd, |s| match s.state {
        SocketState::Failed { errno } => Some(errno),
        _ => None,
    })??;
    fdtable::forget(fd);
    let _ = sysnet::take_socket_error(fd);
    Some(errno)
}

/// Notes that the program has been told the connect succeeded (via `connect` itself).
pub fn mark_connect_reported(fd: c_int) {
    fdtable::with(fd, |s| {
        if let SocketState::Established {
            connect_reported, ..
        } = &mut s.state
        {
            *connect_reported = true;
        }
    });
}

/// A second `connect()` on a socket the layer manages: `Some(result)` answers it
/// (while pending: `EALREADY` on a non-blocking socket, while a blocking one waits for
/// the end as Linux's `__inet_stream_connect` does; 0 once after success, then
/// `EISCONN`; the errno once after failure); `None` means "not ours, or a failure
/// already collected: connect afresh".
pub fn reconnect(fd: c_int) -> Option<Result<(), Errno>> {
    match advance(fd) {
        Observed::NotOurs => None,
        Observed::Pending { .. } if !sysnet::is_nonblocking(fd).unwrap_or(true) => {
            match wait_until_done(fd) {
                // Established, or the record went (another socket on the number now).
                Ok(()) => reconnect(fd),
                Err(e) => Some(Err(e)),
            }
        }
        Observed::Pending { .. } => Some(Err(Errno(libc::EALREADY))),
        Observed::Established => fdtable::with(fd, |s| match &mut s.state {
            SocketState::Established {
                connect_reported, ..
            } if !*connect_reported => {
                *connect_reported = true;
                Ok(())
            }
            _ => Err(Errno(libc::EISCONN)),
        }),
        Observed::Failed(_) => collect(fd).map(Err),
    }
}

/// For a blocking data call on a pending socket: waits (with `poll`, under the
/// handshake's deadline) until the handshake has ended.
pub fn wait_until_done(fd: c_int) -> Result<(), Errno> {
    loop {
        match advance(fd) {
            Observed::NotOurs | Observed::Established => return Ok(()),
            Observed::Failed(_) => return Err(collect(fd).unwrap_or(Errno(libc::ECONNRESET))),
            Observed::Pending {
                events,
                deadline_ms,
            } => {
                let left = deadline_ms
                    .saturating_sub(time::now_ms())
                    .min(i32::MAX as u64) as i32;
                match sysnet::poll_one(fd, events, left.max(1)) {
                    // The kernel's blocking connect, send or recv on a connecting
                    // socket fails with EINTR unless the call would be restarted.
                    Err(Errno(libc::EINTR)) if crate::driver::interrupted_by_signal(fd) => {
                        return Err(Errno(libc::EINTR))
                    }
                    Ok(_) | Err(Errno(libc::EINTR)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// The gate of every read/write-family hook on a socket that needs attention:
/// `Ok(())` to let the call through, or the errno to fail it with (`EAGAIN` while the
/// handshake runs on a non-blocking socket or with `MSG_DONTWAIT`; the failure's errno,
/// once).
pub fn data_gate(fd: c_int, dontwait: bool) -> Result<(), Errno> {
    match advance(fd) {
        Observed::NotOurs | Observed::Established => Ok(()),
        Observed::Failed(_) => match collect(fd) {
            Some(e) => Err(e),
            None => Ok(()),
        },
        Observed::Pending { .. } => {
            if dontwait || sysnet::is_nonblocking(fd).unwrap_or(true) {
                Err(Errno(libc::EAGAIN))
            } else {
                wait_until_done(fd)
            }
        }
    }
}
