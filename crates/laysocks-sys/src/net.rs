//! Socket addresses and the socket calls the handshake driver makes.
//!
//! The driver works on the *application's* socket and must leave it as it found it:
//! no `O_NONBLOCK` flips (that is file-description state other threads and processes
//! share), so waits are `poll` on the one fd and reads/writes use `MSG_DONTWAIT` per
//! call. Reads take an exact byte count so nothing after the proxy's reply is consumed.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{c_int, c_void, sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t};

use crate::errno::Errno;
use crate::real;

/// Result of a libc call: the value, or the errno it set.
pub type SysResult<T> = Result<T, Errno>;

fn check(rc: c_int) -> SysResult<c_int> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// Reads a `sockaddr` the application passed in. `None` for other families or a
/// length too short for the family (the kernel would answer `EINVAL`).
///
/// # Safety
/// `addr` must be null or point to at least `len` readable bytes.
pub unsafe fn read_sockaddr(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least the family field is readable (checked above).
    let family = unsafe { (*addr).sa_family } as c_int;
    match family {
        libc::AF_INET if len as usize >= size_of::<sockaddr_in>() => {
            // SAFETY: the caller promises `len` bytes; it is large enough. The buffer
            // may be unaligned (it is the caller's), hence read_unaligned.
            let sin = unsafe { std::ptr::read_unaligned(addr as *const sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<sockaddr_in6>() => {
            // SAFETY: as above.
            let sin6 = unsafe { std::ptr::read_unaligned(addr as *const sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The family field of a sockaddr, if one is there.
///
/// # Safety
/// As for [`read_sockaddr`].
pub unsafe fn sockaddr_family(addr: *const sockaddr, len: socklen_t) -> Option<c_int> {
    if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the family field is readable (checked above).
    Some(unsafe { (*addr).sa_family } as c_int)
}

/// A `sockaddr_storage` holding `addr`, and its length.
pub fn to_storage(addr: &SocketAddr) -> (sockaddr_storage, socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut sockaddr_in, sin) };
            size_of::<sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut sockaddr_in6, sin6) };
            size_of::<sockaddr_in6>()
        }
    };
    (ss, len as socklen_t)
}

/// `addr` as the family of a socket expects it: an IPv4 address on an `AF_INET6`
/// socket becomes `::ffff:a.b.c.d` (what the kernel reports for v4-mapped peers).
pub fn in_family(addr: SocketAddr, family: c_int) -> SocketAddr {
    match (addr, family) {
        (SocketAddr::V4(a), libc::AF_INET6) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        (a, _) => a,
    }
}

/// Writes `addr` into a caller's `(addr, len)` out-parameters the way the kernel
/// does for `getpeername`: copies at most `*len` bytes and sets `*len` to the full size.
///
/// # Safety
/// `out` must be writable for `*len` bytes and `len` must be a valid pointer, as the
/// caller of getpeername promised the kernel.
pub unsafe fn write_sockaddr(
    addr: &SocketAddr,
    out: *mut sockaddr,
    len: *mut socklen_t,
) -> SysResult<()> {
    if len.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    let (ss, full) = to_storage(addr);
    // SAFETY: len is non-null and points to the caller's socklen_t.
    let room = unsafe { *len } as usize;
    let n = room.min(full as usize);
    if n > 0 {
        if out.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: the caller provided `room` ≥ n writable bytes at `out`.
        unsafe { std::ptr::copy_nonoverlapping(&ss as *const _ as *const u8, out as *mut u8, n) };
    }
    // SAFETY: as above.
    unsafe { *len = full };
    Ok(())
}

/// `getsockopt` of an `int`-valued option.
pub fn getsockopt_int(fd: c_int, level: c_int, name: c_int) -> SysResult<c_int> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: v and len are valid out-parameters of the sizes given.
    check(unsafe {
        real::getsockopt()(
            fd,
            level,
            name,
            &mut v as *mut c_int as *mut c_void,
            &mut len,
        )
    })?;
    Ok(v)
}

/// The socket's address family (`SO_DOMAIN`).
pub fn socket_domain(fd: c_int) -> SysResult<c_int> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// The socket's type (`SO_TYPE`: `SOCK_STREAM`, `SOCK_DGRAM`, …).
pub fn socket_type(fd: c_int) -> SysResult<c_int> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)
}

/// The socket's protocol (`SO_PROTOCOL`: `IPPROTO_TCP`, `IPPROTO_MPTCP`, …).
pub fn socket_protocol(fd: c_int) -> SysResult<c_int> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
}

/// Reads and clears the socket's pending error (`SO_ERROR`).
pub fn take_socket_error(fd: c_int) -> SysResult<c_int> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

/// Whether `IPV6_V6ONLY` is set on an `AF_INET6` socket.
pub fn v6only(fd: c_int) -> bool {
    getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_ok_and(|v| v != 0)
}

