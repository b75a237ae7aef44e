//! The companion: the one process that outlives the launcher's `exec`.
//!
//! Two jobs need a process beside the program: removing the files the launcher created
//! for the run (the credentials file, the shared name table for remote DNS) when the
//! program exits, and running the built-in SOCKS5 server when no proxy is configured.
//! The launcher cannot do them itself, because it becomes the program (`exec`, so the
//! program keeps the pid, exit status, signals and terminal).
//!
//! How it is started, and why:
//! - **Double fork.** The launcher forks a child, which calls `setsid` and forks the
//!   companion, then exits at once. The companion is reparented to init (or the nearest
//!   subreaper), so the program never sees an extra child that its `wait()` could reap or
//!   block on. `setsid` takes it out of the terminal's foreground process group, so a
//!   Ctrl-C meant for the program does not kill it before it has cleaned up.
//! - **Re-exec.** The companion `exec`s `/proc/self/exe __companion …`: its command line
//!   is then ours (no `-x socks5://user:password@…` copied from the launcher for `ps` to
//!   show), and it starts with one thread and a clean heap. Its environment is the
//!   launcher's minus the variables that carried a secret.
//! - **pidfd.** It watches the launcher's pid with `pidfd_open`, which becomes readable
//!   when that process (by then the program) exits, with no pid-reuse race. On kernels
//!   without `pidfd_open` (< 5.3) it falls back to polling `kill(pid, 0)`.
//! - **Ready pipe.** The launcher waits (bounded) on a pipe until the companion has its
//!   pidfd and, for the built-in server, a listening socket, whose port comes back on
//!   the same pipe. Only then does the launcher `exec`.
//! - stdin and stdout are `/dev/null` (a `$(laysocks … -- prog)` caller must see EOF when
//!   the program closes stdout); stderr is kept for the server's log lines. Every other
//!   inherited fd is closed, so the companion holds nothing open that the caller waits on.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::say;

/// The fd on which the re-executed companion finds the write end of the ready pipe.
const READY_FD: RawFd = 3;

/// How long the launcher waits for the companion to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct CompanionArgs {
    /// The launcher's pid (the program's, after exec)
    #[arg(long)]
    pub pid: i32,
    /// Remove this file when the program exits (repeatable)
    #[arg(long = "remove", value_name = "PATH")]
    pub remove: Vec<PathBuf>,
    /// Run the built-in SOCKS5 server on 127.0.0.1
    #[arg(long)]
    pub serve: bool,
    /// Server log: quiet, connect (a line per CONNECT), verbose (a line per connection at close)
    #[arg(long, default_value = "connect")]
    pub log: String,
    /// Upstream connect timeout for the server, in milliseconds
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u32,
}

/// What the launcher asks of a companion.
pub struct Request<'a> {
    /// Files to remove when the program exits.
    pub remove: &'a [&'a std::path::Path],
    pub serve: bool,
    pub log: crate::server::LogMode,
    pub timeout_ms: u32,
    /// Variables not to pass on.
    pub scrub_env: &'a [String],
}

/// The running companion, as the launcher sees it.
pub struct Started {
    /// The built-in server's port, when one was asked for.
    pub port: Option<u16>,
}

fn cstr(b: &[u8]) -> Result<CString, String> {
    CString::new(b).map_err(|_| "an argument or variable contains a NUL byte".to_string())
}

/// Starts the companion and waits until it is ready.
pub fn start(req: &Request<'_>) -> Result<Started, String> {
    // Everything the children need is prepared before fork: after fork only
    // async-signal-safe calls are made.
    let exe: OsString = if std::path::Path::new("/proc/self/exe").exists() {
        "/proc/self/exe".into()
    } else {
        std::env::current_exe()
            .map_err(|e| format!("cannot find the laysocks executable: {e}"))?
            .into_os_string()
    };
    let exe_c = cstr(exe.as_bytes())?;
    // SAFETY: getpid has no preconditions and cannot fail.
    let me = unsafe { libc::getpid() };
    let mut argv: Vec<CString> = vec![
        cstr(b"laysocks")?,
        cstr(b"__companion")?,
        cstr(b"--pid")?,
        cstr(me.to_string().as_bytes())?,
        cstr(b"--log")?,
        cstr(req.log.as_arg().as_bytes())?,
        cstr(b"--timeout-ms")?,
        cstr(req.timeout_ms.to_string().as_bytes())?,
    ];
    if req.serve {
        argv.push(cstr(b"--serve")?);
    }
    for p in req.remove {
        argv.push(cstr(b"--remove")?);
        argv.push(cstr(p.as_os_str().as_bytes())?);
    }
    let mut envp: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if req.scrub_env.iter().any(|s| k == s.as_str()) {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            envp.push(c);
        }
    }
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());

    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot create a pipe for the companion process: {}",
            std::io::Error::last_os_error()
        ));
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    // SAFETY: the path is a NUL-terminated literal.
    let devnull = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if devnull < 0 {
        let e = std::io::Error::last_os_error();
        close_fds(&[rfd, wfd]);
        return Err(format!("cannot open /dev/null: {e}"));
    }

    // SAFETY: the launcher is single-threaded here (no thread has been started), so the
    // child may run any code; it still sticks to async-signal-safe calls below.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        close_fds(&[rfd, wfd, devnull]);
        return Err(format!("cannot fork the companion process: {e}"));
    }
    if pid == 0 {
        // SAFETY: in the intermediate child; only async-signal-safe calls, then _exit.
        unsafe { intermediate(wfd, devnull, &exe_c, &argv_p, &envp_p) }
    }
    close_fds(&[wfd, devnull]);
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid out-pointer. Bounded: the intermediate
    // child only forks and exits.
    unsafe {
        while libc::waitpid(pid, &mut status, 0) < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
    // SAFETY: rfd is our open read end; File takes ownership and closes it.
    let mut pipe = unsafe { File::from_raw_fd(rfd) };
    let line = read_ready(&mut pipe, READY_TIMEOUT)?;
    parse_ready(&line)
}

