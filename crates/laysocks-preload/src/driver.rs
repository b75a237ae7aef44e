//! Moves the engine's bytes over the application's socket.
//!
//! [`Driver::advance`] does as much of the SOCKS5 exchange as the socket allows right
//! now and says what it waits for next (`POLLOUT` to send, `POLLIN` for a reply). It
//! never blocks and never changes the socket's flags: sends and receives carry
//! `MSG_DONTWAIT` per call. Reads ask for exactly [`ClientHandshake::bytes_needed`]
//! bytes, so application data the proxy forwards right after its reply stays in the
//! kernel for the program to read.
//!
//! [`run_to_completion`] is the blocking form used inside `connect()`: advance, `poll`
//! the one fd for what is needed with the time left, repeat until done or the deadline.
//! Non-blocking connects ([`crate::pending`]) call `advance` from the program's own
//! readiness calls instead.

use laysocks_proto::{Awaiting, ClientHandshake, ClientStatus, Error as ProtoError, TargetAddr};
use laysocks_sys::net::{poll_one, recv_nonblocking, send_nonblocking};
use laysocks_sys::{time, Errno};
use libc::c_int;

/// Why a proxied connect failed, with what to tell the program and the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The proxy could not be reached: the errno of that connect.
    ProxyUnreachable(Errno),
    /// No proxy address usable from this socket's family.
    NoProxyForFamily,
    /// The proxy hung up (EOF) before its reply was complete; where the exchange stood.
    ProxyClosed(Awaiting),
    /// A socket error in the middle of the SOCKS5 exchange (RST from the proxy, …), and
    /// where the exchange stood.
    Broken(Errno, Awaiting),
    /// A socket error during the exchange (RST from the proxy, …).
    Io(Errno),
    /// The proxy answered, but with a refusal or something that is not SOCKS5.
    Protocol(ProtoError),
    /// The proxy could not reach a target given by name (remote DNS): most often the
    /// name does not resolve on the proxy's side. A direct program would have failed
    /// to resolve it; at connect time the nearest errno is `EHOSTUNREACH`.
    NameUnreachable(ProtoError),
    /// The deadline passed first.
    Timeout { after_ms: u64 },
    /// The layer turned itself off after an internal error.
    LayerDisabled,
    /// A signal interrupted a blocking connect, and the kernel would not have restarted
    /// the call ([`laysocks_sys::signal`]): the program gets `EINTR` and the handshake
    /// goes on in the background. `proxy`: the proxy being connected to, when known.
    Interrupted { proxy: Option<std::net::SocketAddr> },
    /// Another thread closed the fd, or put another file on its number (`dup2`), while
    /// a blocking connect waited: the handshake must not go on on what is there now.
    Replaced,
}

impl Failure {
    /// The errno a direct connect would have given for the same situation.
    pub fn errno(&self) -> Errno {
        Errno(match self {
            Failure::ProxyUnreachable(e) | Failure::Io(e) => e.0,
            Failure::NoProxyForFamily => libc::EAFNOSUPPORT,
            Failure::ProxyClosed(_) => libc::ECONNRESET,
            Failure::Broken(e, _) => e.0,
            Failure::Timeout { .. } => libc::ETIMEDOUT,
            Failure::LayerDisabled => libc::ECONNABORTED,
            Failure::Interrupted { .. } => libc::EINTR,
            Failure::Replaced => libc::EBADF,
            Failure::NameUnreachable(_) => libc::EHOSTUNREACH,
            Failure::Protocol(e) => Errno::for_socks(e.kind()).0,
        })
    }

