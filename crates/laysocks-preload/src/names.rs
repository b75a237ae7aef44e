//! `getpeername`: a proxied socket's peer is the real destination, not the proxy
//! (DESIGN §3.6), presented in the socket's family — an IPv4 target on an `AF_INET6`
//! socket is `::ffff:a.b.c.d`, as the kernel would show it. `getsockname` is the
//! kernel's answer and is not hooked.

use laysocks_sys::net as sysnet;
use libc::{c_int, sockaddr, socklen_t};

use crate::fdtable::{self, SocketState};
use crate::hook::{HookError, HookResult, OnPanic, Outcome};

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
    let Some(socket) = fdtable::lookup(fd) else {
        return Ok(Outcome::Passthrough);
    };
    match socket.state {
        SocketState::Established { target, .. } => match target.to_socket_addr() {
            Some(peer) => {
                let peer = sysnet::in_family(peer, socket.family);
                // SAFETY: the program gave getpeername a buffer of *len bytes.
                unsafe { sysnet::write_sockaddr(&peer, addr, len) }.map_err(HookError)?;
                Ok(Outcome::Done(0))
            }
            None => Ok(Outcome::Passthrough),
        },
    }
}
