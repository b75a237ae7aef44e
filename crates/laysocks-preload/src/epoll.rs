//! epoll: pending handshakes advance inside the program's own `epoll_wait`.
//!
//! **Tag in place** (DESIGN §3.4, checked with asyncio, libuv, tokio, nginx and Java NIO;
//! a private "shadow" epoll set per program set was tried and hangs programs: `ELOOP` when
//! their sets are already nested deep, and lost wake-ups when they `dup2` over the
//! shadow's fd). While a socket's handshake runs, each of the program's registrations of
//! it is *parked*: re-registered in the program's own epoll set with the events the
//! handshake needs and, as `data`, a tag no program can use — a non-canonical x86-64
//! address prefix in the upper 32 bits, the fd in the lower 32. When the handshake
//! ends, every registration is given back exactly as the program made it (`MOD`, or
//! `DEL` + `ADD` for `EPOLLEXCLUSIVE`, which cannot be modified); the kernel re-polls the
//! socket on `ADD`/`MOD` and queues it if ready, even for `EPOLLET`, and wakes a waiter
//! on another thread.
//!
//! To do that we must know every registration, including those made *before* the
//! socket was connected (nginx registers first): every `EPOLL_CTL_ADD/MOD/DEL` of every
//! fd is recorded. While a socket is parked, the program's `MOD` only updates the record,
//! its `DEL` is real, and a second `ADD` gets `EEXIST` as it would from the kernel.
//!
//! `epoll_wait` and friends always call the kernel first and look at the results *after*
//! it returns (a thread may have entered the wait before the first tag was made, and an
//! event may be dequeued just before another thread gives its registration back): any
//! event whose `data` has the tag's shape and is not the program's own registration is
//! ours. Tag events are taken out of the results and their handshakes advanced; if
//! nothing is left for the program, the wait goes on with the time that remains — and an
//! infinite wait never returns 0 (libuv asserts on it). The wait is also cut short at the
//! earliest handshake deadline among the sockets parked in that set, so a proxy that
//! never answers fails the connect on time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use laysocks_sys::{real, time, Errno};
use libc::{c_int, epoll_event, sigset_t, timespec};

use crate::fdtable::{self, SpinLock};
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::pending;

/// The upper half of a tag: bits 48–63 are neither all zeros nor all ones, so no
/// user-space pointer on x86-64 or AArch64 (48-bit) looks like this.
const TAG_PREFIX: u64 = 0xDEAD_5EC5_0000_0000;
const TAG_MASK: u64 = 0xFFFF_FFFF_0000_0000;

fn tag(fd: c_int) -> u64 {
    TAG_PREFIX | u64::from(fd as u32)
}

#[derive(Clone, Copy, Debug)]
struct Registration {
    /// The program's events and data, as it last gave them.
    events: u32,
    data: u64,
    /// Whether the kernel currently holds our tag registration instead.
    parked: bool,
}

struct Registry {
    /// Keyed (fd, epfd), so that all registrations of one fd are one range.
    regs: BTreeMap<(c_int, c_int), Registration>,
    /// Parked fds: the epoll events the handshake waits for, and its deadline.
    parked: BTreeMap<c_int, (u32, u64)>,
}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    regs: BTreeMap::new(),
    parked: BTreeMap::new(),
});

/// Set once the first tag exists; checked after every wait.
static TAGS_LIVE: AtomicBool = AtomicBool::new(false);

fn to_epoll(events: i16) -> u32 {
    let mut m = 0;
    if events & libc::POLLIN != 0 {
        m |= libc::EPOLLIN as u32;
    }
    if events & libc::POLLOUT != 0 {
        m |= libc::EPOLLOUT as u32;
    }
    m
}

