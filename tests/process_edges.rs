//! Process edges (issue 7): fds duplicated and closed under the layer's feet, children
//! started with vfork and posix_spawn, programs that clear their environment, raw
//! `syscall(SYS_connect)`, and the programs the layer cannot enter at all (static,
//! set-ID, with file capabilities, scripts run by those), which the launcher refuses
//! rather than let their connections go direct unnoticed. Static programs and scripts
//! they run are refused only with `--no-guard` (the preload layer alone); with the guard,
//! the default, they run and are covered (tests/guard.rs), and a program that clears its
//! environment keeps the guard in its children.
//!
//! The fd cases run through a delaying relay in front of the proxy, so a non-blocking
//! handshake is really pending (≥ 4 × 25 ms) when the program duplicates or closes the
//! socket; the probe (`tests/probes/edges.c`) checks data through every number, the
//! peer on every number, and that nothing is left behind: no fd, no connection.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use laysocks_testkit::{compile_c, DelayRelay, Proxy, Rig, Run, TempDir, ECHO_PORT, TARGET_V4};

const EDGES: &str = include_str!("probes/edges.c");

fn edges() -> PathBuf {
    compile_c("edges", EDGES)
}

fn target() -> String {
    format!("{TARGET_V4}:{ECHO_PORT}")
}

fn run_edges(rig: &Rig, url: &str, opts: &[&str], args: &[&str]) -> Run {
    let p = edges();
    let host = TARGET_V4.to_string();
    let port = ECHO_PORT.to_string();
    let mut all: Vec<&str> = opts.to_vec();
    all.push("--");
    all.push(p.to_str().unwrap());
    all.extend(args);
    all.extend([host.as_str(), port.as_str()]);
    rig.run(&mut rig.laysocks(url, &all))
}

/// The relay's URL, with the proxy's credentials if it wants any (danted).
fn relay_url(relay: &DelayRelay, proxy: &Proxy) -> String {
    match &proxy.credentials {
        Some((u, p)) => relay.url_with(u, p),
        None => relay.url(),
    }
}

#[track_caller]
fn has(run: &Run, line: &str) {
    assert!(
        run.stdout_lines().contains(&line),
        "missing line `{line}`:\n{run}"
    );
}

#[track_caller]
fn clean_end(run: &Run) {
    run.assert_success();
    has(run, "fds-leaked=0 tcp-live=0");
    assert_eq!(run.stdout_lines().last().copied(), Some("alive"), "{run}");
    assert!(!run.stdout.contains("=BAD"), "{run}");
}

/// The duplicate was reported writable only after the proxy answered: two round trips
/// through the 25 ms relay (≥ 100 ms), less what passed before the wait began.
#[track_caller]
fn assert_waited(run: &Run) {
    let ms: u64 = run
        .stdout_lines()
        .iter()
        .find_map(|l| l.strip_prefix("dup-wait-ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no dup-wait-ms line:\n{run}"));
    assert!(
        ms >= 60,
        "the duplicate looked writable after {ms} ms, before the proxy's reply:\n{run}"
    );
}

const DUPS: [&str; 5] = ["dup", "dup2", "dup3", "fdupfd", "fdupfd-cloexec"];

#[test]
fn a_duplicate_of_a_pending_socket_behaves_like_the_original() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let t = target();
    for proxy in [rig.microsocks(), rig.danted()] {
        let relay = rig.delay_relay(&proxy, Duration::from_millis(25));
        let url = relay_url(&relay, &proxy);
        for kind in DUPS {
            let run = run_edges(&rig, &url, &[], &["dup-pending", kind]);
            clean_end(&run);
            has(&run, "pending dup-peer=ENOTCONN dup-read=EAGAIN");
            has(&run, "dup-ready=4");
            assert_waited(&run);
            has(&run, "orig-ready=4");
            has(&run, &format!("peer-orig={t} peer-dup={t}"));
            has(&run, "echo-dup=ok echo-orig=ok");
            has(&run, &format!("after-close-orig peer-dup={t} echo-dup=ok"));
            if kind == "dup3" || kind == "fdupfd-cloexec" {
                has(&run, "dup-cloexec=1");
            }

            // The original closed while the handshake runs: the duplicate carries on.
            let run = run_edges(&rig, &url, &[], &["dup-pending-close", kind]);
            clean_end(&run);
            has(&run, "dup-ready=4");
            assert_waited(&run);
            has(&run, &format!("peer-dup={t} echo-dup=ok"));
        }
    }
    rig.assert_no_leak();
}

