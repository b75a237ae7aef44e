//! The data path: `read`, `write` and `poll` on a proxied socket are the kernel's.
//!
//! Once the proxy has replied, the program's stream *is* the socket, with no copies and
//! no extra system calls (DESIGN §3.7). These hooks exist so that the cost of being
//! loaded is measured where it matters — every `read` of every file — and so that
//! the non-blocking design (issue 4) has its place: `EAGAIN` while a handshake is pending,
//! and readiness hidden until the proxy's reply. Today they are a table lookup.

use libc::{c_int, c_void, nfds_t, pollfd, size_t, ssize_t};

use crate::fdtable;
use crate::hook::{OnPanic, Outcome};

hook! {
    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t;
    fast_path: !fdtable::is_ours(fd);
    on_panic: OnPanic::Passthrough;
    body: Ok(Outcome::Passthrough)
}

hook! {
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    fast_path: !fdtable::is_ours(fd);
    on_panic: OnPanic::Passthrough;
    body: Ok(Outcome::Passthrough)
}

hook! {
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int;
    // SAFETY: the program passed `n` pollfds at `fds`, as poll(2) requires.
    fast_path: !unsafe { any_ours(fds, n) };
    on_panic: OnPanic::Passthrough;
    body: Ok(Outcome::Passthrough)
}

/// Whether any fd in a pollfd array is managed by the layer.
///
/// # Safety
/// `fds` must point to `n` readable pollfds (or `n` is 0).
#[inline(always)]
unsafe fn any_ours(fds: *const pollfd, n: nfds_t) -> bool {
    if fds.is_null() {
        return false;
    }
    (0..n as usize).any(|i| {
        // SAFETY: i < n, within the caller's array.
        fdtable::is_ours(unsafe { (*fds.add(i)).fd })
    })
}
