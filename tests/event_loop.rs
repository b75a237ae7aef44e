//! Non-blocking connects negotiate inside the program's own event loop (issue 4).
//!
//! A delaying relay in front of microsocks makes every round trip to the proxy take
//! tens of milliseconds, so a layer that ran the handshake inside `connect()` would be
//! seen: `connect()` must return `EINPROGRESS` at once, the socket must not look
//! connected while the handshake runs (`getpeername` → `ENOTCONN`, `read` → `EAGAIN`, a
//! second `connect` → `EALREADY`, `SO_ERROR` → 0), and "writable" must come from the
//! program's own readiness call only after the proxy's success reply. One small C
//! program covers each mechanism; real programs (asyncio, node with and without
//! io_uring) show the same from the outside.

use std::time::Duration;

use laysocks_testkit::{
    compile_c_with, Fault, Rig, Run, CLOSED_PORT, ECHO_PORT, HTTP_PORT, TARGET_V4,
};

const NBPROBE: &str = include_str!("probes/nbprobe.c");

fn nbprobe() -> std::path::PathBuf {
    compile_c_with(
        "nbprobe",
        NBPROBE,
        &["-O2", "-D_FORTIFY_SOURCE=2", "-pthread"],
    )
}

fn run_probe(rig: &Rig, url: &str, opts: &[&str], mode: &str, host: &str, port: u16) -> Run {
    let p = nbprobe();
    let port = port.to_string();
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["--", p.to_str().unwrap(), mode, host, &port]);
    rig.run(&mut rig.laysocks(url, &args))
}

fn line<'a>(run: &'a Run, prefix: &str) -> &'a str {
    run.stdout_lines()
        .into_iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{run}"))
}

/// `ready=<hex> ms=<n>` → (events, ms).
fn ready(run: &Run) -> (u32, u64) {
    let l = line(run, "ready=");
    let mut it = l.split_whitespace();
    let ev = u32::from_str_radix(it.next().unwrap().trim_start_matches("ready="), 16).unwrap();
    let ms = it
        .next()
        .unwrap()
        .trim_start_matches("ms=")
        .parse()
        .unwrap();
    (ev, ms)
}

#[track_caller]
fn assert_connected_in_loop(run: &Run, mode: &str, min_ms: u64) {
    let lines = run.stdout_lines();
    assert!(
        lines.contains(&"connect=EINPROGRESS"),
        "{mode}: connect must not block:\n{run}"
    );
    assert!(
        lines.contains(&"pending peer=ENOTCONN read=EAGAIN again=EALREADY soerr=0"),
        "{mode}: while pending the socket is not connected:\n{run}"
    );
    let (ev, ms) = ready(run);
    assert_eq!(
        ev, 4,
        "{mode}: the program sees exactly POLLOUT/EPOLLOUT:\n{run}"
    );
    assert!(
        ms >= min_ms,
        "{mode}: writable after {ms} ms, before the proxy could answer:\n{run}"
    );
    assert!(lines.contains(&"soerr=0"), "{mode}:\n{run}");
    assert!(
        lines.contains(&format!("after connect=0 connect2=EISCONN peer={TARGET_V4}:{HTTP_PORT}").as_str()),
        "{mode}: after success, connect gives 0 once then EISCONN, and the peer is the target:\n{run}"
    );
    assert!(
        lines.contains(&"reply=HTTP/1.0 200 OK"),
        "{mode}: data flows:\n{run}"
    );
    assert_eq!(lines.last().copied(), Some("alive"), "{mode}:\n{run}");
    assert!(
        !run.stdout.contains("BAD-DATA"),
        "{mode}: epoll data must be the program's own:\n{run}"
    );
}

