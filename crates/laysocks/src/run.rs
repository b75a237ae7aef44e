//! Running a program under the layer: everything between "settings are known" and
//! `exec`.
//!
//! Order matters, so that a failure leaves nothing behind and says one thing:
//! 1. find the program (127 / 126 before anything is created), and refuse one the layer
//!    cannot enter (`exec_check.rs`; 126 unless `--allow-direct`);
//! 2. find or write out `liblaysocks.so`;
//! 3. resolve the proxy's host name here, once: the layer must not run the resolver from
//!    inside somebody else's `connect()`;
//! 4. write the credentials file and, with remote DNS (the default), create the empty
//!    shared name table the layer maps (both `O_EXCL`, `0600`, in the same private
//!    directory), and start the companion that removes them when the program exits (and,
//!    with no proxy configured, runs the built-in server);
//! 5. build the program's environment — `LAYSOCKS_LAYER`, `LD_PRELOAD` appended to, and
//!    every variable that carried a secret removed — and `exec`;
//! 6. or, with the guard (the default), fork the program under the seccomp filter and
//!    stay as its supervisor (`supervise.rs`), ending as it ends.
//!
//! The kernel check for the guard comes first of all (before step 1), so that a kernel
//! without killable seccomp waits is one line and exit 125, with nothing created.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use laysocks_config::{LayerConfig, ProxyHost, ProxyUrl, ENV_LAYER};

use crate::cli::{self, Common};
use crate::config::Settings;
use crate::server::LogMode;
use crate::{companion, library, say, supervise, EXIT_CANNOT_RUN, EXIT_NOT_FOUND, EXIT_USAGE};

/// A launcher failure: the exit status and the one line to print.
pub struct Fail(pub u8, pub String);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(EXIT_USAGE, msg.into())
}

/// `laysocks [OPTIONS] [--] PROGRAM [ARGS…]`. Returns only on failure.
pub fn main(common: &Common, program: Vec<OsString>) -> ExitCode {
    let Fail(code, msg) = match run(common, program) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    say(msg);
    ExitCode::from(code)
}

enum Never {}