/// Whether the file description has `O_NONBLOCK` (read, never changed).
pub fn is_nonblocking(fd: c_int) -> SysResult<bool> {
    // SAFETY: F_GETFL takes no argument.
    let fl = check(unsafe { real::fcntl()(fd, libc::F_GETFL, 0) })?;
    Ok(fl & libc::O_NONBLOCK != 0)
}

/// The socket's `SO_SNDTIMEO` in milliseconds (0 = none).
pub fn send_timeout_ms(fd: c_int) -> SysResult<u64> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = size_of::<libc::timeval>() as socklen_t;
    // SAFETY: tv and len are valid out-parameters of the sizes given.
    check(unsafe {
        real::getsockopt()(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &mut tv as *mut _ as *mut c_void,
            &mut len,
        )
    })?;
    Ok(tv.tv_sec as u64 * 1000 + (tv.tv_usec as u64).div_ceil(1000))
}

/// Sets `SO_SNDTIMEO` (used around a blocking connect to bound it by our deadline).
pub fn set_send_timeout_ms(fd: c_int, ms: u64) -> SysResult<()> {
    let tv = libc::timeval {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
    };
    // SAFETY: tv is a valid timeval of the size given. setsockopt is not hooked.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const c_void,
            size_of::<libc::timeval>() as socklen_t,
        )
    })?;
    Ok(())
}

/// The real `connect`.
pub fn connect(fd: c_int, addr: &SocketAddr) -> SysResult<()> {
    let (ss, len) = to_storage(addr);
    // SAFETY: ss holds a valid sockaddr of length len.
    check(unsafe { real::connect()(fd, &ss as *const _ as *const sockaddr, len) })?;
    Ok(())
}

/// Dissolves the socket's association (`connect` with `AF_UNSPEC`), so that a failed
/// proxied connect leaves the socket unconnected, as a failed direct connect does, and
/// clears the error that leaves behind.
pub fn disconnect(fd: c_int) {
    // SAFETY: sockaddr is plain data; AF_UNSPEC (0) in an all-zero struct.
    let sa: sockaddr = unsafe { zeroed() };
    // SAFETY: sa is a valid sockaddr of the size given.
    unsafe { real::connect()(fd, &sa, size_of::<sockaddr>() as socklen_t) };
    let _ = take_socket_error(fd);
}

/// Like [`disconnect`], but leaves the kernel's pending error (`ECONNRESET` after
/// dissolving a live connection) in place, so that poll and epoll go on reporting the
/// socket as failed (`POLLERR`) until the program collects the error.
pub fn disconnect_keep_error(fd: c_int) {
    // SAFETY: sockaddr is plain data; AF_UNSPEC (0) in an all-zero struct.
    let sa: sockaddr = unsafe { zeroed() };
    // SAFETY: sa is a valid sockaddr of the size given.
    unsafe { real::connect()(fd, &sa, size_of::<sockaddr>() as socklen_t) };
}

