//! Datagrams. UDP does not go through the proxy yet (SOCKS5 UDP ASSOCIATE is a later
//! step); what this module does now is keep remote DNS leak-free: with names going to
//! the proxy, a datagram to port 53 is a program's own resolver (c-ares, `dig`, a stub
//! on 127.0.0.53) asking a name server directly, and is refused with `ECONNREFUSED`
//! and one line on stderr. `connect()` of a UDP socket to port 53 is refused by the
//! connect hook ([`crate::connect`]) for the same reason.

use libc::{c_int, c_uint, sockaddr, socklen_t};

use laysocks_sys::net as sysnet;
use laysocks_sys::Errno;

use crate::connect::{dns_datagram_refused, DNS_PORT};
use crate::hook::{HookResult, OnPanic, Outcome};

/// Whether `addr` names port 53 (cheap: the port sits at the same offset in
/// `sockaddr_in` and `sockaddr_in6`).
///
/// # Safety
/// `addr` is NULL or has `len` readable bytes.
#[inline]
pub unsafe fn to_dns_port(addr: *const sockaddr, len: socklen_t) -> bool {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sockaddr_in>() {
        return false;
    }
    // SAFETY: at least a sockaddr_in's worth of readable bytes; read unaligned.
    let sin = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in) };
    (c_int::from(sin.sin_family) == libc::AF_INET || c_int::from(sin.sin_family) == libc::AF_INET6)
        && u16::from_be(sin.sin_port) == DNS_PORT
}

/// Whether a datagram from `fd` to `addr` must be refused (see the module docs).
///
/// # Safety
/// `addr` is NULL or has `len` readable bytes.
pub unsafe fn refuse_datagram(fd: c_int, addr: *const sockaddr, len: socklen_t) -> bool {
    // SAFETY: per the contract.
    if !unsafe { to_dns_port(addr, len) } {
        return false;
    }
    // SAFETY: per the contract.
    let Some(dest) = (unsafe { sysnet::read_sockaddr(addr, len) }) else {
        return false;
    };
    matches!(sysnet::socket_type(fd), Ok(libc::SOCK_DGRAM)) && dns_datagram_refused(dest)
}

/// # Safety
/// `msgs` has `n` readable entries.
unsafe fn any_to_dns_port(msgs: *const libc::mmsghdr, n: c_uint) -> bool {
    if msgs.is_null() {
        return false;
    }
    (0..n as usize).any(|i| {
        // SAFETY: entry i of the program's array.
        let h = unsafe { &(*msgs.add(i)).msg_hdr };
        // SAFETY: the program's address of msg_namelen bytes.
        unsafe { to_dns_port(h.msg_name as *const sockaddr, h.msg_namelen) }
    })
}

hook! {
    /// `sendmmsg(2)`: refused if a message is a DNS query that would leak.
    fn sendmmsg(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int) -> c_int;
    // SAFETY: the program's array of n messages.
    fast_path: !unsafe { any_to_dns_port(msgs, n) };
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: as above.
    body: unsafe { on_sendmmsg(fd, msgs, n) }
}

/// # Safety
/// `msgs` has `n` readable entries.
unsafe fn on_sendmmsg(fd: c_int, msgs: *const libc::mmsghdr, n: c_uint) -> HookResult<c_int> {
    for i in 0..n as usize {
        // SAFETY: entry i of the program's array.
        let h = unsafe { &(*msgs.add(i)).msg_hdr };
        // SAFETY: the program's address of msg_namelen bytes.
        if unsafe { refuse_datagram(fd, h.msg_name as *const sockaddr, h.msg_namelen) } {
            return Err(Errno(libc::ECONNREFUSED).into());
        }
    }
    Ok(Outcome::Passthrough)
}
