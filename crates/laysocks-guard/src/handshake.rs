//! The SOCKS5 exchange the supervisor runs on its copy of a program's socket.
//!
//! The program's thread waits in `connect` meanwhile; with `WAIT_KILLABLE_RECV` only a
//! fatal signal ends that wait (DESIGN §6), so the program's own timeouts cannot bound
//! the handshake and [`connect_through`] enforces one deadline (`connect_timeout_ms`) over
//! the TCP connect to the proxy and the whole exchange.
//!
//! The copy shares the program's open file description, so its `O_NONBLOCK` is the
//! program's: it is set for the handshake (every wait is a `poll` with the time left)
//! and put back as it was afterwards ([`NonBlocking`]). Reads take exactly
//! [`ClientHandshake::bytes_needed`] bytes, so data the proxy forwards right after its
//! reply stays in the kernel for the program.
//!
//! [`Failure`] and its errno mapping are the preload layer's (DESIGN §3.5,
//! `laysocks-preload/src/driver.rs`), minus the cases only a hook inside the program
//! has (signals, fds replaced under it): the program sees the same errno and reason
//! whichever layer made the connect. The preload crate cannot be a dependency here — it
//! exports `connect` and friends under their libc names.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use laysocks_proto::{
    Awaiting, ClientHandshake, ClientStatus, Credentials, Error as ProtoError, Host, TargetAddr,
};
use laysocks_sys::net::{poll_one, recv_nonblocking, send_nonblocking, take_socket_error};
use laysocks_sys::{seccomp as sys, time, Errno};

/// Why a proxied connect failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The proxy could not be reached: the errno of that connect.
    ProxyUnreachable(Errno),
    /// No proxy address usable from this socket's family.
    NoProxyForFamily,
    /// The proxy hung up (EOF) before its reply was complete.
    ProxyClosed(Awaiting),
    /// A socket error in the middle of the exchange.
    Broken(Errno, Awaiting),
    /// A socket error outside the exchange proper (poll, flags).
    Io(Errno),
    /// The proxy refused, or answered with something that is not SOCKS5.
    Protocol(ProtoError),
    /// The proxy could not reach a target given by name (most often: the name does not
    /// resolve on the proxy's side).
    NameUnreachable(ProtoError),
    /// The deadline passed first.
    Timeout { after_ms: u64 },
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
            Failure::NameUnreachable(_) => libc::EHOSTUNREACH,
            Failure::Protocol(e) => Errno::for_socks(e.kind()).0,
        })
    }

    /// A short reason for the one-line message (the preload layer's wording).
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
                "the proxy has no address this socket's family can reach".into()
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
            Failure::Io(e) => format!(
                "connection to the proxy failed during the handshake: {}",
                e.description()
            ),
            Failure::Protocol(e) => e.explain(),
            Failure::NameUnreachable(e) => {
                format!("{e} (the name may not resolve on the proxy's side)")
            }
            Failure::Timeout { after_ms } => format!(
                "no complete answer from the proxy within {:.1} s (raise --connect-timeout if the proxy is slow)",
                *after_ms as f64 / 1000.0
            ),
        }
    }
}

/// Sets `O_NONBLOCK` on a file description for as long as it lives, then puts the
/// flags back as they were.
pub struct NonBlocking<'a> {
    fd: BorrowedFd<'a>,
    restore: Option<libc::c_int>,
}

impl<'a> NonBlocking<'a> {
    pub fn set(fd: BorrowedFd<'a>) -> Result<NonBlocking<'a>, Errno> {
        let fl = sys::get_status_flags(fd)?;
        if fl & libc::O_NONBLOCK != 0 {
            return Ok(NonBlocking { fd, restore: None });
        }
        sys::set_status_flags(fd, fl | libc::O_NONBLOCK)?;
        Ok(NonBlocking {
            fd,
            restore: Some(fl),
        })
    }
}

impl Drop for NonBlocking<'_> {
    fn drop(&mut self) {
        if let Some(fl) = self.restore {
            // Only O_NONBLOCK is put back: the program may have changed other flags
            // meanwhile from another thread (it cannot change O_NONBLOCK meaningfully
            // while one of its threads waits in connect on the same socket).
            if let Ok(now) = sys::get_status_flags(self.fd) {
                let _ = sys::set_status_flags(
                    self.fd,
                    (now & !libc::O_NONBLOCK) | (fl & libc::O_NONBLOCK),
                );
            }
        }
    }
}

/// What a failed [`connect_through`] leaves behind.
#[derive(Debug)]
pub struct Failed {
    pub failure: Failure,
    /// The socket was connected (or connecting) to a proxy by this handshake, so it
    /// must be dissolved (`connect(AF_UNSPEC)`) before the program sees the error.
    pub attached: bool,
}

