//! The process's table of sockets the layer manages.
//!
//! Two levels, because hooks run on *every* `read`, `write`, `close` and `poll` of
//! every file in the process and almost none of those fds are ours:
//! - a lock-free array of one atomic *kind* byte per fd number ([`kind_of`]: one relaxed
//!   load and a branch), plus one flag for fd numbers beyond the array. The kinds are
//!   ordered so each hook asks one comparison: `close`/`dup` care about anything not
//!   [`kind::NONE`]; reads, writes and readiness calls only about [`kind::PENDING`] and
//!   [`kind::FAILED`] ([`needs_attention`]) — an established proxied socket is the
//!   kernel's again;
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
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use laysocks_proto::TargetAddr;
use laysocks_sys::Errno;
use libc::c_int;

use crate::pending::Pending;

/// fd numbers below this have a slot in the lock-free array (64 KiB of zero pages).
pub const FAST_SLOTS: usize = 1 << 16;

static KINDS: [AtomicU8; FAST_SLOTS] = [const { AtomicU8::new(0) }; FAST_SLOTS];
static ANY_HIGH_FD: AtomicBool = AtomicBool::new(false);
/// How many records are pending or failed-unreported: the readiness hooks' "anything
/// to do?" before they scan results.
static ATTENTION: AtomicUsize = AtomicUsize::new(0);

/// What the fast path knows about an fd, ordered so that one comparison answers each
/// hook's question.
pub mod kind {
    /// Not the layer's business.
    pub const NONE: u8 = 0;
    /// A proxied socket whose handshake succeeded: only `getpeername` differs.
    pub const ESTABLISHED: u8 = 1;
    /// An epoll instance with registrations we track (its `close` must be seen).
    pub const EPOLL: u8 = 2;
    /// A UDP socket with a SOCKS5 UDP ASSOCIATE session: its datagrams are wrapped and
    /// unwrapped by the data hooks; readiness is the kernel's.
    pub const UDP: u8 = 3;
    /// A non-blocking connect whose handshake is still running.
    pub const PENDING: u8 = 4;
    /// A handshake that failed and whose errno the program has not collected yet.
    pub const FAILED: u8 = 5;
    /// Kinds at or above this need the data hooks.
    pub const DATA: u8 = UDP;
    /// Kinds at or above this need the readiness hooks' attention.
    pub const ATTENTION: u8 = PENDING;
}

/// What the layer knows about one of its sockets.
#[derive(Debug)]
pub struct Socket {
    /// The socket's inode number, to tell it from a later socket on the same fd.
    pub inode: u64,
    /// `AF_INET` or `AF_INET6`: how `getpeername` must present the target.
    pub family: c_int,
    /// The address the program connected to, where it is not the target: a remote-DNS
    /// placeholder (the target is its name), or a DNS server redirected to `dns_server`.
    /// `getpeername` shows this, what the program was told.
    pub shown: Option<SocketAddr>,
    pub state: SocketState,
}

/// Where a managed socket stands.
#[derive(Debug)]
pub enum SocketState {
    /// Non-blocking connect in progress: to the proxy, then the SOCKS5 exchange.
    Pending(Box<Pending>),
    /// The proxy reported success: the program's stream now reaches `target`.
    /// `connect_reported`: a later `connect()` returns 0 once (as Linux does after an
    /// asynchronous connect completes), then `EISCONN`.
    Established {
        target: TargetAddr,
        proxy: SocketAddr,
        connect_reported: bool,
    },
    /// The handshake failed with `errno`, which the program will get once, from
    /// `SO_ERROR`, a second `connect()` or its first data call.
    Failed { errno: Errno },
    /// A UDP socket whose datagrams go through a UDP ASSOCIATE session.
    Udp(Box<crate::udp::Assoc>),
}

impl SocketState {
    fn kind(&self) -> u8 {
        match self {
            SocketState::Pending(_) => kind::PENDING,
            SocketState::Established { .. } => kind::ESTABLISHED,
            SocketState::Failed { .. } => kind::FAILED,
            SocketState::Udp(_) => kind::UDP,
        }
    }
}

/// The fd's kind byte.
#[inline(always)]
pub fn kind_of(fd: c_int) -> u8 {
    match usize::try_from(fd) {
        Ok(i) if i < FAST_SLOTS => KINDS[i].load(Ordering::Relaxed),
        Ok(_) if ANY_HIGH_FD.load(Ordering::Relaxed) => high_kind(fd),
        _ => kind::NONE,
    }
}