/// The intermediate child: new session, fork the companion, exit.
///
/// # Safety
/// Must run in a freshly forked child; every pointer must stay valid (they point into the
/// parent's copied heap).
unsafe fn intermediate(
    wfd: RawFd,
    devnull: RawFd,
    exe: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    libc::setsid();
    let pid = libc::fork();
    if pid != 0 {
        // Parent of the companion (or fork failed: the launcher then sees EOF on the pipe).
        libc::_exit(0);
    }
    // Move both fds out of the way first: either may sit on 0, 1 or 3 when the launcher
    // was started with closed standard fds.
    let w2 = libc::fcntl(wfd, libc::F_DUPFD_CLOEXEC, 10);
    let n2 = libc::fcntl(devnull, libc::F_DUPFD_CLOEXEC, 10);
    // dup2 onto a different fd clears FD_CLOEXEC on the new one.
    libc::dup2(n2, 0);
    libc::dup2(n2, 1);
    libc::dup2(w2, READY_FD);
    // Close everything else the launcher inherited (close_range: Linux 5.9; otherwise a
    // bounded loop).
    if libc::syscall(libc::SYS_close_range, READY_FD as u32 + 1, u32::MAX, 0) != 0 {
        for fd in READY_FD + 1..4096 {
            libc::close(fd);
        }
    }
    libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
    let msg = b"err cannot execute the laysocks binary for the companion process\n";
    libc::write(READY_FD, msg.as_ptr().cast(), msg.len());
    libc::_exit(127);
}

fn close_fds(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: each fd is one we opened and still own.
        unsafe { libc::close(fd) };
    }
}

/// Reads the companion's one-line answer within `timeout`.
fn read_ready(pipe: &mut File, timeout: Duration) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("the companion process did not start within 5 s".into());
        }
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(format!(
                "waiting for the companion process: {}",
                std::io::Error::last_os_error()
            ));
        }
        if n == 0 {
            continue;
        }
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("waiting for the companion process: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn parse_ready(line: &str) -> Result<Started, String> {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("ok") {
        let rest = rest.trim();
        let port = if rest.is_empty() {
            None
        } else {
            Some(
                rest.parse::<u16>()
                    .map_err(|_| format!("the companion process sent `{line}`"))?,
            )
        };
        return Ok(Started { port });
    }
    if let Some(msg) = line.strip_prefix("err ") {
        return Err(msg.to_string());
    }
    Err("the companion process exited before it was ready".into())
}

/// Waits for a process to exit.
enum Watch {
    Pidfd(RawFd),
    Poll(i32),
}

impl Watch {
    fn open(pid: i32) -> Result<Watch, String> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            return Ok(Watch::Pidfd(fd as RawFd));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(Watch::Poll(pid)),
            _ => Err(format!("cannot watch process {pid}: {e}")),
        }
    }

    fn wait(&self) {
        match *self {
            Watch::Pidfd(fd) => loop {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: pfd is one valid pollfd; -1 waits until the process exits.
                let n = unsafe { libc::poll(&mut pfd, 1, -1) };
                if n > 0 {
                    return;
                }
                if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return;
                }
            },
            Watch::Poll(pid) => loop {
                // SAFETY: signal 0 only checks that the process exists.
                if unsafe { libc::kill(pid, 0) } != 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            },
        }
    }
}

/// The companion's `main` (`laysocks __companion …`, started by [`start`]).
pub fn main(a: &CompanionArgs) -> ExitCode {
    // SAFETY: F_GETFD only asks whether the fd is open.
    if unsafe { libc::fcntl(READY_FD, libc::F_GETFD) } < 0 {
        say("__companion is internal to laysocks; it is not meant to be run by hand");
        return ExitCode::from(crate::EXIT_USAGE);
    }
    // SAFETY: fd 3 was set up by `intermediate` as the ready pipe and nobody else owns it;
    // FD_CLOEXEC keeps it from server threads' children (there are none, but be tidy).
    let mut ready = unsafe {
        libc::fcntl(READY_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        File::from_raw_fd(READY_FD)
    };
    let cleanup = |a: &CompanionArgs| {
        for p in &a.remove {
            let _ = std::fs::remove_file(p);
        }
    };
    let watch = match Watch::open(a.pid) {
        Ok(w) => w,
        Err(e) => {
            let _ = writeln!(ready, "err {e}");
            cleanup(a);
            return ExitCode::FAILURE;
        }
    };
    let mut port = None;
    if a.serve {
        let log = crate::server::LogMode::from_arg(&a.log);
        match crate::server::start_builtin(log, Duration::from_millis(u64::from(a.timeout_ms))) {
            Ok(p) => port = Some(p),
            Err(e) => {
                let _ = writeln!(ready, "err cannot start the built-in SOCKS5 server: {e}");
                cleanup(a);
                return ExitCode::FAILURE;
            }
        }
    }
    let ok = match port {
        Some(p) => writeln!(ready, "ok {p}"),
        None => writeln!(ready, "ok"),
    };
    drop(ready);
    if ok.is_ok() {
        watch.wait();
    }
    cleanup(a);
    // Exit without waiting for server threads: the program is gone.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        assert_eq!(parse_ready("ok\n").unwrap().port, None);
        assert_eq!(parse_ready("ok 4242\n").unwrap().port, Some(4242));
        assert_eq!(parse_ready("err boom\n").err().unwrap(), "boom");
        assert!(parse_ready("").is_err());
        assert!(parse_ready("ok nope").is_err());
    }
}
