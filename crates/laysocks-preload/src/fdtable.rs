//! The process's table of sockets the layer manages.
//!
//! Two levels, because hooks run on *every* `read`, `write`, `close` and `poll` of
//! every file in the process and almost none of those fds are ours:
//! - a lock-free array of one atomic byte per fd number ([`is_ours`]: one relaxed load
//!   and a branch), plus one flag for fd numbers beyond the array;
//! - behind a spin lock, the per-socket records ([`Socket`]), touched only for fds
//!   whose byte is set.
//!
//! Fork safety: the lock is taken in `pthread_atfork`'s prepare handler and released in
//! both parent and child, so a child never inherits it held by a thread that does not
//! exist there. The lock is never held across a system call that can block.
//!
//! Stale records: an fd can be closed behind our back (glibc's internal `close` in
//! `fclose`, a raw syscall). Each record keeps the socket's inode number, checked by
//! [`lookup`], so a new socket that reuses the number is never mistaken for the old one.

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use laysocks_proto::TargetAddr;
use libc::c_int;

/// fd numbers below this have a slot in the lock-free array (64 KiB of zero pages).
pub const FAST_SLOTS: usize = 1 << 16;

static KINDS: [AtomicU8; FAST_SLOTS] = [const { AtomicU8::new(0) }; FAST_SLOTS];
static ANY_HIGH_FD: AtomicBool = AtomicBool::new(false);

const KIND_NONE: u8 = 0;
const KIND_MANAGED: u8 = 1;

/// What the layer knows about one of its sockets.
#[derive(Clone, Debug)]
pub struct Socket {
    /// The socket's inode number, to tell it from a later socket on the same fd.
    pub inode: u64,
    /// `AF_INET` or `AF_INET6`: how `getpeername` must present the target.
    pub family: c_int,
    pub state: SocketState,
}

/// Where a managed socket stands. (Issue 4 adds the pending handshake states here.)
#[derive(Clone, Debug)]
pub enum SocketState {
    /// The proxy reported success: the program's stream now reaches `target`.
    Established {
        target: TargetAddr,
        proxy: SocketAddr,
    },
}

/// Is this fd one the layer manages? The fast path of every hook.
#[inline(always)]
pub fn is_ours(fd: c_int) -> bool {
    match usize::try_from(fd) {
        Ok(i) if i < FAST_SLOTS => KINDS[i].load(Ordering::Relaxed) != KIND_NONE,
        Ok(_) => ANY_HIGH_FD.load(Ordering::Relaxed),
        Err(_) => false,
    }
}

fn set_kind(fd: c_int, kind: u8) {
    match usize::try_from(fd) {
        Ok(i) if i < FAST_SLOTS => KINDS[i].store(kind, Ordering::Relaxed),
        Ok(_) if kind != KIND_NONE => ANY_HIGH_FD.store(true, Ordering::Relaxed),
        _ => {}
    }
}

/// A test-and-set spin lock that can be taken and released without a guard (the fork
/// handlers need that), yielding the CPU after a short spin.
struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` only happens between lock() and unlock().
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn lock(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        struct Unlock<'a, T>(&'a SpinLock<T>);
        impl<T> Drop for Unlock<'_, T> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        self.lock();
        let _unlock = Unlock(self);
        // SAFETY: we hold the lock, so no other reference to the value exists.
        f(unsafe { &mut *self.value.get() })
    }
}

static SOCKETS: SpinLock<BTreeMap<c_int, Socket>> = SpinLock::new(BTreeMap::new());

/// Records `fd` as managed.
pub fn insert(fd: c_int, socket: Socket) {
    SOCKETS.with(|m| {
        m.insert(fd, socket);
        set_kind(fd, KIND_MANAGED);
    });
}

/// Forgets `fd` (it was closed, reconnected elsewhere, or dissolved).
pub fn forget(fd: c_int) {
    if !is_ours(fd) {
        return;
    }
    SOCKETS.with(|m| {
        m.remove(&fd);
        set_kind(fd, KIND_NONE);
    });
}

/// Forgets every fd in `first..=last` (close_range, closefrom).
pub fn forget_range(first: c_int, last: c_int) {
    SOCKETS.with(|m| {
        let gone: Vec<c_int> = m.range(first..=last).map(|(fd, _)| *fd).collect();
        for fd in gone {
            m.remove(&fd);
            set_kind(fd, KIND_NONE);
        }
    });
}

/// `new` now refers to the same socket as `old` (dup, dup2, dup3, F_DUPFD).
pub fn duplicate(old: c_int, new: c_int) {
    SOCKETS.with(|m| match m.get(&old).cloned() {
        Some(s) => {
            m.insert(new, s);
            set_kind(new, KIND_MANAGED);
        }
        None => {
            m.remove(&new);
            set_kind(new, KIND_NONE);
        }
    });
}

/// The record for `fd`, if it is still the socket we recorded (same inode).
pub fn lookup(fd: c_int) -> Option<Socket> {
    if !is_ours(fd) {
        return None;
    }
    let found = SOCKETS.with(|m| m.get(&fd).cloned())?;
    match laysocks_sys::net::inode(fd) {
        Ok(ino) if ino == found.inode => Some(found),
        _ => {
            forget(fd);
            None
        }
    }
}

extern "C" fn before_fork() {
    SOCKETS.lock();
}

extern "C" fn after_fork() {
    SOCKETS.unlock();
}

/// Makes `fork` safe for the table (called once from the layer's constructor).
pub fn register_fork_handlers() {
    // SAFETY: the handlers are plain functions that live as long as the library.
    unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(inode: u64) -> Socket {
        Socket {
            inode,
            family: libc::AF_INET,
            state: SocketState::Established {
                target: "203.0.113.2:80".parse::<SocketAddr>().unwrap().into(),
                proxy: "198.51.100.1:1080".parse().unwrap(),
            },
        }
    }

    #[test]
    fn insert_dup_forget() {
        assert!(!is_ours(900));
        insert(900, record(1));
        assert!(is_ours(900));
        duplicate(900, 901);
        assert!(is_ours(901));
        forget(900);
        assert!(!is_ours(900));
        assert!(is_ours(901));
        forget_range(0, 1000);
        assert!(!is_ours(901));
        assert!(!is_ours(-1));
    }

    #[test]
    fn stale_record_is_dropped() {
        // fd 0 exists in the test process, but its inode is not 12345.
        insert(0, record(12345));
        assert!(lookup(0).is_none());
        assert!(!is_ours(0));
    }

    #[test]
    fn high_fds_use_the_slow_path() {
        let fd = FAST_SLOTS as c_int + 5;
        insert(fd, record(7));
        assert!(is_ours(fd));
        forget(fd);
    }
}