#[test]
fn every_readiness_mechanism_sees_writable_only_after_the_proxy_reply() {
    let rig = Rig::new();
    let _http = rig.http();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(25));
    // The handshake is two round trips through the relay: at least 4 × 25 ms.
    for mode in [
        "poll",
        "poll-chk",
        "fionbio",
        "ppoll",
        "select",
        "pselect",
        "epoll-lt",
        "epoll-et",
        "epoll-oneshot",
        "epoll-exclusive",
        "epoll-prereg",
        "epoll-thread",
        "epoll-nested",
        "epoll-multi",
        "epoll-mod",
        "epoll-del",
        "fork",
    ] {
        let run = run_probe(
            &rig,
            &relay.url(),
            &[],
            mode,
            &TARGET_V4.to_string(),
            HTTP_PORT,
        );
        run.assert_success();
        assert_connected_in_loop(&run, mode, 90);
        if mode == "epoll-multi" {
            assert!(
                run.stdout_lines().contains(&"second set=4"),
                "both epoll sets see it:\n{run}"
            );
        }
        if mode == "epoll-del" {
            let l = run.stdout_lines();
            assert!(
                l.contains(&"none=0"),
                "a deleted registration reports nothing:\n{run}"
            );
            assert!(
                l.contains(&"add-again=EEXIST"),
                "a second ADD is EEXIST:\n{run}"
            );
        }
    }
    rig.assert_no_leak();
}

#[test]
fn the_fortified_probe_really_calls_poll_chk() {
    let p = nbprobe();
    let out = std::process::Command::new("nm")
        .arg("-D")
        .arg(&p)
        .output()
        .expect("nm (binutils)");
    let syms = String::from_utf8_lossy(&out.stdout);
    assert!(
        syms.contains("__poll_chk"),
        "built with _FORTIFY_SOURCE, poll-chk must use __poll_chk:\n{syms}"
    );
}

#[test]
fn a_program_that_goes_back_to_blocking_waits_for_the_handshake_in_write() {
    let rig = Rig::new();
    let _http = rig.http();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(25));
    let run = run_probe(
        &rig,
        &relay.url(),
        &[],
        "blocking-write",
        &TARGET_V4.to_string(),
        HTTP_PORT,
    );
    run.assert_success();
    let l = run.stdout_lines();
    assert!(l.contains(&"connect=EINPROGRESS"), "{run}");
    assert!(
        l.iter().any(|x| x.starts_with("blocking write=27 ")),
        "{run}"
    );
    assert!(l.contains(&"reply=HTTP/1.0 200 OK"), "{run}");
    rig.assert_no_leak();
}

#[test]
fn a_closed_pending_socket_is_forgotten() {
    let rig = Rig::new();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(25));
    let run = run_probe(
        &rig,
        &relay.url(),
        &[],
        "close",
        &TARGET_V4.to_string(),
        HTTP_PORT,
    );
    run.assert_success()
        .assert_stdout_contains("closed poll=1 revents=20");
    rig.assert_no_leak();
}

#[test]
fn a_refused_target_looks_like_a_refused_connect() {
    let rig = Rig::new();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(10));
    for mode in ["epoll-lt", "poll", "select"] {
        let run = run_probe(
            &rig,
            &relay.url(),
            &[],
            mode,
            &TARGET_V4.to_string(),
            CLOSED_PORT,
        );
        run.assert_success();
        let (ev, _) = ready(&run);
        if mode == "select" {
            assert_eq!(ev, 4, "select reports a failed connect as writable:\n{run}");
        } else {
            assert_eq!(
                ev & 0x1c,
                0x1c,
                "{mode}: OUT|ERR|HUP like a refused connect:\n{run}"
            );
        }
        let l = run.stdout_lines();
        assert!(l.contains(&"soerr=ECONNREFUSED"), "{mode}:\n{run}");
        assert!(
            l.contains(&"soerr-again=0"),
            "{mode}: SO_ERROR is read once:\n{run}"
        );
        assert_eq!(l.last().copied(), Some("alive"), "{run}");
        run.assert_stderr_contains("(ECONNREFUSED)");
    }
    rig.assert_no_leak();
}

