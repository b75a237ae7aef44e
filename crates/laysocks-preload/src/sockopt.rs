//! `getsockopt(SO_ERROR)`: how event loops learn how a non-blocking connect ended.
//!
//! While the handshake runs the answer is 0, as for a socket in `SYN_SENT`; after a
//! failure it is the errno a direct connect would have given — once: the record is
//! dropped and the kernel's own leftover error cleared, so a second read gives 0 as it
//! would after a direct failure. Every probe also advances the handshake, since on a fast
//! link it may be done by the time the program asks.

use libc::{c_int, c_void, socklen_t};

use crate::fdtable;
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::pending::{self, Observed};

hook! {
    fn getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int;
    fast_path: level != libc::SOL_SOCKET || name != libc::SO_ERROR || !fdtable::needs_attention(fd);
    on_panic: OnPanic::Passthrough;
    // SAFETY: the program's getsockopt arguments, with getsockopt(2)'s contract.
    body: unsafe { on_so_error(fd, val, len) }
}

/// # Safety
/// `val`/`len` as the program passed them to getsockopt.
unsafe fn on_so_error(fd: c_int, val: *mut c_void, len: *mut socklen_t) -> HookResult<c_int> {
    if val.is_null() || len.is_null() {
        return Ok(Outcome::Passthrough);
    }
    // SAFETY: len is non-null and the program's socklen_t.
    if (unsafe { *len } as usize) < std::mem::size_of::<c_int>() {
        return Ok(Outcome::Passthrough);
    }
    let value = match pending::advance(fd) {
        Observed::Pending { .. } => 0,
        Observed::Failed(_) => match pending::collect(fd) {
            Some(e) => e.0,
            None => return Ok(Outcome::Passthrough),
        },
        Observed::Established | Observed::NotOurs => return Ok(Outcome::Passthrough),
    };
    // SAFETY: val holds at least sizeof(int) writable bytes (checked above).
    unsafe {
        std::ptr::write_unaligned(val as *mut c_int, value);
        *len = std::mem::size_of::<c_int>() as socklen_t;
    }
    Ok(Outcome::Done(0))
}
