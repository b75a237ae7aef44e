//! Running programs: what reaches the program's environment, the credentials file's
//! and the name table's life, the DNS settings, the program keeping its pid and exit status, and the built-in server.
//! The proxy addresses are loopback; nothing here connects anywhere else.

mod common;

use common::*;
use laysocks_config::LayerConfig;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const SECRET: &str = "SECRETPW";

fn layer_of(env_out: &str) -> LayerConfig {
    let line = env_out
        .lines()
        .find_map(|l| l.strip_prefix("LAYSOCKS_LAYER="))
        .unwrap_or_else(|| panic!("no LAYSOCKS_LAYER in the child's environment:\n{env_out}"));
    LayerConfig::decode(line).unwrap()
}

#[test]
fn child_env_has_no_password() {
    let s = Scratch::new("env");
    let mut c = laysocks(&s.0);
    c.args([
        "-x",
        &format!("socks5://u:{SECRET}@127.0.0.1:9"),
        "--",
        "env",
    ]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    assert!(
        !out.contains(SECRET),
        "password in the child's environment:\n{out}"
    );
    assert!(!err.contains(SECRET), "password on stderr: {err}");
    let layer = layer_of(&out);
    assert_eq!(layer.proxy_addrs, vec!["127.0.0.1:9".parse().unwrap()]);
    assert_eq!(layer.proxy_label, "socks5://u@127.0.0.1:9");
    assert!(layer.secret_file.is_some());
    assert!(
        layer.remote_dns,
        "remote DNS is the default, for socks5:// too"
    );
    let preload = out
        .lines()
        .find_map(|l| l.strip_prefix("LD_PRELOAD="))
        .expect("LD_PRELOAD set");
    assert!(
        preload.contains("liblaysocks") && preload.ends_with(".so"),
        "{preload}"
    );
    assert!(std::path::Path::new(preload).is_file(), "{preload}");

    // The same password through LAYSOCKS_PROXY: used, and removed from the child.
    let mut c = laysocks(&s.0);
    c.env(
        "LAYSOCKS_PROXY",
        format!("socks5h://u:{SECRET}@127.0.0.1:9"),
    )
    .args(["--", "env"]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    assert!(!out.contains(SECRET), "{out}");
    assert!(!out.contains("LAYSOCKS_PROXY="), "{out}");
    let layer = layer_of(&out);
    assert!(layer.remote_dns, "socks5h means remote DNS");
    assert!(layer.secret_file.is_some());

    // Through password_env in the config file: that variable is removed too.
    let cfg = s.file(
        "c.toml",
        "proxy = \"socks5://127.0.0.1:9\"\nusername = \"u\"\npassword_env = \"MY_PROXY_PW\"\n",
    );
    let mut c = laysocks(&s.0);
    c.arg("-c")
        .arg(&cfg)
        .env("MY_PROXY_PW", SECRET)
        .args(["--", "env"]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    assert!(!out.contains(SECRET), "{out}");
    assert!(!out.contains("MY_PROXY_PW"), "{out}");
    assert!(layer_of(&out).secret_file.is_some());
}

#[test]
fn options_reach_the_layer() {
    let s = Scratch::new("opts");
    let mut c = laysocks(&s.0);
    c.args([
        "-x",
        "socks5://127.0.0.1:9",
        "-v",
        "--exclude",
        "198.51.100.0/24:80",
        "--exclude",
        "[2001:db8::/32]:443",
        "--connect-timeout",
        "2.5",
        "--",
        "env",
    ]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    let layer = layer_of(&out);
    assert_eq!(layer.connect_timeout_ms, 2500);
    assert!(layer.verbose && !layer.quiet);
    assert_eq!(layer.excludes.len(), 2);
    assert!(layer.is_direct("198.51.100.7:80".parse().unwrap()));
    assert!(!layer.is_direct("198.51.100.7:81".parse().unwrap()));
    assert!(layer.secret_file.is_none(), "no credentials, no file");
}

#[test]
fn secret_file_is_private_and_removed_after_exit() {
    let s = Scratch::new("secret");
    let mut c = laysocks(&s.0);
    // The program prints its environment, then waits for a line on stdin.
    c.args([
        "-x",
        &format!("socks5://u:{SECRET}@127.0.0.1:9"),
        "--",
        "sh",
        "-c",
        "env; echo END; read x",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut env_out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref().take(1000) {
        let l = l.unwrap();
        if l == "END" {
            break;
        }
        env_out.push_str(&l);
        env_out.push('\n');
    }
    let layer = layer_of(&env_out);
    let path = std::path::PathBuf::from(layer.secret_file.clone().unwrap());
    let m = std::fs::metadata(&path).expect("secret file exists while the program runs");
    assert_eq!(m.mode() & 0o777, 0o600, "{path:?}");
    // SAFETY: getuid cannot fail.
    assert_eq!(m.uid(), unsafe { libc::getuid() });
    let (user, pass) = laysocks_config::secret::decode(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        (user.as_slice(), pass.as_slice()),
        (b"u".as_slice(), SECRET.as_bytes())
    );

    // The companion that will remove it: not our program's child, and its command line
    // and environment carry no password.
    let pid = child.id();
    let companion = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains("__companion") && cmd.contains(&format!("--pid {pid} ")))
                .then(|| (e.path(), cmd))
        })
        .next();
    let (cdir, cmd) = companion.expect("a companion process watches the program");
    assert!(!cmd.contains(SECRET), "{cmd}");
    let environ = std::fs::read(cdir.join("environ")).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains(SECRET));
    let status = std::fs::read_to_string(cdir.join("status")).unwrap();
    let ppid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(ppid, pid, "the companion must not be the program's child");

    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let st = wait_deadline(&mut child, T);
    assert!(st.success());
    assert!(
        eventually(Duration::from_secs(5), || !path.exists()),
        "secret file {path:?} still there after the program exited"
    );
    assert!(
        eventually(Duration::from_secs(5), || !cdir.exists()),
        "companion still running"
    );
}

#[test]
fn secret_file_removed_when_program_is_killed() {
    let s = Scratch::new("killed");
    let mut c = laysocks(&s.0);
    c.args([
        "-x",
        "socks5://u:pw@127.0.0.1:9",
        "--",
        "sh",
        "-c",
        "echo \"$LAYSOCKS_LAYER\"; exec sleep 30",
    ]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let layer = LayerConfig::decode(line.trim()).unwrap();
    let path = std::path::PathBuf::from(layer.secret_file.unwrap());
    assert!(path.exists());
    child.kill().unwrap(); // SIGKILL to our own child, by pid
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(
        eventually(Duration::from_secs(5), || !path.exists()),
        "secret file {path:?} survived SIGKILL of the program"
    );
}

#[test]
fn program_keeps_pid_status_and_signals() {
    let s = Scratch::new("exec");
    // --no-guard: laysocks execs the program, which keeps its pid. With the guard
    // (the default) laysocks stays as the supervisor and the program is its child.
    for (guard, shows) in [(false, "$$"), (true, "$PPID")] {
        let mut c = laysocks(&s.0);
        if !guard {
            c.arg("--no-guard");
        }
        c.args([
            "-q",
            "-x",
            "socks5://127.0.0.1:9",
            "--",
            "sh",
            "-c",
            &format!("echo {shows}; exit 7"),
        ]);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(7), "guard {guard}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            pid.to_string(),
            "guard {guard}"
        );
        assert!(
            out.stderr.is_empty(),
            "-q: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut c = laysocks(&s.0);
    c.args([
        "-x",
        "socks5://u:p@127.0.0.1:9",
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    let (st, _, _) = run(c, T);
    assert_eq!(st.signal(), Some(libc::SIGTERM));

    // A program named like a subcommand runs after `--`.
    let bin = s.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let serve = bin.join("serve");
    std::fs::write(&serve, "#!/bin/sh\necho i-am-serve\n").unwrap();
    std::fs::set_permissions(&serve, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut c = laysocks(&s.0);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env("PATH", path)
        .args(["-x", "socks5://127.0.0.1:9", "--", "serve"]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    assert_eq!(out.trim(), "i-am-serve");
}

#[test]
fn program_sees_no_extra_child() {
    need("python3", "python3");
    let s = Scratch::new("nochild");
    let mut c = laysocks(&s.0);
    c.args([
        "-q",
        "-x",
        "socks5://u:p@127.0.0.1:9",
        "--",
        "python3",
        "-c",
        "import os\ntry:\n    os.waitpid(-1, 0); print('child')\nexcept ChildProcessError:\n    print('none')",
    ]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    assert_eq!(out.trim(), "none");
}

#[test]
fn builtin_server_without_proxy() {
    need("curl", "curl");
    let s = Scratch::new("builtin");
    let http = http_server("through the built-in server");
    let mut c = laysocks(&s.0);
    // curl talks SOCKS5 itself to the proxy the launcher set up (loopback goes direct
    // under the layer, so this reaches the built-in server unchanged).
    let script = format!(
        "p=$(printf '%s' \"$LAYSOCKS_LAYER\" | sed 's/.*proxy=\\([^;]*\\).*/\\1/'); echo \"$p\"; \
         curl -s --max-time 10 --socks5 \"$p\" http://127.0.0.1:{}/",
        http.port
    );
    c.args(["--", "sh", "-c", &script]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    let mut lines = out.lines();
    let proxy = lines.next().unwrap().to_string();
    assert_eq!(
        lines.next(),
        Some("through the built-in server"),
        "{out}\n{err}"
    );
    let port: u16 = proxy.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
    let notice = format!(
        "laysocks: no proxy configured; using the built-in SOCKS5 server on 127.0.0.1:{port} (connections leave from this machine)"
    );
    assert!(err.lines().any(|l| l == notice), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{} connected", http.port)),
        "the built-in server logs the connection: {err}"
    );
    assert!(
        eventually(Duration::from_secs(5), || !listening(port)),
        "the built-in server outlived the program"
    );

    // -q: no notice.
    let mut c = laysocks(&s.0);
    c.args(["-q", "--", "true"]);
    let (st, _, err) = run(c, T);
    assert!(st.success());
    assert!(err.is_empty(), "{err}");
}

/// The signal mask and ignored signals the caller set are the program's, as if it had
/// been started directly (Rust's `Command` would reset both).
#[test]
fn program_inherits_signal_mask_and_ignored_sigpipe() {
    use std::os::unix::process::CommandExt;
    fn sig_lines(mut c: std::process::Command) -> String {
        // SAFETY: sigprocmask/signal are async-signal-safe; the closure allocates nothing.
        unsafe {
            c.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                Ok(())
            });
        }
        let (st, out, err) = run(c, T);
        assert!(st.success(), "{err}");
        out.lines()
            .filter(|l| l.starts_with("SigBlk:") || l.starts_with("SigIgn:"))
            .collect::<Vec<_>>()
            .join("\n")
    }
    let s = Scratch::new("signals");
    let mut direct = std::process::Command::new("cat");
    direct.arg("/proc/self/status");
    let want = sig_lines(direct);
    assert!(
        want.contains("SigBlk:\t0000000000000200"),
        "SIGUSR1 blocked: {want}"
    );
    let mut c = laysocks(&s.0);
    c.args([
        "-q",
        "-x",
        "socks5://127.0.0.1:9",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(sig_lines(c), want);
    let mut c = laysocks(&s.0);
    c.args([
        "-q",
        "-x",
        "socks5://u:p@127.0.0.1:9",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(sig_lines(c), want, "with a companion too");
}

/// Runs `laysocks ARGS -- env` and returns the layer line the program got.
fn layer_with(s: &Scratch, args: &[&str]) -> LayerConfig {
    let mut c = laysocks(&s.0);
    c.args(args).args(["--", "env"]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{args:?}: {err}");
    layer_of(&out)
}

#[test]
fn dns_settings_reach_the_layer() {
    let s = Scratch::new("dns");
    // Remote by default, with socks5://, socks5h:// and the built-in server.
    for args in [
        &["-x", "socks5://127.0.0.1:9"][..],
        &["-x", "socks5h://127.0.0.1:9"][..],
        &["-q"][..],
    ] {
        let layer = layer_with(&s, args);
        assert!(layer.remote_dns, "{args:?}");
        assert!(
            layer.names_file.is_some(),
            "{args:?}: remote DNS has a name table"
        );
        assert_eq!(
            layer.names_capacity,
            laysocks_config::DEFAULT_NAMES_CAPACITY
        );
        assert_eq!(layer.pool4.to_string(), laysocks_config::DEFAULT_POOL4);
        assert_eq!(layer.pool6.to_string(), laysocks_config::DEFAULT_POOL6);
        assert_eq!(layer.dns_server, None);
        assert!(layer.direct_names.is_empty());
    }

    // --dns local: no remote DNS, no name table; --dns beats the file's dns.
    let layer = layer_with(&s, &["-x", "socks5://127.0.0.1:9", "--dns", "local"]);
    assert!(!layer.remote_dns);
    assert_eq!(layer.names_file, None);
    let cfg = s.file("local.toml", "dns = \"local\"\n");
    let c = cfg.to_str().unwrap();
    let layer = layer_with(&s, &["-c", c, "-x", "socks5://127.0.0.1:9"]);
    assert!(!layer.remote_dns);
    let layer = layer_with(
        &s,
        &["-c", c, "-x", "socks5://127.0.0.1:9", "--dns", "remote"],
    );
    assert!(layer.remote_dns && layer.names_file.is_some());

    // Everything else round-trips, normalised; --direct-name adds to the file's list.
    let cfg = s.file(
        "dns.toml",
        "proxy = \"socks5://127.0.0.1:9\"\n\
         dns_server = \"[2001:db8::53]\"\n\
         direct_names = [\"internal\", \".Corp.Example\"]\n\
         dns_pool4 = \"10.99.0.0/16\"\n\
         dns_pool6 = \"fd00:1:2:3::/64\"\n\
         dns_names = 1000\n",
    );
    let c = cfg.to_str().unwrap();
    let layer = layer_with(&s, &["-c", c, "--direct-name", ".lan"]);
    assert!(layer.remote_dns);
    assert_eq!(layer.dns_server.as_deref(), Some("[2001:db8::53]:53"));
    assert_eq!(layer.direct_names, ["internal", "corp.example", "lan"]);
    assert_eq!(layer.pool4.to_string(), "10.99.0.0/16");
    assert_eq!(layer.pool6.to_string(), "fd00:1:2:3::/64");
    assert_eq!(layer.names_capacity, 1000);
    let layer = layer_with(&s, &["-c", c, "--dns-server", "DNS.Example:5353"]);
    assert_eq!(layer.dns_server.as_deref(), Some("dns.example:5353"));
}

/// `laysocks ARGS -- true` fails with one line on stderr and exit status 125.
fn usage_error(s: &Scratch, args: &[&str]) -> String {
    let mut c = laysocks(&s.0);
    c.args(args).args(["--", "true"]);
    let (st, out, err) = run(c, T);
    assert_eq!(st.code(), Some(125), "{args:?}: {err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    err.trim_end().to_string()
}

#[test]
fn socks5h_with_local_dns_is_a_usage_error() {
    let s = Scratch::new("dnsconflict");
    let err = usage_error(&s, &["-x", "socks5h://127.0.0.1:9", "--dns", "local"]);
    assert_eq!(
        err,
        "laysocks: --dns local: the proxy URL socks5h://127.0.0.1:9 asks the proxy to resolve names but dns is \"local\"; use socks5:// or drop the dns setting"
    );
    let cfg = s.file("c.toml", "# mine\ndns = \"local\"\n");
    let c = cfg.to_str().unwrap();
    let err = usage_error(&s, &["-c", c, "-x", "socks5h://u:pw@127.0.0.1:9"]);
    assert_eq!(
        err,
        format!(
            "laysocks: {c}:2: the proxy URL socks5h://u@127.0.0.1:9 asks the proxy to resolve names but dns is \"local\"; use socks5:// or drop the dns setting"
        )
    );
    // The other DNS settings' mistakes: one line each too.
    let err = usage_error(&s, &["--dns", "nearby"]);
    assert!(err.contains("nearby"), "{err}");
    let err = usage_error(&s, &["--dns-server", "dns example"]);
    assert!(err.starts_with("laysocks: --dns-server: "), "{err}");
    let err = usage_error(&s, &["--direct-name", ""]);
    assert!(err.starts_with("laysocks: --direct-name: "), "{err}");
    let cfg = s.file("p.toml", "dns_pool4 = \"224.0.0.0/8\"\n");
    let err = usage_error(&s, &["-c", cfg.to_str().unwrap()]);
    assert!(err.contains("p.toml:1: dns_pool4: "), "{err}");
}

#[test]
fn names_file_is_private_and_removed_after_exit() {
    let s = Scratch::new("names");
    let mut c = laysocks(&s.0);
    c.args([
        "-x",
        "socks5://127.0.0.1:9",
        "--",
        "sh",
        "-c",
        "echo \"$LAYSOCKS_LAYER\"; read x",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let layer = LayerConfig::decode(line.trim()).unwrap();
    assert!(layer.remote_dns);
    assert_eq!(layer.secret_file, None);
    let path = std::path::PathBuf::from(layer.names_file.expect("a name table"));
    let m = std::fs::symlink_metadata(&path).expect("the name table exists while the program runs");
    assert!(m.file_type().is_file(), "{path:?}");
    assert_eq!(m.mode() & 0o777, 0o600, "{path:?}");
    // SAFETY: getuid cannot fail.
    assert_eq!(m.uid(), unsafe { libc::getuid() });
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("laysocks-") && name.ends_with(".names"),
        "{name}"
    );

    // Without credentials, the companion is there for the name table alone.
    let pid = child.id();
    let companion = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains("__companion") && cmd.contains(&format!("--pid {pid} "))).then_some(cmd)
        })
        .expect("a companion process watches the program");
    assert!(
        companion.contains(&format!("--remove {}", path.display())),
        "{companion}"
    );

    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let st = wait_deadline(&mut child, T);
    assert!(st.success());
    assert!(
        eventually(Duration::from_secs(5), || !path.exists()),
        "name table {path:?} still there after the program exited"
    );

    // With credentials too: one companion removes both.
    let mut c = laysocks(&s.0);
    c.args([
        "-x",
        "socks5://u:pw@127.0.0.1:9",
        "--",
        "sh",
        "-c",
        "echo \"$LAYSOCKS_LAYER\"",
    ]);
    let (st, out, err) = run(c, T);
    assert!(st.success(), "{err}");
    let layer = LayerConfig::decode(out.trim()).unwrap();
    let names = std::path::PathBuf::from(layer.names_file.unwrap());
    let secret = std::path::PathBuf::from(layer.secret_file.unwrap());
    assert_eq!(
        names.parent(),
        secret.parent(),
        "both in the same directory"
    );
    assert!(
        eventually(Duration::from_secs(5), || !names.exists()
            && !secret.exists()),
        "{names:?} or {secret:?} survived the program"
    );
}

#[test]
fn nothing_left_behind_when_exec_fails() {
    let s = Scratch::new("execfail");
    // A script whose #! interpreter is missing: found and executable, so the launcher
    // gets as far as exec and creates its files first.
    let script = s.file("broken", "#!/nonexistent/interpreter\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = s.0.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut c = laysocks(&s.0);
    c.env("XDG_RUNTIME_DIR", &dir)
        .args(["-q", "-x", "socks5://u:pw@127.0.0.1:9", "--"])
        .arg(&script);
    let (st, _, err) = run(c, T);
    assert_eq!(st.code(), Some(126), "{err}");
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .is_none()),
        "left behind: {:?}",
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
    );
}
