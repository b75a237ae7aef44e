//! `poll`, `ppoll`, `select`, `pselect` (and the fortified `__poll_chk`, `__ppoll_chk`):
//! pending handshakes advance inside the program's own readiness calls.
//!
//! For each pending socket in the caller's set we ask the kernel for what the
//! *handshake* needs (`POLLOUT` to send, `POLLIN` for the proxy's reply) instead of what
//! the program asked for, advance the handshake when that arrives, and report nothing for
//! the socket until the proxy's success reply — then the program's own events, answered
//! by the kernel. A failed handshake shows as `POLLOUT|POLLERR|POLLHUP`, like a refused
//! connect. When nothing is left to report we wait again with the time that remains
//! (never returning 0 early), and wake up at the earliest handshake deadline so a proxy
//! that never answers fails the connect on time. The caller's `events` and `fd_set`s are
//! read, never rewritten (only `revents` and the result sets are written, as the kernel
//! does).
//!
//! `select` is served by the same `poll` loop: internally we never call `select`, which
//! cannot take fds ≥ 1024.

use laysocks_sys::{real, time, Errno};
use libc::{c_int, c_ulong, fd_set, nfds_t, pollfd, sigset_t, size_t, timespec, timeval};

use crate::epoll::Timeout;
use crate::fdtable;
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::pending::{self, Observed};

/// How an entry of the caller's array is treated in one round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Treat {
    AsAsked,
    /// A pending handshake: its events are the handshake's, its results hidden.
    Hidden,
    /// A failed handshake not yet collected: report `POLLERR` too.
    Failed,
}

/// The poll loop shared by every readiness hook.
fn poll_with_layer(
    user: &mut [pollfd],
    timeout: Timeout,
    mask: *const sigset_t,
) -> Result<c_int, Errno> {
    let start = time::now_us();
    let app_deadline = match timeout {
        Timeout::Infinite => None,
        Timeout::Micros(t) => Some(start + t),
    };
    let mut kernel: Vec<pollfd> = user.to_vec();
    let mut treat = vec![Treat::AsAsked; user.len()];
    loop {
        let mut until = app_deadline;
        for (i, p) in user.iter().enumerate() {
            kernel[i] = pollfd {
                fd: p.fd,
                events: p.events,
                revents: 0,
            };
            treat[i] = Treat::AsAsked;
            if p.fd >= 0 && fdtable::needs_attention(p.fd) {
                match pending::advance(p.fd) {
                    Observed::Pending {
                        events,
                        deadline_ms,
                    } => {
                        kernel[i].events = events;
                        treat[i] = Treat::Hidden;
                        let d = deadline_ms * 1000;
                        until = Some(until.map_or(d, |u| u.min(d)));
                    }
                    Observed::Failed(_) => treat[i] = Treat::Failed,
                    Observed::Established | Observed::NotOurs => {}
                }
            }
        }
        let left = until.map(|u| u.saturating_sub(time::now_us()));
        let ts = left.map(crate::epoll::timespec_from_us);
        let tp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const timespec);
        // SAFETY: `kernel` is a valid array of kernel.len() pollfds; tp/mask as the caller's.
        let rc = unsafe { real::ppoll()(kernel.as_mut_ptr(), kernel.len() as nfds_t, tp, mask) };
        if rc < 0 {
            return Err(Errno::last());
        }
        let mut count = 0;
        let mut progressed = false;
        for (i, p) in user.iter_mut().enumerate() {
            let got = kernel[i].revents;
            p.revents = match treat[i] {
                Treat::Hidden => {
                    progressed |= got != 0;
                    0
                }
                Treat::Failed => got | libc::POLLERR,
                Treat::AsAsked => got,
            };
            if p.revents != 0 {
                count += 1;
            }
        }
        if count > 0 {
            return Ok(count);
        }
        if progressed {
            continue;
        }
        if app_deadline.is_some_and(|d| time::now_us() >= d) {
            return Ok(0);
        }
        // A handshake deadline passed: the next round's advance fails it.
    }
}

