//! Process file descriptors: `pidfd_open(2)`, `pidfd_getfd(2)`, `pidfd_send_signal(2)`.
//!
//! Why pidfds and not pids: a pid can be reused the moment its process is reaped, so a
//! supervisor that signals or takes descriptors "from pid N" could hit a stranger. A
//! pidfd names one process for its whole life; calls on it fail with `ESRCH` once that
//! process has exited, never reach a newcomer with the same number.
//!
//! The guard uses them twice:
//! - the launcher takes the seccomp listener out of its freshly forked child with
//!   [`get_fd`] (`pidfd_getfd(2)` needs `PTRACE_MODE_ATTACH_REALCREDS` over the target,
//!   which a parent of the same uid has — see ptrace(2), "Ptrace access mode checking");
//! - the supervisor takes a copy of the program's socket named in a notification.
//!
//! glibc 2.36 only gained wrappers for these, and Debian 12's libc crate bindings may
//! lag, so they are made with `syscall(2)` directly (Linux 5.3 / 5.6 / 5.1).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::Errno;

/// `pidfd_open` flag: the pid is a thread id, and the pidfd names that thread
/// (Linux 6.9+, same value as `O_EXCL`). Without it, `pidfd_open` of a non-leader thread
/// id fails with `EINVAL` and the caller must use the thread group id instead.
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// `pidfd_open(2)`: a pidfd for `pid`, close-on-exec (the kernel always sets it).
///
/// `flags` is 0, `PIDFD_THREAD` or `libc::PIDFD_NONBLOCK`.
pub fn open(pid: i32, flags: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes (pid_t, unsigned int) and returns a new fd or -1 with
    // errno set; it reads and writes no user memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_open,
            pid as libc::c_long,
            flags as libc::c_long,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: rc is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// `pidfd_getfd(2)`: a duplicate, in this process, of descriptor `target_fd` of the
/// process `pidfd` names. The new descriptor is close-on-exec and shares the open file
/// description (file offset, status flags, socket state) with the target's.
pub fn get_fd(pidfd: BorrowedFd<'_>, target_fd: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd takes (int pidfd, int targetfd, unsigned int flags = 0) and
    // returns a new fd or -1 with errno set; no user memory is involved.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            pidfd.as_raw_fd() as libc::c_long,
            target_fd as libc::c_long,
            0 as libc::c_long,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: rc is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// `pidfd_send_signal(2)`: sends `sig` (0 = only check the process is alive) to the
/// process `pidfd` names, as `kill(2)` would (si_code `SI_USER`).
pub fn send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> Result<(), Errno> {
    // SAFETY: pidfd_send_signal takes (int pidfd, int sig, siginfo_t *info, unsigned int
    // flags); a null info means "as kill(2) would fill it", flags must be 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd() as libc::c_long,
            sig as libc::c_long,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_long,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn open_self_and_signal_zero() {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let fd = open(me, 0).expect("pidfd_open(self)");
        send_signal(fd.as_fd(), 0).expect("signal 0 to self");
    }

    #[test]
    fn get_fd_duplicates_own_descriptor() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let pidfd = open(me, 0).unwrap();
        let dup = get_fd(pidfd.as_fd(), file.as_raw_fd()).expect("pidfd_getfd");
        assert_ne!(dup.as_raw_fd(), file.as_raw_fd());
        // SAFETY: fcntl(F_GETFD) on an fd we own.
        let fl = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETFD) };
        assert!(fl & libc::FD_CLOEXEC != 0, "pidfd_getfd sets close-on-exec");
    }

    #[test]
    fn bad_target_is_ebadf() {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let pidfd = open(me, 0).unwrap();
        assert_eq!(
            get_fd(pidfd.as_fd(), 987_654).unwrap_err(),
            Errno(libc::EBADF)
        );
    }

    #[test]
    fn nonexistent_pid_fails() {
        // pid_max is at most 4194304 (2^22), so this pid cannot exist.
        assert_eq!(open(i32::MAX, 0).unwrap_err(), Errno(libc::ESRCH));
    }
}
