//! Supervisor mode: the launcher forks the program, puts the guard's seccomp filter on
//! it, and stays beside it to answer the filter's notifications (issue 8).
//!
//! Without the guard the launcher simply `exec`s the program (`run.rs`), so the program
//! keeps the launcher's pid. With it the launcher L has to stay alive — it *is* the
//! supervisor — so everything a caller can observe about "the program" has to be passed
//! through L:
//!
//! - **Exit status.** L exits with the program's exit code; when the program is killed
//!   by a signal, L resets that signal to `SIG_DFL`, unblocks it and sends it to itself,
//!   so the shell sees the same signal (with `RLIMIT_CORE` set to 0 first: the core dump,
//!   if any, was the program's to make).
//! - **Process group and session.** The program C is forked without `setpgid`/`setsid`:
//!   it is in L's process group, so the terminal's signals (Ctrl-C, Ctrl-Z, Ctrl-\,
//!   `SIGWINCH`, hang-up) reach C directly, and C can read the terminal when L's group is
//!   in the foreground. L never touches the terminal.
//! - **Signals sent to L.** L blocks the signals a caller sends (SIGINT, SIGTERM, SIGHUP,
//!   SIGQUIT, SIGUSR1/2, SIGWINCH, SIGALRM, SIGCONT, SIGTSTP/SIGTTIN/SIGTTOU and a few
//!   more, plus the real-time ones glibc does not reserve) before it forks, and reads them
//!   from a `signalfd(2)`. The `si_code` tells who sent one (sigaction(2), "The siginfo_t
//!   argument"): `SI_USER`/`SI_QUEUE`/`SI_TKILL` come from a process (`kill L`, a
//!   supervisor, a timeout) and are forwarded to C with `pidfd_send_signal(2)`;
//!   `SI_KERNEL` comes from the terminal driver, which signals the whole foreground
//!   group, so C has it already — forwarding it would deliver Ctrl-C twice. (A process
//!   that signals the whole group with `kill(-pgid, …)` makes an `SI_USER` signal that C
//!   also got itself; L cannot tell it from `kill L` and forwards it, so C sees it twice.
//!   `SIGCONT` is the exception that matters for job control: it is forwarded only when C
//!   is stopped.)
//! - **Job control.** L waits with `WUNTRACED | WCONTINUED`. When C stops, L stops
//!   itself with the same signal (so the shell sees the job stopped and takes the
//!   terminal back); the shell's `fg`/`bg` sends `SIGCONT` to the group, which resumes
//!   both.
//! - **stdin/stdout.** After the fork L points its own fds 0 and 1 at `/dev/null`, so a
//!   pipe reader (`$(laysocks -- prog)`, `laysocks -- prog | head`) sees EOF when the
//!   program closes them, not when L exits.
//! - `PR_SET_PDEATHSIG(SIGKILL)` in C: if L is killed outright (`kill -9`), the program
//!   goes with it, as it would have if it had been run directly under that pid; and a
//!   program left without its supervisor could do nothing useful anyway (fail closed).
//!
//! **Handing the listener over.** C installs the filter (`PR_SET_NO_NEW_PRIVS`, then
//! `seccomp(2)` with `SECCOMP_FILTER_FLAG_NEW_LISTENER`), which returns the listener fd N
//! in C. C writes N to a pipe and waits for a "go" byte on another pipe; L takes its own
//! copy with `pidfd_getfd(pidfd_open(C), N)` (allowed: L is C's parent with the same
//! credentials, ptrace(2) access mode `PTRACE_MODE_ATTACH_REALCREDS`), starts serving,
//! and sends "go"; C closes N (the program must not hold the key to its own filter) and
//! `execve`s. The listener is *not* passed with `SCM_RIGHTS`: `sendmsg` is one of the
//! calls the filter traps, so C would block in it waiting for a supervisor that does not
//! have the listener yet — a deadlock.
//!
//! The fork is a raw `fork(2)`, not `std::process::Command` with `pre_exec`: `spawn()`
//! only returns once the child has exec'd (it waits on an exec-error pipe), but C must
//! not exec before L has taken the listener and said "go", so `spawn()` would never
//! return. Between fork and exec C makes only async-signal-safe calls and allocates
//! nothing (signal-safety(7)): argv and envp are built before the fork, and the filter is
//! built before the fork and only installed in C.
//!
//! **When the program exits first.** The filter is inherited by everything C starts;
//! processes that outlive it (`ssh -f`, `cmd &` in a script) keep using it. L waits a
//! moment for the listener to report that no process uses the filter any more; if some
//! still do, L says so in one line and exits with the program's status anyway (the caller
//! is not held). The guard then *fails closed*: with the listener gone, the kernel answers
//! those processes' trapped calls, and any that were waiting, with `ENOSYS`
//! (seccomp_unotify(2), "NOTES") — they never go direct. (A detached successor that
//! keeps serving needs the guard to stop its own threads cleanly first, or a
//! notification in flight would hang; see the report on issue 8.)

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use laysocks_sys::{pidfd, Errno};

