//! The real (next) definitions of every symbol the preload layer exports.
//!
//! Each entry is resolved with `dlsym(RTLD_NEXT, name)` the first time it is needed
//! (normally all at once from the layer's constructor, [`resolve_all`]) and cached in
//! an `AtomicUsize`: a relaxed load and an indirect call on every use, no lock, nothing
//! to reset after `fork`. Two threads racing to resolve store the same value.
//!
//! If `dlsym` finds nothing (a program built against a newer libc than the one it runs
//! on can bind to our unversioned export of a symbol that libc lacks), the entry falls
//! back to a raw system call with the same meaning, so a hook never calls through NULL.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_uint, c_ulong, c_void, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t};

fn lookup(name: &'static [u8]) -> usize {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is a NUL-terminated static string; RTLD_NEXT asks for the next
    // definition after this library, which is the one the program would have used.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) as usize }
}

macro_rules! real_functions {
    ($( $(#[$doc:meta])* $name:ident : fn($($arg:ident: $ty:ty),*) -> $ret:ty = $fallback:path; )*) => {
        mod slots {
            use super::AtomicUsize;
            $( #[allow(non_upper_case_globals)] pub static $name: AtomicUsize = AtomicUsize::new(0); )*
        }
        $(
            $(#[$doc])*
            #[inline(always)]
            pub fn $name() -> unsafe extern "C" fn($($ty),*) -> $ret {
                let mut p = slots::$name.load(Ordering::Relaxed);
                if p == 0 {
                    p = lookup(concat!(stringify!($name), "\0").as_bytes());
                    if p == 0 {
                        p = $fallback as unsafe extern "C" fn($($ty),*) -> $ret as usize;
                    }
                    slots::$name.store(p, Ordering::Relaxed);
                }
                // SAFETY: `p` is either libc's definition of this very symbol, whose C
                // signature is the one declared here, or our fallback of that type.
                unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($ty),*) -> $ret>(p) }
            }
        )*

        /// Resolves every entry now (called from the layer's constructor, before threads).
        pub fn resolve_all() {
            $( let _ = $name(); )*
        }
    };
}

real_functions! {
    connect: fn(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int = fallback::connect;
    /// glibc's exported alias of `connect`.
    __connect: fn(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int = fallback::connect;
    close: fn(fd: c_int) -> c_int = fallback::close;
    close_range: fn(first: c_uint, last: c_uint, flags: c_int) -> c_int = fallback::close_range;
    closefrom: fn(low: c_int) -> () = fallback::closefrom;
    getpeername: fn(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int = fallback::getpeername;
    getsockopt: fn(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int = fallback::getsockopt;
    dup: fn(fd: c_int) -> c_int = fallback::dup;
    dup2: fn(old: c_int, new: c_int) -> c_int = fallback::dup2;
    dup3: fn(old: c_int, new: c_int, flags: c_int) -> c_int = fallback::dup3;
    /// `fcntl` is variadic in C; every command we care about takes an integer or
    /// pointer third argument, which the x86-64 and AArch64 ABIs pass like a fixed one.
    fcntl: fn(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int = fallback::fcntl;
    fcntl64: fn(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int = fallback::fcntl;
    read: fn(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t = fallback::read;
    write: fn(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t = fallback::write;
    poll: fn(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int = fallback::poll;
    sendto: fn(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> ssize_t = fallback::sendto;
    recvfrom: fn(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t = fallback::recvfrom;
    sendmsg: fn(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t = fallback::sendmsg;
    recvmsg: fn(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t = fallback::recvmsg;
    send: fn(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t = fallback::send;
    recv: fn(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t = fallback::recv;
    readv: fn(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t = fallback::readv;
    writev: fn(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t = fallback::writev;
    /// Fortified `read` (`_FORTIFY_SOURCE`); the buffer-size check is libc's.
    __read_chk: fn(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t = fallback::read_chk;
    __recv_chk: fn(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t, flags: c_int) -> ssize_t = fallback::recv_chk;
    __recvfrom_chk: fn(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t = fallback::recvfrom_chk;
    ppoll: fn(fds: *mut pollfd, n: nfds_t, timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int = fallback::ppoll;
    __poll_chk: fn(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int = fallback::poll_chk;
    __ppoll_chk: fn(fds: *mut pollfd, n: nfds_t, timeout: *const libc::timespec, mask: *const libc::sigset_t, fdslen: size_t) -> c_int = fallback::ppoll_chk;
    select: fn(n: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, t: *mut libc::timeval) -> c_int = fallback::select;
    pselect: fn(n: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, t: *const libc::timespec, mask: *const libc::sigset_t) -> c_int = fallback::pselect;
    epoll_ctl: fn(epfd: c_int, op: c_int, fd: c_int, ev: *mut libc::epoll_event) -> c_int = fallback::epoll_ctl;
    epoll_wait: fn(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int = fallback::epoll_wait;
    epoll_pwait: fn(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int, mask: *const libc::sigset_t) -> c_int = fallback::epoll_pwait;
    epoll_pwait2: fn(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int = fallback::epoll_pwait2;
    sendmmsg: fn(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int) -> c_int = fallback::sendmmsg;
    recvmmsg: fn(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int = fallback::recvmmsg;
    // The resolver API (DESIGN §4). Its fallbacks report failure: there is no system
    // call that resolves a name.
    getaddrinfo: fn(node: *const libc::c_char, service: *const libc::c_char, hints: *const libc::addrinfo, res: *mut *mut libc::addrinfo) -> c_int = fallback::getaddrinfo;
    freeaddrinfo: fn(ai: *mut libc::addrinfo) -> () = fallback::freeaddrinfo;
    getnameinfo: fn(sa: *const sockaddr, salen: socklen_t, host: *mut libc::c_char, hostlen: socklen_t, serv: *mut libc::c_char, servlen: socklen_t, flags: c_int) -> c_int = fallback::getnameinfo;
    getaddrinfo_a: fn(mode: c_int, list: *mut *mut crate::resolver::gaicb, n: c_int, sev: *mut libc::sigevent) -> c_int = fallback::getaddrinfo_a;
    gethostbyname: fn(name: *const libc::c_char) -> *mut libc::hostent = fallback::gethostbyname;
    gethostbyname2: fn(name: *const libc::c_char, af: c_int) -> *mut libc::hostent = fallback::gethostbyname2;
    gethostbyname_r: fn(name: *const libc::c_char, ret: *mut libc::hostent, buf: *mut libc::c_char, buflen: size_t, result: *mut *mut libc::hostent, h_errnop: *mut c_int) -> c_int = fallback::gethostbyname_r;
    gethostbyname2_r: fn(name: *const libc::c_char, af: c_int, ret: *mut libc::hostent, buf: *mut libc::c_char, buflen: size_t, result: *mut *mut libc::hostent, h_errnop: *mut c_int) -> c_int = fallback::gethostbyname2_r;
    gethostbyaddr: fn(addr: *const c_void, len: socklen_t, af: c_int) -> *mut libc::hostent = fallback::gethostbyaddr;
    gethostbyaddr_r: fn(addr: *const c_void, len: socklen_t, af: c_int, ret: *mut libc::hostent, buf: *mut libc::c_char, buflen: size_t, result: *mut *mut libc::hostent, h_errnop: *mut c_int) -> c_int = fallback::gethostbyaddr_r;
    res_query: fn(dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_query;
    res_search: fn(dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_query;
    res_querydomain: fn(name: *const libc::c_char, domain: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_querydomain;
    res_send: fn(msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_send;
    res_nquery: fn(statp: *mut c_void, dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_nquery;
    res_nsearch: fn(statp: *mut c_void, dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_nquery;
    res_nquerydomain: fn(statp: *mut c_void, name: *const libc::c_char, domain: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_nquerydomain;
    res_nsend: fn(statp: *mut c_void, msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::res_nsend;
    // The old names (`<resolv.h>` once #defined res_query as __res_query); glibc keeps
    // them as compatibility symbols, which dlsym may not return: then the current name.
    __res_query: fn(dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_query;
    __res_search: fn(dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_search;
    __res_querydomain: fn(name: *const libc::c_char, domain: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_querydomain;
    __res_send: fn(msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_send;
    __res_nquery: fn(statp: *mut c_void, dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_nquery;
    __res_nsearch: fn(statp: *mut c_void, dname: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_nsearch;
    __res_nquerydomain: fn(statp: *mut c_void, name: *const libc::c_char, domain: *const libc::c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_nquerydomain;
    __res_nsend: fn(statp: *mut c_void, msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int = fallback::old_res_nsend;
    /// Not hooked: builds a query message (no I/O), for the `res_*query` hooks.
    res_mkquery: fn(op: c_int, dname: *const libc::c_char, class: c_int, typ: c_int, data: *const u8, datalen: c_int, newrr: *const u8, buf: *mut u8, buflen: c_int) -> c_int = fallback::res_mkquery;
    /// `syscall(2)` is variadic; up to six integer arguments travel in registers.
    syscall: fn(n: libc::c_long, a1: libc::c_long, a2: libc::c_long, a3: libc::c_long, a4: libc::c_long, a5: libc::c_long, a6: libc::c_long) -> libc::c_long = fallback::syscall;
}

/// Raw-syscall stand-ins with the C functions' signatures and errno convention.
mod fallback {
    use super::*;

    fn ret(rc: libc::c_long) -> libc::c_long {
        rc
    }

    pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
        // SAFETY: the caller passes the same arguments it gave connect(2).
        ret(unsafe { libc::syscall(libc::SYS_connect, fd, addr, len) }) as c_int
    }
    pub unsafe extern "C" fn close(fd: c_int) -> c_int {
        // SAFETY: closing an fd number is memory-safe.
        unsafe { libc::syscall(libc::SYS_close, fd) as c_int }
    }
    pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
        // SAFETY: plain integer arguments.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) as c_int }
    }
    pub unsafe extern "C" fn closefrom(low: c_int) {
        // SAFETY: plain integer arguments; closefrom has no error return.
        unsafe { libc::syscall(libc::SYS_close_range, low as c_uint, c_uint::MAX, 0) };
    }
    pub unsafe extern "C" fn getpeername(
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
    ) -> c_int {
        // SAFETY: the caller's buffers, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_getpeername, fd, addr, len) as c_int }
    }
    pub unsafe extern "C" fn getsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        val: *mut c_void,
        len: *mut socklen_t,
    ) -> c_int {
        // SAFETY: the caller's buffers, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_getsockopt, fd, level, name, val, len) as c_int }
    }
    pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
        // SAFETY: integer argument.
        unsafe { libc::syscall(libc::SYS_dup, fd) as c_int }
    }
    pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
        if old == new {
            // dup3 refuses equal fds; dup2 returns the fd if it is valid.
            // SAFETY: F_GETFD on an integer fd.
            let rc = unsafe { libc::syscall(libc::SYS_fcntl, old, libc::F_GETFD) };
            return if rc < 0 { -1 } else { old };
        }
        // SAFETY: integer arguments.
        unsafe { libc::syscall(libc::SYS_dup3, old, new, 0) as c_int }
    }
    pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
        // SAFETY: integer arguments.
        unsafe { libc::syscall(libc::SYS_dup3, old, new, flags) as c_int }
    }
    pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
        // SAFETY: the caller's argument, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) as c_int }
    }
    pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
        // SAFETY: the caller's buffer, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_read, fd, buf, n) as ssize_t }
    }
    pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
        // SAFETY: the caller's buffer, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_write, fd, buf, n) as ssize_t }
    }
    pub unsafe extern "C" fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
        // SAFETY: the caller's array, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_poll, fds, n, timeout) as c_int }
    }
    pub unsafe extern "C" fn sendto(
        fd: c_int,
        buf: *const c_void,
        n: size_t,
        flags: c_int,
        addr: *const sockaddr,
        len: socklen_t,
    ) -> ssize_t {
        // SAFETY: the caller's buffers, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_sendto, fd, buf, n, flags, addr, len) as ssize_t }
    }
    pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
        // SAFETY: the caller's message, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg, flags) as ssize_t }
    }
    pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
        // SAFETY: the caller's message, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg, flags) as ssize_t }
    }
    pub unsafe extern "C" fn send(
        fd: c_int,
        buf: *const c_void,
        n: size_t,
        flags: c_int,
    ) -> ssize_t {
        // SAFETY: as sendto without an address.
        unsafe { sendto(fd, buf, n, flags, std::ptr::null(), 0) }
    }
    pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
        // SAFETY: as recvfrom without an address.
        unsafe {
            recvfrom(
                fd,
                buf,
                n,
                flags,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    }
    pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t {
        // SAFETY: the caller's vectors, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_readv, fd, iov, n) as ssize_t }
    }
    pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t {
        // SAFETY: the caller's vectors, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_writev, fd, iov, n) as ssize_t }
    }
    pub unsafe extern "C" fn read_chk(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        _buflen: size_t,
    ) -> ssize_t {
        // SAFETY: as read.
        unsafe { read(fd, buf, n) }
    }
    pub unsafe extern "C" fn recv_chk(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        _buflen: size_t,
        flags: c_int,
    ) -> ssize_t {
        // SAFETY: as recv.
        unsafe { recv(fd, buf, n, flags) }
    }
    pub unsafe extern "C" fn recvfrom_chk(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        _buflen: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
    ) -> ssize_t {
        // SAFETY: as recvfrom.
        unsafe { recvfrom(fd, buf, n, flags, addr, len) }
    }
    pub unsafe extern "C" fn ppoll(
        fds: *mut pollfd,
        n: nfds_t,
        timeout: *const libc::timespec,
        mask: *const libc::sigset_t,
    ) -> c_int {
        // SAFETY: the caller's arguments; the kernel's sigset size is 8 bytes.
        unsafe { libc::syscall(libc::SYS_ppoll, fds, n, timeout, mask, 8) as c_int }
    }
    pub unsafe extern "C" fn poll_chk(
        fds: *mut pollfd,
        n: nfds_t,
        timeout: c_int,
        _fdslen: size_t,
    ) -> c_int {
        // SAFETY: as poll.
        unsafe { poll(fds, n, timeout) }
    }
    pub unsafe extern "C" fn ppoll_chk(
        fds: *mut pollfd,
        n: nfds_t,
        timeout: *const libc::timespec,
        mask: *const libc::sigset_t,
        _fdslen: size_t,
    ) -> c_int {
        // SAFETY: as ppoll.
        unsafe { ppoll(fds, n, timeout, mask) }
    }
    pub unsafe extern "C" fn select(
        n: c_int,
        r: *mut libc::fd_set,
        w: *mut libc::fd_set,
        e: *mut libc::fd_set,
        t: *mut libc::timeval,
    ) -> c_int {
        // SAFETY: the caller's sets, passed through unchanged (x86-64 has select(2)).
        unsafe { libc::syscall(libc::SYS_select, n, r, w, e, t) as c_int }
    }
    pub unsafe extern "C" fn pselect(
        n: c_int,
        r: *mut libc::fd_set,
        w: *mut libc::fd_set,
        e: *mut libc::fd_set,
        t: *const libc::timespec,
        mask: *const libc::sigset_t,
    ) -> c_int {
        // The kernel wants the mask as (pointer, size).
        let m: [usize; 2] = [mask as usize, 8];
        let mp = if mask.is_null() {
            std::ptr::null()
        } else {
            m.as_ptr()
        };
        // SAFETY: the caller's sets; `m` outlives the call.
        unsafe { libc::syscall(libc::SYS_pselect6, n, r, w, e, t, mp) as c_int }
    }
    pub unsafe extern "C" fn epoll_ctl(
        epfd: c_int,
        op: c_int,
        fd: c_int,
        ev: *mut libc::epoll_event,
    ) -> c_int {
        // SAFETY: the caller's event, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_epoll_ctl, epfd, op, fd, ev) as c_int }
    }
    pub unsafe extern "C" fn epoll_wait(
        epfd: c_int,
        ev: *mut libc::epoll_event,
        max: c_int,
        timeout: c_int,
    ) -> c_int {
        // SAFETY: as epoll_pwait without a mask.
        unsafe { epoll_pwait(epfd, ev, max, timeout, std::ptr::null()) }
    }
    pub unsafe extern "C" fn epoll_pwait(
        epfd: c_int,
        ev: *mut libc::epoll_event,
        max: c_int,
        timeout: c_int,
        mask: *const libc::sigset_t,
    ) -> c_int {
        // SAFETY: the caller's buffer, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_epoll_pwait, epfd, ev, max, timeout, mask, 8) as c_int }
    }
    pub unsafe extern "C" fn epoll_pwait2(
        epfd: c_int,
        ev: *mut libc::epoll_event,
        max: c_int,
        timeout: *const libc::timespec,
        mask: *const libc::sigset_t,
    ) -> c_int {
        // SAFETY: the caller's buffer, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_epoll_pwait2, epfd, ev, max, timeout, mask, 8) as c_int }
    }
    pub unsafe extern "C" fn syscall(
        n: libc::c_long,
        a1: libc::c_long,
        a2: libc::c_long,
        a3: libc::c_long,
        a4: libc::c_long,
        a5: libc::c_long,
        a6: libc::c_long,
    ) -> libc::c_long {
        // SAFETY: the caller's system call, passed through unchanged.
        unsafe { libc::syscall(n, a1, a2, a3, a4, a5, a6) }
    }
    pub unsafe extern "C" fn sendmmsg(
        fd: c_int,
        msgs: *mut libc::mmsghdr,
        n: c_uint,
        flags: c_int,
    ) -> c_int {
        // SAFETY: the caller's messages, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_sendmmsg, fd, msgs, n, flags) as c_int }
    }

    pub unsafe extern "C" fn recvmmsg(
        fd: c_int,
        msgs: *mut libc::mmsghdr,
        n: c_uint,
        flags: c_int,
        timeout: *mut libc::timespec,
    ) -> c_int {
        // SAFETY: the caller's messages and timeout, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_recvmmsg, fd, msgs, n, flags, timeout) as c_int }
    }

    // Resolver fallbacks: only reached if libc lacks the symbol, so failing is honest.
    fn no_resolver() {
        crate::Errno(libc::ENOSYS).set();
    }
    pub unsafe extern "C" fn getaddrinfo(
        _: *const libc::c_char,
        _: *const libc::c_char,
        _: *const libc::addrinfo,
        _: *mut *mut libc::addrinfo,
    ) -> c_int {
        no_resolver();
        libc::EAI_SYSTEM
    }
    pub unsafe extern "C" fn freeaddrinfo(ai: *mut libc::addrinfo) {
        // SAFETY: the caller hands over a list built the glibc way.
        unsafe { crate::resolver::freeaddrinfo_glibc_layout(ai) }
    }
    pub unsafe extern "C" fn getnameinfo(
        _: *const sockaddr,
        _: socklen_t,
        _: *mut libc::c_char,
        _: socklen_t,
        _: *mut libc::c_char,
        _: socklen_t,
        _: c_int,
    ) -> c_int {
        no_resolver();
        libc::EAI_SYSTEM
    }
    pub unsafe extern "C" fn getaddrinfo_a(
        _: c_int,
        _: *mut *mut crate::resolver::gaicb,
        _: c_int,
        _: *mut libc::sigevent,
    ) -> c_int {
        no_resolver();
        libc::EAI_SYSTEM
    }
    pub unsafe extern "C" fn gethostbyname(_: *const libc::c_char) -> *mut libc::hostent {
        no_resolver();
        std::ptr::null_mut()
    }
    pub unsafe extern "C" fn gethostbyname2(
        _: *const libc::c_char,
        _: c_int,
    ) -> *mut libc::hostent {
        no_resolver();
        std::ptr::null_mut()
    }
    pub unsafe extern "C" fn gethostbyname_r(
        _: *const libc::c_char,
        _: *mut libc::hostent,
        _: *mut libc::c_char,
        _: size_t,
        result: *mut *mut libc::hostent,
        _: *mut c_int,
    ) -> c_int {
        // SAFETY: the caller's result pointer, as gethostbyname_r(3) requires.
        unsafe { *result = std::ptr::null_mut() };
        libc::ENOSYS
    }
    pub unsafe extern "C" fn gethostbyname2_r(
        _: *const libc::c_char,
        _: c_int,
        _: *mut libc::hostent,
        _: *mut libc::c_char,
        _: size_t,
        result: *mut *mut libc::hostent,
        _: *mut c_int,
    ) -> c_int {
        // SAFETY: the caller's result pointer, as gethostbyname2_r(3) requires.
        unsafe { *result = std::ptr::null_mut() };
        libc::ENOSYS
    }
    pub unsafe extern "C" fn gethostbyaddr(
        _: *const c_void,
        _: socklen_t,
        _: c_int,
    ) -> *mut libc::hostent {
        no_resolver();
        std::ptr::null_mut()
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe extern "C" fn gethostbyaddr_r(
        _: *const c_void,
        _: socklen_t,
        _: c_int,
        _: *mut libc::hostent,
        _: *mut libc::c_char,
        _: size_t,
        result: *mut *mut libc::hostent,
        _: *mut c_int,
    ) -> c_int {
        // SAFETY: the caller's result pointer, as gethostbyaddr_r(3) requires.
        unsafe { *result = std::ptr::null_mut() };
        libc::ENOSYS
    }
    pub unsafe extern "C" fn res_query(
        _: *const libc::c_char,
        _: c_int,
        _: c_int,
        _: *mut u8,
        _: c_int,
    ) -> c_int {
        no_resolver();
        -1
    }
    pub unsafe extern "C" fn res_querydomain(
        _: *const libc::c_char,
        _: *const libc::c_char,
        _: c_int,
        _: c_int,
        _: *mut u8,
        _: c_int,
    ) -> c_int {
        no_resolver();
        -1
    }
    pub unsafe extern "C" fn res_send(_: *const u8, _: c_int, _: *mut u8, _: c_int) -> c_int {
        no_resolver();
        -1
    }
    pub unsafe extern "C" fn res_nquery(
        _: *mut c_void,
        _: *const libc::c_char,
        _: c_int,
        _: c_int,
        _: *mut u8,
        _: c_int,
    ) -> c_int {
        no_resolver();
        -1
    }
    pub unsafe extern "C" fn res_nquerydomain(
        _: *mut c_void,
        _: *const libc::c_char,
        _: *const libc::c_char,
        _: c_int,
        _: c_int,
        _: *mut u8,
        _: c_int,
    ) -> c_int {
        no_resolver();
        -1
    }
    pub unsafe extern "C" fn res_nsend(
        _: *mut c_void,
        _: *const u8,
        _: c_int,
        _: *mut u8,
        _: c_int,
    ) -> c_int {
        no_resolver();
        -1
    }
    pub unsafe extern "C" fn old_res_query(
        d: *const libc::c_char,
        c: c_int,
        t: c_int,
        a: *mut u8,
        l: c_int,
    ) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_query()(d, c, t, a, l) }
    }
    pub unsafe extern "C" fn old_res_search(
        d: *const libc::c_char,
        c: c_int,
        t: c_int,
        a: *mut u8,
        l: c_int,
    ) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_search()(d, c, t, a, l) }
    }
    pub unsafe extern "C" fn old_res_querydomain(
        n: *const libc::c_char,
        d: *const libc::c_char,
        c: c_int,
        t: c_int,
        a: *mut u8,
        l: c_int,
    ) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_querydomain()(n, d, c, t, a, l) }
    }
    pub unsafe extern "C" fn old_res_send(m: *const u8, ml: c_int, a: *mut u8, l: c_int) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_send()(m, ml, a, l) }
    }
    pub unsafe extern "C" fn old_res_nquery(
        s: *mut c_void,
        d: *const libc::c_char,
        c: c_int,
        t: c_int,
        a: *mut u8,
        l: c_int,
    ) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_nquery()(s, d, c, t, a, l) }
    }
    pub unsafe extern "C" fn old_res_nsearch(
        s: *mut c_void,
        d: *const libc::c_char,
        c: c_int,
        t: c_int,
        a: *mut u8,
        l: c_int,
    ) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_nsearch()(s, d, c, t, a, l) }
    }
    pub unsafe extern "C" fn old_res_nquerydomain(
        s: *mut c_void,
        n: *const libc::c_char,
        d: *const libc::c_char,
        c: c_int,
        t: c_int,
        a: *mut u8,
        l: c_int,
    ) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_nquerydomain()(s, n, d, c, t, a, l) }
    }
    pub unsafe extern "C" fn old_res_nsend(
        s: *mut c_void,
        m: *const u8,
        ml: c_int,
        a: *mut u8,
        l: c_int,
    ) -> c_int {
        // SAFETY: the same function under its current name, same arguments.
        unsafe { super::res_nsend()(s, m, ml, a, l) }
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe extern "C" fn res_mkquery(
        _: c_int,
        _: *const libc::c_char,
        _: c_int,
        _: c_int,
        _: *const u8,
        _: c_int,
        _: *const u8,
        _: *mut u8,
        _: c_int,
    ) -> c_int {
        no_resolver();
        -1
    }

    pub unsafe extern "C" fn recvfrom(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
    ) -> ssize_t {
        // SAFETY: the caller's buffers, passed through unchanged.
        unsafe { libc::syscall(libc::SYS_recvfrom, fd, buf, n, flags, addr, len) as ssize_t }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolves_libc() {
        super::resolve_all();
        // A test binary is not preloaded, so the next `write` is libc's.
        let msg = b"";
        // SAFETY: writing zero bytes to stderr.
        let n = unsafe { super::write()(2, msg.as_ptr().cast(), 0) };
        assert_eq!(n, 0);
        // The fallback path behaves like the real function.
        // SAFETY: closing an fd that is certainly not open.
        let rc = unsafe { super::fallback::close(1_000_000) };
        assert_eq!(rc, -1);
        assert_eq!(crate::Errno::last().0, libc::EBADF);
    }
}
