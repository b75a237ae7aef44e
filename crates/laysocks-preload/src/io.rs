//! The data path: reads and writes on a proxied socket are the kernel's.
//!
//! Once the proxy has replied, the program's stream *is* the socket: no copies, no extra
//! system calls (DESIGN §3.7). The hooks below cost one load and a branch on any fd that
//! does not need the layer. On a socket whose handshake is still running they answer
//! `EAGAIN` (non-blocking socket or `MSG_DONTWAIT`), or wait for the handshake (a socket
//! the program made blocking again after `connect`); on a failed one they return the
//! handshake's errno once, as the first data call after a failed direct connect would.
//! This is also the safety net when a readiness registration escaped the hooks.
//!
//! UDP sockets with a session ([`crate::udp`]) are the exception: every datagram is
//! wrapped or unwrapped on its way.

use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::fdtable;
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::{pending, udp};

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
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf, n); unsafe { udp::on_recv(fd, &v, 1, 0, std::ptr::null_mut(), std::ptr::null_mut()) } } else { gate(fd, 0) }
}

hook! {
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf as *mut c_void, n); unsafe { udp::on_write(fd, &v, 1, 0) } } else { gate(fd, 0) }
}

hook! {
    fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's n iovecs.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { unsafe { udp::on_recv(fd, iov, n.max(0) as usize, 0, std::ptr::null_mut(), std::ptr::null_mut()) } } else { gate(fd, 0) }
}

hook! {
    fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's n iovecs.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { unsafe { udp::on_write(fd, iov, n.max(0) as usize, 0) } } else { gate(fd, 0) }
}

hook! {
    fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf, n); unsafe { udp::on_recv(fd, &v, 1, flags, std::ptr::null_mut(), std::ptr::null_mut()) } } else { gate(fd, flags) }
}

hook! {
    fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf as *mut c_void, n); unsafe { udp::on_write(fd, &v, 1, flags) } } else { gate(fd, flags) }
}

hook! {
    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes and address buffer.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf, n); unsafe { udp::on_recv(fd, &v, 1, flags, addr, len) } } else { gate(fd, flags) }
}

hook! {
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's msghdr (recvmsg(2)'s contract).
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP && !msg.is_null() { unsafe { udp::on_recvmsg(fd, &mut *msg, flags) } } else { gate(fd, flags) }
}

hook! {
    fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf, n); unsafe { udp::on_recv(fd, &v, 1, 0, std::ptr::null_mut(), std::ptr::null_mut()) } } else { gate(fd, 0) }
}

hook! {
    fn __recv_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf, n); unsafe { udp::on_recv(fd, &v, 1, flags, std::ptr::null_mut(), std::ptr::null_mut()) } } else { gate(fd, flags) }
}

hook! {
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t;
    fast_path: !fdtable::needs_data_hooks(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of n bytes and address buffer.
    body: if fdtable::kind_of(fd) == fdtable::kind::UDP { let v = udp::iov1(buf, n); unsafe { udp::on_recv(fd, &v, 1, flags, addr, len) } } else { gate(fd, flags) }
}