/// Whether any fd in the array needs the layer.
///
/// # Safety
/// `fds` points to `n` readable pollfds (or is null).
#[inline(always)]
unsafe fn any_attention(fds: *const pollfd, n: nfds_t) -> bool {
    if fds.is_null() || !fdtable::any_attention() {
        return false;
    }
    // SAFETY: i < n, within the caller's array.
    (0..n as usize).any(|i| fdtable::needs_attention(unsafe { (*fds.add(i)).fd }))
}

/// # Safety
/// `fds` points to `n` pollfds, as poll(2) requires.
unsafe fn on_poll(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: Timeout,
    mask: *const sigset_t,
) -> HookResult<c_int> {
    // SAFETY: the caller's array of n entries, exclusively ours for the call.
    let user = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    Ok(Outcome::Done(poll_with_layer(user, timeout, mask)?))
}

hook! {
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int;
    // SAFETY: the program passed `n` pollfds at `fds`, as poll(2) requires.
    fast_path: !unsafe { any_attention(fds, n) };
    on_panic: OnPanic::Passthrough;
    // SAFETY: as above.
    body: unsafe { on_poll(fds, n, Timeout::from_ms(timeout), std::ptr::null()) }
}

hook! {
    fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    // SAFETY: the program passed `n` pollfds at `fds`, as ppoll(2) requires.
    fast_path: !unsafe { any_attention(fds, n) };
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's ppoll arguments.
    body: unsafe { on_poll(fds, n, Timeout::from_timespec(timeout), mask) }
}

hook! {
    /// `_FORTIFY_SOURCE` poll: libc's own check runs when the size is wrong.
    fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int;
    // SAFETY: the program passed `n` pollfds at `fds`.
    fast_path: fdslen / std::mem::size_of::<pollfd>() < n as usize || !unsafe { any_attention(fds, n) };
    on_panic: OnPanic::Passthrough;
    // SAFETY: the array holds at least n entries (checked by the fast path).
    body: unsafe { on_poll(fds, n, Timeout::from_ms(timeout), std::ptr::null()) }
}

hook! {
    fn __ppoll_chk(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t, fdslen: size_t) -> c_int;
    // SAFETY: the program passed `n` pollfds at `fds`.
    fast_path: fdslen / std::mem::size_of::<pollfd>() < n as usize || !unsafe { any_attention(fds, n) };
    on_panic: OnPanic::Passthrough;
    // SAFETY: the array holds at least n entries (checked by the fast path).
    body: unsafe { on_poll(fds, n, Timeout::from_timespec(timeout), mask) }
}

const BITS: usize = 8 * std::mem::size_of::<c_ulong>();

/// The words of an fd_set covering fds below `nfds` (null set: none).
///
/// # Safety
/// `set` is null or points to a set large enough for `nfds` fds, as select(2) requires.
unsafe fn words<'a>(set: *mut fd_set, nfds: usize) -> Option<&'a mut [c_ulong]> {
    if set.is_null() {
        return None;
    }
    // SAFETY: fd_set is an array of c_ulong; the caller sized it for nfds bits.
    Some(unsafe { std::slice::from_raw_parts_mut(set as *mut c_ulong, nfds.div_ceil(BITS)) })
}

/// Whether any fd in the three sets needs the layer.
///
/// # Safety
/// As for [`words`].
unsafe fn select_needs_layer(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set) -> bool {
    if nfds <= 0 || !fdtable::any_attention() {
        return false;
    }
    let n = nfds as usize;
    // SAFETY: as above.
    let (r, w, e) = unsafe { (words(r, n), words(w, n), words(e, n)) };
    for i in 0..n.div_ceil(BITS) {
        let mut bits = r.as_ref().map_or(0, |s| s[i])
            | w.as_ref().map_or(0, |s| s[i])
            | e.as_ref().map_or(0, |s| s[i]);
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let fd = i * BITS + b;
            if fd < n && fdtable::needs_attention(fd as c_int) {
                return true;
            }
        }
    }
    false
}