fn run(common: &Common, program: Vec<OsString>) -> Result<Never, Fail> {
    let settings = cli::settings(common).map_err(usage)?;
    if settings.verbose {
        if let Some(p) = &settings.config_path {
            say(format!("config file {}", p.display()));
        }
    }
    if settings.guard {
        laysocks_guard::check_kernel().map_err(usage)?;
    }
    let path_var = std::env::var_os("PATH");
    let exe = resolve_program(&program[0], path_var.as_deref())?;
    let guard = check_enterable(&exe, path_var.as_deref(), &settings)?;
    let lib = library::find(&library::Lookup {
        env: &cli::process_env,
        exe: std::env::current_exe().ok(),
        embedded: library::EMBEDDED,
        // SAFETY: getuid has no preconditions and cannot fail.
        uid: unsafe { libc::getuid() },
        tmp: PathBuf::from("/tmp"),
    })
    .map_err(usage)?;

    let dns = &settings.dns;
    let mut layer = LayerConfig {
        connect_timeout_ms: settings.connect_timeout_ms,
        quiet: settings.quiet,
        verbose: settings.verbose,
        excludes: settings.excludes.clone(),
        pipeline: settings.pipeline,
        remote_dns: dns.remote,
        names_capacity: dns.capacity,
        pool4: dns.pool4,
        pool6: dns.pool6,
        dns_server: dns.server.clone(),
        direct_names: dns.direct_names.clone(),
        guarded: guard,
        ..LayerConfig::default()
    };
    // Files made for this run: removed on drop (any failure below) until the companion
    // has taken them over.
    let mut created: Vec<RunFile> = Vec::new();
    if let Some(url) = &settings.proxy {
        layer.proxy_addrs = resolve_proxy(url)?;
        layer.proxy_label = url.to_string();
        if let (Some(u), Some(p)) = (&url.username, &url.password) {
            let s = RunFile::secret(&laysocks_config::secret::encode(u.as_bytes(), p.as_bytes()))
                .map_err(usage)?;
            layer.secret_file = Some(s.path.to_string_lossy().into_owned());
            created.push(s);
        }
    }
    if dns.remote {
        // Empty: the layer sizes and maps it (DESIGN §4).
        let n = RunFile::names().map_err(usage)?;
        layer.names_file = Some(n.path.to_string_lossy().into_owned());
        created.push(n);
    }
    let builtin = settings.proxy.is_none();
    if builtin || !created.is_empty() {
        let remove: Vec<&Path> = created.iter().map(|f| f.path.as_path()).collect();
        let started = companion::start(&companion::Request {
            remove: &remove,
            serve: builtin,
            log: if settings.quiet {
                LogMode::Quiet
            } else if settings.verbose {
                LogMode::Verbose
            } else {
                LogMode::Connect
            },
            timeout_ms: settings.connect_timeout_ms,
            scrub_env: &settings.scrub_env,
        })
        .map_err(usage)?;
        // The companion owns the files from here on.
        for f in &mut created {
            f.handed_over = true;
        }
        if builtin {
            let port = started
                .port
                .ok_or_else(|| usage("the companion process did not report its port"))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            layer.proxy_addrs = vec![addr];
            layer.proxy_label = format!("socks5://{addr} (built-in)");
            if !settings.quiet {
                say(format!(
                    "no proxy configured; using the built-in SOCKS5 server on {addr} (connections leave from this machine)"
                ));
            }
        }
    }

    let changes = child_env(&settings, &layer, &lib, std::env::vars_os());
    let inherited = inherited_signals();
    let err = if guard {
        let credentials = settings.proxy.as_ref().and_then(|u| {
            Some((
                u.username.as_ref()?.as_bytes().to_vec(),
                u.password.as_ref()?.as_bytes().to_vec(),
            ))
        });
        let cfg = laysocks_guard::GuardConfig { layer, credentials };
        match supervised(&exe, &program, &changes, &inherited, cfg, &settings) {
            Ok(never) => match never {},
            Err(Launch::Fail(f)) => return Err(f),
            Err(Launch::Exec(e)) => std::io::Error::from_raw_os_error(e.0),
        }
    } else {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg0(&program[0]).args(&program[1..]);
        for (k, v) in changes {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        // SAFETY: the closure runs between fork and exec and only calls pthread_sigmask
        // and signal, both async-signal-safe; it touches no locks and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                inherited.restore();
                Ok(())
            });
        }
        cmd.exec()
    };
    // exec failed: the program will never use them.
    for f in &mut created {
        f.handed_over = false;
    }
    drop(created);
    let name = program[0].to_string_lossy();
    Err(match err.raw_os_error() {
        // The file was there a moment ago: ENOENT now means its #! interpreter is missing.
        Some(libc::ENOENT) => Fail(
            EXIT_CANNOT_RUN,
            format!("{name}: cannot run it: its interpreter (#! line) was not found"),
        ),
        _ => Fail(EXIT_CANNOT_RUN, format!("{name}: cannot run it: {err}")),
    })
}

/// Why a supervised start did not end the way the program did.
enum Launch {
    Fail(Fail),
    /// `execve` failed in the child with this errno.
    Exec(laysocks_sys::Errno),
}

/// Runs the program under the guard (`supervise.rs`) and ends as it ends.
fn supervised(
    exe: &Path,
    program: &[OsString],
    changes: &[(OsString, Option<OsString>)],
    inherited: &supervise::Inherited,
    cfg: laysocks_guard::GuardConfig,
    settings: &Settings,
) -> Result<Never, Launch> {
    let env = apply_env(changes, std::env::vars_os());
    let exec = supervise::Exec::new(exe, program, env).map_err(|e| Launch::Fail(usage(e)))?;
    // Built here, before the fork: the child only installs it.
    let filter = laysocks_guard::filter();
    let mut running = supervise::start(
        &exec,
        inherited,
        || filter.install(),
        |listener| laysocks_guard::serve(listener, cfg).map(Guard),
    )
    .map_err(|e| match e {
        supervise::StartError::Setup(m) => Launch::Fail(usage(m)),
        supervise::StartError::Exec(e) => Launch::Exec(e),
    })?;
    if settings.verbose {
        say(format!(
            "guard on (seccomp user notification; pid {} serves program pid {})",
            running.supervisor_pid(),
            running.pid()
        ));
    }
    let end = running.wait().map_err(|e| match e {
        supervise::StartError::Setup(m) => Launch::Fail(usage(m)),
        supervise::StartError::Exec(e) => Launch::Exec(e),
    })?;
    if !running.linger() && !settings.quiet {
        say(format!(
            "{} has exited but processes it started still run; the guard ends with it, so their connections now fail (ENOSYS) — keep the program waiting for them, or use --no-guard",
            program[0].to_string_lossy()
        ));
    }
    supervise::exit_like(end)
}