#[test]
fn a_duplicate_of_a_pending_socket_waits_in_epoll_for_the_proxy() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(25));
    let run = run_edges(&rig, &relay.url(), &[], &["dup-pending-epoll"]);
    clean_end(&run);
    has(&run, "add=0");
    has(&run, "epoll n=1 events=4 data=1234");
    assert_waited(&run);
    has(&run, &format!("peer-dup={} echo-dup=ok", target()));
    has(&run, "again n=0");
    rig.assert_no_leak();
}

#[test]
fn a_duplicate_of_an_established_socket_behaves_like_the_original() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let t = target();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(10));
    for kind in DUPS {
        let run = run_edges(&rig, &relay.url(), &[], &["dup-established", kind]);
        clean_end(&run);
        has(&run, &format!("peer-orig={t} peer-dup={t}"));
        has(&run, "echo-dup=ok echo-orig=ok");
        has(&run, &format!("after-close-orig peer-dup={t} echo-dup=ok"));
    }
    rig.assert_no_leak();
}

#[test]
fn dup2_over_a_pending_socket_ends_it_and_the_number_starts_clean() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(25));
    let run = run_edges(&rig, &relay.url(), &[], &["dup2-onto-pending"]);
    clean_end(&run);
    has(&run, "dup2=ok");
    has(&run, "onto peer=ENOTCONN read=ENOTCONN");
    has(&run, &format!("onto connect=0 peer={} echo=ok", target()));
    rig.assert_no_leak();
}

#[test]
fn closing_a_pending_or_established_socket_every_way_leaves_nothing() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let t = target();
    for proxy in [rig.microsocks(), rig.danted()] {
        let relay = rig.delay_relay(&proxy, Duration::from_millis(25));
        let url = relay_url(&relay, &proxy);
        for mode in ["close-pending", "close-established"] {
            for kind in ["close", "close_range", "close_range-unshare", "closefrom"] {
                let run = run_edges(&rig, &url, &[], &[mode, kind]);
                clean_end(&run);
                has(&run, "closed fcntl=EBADF");
                has(&run, "tcp-after-close=0");
                // The number comes back for a new socket, which inherits nothing.
                has(&run, "reused=1");
                has(&run, "fresh peer=ENOTCONN read=ENOTCONN soerr=0");
                has(&run, &format!("fresh connect=0 peer={t} echo=ok"));
            }
            // CLOSE_RANGE_CLOEXEC closes nothing: the handshake goes on.
            let run = run_edges(&rig, &url, &[], &[mode, "close_range-cloexec"]);
            clean_end(&run);
            has(&run, "cloexec=1");
            has(&run, &format!("ready=4 peer={t} echo=ok"));
        }
    }
    rig.assert_no_leak();
}

#[test]
fn vfork_and_posix_spawn_children_connect_through_the_proxy() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(2));
    for how in ["vfork", "spawn"] {
        let run = run_edges(&rig, &relay.url(), &["-q"], &[how, "40"]);
        run.assert_success();
        has(&run, "children ok=40 bad=0 of=40");
        let threads = run
            .stdout_lines()
            .into_iter()
            .find(|l| l.starts_with("threads "))
            .unwrap_or_else(|| panic!("{run}"))
            .to_string();
        assert!(threads.ends_with(" bad=0"), "{how}: {threads}\n{run}");
        assert!(
            !threads.starts_with("threads ok=0 "),
            "{how}: the threads must have been inside the hooks:\n{run}"
        );
        let peers = run
            .stdout_lines()
            .iter()
            .filter(|l| **l == format!("child connect=0 peer={} echo=ok", target()))
            .count();
        assert_eq!(peers, 40, "{how}: every child reached the target:\n{run}");
        has(&run, "child layer=present preload=set");
    }
    rig.assert_no_leak();
}

