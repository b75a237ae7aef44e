//! The seccomp filter: a hand-written classic-BPF program (seccomp(2), "Filter
//! programs"), evaluated by the kernel on every system call of the program and all its
//! descendants.
//!
//! It is pure data, built before `fork` (installing it must not allocate), and small on
//! purpose: every system call pays for it (DESIGN §6 measured ~70–115 ns), so the common
//! calls fall through a handful of comparisons to `ALLOW`.
//!
//! The rules, in order:
//!
//! 1. `arch != AUDIT_ARCH_X86_64` → `SECCOMP_RET_KILL_PROCESS`. System call numbers
//!    depend on the ABI: an `int 0x80` (i386) call with the number of `connect` on
//!    x86_64 is something else entirely, so a program using another ABI could make
//!    `socketcall(SYS_CONNECT)` unseen. seccomp(2) recommends exactly this check first.
//! 2. `nr >= __X32_SYSCALL_BIT` → `ERRNO(ENOSYS)`. x32 calls share the x86_64 audit
//!    arch but carry bit 30 (seccomp(2), "Caveats"); refusing them is what a kernel
//!    without x32 support does.
//! 3. `io_uring_setup` → `ERRNO(ENOSYS)`. io_uring submits `connect`/`sendmsg` from
//!    kernel workers that seccomp never sees; without a ring, programs (Go, libuv,
//!    tokio-uring) fall back to ordinary system calls, as on kernels without io_uring.
//! 4. `connect`, `getpeername`, `sendmsg`, `sendmmsg` → `SECCOMP_RET_USER_NOTIF`: the
//!    supervisor answers (seccomp_unotify(2)). `sendmsg` is trapped whatever its
//!    msghdr says: the address lives in memory the filter cannot read.
//! 5. `sendto` with `dest_addr` (args\[4\]) NULL → `ALLOW` (it is `send(2)`, the common
//!    data path); with an address → `USER_NOTIF`. Both 32-bit halves are compared
//!    because classic BPF loads 32 bits at a time.
//! 6. `recvfrom` with `src_addr` (args\[4\]) non-NULL → `USER_NOTIF`, else `ALLOW`:
//!    a DNS socket the supervisor sent to its responder must report the program's DNS
//!    server as the source, since resolvers such as c-ares drop answers from anyone
//!    else. The supervisor continues every other `recvfrom` (receiving cannot leak).
//! 7. Everything else → `ALLOW`.
//!
//! If the supervisor is gone (the listener closed), the kernel answers every
//! `USER_NOTIF` with `ENOSYS` (seccomp_unotify(2)): the guard fails closed.

use libc::sock_filter;

/// `__X32_SYSCALL_BIT` (asm/unistd.h).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data` (linux/seccomp.h): `int nr; __u32 arch;
/// __u64 instruction_pointer; __u64 args[6];`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    // Little-endian: the low half comes first.
    16 + 8 * i
}
const fn off_arg_hi(i: u32) -> u32 {
    16 + 8 * i + 4
}

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// The verdicts the program returns.
pub const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
pub const RET_NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;
pub const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
pub const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & 0xffff);

/// System calls the supervisor answers (besides `sendto` with an address).
pub const TRAPPED: [i64; 4] = [
    libc::SYS_connect,
    libc::SYS_getpeername,
    libc::SYS_sendmsg,
    libc::SYS_sendmmsg,
];

/// Where a jump goes: one of the return instructions at the end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Next,
    /// Over the next instruction.
    Skip2,
    Allow,
    Notify,
    Enosys,
    Kill,
}

enum Ins {
    Load(u32),
    /// if A == k goto t else goto f
    Jeq(u32, Label, Label),
    /// if A >= k goto t else goto f
    Jge(u32, Label, Label),
}