/// How long L waits, after the program exits, for the processes it left behind to stop
/// using the filter.
const LINGER: Duration = Duration::from_millis(200);

/// The signals L takes over and (when a process sent them) forwards. SIGKILL and SIGSTOP
/// cannot be caught; SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGTRAP are L's own faults;
/// SIGPIPE is ignored by Rust's runtime; glibc reserves the first two real-time signals
/// for its threads (blocking SIGSETXID would break `setuid` in a threaded L).
const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGURG,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGPROF,
    libc::SIGVTALRM,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGSYS,
];

/// What the guard looks like from here: the part of `laysocks_guard::Supervisor` the
/// process side needs (a trait so that the process side can be tested on its own).
pub trait Served {
    /// Blocks until no process uses the filter any more, or `timeout` passes; returns
    /// whether none does.
    fn wait_finished(&self, timeout: Duration) -> bool;
}

/// The program, ready for `execve`: everything allocated before the fork.
pub struct Exec {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_p: Vec<*const libc::c_char>,
    envp_p: Vec<*const libc::c_char>,
}

impl Exec {
    /// `path` run with `argv` (argv\[0\] included) and exactly the environment `env`.
    pub fn new(
        path: &Path,
        argv: &[OsString],
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Exec, String> {
        let c = |b: &[u8]| {
            CString::new(b).map_err(|_| "an argument or variable contains a NUL byte".to_string())
        };
        let path = c(path.as_os_str().as_bytes())?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let mut envp = Vec::new();
        for (k, v) in env {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(c(&kv)?);
        }
        let mut argv_p: Vec<_> = argv.iter().map(|s| s.as_ptr()).collect();
        argv_p.push(std::ptr::null());
        let mut envp_p: Vec<_> = envp.iter().map(|s| s.as_ptr()).collect();
        envp_p.push(std::ptr::null());
        Ok(Exec {
            path,
            _argv: argv,
            _envp: envp,
            argv_p,
            envp_p,
        })
    }
}

/// The signal state the program must start with: what L's caller gave L.
#[derive(Clone, Copy)]
pub struct Inherited {
    pub mask: libc::sigset_t,
    pub sigpipe_ignored: bool,
    pub sigchld_ignored: bool,
}

impl Inherited {
    /// Called in the child between fork and exec: async-signal-safe calls only.
    pub fn restore(&self) {
        // SAFETY: `self.mask` is a valid sigset; SIG_IGN is a valid disposition; both
        // calls are async-signal-safe.
        unsafe {
            if self.sigpipe_ignored {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
            if self.sigchld_ignored {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
        }
    }
}

/// Why the program did not start.
#[derive(Debug)]
pub enum StartError {
    /// The launcher's own machinery failed (pipe, fork, filter, listener, guard).
    Setup(String),
    /// `execve` failed in C with this errno.
    Exec(Errno),
}

/// How the program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

/// Messages from C to L on the status pipe: (tag, value), native-endian.
const MSG_LISTENER: i32 = 1;
const MSG_INSTALL_FAILED: i32 = 2;
const MSG_EXEC_FAILED: i32 = 3;
/// The byte L sends when C may exec.
const GO: u8 = b'g';

/// The running program with its supervisor.
pub struct Running<S> {
    pid: i32,
    pidfd: OwnedFd,
    /// Readable when C has exec'd (EOF) or failed to (a message).
    status: OwnedFd,
    sfd: OwnedFd,
    served: S,
}

/// Forks the program with the filter installed, serves it, and lets it exec.
///
/// `install` runs in the child between fork and exec: it must be async-signal-safe and
/// allocate nothing, and returns the listener fd. `serve` runs in L with L's copy of the
/// listener. L must be single-threaded when this is called (it forks).
pub fn start<S, I, F>(
    exec: &Exec,
    inherited: &Inherited,
    install: I,
    serve: F,
) -> Result<Running<S>, StartError>
where
    I: Fn() -> Result<RawFd, Errno>,
    F: FnOnce(OwnedFd) -> Result<S, String>,
{
    let setup = |what: &str, e: Errno| StartError::Setup(format!("{what}: {}", e.description()));
    // Block the forwarded signals (and SIGCHLD) before the fork: no signal can then slip
    // in between fork and signalfd, and the serving threads L starts later inherit the
    // mask, so a process-directed signal is only ever read from the signalfd.
    let set = signal_set();
    let mut old_mask = empty_set();
    // SAFETY: both sets are valid sigset_t values we own.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old_mask) };
    let restore_mask = |old: &libc::sigset_t| {
        // SAFETY: `old` is the mask pthread_sigmask gave us.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
    };
    // waitpid needs SIGCHLD not ignored (SIG_IGN reaps children automatically); C gets
    // the caller's disposition back before exec.
    if inherited.sigchld_ignored {
        // SAFETY: SIG_DFL is a valid disposition for SIGCHLD.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    }
    let fail = |e: StartError| {
        restore_mask(&old_mask);
        e
    };
    // SAFETY: signalfd with fd -1 creates a new descriptor for a valid set.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if sfd < 0 {
        return Err(fail(setup("cannot create a signalfd", Errno::last())));
    }
    // SAFETY: sfd is a new descriptor nobody else owns.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let (status_r, status_w) = pipe().map_err(|e| fail(setup("cannot create a pipe", e)))?;
    let (go_r, go_w) = pipe().map_err(|e| fail(setup("cannot create a pipe", e)))?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };

    // SAFETY: L is single-threaded here (the guard's threads start after the fork), so
    // the child may run any code; it still sticks to async-signal-safe calls (`child`).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(fail(setup("cannot fork", Errno::last())));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; the fds are the pipe ends it uses.
        unsafe {
            child(
                exec,
                inherited,
                &install,
                me,
                status_w.as_raw_fd(),
                go_r.as_raw_fd(),
            )
        }
    }
    drop(status_w);
    drop(go_r);
    // From here on, a failure must not leave C waiting: kill it (it has not exec'd, so
    // nothing of the program has run) and reap it.
    let abort = |e: StartError| {
        // SAFETY: pid is our unreaped child: the number cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut st = 0;
            while libc::waitpid(pid, &mut st, 0) < 0 && Errno::last().0 == libc::EINTR {}
        }
        fail(e)
    };
    let n = match read_msg(status_r.as_fd()) {
        Ok(Some((MSG_LISTENER, n))) => n,
        Ok(Some((MSG_INSTALL_FAILED, e))) => {
            return Err(abort(StartError::Setup(format!(
                "cannot install the guard's seccomp filter: {}",
                Errno(e).description()
            ))))
        }
        Ok(_) => {
            return Err(abort(StartError::Setup(
                "the program's process ended before the guard's filter was installed".into(),
            )))
        }
        Err(e) => return Err(abort(setup("reading from the program's process", e))),
    };
    let pidfd = match pidfd::open(pid, 0) {
        Ok(p) => p,
        Err(e) => return Err(abort(setup("pidfd_open of the program's process", e))),
    };
    let listener = match pidfd::get_fd(pidfd.as_fd(), n) {
        Ok(l) => l,
        Err(e) => {
            return Err(abort(setup(
                "cannot take the guard's listener from the program's process (pidfd_getfd)",
                e,
            )))
        }
    };
    let served = match serve(listener) {
        Ok(s) => s,
        Err(e) => return Err(abort(StartError::Setup(e))),
    };
    if let Err(e) = write_all(go_w.as_fd(), &[GO]) {
        return Err(abort(setup("cannot start the program's process", e)));
    }
    drop(go_w);
    // L's copies of stdin and stdout would keep a pipe reader waiting after the program
    // has closed its own: point them at /dev/null (stderr stays, for L's messages).
    detach_stdio();
    Ok(Running {
        pid,
        pidfd,
        status: status_r,
        sfd,
        served,
    })
}

