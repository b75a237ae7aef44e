//! Keeping the fd table true as fds come and go: `close`, `close_range`, `closefrom`,
//! `dup`, `dup2`, `dup3` and `fcntl(F_DUPFD…)`.
//!
//! A record is dropped *before* the real close: once the kernel frees the number,
//! another thread's new socket may get it, and must not inherit our record. A dup copies
//! the record so the duplicate also reports the real peer.

use libc::{c_int, c_uint, c_ulong};

use crate::hook::{HookResult, OnPanic, Outcome};
use crate::{epoll, fdtable};

hook! {
    fn close(fd: c_int) -> c_int;
    fast_path: !fdtable::is_ours(fd);
    on_panic: OnPanic::Passthrough;
    body: {
        if fdtable::kind_of(fd) == fdtable::kind::EPOLL {
            epoll::forget_epfd(fd);
            fdtable::unmark_epoll(fd);
        } else {
            fdtable::forget_closed(fd);
            epoll::forget_fd(fd);
        }
        Ok(Outcome::Passthrough)
    }
}

hook! {
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Passthrough;
    body: on_close_range(first, last, flags)
}

hook! {
    fn closefrom(low: c_int) -> ();
    fast_path: false;
    on_panic: OnPanic::Passthrough;
    body: {
        forget_range(low.max(0), c_int::MAX);
        Ok(Outcome::Passthrough)
    }
}

fn on_close_range(first: c_uint, last: c_uint, flags: c_int) -> HookResult<c_int> {
    // CLOSE_RANGE_CLOEXEC only marks the fds; they stay open until exec.
    if flags & (libc::CLOSE_RANGE_CLOEXEC as c_int) == 0 && first <= last {
        let first = c_int::try_from(first).unwrap_or(c_int::MAX);
        let last = c_int::try_from(last).unwrap_or(c_int::MAX);
        forget_range(first, last);
    }
    Ok(Outcome::Passthrough)
}

hook! {
    fn dup(fd: c_int) -> c_int;
    fast_path: !fdtable::is_ours(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: integer arguments passed to the real call unchanged.
    body: after_dup(fd, unsafe { laysocks_sys::real::dup()(fd) })
}

hook! {
    fn dup2(old: c_int, new: c_int) -> c_int;
    fast_path: !fdtable::is_ours(old) && !fdtable::is_ours(new);
    on_panic: OnPanic::Passthrough;
    // SAFETY: integer arguments passed to the real call unchanged.
    body: after_dup(old, unsafe { laysocks_sys::real::dup2()(old, new) })
}

hook! {
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fast_path: !fdtable::is_ours(old) && !fdtable::is_ours(new);
    on_panic: OnPanic::Passthrough;
    // SAFETY: integer arguments passed to the real call unchanged.
    body: after_dup(old, unsafe { laysocks_sys::real::dup3()(old, new, flags) })
}

hook! {
    /// Only `F_DUPFD`/`F_DUPFD_CLOEXEC` matter to the table; everything else passes.
    fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fast_path: !fdtable::is_ours(fd) || (cmd != libc::F_DUPFD && cmd != libc::F_DUPFD_CLOEXEC);
    on_panic: OnPanic::Passthrough;
    // SAFETY: integer arguments passed to the real call unchanged.
    body: after_dup(fd, unsafe { laysocks_sys::real::fcntl()(fd, cmd, arg) })
}

hook! {
    fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fast_path: !fdtable::is_ours(fd) || (cmd != libc::F_DUPFD && cmd != libc::F_DUPFD_CLOEXEC);
    on_panic: OnPanic::Passthrough;
    // SAFETY: integer arguments passed to the real call unchanged.
    body: after_dup(fd, unsafe { laysocks_sys::real::fcntl64()(fd, cmd, arg) })
}

/// Drops the records of every fd in the range, sockets and epoll instances alike.
fn forget_range(first: c_int, last: c_int) {
    let top = last.min(fdtable::FAST_SLOTS as c_int - 1);
    for fd in first.max(0)..=top {
        match fdtable::kind_of(fd) {
            fdtable::kind::NONE => {}
            fdtable::kind::EPOLL => epoll::forget_epfd(fd),
            _ => epoll::forget_fd(fd),
        }
    }
    fdtable::forget_range(first, last);
}

/// Records a successful duplicate, or passes the failure on with its errno.
fn after_dup(old: c_int, new: c_int) -> HookResult<c_int> {
    if new < 0 {
        return Err(laysocks_sys::Errno::last().into());
    }
    if new != old {
        fdtable::duplicate(old, new);
        let lead = fdtable::leader(new);
        if lead != new {
            epoll::park_like(new, lead);
        }
    }
    Ok(Outcome::Done(new))
}