/// The guard's supervisor, as the process side sees it.
struct Guard(laysocks_guard::Supervisor);

impl supervise::Served for Guard {
    fn wait_finished(&self, timeout: std::time::Duration) -> bool {
        self.0.wait_finished(timeout)
    }
}

/// The whole environment for `execve`: `current` with `changes` applied (a change
/// replaces the variable in place; new ones go at the end).
pub fn apply_env(
    changes: &[(OsString, Option<OsString>)],
    current: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = Vec::new();
    for (k, v) in current {
        match changes.iter().rev().find(|(n, _)| *n == k) {
            None => out.push((k, v)),
            Some((_, Some(new))) => out.push((k, new.clone())),
            Some((_, None)) => {}
        }
    }
    for (k, v) in changes {
        if let Some(v) = v {
            if !out.iter().any(|(n, _)| n == k) {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    out
}

/// Whether SIGPIPE was ignored when the process started, read by a constructor that
/// runs before Rust's runtime sets SIGPIPE to "ignore" for itself.
static SIGPIPE_WAS_IGNORED: AtomicBool = AtomicBool::new(false);

extern "C" fn record_sigpipe() {
    // SAFETY: sigaction with a null new action only reads the current disposition into
    // `old`, a zeroed sigaction we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0 {
            SIGPIPE_WAS_IGNORED.store(old.sa_sigaction == libc::SIG_IGN, Ordering::Relaxed);
        }
    }
}

// Runs before `main` (and before std's runtime init), like a C constructor.
#[used]
#[link_section = ".init_array"]
static RECORD_SIGPIPE: extern "C" fn() = record_sigpipe;

/// The signal mask and the SIGPIPE and SIGCHLD dispositions the launcher was started
/// with. Rust's `Command` resets the first two before `exec`, and the supervisor needs
/// SIGCHLD at its default; the program must get them as its parent gave them (a caller
/// that ignores SIGPIPE or blocks a signal does so on purpose).
fn inherited_signals() -> supervise::Inherited {
    // SAFETY: a null new set only reads the current mask into `mask`, which we own (the
    // launcher has not changed its mask yet, so this is the inherited one); a null new
    // action only reads SIGCHLD's disposition (Rust's runtime leaves SIGCHLD alone).
    let (mask, sigchld_ignored) = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        let ign = libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN;
        (mask, ign)
    };
    supervise::Inherited {
        mask,
        sigpipe_ignored: SIGPIPE_WAS_IGNORED.load(Ordering::Relaxed),
        sigchld_ignored,
    }
}

/// The changes to the program's environment: `(name, Some(value))` to set, `(name,
/// None)` to remove.
pub fn child_env(
    settings: &Settings,
    layer: &LayerConfig,
    lib: &Path,
    current: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, Option<OsString>)> {
    let mut out: Vec<(OsString, Option<OsString>)> = settings
        .scrub_env
        .iter()
        .map(|k| (OsString::from(k), None))
        .collect();
    // `laysocks serve`'s credentials have no business in a program either.
    out.push(("LAYSOCKS_SERVE_USER".into(), None));
    let mut preload = None;
    for (k, v) in current {
        if k == "LD_PRELOAD" {
            preload = Some(v);
        }
    }
    out.push((ENV_LAYER.into(), Some(layer.encode().into())));
    out.push((
        "LD_PRELOAD".into(),
        Some(ld_preload(preload.as_deref(), lib)),
    ));
    out
}