/// The kernel's own mapping from poll results to select sets (fs/select.c).
const IN_SET: i16 =
    libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND | libc::POLLHUP | libc::POLLERR;
const OUT_SET: i16 = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND | libc::POLLERR;
const EX_SET: i16 = libc::POLLPRI;

/// # Safety
/// As select(2): the sets hold `nfds` bits each (or are null).
unsafe fn on_select(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    timeout: Timeout,
    mask: *const sigset_t,
) -> Result<(c_int, u64), Errno> {
    if nfds < 0 {
        return Err(Errno(libc::EINVAL));
    }
    let n = nfds as usize;
    // SAFETY: as above.
    let (mut rs, mut ws, mut es) = unsafe { (words(r, n), words(w, n), words(e, n)) };
    let isset = |s: &Option<&mut [c_ulong]>, fd: usize| {
        s.as_ref()
            .is_some_and(|s| s[fd / BITS] >> (fd % BITS) & 1 == 1)
    };
    let mut list = Vec::new();
    for fd in 0..n {
        let mut ev = 0;
        if isset(&rs, fd) {
            ev |= libc::POLLIN;
        }
        if isset(&ws, fd) {
            ev |= libc::POLLOUT;
        }
        if isset(&es, fd) {
            ev |= libc::POLLPRI;
        }
        if ev != 0 {
            list.push(pollfd {
                fd: fd as c_int,
                events: ev,
                revents: 0,
            });
        }
    }
    let started = time::now_us();
    poll_with_layer(&mut list, timeout, mask)?;
    let elapsed = time::now_us() - started;
    for s in [&mut rs, &mut ws, &mut es].into_iter().flatten() {
        s.fill(0);
    }
    let set = |s: &mut Option<&mut [c_ulong]>, fd: usize| {
        if let Some(s) = s {
            s[fd / BITS] |= 1 << (fd % BITS);
        }
    };
    let mut count = 0;
    for p in &list {
        if p.revents & libc::POLLNVAL != 0 {
            return Err(Errno(libc::EBADF));
        }
        let fd = p.fd as usize;
        if p.events & libc::POLLIN != 0 && p.revents & IN_SET != 0 {
            set(&mut rs, fd);
            count += 1;
        }
        if p.events & libc::POLLOUT != 0 && p.revents & OUT_SET != 0 {
            set(&mut ws, fd);
            count += 1;
        }
        if p.events & libc::POLLPRI != 0 && p.revents & EX_SET != 0 {
            set(&mut es, fd);
            count += 1;
        }
    }
    Ok((count, elapsed))
}

hook! {
    fn select(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, t: *mut timeval) -> c_int;
    // SAFETY: the sets hold nfds bits each, as select(2) requires.
    fast_path: !unsafe { select_needs_layer(nfds, r, w, e) };
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's select arguments.
    body: unsafe {
        let timeout = if t.is_null() {
            Timeout::Infinite
        } else {
            Timeout::Micros((*t).tv_sec.max(0) as u64 * 1_000_000 + (*t).tv_usec.max(0) as u64)
        };
        let (count, elapsed) = on_select(nfds, r, w, e, timeout, std::ptr::null())?;
        if let (false, Timeout::Micros(total)) = (t.is_null(), timeout) {
            // Linux writes the time not slept back into the timeval.
            let left = total.saturating_sub(elapsed);
            (*t).tv_sec = (left / 1_000_000) as libc::time_t;
            (*t).tv_usec = (left % 1_000_000) as libc::suseconds_t;
        }
        Ok(Outcome::Done(count))
    }
}

hook! {
    fn pselect(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, t: *const timespec, mask: *const sigset_t) -> c_int;
    // SAFETY: the sets hold nfds bits each, as pselect(2) requires.
    fast_path: !unsafe { select_needs_layer(nfds, r, w, e) };
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's pselect arguments.
    body: unsafe {
        let (count, _) = on_select(nfds, r, w, e, Timeout::from_timespec(t), mask)?;
        Ok(Outcome::Done(count))
    }
}
