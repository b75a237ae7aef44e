//! The guard's system calls: seccomp filters and user notification (seccomp(2),
//! seccomp_unotify(2)), reading and writing another process's memory
//! (process_vm_readv(2)), and the socket queries the supervisor makes on its copy of a
//! program's socket.
//!
//! Everything here is a thin wrapper returning `Result<_, Errno>`: the decisions live in
//! the `laysocks-guard` crate, which has no `unsafe` of its own.
//!
//! Why the raw structures are sized at run time: `SECCOMP_IOCTL_NOTIF_RECV` and `SEND`
//! copy `struct seccomp_notif` / `seccomp_notif_resp` of the size the *kernel* was built
//! with; seccomp_unotify(2) asks callers to size their buffers with
//! `SECCOMP_GET_NOTIF_SIZES` and zero them, so that a newer kernel with larger structures
//! never writes past ours ([`NotifSizes`]).
//!
//! Only the supervisor (the launcher process) calls these, never the preload layer, so
//! they call libc directly rather than through [`crate::real`].

use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_int, c_void, socklen_t};

use crate::Errno;

/// `AUDIT_ARCH_X86_64` (linux/audit.h: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_AARCH64` (`EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

/// The audit architecture of the system calls this build makes (the filter kills
/// everything else: another ABI has other system call numbers).
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH_NATIVE: u32 = AUDIT_ARCH_X86_64;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH_NATIVE: u32 = AUDIT_ARCH_AARCH64;

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6): the notifying thread and the
/// supervisor's receiving thread are woken synchronously, saving a scheduler hop.
pub const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// `PR_SET_NO_NEW_PRIVS` + `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
///
/// Returns the listener fd when `flags` has `SECCOMP_FILTER_FLAG_NEW_LISTENER` (else 0).
/// Allocates nothing and calls only async-signal-safe system calls, so it may run in a
/// child forked from a multithreaded process, between `fork` and `exec`.
pub fn install_filter(prog: &[libc::sock_filter], flags: u64) -> Result<RawFd, Errno> {
    if prog.is_empty() || prog.len() > u16::MAX as usize {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes plain integers.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(Errno::last());
    }
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `len` valid instructions that outlive the call; the kernel
    // copies the program before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_long,
            flags as libc::c_long,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc as RawFd)
    }
}

/// The kernel's sizes of the notification structures (`SECCOMP_GET_NOTIF_SIZES`).
#[derive(Clone, Copy, Debug)]
pub struct NotifSizes {
    pub notif: usize,
    pub resp: usize,
}