/// `LD_PRELOAD` with our library appended (once).
pub fn ld_preload(existing: Option<&OsStr>, lib: &Path) -> OsString {
    let lib = lib.as_os_str();
    match existing.filter(|e| {
        !e.as_bytes()
            .iter()
            .all(|b| b.is_ascii_whitespace() || *b == b':')
    }) {
        None => lib.to_owned(),
        Some(e) => {
            let already = e
                .as_bytes()
                .split(|&b| b == b':' || b == b' ')
                .any(|part| part == lib.as_bytes());
            if already {
                e.to_owned()
            } else {
                let mut v = e.to_owned();
                v.push(":");
                v.push(lib);
                v
            }
        }
    }
}

/// Finds the program as `execvp` would, so that "not found" (127) and "not executable"
/// (126) are told apart before anything is created.
pub fn resolve_program(name: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Fail> {
    let shown = name.to_string_lossy();
    if name.is_empty() {
        return Err(Fail(EXIT_NOT_FOUND, "the program name is empty".into()));
    }
    if name.as_bytes().contains(&b'/') {
        let p = PathBuf::from(name);
        return match std::fs::metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Fail(EXIT_NOT_FOUND, format!("{shown}: no such file")))
            }
            Err(e) => Err(Fail(EXIT_CANNOT_RUN, format!("{shown}: {e}"))),
            Ok(m) if m.is_dir() => Err(Fail(EXIT_CANNOT_RUN, format!("{shown}: is a directory"))),
            Ok(_) if !executable(&p) => Err(Fail(
                EXIT_CANNOT_RUN,
                format!("{shown}: permission denied (not executable)"),
            )),
            Ok(_) => Ok(p),
        };
    }
    let path = path
        .map(|p| p.as_bytes().to_vec())
        .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
    let mut denied = None;
    for dir in path.split(|&b| b == b':') {
        // An empty PATH entry means the current directory (POSIX).
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let cand = dir.join(name);
        match std::fs::metadata(&cand) {
            Ok(m) if m.is_file() => {
                if executable(&cand) {
                    return Ok(cand);
                }
                denied.get_or_insert(cand);
            }
            _ => {}
        }
    }
    match denied {
        Some(p) => Err(Fail(
            EXIT_CANNOT_RUN,
            format!("{}: permission denied (not executable)", p.display()),
        )),
        None => Err(Fail(EXIT_NOT_FOUND, format!("{shown}: command not found"))),
    }
}

fn executable(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Refuses a program laysocks cannot cover: without the guard, one the layer cannot
/// enter (static, set-ID or with file capabilities, Go, or a script run by one of
/// those), whose connections would go direct, silently; with it, one built for another
/// machine or a secure exec (`exec_check.rs`). With `--allow-direct` it runs, after one
/// warning, and without the guard (DESIGN §3.9). Returns whether the guard runs.
pub fn check_enterable(
    exe: &Path,
    path: Option<&OsStr>,
    settings: &Settings,
) -> Result<bool, Fail> {
    let creds = crate::exec_check::Creds::current();
    let Some(why) = crate::exec_check::why_not(exe, path, &creds, settings.guard) else {
        return Ok(settings.guard);
    };
    if settings.allow_direct {
        if !settings.quiet {
            let how = if settings.guard {
                "started anyway, without the guard: --allow-direct"
            } else {
                "started anyway: --allow-direct"
            };
            say(format!("warning: {why} ({how})"));
        }
        return Ok(false);
    }
    let hint = if settings.guard {
        "run with --allow-direct to start it anyway, without the guard (its connections may then go direct)"
    } else {
        "run with --allow-direct to start it anyway"
    };
    Err(Fail(EXIT_CANNOT_RUN, format!("{why}; {hint}")))
}

/// The proxy's addresses, resolved here so the layer never calls the resolver.
pub fn resolve_proxy(url: &ProxyUrl) -> Result<Vec<SocketAddr>, Fail> {
    match &url.host {
        ProxyHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, url.port)]),
        ProxyHost::Name(n) => {
            let addrs: Vec<SocketAddr> = (n.as_str(), url.port)
                .to_socket_addrs()
                .map_err(|e| {
                    usage(format!(
                        "cannot resolve the proxy host {n}: {e}: check the proxy URL"
                    ))
                })?
                .collect();
            if addrs.is_empty() {
                return Err(usage(format!("the proxy host {n} has no addresses")));
            }
            Ok(addrs)
        }
    }
}

