//! The data path: reads and writes on a proxied socket are the kernel's.
//!
//! Once the proxy has replied, the program's stream *is* the socket: no copies, no extra
//! system calls (DESIGN §3.7). The hooks below cost one load and a branch on any fd that
//! does not need the layer. On a socket whose handshake is still running they answer
//! `EAGAIN` (non-blocking socket or `MSG_DONTWAIT`), or wait for the handshake (a socket
//! the program made blocking again after `connect`); on a failed one they return the
//! handshake's errno once, as the first data call after a failed direct connect would.
//! This is also the safety net when a readiness registration escaped the hooks.

use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::fdtable;
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::pending;

/// The body of every data hook (here and `sendto`/`sendmsg` in `connect`): let the call
/// through, or fail it.
pub(crate) fn gate(fd: c_int, flags: c_int) -> HookResult<ssize_t> {
    match pending::data_gate(fd, flags & libc::MSG_DONTWAIT != 0) {
        Ok(()) => Ok(Outcome::Passthrough),
        Err(e) => Err(e.into()),
    }
}

hook! {
    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, 0)
}

hook! {
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, 0)
}

hook! {
    fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, 0)
}

hook! {
    fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, 0)
}

hook! {
    fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, flags)
}

hook! {
    fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, flags)
}

hook! {
    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, flags)
}

hook! {
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, flags)
}

hook! {
    fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, 0)
}

hook! {
    fn __recv_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, flags)
}

hook! {
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t;
    fast_path: !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    body: gate(fd, flags)
}