/// `send` with `MSG_DONTWAIT | MSG_NOSIGNAL`: never blocks, never raises SIGPIPE.
pub fn send_nonblocking(fd: c_int, buf: &[u8]) -> SysResult<usize> {
    // SAFETY: buf is valid for buf.len() bytes; no destination address.
    let n = unsafe {
        real::sendto()(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            std::ptr::null(),
            0,
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// `recv` with `MSG_DONTWAIT` into `buf` (the caller sizes it to exactly what it may take).
pub fn recv_nonblocking(fd: c_int, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is writable for buf.len() bytes; no source address wanted.
    let n = unsafe {
        real::recvfrom()(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// `poll` on one fd; returns its `revents` (0 on timeout). `EINTR` is returned to the
/// caller, which decides whether to go on.
pub fn poll_one(fd: c_int, events: i16, timeout_ms: i32) -> SysResult<i16> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = check(unsafe { real::poll()(&mut p, 1, timeout_ms) })?;
    Ok(if rc == 0 { 0 } else { p.revents })
}

/// The real peer address (the kernel's view: the proxy, for a proxied socket).
pub fn peer_addr(fd: c_int) -> SysResult<SocketAddr> {
    // SAFETY: storage is plain data.
    let mut ss: sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<sockaddr_storage>() as socklen_t;
    // SAFETY: ss/len are valid out-parameters.
    check(unsafe { real::getpeername()(fd, &mut ss as *mut _ as *mut sockaddr, &mut len) })?;
    // SAFETY: the kernel wrote `len` bytes of a sockaddr into ss.
    unsafe { read_sockaddr(&ss as *const _ as *const sockaddr, len) }
        .ok_or(Errno(libc::EAFNOSUPPORT))
}

/// The inode number behind an fd: a socket keeps it for its whole life, so it tells a
/// socket we proxied from a new one that reuses the same fd number.
pub fn inode(fd: c_int) -> SysResult<u64> {
    // SAFETY: stat is plain data; fstat fills it. fstat is not hooked by the layer.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: st is a valid out-parameter.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st.st_ino)
}

/// What [`recv_datagram`] received.
pub struct Received {
    /// Bytes of the datagram (its full length with `MSG_TRUNC`, even if more than fit).
    pub len: usize,
    /// Who sent it, if the kernel said.
    pub from: Option<SocketAddr>,
    /// The kernel's `msg_flags` (`MSG_TRUNC`, `MSG_CTRUNC`…).
    pub flags: c_int,
    /// How much ancillary data was written to the control buffer.
    pub control_len: usize,
}

/// One `sendmsg` of `buf` to `dest` (or the connected peer), with the caller's flags
/// and (optionally) its ancillary data.
pub fn send_datagram(
    fd: c_int,
    buf: &[u8],
    dest: Option<&SocketAddr>,
    flags: c_int,
    control: Option<(*mut c_void, usize)>,
) -> SysResult<usize> {
    let (ss, len) = match dest {
        Some(d) => to_storage(d),
        // SAFETY: sockaddr_storage is plain data.
        None => (unsafe { zeroed() }, 0),
    };
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; the fields set below are all it needs.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    if dest.is_some() {
        msg.msg_name = &ss as *const _ as *mut c_void;
        msg.msg_namelen = len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some((p, n)) = control {
        msg.msg_control = p;
        msg.msg_controllen = n;
    }
    // SAFETY: msg points at live buffers for the duration of the call; the control
    // buffer is the caller's, of n bytes.
    let n = unsafe { real::sendmsg()(fd, &msg, flags) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// One `recvmsg` into `buf`, with the caller's flags and (optionally) its ancillary-data
/// buffer, so that control messages reach the program unchanged.
pub fn recv_datagram(
    fd: c_int,
    buf: &mut [u8],
    flags: c_int,
    control: Option<(*mut c_void, usize)>,
) -> SysResult<Received> {
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: sockaddr_storage = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = &mut ss as *mut _ as *mut c_void;
    msg.msg_namelen = size_of::<sockaddr_storage>() as socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some((p, n)) = control {
        msg.msg_control = p;
        msg.msg_controllen = n;
    }
    // SAFETY: msg points at live buffers; the control buffer is the caller's, of n bytes.
    let n = unsafe { real::recvmsg()(fd, &mut msg, flags) };
    if n < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel wrote msg_namelen bytes of address into ss.
    let from = unsafe { read_sockaddr(&ss as *const _ as *const sockaddr, msg.msg_namelen) };
    Ok(Received {
        len: n as usize,
        from,
        flags: msg.msg_flags,
        control_len: if control.is_some() {
            msg.msg_controllen
        } else {
            0
        },
    })
}

/// The socket's local address.
pub fn local_addr(fd: c_int) -> SysResult<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<sockaddr_storage>() as socklen_t;
    // SAFETY: ss is a buffer of len bytes; getsockname is not hooked.
    check(unsafe { libc::getsockname(fd, &mut ss as *mut _ as *mut sockaddr, &mut len) })?;
    // SAFETY: the kernel wrote len bytes of address.
    unsafe { read_sockaddr(&ss as *const _ as *const sockaddr, len) }
        .ok_or(Errno(libc::EAFNOSUPPORT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for s in ["198.51.100.7:8080", "[2001:db8::5]:443"] {
            let a: SocketAddr = s.parse().unwrap();
            let (ss, len) = to_storage(&a);
            // SAFETY: ss holds len bytes.
            let back = unsafe { read_sockaddr(&ss as *const _ as *const sockaddr, len) };
            assert_eq!(back, Some(a));
            // Too short a length is refused, as the kernel does.
            // SAFETY: as above.
            assert_eq!(
                unsafe { read_sockaddr(&ss as *const _ as *const sockaddr, len - 1) },
                None
            );
        }
    }

    #[test]
    fn write_truncates_like_the_kernel() {
        let a: SocketAddr = "[2001:db8::5]:443".parse().unwrap();
        let mut buf = [0u8; 8];
        let mut len: socklen_t = 8;
        // SAFETY: buf has 8 writable bytes.
        unsafe { write_sockaddr(&a, buf.as_mut_ptr().cast(), &mut len) }.unwrap();
        assert_eq!(len as usize, size_of::<sockaddr_in6>());
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), libc::AF_INET6 as u16);
    }

    #[test]
    fn mapped_family() {
        let a: SocketAddr = "203.0.113.2:80".parse().unwrap();
        assert_eq!(
            in_family(a, libc::AF_INET6).to_string(),
            "[::ffff:203.0.113.2]:80"
        );
        assert_eq!(in_family(a, libc::AF_INET), a);
    }
}