fn ctl(epfd: c_int, op: c_int, fd: c_int, events: u32, data: u64) -> Result<(), Errno> {
    let mut ev = epoll_event { events, u64: data };
    // SAFETY: ev is a valid epoll_event for the duration of the call.
    let rc = unsafe { real::epoll_ctl()(epfd, op, fd, &mut ev) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Parks every registration of `fd` on the handshake's next `events` (poll bits).
/// Called with the fd table locked (lock order: table, then registry).
pub fn park(fd: c_int, events: i16, deadline_ms: u64) {
    let mask = to_epoll(events);
    REGISTRY.with(|r| {
        r.parked.insert(fd, (mask, deadline_ms));
        TAGS_LIVE.store(true, Ordering::Release);
        let mut stale = Vec::new();
        for ((_, epfd), reg) in r.regs.range_mut((fd, c_int::MIN)..=(fd, c_int::MAX)) {
            let exclusive = reg.events & libc::EPOLLEXCLUSIVE as u32 != 0;
            let res = if exclusive && !reg.parked {
                let _ = ctl(*epfd, libc::EPOLL_CTL_DEL, fd, 0, 0);
                ctl(*epfd, libc::EPOLL_CTL_ADD, fd, mask, tag(fd))
            } else {
                ctl(*epfd, libc::EPOLL_CTL_MOD, fd, mask, tag(fd))
            };
            match res {
                Ok(()) => reg.parked = true,
                // A record of an earlier file on this fd number: the kernel dropped it.
                Err(_) => stale.push(*epfd),
            }
        }
        for epfd in stale {
            r.regs.remove(&(fd, epfd));
        }
    });
}

/// Gives every registration of `fd` back to the program, exactly as it made it.
/// Called with the fd table locked.
/// A duplicate `fd` of the parked socket `like` (`dup` while the handshake runs): the
/// duplicate's own registrations, made from now on, are parked the same way.
pub fn park_like(fd: c_int, like: c_int) {
    REGISTRY.with(|r| {
        if let Some(&v) = r.parked.get(&like) {
            r.parked.insert(fd, v);
        }
    });
}

pub fn unpark(fd: c_int) {
    REGISTRY.with(|r| {
        if r.parked.remove(&fd).is_none() {
            return;
        }
        let mut stale = Vec::new();
        for ((_, epfd), reg) in r.regs.range_mut((fd, c_int::MIN)..=(fd, c_int::MAX)) {
            if !reg.parked {
                continue;
            }
            let res = if reg.events & libc::EPOLLEXCLUSIVE as u32 != 0 {
                let _ = ctl(*epfd, libc::EPOLL_CTL_DEL, fd, 0, 0);
                ctl(*epfd, libc::EPOLL_CTL_ADD, fd, reg.events, reg.data)
            } else {
                ctl(*epfd, libc::EPOLL_CTL_MOD, fd, reg.events, reg.data)
            };
            reg.parked = false;
            if res.is_err() {
                stale.push(*epfd);
            }
        }
        for epfd in stale {
            r.regs.remove(&(fd, epfd));
        }
        if r.parked.is_empty() {
            TAGS_LIVE.store(false, Ordering::Release);
        }
    });
}

/// `fd` was closed: the kernel dropped its registrations, and so do we.
pub fn forget_fd(fd: c_int) {
    REGISTRY.with(|r| {
        let keys: Vec<_> = r
            .regs
            .range((fd, c_int::MIN)..=(fd, c_int::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            r.regs.remove(&k);
        }
        r.parked.remove(&fd);
    });
}

/// An epoll instance was closed: its registrations are gone.
pub fn forget_epfd(epfd: c_int) {
    REGISTRY.with(|r| r.regs.retain(|(_, e), _| *e != epfd));
}

pub(crate) fn lock_for_fork() {
    REGISTRY.lock();
}

pub(crate) fn unlock_after_fork() {
    REGISTRY.unlock();
}

/// In a forked child: the epoll sets are shared with the parent, which goes on driving
/// its handshakes. The child keeps the records (so it recognises and drops tag events
/// of the parent's sockets) but no longer treats any fd as parked for itself.
pub fn after_fork_in_child() {
    REGISTRY.unlock();
}

hook! {
    /// `epoll_ctl(2)`: every registration is recorded; parked sockets are emulated.
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut epoll_event) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's epoll_ctl arguments, with epoll_ctl(2)'s contract.
    body: unsafe { on_ctl(epfd, op, fd, ev) }
}

/// # Safety
/// `ev` is null or points to an epoll_event, as epoll_ctl(2) requires.
unsafe fn on_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut epoll_event) -> HookResult<c_int> {
    let app = if ev.is_null() {
        None
    } else {
        // SAFETY: non-null and readable per the contract; the struct is packed on x86-64.
        Some(unsafe { std::ptr::read_unaligned(ev) })
    };
    fdtable::mark_epoll(epfd);
    let done = |rc: c_int| Ok(Outcome::Done(rc));
    REGISTRY.with(|r| match op {
        libc::EPOLL_CTL_ADD => {
            let Some(app) = app else {
                return Ok(Outcome::Passthrough);
            };
            let (events, data) = (app.events, app.u64);
            if let Some(&(mask, _)) = r.parked.get(&fd) {
                if r.regs.get(&(fd, epfd)).is_some_and(|g| g.parked) {
                    return Err(Errno(libc::EEXIST).into());
                }
                ctl(epfd, libc::EPOLL_CTL_ADD, fd, mask, tag(fd))?;
                r.regs.insert(
                    (fd, epfd),
                    Registration {
                        events,
                        data,
                        parked: true,
                    },
                );
                return done(0);
            }
            ctl(epfd, libc::EPOLL_CTL_ADD, fd, events, data)?;
            r.regs.insert(
                (fd, epfd),
                Registration {
                    events,
                    data,
                    parked: false,
                },
            );
            done(0)
        }
        libc::EPOLL_CTL_MOD => {
            let Some(app) = app else {
                return Ok(Outcome::Passthrough);
            };
            let (events, data) = (app.events, app.u64);
            if let Some(reg) = r.regs.get_mut(&(fd, epfd)) {
                if reg.parked {
                    // The kernel refuses MOD to or from EPOLLEXCLUSIVE.
                    if (events | reg.events) & libc::EPOLLEXCLUSIVE as u32 != 0 {
                        return Err(Errno(libc::EINVAL).into());
                    }
                    reg.events = events;
                    reg.data = data;
                    return done(0);
                }
            }
            ctl(epfd, libc::EPOLL_CTL_MOD, fd, events, data)?;
            r.regs.insert(
                (fd, epfd),
                Registration {
                    events,
                    data,
                    parked: false,
                },
            );
            done(0)
        }
        libc::EPOLL_CTL_DEL => {
            r.regs.remove(&(fd, epfd));
            ctl(epfd, libc::EPOLL_CTL_DEL, fd, 0, 0)?;
            done(0)
        }
        _ => Ok(Outcome::Passthrough),
    })
}

/// How long a wait may block.
#[derive(Clone, Copy)]
pub enum Timeout {
    Infinite,
    Micros(u64),
}

/// Microseconds as a `timespec`, for the kernel's nanosecond-resolution waits.
pub fn timespec_from_us(us: u64) -> timespec {
    timespec {
        tv_sec: (us / 1_000_000) as libc::time_t,
        tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
    }
}

impl Timeout {
    pub fn from_ms(ms: c_int) -> Timeout {
        if ms < 0 {
            Timeout::Infinite
        } else {
            Timeout::Micros(ms as u64 * 1000)
        }
    }

    /// # Safety
    /// `ts` is null or points to a timespec.
    pub unsafe fn from_timespec(ts: *const timespec) -> Timeout {
        if ts.is_null() {
            return Timeout::Infinite;
        }
        // SAFETY: non-null per the contract.
        let ts = unsafe { *ts };
        Timeout::Micros(
            (ts.tv_sec.max(0) as u64) * 1_000_000 + (ts.tv_nsec.max(0) as u64).div_ceil(1000),
        )
    }
}

hook! {
    fn epoll_wait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer of `max` events, per epoll_wait(2).
    body: unsafe { on_wait(epfd, events, max, Timeout::from_ms(timeout), std::ptr::null(), false) }
}

hook! {
    fn epoll_pwait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int, mask: *const sigset_t) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer and mask, per epoll_pwait(2).
    body: unsafe { on_wait(epfd, events, max, Timeout::from_ms(timeout), mask, false) }
}

