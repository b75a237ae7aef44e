//! The seccomp guard (issue 8): programs that bypass libc — Go (static and dynamic),
//! static binaries, raw `syscall` instructions, programs with their own DNS client — go
//! through the proxy too, and nothing leaves the client namespace any other way.
//!
//! Every test runs real programs in the rig's client namespace, whose only route is to
//! the proxy host, through real SOCKS5 servers (microsocks, danted), and checks three
//! things: the content (an exact body, an echoed line, the peer address), that the
//! proxy carried it (the target's servers see the proxy host as their client, or the
//! fault server saw the request), and that nothing went around it (the kernel's no-route
//! counters and the DNS canary, [`Rig::check_no_leak`]).
//!
//! The programs: `tests/apps/go/guardclient` (one Go program with modes, built static
//! with `CGO_ENABLED=0` and dynamic with cgo, see [`laysocks_testkit::golang`]),
//! `tests/probes/guard.c` (built `-static`, and dynamic for its inline-asm `syscall`
//! modes), busybox-static's `wget`, and ordinary libc programs (curl, python3, dig, node,
//! sh) that run under both layers at once, the default.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use laysocks_testkit::check::{get, has_line, layer_lines, no_leak, under};
use laysocks_testkit::golang::{fnv1a64_hex, go_build};
use laysocks_testkit::util::{kill_group_id, run_bounded};
use laysocks_testkit::{
    big_body, compile_c, compile_c_with, python3, require, Fault, Proxy, Rig, Run, BIG_LEN,
    ECHO_PORT, HELLO_BODY, PROXY_OUT_V4, PROXY_OUT_V6, REMOTE6_NAME, REMOTE_NAME, TARGET_NAME,
    TARGET_V4, TARGET_V6,
};

const GUARD_C: &str = include_str!("probes/guard.c");

/// `tests/probes/guard.c` linked statically: no loader, no LD_PRELOAD, only the guard.
fn probe_static() -> PathBuf {
    compile_c_with("guard_static", GUARD_C, &["-static"])
}

/// The same probe, dynamic: the preload layer is loaded, but its `asm` modes bypass it.
fn probe_dynamic() -> PathBuf {
    compile_c("guard_dynamic", GUARD_C)
}

/// The Go client, static (`CGO_ENABLED=0`) or dynamic (cgo, glibc's loader).
fn go_client(static_link: bool) -> PathBuf {
    go_build("guardclient", static_link)
}

fn linkage(static_link: bool) -> &'static str {
    if static_link {
        "static"
    } else {
        "dynamic"
    }
}

/// microsocks and danted (with its credentials in the URL).
fn both(rig: &Rig) -> [Proxy; 2] {
    [rig.microsocks(), rig.danted()]
}

fn echo_v4() -> String {
    format!("{TARGET_V4}:{ECHO_PORT}")
}

fn echo_v6() -> String {
    format!("[{TARGET_V6}]:{ECHO_PORT}")
}

/// Runs `laysocks -x URL OPTS -- PROGRAM ARGS` for at most `secs` seconds.
fn under_for(rig: &Rig, secs: u64, url: &str, opts: &[&str], program: &Path, args: &[&str]) -> Run {
    let mut all: Vec<&str> = opts.to_vec();
    all.push("--");
    all.push(program.to_str().unwrap());
    all.extend_from_slice(args);
    run_bounded(
        &mut rig.laysocks(url, &all),
        None,
        Duration::from_secs(secs),
    )
}

/// The static busybox (package busybox-static).
fn busybox() -> PathBuf {
    let p = PathBuf::from("/bin/busybox");
    assert!(
        p.is_file() && !laysocks_testkit::golang::has_interp(&p),
        "a static /bin/busybox is needed: install the Debian package busybox-static"
    );
    p
}

/// The clients the target's HTTP server (python3 http.server) logged, one per request
/// line, in order: its log has `CLIENT - - [date] "GET /path HTTP/1.1" 200 -` per request.
fn http_clients(rig: &Rig) -> Vec<(String, String)> {
    let log = std::fs::read_to_string(rig.dir().join("http.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| {
            let (client, rest) = l.split_once(" - - [")?;
            let req = rest.split_once("] \"")?.1;
            let path = req.split(' ').nth(1)?;
            Some((client.to_string(), path.to_string()))
        })
        .collect()
}

/// The proxy host's addresses as the target's dual-stack servers print them.
fn is_proxy_host(client: &str) -> bool {
    let c = client.strip_prefix("::ffff:").unwrap_or(client);
    c == PROXY_OUT_V4.to_string() || c == PROXY_OUT_V6.to_string()
}