/// Connects `sock` to the first reachable proxy of `proxies` and runs the CONNECT
/// handshake for `target`, all before `deadline_ms` (monotonic). Returns the proxy.
pub fn connect_through(
    sock: BorrowedFd<'_>,
    proxies: &[SocketAddr],
    target: &TargetAddr,
    credentials: Option<&Credentials>,
    started_ms: u64,
    deadline_ms: u64,
) -> Result<SocketAddr, Failed> {
    let _nb = NonBlocking::set(sock).map_err(|e| Failed {
        failure: Failure::Io(e),
        attached: false,
    })?;
    if proxies.is_empty() {
        return Err(Failed {
            failure: Failure::NoProxyForFamily,
            attached: false,
        });
    }
    let mut last = Failure::NoProxyForFamily;
    let mut reached = None;
    for (i, proxy) in proxies.iter().enumerate() {
        if i > 0 {
            laysocks_sys::net::disconnect(sock.as_raw_fd());
        }
        match connect_once(sock, proxy, started_ms, deadline_ms) {
            Ok(()) => {
                reached = Some(*proxy);
                break;
            }
            Err(f @ Failure::Timeout { .. }) => {
                return Err(Failed {
                    failure: f,
                    attached: true,
                })
            }
            Err(f) => last = f,
        }
    }
    let Some(proxy) = reached else {
        return Err(Failed {
            failure: last,
            attached: false,
        });
    };
    let named = matches!(target.host, Host::Domain(_));
    let mut engine = ClientHandshake::new(target, credentials);
    exchange(sock, &mut engine, named, started_ms, deadline_ms).map_err(|failure| Failed {
        failure,
        attached: true,
    })?;
    Ok(proxy)
}

/// One TCP connect of the (non-blocking) socket to `proxy`, waited for until the deadline.
fn connect_once(
    sock: BorrowedFd<'_>,
    proxy: &SocketAddr,
    started_ms: u64,
    deadline_ms: u64,
) -> Result<(), Failure> {
    let bytes = &sys::sockaddr_bytes(proxy)[..];
    match sys::connect_raw(sock, bytes) {
        Ok(()) => return Ok(()),
        Err(Errno(libc::EINPROGRESS)) | Err(Errno(libc::EINTR)) => {}
        Err(e) => return Err(Failure::ProxyUnreachable(e)),
    }
    wait_for(sock, libc::POLLOUT, started_ms, deadline_ms)?;
    match take_socket_error(sock.as_raw_fd()) {
        Ok(0) => {}
        Ok(e) => return Err(Failure::ProxyUnreachable(Errno(e))),
        Err(e) => return Err(Failure::ProxyUnreachable(e)),
    }
    // One more connect moves the socket from "connecting" to "connected" in the
    // kernel's eyes, so the program's next connect() says EISCONN, not 0 (DESIGN §6).
    let _ = sys::connect_raw(sock, bytes);
    Ok(())
}

fn exchange(
    sock: BorrowedFd<'_>,
    engine: &mut ClientHandshake,
    named: bool,
    started_ms: u64,
    deadline_ms: u64,
) -> Result<(), Failure> {
    let fd = sock.as_raw_fd();
    let refusal = |e: ProtoError| {
        use laysocks_proto::ReplyCode as R;
        match e {
            ProtoError::Reply(R::GeneralFailure | R::HostUnreachable) if named => {
                Failure::NameUnreachable(e)
            }
            e => Failure::Protocol(e),
        }
    };
    let mut buf = [0u8; 512];
    // Bounded: every turn moves bytes or waits with the time left; the deadline ends it.
    for _ in 0..100_000 {
        match engine.status() {
            ClientStatus::Done(_) => return Ok(()),
            ClientStatus::Failed(e) => return Err(refusal(e)),
            ClientStatus::NeedWrite => match send_nonblocking(fd, engine.pending_output()) {
                Ok(n) => engine.consume_output(n),
                Err(Errno(libc::EAGAIN)) => wait_for(sock, libc::POLLOUT, started_ms, deadline_ms)?,
                Err(Errno(libc::EINTR)) => {}
                Err(e) => return Err(Failure::Broken(e, engine.awaiting())),
            },
            ClientStatus::NeedRead => {
                let want = engine.bytes_needed().clamp(1, buf.len());
                match recv_nonblocking(fd, &mut buf[..want]) {
                    Ok(0) => return Err(Failure::ProxyClosed(engine.awaiting())),
                    Ok(n) => {
                        if let Err(e) = engine.handle_input(&buf[..n]) {
                            return Err(refusal(e));
                        }
                    }
                    Err(Errno(libc::EAGAIN)) => {
                        wait_for(sock, libc::POLLIN, started_ms, deadline_ms)?
                    }
                    Err(Errno(libc::EINTR)) => {}
                    Err(e) => return Err(Failure::Broken(e, engine.awaiting())),
                }
            }
        }
    }
    Err(Failure::Timeout {
        after_ms: time::now_ms().saturating_sub(started_ms),
    })
}

/// Waits for `events` (or an error / hang-up, which the next step reads) until the deadline.
fn wait_for(
    sock: BorrowedFd<'_>,
    events: i16,
    started_ms: u64,
    deadline_ms: u64,
) -> Result<(), Failure> {
    for _ in 0..10_000 {
        let now = time::now_ms();
        if now >= deadline_ms {
            break;
        }
        match poll_one(sock.as_fd().as_raw_fd(), events, (deadline_ms - now) as i32) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(Failure::Io(e)),
        }
    }
    Err(Failure::Timeout {
        after_ms: deadline_ms.saturating_sub(started_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping_matches_the_layer() {
        assert_eq!(Failure::Timeout { after_ms: 5 }.errno().0, libc::ETIMEDOUT);
        assert_eq!(
            Failure::ProxyClosed(Awaiting::MethodSelection { received: 0 })
                .errno()
                .0,
            libc::ECONNRESET
        );
        assert_eq!(
            Failure::Protocol(ProtoError::Reply(
                laysocks_proto::ReplyCode::ConnectionRefused
            ))
            .errno()
            .0,
            libc::ECONNREFUSED
        );
        assert_eq!(
            Failure::ProxyClosed(Awaiting::MethodSelection { received: 0 }).reason(),
            "the proxy closed the connection before answering the greeting"
        );
    }
}