#[test]
fn an_unreachable_proxy_fails_the_connect_with_its_errno() {
    let rig = Rig::new();
    let url = format!("socks5://198.51.100.1:{CLOSED_PORT}");
    let run = run_probe(&rig, &url, &[], "poll", &TARGET_V4.to_string(), HTTP_PORT);
    run.assert_success();
    let out = &run.stdout;
    assert!(
        out.contains("connect=ECONNREFUSED") || out.contains("soerr=ECONNREFUSED"),
        "the proxy's own refusal is the program's:\n{run}"
    );
    run.assert_stderr_contains("cannot reach the proxy");
    rig.assert_no_leak();
}

#[test]
fn a_stalling_proxy_fails_at_the_deadline_inside_the_wait() {
    let rig = Rig::new();
    let f = rig.fault(Fault::NeverAnswer);
    for mode in ["epoll-et", "poll", "select"] {
        let run = run_probe(
            &rig,
            &f.url(),
            &["--connect-timeout", "1"],
            mode,
            &TARGET_V4.to_string(),
            HTTP_PORT,
        );
        run.assert_success();
        let (_, ms) = ready(&run);
        assert!(
            (900..3000).contains(&ms),
            "{mode}: the 1 s deadline holds inside the wait ({ms} ms):\n{run}"
        );
        assert!(
            run.stdout_lines().contains(&"soerr=ETIMEDOUT"),
            "{mode}:\n{run}"
        );
        run.assert_stderr_contains("(ETIMEDOUT)");
    }
    rig.assert_no_leak();
}

const ASYNCIO: &str = r#"
import asyncio, sys, time
N = int(sys.argv[1]); HOST = sys.argv[2]; PORT = int(sys.argv[3])
lag = 0.0
async def watch():
    global lag
    while True:
        t = time.monotonic(); await asyncio.sleep(0.005)
        lag = max(lag, time.monotonic() - t - 0.005)
async def one(i):
    r, w = await asyncio.open_connection(HOST, PORT)
    msg = b"ping %d\n" % i
    w.write(msg); await w.drain()
    d = await r.readexactly(len(msg)); w.close()
    return d == msg
async def main():
    asyncio.get_running_loop().create_task(watch())
    ok = sum(await asyncio.gather(*[one(i) for i in range(N)]))
    print(f"ok={ok} of={N} maxlag_ms={lag*1000:.0f}")
asyncio.run(main())
"#;

#[test]
fn asyncio_runs_200_handshakes_concurrently_without_blocking_its_loop() {
    let rig = Rig::new();
    let _echo = rig.echo();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(20));
    let py = laysocks_testkit::python3();
    let run = rig.run(&mut rig.laysocks(
        &relay.url(),
        [
            "-q",
            "--",
            py.to_str().unwrap(),
            "-c",
            ASYNCIO,
            "200",
            &TARGET_V4.to_string(),
            &ECHO_PORT.to_string(),
        ],
    ));
    run.assert_success();
    let l = line(&run, "ok=");
    assert!(l.starts_with("ok=200 of=200"), "{run}");
    // Inline handshakes would freeze the loop for 200 × 80 ms; the layer must not block
    // it for more than a few handshakes' worth, even on a loaded machine.
    let lag: u64 = l.rsplit("maxlag_ms=").next().unwrap().parse().unwrap();
    assert!(lag < 250, "the event loop was blocked for {lag} ms:\n{run}");
    rig.assert_no_leak();
}

const NODE: &str = r#"
const net = require('net'), http = require('http');
const [host, port] = [process.argv[1], +process.argv[2]];
let left = 20, ok = 0;
const done = () => { if (--left === 0) http.get(`http://${host}:${port}/hello.txt`, res => {
  let b = ''; res.on('data', c => b += c);
  res.on('end', () => console.log(`net=${ok} http=${res.statusCode} body=${b.trim()}`)); }); };