/// Panics unless the HTTP server logged `want` requests for `path` since `before` (an
/// index into [`http_clients`]), all from the proxy host.
#[track_caller]
fn assert_http_via_proxy(
    rig: &Rig,
    before: usize,
    path: &str,
    want: usize,
    ctx: &dyn std::fmt::Display,
) {
    // The server logs after answering; give the last lines a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen;
    loop {
        let all = http_clients(rig);
        seen = all[before.min(all.len())..].to_vec();
        if seen.iter().filter(|(_, p)| p == path).count() >= want || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let for_path: Vec<&(String, String)> = seen.iter().filter(|(_, p)| p == path).collect();
    assert_eq!(
        for_path.len(),
        want,
        "the HTTP server should have served {path} {want} times since the start of this run:\n{ctx}"
    );
    let strangers: Vec<&str> = for_path
        .iter()
        .map(|(c, _)| c.as_str())
        .filter(|c| !is_proxy_host(c))
        .collect();
    assert!(
        strangers.is_empty(),
        "every request must come from the proxy host, some came from {strangers:?}:\n{ctx}"
    );
}

/// In 198.18.0.0/15 or fd6c:6179:736f:636b::/64, the layer's placeholder pools.
fn is_placeholder(ip: &str) -> bool {
    if let Ok(v4) = ip.parse::<std::net::Ipv4Addr>() {
        return u32::from(v4) & 0xfffe_0000 == u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
    }
    if let Ok(v6) = ip.parse::<std::net::Ipv6Addr>() {
        return v6.segments()[..4] == [0xfd6c, 0x6179, 0x736f, 0x636b];
    }
    false
}

/// The address part of `ip:port` / `[ip]:port`.
fn host_of(addr: &str) -> &str {
    let h = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    h.trim_start_matches('[').trim_end_matches(']')
}

/// The refusal of a program the preload layer alone cannot enter (exit 126, one line).
#[track_caller]
fn refused(run: &Run, what: &str) {
    assert_eq!(run.code(), Some(126), "refused like a failed exec:\n{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{run}");
    assert!(
        lines[0].starts_with("laysocks: ")
            && lines[0].contains(what)
            && lines[0].contains("would go direct"),
        "{run}"
    );
    assert!(run.stdout.is_empty(), "the program never ran:\n{run}");
}

// ---------------------------------------------------------------------------------------
// Static programs, Go, raw syscalls
// ---------------------------------------------------------------------------------------

#[test]
fn busybox_static_wget_goes_through_the_proxy() {
    let bb = busybox();
    let rig = Rig::new();
    let http = rig.http();
    let out = rig.dir().join("big.out");
    for proxy in both(&rig) {
        let before = http_clients(&rig).len();
        // (busybox 1.35's wget crashes with -q or -T; plain options are enough here.)
        let run = under(
            &rig,
            &proxy.url(),
            &[],
            bb.to_str().unwrap(),
            &["wget", "-O", "-", &http.url("hello.txt")],
        );
        no_leak(&rig, &run);
        run.assert_success();
        assert_eq!(run.stdout, HELLO_BODY, "{:?}:\n{run}", proxy.kind);
        assert_http_via_proxy(&rig, before, "/hello.txt", 1, &run);

        // 1 MiB, byte for byte, by a name from the client's /etc/hosts.
        let _ = std::fs::remove_file(&out);
        let url = http.url_named(TARGET_NAME, "big.bin");
        let run = under(
            &rig,
            &proxy.url(),
            &[],
            bb.to_str().unwrap(),
            &["wget", "-O", out.to_str().unwrap(), &url],
        );
        no_leak(&rig, &run);
        run.assert_success();
        let got = std::fs::read(&out).unwrap_or_default();
        assert!(
            got.len() == BIG_LEN && got == big_body(),
            "big.bin through busybox wget: {} bytes, equal: {}:\n{run}",
            got.len(),
            got == big_body()
        );
    }
    rig.assert_no_leak();
}

/// 1000 GETs from 50 goroutines, a fresh connection each, every body checked.
fn go_http_many(static_link: bool) {
    let gc = go_client(static_link);
    let rig = Rig::new();
    let http = rig.http();
    let hello_sum = fnv1a64_hex(HELLO_BODY.as_bytes());
    let big_sum = fnv1a64_hex(&big_body());
    let hello_len = HELLO_BODY.len().to_string();
    let big_len = BIG_LEN.to_string();
    for proxy in both(&rig) {
        let ctx = format!("Go {} via {:?}", linkage(static_link), proxy.kind);
        let before = http_clients(&rig).len();
        let run = under_for(
            &rig,
            240,
            &proxy.url(),
            &["-q"],
            &gc,
            &[
                "http",
                "1000",
                "50",
                &http.url("hello.txt"),
                &hello_len,
                &hello_sum,
            ],
        );
        no_leak(&rig, &run);
        assert!(
            run.success() && run.stdout_lines().contains(&"http ok=1000 bad=0"),
            "{ctx}: every one of 1000 requests must get the right body:\n{run}"
        );
        assert_http_via_proxy(&rig, before, "/hello.txt", 1000, &ctx);

        // A few big bodies: the stream through the guard's handshake is intact.
        let run = under_for(
            &rig,
            120,
            &proxy.url(),
            &["-q"],
            &gc,
            &[
                "http",
                "8",
                "4",
                &http.url_v6("big.bin"),
                &big_len,
                &big_sum,
            ],
        );
        no_leak(&rig, &run);
        assert!(
            run.success() && run.stdout_lines().contains(&"http ok=8 bad=0"),
            "{ctx}: 8 x 1 MiB from an IPv6 target:\n{run}"
        );
    }
    rig.assert_no_leak();
}

#[test]
fn go_static_1000_requests_from_50_goroutines() {
    go_http_many(true);
}

#[test]
fn go_dynamic_1000_requests_from_50_goroutines() {
    go_http_many(false);
}

#[test]
fn go_remote_addr_is_the_target_v4_and_v6() {
    let rig = Rig::new();
    let echo = rig.echo();
    for static_link in [true, false] {
        let gc = go_client(static_link);
        for proxy in both(&rig) {
            for target in [echo_v4(), echo_v6()] {
                let run = under_for(
                    &rig,
                    30,
                    &proxy.url(),
                    &[],
                    &gc,
                    &["remote", &target, "go-remote"],
                );
                no_leak(&rig, &run);
                run.assert_success();
                let ctx = format!(
                    "Go {} via {:?} to {target}",
                    linkage(static_link),
                    proxy.kind
                );
                assert_eq!(get(&run, "remote"), target, "{ctx}: RemoteAddr():\n{run}");
                has_line(&run, "echo=ok");
            }
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn go_resolves_a_name_only_the_proxy_knows() {
    let rig = Rig::new();
    let http = rig.http();
    let fault = rig.fault(Fault::Echo);
    let hello_sum = fnv1a64_hex(HELLO_BODY.as_bytes());
    for static_link in [true, false] {
        let gc = go_client(static_link);
        let ctx = linkage(static_link);

        // Go's own resolver (UDP to the canary's address, which the guard answers).
        let run = under_for(
            &rig,
            30,
            &rig.microsocks().url(),
            &[],
            &gc,
            &["resolve", REMOTE_NAME],
        );
        no_leak(&rig, &run);
        run.assert_success();
        let addrs: Vec<&str> = run
            .stdout_lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix("addr="))
            .collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| is_placeholder(a)),
            "Go {ctx}: {REMOTE_NAME} must resolve to placeholders only:\n{run}"
        );
        assert!(rig.dns_queries_seen().is_empty());

        // A name in the client's /etc/hosts: Go reads the file itself.
        let run = under_for(
            &rig,
            30,
            &rig.microsocks().url(),
            &[],
            &gc,
            &["resolve", TARGET_NAME],
        );
        no_leak(&rig, &run);
        has_line(&run, &format!("addr={TARGET_V4}"));

        // Dial by name and fetch, through both servers, for the v4 and the v6-only name.
        for proxy in both(&rig) {
            for name in [REMOTE_NAME, REMOTE6_NAME] {
                let before = http_clients(&rig).len();
                let run = under_for(
                    &rig,
                    30,
                    &proxy.url(),
                    &[],
                    &gc,
                    &["dialname", &format!("{name}:{}", http.port), "/hello.txt"],
                );
                no_leak(&rig, &run);
                run.assert_success();
                assert!(
                    is_placeholder(host_of(get(&run, "remote"))),
                    "Go {ctx} via {:?}: connected to {name}'s placeholder:\n{run}",
                    proxy.kind
                );
                assert_eq!(get(&run, "body_len"), HELLO_BODY.len().to_string(), "{run}");
                assert_eq!(get(&run, "body_fnv"), hello_sum, "{run}");
                assert_http_via_proxy(&rig, before, "/hello.txt", 1, &run);
            }
        }

        // The request the proxy got carries the name (ATYP 0x03), not an address.
        let before = fault.sessions().len();
        let run = under_for(
            &rig,
            30,
            &fault.url(),
            &[],
            &gc,
            &["remote", &format!("{REMOTE_NAME}:{ECHO_PORT}"), "named"],
        );
        no_leak(&rig, &run);
        run.assert_success();
        has_line(&run, "echo=ok");
        let s = &fault.sessions()[before..];
        assert_eq!(
            s.len(),
            1,
            "Go {ctx}: one connection to the proxy: {s:?}\n{run}"
        );
        assert_eq!(
            (s[0].atyp, s[0].target.as_deref()),
            (Some(3), Some(format!("{REMOTE_NAME}:{ECHO_PORT}").as_str())),
            "Go {ctx}: the request must carry the name: {s:?}\n{run}"
        );
    }
    assert!(
        rig.dns_queries_seen().is_empty(),
        "the canary saw {:?}",
        rig.dns_queries_seen()
    );
    rig.assert_no_leak();
}

#[test]
fn raw_syscalls_the_preload_layer_cannot_see_are_proxied() {
    let rig = Rig::new();
    let echo = rig.echo();
    let stat = probe_static();
    let dynm = probe_dynamic();
    for proxy in both(&rig) {
        for (host, peer) in [
            (TARGET_V4.to_string(), echo_v4()),
            (TARGET_V6.to_string(), echo_v6()),
        ] {
            for (prog, mode) in [(&stat, "raw"), (&stat, "asm"), (&dynm, "asm")] {
                let run = under_for(
                    &rig,
                    30,
                    &proxy.url(),
                    &[],
                    prog,
                    &[mode, &host, &ECHO_PORT.to_string(), "raw-syscall"],
                );
                no_leak(&rig, &run);
                run.assert_success();
                has_line(&run, &format!("connect=0 peer={peer} echo=ok"));
            }
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn a_libc_shell_that_execs_the_go_program_is_covered() {
    let rig = Rig::new();
    let echo = rig.echo();
    let proxy = rig.microsocks();
    let gc = go_client(true);
    let gcs = gc.to_str().unwrap();
    let t = echo_v4();
    // exec'd by the shell, and run as its child (the filter is inherited by both).
    for script in [
        r#"exec "$0" remote "$1" from-sh-exec"#,
        r#""$0" remote "$1" from-sh-child && echo shell-after=ok"#,
    ] {
        let run = under(&rig, &proxy.url(), &[], "sh", &["-c", script, gcs, &t]);
        no_leak(&rig, &run);
        run.assert_success();
        assert_eq!(get(&run, "remote"), t, "{run}");
        has_line(&run, "echo=ok");
        if script.contains("shell-after") {
            has_line(&run, "shell-after=ok");
        }
    }
    // A static program started by a libc shell.
    let http = rig.http();
    let run = under(
        &rig,
        &proxy.url(),
        &[],
        "sh",
        &[
            "-c",
            r#"/bin/busybox wget -O - "$0""#,
            &http.url("hello.txt"),
        ],
    );
    no_leak(&rig, &run);
    run.assert_success();
    assert_eq!(run.stdout, HELLO_BODY, "{run}");
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// Signals, a dead supervisor, programs that cannot be inspected
// ---------------------------------------------------------------------------------------

#[test]
fn signals_every_5_ms_during_connects_do_not_corrupt_them() {
    let rig = Rig::new();
    let _echo = rig.echo();
    // Through a relay that adds 10 ms per chunk: each handshake takes >= 40 ms, so every
    // connect sees several signals.
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(10));
    for static_link in [true, false] {
        let gc = go_client(static_link);
        let run = under_for(
            &rig,
            120,
            &relay.url(),
            &["-q"],
            &gc,
            &["signals", "100", &echo_v4()],
        );
        no_leak(&rig, &run);
        assert!(
            run.success() && run.stdout_lines().contains(&"signals ok=100 bad=0"),
            "Go {}: every connection intact while signals fly:\n{run}",
            linkage(static_link)
        );
    }
    // A static C program with SIGALRM every 5 ms, its handler with and without SA_RESTART.
    let p = probe_static();
    for restart in ["0", "1"] {
        let run = under_for(
            &rig,
            120,
            &relay.url(),
            &["-q"],
            &p,
            &[
                "signals",
                &TARGET_V4.to_string(),
                &ECHO_PORT.to_string(),
                "100",
                restart,
            ],
        );
        no_leak(&rig, &run);
        run.assert_success();
        let line = get(&run, "signals");
        assert!(
            line.starts_with("ok=100 bad=0 "),
            "SA_RESTART={restart}: every connection intact:\n{run}"
        );
        // getpeername is trapped too: a signal that comes before the supervisor has
        // picked it up interrupts it (restarted under SA_RESTART, EINTR otherwise; the
        // probe retries), and the retried answer must still be the target.
        if restart == "1" {
            assert!(
                line.contains(" peer_eintr=0 "),
                "SA_RESTART restarts an interrupted getpeername:\n{run}"
            );
        }
        let alarms: u64 = line
            .rsplit_once("alarms=")
            .and_then(|(_, a)| a.parse().ok())
            .unwrap_or(0);
        assert!(
            alarms >= 100,
            "the signals really came (at least 100):\n{run}"
        );
    }
    rig.assert_no_leak();
}

/// A program under the launcher whose stdout is read line by line as it comes.
struct Live {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Live {
    fn start(mut cmd: Command) -> Live {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("start the launcher");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let tx2 = tx.clone();
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send(format!("stderr: {l}")).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `limit`) for a line that `want` accepts; returns it.
    fn wait_line(&mut self, limit: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no {what} within {limit:?}; seen so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        kill_group_id(self.child.id());
        let _ = self.child.wait();
    }
}

/// Is process `pid` gone (or a zombie nobody reaped yet)?
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Waits (at most `limit`) until process `pid` is gone.
fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !gone(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    gone(pid)
}

/// `pid=N ppid=M` from the Go program.
fn pid_line(line: &str) -> (i32, i32) {
    line.strip_prefix("pid=")
        .and_then(|r| r.split_once(" ppid="))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or_else(|| panic!("bad pid line {line:?}"))
}

/// The supervisor SIGKILLed mid-run. The program it started directly goes with it (the
/// launcher sets PR_SET_PDEATHSIG, as if the program had been that pid); a process the
/// program started in the background outlives both, still under the filter, and every
/// connect it makes from then on fails with ENOSYS (seccomp_unotify(2): no listener):
/// fail closed, nothing direct. Then the test kills it by its pid.
#[test]
fn a_killed_supervisor_fails_closed() {
    let rig = Rig::new();
    let echo = rig.echo();
    let proxy = rig.microsocks();
    let t = echo_v4();
    for static_link in [true, false] {
        let gc = go_client(static_link);
        let gcs = gc.to_str().unwrap();

        // The program itself.
        let mut live = Live::start(rig.laysocks(&proxy.url(), ["--", gcs, "pid", &t, "300"]));
        let launcher = live.child.id() as i32;
        let ids = live.wait_line(Duration::from_secs(20), "pid line", |l| {
            l.starts_with("pid=")
        });
        let (pid, ppid) = pid_line(&ids);
        assert_eq!(
            ppid, launcher,
            "under the guard the program is the launcher's child ({ids})"
        );
        for _ in 0..2 {
            live.wait_line(Duration::from_secs(20), "a proxied connection", |l| {
                l == "dial=ok"
            });
        }
        rig.reset_leak_baseline();
        laysocks_testkit::util::kill_pid(launcher); // SIGKILL, by its pid
        let status = live.child.wait().expect("reap the launcher");
        assert!(!status.success(), "the launcher was killed: {status}");
        assert!(
            wait_gone(pid, Duration::from_secs(10)),
            "the program goes with its supervisor (PR_SET_PDEATHSIG)"
        );
        if let Err(e) = rig.check_no_leak() {
            panic!("{e}\nprogram output:\n{}", live.seen.join("\n"));
        }
        drop(live);

        // A process the program left running in the background.
        let script = r#""$0" pid "$1" 300 & echo "bg=$!"; wait"#;
        let mut live = Live::start(rig.laysocks(&proxy.url(), ["--", "sh", "-c", script, gcs, &t]));
        let launcher = live.child.id() as i32;
        let ids = live.wait_line(Duration::from_secs(20), "pid line", |l| {
            l.starts_with("pid=")
        });
        let (pid, shell) = pid_line(&ids);
        assert_ne!(
            shell, launcher,
            "the Go program is the shell's child ({ids})"
        );
        for _ in 0..2 {
            live.wait_line(Duration::from_secs(20), "a proxied connection", |l| {
                l == "dial=ok"
            });
        }
        rig.reset_leak_baseline();
        laysocks_testkit::util::kill_pid(launcher);
        let _ = live.child.wait();
        // The next connects fail with ENOSYS; none goes direct.
        live.wait_line(Duration::from_secs(10), "dial=ENOSYS", |l| {
            assert!(
                l == "dial=ok" || l == "dial=ENOSYS" || l.starts_with("stderr: "),
                "after the supervisor died: {l}"
            );
            l == "dial=ENOSYS"
        });
        for _ in 0..3 {
            let l = live.wait_line(Duration::from_secs(10), "another connect", |l| {
                l.starts_with("dial=")
            });
            assert_eq!(l, "dial=ENOSYS", "fail closed, every time");
        }
        if let Err(e) = rig.check_no_leak() {
            panic!("{e}\nprogram output:\n{}", live.seen.join("\n"));
        }
        assert!(!gone(pid), "the background program outlives its supervisor");
        laysocks_testkit::util::kill_pid(pid);
        assert!(wait_gone(pid, Duration::from_secs(10)), "killed by its pid");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

/// `setpriv` to the unprivileged user 65534, then the launcher: the guard runs without
/// CAP_SYS_PTRACE, so a non-dumpable program really cannot be inspected.
fn as_nobody(rig: &Rig, url: &str, program: &Path, args: &[&str]) -> Run {
    let bin = laysocks_testkit::laysocks_bin();
    let mut all = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        bin.to_str().unwrap(),
        "-x",
        url,
        "--",
        program.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let mut cmd = rig.client_cmd(require("setpriv", "util-linux"), &all);
    cmd.env("HOME", "/nonexistent").env_remove("XDG_CACHE_HOME");
    rig.run(&mut cmd)
}

#[test]
fn a_non_dumpable_program_is_refused_not_sent_direct() {
    let rig = Rig::new();
    let echo = rig.echo();
    let proxy = rig.microsocks();
    let p = probe_static();
    let host = TARGET_V4.to_string();
    let port = ECHO_PORT.to_string();

    // As root the supervisor may inspect it anyway (CAP_SYS_PTRACE): proxied or refused,
    // never direct.
    let run = under(
        &rig,
        &proxy.url(),
        &[],
        p.to_str().unwrap(),
        &["nondumpable", &host, &port, "nd"],
    );
    no_leak(&rig, &run);
    has_line(&run, "dumpable=0 rc=0");
    let proxied = format!("connect=0 peer={} echo=ok", echo_v4());
    if !run.stdout_lines().contains(&proxied.as_str()) {
        has_line(&run, "connect=EACCES");
        assert_eq!(layer_lines(&run).len(), 1, "one line says why:\n{run}");
    }

    // As an ordinary user: a dumpable program is proxied (the control) …
    let run = as_nobody(&rig, &proxy.url(), &p, &["raw", &host, &port, "nobody"]);
    no_leak(&rig, &run);
    run.assert_success();
    has_line(&run, &proxied);
    // … a non-dumpable one cannot be read, and is refused with one line.
    let run = as_nobody(&rig, &proxy.url(), &p, &["nondumpable", &host, &port, "nd"]);
    no_leak(&rig, &run);
    has_line(&run, "dumpable=0 rc=0");
    has_line(&run, "connect=EACCES");
    let lines = layer_lines(&run);
    assert_eq!(lines.len(), 1, "one line says why:\n{run}");
    assert!(
        lines[0].contains(&host) || lines[0].contains("dumpable"),
        "the line names the connection or the reason:\n{run}"
    );
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// Programs' own DNS, libc programs under both layers, --no-guard
// ---------------------------------------------------------------------------------------

/// node: c-ares' own UDP resolver (dns.Resolver.resolve4), as tests/remote_dns.rs has it.
const NODE_RESOLVE4: &str = r#"
const dns = require('dns');
const guard = setTimeout(() => { console.log('timeout'); process.exit(3); }, 20000);
const r = new dns.Resolver({ timeout: 2000, tries: 1 });
r.resolve4(process.argv[1], (err, a) => {
  console.log('resolve4=' + (err ? err.code : a.join(',')));
  clearTimeout(guard);
  console.log('alive');
});
"#;

#[test]
fn dig_and_node_resolve4_get_placeholders_with_the_guard() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    let dig = require("dig", "bind9-dnsutils");
    let dig = dig.to_str().unwrap();
    let node = require("node", "nodejs");
    let node = node.to_str().unwrap();

    // Guard on (the default): answered by the guard with a placeholder, over UDP and TCP.
    for (qtype, name) in [("A", REMOTE_NAME), ("AAAA", REMOTE6_NAME)] {
        for transport in ["+notcp", "+tcp"] {
            let run = under(
                &rig,
                &proxy.url(),
                &[],
                dig,
                &[transport, "+tries=1", "+time=3", "+short", name, qtype],
            );
            no_leak(&rig, &run);
            run.assert_success();
            let answers: Vec<&str> = run.stdout_lines();
            assert!(
                !answers.is_empty() && answers.iter().all(|a| is_placeholder(a)),
                "dig {transport} {name} {qtype}: placeholders only:\n{run}"
            );
        }
    }
    let run = under(
        &rig,
        &proxy.url(),
        &[],
        node,
        &["-e", NODE_RESOLVE4, REMOTE_NAME],
    );
    no_leak(&rig, &run);
    run.assert_success();
    let got = get(&run, "resolve4");
    assert!(
        got.split(',').all(is_placeholder),
        "c-ares' own query is answered with a placeholder:\n{run}"
    );
    has_line(&run, "alive");

    // --no-guard: the preload layer alone refuses them, as before.
    let run = under(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        dig,
        &["+tries=1", "+time=2", REMOTE_NAME],
    );
    no_leak(&rig, &run);
    run.assert_failure();
    assert!(!run.stdout.contains("ANSWER SECTION"), "{run}");
    assert!(
        !layer_lines(&run).is_empty(),
        "the refusal is reported:\n{run}"
    );
    let run = under(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        node,
        &["-e", NODE_RESOLVE4, REMOTE_NAME],
    );
    no_leak(&rig, &run);
    assert_eq!(get(&run, "resolve4"), "ECONNREFUSED", "{run}");
    assert!(
        rig.dns_queries_seen().is_empty(),
        "{:?}",
        rig.dns_queries_seen()
    );
    rig.assert_no_leak();
}

#[test]
fn curl_and_python_under_both_layers() {
    let rig = Rig::new();
    let http = rig.http();
    let py = python3();
    let out = rig.dir().join("curl.out");
    let script = "import sys, urllib.request; \
                  sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=15).read().decode())";
    for proxy in both(&rig) {
        for url in [
            http.url("hello.txt"),
            http.url_v6("hello.txt"),
            http.url_named(REMOTE_NAME, "hello.txt"),
        ] {
            let before = http_clients(&rig).len();
            let run = under(&rig, &proxy.url(), &[], "curl", &["-sS", "-m", "15", &url]);
            no_leak(&rig, &run);
            run.assert_success();
            assert_eq!(
                run.stdout, HELLO_BODY,
                "curl {url} via {:?}:\n{run}",
                proxy.kind
            );
            let run = under(
                &rig,
                &proxy.url(),
                &[],
                py.to_str().unwrap(),
                &["-c", script, &url],
            );
            no_leak(&rig, &run);
            run.assert_success();
            assert_eq!(
                run.stdout, HELLO_BODY,
                "python3 {url} via {:?}:\n{run}",
                proxy.kind
            );
            assert_http_via_proxy(&rig, before, "/hello.txt", 2, &run);
        }
        let _ = std::fs::remove_file(&out);
        let run = under(
            &rig,
            &proxy.url(),
            &[],
            "curl",
            &[
                "-sS",
                "-m",
                "30",
                "-o",
                out.to_str().unwrap(),
                &http.url("big.bin"),
            ],
        );
        no_leak(&rig, &run);
        run.assert_success();
        assert!(
            std::fs::read(&out).unwrap_or_default() == big_body(),
            "curl big.bin:\n{run}"
        );
    }
    rig.assert_no_leak();
}

#[test]
fn no_guard_keeps_the_preload_layer_alone() {
    let rig = Rig::new();
    let http = rig.http();
    let proxy = rig.microsocks();
    let before = http_clients(&rig).len();
    let run = under(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        "curl",
        &["-sS", "-m", "15", &http.url("hello.txt")],
    );
    no_leak(&rig, &run);
    run.assert_success();
    assert_eq!(run.stdout, HELLO_BODY, "{run}");
    assert_http_via_proxy(&rig, before, "/hello.txt", 1, &run);

    // Without the guard, programs only it can see are refused again.
    let bb = busybox();
    let run = under(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        bb.to_str().unwrap(),
        &["wget", "-O", "-", &http.url("hello.txt")],
    );
    refused(&run, "is statically linked");
    let run = under(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        go_client(true).to_str().unwrap(),
        &["remote", &echo_v4(), "x"],
    );
    assert_eq!(
        run.code(),
        Some(126),
        "a Go program is refused without the guard:\n{run}"
    );
    assert!(run.stdout.is_empty(), "{run}");
    // Without the guard the program is exec'd: the launcher's pid is the program's.
    let run = under(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        "sh",
        &["-c", "echo self=$$ parent=$PPID"],
    );
    run.assert_success();
    let guarded = under(
        &rig,
        &proxy.url(),
        &[],
        "sh",
        &["-c", "echo self=$$ parent=$PPID"],
    );
    guarded.assert_success();
    // (`ip netns exec` execs the launcher, so its parent is this test in both cases; with
    // the guard the shell's parent is the launcher, a process of its own.)
    let parent = |r: &Run| {
        get(r, "self")
            .split_once(" parent=")
            .map(|(_, p)| p.to_string())
    };
    assert_eq!(
        parent(&run),
        Some(std::process::id().to_string()),
        "--no-guard: the launcher became the program:\n{run}"
    );
    assert_ne!(
        parent(&guarded),
        Some(std::process::id().to_string()),
        "with the guard the program is the launcher's child:\n{guarded}"
    );
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// Socket families, io_uring, a second connect
// ---------------------------------------------------------------------------------------

#[test]
fn targets_of_the_other_family_than_the_proxy_address_and_io_uring() {
    let rig = Rig::new();
    let echo = rig.echo();
    let p = probe_static();
    let port = ECHO_PORT.to_string();
    for proxy in both(&rig) {
        // (proxy URL, target host, mode, expected peer)
        let cases = [
            // An AF_INET socket through an IPv6-only proxy address: the socket is replaced.
            (proxy.url_v6(), TARGET_V4.to_string(), "raw", echo_v4()),
            // An AF_INET6 socket to an IPv6 target through an IPv4 proxy address.
            (proxy.url(), TARGET_V6.to_string(), "raw", echo_v6()),
            // An AF_INET6 socket to a v4-mapped target, through either proxy address.
            (
                proxy.url(),
                TARGET_V4.to_string(),
                "v6sock",
                format!("[::ffff:{TARGET_V4}]:{ECHO_PORT}"),
            ),
            (
                proxy.url_v6(),
                TARGET_V4.to_string(),
                "v6sock",
                format!("[::ffff:{TARGET_V4}]:{ECHO_PORT}"),
            ),
            (proxy.url_v6(), TARGET_V6.to_string(), "raw", echo_v6()),
        ];
        for (url, host, mode, peer) in cases {
            let run = under_for(&rig, 30, &url, &[], &p, &[mode, &host, &port, "family"]);
            no_leak(&rig, &run);
            run.assert_success();
            has_line(&run, &format!("connect=0 peer={peer} echo=ok"));
        }
    }
    // io_uring would let a program connect without a syscall the filter sees: ENOSYS.
    for prog in [probe_static(), probe_dynamic()] {
        let run = under(
            &rig,
            &rig.microsocks().url(),
            &[],
            prog.to_str().unwrap(),
            &["iouring"],
        );
        run.assert_success();
        has_line(&run, "io_uring_setup=ENOSYS");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

/// The kernel's answers to connect, connect, connect on a non-blocking socket: after
/// `EINPROGRESS` the next connect reports the outcome (0) once, then `EISCONN`; after a
/// connect that returned 0, `EISCONN` at once.
#[track_caller]
fn assert_connect_sequence(run: &Run) {
    let first = get(run, "connect1");
    let c1 = first.split(' ').next().unwrap_or("");
    let second = get(run, "connect2");
    let (c2, c3) = second
        .split_once(" connect3=")
        .unwrap_or_else(|| panic!("bad connect2 line:\n{run}"));
    match c1 {
        "0" => assert_eq!(c2, "EISCONN", "connect after 0:\n{run}"),
        "EINPROGRESS" => assert!(
            c2 == "0" || c2 == "EISCONN",
            "connect after EINPROGRESS:\n{run}"
        ),
        _ => panic!("the first connect failed:\n{run}"),
    }
    assert_eq!(c3, "EISCONN", "a connected socket says EISCONN:\n{run}");
    assert!(first.contains("so_error=0"), "{run}");
}

#[test]
fn a_second_connect_on_an_established_socket_is_eisconn_and_the_stream_intact() {
    let rig = Rig::new();
    let echo = rig.echo();
    let stat = probe_static();
    let dynm = probe_dynamic();
    let port = ECHO_PORT.to_string();
    let direct = rig.microsocks();
    let relay = rig.delay_relay(&direct, Duration::from_millis(20));
    for url in [direct.url(), relay.url()] {
        for (prog, mode) in [
            (&stat, "twice"),
            (&stat, "twice-asm"),
            (&dynm, "twice-asm"),
            (&dynm, "twice"),
        ] {
            for (host, peer) in [
                (TARGET_V4.to_string(), echo_v4()),
                (TARGET_V6.to_string(), echo_v6()),
            ] {
                let run = under_for(&rig, 30, &url, &[], prog, &[mode, &host, &port, "twice"]);
                no_leak(&rig, &run);
                run.assert_success();
                assert_connect_sequence(&run);
                has_line(&run, &format!("peer={peer} echo=ok"));
            }
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}