/// `seccomp(SECCOMP_GET_NOTIF_SIZES)`, never smaller than our own structures.
pub fn notif_sizes() -> Result<NotifSizes, Errno> {
    // SAFETY: plain data.
    let mut s: libc::seccomp_notif_sizes = unsafe { zeroed() };
    // SAFETY: s is a valid out-parameter of the structure the operation fills.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES as libc::c_long,
            0 as libc::c_long,
            &mut s as *mut libc::seccomp_notif_sizes,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(NotifSizes {
        notif: (s.seccomp_notif as usize).max(size_of::<libc::seccomp_notif>()),
        resp: (s.seccomp_notif_resp as usize).max(size_of::<libc::seccomp_notif_resp>()),
    })
}

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS`.
pub fn set_listener_flags(listener: BorrowedFd<'_>, flags: u64) -> Result<(), Errno> {
    // SAFETY: the ioctl takes the flags by value (an unsigned long argument).
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS as _,
            flags as libc::c_ulong,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// One trapped system call (`struct seccomp_notif`).
#[derive(Clone, Copy, Debug)]
pub struct Notif {
    /// The cookie that names this notification in later ioctls.
    pub id: u64,
    /// The calling *thread*'s id, in the supervisor's pid namespace (0 if not visible).
    pub pid: u32,
    /// System call number.
    pub nr: i32,
    /// Its audit architecture.
    pub arch: u32,
    /// The six argument registers.
    pub args: [u64; 6],
}

/// A receive buffer of the kernel's notification size, 8-byte aligned.
#[derive(Debug)]
pub struct RecvBuf {
    words: Vec<u64>,
}

impl RecvBuf {
    pub fn new(sizes: &NotifSizes) -> RecvBuf {
        RecvBuf {
            words: vec![0; sizes.notif.div_ceil(8)],
        }
    }
}

/// `SECCOMP_IOCTL_NOTIF_RECV`: blocks until a notification arrives. `ENOENT` means the
/// target went away before we got it, `EINTR` a signal: both normal.
pub fn recv(listener: BorrowedFd<'_>, buf: &mut RecvBuf) -> Result<Notif, Errno> {
    buf.words.iter_mut().for_each(|w| *w = 0);
    // SAFETY: buf holds at least the kernel's sizeof(struct seccomp_notif) bytes, zeroed
    // as seccomp_unotify(2) requires, and is aligned for it.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV as _,
            buf.words.as_mut_ptr() as *mut c_void,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the buffer is at least size_of::<seccomp_notif>() bytes and 8-aligned; the
    // kernel filled it with a seccomp_notif (plain data).
    let n: libc::seccomp_notif =
        unsafe { std::ptr::read(buf.words.as_ptr() as *const libc::seccomp_notif) };
    Ok(Notif {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
        arch: n.data.arch,
        args: n.data.args,
    })
}

/// `SECCOMP_IOCTL_NOTIF_SEND`. `error` is a *negative* errno or 0; `flags` 0 or
/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`.
pub fn send(
    listener: BorrowedFd<'_>,
    sizes: &NotifSizes,
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
) -> Result<(), Errno> {
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // Sized for the kernel's structure, zero beyond ours (at most a few dozen bytes).
    let mut words = [0u64; 16];
    if sizes.resp > size_of::<[u64; 16]>() {
        return Err(Errno(libc::EOVERFLOW));
    }
    // SAFETY: words is 8-aligned and larger than seccomp_notif_resp.
    unsafe { std::ptr::write(words.as_mut_ptr() as *mut libc::seccomp_notif_resp, resp) };
    // SAFETY: the buffer holds a valid response, zero-padded to the kernel's size.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            words.as_mut_ptr() as *mut c_void,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`: whether the notification is still pending (its thread
/// still waits in the call, so its id and memory are still the caller's).
pub fn id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads one u64 from the pointer.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _,
            &mut id as *mut u64,
        )
    };
    rc == 0
}

/// `SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SETFD`: installs a duplicate of
/// our `src` in the target at number `newfd` (closing what was there, as `dup2` does),
/// with `newfd_flags` (`O_CLOEXEC` or 0). Returns the number installed.
pub fn addfd_setfd(
    listener: BorrowedFd<'_>,
    id: u64,
    src: BorrowedFd<'_>,
    newfd: i32,
    newfd_flags: u32,
) -> Result<i32, Errno> {
    let mut a = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
        srcfd: src.as_raw_fd() as u32,
        newfd: newfd as u32,
        newfd_flags,
    };
    // SAFETY: a is a valid seccomp_notif_addfd the ioctl reads.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD as _,
            &mut a as *mut libc::seccomp_notif_addfd,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// Reads `buf.len()` bytes at `addr` in thread `tid`'s address space
/// (process_vm_readv(2)). A short read (the range crosses into unmapped memory) is
/// `EFAULT`, as the kernel's own copy from user space would be.
pub fn read_mem(tid: i32, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local describes our writable buffer; the remote range is only read by
    // the kernel on the target's behalf (faults are reported, never taken by us).
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(Errno::last())
    } else if n as usize != buf.len() {
        Err(Errno(libc::EFAULT))
    } else {
        Ok(())
    }
}