/// A file the launcher makes for the run — the credentials file or the shared name
/// table — removed on drop unless the companion has taken it over.
pub struct RunFile {
    pub path: PathBuf,
    pub handed_over: bool,
}

impl RunFile {
    /// The credentials file, holding `contents`.
    pub fn secret(contents: &str) -> Result<RunFile, String> {
        RunFile::create("secret", "the credentials file", contents.as_bytes())
    }

    /// The name table for remote DNS: empty (the layer sizes and maps it).
    pub fn names() -> Result<RunFile, String> {
        RunFile::create("names", "the name table file for remote DNS", b"")
    }

    /// Writes `contents` to a fresh `0600` file `laysocks-UID-RANDOM.EXT` in
    /// `$XDG_RUNTIME_DIR`, `/dev/shm` or `/tmp` (the first that works), created with
    /// `O_EXCL` under a random name so that nothing can be planted there first.
    fn create(ext: &str, what: &str, contents: &[u8]) -> Result<RunFile, String> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            if d.is_absolute() && d.is_dir() {
                dirs.push(d);
            }
        }
        dirs.push("/dev/shm".into());
        dirs.push("/tmp".into());
        let mut last = String::new();
        for d in dirs {
            let rand = random_hex().map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            let path = d.join(format!("laysocks-{uid}-{rand}.{ext}"));
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path);
            match opened {
                Ok(mut f) => {
                    let file = RunFile {
                        path,
                        handed_over: false,
                    };
                    // umask can only clear bits; make sure of 0600 anyway.
                    f.set_permissions(std::fs::Permissions::from_mode(0o600))
                        .and_then(|()| f.write_all(contents))
                        .map_err(|e| format!("cannot write {}: {e}", file.path.display()))?;
                    return Ok(file);
                }
                Err(e) => last = format!("{}: {e}", d.display()),
            }
        }
        Err(format!("cannot create {what} ({last})"))
    }
}