/// The child C, between fork and exec. Never returns.
///
/// # Safety
/// Must run in a freshly forked child. Only async-signal-safe calls, no allocation.
unsafe fn child<I: Fn() -> Result<RawFd, Errno>>(
    exec: &Exec,
    inherited: &Inherited,
    install: &I,
    parent: i32,
    status_w: RawFd,
    go_r: RawFd,
) -> ! {
    // If L dies, so does the program (as if it had been run directly under L's pid).
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    if libc::getppid() != parent {
        libc::_exit(125);
    }
    inherited.restore();
    let n = match install() {
        Ok(n) => n,
        Err(e) => {
            send_msg(status_w, MSG_INSTALL_FAILED, e.0);
            libc::_exit(125);
        }
    };
    send_msg(status_w, MSG_LISTENER, n);
    let mut b = 0u8;
    let got = loop {
        let r = libc::read(go_r, (&mut b as *mut u8).cast(), 1);
        if r < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        break r;
    };
    if got != 1 || b != GO {
        libc::_exit(125);
    }
    libc::close(n);
    libc::close(go_r);
    libc::execve(
        exec.path.as_ptr(),
        exec.argv_p.as_ptr(),
        exec.envp_p.as_ptr(),
    );
    let e = *libc::__errno_location();
    send_msg(status_w, MSG_EXEC_FAILED, e);
    libc::_exit(if e == libc::ENOENT { 127 } else { 126 });
}

