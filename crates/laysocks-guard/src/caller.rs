//! Reaching into the program that made a trapped call: its socket, its memory, its name.
//!
//! The notification names a *thread* (seccomp_unotify(2): `pid` is the calling thread's
//! id). `pidfd_open` takes a thread id only with `PIDFD_THREAD` (Linux 6.9+); on older
//! kernels it fails with `EINVAL` for a non-leader thread, so we open the thread's group
//! leader found in `/proc/<tid>/status` instead — fds belong to the process either way.
//!
//! A thread id can die and be reused while we work (a fatal signal ends the killable
//! wait). Every read of the program's memory, and the pidfd we take the socket through,
//! is therefore followed by `SECCOMP_IOCTL_NOTIF_ID_VALID` before anything is done with
//! what was read (seccomp_unotify(2), "Caveats"): if the notification is gone, so is our
//! reason to act, and [`Answer::Gone`] ends the handling.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use laysocks_sys::{pidfd, seccomp as sys, Errno};

/// What the supervisor answers a notification with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: let the kernel run the call as made.
    Continue,
    /// Return this value.
    Value(i64),
    /// Fail with this (positive) errno.
    Error(i32),
    /// The notification is no longer valid (the thread died): answer nothing.
    Gone,
}

impl From<Errno> for Answer {
    fn from(e: Errno) -> Answer {
        Answer::Error(e.0)
    }
}

/// The thread that made one trapped call.
pub struct Caller<'a> {
    pub listener: BorrowedFd<'a>,
    pub id: u64,
    pub tid: i32,
}

/// Whether `PIDFD_THREAD` works here: 0 unknown, 1 yes, 2 no.
static PIDFD_THREAD_OK: AtomicU8 = AtomicU8::new(0);

impl Caller<'_> {
    /// Whether the notification is still pending.
    pub fn valid(&self) -> bool {
        sys::id_valid(self.listener, self.id)
    }

    /// `Err(Gone)` unless the notification is still pending.
    pub fn still_valid(&self) -> Result<(), Answer> {
        if self.valid() {
            Ok(())
        } else {
            Err(Answer::Gone)
        }
    }

    fn pidfd(&self) -> Result<OwnedFd, Errno> {
        if PIDFD_THREAD_OK.load(Ordering::Relaxed) != 2 {
            match pidfd::open(self.tid, pidfd::PIDFD_THREAD) {
                Ok(fd) => {
                    PIDFD_THREAD_OK.store(1, Ordering::Relaxed);
                    return Ok(fd);
                }
                Err(Errno(libc::EINVAL)) => PIDFD_THREAD_OK.store(2, Ordering::Relaxed),
                Err(e) => return Err(e),
            }
        }
        let tgid = tgid_of(self.tid).ok_or(Errno(libc::ESRCH))?;
        pidfd::open(tgid, 0)
    }

    /// A copy of the program's descriptor `fd` (same open file description).
    /// `EPERM` (a non-dumpable or setuid program) is passed on for the caller to report.
    pub fn take_fd(&self, fd: i32) -> Result<OwnedFd, Answer> {
        if fd < 0 {
            return Err(Answer::Error(libc::EBADF));
        }
        let p = match self.pidfd() {
            Ok(p) => p,
            Err(_) => return Err(Answer::Gone),
        };
        // The pidfd now pins the process: if the notification is still valid, the
        // thread we opened is the one that called.
        self.still_valid()?;
        let copy = pidfd::get_fd(p.as_fd(), fd).map_err(Answer::from)?;
        Ok(copy)
    }

    /// `len` bytes at `addr` in the caller's memory, checked still valid after reading.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Answer> {
        let mut buf = vec![0u8; len];
        if len > 0 {
            if addr == 0 {
                return Err(Answer::Error(libc::EFAULT));
            }
            sys::read_mem(self.tid, addr, &mut buf).map_err(Answer::from)?;
        }
        self.still_valid()?;
        Ok(buf)
    }

    /// A little-endian (native) `u32` / `u64` / pointer at `addr`.
    pub fn read_u32(&self, addr: u64) -> Result<u32, Answer> {
        let b = self.read(addr, 4)?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Writes `data` at `addr`, after checking the notification is still valid.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Answer> {
        self.still_valid()?;
        if data.is_empty() {
            return Ok(());
        }
        if addr == 0 {
            return Err(Answer::Error(libc::EFAULT));
        }
        sys::write_mem(self.tid, addr, data).map_err(Answer::from)
    }

    /// The program's name (`/proc/<tid>/comm`), for messages.
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.tid))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| "?".into())
    }

    /// The process id of the calling thread (for messages).
    pub fn pid(&self) -> i32 {
        tgid_of(self.tid).unwrap_or(self.tid)
    }

    /// Whether the program's `fd` is close-on-exec (`flags:` in `/proc/<tid>/fdinfo/<fd>`,
    /// octal, `O_CLOEXEC` = 02000000).
    pub fn fd_cloexec(&self, fd: i32) -> bool {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", self.tid)) else {
            return false;
        };
        s.lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .is_some_and(|f| f & libc::O_CLOEXEC as u32 != 0)
    }
}

/// `Tgid:` of `/proc/<tid>/status`.
fn tgid_of(tid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tgid_of_self() {
        let me = std::process::id() as i32;
        assert_eq!(tgid_of(me), Some(me));
        assert_eq!(tgid_of(i32::MAX), None);
    }
}