impl Drop for RunFile {
    fn drop(&mut self) {
        if !self.handed_over {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn random_hex() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn settings(scrub: &[&str]) -> Settings {
        Settings {
            proxy: None,
            connect_timeout_ms: 10_000,
            quiet: false,
            verbose: false,
            excludes: vec![],
            pipeline: false,
            dns: crate::config::DnsSettings::default(),
            scrub_env: scrub.iter().map(|s| s.to_string()).collect(),
            warnings: vec![],
            config_path: None,
            allow_direct: false,
            guard: false,
        }
    }

    #[test]
    fn env_scrubbing_and_preload() {
        let layer = LayerConfig {
            proxy_addrs: vec!["127.0.0.1:9".parse().unwrap()],
            proxy_label: "socks5://u@127.0.0.1:9".into(),
            secret_file: Some("/dev/shm/x".into()),
            ..LayerConfig::default()
        };
        let cur = vec![
            (
                OsString::from("LAYSOCKS_PROXY"),
                OsString::from("socks5://u:pw@h"),
            ),
            (OsString::from("MY_PW"), OsString::from("pw")),
            (
                OsString::from("LD_PRELOAD"),
                OsString::from("/usr/lib/libfoo.so"),
            ),
        ];
        let st = settings(&["LAYSOCKS_PROXY", "MY_PW"]);
        let changes = child_env(&st, &layer, Path::new("/c/liblaysocks.so"), cur.into_iter());
        let get = |k: &str| changes.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("LAYSOCKS_PROXY"), Some(None), "removed");
        assert_eq!(get("MY_PW"), Some(None), "removed");
        assert_eq!(
            get("LD_PRELOAD"),
            Some(Some(OsString::from("/usr/lib/libfoo.so:/c/liblaysocks.so")))
        );
        let layer_line = get(ENV_LAYER).unwrap().unwrap();
        assert!(!layer_line.to_string_lossy().contains("pw"));
        assert_eq!(
            LayerConfig::decode(&layer_line.to_string_lossy()).unwrap(),
            layer
        );
    }

    #[test]
    fn ld_preload_appends_once() {
        let lib = Path::new("/c/liblaysocks.so");
        assert_eq!(ld_preload(None, lib), "/c/liblaysocks.so");
        assert_eq!(ld_preload(Some(OsStr::new("")), lib), "/c/liblaysocks.so");
        assert_eq!(
            ld_preload(Some(OsStr::new("/a.so")), lib),
            "/a.so:/c/liblaysocks.so"
        );
        assert_eq!(
            ld_preload(Some(OsStr::new("/a.so /c/liblaysocks.so")), lib),
            "/a.so /c/liblaysocks.so"
        );
    }

    #[test]
    fn program_lookup() {
        let path = OsStr::new("/nonexistent:/bin:/usr/bin");
        let sh = resolve_program(OsStr::new("sh"), Some(path)).ok().unwrap();
        assert!(sh.ends_with("sh"));
        let Fail(code, msg) = resolve_program(OsStr::new("no-such-prog-xyz"), Some(path))
            .err()
            .unwrap();
        assert_eq!(code, EXIT_NOT_FOUND);
        assert!(msg.contains("command not found"), "{msg}");
        let Fail(code, _) = resolve_program(OsStr::new("/etc/passwd"), None)
            .err()
            .unwrap();
        assert_eq!(code, EXIT_CANNOT_RUN);
        let Fail(code, _) = resolve_program(OsStr::new("/etc"), None).err().unwrap();
        assert_eq!(code, EXIT_CANNOT_RUN);
        let Fail(code, _) = resolve_program(OsStr::new("./nope/x"), None).err().unwrap();
        assert_eq!(code, EXIT_NOT_FOUND);
    }

    #[test]
    fn run_files_are_private_and_removed() {
        let s = RunFile::secret("user=00\npass=00\n").unwrap();
        let n = RunFile::names().unwrap();
        for (f, ext, len) in [(&s, ".secret", 16), (&n, ".names", 0)] {
            let m = std::fs::metadata(&f.path).unwrap();
            assert_eq!(m.mode() & 0o777, 0o600);
            assert_eq!(m.uid(), unsafe { libc::getuid() });
            assert_eq!(m.len(), len);
            let name = f.path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("laysocks-") && name.ends_with(ext),
                "{name}"
            );
        }
        assert_eq!(s.path.parent(), n.path.parent(), "same directory");
        let (ps, pn) = (s.path.clone(), n.path.clone());
        drop(s);
        drop(n);
        assert!(!ps.exists() && !pn.exists());

        // Handed over: left for the companion.
        let mut n = RunFile::names().unwrap();
        n.handed_over = true;
        let p = n.path.clone();
        drop(n);
        assert!(p.exists());
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn refusal_and_allow_direct() {
        // Our own test binary is dynamically linked: it runs.
        let me = std::env::current_exe().unwrap();
        assert!(check_enterable(&me, None, &settings(&[])).is_ok());
        let bb = Path::new("/bin/busybox");
        assert!(
            bb.is_file(),
            "/bin/busybox is missing: install the Debian package busybox-static"
        );
        let Fail(code, msg) = check_enterable(bb, None, &settings(&[])).err().unwrap();
        assert_eq!(code, EXIT_CANNOT_RUN);
        assert!(
            msg.contains("statically linked")
                && msg.contains("would go direct")
                && msg.ends_with("run with --allow-direct to start it anyway"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
        let allowed = Settings {
            allow_direct: true,
            ..settings(&[])
        };
        assert!(check_enterable(bb, None, &allowed).is_ok());
    }
}