/// Builds the program (see the module docs for the rules).
pub fn program() -> Vec<sock_filter> {
    use Label::*;
    let mut body = vec![
        Ins::Load(OFF_ARCH),
        Ins::Jeq(laysocks_sys::seccomp::AUDIT_ARCH_NATIVE, Next, Kill),
        Ins::Load(OFF_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        body.push(Ins::Jge(X32_SYSCALL_BIT, Enosys, Next));
    }
    body.push(Ins::Jeq(libc::SYS_io_uring_setup as u32, Enosys, Next));
    for nr in TRAPPED {
        body.push(Ins::Jeq(nr as u32, Notify, Next));
    }
    // sendto and recvfrom: trapped only with an address (args[4]).
    body.push(Ins::Jeq(libc::SYS_sendto as u32, Skip2, Next));
    body.push(Ins::Jeq(libc::SYS_recvfrom as u32, Next, Allow));
    body.push(Ins::Load(off_arg_lo(4)));
    body.push(Ins::Jeq(0, Next, Notify));
    body.push(Ins::Load(off_arg_hi(4)));
    body.push(Ins::Jeq(0, Allow, Notify));
    let tail = [
        (Allow, RET_ALLOW),
        (Notify, RET_NOTIFY),
        (Enosys, RET_ENOSYS),
        (Kill, RET_KILL),
    ];
    let n = body.len();
    let at = |l: Label, i: usize| -> u8 {
        let target = match l {
            Next => i + 1,
            Skip2 => i + 2,
            other => n + tail.iter().position(|(t, _)| *t == other).expect("label"),
        };
        // Offsets are relative to the next instruction; the program is far shorter
        // than 256 instructions.
        (target - (i + 1)) as u8
    };
    let mut out: Vec<sock_filter> = body
        .iter()
        .enumerate()
        .map(|(i, ins)| match *ins {
            Ins::Load(off) => stmt(BPF_LD_W_ABS, off),
            Ins::Jeq(k, t, f) => jump(BPF_JMP_JEQ_K, k, at(t, i), at(f, i)),
            Ins::Jge(k, t, f) => jump(BPF_JMP_JGE_K, k, at(t, i), at(f, i)),
        })
        .collect();
    out.extend(tail.iter().map(|(_, k)| stmt(BPF_RET_K, *k)));
    out
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the subset the program uses, over a synthetic
    /// `seccomp_data` (nr, arch, args).
    fn run(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        for _ in 0..prog.len() + 1 {
            let ins = prog[pc];
            match ins.code {
                BPF_LD_W_ABS => {
                    let o = ins.k as usize;
                    assert!(o + 4 <= data.len() && o.is_multiple_of(4), "load at {o}");
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                    pc += 1;
                }
                BPF_JMP_JEQ_K | BPF_JMP_JGE_K => {
                    let hit = if ins.code == BPF_JMP_JEQ_K {
                        acc == ins.k
                    } else {
                        acc >= ins.k
                    };
                    pc += 1 + usize::from(if hit { ins.jt } else { ins.jf });
                }
                BPF_RET_K => return ins.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
            assert!(pc < prog.len(), "fell off the end");
        }
        panic!("no return");
    }

    const ARCH: u32 = laysocks_sys::seccomp::AUDIT_ARCH_NATIVE;

    #[test]
    fn verdicts() {
        let p = program();
        let nr = |n: i64| n as u32;
        let none = [0u64; 6];
        assert_eq!(run(&p, nr(libc::SYS_getpid), ARCH, none), RET_ALLOW);
        assert_eq!(run(&p, nr(libc::SYS_read), ARCH, none), RET_ALLOW);
        for t in TRAPPED {
            assert_eq!(run(&p, nr(t), ARCH, none), RET_NOTIFY, "nr {t}");
        }
        assert_eq!(
            run(&p, nr(libc::SYS_io_uring_setup), ARCH, none),
            RET_ENOSYS
        );
        // Another ABI is killed whatever the number.
        assert_eq!(run(&p, nr(libc::SYS_getpid), 0x4000_0003, none), RET_KILL);
        assert_eq!(run(&p, nr(libc::SYS_connect), 0, none), RET_KILL);
        // sendto: only with a destination, whichever half of the pointer is non-zero.
        let with = |a4: u64| [3, 0x1000, 10, 0, a4, 16];
        assert_eq!(run(&p, nr(libc::SYS_sendto), ARCH, with(0)), RET_ALLOW);
        assert_eq!(
            run(&p, nr(libc::SYS_sendto), ARCH, with(0x7fff_0000_1000)),
            RET_NOTIFY
        );
        assert_eq!(
            run(&p, nr(libc::SYS_sendto), ARCH, with(0x7fff_0000_0000)),
            RET_NOTIFY
        );
        assert_eq!(
            run(&p, nr(libc::SYS_sendto), ARCH, with(0x1000)),
            RET_NOTIFY
        );
        // recvfrom: only with a source-address buffer; recvmsg never.
        assert_eq!(
            run(&p, nr(libc::SYS_recvfrom), ARCH, with(0x1000)),
            RET_NOTIFY
        );
        assert_eq!(run(&p, nr(libc::SYS_recvfrom), ARCH, with(0)), RET_ALLOW);
        assert_eq!(
            run(&p, nr(libc::SYS_recvmsg), ARCH, with(0x1000)),
            RET_ALLOW
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_is_refused() {
        let p = program();
        let x32_connect = X32_SYSCALL_BIT | 42;
        assert_eq!(run(&p, x32_connect, ARCH, [0; 6]), RET_ENOSYS);
        assert_eq!(run(&p, X32_SYSCALL_BIT | 39, ARCH, [0; 6]), RET_ENOSYS);
    }

    #[test]
    fn jumps_stay_inside() {
        let p = program();
        for (i, ins) in p.iter().enumerate() {
            if ins.code == BPF_JMP_JEQ_K || ins.code == BPF_JMP_JGE_K {
                assert!(i + 1 + (ins.jt as usize) < p.len());
                assert!(i + 1 + (ins.jf as usize) < p.len());
            }
        }
        assert_eq!(p.last().unwrap().code, BPF_RET_K);
    }
}