/// Writes `data` at `addr` in thread `tid`'s address space (process_vm_writev(2)).
pub fn write_mem(tid: i32, addr: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut c_void,
        iov_len: data.len(),
    };
    // SAFETY: local describes our readable buffer; the kernel writes the remote range.
    let n = unsafe { libc::process_vm_writev(tid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(Errno::last())
    } else if n as usize != data.len() {
        Err(Errno(libc::EFAULT))
    } else {
        Ok(())
    }
}

fn check(rc: c_int) -> Result<c_int, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// `SO_COOKIE`: a 64-bit number the kernel gives each socket once, never reused while
/// the system runs — what the supervisor keys its state by (fd numbers and inodes of
/// another process tell nothing across dup/close).
pub fn socket_cookie(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut v: u64 = 0;
    let mut len = size_of::<u64>() as socklen_t;
    // SAFETY: v/len are valid out-parameters of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            &mut v as *mut u64 as *mut c_void,
            &mut len,
        )
    })?;
    Ok(v)
}

/// `TCP_INFO`'s `tcpi_state` (`TCP_ESTABLISHED` = 1 … `TCP_CLOSE` = 7, `TCP_LISTEN` = 10).
pub fn tcp_state(fd: BorrowedFd<'_>) -> Result<u8, Errno> {
    // SAFETY: tcp_info is plain data.
    let mut info: libc::tcp_info = unsafe { zeroed() };
    let mut len = size_of::<libc::tcp_info>() as socklen_t;
    // SAFETY: info/len are valid out-parameters; the kernel copies at most len bytes.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut c_void,
            &mut len,
        )
    })?;
    Ok(info.tcpi_state)
}

/// `getsockopt` of an `int` option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> Result<c_int, Errno> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: v/len are valid out-parameters of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &mut v as *mut c_int as *mut c_void,
            &mut len,
        )
    })?;
    Ok(v)
}

/// `setsockopt` of an `int` option.
pub fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: c_int,
) -> Result<(), Errno> {
    // SAFETY: value is a valid int of the size given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const c_int as *const c_void,
            size_of::<c_int>() as socklen_t,
        )
    })?;
    Ok(())
}

/// `fcntl(F_GETFL)`.
pub fn get_status_flags(fd: BorrowedFd<'_>) -> Result<c_int, Errno> {
    // SAFETY: F_GETFL takes no argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// `fcntl(F_SETFL)`.
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: c_int) -> Result<(), Errno> {
    // SAFETY: F_SETFL takes an int.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// `socket(2)`, close-on-exec.
pub fn socket(domain: c_int, ty: c_int, protocol: c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: plain integers.
    let fd = check(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `connect(2)` with a sockaddr given as raw bytes (as the program passed it), so the
/// kernel applies exactly the checks it would have applied to the program's call.
pub fn connect_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> Result<(), Errno> {
    // A sockaddr_storage-aligned copy: the program's bytes may be any length ≤ 128.
    // SAFETY: plain data.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let n = addr.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: ss has room for n bytes.
    unsafe { std::ptr::copy_nonoverlapping(addr.as_ptr(), &mut ss as *mut _ as *mut u8, n) };
    // SAFETY: ss holds n bytes of the address.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &ss as *const _ as *const libc::sockaddr,
            n as socklen_t,
        )
    })?;
    Ok(())
}

/// The peer address as the kernel reports it, in raw form (`getpeername(2)`).
pub fn peer_raw(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    // SAFETY: plain data.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as socklen_t;
    // SAFETY: ss/len are valid out-parameters.
    check(unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            &mut ss as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    })?;
    let n = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: the kernel wrote n bytes into ss.
    let bytes = unsafe { std::slice::from_raw_parts(&ss as *const _ as *const u8, n) };
    Ok(bytes.to_vec())
}

