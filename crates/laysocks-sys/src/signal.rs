//! Would the kernel have restarted a blocking `connect()` that a signal interrupted?
//!
//! Linux answers per signal: a handler installed with `SA_RESTART` makes the interrupted
//! `connect` start again (it returns `-ERESTARTSYS` inside the kernel), one without it
//! makes `connect` fail with `EINTR` while the connection goes on in the background
//! (net/ipv4/af_inet.c `__inet_stream_connect`, `sock_intr_errno`; signal(7), "Interruption
//! of system calls and library functions by signal handlers"). A socket with
//! `SO_SNDTIMEO` set is never restarted: it always gets `EINTR`.
//!
//! When the layer's own wait inside a blocking `connect` sees `EINTR`, the handler has
//! already run and nothing says *which* signal it was. [`would_interrupt`] therefore asks
//! whether any signal that can reach this thread (not blocked in its mask) has a handler
//! without `SA_RESTART`: if none has, every signal that could have interrupted us is one
//! the kernel would have restarted the call for. A program that installs such a handler
//! must expect `EINTR` from its blocking calls, so answering `EINTR` for one of its other
//! signals as well is the only approximation, and it errs towards what the program
//! asked for. (A one-shot `SA_RESETHAND` handler is already back to `SIG_DFL` when we
//! look, so it counts as restarting.) Only called on the rare `EINTR` path: about 64
//! `rt_sigaction` calls.

/// True when a blocking `connect` interrupted by a signal just now should fail with
/// `EINTR` rather than go on waiting (see the module docs).
pub fn would_interrupt() -> bool {
    // SAFETY: sigset_t is plain data; pthread_sigmask with a null new set only reads the
    // calling thread's mask into `mask`.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let have_mask =
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) } == 0;
    let top = libc::SIGRTMAX();
    for sig in 1..=top {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `mask` was filled in by pthread_sigmask; sig is in range.
        if have_mask && unsafe { libc::sigismember(&mask, sig) } == 1 {
            continue;
        }
        // SAFETY: a null new action only reads the disposition into `old`, a zeroed
        // sigaction we own. Signals glibc reserves (32, 33) fail with EINVAL: skipped.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
        if handled && old.sa_flags & libc::SA_RESTART == 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    extern "C" fn nothing(_: libc::c_int) {}

    fn install(sig: libc::c_int, flags: libc::c_int) -> libc::sigaction {
        // SAFETY: a zeroed sigaction with a handler that does nothing; `old` is ours.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = flags;
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(sig, &sa, &mut old), 0);
            old
        }
    }

    fn restore(sig: libc::c_int, old: &libc::sigaction) {
        // SAFETY: putting back the disposition `install` returned.
        unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) };
    }

    #[test]
    fn a_handler_without_sa_restart_interrupts() {
        // The test harness installs no handler without SA_RESTART for SIGUSR2.
        let old = install(libc::SIGUSR2, libc::SA_RESTART);
        let restart_only = super::would_interrupt();
        install(libc::SIGUSR2, 0);
        let interrupting = super::would_interrupt();
        restore(libc::SIGUSR2, &old);
        assert!(interrupting);
        // Other handlers of the test process may lack SA_RESTART; only check the
        // difference when there are none.
        if !restart_only {
            assert!(!super::would_interrupt());
        }
    }
}