    /// A short reason for the one-line message.
    pub fn reason(&self) -> String {
        match self {
            // A connect can only end in ECONNRESET once the proxy had accepted it: it
            // reset the connection before the handshake began (possibly before the
            // layer saw the connect complete), not "unreachable".
            Failure::ProxyUnreachable(Errno(libc::ECONNRESET)) => {
                "the proxy reset the connection before answering the greeting".into()
            }
            Failure::ProxyUnreachable(e) => format!("cannot reach the proxy: {}", e.description()),
            Failure::NoProxyForFamily => {
                "the proxy has no address this socket's family can reach (IPv4 socket, IPv6-only proxy)".into()
            }
            Failure::ProxyClosed(at) => format!("the proxy closed the connection {}", at),
            Failure::Broken(Errno(libc::ECONNRESET), at) => {
                format!("the proxy reset the connection {}", at)
            }
            Failure::Broken(e, at) => format!(
                "the connection to the proxy failed {}: {}",
                at,
                e.description()
            ),
            Failure::Io(e) => format!("connection to the proxy failed during the handshake: {}", e.description()),
            Failure::Protocol(e) => e.explain(),
            Failure::NameUnreachable(e) => format!(
                "{e} (the name may not resolve on the proxy's side)"
            ),
            Failure::Timeout { after_ms } => format!(
                "no complete answer from the proxy within {:.1} s (raise --connect-timeout if the proxy is slow)",
                *after_ms as f64 / 1000.0
            ),
            Failure::LayerDisabled => "the layer is disabled after an internal error".into(),
            Failure::Interrupted { .. } => "interrupted by a signal".into(),
            Failure::Replaced => {
                "the socket was closed or replaced by another thread during the handshake".into()
            }
        }
    }
}

/// What the handshake waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Call `advance` again once the socket has these `poll` events.
    Wait(i16),
    /// The proxy reached the target; its reply carried this bound address.
    Done(TargetAddr),
    Failed(Failure),
}

/// One handshake on one socket.
#[derive(Debug)]
pub struct Driver {
    fd: c_int,
    engine: ClientHandshake,
    /// The target is a name the proxy resolves (see [`Failure::NameUnreachable`]).
    named: bool,
}

impl Driver {
    pub fn new(fd: c_int, engine: ClientHandshake) -> Self {
        Driver {
            fd,
            engine,
            named: false,
        }
    }

    /// A driver for `target`'s handshake (pipelined or not, see [`crate::pipeline`]).
    pub fn for_target(fd: c_int, target: &TargetAddr, pipelined: bool) -> Self {
        Driver {
            fd,
            engine: crate::pipeline::engine(target, pipelined),
            named: matches!(target.host, laysocks_proto::Host::Domain(_)),
        }
    }

    /// The socket is now reached through another fd number (a duplicate took over
    /// after the original was closed).
    pub fn set_fd(&mut self, fd: c_int) {
        self.fd = fd;
    }

    /// A refusal, as the program should see it. RFC 1928 §6 has "host unreachable"
    /// (REP 4), but many servers (microsocks among them) answer a failed lookup with
    /// "general failure" (REP 1); for a named target both mean the name led nowhere.
    fn refusal(&self, e: ProtoError) -> Failure {
        use laysocks_proto::ReplyCode as R;
        match e {
            ProtoError::Reply(R::GeneralFailure | R::HostUnreachable) if self.named => {
                Failure::NameUnreachable(e)
            }
            e => Failure::Protocol(e),
        }
    }

    /// Progress without blocking; see the module docs.
    pub fn advance(&mut self) -> Step {
        // Bounded: each turn either moves bytes or returns.
        let mut buf = [0u8; 512];
        for _ in 0..64 {
            match self.engine.status() {
                ClientStatus::Done(bound) => return Step::Done(bound),
                ClientStatus::Failed(e) => return Step::Failed(self.refusal(e)),
                ClientStatus::NeedWrite => {
                    match send_nonblocking(self.fd, self.engine.pending_output()) {
                        Ok(n) => self.engine.consume_output(n),
                        Err(Errno(libc::EAGAIN)) => return Step::Wait(libc::POLLOUT),
                        Err(Errno(libc::EINTR)) => continue,
                        Err(e) => return Step::Failed(Failure::Broken(e, self.engine.awaiting())),
                    }
                }
                ClientStatus::NeedRead => {
                    let want = self.engine.bytes_needed().clamp(1, buf.len());
                    match recv_nonblocking(self.fd, &mut buf[..want]) {
                        Ok(0) => return Step::Failed(Failure::ProxyClosed(self.engine.awaiting())),
                        Ok(n) => {
                            if let Err(e) = self.engine.handle_input(&buf[..n]) {
                                return Step::Failed(self.refusal(e));
                            }
                        }
                        Err(Errno(libc::EAGAIN)) => return Step::Wait(libc::POLLIN),
                        Err(Errno(libc::EINTR)) => continue,
                        Err(e) => return Step::Failed(Failure::Broken(e, self.engine.awaiting())),
                    }
                }
            }
        }
        Step::Wait(libc::POLLIN | libc::POLLOUT)
    }
}