#[test]
fn a_program_that_clears_its_environment_runs_its_child_without_the_layer() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let proxy = rig.microsocks();
    let t = target();
    let p = edges();
    let probe = p.to_str().unwrap();
    let host = TARGET_V4.to_string();
    let port = ECHO_PORT.to_string();

    // Cleared by the program (execve with its own envp) or by `env -i`: the child is
    // bare. With the preload layer alone (--no-guard) its connect goes direct and fails
    // in the rig (no route), and the layer, told to report every connection, says
    // nothing about it.
    let cleared: [Vec<&str>; 2] = [
        vec![probe, "exec-clearenv", &host, &port],
        vec!["env", "-i", probe, "child", &host, &port],
    ];
    for argv in &cleared {
        rig.reset_leak_baseline();
        let mut args = vec!["-v", "--no-guard", "--"];
        args.extend(argv.iter().copied());
        let run = rig.run(&mut rig.laysocks(&proxy.url(), &args));
        has(&run, "child layer=absent preload=unset");
        has(&run, "child connect=ENETUNREACH peer=ENOTCONN echo=none");
        assert!(
            !run.stderr.contains(&t) && !run.stderr.contains(&host),
            "the layer must not claim the bare child's connection:\n{run}"
        );
        assert!(
            rig.check_no_leak().is_err(),
            "the bare child's connect went direct, and the counters must see it:\n{run}"
        );
    }
    // With the guard (the default) the seccomp filter stays with the bare child, whose
    // raw connect then goes through the proxy.
    rig.reset_leak_baseline();
    for argv in &cleared {
        let mut args = vec!["-q", "--"];
        args.extend(argv.iter().copied());
        let run = rig.run(&mut rig.laysocks(&proxy.url(), &args));
        has(&run, "child layer=absent preload=unset");
        has(&run, &format!("child connect=0 peer={t} echo=ok"));
        if let Err(e) = rig.check_no_leak() {
            panic!("{e}\n{run}");
        }
    }

    // Programs that only change other variables keep the layer in the grandchild.
    let kept: [Vec<&str>; 3] = [
        vec![probe, "exec-keepenv", &host, &port],
        vec![
            "env",
            "EDGES_X=1",
            "HOME=/nonexistent",
            probe,
            "child",
            &host,
            &port,
        ],
        vec![
            "sh",
            "-c",
            "EDGES_Y=2; export EDGES_Y; exec \"$0\" child \"$1\" \"$2\"",
            probe,
            &host,
            &port,
        ],
    ];
    rig.reset_leak_baseline();
    for argv in kept {
        let mut args = vec!["-q", "--"];
        args.extend(argv.iter().copied());
        let run = rig.run(&mut rig.laysocks(&proxy.url(), &args));
        run.assert_success();
        has(&run, "child layer=present preload=set");
        has(&run, &format!("child connect=0 peer={t} echo=ok"));
    }
    rig.assert_no_leak();
}

#[test]
fn raw_syscall_connect_is_proxied() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let t = target();
    for proxy in [rig.microsocks(), rig.danted()] {
        let relay = rig.delay_relay(&proxy, Duration::from_millis(25));
        let url = relay_url(&relay, &proxy);
        let run = run_edges(&rig, &url, &[], &["syscall-block"]);
        run.assert_success();
        has(&run, "syscall connect=0");
        has(&run, &format!("peer={t} echo=ok"));
        let run = run_edges(&rig, &url, &[], &["syscall-nonblock"]);
        run.assert_success();
        has(&run, "syscall connect=EINPROGRESS");
        has(&run, "pending peer=ENOTCONN");
        has(&run, "ready=4 soerr=0");
        has(&run, &format!("peer={t} echo=ok"));
    }
    rig.assert_no_leak();
}

