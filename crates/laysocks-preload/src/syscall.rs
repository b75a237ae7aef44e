//! `syscall()`: the generic entry some programs and libraries use instead of libc's
//! wrappers.
//!
//! - `io_uring_setup` answers `ENOSYS` while the layer is active: an io_uring connect or
//!   poll never passes through a hook, so a program could be told "connected" before the
//!   proxy has answered. libuv (node) then stays on epoll, which the layer serves.
//! - `syscall(SYS_connect, …)` from a dynamically linked program goes through the same
//!   path as `connect()`.
//!
//! `syscall` is variadic; on x86-64 and AArch64 its integer arguments travel in
//! registers, so reading six of them is what libc's own `syscall` does.

use libc::{c_int, c_long, sockaddr, socklen_t};

use laysocks_sys::Errno;

use crate::hook::{HookResult, OnPanic, Outcome};

hook! {
    fn syscall(n: c_long, a1: c_long, a2: c_long, a3: c_long, a4: c_long, a5: c_long, a6: c_long) -> c_long;
    fast_path: n != libc::SYS_io_uring_setup && n != libc::SYS_connect;
    on_panic: OnPanic::Fail(libc::ENOSYS);
    // SAFETY: for SYS_connect the arguments are connect(2)'s, as the program intended.
    body: unsafe { on_syscall(n, a1, a2, a3) }
}

/// # Safety
/// For `SYS_connect`, `a2`/`a3` are a sockaddr pointer and its length.
unsafe fn on_syscall(n: c_long, a1: c_long, a2: c_long, a3: c_long) -> HookResult<c_long> {
    if n == libc::SYS_io_uring_setup {
        return Err(Errno(libc::ENOSYS).into());
    }
    // SAFETY: the program's connect arguments.
    match unsafe {
        crate::connect::on_connect(a1 as c_int, a2 as *const sockaddr, a3 as socklen_t)
    }? {
        Outcome::Done(v) => Ok(Outcome::Done(c_long::from(v))),
        Outcome::Passthrough => Ok(Outcome::Passthrough),
    }
}
