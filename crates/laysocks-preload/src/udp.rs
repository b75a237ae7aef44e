//! Datagrams. UDP does not go through the proxy yet (SOCKS5 UDP ASSOCIATE is a later
//! step); what this module does now is keep remote DNS leak-free: with names going to
//! the proxy, a datagram to port 53 is a program's own resolver (c-ares, `dig`, a stub
//! on 127.0.0.53) asking a name server directly, and is refused with `ECONNREFUSED`
//! and one line on stderr. A datagram to a placeholder address (QUIC to a remote name,
//! say) has no real destination to go to and would leave the host for an unrouted
//! range: refused with `EHOSTUNREACH`, so programs fall back to TCP. `connect()` of a
//! UDP socket is checked by the connect hook ([`crate::connect`]) the same way.

use libc::{c_int, c_uint, sockaddr, socklen_t};

use laysocks_sys::net as sysnet;
use laysocks_sys::Errno;

use crate::connect::DNS_PORT;
use crate::hook::{HookResult, OnPanic, Outcome};

/// Whether a datagram to `addr` may have to be refused: port 53, or (with remote DNS)
/// a placeholder. Cheap enough for every `sendto`: the port sits at the same offset in
/// `sockaddr_in` and `sockaddr_in6`.
///
/// # Safety
/// `addr` is NULL or has `len` readable bytes.
#[inline]
pub unsafe fn may_refuse(addr: *const sockaddr, len: socklen_t) -> bool {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sockaddr_in>() {
        return false;
    }
    // SAFETY: at least a sockaddr_in's worth of readable bytes; read unaligned.
    let sin = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in) };
    let family = c_int::from(sin.sin_family);
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return false;
    }
    if u16::from_be(sin.sin_port) == DNS_PORT {
        return true;
    }
    if !crate::layer::is_active() || crate::layer::dns().is_none() {
        return false;
    }
    // SAFETY: per the contract.
    unsafe { sysnet::read_sockaddr(addr, len) }
        .is_some_and(|d| crate::layer::dns().is_some_and(|dns| dns.map.is_placeholder(d.ip())))
}

/// The errno a datagram from `fd` to `addr` is refused with, if it must be (see the
/// module docs).
///
/// # Safety
/// `addr` is NULL or has `len` readable bytes.
pub unsafe fn refuse_datagram(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Option<Errno> {
    // SAFETY: per the contract.
    if !unsafe { may_refuse(addr, len) } {
        return None;
    }
    // SAFETY: per the contract.
    let dest = unsafe { sysnet::read_sockaddr(addr, len) }?;
    if !matches!(sysnet::socket_type(fd), Ok(libc::SOCK_DGRAM)) {
        return None;
    }
    datagram_refusal(dest)
}

/// Why a datagram to `dest` may not be sent, if it may not.
pub fn datagram_refusal(dest: std::net::SocketAddr) -> Option<Errno> {
    let dns = crate::layer::dns()?;
    if dns.map.is_placeholder(dest.ip()) {
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            crate::report::refused(
                &crate::layer::get().config,
                &format!("refused a UDP datagram to {dest}, a placeholder for a name only the proxy resolves (UDP is not proxied)"),
            );
        }
        return Some(Errno(libc::EHOSTUNREACH));
    }
    dns_datagram_refused(dest).then_some(Errno(libc::ECONNREFUSED))
}

/// # Safety
/// `msgs` has `n` readable entries.
unsafe fn any_may_refuse(msgs: *const libc::mmsghdr, n: c_uint) -> bool {
    if msgs.is_null() {
        return false;
    }
    (0..n as usize).any(|i| {
        // SAFETY: entry i of the program's array.
        let h = unsafe { &(*msgs.add(i)).msg_hdr };
        // SAFETY: the program's address of msg_namelen bytes.
        unsafe { may_refuse(h.msg_name as *const sockaddr, h.msg_namelen) }
    })
}

hook! {
    /// `sendmmsg(2)`: refused if a message is a DNS query that would leak.
    fn sendmmsg(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int) -> c_int;
    // SAFETY: the program's array of n messages.
    fast_path: !unsafe { any_may_refuse(msgs, n) };
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
        if let Some(e) =
            unsafe { refuse_datagram(fd, h.msg_name as *const sockaddr, h.msg_namelen) }
        {
            return Err(e.into());
        }
    }
    Ok(Outcome::Passthrough)
}

/// Whether a datagram to `dest` is a DNS query that remote DNS must stop (one line on
/// stderr, once per process): UDP does not go through the proxy yet, and a program's own
/// resolver (c-ares, dig, a stub resolver on loopback) would leak the name.
fn dns_datagram_refused(dest: std::net::SocketAddr) -> bool {
    if dest.port() != DNS_PORT || crate::layer::dns().is_none() {
        return false;
    }
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::report::refused(
            &crate::layer::get().config,
            &format!("refused a DNS query over UDP to {dest}: it would bypass the proxy (UDP is not proxied); this program has its own resolver: use --dns-server HOST with DNS over TCP, or --dns local"),
        );
    }
    true
}