/// Runs the handshake to the end or until `deadline_ms` (monotonic), waiting with `poll`.
pub fn run_to_completion(
    driver: &mut Driver,
    started_ms: u64,
    deadline_ms: u64,
) -> Result<TargetAddr, Failure> {
    loop {
        match driver.advance() {
            Step::Done(bound) => return Ok(bound),
            Step::Failed(f) => return Err(f),
            Step::Wait(events) => wait_for(driver.fd, events, started_ms, deadline_ms)?,
        }
    }
}

/// The program's blocking `connect()` running on this thread, if any: its fd and the
/// socket's inode when the call began. [`wait_for`] uses it to behave as the kernel's
/// connect would while the program waits: a signal the kernel would not restart the
/// call for ends the wait with [`Failure::Interrupted`], and a wait that returns to find
/// another file on the fd number (closed, `dup2`) ends with [`Failure::Replaced`] instead
/// of writing the handshake into someone else's socket. The layer's own sockets (DNS
/// over TCP, UDP control connections) have no guard: their waits retry `EINTR`.
#[derive(Clone, Copy)]
struct Blocking {
    fd: c_int,
    inode: u64,
}

thread_local! {
    static BLOCKING: std::cell::Cell<Option<Blocking>> = const { std::cell::Cell::new(None) };
}

/// Marks `fd` as the program's blocking connect on this thread until dropped.
pub struct BlockingGuard {
    prev: Option<Blocking>,
}

impl BlockingGuard {
    pub fn new(fd: c_int) -> BlockingGuard {
        let inode = laysocks_sys::net::inode(fd).unwrap_or(0);
        let prev = BLOCKING.with(|b| b.replace(Some(Blocking { fd, inode })));
        BlockingGuard { prev }
    }
}

impl Drop for BlockingGuard {
    fn drop(&mut self) {
        BLOCKING.with(|b| b.set(self.prev));
    }
}

fn guarded(fd: c_int) -> Option<Blocking> {
    BLOCKING.with(|b| b.get()).filter(|b| b.fd == fd)
}

/// The inode `fd` had when the program's blocking connect on it began, if one runs on
/// this thread ([`BlockingGuard`]).
pub fn start_inode(fd: c_int) -> Option<u64> {
    guarded(fd).map(|g| g.inode)
}

/// After `EINTR` in a wait for a blocking connect or data call of the program on `fd`:
/// would the kernel have failed the call with `EINTR` (true) or restarted it? Never
/// restarted with `SO_SNDTIMEO` set on the socket (signal(7)); otherwise as the
/// handlers say ([`laysocks_sys::signal::would_interrupt`]).
pub fn interrupted_by_signal(fd: c_int) -> bool {
    laysocks_sys::net::send_timeout_ms(fd).unwrap_or(0) > 0
        || laysocks_sys::signal::would_interrupt()
}

/// How long a guarded wait polls before it checks that the fd is still its socket.
const GUARD_SLICE_MS: u64 = 100;