// ---- programs the layer cannot enter ----

const REFUSAL_END: &str = "run with --allow-direct to start it anyway";
/// The same with the guard on: --allow-direct then also means without the guard.
const REFUSAL_END_GUARDED: &str = "run with --allow-direct to start it anyway, without the guard (its connections may then go direct)";

fn busybox() -> PathBuf {
    let p = PathBuf::from("/bin/busybox");
    let out = std::process::Command::new("file")
        .arg("-L")
        .arg(&p)
        .output();
    let desc = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        p.is_file() && desc.contains("statically linked"),
        "a static /bin/busybox is needed: install the Debian package busybox-static ({desc})"
    );
    p
}

#[track_caller]
fn refused(run: &Run, what: &str) {
    assert_eq!(run.code(), Some(126), "refused like a failed exec:\n{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{run}");
    let l = lines[0];
    assert!(
        l.starts_with("laysocks: ")
            && l.contains(what)
            && l.contains("would go direct")
            && l.ends_with(REFUSAL_END),
        "{run}"
    );
    assert!(run.stdout.is_empty(), "the program never ran:\n{run}");
}

/// A set-ID or capability program refused with the guard on: under no_new_privs it would
/// run without its privileges, and the preload layer cannot enter it either.
#[track_caller]
fn refused_guarded(run: &Run, what: &str) {
    assert_eq!(run.code(), Some(126), "refused like a failed exec:\n{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{run}");
    let l = lines[0];
    assert!(
        l.starts_with("laysocks: ")
            && l.contains(what)
            && l.contains(
                "under the guard (which sets no_new_privs) it would run without its privileges"
            )
            && l.ends_with(REFUSAL_END_GUARDED),
        "{run}"
    );
    assert!(run.stdout.is_empty(), "the program never ran:\n{run}");
}

#[test]
fn a_static_program_is_refused_and_runs_direct_only_when_allowed() {
    let bb = busybox();
    let rig = Rig::new();
    let http = rig.http();
    let proxy = rig.microsocks();
    let url = http.url("hello.txt");
    // (busybox 1.35's wget crashes with -q or -T; plain options are enough here.)
    let wget = [bb.to_str().unwrap(), "wget", "-O", "-", &url];

    // The preload layer alone (--no-guard) cannot enter it; with the guard it is covered
    // (tests/guard.rs).
    rig.reset_leak_baseline();
    let mut args = vec!["--no-guard", "--"];
    args.extend(wget);
    let run = rig.run(&mut rig.laysocks(&proxy.url(), &args));
    refused(&run, "is statically linked");
    rig.assert_no_leak(); // no connection was attempted

    let mut args = vec!["--no-guard", "--allow-direct", "--"];
    args.extend(wget);
    let run = rig.run(&mut rig.laysocks(&proxy.url(), &args));
    run.assert_failure();
    assert!(
        run.stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("laysocks: warning: ")
                && l.contains("statically linked")
                && l.ends_with("(started anyway: --allow-direct)")),
        "one warning line first:\n{run}"
    );
    assert!(
        rig.check_no_leak().is_err(),
        "busybox's connect went direct; the rig must have seen it (this is why it is refused):\n{run}"
    );

    // A config file can say the same.
    let dir = TempDir::new("edges-cfg");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "allow_direct = true\n").unwrap();
    let cfg_s = cfg.to_str().unwrap().to_string();
    let run = rig.run(&mut rig.laysocks(
        &proxy.url(),
        [
            "--no-guard",
            "-q",
            "-c",
            &cfg_s,
            "--",
            bb.to_str().unwrap(),
            "true",
        ],
    ));
    run.assert_success();
    assert!(run.stderr.is_empty(), "-q: no warning:\n{run}");
}

fn private_copy(dir: &TempDir, name: &str, from: &Path) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(from, &p).unwrap();
    p
}

fn chown(p: &Path, uid: u32) {
    let st = std::process::Command::new("chown")
        .arg(uid.to_string())
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "chown {}", p.display());
}

