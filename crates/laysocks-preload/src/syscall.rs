//! `syscall()`: the generic entry some programs and libraries use instead of libc's
//! wrappers.
//!
//! - `io_uring_setup` answers `ENOSYS` while the layer is active: an io_uring connect or
//!   poll never passes through a hook, so a program could be told "connected" before the
//!   proxy has answered. libuv (node) then stays on epoll, which the layer serves.
//! - `syscall(SYS_connect, …)` from a dynamically linked program goes through the same
//!   path as `connect()`; the datagram calls (`SYS_sendto`, `SYS_sendmsg`, `SYS_sendmmsg`,
//!   `SYS_recvfrom`, `SYS_recvmsg`, `SYS_recvmmsg`) through the same paths as their libc
//!   wrappers, so UDP sessions see them (libuv 1.44, which `dig` uses, sends with
//!   `syscall(SYS_sendmmsg, …)`).
//!
//! `syscall` is variadic; on x86-64 and AArch64 its integer arguments travel in
//! registers, so reading six of them is what libc's own `syscall` does.

use libc::{c_int, c_long, c_uint, c_void, msghdr, sockaddr, socklen_t};

use laysocks_sys::Errno;

use crate::hook::{HookResult, OnPanic, Outcome};
use crate::{fdtable, udp};

hook! {
    fn syscall(n: c_long, a1: c_long, a2: c_long, a3: c_long, a4: c_long, a5: c_long, a6: c_long) -> c_long;
    fast_path: !matches!(
        n,
        libc::SYS_io_uring_setup
            | libc::SYS_connect
            | libc::SYS_sendto
            | libc::SYS_sendmsg
            | libc::SYS_sendmmsg
            | libc::SYS_recvfrom
            | libc::SYS_recvmsg
            | libc::SYS_recvmmsg
    );
    on_panic: OnPanic::Fail(libc::ENOSYS);
    // SAFETY: the arguments are those of the system call `n`, as the program intended.
    body: unsafe { on_syscall(n, a1, a2, a3, a4, a5, a6) }
}

fn widen(r: HookResult<c_int>) -> HookResult<c_long> {
    r.map(|o| match o {
        Outcome::Done(v) => Outcome::Done(c_long::from(v)),
        Outcome::Passthrough => Outcome::Passthrough,
    })
}

fn from_ssize(r: HookResult<libc::ssize_t>) -> HookResult<c_long> {
    r.map(|o| match o {
        Outcome::Done(v) => Outcome::Done(v as c_long),
        Outcome::Passthrough => Outcome::Passthrough,
    })
}

/// # Safety
/// The arguments are those of the datagram system call `n`.
unsafe fn on_datagram(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> HookResult<c_long> {
    let fd = a1 as c_int;
    let udp = fdtable::kind_of(fd) == fdtable::kind::UDP;
    // SAFETY (every arm): the program's arguments, with the system call's contract.
    unsafe {
        match n {
            libc::SYS_sendto => {
                if !fdtable::needs_data_hooks(fd)
                    && udp::goes_direct(a5 as *const sockaddr, a6 as socklen_t)
                {
                    return Ok(Outcome::Passthrough);
                }
                from_ssize(udp::on_sendto(
                    fd,
                    a2 as *const c_void,
                    a3 as usize,
                    a4 as c_int,
                    a5 as *const sockaddr,
                    a6 as socklen_t,
                ))
            }
            libc::SYS_sendmsg => {
                let msg = a2 as *const msghdr;
                if msg.is_null()
                    || (!fdtable::needs_data_hooks(fd)
                        && udp::goes_direct((*msg).msg_name as *const sockaddr, (*msg).msg_namelen))
                {
                    return Ok(Outcome::Passthrough);
                }
                from_ssize(udp::on_sendmsg(fd, &*msg, a3 as c_int))
            }
            libc::SYS_sendmmsg => {
                let msgs = a2 as *mut libc::mmsghdr;
                if !fdtable::needs_data_hooks(fd) && udp::all_direct(msgs, a3 as c_uint) {
                    return Ok(Outcome::Passthrough);
                }
                widen(udp::on_sendmmsg(fd, msgs, a3 as c_uint, a4 as c_int))
            }
            libc::SYS_recvfrom if udp => {
                let v = udp::iov1(a2 as *mut c_void, a3 as usize);
                from_ssize(udp::on_recv(
                    fd,
                    &v,
                    1,
                    a4 as c_int,
                    a5 as *mut sockaddr,
                    a6 as *mut socklen_t,
                ))
            }
            libc::SYS_recvmsg if udp && a2 != 0 => {
                from_ssize(udp::on_recvmsg(fd, &mut *(a2 as *mut msghdr), a3 as c_int))
            }
            libc::SYS_recvmmsg if udp => widen(udp::on_recvmmsg(
                fd,
                a2 as *mut libc::mmsghdr,
                a3 as c_uint,
                a4 as c_int,
            )),
            _ => Ok(Outcome::Passthrough),
        }
    }
}

/// # Safety
/// The arguments are those of the system call `n`.
unsafe fn on_syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> HookResult<c_long> {
    if n == libc::SYS_io_uring_setup {
        return Err(Errno(libc::ENOSYS).into());
    }
    if n != libc::SYS_connect {
        // SAFETY: per the contract.
        return unsafe { on_datagram(n, a1, a2, a3, a4, a5, a6) };
    }
    // SAFETY: the program's connect arguments.
    match unsafe {
        crate::connect::on_connect(a1 as c_int, a2 as *const sockaddr, a3 as socklen_t)
    }? {
        Outcome::Done(v) => Ok(Outcome::Done(c_long::from(v))),
        Outcome::Passthrough => Ok(Outcome::Passthrough),
    }
}