/// Writes one (tag, value) message; async-signal-safe.
unsafe fn send_msg(fd: RawFd, tag: i32, value: i32) {
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&tag.to_ne_bytes());
    m[4..].copy_from_slice(&value.to_ne_bytes());
    // 8 bytes into an empty pipe: written whole (PIPE_BUF, pipe(7)).
    while libc::write(fd, m.as_ptr().cast(), m.len()) < 0
        && *libc::__errno_location() == libc::EINTR
    {}
}

/// Reads one message, or `None` at EOF.
fn read_msg(fd: std::os::fd::BorrowedFd<'_>) -> Result<Option<(i32, i32)>, Errno> {
    let mut m = [0u8; 8];
    let mut got = 0;
    while got < m.len() {
        // SAFETY: the buffer is valid for the remaining length.
        let r = unsafe { libc::read(fd.as_raw_fd(), m[got..].as_mut_ptr().cast(), m.len() - got) };
        match r {
            0 => return Ok(None),
            r if r > 0 => got += r as usize,
            _ if Errno::last().0 == libc::EINTR => {}
            _ => return Err(Errno::last()),
        }
    }
    let tag = i32::from_ne_bytes([m[0], m[1], m[2], m[3]]);
    let value = i32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
    Ok(Some((tag, value)))
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, b: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < b.len() {
        // SAFETY: the slice is valid for its remaining length.
        let r = unsafe { libc::write(fd.as_raw_fd(), b[done..].as_ptr().cast(), b.len() - done) };
        if r < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return Err(Errno::last());
        }
        done += r as usize;
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: pipe2 gave us two new descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn detach_stdio() {
    // SAFETY: the path is a NUL-terminated literal; dup2 onto 0 and 1 only replaces L's
    // own copies (C has its own); fds that were closed stay closed.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return;
        }
        for fd in [0, 1] {
            if fd != null && libc::fcntl(fd, libc::F_GETFD) >= 0 {
                libc::dup2(null, fd);
            }
        }
        if null > 1 {
            libc::close(null);
        }
    }
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set we own.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        s
    }
}

fn signal_set() -> libc::sigset_t {
    let mut s = empty_set();
    // SAFETY: s is initialised; every number added is a valid signal.
    unsafe {
        for &sig in FORWARDED {
            libc::sigaddset(&mut s, sig);
        }
        for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            libc::sigaddset(&mut s, sig);
        }
        libc::sigaddset(&mut s, libc::SIGCHLD);
    }
    s
}

/// Whether a signal with this `si_code` was sent by a process (and so is L's to
/// forward), rather than by the kernel for the terminal (which signalled C too).
pub fn sent_by_process(code: i32) -> bool {
    matches!(code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL)
}