/// Waits until `fd` has `events` (or an error/hangup, which the next step will read),
/// retrying `EINTR` with the time that is left — unless `fd` is the program's blocking
/// connect on this thread ([`BlockingGuard`]), which ends as the kernel's would.
pub fn wait_for(fd: c_int, events: i16, started_ms: u64, deadline_ms: u64) -> Result<(), Failure> {
    loop {
        let now = time::now_ms();
        if now >= deadline_ms {
            return Err(Failure::Timeout {
                after_ms: deadline_ms.saturating_sub(started_ms),
            });
        }
        let guard = guarded(fd);
        // A guarded wait looks at the fd number at least every GUARD_SLICE_MS: a poll
        // that began on the old socket goes on polling whatever is on the number now,
        // and may never wake if that is quiet.
        let cap = if guard.is_some() {
            GUARD_SLICE_MS
        } else {
            i32::MAX as u64
        };
        let left = (deadline_ms - now).min(cap) as i32;
        let r = poll_one(fd, events, left);
        if let Some(g) = guard {
            if laysocks_sys::net::inode(fd).ok() != Some(g.inode) {
                return Err(Failure::Replaced);
            }
            if r == Err(Errno(libc::EINTR)) && interrupted_by_signal(fd) {
                return Err(Failure::Interrupted { proxy: None });
            }
        }
        match r {
            Ok(0) => continue, // timed out: the loop head reports it
            Ok(_) => return Ok(()),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use laysocks_proto::{ReplyCode, ServerAuth, ServerHandshake, ServerStatus};

    fn socketpair() -> (c_int, c_int) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid out-array of two ints.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        (fds[0], fds[1])
    }

    fn close(fd: c_int) {
        // SAFETY: closing a test-owned fd.
        unsafe { libc::close(fd) };
    }

    /// Serves one step of an in-memory proxy on `fd` with our own server engine.
    fn serve(fd: c_int, server: &mut ServerHandshake, extra: &[u8]) {
        let mut buf = [0u8; 600];
        for _ in 0..20 {
            match server.status() {
                ServerStatus::NeedWrite => {
                    let n = send_nonblocking(fd, server.pending_output()).unwrap();
                    server.consume_output(n);
                }
                ServerStatus::NeedRead => match recv_nonblocking(fd, &mut buf) {
                    Ok(n) => {
                        server.handle_input(&buf[..n]).unwrap();
                    }
                    Err(_) => return,
                },
                ServerStatus::Request(_) => {
                    server.reply(
                        ReplyCode::Succeeded,
                        &"0.0.0.0:0".parse::<std::net::SocketAddr>().unwrap().into(),
                    );
                }
                ServerStatus::Done => {
                    send_nonblocking(fd, extra).unwrap();
                    return;
                }
                _ => return,
            }
        }
    }

    #[test]
    fn handshake_over_a_socket_leaves_app_data_unread() {
        let (client, proxy) = socketpair();
        let target: TargetAddr = "203.0.113.2:80"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        let mut driver = Driver::new(client, ClientHandshake::new(&target, None));
        let mut server = ServerHandshake::new(ServerAuth::NoAuth);
        let mut done = None;
        for _ in 0..20 {
            match driver.advance() {
                Step::Done(b) => {
                    done = Some(b);
                    break;
                }
                Step::Failed(f) => panic!("{f:?}"),
                Step::Wait(_) => serve(proxy, &mut server, b"HTTP/1.0 200 OK\r\n"),
            }
        }
        assert!(done.is_some());
        let mut rest = [0u8; 64];
        let n = recv_nonblocking(client, &mut rest).unwrap();
        assert_eq!(&rest[..n], b"HTTP/1.0 200 OK\r\n");
        close(client);
        close(proxy);
    }

    #[test]
    fn eof_and_timeout_are_failures() {
        let (client, proxy) = socketpair();
        let target: TargetAddr = "203.0.113.2:80"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        let mut driver = Driver::new(client, ClientHandshake::new(&target, None));
        let now = time::now_ms();
        let r = run_to_completion(&mut driver, now, now + 50);
        assert!(matches!(r, Err(Failure::Timeout { .. })), "{r:?}");
        assert_eq!(Failure::Timeout { after_ms: 50 }.errno().0, libc::ETIMEDOUT);
        // The proxy reads the greeting, then hangs up without answering: a clean EOF.
        // (Closing with the greeting unread would be a reset instead, also a failure.)
        let mut greeting = [0u8; 16];
        assert_eq!(recv_nonblocking(proxy, &mut greeting), Ok(3));
        close(proxy);
        let r = run_to_completion(&mut driver, now, time::now_ms() + 1000);
        let closed = Failure::ProxyClosed(Awaiting::MethodSelection { received: 0 });
        assert_eq!(r, Err(closed.clone()));
        assert_eq!(closed.errno().0, libc::ECONNRESET);
        assert_eq!(
            closed.reason(),
            "the proxy closed the connection before answering the greeting"
        );
        let cut = Failure::Broken(
            Errno(libc::ECONNRESET),
            Awaiting::Reply {
                received: 4,
                total: None,
            },
        );
        assert_eq!(cut.errno().0, libc::ECONNRESET);
        assert_eq!(
            cut.reason(),
            "the proxy reset the connection after 4 bytes of its reply"
        );
        close(client);
    }
}