#[test]
fn setuid_setcap_and_statically_interpreted_scripts_are_refused() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let proxy = rig.microsocks();
    let dir = TempDir::new("edges-refuse");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = edges();
    let host = TARGET_V4.to_string();
    let port = ECHO_PORT.to_string();

    // set-user-ID, owned by another user: the loader would drop LD_PRELOAD.
    let suid = private_copy(&dir, "edges-suid", &probe);
    chown(&suid, 65534);
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let run = rig.run(&mut rig.laysocks(
        &proxy.url(),
        ["--", suid.to_str().unwrap(), "child", &host, &port],
    ));
    refused_guarded(&run, "is set-user-ID (owner uid 65534)");
    let run = rig.run(&mut rig.laysocks(
        &proxy.url(),
        [
            "--no-guard",
            "--",
            suid.to_str().unwrap(),
            "child",
            &host,
            &port,
        ],
    ));
    refused(&run, "is set-user-ID (owner uid 65534)");

    // File capabilities, for a user who is not root.
    let caps = private_copy(&dir, "edges-caps", &probe);
    std::fs::set_permissions(&caps, std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = std::process::Command::new(laysocks_testkit::require("setcap", "libcap2-bin"))
        .arg("cap_net_raw+ep")
        .arg(&caps)
        .status()
        .unwrap();
    assert!(st.success(), "setcap");
    let bin = laysocks_testkit::laysocks_bin();
    for guard in [true, false] {
        let url = proxy.url();
        let mut args = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin.to_str().unwrap(),
            "-x",
            &url,
        ];
        if !guard {
            args.push("--no-guard");
        }
        args.extend(["--", caps.to_str().unwrap(), "child", &host, &port]);
        let mut cmd = rig.client_cmd(laysocks_testkit::require("setpriv", "util-linux"), &args);
        cmd.env("HOME", "/nonexistent").env_remove("XDG_CACHE_HOME");
        let run = rig.run(&mut cmd);
        if guard {
            refused_guarded(&run, "has file capabilities");
        } else {
            refused(&run, "has file capabilities");
        }
    }

    // A script whose interpreter is static (directly, and through env).
    let bb = busybox();
    let script = dir.join("s1");
    std::fs::write(&script, format!("#!{} sh\necho ran\n", bb.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run =
        rig.run(&mut rig.laysocks(&proxy.url(), ["--no-guard", "--", script.to_str().unwrap()]));
    refused(
        &run,
        "is a script run by /bin/busybox, which is statically linked",
    );
    // With the guard the same script runs (busybox's sh is covered).
    let run = rig.run(&mut rig.laysocks(&proxy.url(), ["--", script.to_str().unwrap()]));
    run.assert_success();
    assert_eq!(run.stdout, "ran\n", "{run}");
    let bbdir = dir.join("bin");
    std::fs::create_dir(&bbdir).unwrap();
    std::os::unix::fs::symlink(&bb, bbdir.join("bbsh")).unwrap();
    let script = dir.join("s2");
    std::fs::write(&script, "#!/usr/bin/env bbsh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = rig.laysocks(&proxy.url(), ["--no-guard", "--", script.to_str().unwrap()]);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", bbdir.display()));
    let run = rig.run(&mut cmd);
    refused(&run, "(via /usr/bin/env), which is statically linked");

    // An ordinary dynamic program and an ordinary script are not refused.
    let run = rig.run(&mut rig.laysocks(
        &proxy.url(),
        ["--", probe.to_str().unwrap(), "child", &host, &port],
    ));
    run.assert_success();
    assert!(run.stderr.is_empty(), "{run}");
    has(&run, &format!("child connect=0 peer={} echo=ok", target()));
    let script = dir.join("s3");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec {} child \"$@\"\n", probe.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run =
        rig.run(&mut rig.laysocks(&proxy.url(), ["--", script.to_str().unwrap(), &host, &port]));
    run.assert_success();
    has(&run, &format!("child connect=0 peer={} echo=ok", target()));
    rig.assert_no_leak();
}