/// The state letter of `/proc/PID/stat` (proc(5): the field after the parenthesised
/// command name, which may itself contain ") ").
pub fn proc_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

impl<S: Served> Running<S> {
    /// L's pid (the supervisor's), for the `-v` line.
    pub fn supervisor_pid(&self) -> i32 {
        // SAFETY: getpid has no preconditions.
        unsafe { libc::getpid() }
    }

    /// The program's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the program, forwarding signals and following its job-control stops.
    /// Returns how it ended, or the exec failure.
    pub fn wait(&mut self) -> Result<Ended, StartError> {
        let mut exec_done = false;
        loop {
            let mut pfds = [
                libc::pollfd {
                    fd: self.sfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if exec_done {
                        -1
                    } else {
                        self.status.as_raw_fd()
                    },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: pfds is a valid array of two pollfds (a negative fd is skipped).
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if Errno::last().0 == libc::EINTR {
                    continue;
                }
                return Err(StartError::Setup(format!(
                    "waiting for the program: {}",
                    Errno::last().description()
                )));
            }
            if !exec_done && pfds[1].revents != 0 {
                exec_done = true;
                if let Ok(Some((MSG_EXEC_FAILED, e))) = read_msg(self.status.as_fd()) {
                    self.reap_blocking();
                    return Err(StartError::Exec(Errno(e)));
                }
            }
            if pfds[0].revents != 0 {
                if let Some(end) = self.drain_signals()? {
                    return Ok(end);
                }
            }
        }
    }

    /// Reads every pending signal; returns how C ended if it has.
    fn drain_signals(&mut self) -> Result<Option<Ended>, StartError> {
        // At most this many per wake-up; the rest wake poll again.
        for _ in 0..64 {
            // SAFETY: signalfd_siginfo is plain data; zeroed is a valid value.
            let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let sz = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: si is writable for sz bytes.
            let r = unsafe {
                libc::read(
                    self.sfd.as_raw_fd(),
                    (&mut si as *mut libc::signalfd_siginfo).cast(),
                    sz,
                )
            };
            if r < 0 {
                return match Errno::last().0 {
                    libc::EAGAIN => Ok(None),
                    libc::EINTR => continue,
                    e => Err(StartError::Setup(format!(
                        "reading signals: {}",
                        Errno(e).description()
                    ))),
                };
            }
            if r as usize != sz {
                return Ok(None);
            }
            let sig = si.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                if let Some(end) = self.poll_child() {
                    return Ok(Some(end));
                }
            } else if sig == libc::SIGCONT {
                // The shell's `fg` signals the whole group (C is resumed already); a
                // `kill -CONT` aimed at L alone must resume C too.
                if self.child_stopped() {
                    let _ = pidfd::send_signal(self.pidfd.as_fd(), libc::SIGCONT);
                }
            } else if sent_by_process(si.ssi_code) {
                // ESRCH: C has just exited; its SIGCHLD is on its way.
                let _ = pidfd::send_signal(self.pidfd.as_fd(), sig);
            }
        }
        Ok(None)
    }

    fn child_stopped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| proc_state(&s))
            == Some('T')
    }

    /// Collects C's state changes; `Some` once it has ended.
    fn poll_child(&mut self) -> Option<Ended> {
        for _ in 0..64 {
            let mut st = 0;
            // SAFETY: pid is our child; st is a valid out-pointer.
            let r = unsafe {
                libc::waitpid(
                    self.pid,
                    &mut st,
                    libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED,
                )
            };
            if r < 0 && Errno::last().0 == libc::EINTR {
                continue;
            }
            if r <= 0 {
                // 0: no change; ECHILD cannot happen (C is ours and unreaped).
                return None;
            }
            if libc::WIFEXITED(st) {
                return Some(Ended::Code(libc::WEXITSTATUS(st)));
            }
            if libc::WIFSIGNALED(st) {
                return Some(Ended::Signal(libc::WTERMSIG(st)));
            }
            if libc::WIFSTOPPED(st) {
                stop_self(libc::WSTOPSIG(st));
            }
        }
        None
    }

    fn reap_blocking(&mut self) {
        let mut st = 0;
        // SAFETY: pid is our child (it has _exit'ed or is about to).
        unsafe {
            while libc::waitpid(self.pid, &mut st, 0) < 0 && Errno::last().0 == libc::EINTR {}
        }
    }

    /// After the program ended: waits briefly for the processes it left behind. Returns
    /// false when some still use the filter (they fail closed once L exits).
    pub fn linger(&self) -> bool {
        self.served.wait_finished(LINGER)
    }
}