hook! {
    fn epoll_pwait2(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's buffer, timeout and mask, per epoll_pwait2(2).
    body: unsafe { on_wait(epfd, events, max, Timeout::from_timespec(timeout), mask, true) }
}

/// # Safety
/// `events` holds `max` writable epoll_events; `mask` is null or a sigset.
unsafe fn on_wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: Timeout,
    mask: *const sigset_t,
    nanos: bool,
) -> HookResult<c_int> {
    let start = time::now_us();
    let app_deadline = match timeout {
        Timeout::Infinite => None,
        Timeout::Micros(t) => Some(start + t),
    };
    let mut zero_passes = 0;
    loop {
        let now = time::now_us();
        let mut until = app_deadline;
        if TAGS_LIVE.load(Ordering::Acquire) {
            if let Some(d) = earliest_deadline_us(epfd) {
                until = Some(until.map_or(d, |u| u.min(d)));
            }
        }
        let left = until.map(|u| u.saturating_sub(now));
        // SAFETY: the program's buffer and mask, passed on unchanged.
        let n = unsafe { wait_once(epfd, events, max, left, mask, nanos) };
        if n < 0 {
            return Err(Errno::last().into());
        }
        // Scan for tags even when none is live any more: an event dequeued just before
        // another thread gave a registration back still carries our tag, and must never
        // reach the program. The scan is a compare per event; the lock is only taken
        // when a tag is seen.
        // SAFETY: the kernel wrote `n` events into the buffer.
        if !unsafe { any_tag(events, n as usize) } {
            if n > 0 || app_deadline.is_some_and(|d| time::now_us() >= d) {
                return Ok(Outcome::Done(n));
            }
            // Woken for a handshake deadline with nothing for the program: fail the
            // expired handshakes and wait on.
            advance_expired(epfd);
            continue;
        }
        // SAFETY: the kernel wrote `n` events into the buffer.
        let (kept, tagged) = unsafe { filter(epfd, events, n as usize) };
        let advanced = !tagged.is_empty();
        for fd in tagged {
            pending::advance(fd);
        }
        advance_expired(epfd);
        if kept > 0 {
            return Ok(Outcome::Done(kept as c_int));
        }
        let now = time::now_us();
        if app_deadline.is_some_and(|d| now >= d) {
            // Time is up; but a handshake that just completed has queued its event:
            // give it one immediate look before reporting nothing.
            if advanced && zero_passes < 2 {
                zero_passes += 1;
                continue;
            }
            return Ok(Outcome::Done(0));
        }
    }
}