#[cold]
fn high_kind(fd: c_int) -> u8 {
    SOCKETS.with(|m| m.get(&fd).map_or(kind::NONE, |s| s.state.kind()))
}

/// Is this fd one the layer manages (a socket or a tracked epoll instance)? The fast
/// path of `close`, `dup` and `getpeername`.
#[inline(always)]
pub fn is_ours(fd: c_int) -> bool {
    kind_of(fd) != kind::NONE
}

/// Does this fd need the data or readiness hooks (pending, or failed unreported)?
#[inline(always)]
pub fn needs_attention(fd: c_int) -> bool {
    kind_of(fd) >= kind::ATTENTION
}

/// Does this fd need the data hooks (a UDP session, or needs attention)?
#[inline(always)]
pub fn needs_data_hooks(fd: c_int) -> bool {
    kind_of(fd) >= kind::DATA
}

/// Whether any fd in the process needs attention (cheap check for epoll results).
#[inline(always)]
pub fn any_attention() -> bool {
    ATTENTION.load(Ordering::Relaxed) > 0
}

fn set_kind(fd: c_int, new: u8) {
    let old = match usize::try_from(fd) {
        Ok(i) if i < FAST_SLOTS => KINDS[i].swap(new, Ordering::Relaxed),
        Ok(_) => {
            if new != kind::NONE {
                ANY_HIGH_FD.store(true, Ordering::Relaxed);
            }
            return;
        }
        Err(_) => return,
    };
    match (old >= kind::ATTENTION, new >= kind::ATTENTION) {
        (false, true) => {
            ATTENTION.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            ATTENTION.fetch_sub(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Marks an epoll instance so that its `close` reaches [`crate::epoll`].
pub fn mark_epoll(epfd: c_int) {
    if kind_of(epfd) == kind::NONE {
        set_kind(epfd, kind::EPOLL);
    }
}

/// Clears an epoll instance's mark.
pub fn unmark_epoll(epfd: c_int) {
    if kind_of(epfd) == kind::EPOLL {
        set_kind(epfd, kind::NONE);
    }
}

/// A test-and-set spin lock that can be taken and released without a guard (the fork
/// handlers need that), yielding the CPU after a short spin.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` only happens between lock() and unlock().
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) {
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

    pub(crate) fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
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

/// Duplicates of pending sockets, as (duplicate, leader): the leader's record drives
/// the one handshake both numbers share (see [`duplicate`]). Only touched while
/// `SOCKETS` is held, so it is never contended and fork cannot catch it held.
static ALIASES: SpinLock<Vec<(c_int, c_int)>> = SpinLock::new(Vec::new());

/// Set once a duplicate of a pending socket has existed: until then [`settle_aliases`]
/// costs one load.
static ANY_ALIAS: AtomicBool = AtomicBool::new(false);

fn aliases<R>(f: impl FnOnce(&mut Vec<(c_int, c_int)>) -> R) -> R {
    ALIASES.with(f)
}

/// The number whose record drives `fd`'s handshake: `fd` itself, or the pending
/// socket it is a duplicate of.
pub fn leader(fd: c_int) -> c_int {
    if kind_of(fd) != kind::PENDING {
        return fd;
    }
    SOCKETS.with(|m| {
        if m.contains_key(&fd) {
            return fd;
        }
        aliases(|a| a.iter().find(|(d, _)| *d == fd).map_or(fd, |(_, l)| *l))
    })
}

/// The duplicates of the pending socket `leader`. Only for use inside [`with`] on
/// `leader` (the table lock is held there), e.g. to park their epoll registrations.
pub fn duplicates_of(leader: c_int) -> Vec<c_int> {
    if !ANY_ALIAS.load(Ordering::Relaxed) {
        return Vec::new();
    }
    aliases(|a| {
        a.iter()
            .filter(|(_, l)| *l == leader)
            .map(|(d, _)| *d)
            .collect()
    })
}

/// The handshake `leader` drove has ended (or its record is gone): its duplicates get
/// a copy of an established record, and are otherwise left to the kernel's view (a
/// failed connect's errno is collected once, through the leader).
pub fn settle_aliases(leader: c_int) {
    if !ANY_ALIAS.load(Ordering::Relaxed) {
        return;
    }
    SOCKETS.with(|m| {
        let dups: Vec<c_int> = aliases(|a| {
            let d = a
                .iter()
                .filter(|(_, l)| *l == leader)
                .map(|(d, _)| *d)
                .collect();
            a.retain(|(_, l)| *l != leader);
            d
        });
        if dups.is_empty() {
            return;
        }
        let copy = match m.get(&leader) {
            Some(Socket {
                inode,
                family,
                shown,
                state: SocketState::Established { target, proxy, .. },
            }) => Some((*inode, *family, *shown, *target, *proxy)),
            _ => None,
        };
        for d in dups {
            match copy {
                Some((inode, family, shown, target, proxy)) => {
                    let s = Socket {
                        inode,
                        family,
                        shown,
                        state: SocketState::Established {
                            target,
                            proxy,
                            connect_reported: true,
                        },
                    };
                    set_kind(d, s.state.kind());
                    m.insert(d, s);
                }
                None => set_kind(d, kind::NONE),
            }
        }
    });
}

/// `fd` is being closed (or replaced by `dup2`): drops its record, and if duplicates
/// of its pending socket remain, hands the handshake to the first of them.
fn forget_closed_locked(m: &mut BTreeMap<c_int, Socket>, fd: c_int) -> Option<Socket> {
    let heir = aliases(|a| {
        let was_alias = a.iter().any(|(d, _)| *d == fd);
        a.retain(|(d, _)| *d != fd);
        if was_alias {
            return None;
        }
        let heir = a.iter().find(|(_, l)| *l == fd).map(|(d, _)| *d)?;
        a.retain(|(d, _)| *d != heir);
        for e in a.iter_mut().filter(|(_, l)| *l == fd) {
            e.1 = heir;
        }
        Some(heir)
    });
    set_kind(fd, kind::NONE);
    let rec = m.remove(&fd);
    match (heir, rec) {
        (Some(h), Some(mut r)) => {
            if let SocketState::Pending(p) = &mut r.state {
                p.moved_to_new_fd(h);
            }
            set_kind(h, r.state.kind());
            m.insert(h, r);
            None
        }
        (Some(h), None) => {
            set_kind(h, kind::NONE);
            None
        }
        (None, r) => r,
    }
}

/// [`forget`] for a `close`: duplicates of a pending socket keep its handshake.
pub fn forget_closed(fd: c_int) -> Option<Socket> {
    if !is_ours(fd) {
        return None;
    }
    SOCKETS.with(|m| forget_closed_locked(m, fd))
}

/// Records `fd` as managed (replacing any record of an earlier socket on that number).
pub fn insert(fd: c_int, socket: Socket) {
    SOCKETS.with(|m| {
        set_kind(fd, socket.state.kind());
        m.insert(fd, socket);
    });
}

/// Forgets `fd` (it was closed, reconnected elsewhere, or dissolved). Returns the record.
pub fn forget(fd: c_int) -> Option<Socket> {
    if !is_ours(fd) {
        return None;
    }
    SOCKETS.with(|m| {
        set_kind(fd, kind::NONE);
        m.remove(&fd)
    })
}

/// Forgets every fd in `first..=last` (close_range, closefrom).
pub fn forget_range(first: c_int, last: c_int) {
    SOCKETS.with(|m| {
        let mut gone: Vec<c_int> = m.range(first..=last).map(|(fd, _)| *fd).collect();
        aliases(|a| {
            gone.extend(
                a.iter()
                    .map(|(d, _)| *d)
                    .filter(|d| (first..=last).contains(d)),
            )
        });
        // Duplicates first, so a leader's record only moves to one outside the range.
        gone.sort_unstable_by_key(|fd| m.contains_key(fd));
        for fd in gone {
            forget_closed_locked(m, fd);
        }
    });
    // Epoll marks in the range go too (their registrations are dropped by the caller).
    let hi = last.min(FAST_SLOTS as c_int - 1);
    for fd in first.max(0)..=hi {
        if kind_of(fd) == kind::EPOLL {
            set_kind(fd, kind::NONE);
        }
    }
}

/// `new` now refers to the same socket as `old` (dup, dup2, dup3, F_DUPFD). A pending
/// handshake stays with the original fd's record; the duplicate is marked pending and
/// follows it ([`leader`]), so it too hides readiness and data until the proxy has
/// answered, and gets a copy of the record once the socket is established
/// ([`settle_aliases`]). Closing the original hands the handshake to a duplicate
/// ([`forget_closed`]).
pub fn duplicate(old: c_int, new: c_int) {
    SOCKETS.with(|m| {
        // dup2/dup3 closed whatever `new` was first.
        forget_closed_locked(m, new);
        // A duplicate of a pending socket follows the record that drives the handshake
        // (the kernel socket is one; so is the handshake): see [`leader`].
        let lead = if m.contains_key(&old) {
            Some(old)
        } else {
            aliases(|a| a.iter().find(|(d, _)| *d == old).map(|(_, l)| *l))
        };
        if let Some(lead) = lead {
            if matches!(
                m.get(&lead).map(|s| &s.state),
                Some(SocketState::Pending(_))
            ) {
                aliases(|a| a.push((new, lead)));
                ANY_ALIAS.store(true, Ordering::Relaxed);
                set_kind(new, kind::PENDING);
                return;
            }
        }
        let copy = match m.get(&old) {
            Some(Socket {
                inode,
                family,
                shown,
                state: SocketState::Established { target, proxy, .. },
            }) => Some(Socket {
                inode: *inode,
                family: *family,
                shown: *shown,
                state: SocketState::Established {
                    target: *target,
                    proxy: *proxy,
                    connect_reported: true,
                },
            }),
            // The duplicate shares the kernel socket, so it shares the session too.
            Some(Socket {
                inode,
                family,
                shown,
                state: SocketState::Udp(a),
            }) => Some(Socket {
                inode: *inode,
                family: *family,
                shown: *shown,
                state: SocketState::Udp(a.clone()),
            }),
            _ => None,
        };
        match copy {
            Some(s) => {
                set_kind(new, s.state.kind());
                m.insert(new, s);
            }
            None => set_kind(new, kind::NONE),
        }
    });
}

/// Runs `f` on the record for `fd` under the table lock, if it is still the socket we
/// recorded (same inode); a stale record is dropped. The kind byte follows the state
/// `f` leaves behind. `f` may make non-blocking system calls but must not block.
pub fn with<R>(fd: c_int, f: impl FnOnce(&mut Socket) -> R) -> Option<R> {
    if !is_ours(fd) {
        return None;
    }
    let ino = laysocks_sys::net::inode(fd).ok();
    SOCKETS.with(|m| {
        let sock = m.get_mut(&fd)?;
        if Some(sock.inode) != ino {
            m.remove(&fd);
            set_kind(fd, kind::NONE);
            return None;
        }
        let r = f(sock);
        set_kind(fd, sock.state.kind());
        Some(r)
    })
}

/// What `getpeername` shows for `fd` (the target, or what the program connected to)
/// and the socket's family, if `fd` is a live, established record.
pub fn lookup_peer(fd: c_int) -> Option<(c_int, Option<SocketAddr>)> {
    with(fd, |s| {
        let peer = match &s.state {
            SocketState::Established { target, .. } => s.shown.or(target.to_socket_addr()),
            SocketState::Udp(a) => a.peer.map(|(_, shown)| shown),
            _ => None,
        };
        (s.family, peer)
    })
}

extern "C" fn before_fork() {
    // Lock order everywhere: the fd table, then the epoll registry.
    SOCKETS.lock();
    crate::epoll::lock_for_fork();
    crate::resolve::lock_for_fork();
}

extern "C" fn in_parent_after_fork() {
    crate::resolve::unlock_after_fork();
    crate::epoll::unlock_after_fork();
    SOCKETS.unlock();
}

extern "C" fn in_child_after_fork() {
    // The child shares the parent's sockets. Only one process may drive a handshake
    // (both reading the proxy's reply would corrupt it), and the parent started it: the
    // child forgets pending handshakes; the kernel state it sees is the parent's.
    // SAFETY: we hold the lock (taken in before_fork) and only this thread exists.
    let m = unsafe { &mut *SOCKETS.value.get() };
    m.retain(|fd, s| {
        let keep = !matches!(s.state, SocketState::Pending(_));
        if !keep {
            set_kind(*fd, kind::NONE);
        }
        keep
    });
    // Duplicates of pending sockets follow the pending records out.
    // SAFETY: ALIASES is only taken under SOCKETS, which we hold.
    let a = unsafe { &mut *ALIASES.value.get() };
    for (d, _) in a.drain(..) {
        set_kind(d, kind::NONE);
    }
    crate::epoll::after_fork_in_child();
    crate::resolve::unlock_after_fork();
    SOCKETS.unlock();
}

/// Makes `fork` safe for the table (called once from the layer's constructor).
pub fn register_fork_handlers() {
    // SAFETY: the handlers are plain functions that live as long as the library.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(in_parent_after_fork),
            Some(in_child_after_fork),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(inode: u64) -> Socket {
        Socket {
            inode,
            family: libc::AF_INET,
            shown: None,
            state: SocketState::Established {
                target: "203.0.113.2:80".parse::<SocketAddr>().unwrap().into(),
                proxy: "198.51.100.1:1080".parse().unwrap(),
                connect_reported: true,
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
        assert!(lookup_peer(0).is_none());
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
