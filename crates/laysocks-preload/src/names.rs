//! `getpeername`: a proxied socket's peer is the real destination, not the proxy
//! (DESIGN §3.6) — for a name sent to the proxy, the placeholder the program connected
//! to — presented in the socket's family — an IPv4 target on an `AF_INET6`
//! socket is `::ffff:a.b.c.d`, as the kernel would show it. `getsockname` is the
//! kernel's answer and is not hooked.

use laysocks_sys::net as sysnet;
use libc::{c_int, sockaddr, socklen_t};

use laysocks_sys::Errno;

use crate::fdtable;
use crate::hook::{HookError, HookResult, OnPanic, Outcome};
use crate::pending::{self, Observed};

hook! {
    /// `getpeername(2)`: the real target for proxied sockets.
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fast_path: !fdtable::is_ours(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's getpeername arguments, with getpeername(2)'s contract.
    body: unsafe { on_getpeername(fd, addr, len) }
}

/// # Safety
/// `addr`/`len` as the program passed them to `getpeername`.
unsafe fn on_getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> HookResult<c_int> {
    if fdtable::needs_attention(fd) {
        // Not connected until the proxy says so (a direct connect in SYN_SENT, or one
        // that failed, gives ENOTCONN too).
        match pending::advance(fd) {
            Observed::Pending { .. } | Observed::Failed(_) => {
                return Err(Errno(libc::ENOTCONN).into())
            }
            Observed::Established | Observed::NotOurs => {}
        }
    }
    let (family, peer) = match fdtable::lookup_peer(fd) {
        Some((family, Some(peer))) => (family, peer),
        // A UDP session socket the program did not connect: the kernel's connection to
        // the relay is ours, not the program's.
        Some((_, None)) if fdtable::kind_of(fd) == fdtable::kind::UDP => {
            return Err(Errno(libc::ENOTCONN).into())
        }
        _ => return Ok(Outcome::Passthrough),
    };
    let peer = sysnet::in_family(peer, family);
    // SAFETY: the program gave getpeername a buffer of *len bytes.
    unsafe { sysnet::write_sockaddr(&peer, addr, len) }.map_err(HookError)?;
    Ok(Outcome::Done(0))
}