/// Stops L the way C stopped: with the same stop signal when it is one the shell tells
/// apart (SIGTSTP, SIGTTIN, SIGTTOU) and L has it at its default, else SIGSTOP.
fn stop_self(csig: i32) {
    let sig = if [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&csig) && is_default(csig) {
        csig
    } else {
        libc::SIGSTOP
    };
    let mut one = empty_set();
    // SAFETY: one is initialised; sig is valid. raise() sends to this thread, which then
    // unblocks it, so it is delivered here (stop is process-wide); SIGCONT resumes us and
    // we block it again. SIGSTOP cannot be blocked, so the mask calls do nothing for it.
    unsafe {
        libc::sigaddset(&mut one, sig);
        libc::raise(sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
        libc::pthread_sigmask(libc::SIG_BLOCK, &one, std::ptr::null_mut());
    }
}

fn is_default(sig: i32) -> bool {
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_DFL
    }
}

/// Ends L the way the program ended. Never returns.
pub fn exit_like(end: Ended) -> ! {
    match end {
        Ended::Code(c) => std::process::exit(c),
        Ended::Signal(sig) => {
            // SAFETY: setrlimit with a valid struct; SIG_DFL is valid for every signal
            // that can end a process; the set is initialised. raise() delivers to this
            // thread once unblocked; the default action then ends the whole process.
            unsafe {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::signal(sig, libc::SIG_DFL);
                let mut one = empty_set();
                libc::sigaddset(&mut one, sig);
                libc::raise(sig);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
            }
            // A signal whose default is not to terminate cannot have ended C; be safe.
            std::process::exit(128 + sig)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_sent_it() {
        assert!(sent_by_process(libc::SI_USER));
        assert!(sent_by_process(libc::SI_QUEUE));
        assert!(sent_by_process(libc::SI_TKILL));
        assert!(
            !sent_by_process(libc::SI_KERNEL),
            "the terminal signalled C too"
        );
        assert!(!sent_by_process(libc::SI_TIMER));
    }

    #[test]
    fn proc_stat_state() {
        assert_eq!(proc_state("123 (sleep) T 1 2 3"), Some('T'));
        assert_eq!(proc_state("123 (a) b) (c) S 1 2"), Some('S'));
        assert_eq!(proc_state("garbage"), None);
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        // The harness's main thread (the one /proc/self/stat shows) runs or sleeps.
        assert!(matches!(proc_state(&me), Some('R' | 'S')), "{me}");
    }

    #[test]
    fn messages_round_trip() {
        let (r, w) = pipe().unwrap();
        // SAFETY: w is an open pipe end we own.
        unsafe { send_msg(w.as_raw_fd(), MSG_LISTENER, 7) };
        drop(w);
        assert_eq!(read_msg(r.as_fd()).unwrap(), Some((MSG_LISTENER, 7)));
        assert_eq!(read_msg(r.as_fd()).unwrap(), None, "EOF");
    }

    #[test]
    fn exec_rejects_nul_and_terminates_lists() {
        let e = Exec::new(
            Path::new("/bin/true"),
            &["true".into()],
            [("A".into(), "b".into())],
        )
        .unwrap();
        assert_eq!(e.argv_p.len(), 2);
        assert!(e.argv_p[1].is_null() && e.envp_p[1].is_null());
        assert!(Exec::new(Path::new("/bin/true"), &["a\0b".into()], []).is_err());
    }

    #[test]
    fn the_set_leaves_glibc_signals_and_faults_alone() {
        let s = signal_set();
        // SAFETY: s is an initialised set.
        let has = |sig| unsafe { libc::sigismember(&s, sig) == 1 };
        assert!(has(libc::SIGINT) && has(libc::SIGCHLD) && has(libc::SIGRTMIN()));
        assert!(!has(libc::SIGSEGV) && !has(libc::SIGPIPE) && !has(32) && !has(33));
    }
}