/// # Safety
/// As for [`on_wait`]; `left` is the time to block (None: forever).
unsafe fn wait_once(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    left: Option<u64>,
    mask: *const sigset_t,
    nanos: bool,
) -> c_int {
    if nanos {
        let ts = left.map(timespec_from_us);
        let tp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const timespec);
        // SAFETY: as the caller's epoll_pwait2; `ts` outlives the call.
        unsafe { real::epoll_pwait2()(epfd, events, max, tp, mask) }
    } else {
        let ms = left.map_or(-1, |us| us.div_ceil(1000).min(i32::MAX as u64) as c_int);
        // SAFETY: as the caller's epoll_pwait.
        unsafe { real::epoll_pwait()(epfd, events, max, ms, mask) }
    }
}

/// Whether any of the `n` results carries a tag-shaped `data`.
///
/// # Safety
/// `events` holds `n` initialised epoll_events.
unsafe fn any_tag(events: *const epoll_event, n: usize) -> bool {
    (0..n).any(|i| {
        // SAFETY: i < n, within the results.
        let ev = unsafe { std::ptr::read_unaligned(events.add(i)) };
        ev.u64 & TAG_MASK == TAG_PREFIX
    })
}

/// Removes tag events from the `n` results, compacting the rest; returns how many are
/// left and the fds whose handshakes must be advanced. A tag-shaped value is the
/// program's own only if its current registration of that fd carries exactly it.
///
/// # Safety
/// `events` holds `n` initialised epoll_events.
unsafe fn filter(epfd: c_int, events: *mut epoll_event, n: usize) -> (usize, Vec<c_int>) {
    let mut kept = 0;
    let mut tagged = Vec::new();
    REGISTRY.with(|r| {
        for i in 0..n {
            // SAFETY: i < n, within the results.
            let ev = unsafe { std::ptr::read_unaligned(events.add(i)) };
            let data = ev.u64;
            if data & TAG_MASK == TAG_PREFIX {
                let fd = (data & 0xFFFF_FFFF) as u32 as c_int;
                let programs_own = r
                    .regs
                    .get(&(fd, epfd))
                    .is_some_and(|g| !g.parked && g.data == data);
                if !programs_own {
                    if fdtable::needs_attention(fd) && r.parked.contains_key(&fd) {
                        tagged.push(fd);
                    }
                    continue;
                }
            }
            if kept != i {
                // SAFETY: kept < i < n, both within the results.
                unsafe { std::ptr::write_unaligned(events.add(kept), ev) };
            }
            kept += 1;
        }
    });
    (kept, tagged)
}

/// The earliest handshake deadline among sockets parked in `epfd`, in µs.
fn earliest_deadline_us(epfd: c_int) -> Option<u64> {
    REGISTRY.with(|r| {
        r.parked
            .iter()
            .filter(|(fd, (_, d))| *d > 0 && r.regs.get(&(**fd, epfd)).is_some_and(|g| g.parked))
            .map(|(_, (_, d))| d * 1000)
            .min()
    })
}

/// Fails handshakes parked in `epfd` whose deadline has passed.
fn advance_expired(epfd: c_int) {
    let now = time::now_ms();
    let due: Vec<c_int> = REGISTRY.with(|r| {
        r.parked
            .iter()
            .filter(|(fd, (_, d))| {
                *d > 0 && *d <= now && r.regs.get(&(**fd, epfd)).is_some_and(|g| g.parked)
            })
            .map(|(fd, _)| *fd)
            .collect()
    });
    for fd in due {
        pending::advance(fd);
    }
}