/// One `sendmsg(2)` of `data` (one datagram), to `dest` given as raw sockaddr bytes
/// (empty: the connected peer), with raw ancillary data `control` and `flags`.
pub fn sendmsg_raw(
    fd: BorrowedFd<'_>,
    data: &[u8],
    dest: &[u8],
    control: &[u8],
    flags: c_int,
) -> Result<usize, Errno> {
    // SAFETY: plain data.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let n = dest.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: ss has room for n bytes.
    unsafe { std::ptr::copy_nonoverlapping(dest.as_ptr(), &mut ss as *mut _ as *mut u8, n) };
    // Control messages need cmsghdr alignment (8 bytes on 64-bit): copy into u64s.
    let mut cbuf = vec![0u64; control.len().div_ceil(8)];
    // SAFETY: cbuf has room for control.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            control.as_ptr(),
            cbuf.as_mut_ptr() as *mut u8,
            control.len(),
        )
    };
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    if n > 0 {
        msg.msg_name = &mut ss as *mut _ as *mut c_void;
        msg.msg_namelen = n as socklen_t;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr() as *mut c_void;
        msg.msg_controllen = control.len();
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

/// The bytes of a `sockaddr_storage`.
pub fn storage_as_bytes(ss: &libc::sockaddr_storage) -> &[u8] {
    // SAFETY: sockaddr_storage is plain data of that many bytes, all initialised
    // (every constructor here zeroes it first).
    unsafe {
        std::slice::from_raw_parts(
            ss as *const libc::sockaddr_storage as *const u8,
            size_of::<libc::sockaddr_storage>(),
        )
    }
}

/// `addr` as the raw sockaddr bytes the kernel takes.
pub fn sockaddr_bytes(addr: &std::net::SocketAddr) -> Vec<u8> {
    let (ss, len) = crate::net::to_storage(addr);
    storage_as_bytes(&ss)[..len as usize].to_vec()
}

/// Parses raw sockaddr bytes (an `AF_INET` or `AF_INET6` address long enough for its
/// family); `None` otherwise.
pub fn parse_sockaddr(bytes: &[u8]) -> Option<std::net::SocketAddr> {
    // SAFETY: plain data.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let n = bytes.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: ss has room for n bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut ss as *mut _ as *mut u8, n) };
    // SAFETY: ss holds n readable bytes.
    unsafe { crate::net::read_sockaddr(&ss as *const _ as *const libc::sockaddr, n as socklen_t) }
}

/// `recv(2)` with the caller's flags into `buf`.
pub fn recv_raw(fd: BorrowedFd<'_>, buf: &mut [u8], flags: c_int) -> Result<usize, Errno> {
    // SAFETY: buf is writable for its length; no source address wanted.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut c_void,
            buf.len(),
            flags,
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { zeroed() };
    // SAFETY: u is a valid out-parameter.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates release within the array.
    let s = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    s.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn sizes_cover_our_structures() {
        let s = notif_sizes().expect("SECCOMP_GET_NOTIF_SIZES");
        assert!(s.notif >= size_of::<libc::seccomp_notif>());
        assert!(s.resp >= size_of::<libc::seccomp_notif_resp>());
    }

    #[test]
    fn own_memory_round_trip() {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let src = *b"hello seccomp";
        let mut dst = [0u8; 13];
        read_mem(me, src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(dst, src);
        let mut target = [0u8; 5];
        write_mem(me, target.as_mut_ptr() as u64, b"abcde").unwrap();
        assert_eq!(&target, b"abcde");
        assert_eq!(read_mem(me, 8, &mut dst), Err(Errno(libc::EFAULT)));
    }

    #[test]
    fn cookies_and_state() {
        let a = socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let b = socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let ca = socket_cookie(a.as_fd()).unwrap();
        assert_ne!(ca, socket_cookie(b.as_fd()).unwrap());
        assert_eq!(tcp_state(a.as_fd()).unwrap(), 7); // TCP_CLOSE
        assert!(!kernel_release().is_empty());
    }
}