for (let i = 0; i < 20; i++) {
  const s = net.connect(port, host, () => s.write('GET /hello.txt HTTP/1.0\r\n\r\n'));
  let d = ''; s.on('data', c => d += c);
  s.on('end', () => { if (d.startsWith('HTTP/1.0 200') && s.remoteAddress === host) ok++; done(); });
  s.on('error', e => { console.log('error ' + e.message); done(); });
}
"#;

#[test]
fn node_net_and_http_with_and_without_io_uring() {
    laysocks_testkit::require("node", "nodejs");
    let rig = Rig::new();
    let http = rig.http();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(10));
    for uring in ["0", "1"] {
        let mut cmd = rig.laysocks(
            &relay.url(),
            [
                "-q",
                "--",
                "node",
                "-e",
                NODE,
                &TARGET_V4.to_string(),
                &HTTP_PORT.to_string(),
            ],
        );
        cmd.env("UV_USE_IO_URING", uring);
        let run = rig.run(&mut cmd);
        run.assert_success();
        let want = format!(
            "net=20 http=200 body={}",
            laysocks_testkit::HELLO_BODY.trim()
        );
        assert!(
            run.stdout.contains(&want),
            "UV_USE_IO_URING={uring}:\n{run}"
        );
    }
    let _ = http;
    rig.assert_no_leak();
}

#[test]
fn pipeline_works_with_danted_and_falls_back_quietly_with_microsocks() {
    let rig = Rig::new();
    let _http = rig.http();
    for proxy in [rig.danted(), rig.microsocks(), rig.microsocks_auth()] {
        let url = proxy.url();
        for mode in ["poll", "epoll-et"] {
            let run = run_probe(
                &rig,
                &url,
                &["--pipeline"],
                mode,
                &TARGET_V4.to_string(),
                HTTP_PORT,
            );
            run.assert_success();
            assert!(
                run.stdout_lines().contains(&"reply=HTTP/1.0 200 OK"),
                "{url} {mode}:\n{run}"
            );
            assert!(
                !run.stderr.contains("failed"),
                "a fallback must be invisible:\n{run}"
            );
        }
        let run = rig.run(&mut rig.laysocks(
            &url,
            [
                "--pipeline",
                "--",
                "curl",
                "-sS",
                &format!("http://{TARGET_V4}:{HTTP_PORT}/hello.txt"),
            ],
        ));
        run.assert_success()
            .assert_stdout_contains(laysocks_testkit::HELLO_BODY.trim());
    }
    rig.assert_no_leak();
}

#[test]
fn a_tokio_client_connects_concurrently_from_one_thread() {
    // Built by `cargo test` from tests/apps/tokio_echo.rs (an example of this package).
    let exe = laysocks_testkit::util::target_dir()
        .join("debug")
        .join("examples")
        .join("tokio_echo");
    assert!(
        exe.is_file(),
        "{} is missing: build it with `cargo build --example tokio_echo`",
        exe.display()
    );
    let rig = Rig::new();
    let _echo = rig.echo();
    let relay = rig.delay_relay(&rig.microsocks(), Duration::from_millis(20));
    let target = format!("{TARGET_V4}:{ECHO_PORT}");
    let run = rig.run(&mut rig.laysocks(
        &relay.url(),
        ["-q", "--", exe.to_str().unwrap(), &target, "100"],
    ));
    run.assert_success();
    let l = run.stdout_lines();
    assert!(
        l.contains(&format!("ok=100 of=100 peer={target}").as_str()),
        "{run}"
    );
    let lag: u64 = line(&run, "maxlag_ms=")
        .trim_start_matches("maxlag_ms=")
        .parse()
        .unwrap();
    assert!(
        lag < 250,
        "the tokio runtime was blocked for {lag} ms:\n{run}"
    );
    rig.assert_no_leak();
}
