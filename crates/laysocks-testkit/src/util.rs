//! Small pieces every part of the rig needs: prerequisites, temp dirs, bounded waits and
//! bounded runs of child processes.
//!
//! Every wait here has a deadline and every failure panics with a message that says what
//! was expected and what was seen, because a hung or mute test on a CI machine is worse
//! than a failing one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// The default bound for "a server starts" or "a command finishes".
pub const WAIT: Duration = Duration::from_secs(10);

/// Panics naming the Debian package when `tool` is not installed. `tool` is a command
/// name looked up in `PATH` or an absolute path.
pub fn require(tool: &str, package: &str) -> PathBuf {
    match which(tool) {
        Some(p) => p,
        None => panic!(
            "`{tool}` is not installed: install the Debian package `{package}` \
             (apt-get install {package})"
        ),
    }
}

/// Finds `tool` in `PATH` (or checks an absolute path) without running it.
pub fn which(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return is_exe(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| is_exe(p))
}

/// The Debian `python3`, not a version manager's shim in `PATH`: tests should run the
/// interpreter the CI installs, and a shim adds a shell and a second exec to every run.
pub fn python3() -> PathBuf {
    let debian = Path::new("/usr/bin/python3");
    if debian.exists() {
        return debian.to_path_buf();
    }
    require("python3", "python3")
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A per-process unique counter, so that parallel tests never share a name.
pub fn unique() -> usize {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// How the names of our temp dirs start (stale ones are found by it).
pub(crate) const TEMP_PREFIX: &str = "laysocks-testkit-";

/// A directory under `/tmp` removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "{TEMP_PREFIX}{label}-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`; panics with
/// `what` (evaluated lazily, so it can include logs) when the deadline passes.
pub fn wait_for<T>(
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
    what: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?}: {}", what());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The longest [`run_bounded`] keeps a program's stdin open after writing its input.
pub const STDIN_HOLD: Duration = Duration::from_secs(10);

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command line, for messages.
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or `None` when a signal ended the program.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with everything the program printed unless it exited with 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Run {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panics unless the program exited with a non-zero code (not a signal).
    #[track_caller]
    pub fn assert_failure(&self) -> &Run {
        assert!(
            matches!(self.code(), Some(c) if c != 0),
            "expected a failing exit code:\n{self}"
        );
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{self}"
        );
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{self}"
        );
        self
    }

    /// The lines of stdout, trimmed.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().map(str::trim_end).collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  command: {}", self.cmdline)?;
        writeln!(f, "  status:  {} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "  stdout:  {}", indent(&self.stdout))?;
        write!(f, "  stderr:  {}", indent(&self.stderr))
    }
}

fn indent(s: &str) -> String {
    if s.is_empty() {
        return "(empty)".into();
    }
    s.trim_end().replace('\n', "\n           ")
}

/// Renders a command line for messages.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to completion with `stdin` fed to it, for at most `limit`. The command gets
/// its own process group; on timeout the whole group is killed (by its id) and the test
/// panics with what the program printed so far. Output is collected by reader threads
/// with the same deadline, so a grandchild that keeps the pipes open cannot hang us.
///
/// After writing `stdin` the writer keeps the pipe open until the program has printed at
/// least as many bytes as it was given (an echo came back), the program exits, or
/// [`STDIN_HOLD`] passes. Proxies such as microsocks do not support half-close: they drop
/// the whole connection when the client's EOF arrives, before the reply to what was just
/// sent could come back, so closing stdin at once would make echo tests racy.
pub fn run_bounded(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    let line = cmdline(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    let printed = Arc::new(AtomicUsize::new(0));
    let exited = Arc::new(AtomicBool::new(false));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        let (printed, exited) = (printed.clone(), exited.clone());
        // A writer thread: a program that does not read its stdin must not block us.
        thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&input);
            let until = Instant::now() + STDIN_HOLD;
            while printed.load(Ordering::SeqCst) < input.len()
                && !exited.load(Ordering::SeqCst)
                && Instant::now() < until
            {
                thread::sleep(Duration::from_millis(5));
            }
        });
    }
    let out = reader(child.stdout.take().expect("stdout is piped"), Some(printed));
    let err = reader(child.stderr.take().expect("stderr is piped"), None);
    let deadline = start + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for `{line}`: {e}"),
        }
    };
    let elapsed = start.elapsed();
    exited.store(true, Ordering::SeqCst);
    let Some(status) = status else {
        kill_group(&mut child);
        let stdout = collect(out, Duration::from_secs(1));
        let stderr = collect(err, Duration::from_secs(1));
        panic!(
            "`{line}` did not finish within {limit:?}; killed.\n  stdout: {}\n  stderr: {}",
            indent(&stdout),
            indent(&stderr)
        );
    };
    // The program is gone; its output is complete unless a child of it still holds the
    // pipe. Give that a short grace period, then kill the group (our own, by its id).
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(2))
        .max(Duration::from_millis(200));
    let (stdout, out_done) = collect_eof(out, grace);
    let (stderr, err_done) = collect_eof(err, Duration::from_millis(200));
    if !(out_done && err_done) {
        // A member of the program's process group still holds a pipe; the group id
        // cannot be reused while that member lives.
        kill_group_id(child.id());
    }
    Run {
        cmdline: line,
        status,
        stdout,
        stderr,
        elapsed,
    }
}

fn reader(
    mut pipe: impl Read + Send + 'static,
    count: Option<Arc<AtomicUsize>>,
) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(c) = &count {
                        c.fetch_add(n, Ordering::SeqCst);
                    }
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Everything received until the writer closes or `limit` passes.
fn collect(rx: mpsc::Receiver<Vec<u8>>, limit: Duration) -> String {
    collect_eof(rx, limit).0
}

/// Like [`collect`], and whether the pipe reached EOF (rather than the deadline).
fn collect_eof(rx: mpsc::Receiver<Vec<u8>>, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let eof = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => all.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => break true,
            Err(mpsc::RecvTimeoutError::Timeout) => break false,
        }
    };
    (String::from_utf8_lossy(&all).into_owned(), eof)
}

/// Kills the process group led by `child` and reaps the child (bounded).
pub fn kill_group(child: &mut Child) {
    kill_group_id(child.id());
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// SIGKILL to the process group `pgid` (a group this process created for its child).
pub fn kill_group_id(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals the process group we created with
    // process_group(0) for one of our children; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// SIGKILL to one process by its id.
pub fn kill_pid(pid: i32) {
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) on a pid we found to be inside one of our own namespaces.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The last `n` lines of a log file, for panic messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].join("\n")
}

/// Root of the workspace (this crate lives in `crates/laysocks-testkit`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// The target directory (honours `CARGO_TARGET_DIR` when it is set at run time).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The launcher binary: `$LAYSOCKS_BIN`, or `target/debug/laysocks` of this workspace.
pub fn laysocks_bin() -> PathBuf {
    let path = match std::env::var_os("LAYSOCKS_BIN") {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("debug").join("laysocks"),
    };
    assert!(
        path.is_file(),
        "the launcher {} does not exist: build it with `cargo build -p laysocks` \
         (or point $LAYSOCKS_BIN at it)",
        path.display()
    );
    path
}
