//! Real, unmodified programs under `laysocks`, in the client namespace of a [`Rig`], where
//! the only reachable host is the proxy host. Each test checks the content that came back
//! and that nothing leaked around the proxy, through microsocks (no auth) and Dante
//! (username auth) where both make sense.

use laysocks_testkit::expect::probe_connected;
use laysocks_testkit::{
    big_body, probe, python3, Fault, Proxy, Rig, Run, HELLO_BODY, PROXY_PASS, TARGET6_NAME,
    TARGET_NAME,
};

/// microsocks and danted (with its credentials in the URL).
fn both(rig: &Rig) -> [Proxy; 2] {
    [rig.microsocks(), rig.danted()]
}

/// `laysocks -x <url> -- program args…`, run to completion.
fn under(rig: &Rig, url: &str, program: &str, args: &[&str]) -> Run {
    let mut all = vec!["--", program];
    all.extend_from_slice(args);
    rig.run(&mut rig.laysocks(url, &all))
}

#[test]
fn curl_ipv4_and_ipv6_targets() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in both(&rig) {
        for url in [http.url("hello.txt"), http.url_v6("hello.txt")] {
            let run = under(&rig, &proxy.url(), "curl", &["-sS", "-m", "15", &url]);
            run.assert_success();
            assert_eq!(run.stdout, HELLO_BODY, "{:?} {url}:\n{run}", proxy.kind);
        }
    }
    rig.assert_no_leak();
}

#[test]
fn curl_through_the_proxys_ipv6_address() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in both(&rig) {
        let url = http.url_v6("hello.txt");
        let run = under(&rig, &proxy.url_v6(), "curl", &["-sS", "-m", "15", &url]);
        run.assert_success();
        assert_eq!(run.stdout, HELLO_BODY, "{:?} {url}:\n{run}", proxy.kind);
        // An AF_INET socket cannot be connected to an IPv6 proxy, and the layer never
        // swaps the application's socket (DESIGN.md §3.1): a clear error, not a leak.
        let url = http.url("hello.txt");
        let run = under(&rig, &proxy.url_v6(), "curl", &["-sS", "-m", "15", &url]);
        assert_eq!(run.code(), Some(7), "{run}");
        laysocks_testkit::expect::layer_error(
            &run,
            "203.0.113.2:8080",
            &format!("socks5://{}", proxy.addr_v6()),
            "EAFNOSUPPORT",
        );
    }
    rig.assert_no_leak();
}

#[test]
fn curl_names_from_etc_hosts() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in both(&rig) {
        for name in [TARGET_NAME, TARGET6_NAME] {
            let url = http.url_named(name, "hello.txt");
            let run = under(&rig, &proxy.url(), "curl", &["-sS", "-m", "15", &url]);
            run.assert_success();
            assert_eq!(run.stdout, HELLO_BODY, "{:?} {url}:\n{run}", proxy.kind);
        }
    }
    rig.assert_no_leak();
}

#[test]
fn curl_large_body_is_intact() {
    let rig = Rig::new();
    let http = rig.http();
    let want = big_body();
    for proxy in both(&rig) {
        let dest = rig.dir().join(format!("big-{:?}.bin", proxy.kind));
        let run = under(
            &rig,
            &proxy.url(),
            "curl",
            &[
                "-sS",
                "-m",
                "20",
                "-o",
                dest.to_str().unwrap(),
                &http.url("big.bin"),
            ],
        );
        run.assert_success();
        let got = std::fs::read(&dest).unwrap_or_default();
        assert!(
            got == want,
            "{:?}: {} bytes, corrupted or short",
            proxy.kind,
            got.len()
        );
    }
    rig.assert_no_leak();
}

#[test]
fn wget_ipv4_and_ipv6() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in both(&rig) {
        for url in [http.url("hello.txt"), http.url_v6("hello.txt")] {
            let run = under(
                &rig,
                &proxy.url(),
                "wget",
                &["-q", "-T", "15", "-t", "1", "-O", "-", &url],
            );
            run.assert_success();
            assert_eq!(run.stdout, HELLO_BODY, "{:?} {url}:\n{run}", proxy.kind);
        }
    }
    rig.assert_no_leak();
}

const PY_BLOCKING: &str = r#"
import socket, sys, urllib.request
url, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(urllib.request.urlopen(url, timeout=15).read().decode(), end="")
s = socket.create_connection((host, port), timeout=15)
print("peer=%s:%d" % s.getpeername()[:2])
s.sendall(b"py-echo\n")
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(100)
    if not d:
        break
    buf += d
print("echo=" + buf.decode().strip())
"#;

#[test]
fn python_urllib_and_a_blocking_socket_see_the_real_peer() {
    let rig = Rig::new();
    let http = rig.http();
    let echo = rig.echo();
    let py = python3();
    for proxy in both(&rig) {
        for (host, peer) in [
            ("203.0.113.2", "203.0.113.2:7"),
            ("2001:db8:2::2", "2001:db8:2::2:7"),
        ] {
            let run = under(
                &rig,
                &proxy.url(),
                py.to_str().unwrap(),
                &["-c", PY_BLOCKING, &http.url("hello.txt"), host, "7"],
            );
            run.assert_success();
            assert!(run.stdout.starts_with(HELLO_BODY), "{run}");
            run.assert_stdout_contains(&format!("peer={peer}\n"))
                .assert_stdout_contains("echo=py-echo");
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

const PY_ASYNCIO: &str = r#"
import asyncio, sys
async def main(host, port, n):
    async def one(i):
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 15)
        peer = w.get_extra_info("peername")[:2]
        w.write(b"a%d\n" % i)
        line = await asyncio.wait_for(r.readline(), 15)
        w.close()
        return peer, line.decode().strip()
    res = await asyncio.gather(*[one(i) for i in range(n)])
    for i, (peer, line) in enumerate(res):
        print("peer=%s:%d line=%s" % (peer[0], peer[1], line))
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"#;

#[test]
fn python_asyncio_concurrent_connections() {
    let rig = Rig::new();
    let echo = rig.echo();
    let py = python3();
    for proxy in both(&rig) {
        let run = under(
            &rig,
            &proxy.url(),
            py.to_str().unwrap(),
            &["-c", PY_ASYNCIO, "203.0.113.2", "7", "20"],
        );
        run.assert_success();
        for i in 0..20 {
            run.assert_stdout_contains(&format!("peer=203.0.113.2:7 line=a{i}\n"));
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn c_probe_blocking_and_event_loop_ipv4_ipv6() {
    let rig = Rig::new();
    let echo = rig.echo();
    let probe = probe();
    let probe = probe.to_str().unwrap();
    for proxy in both(&rig) {
        for mode in ["block", "nbpoll"] {
            for (host, peer) in [
                ("203.0.113.2", "203.0.113.2:7"),
                ("2001:db8:2::2", "[2001:db8:2::2]:7"),
            ] {
                let run = under(&rig, &proxy.url(), probe, &[mode, host, "7", "probe-echo"]);
                probe_connected(&run, "", peer, Some("probe-echo"));
                assert_eq!(run.code(), Some(0), "{run}");
            }
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn nonblocking_connect_then_back_to_blocking_io() {
    // The OpenSSH `timeout_connect` pattern: SOCK_NONBLOCK, connect, poll for POLLOUT,
    // SO_ERROR, then `fcntl(F_SETFL, flags & ~O_NONBLOCK)` and plain blocking read/write.
    let rig = Rig::new();
    let echo = rig.echo();
    let probe = probe();
    for proxy in both(&rig) {
        for (host, peer) in [
            ("203.0.113.2", "203.0.113.2:7"),
            ("2001:db8:2::2", "[2001:db8:2::2]:7"),
        ] {
            let run = under(
                &rig,
                &proxy.url(),
                probe.to_str().unwrap(),
                &["nonblock", host, "7", "back-to-blocking"],
            );
            probe_connected(&run, "", peer, Some("back-to-blocking"));
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn c_probe_ipv6_socket_to_an_ipv4_mapped_target() {
    let rig = Rig::new();
    let echo = rig.echo();
    let proxy = rig.microsocks();
    let run = under(
        &rig,
        &proxy.url(),
        probe().to_str().unwrap(),
        &["mapped", "203.0.113.2", "7", "mapped"],
    );
    probe_connected(&run, "", "[::ffff:203.0.113.2]:7", Some("mapped"));
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn a_forked_child_connects_through_the_proxy() {
    let rig = Rig::new();
    let echo = rig.echo();
    for proxy in both(&rig) {
        let run = under(
            &rig,
            &proxy.url(),
            probe().to_str().unwrap(),
            &["fork", "203.0.113.2", "7", "from-child"],
        );
        probe_connected(&run, "child: ", "203.0.113.2:7", Some("from-child"));
        run.assert_stdout_contains("child_exit=0\nalive\n");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn netcat_openbsd_and_ncat_echo() {
    let rig = Rig::new();
    let echo = rig.echo();
    for proxy in both(&rig) {
        for host in ["203.0.113.2", "2001:db8:2::2"] {
            let mut cmd = rig.laysocks(&proxy.url(), ["--", "nc", "-N", "-w", "5", host, "7"]);
            let run = rig.run_stdin(&mut cmd, b"nc-openbsd-echo\n");
            assert_eq!(run.stdout, "nc-openbsd-echo\n", "{:?}:\n{run}", proxy.kind);
            let mut cmd = rig.laysocks(&proxy.url(), ["--", "ncat", "-w", "5", host, "7"]);
            let run = rig.run_stdin(&mut cmd, b"ncat-echo\n");
            assert_eq!(run.stdout, "ncat-echo\n", "{:?}:\n{run}", proxy.kind);
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn ssh_runs_a_remote_command() {
    let rig = Rig::new();
    let sshd = rig.sshd();
    for proxy in both(&rig) {
        for host in ["203.0.113.2", "2001:db8:2::2"] {
            let mut args = sshd.ssh_args(host);
            args.extend(["echo".to_string(), "hi".to_string()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = under(&rig, &proxy.url(), "ssh", &args);
            run.assert_success();
            assert_eq!(run.stdout, "hi\n", "{:?} {host}:\n{run}", proxy.kind);
        }
    }
    rig.assert_no_leak();
}

#[test]
fn git_clone_over_http_and_git_protocol() {
    let rig = Rig::new();
    let git = rig.git();
    for proxy in both(&rig) {
        for (i, url) in [&git.http_url, &git.git_url, &git.git_url_v6]
            .into_iter()
            .enumerate()
        {
            let dest = rig.dir().join(format!("clone-{:?}-{i}", proxy.kind));
            let mut cmd = rig.laysocks(
                &proxy.url(),
                [
                    "--",
                    "git",
                    "clone",
                    "-q",
                    url.as_str(),
                    dest.to_str().unwrap(),
                ],
            );
            cmd.env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
            let run = rig.run(&mut cmd);
            run.assert_success();
            let readme = std::fs::read_to_string(dest.join("README")).unwrap_or_default();
            assert_eq!(readme, git.readme, "{:?} {url}:\n{run}", proxy.kind);
        }
    }
    rig.assert_no_leak();
}

#[test]
fn a_shell_script_and_its_exec_children_are_all_proxied() {
    let rig = Rig::new();
    let http = rig.http();
    let echo = rig.echo();
    let py = python3();
    let script = format!(
        "set -e\n\
         curl -sS -m 15 {hello}\n\
         wget -q -T 15 -t 1 -O - {hello6}\n\
         {probe} block 203.0.113.2 7 sh-probe\n\
         {py} -c 'import socket; s = socket.create_connection((\"203.0.113.2\", 7), timeout=15); s.sendall(b\"sh-py\\n\"); print(\"py=\" + s.recv(100).decode().strip())'\n\
         echo done\n",
        hello = http.url("hello.txt"),
        hello6 = http.url_v6("hello.txt"),
        probe = probe().display(),
        py = py.display(),
    );
    for proxy in both(&rig) {
        let run = under(&rig, &proxy.url(), "sh", &["-c", &script]);
        run.assert_success();
        let want = format!("{HELLO_BODY}{HELLO_BODY}");
        assert!(run.stdout.starts_with(&want), "{run}");
        probe_connected(&run, "", "203.0.113.2:7", Some("sh-probe"));
        run.assert_stdout_contains("py=sh-py\n")
            .assert_stdout_contains("done\n");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn user_and_password_authentication() {
    let rig = Rig::new();
    let http = rig.http();
    let echo = rig.echo();
    for proxy in [rig.microsocks_auth(), rig.danted()] {
        let run = under(
            &rig,
            &proxy.url(),
            "curl",
            &["-sS", "-m", "15", &http.url("hello.txt")],
        );
        run.assert_success();
        assert_eq!(run.stdout, HELLO_BODY, "{:?}:\n{run}", proxy.kind);
        laysocks_testkit::expect::no_secret(&run, PROXY_PASS);
        let run = under(
            &rig,
            &proxy.url(),
            probe().to_str().unwrap(),
            &["nbpoll", "203.0.113.2", "7", "authed"],
        );
        probe_connected(&run, "", "203.0.113.2:7", Some("authed"));
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn application_data_right_after_the_reply_reaches_the_program() {
    let rig = Rig::new();
    let fault = rig.fault(Fault::SuccessThenData(b"BANNER\n".to_vec()));
    for mode in ["block", "nbpoll"] {
        let run = under(
            &rig,
            &fault.url(),
            probe().to_str().unwrap(),
            &[mode, "203.0.113.2", "7", "after-banner"],
        );
        probe_connected(&run, "", "203.0.113.2:7", Some("after-banner"));
        let lines = run.stdout_lines();
        let b = lines.iter().position(|l| *l == "recv=BANNER");
        let e = lines.iter().position(|l| *l == "recv=after-banner");
        assert!(
            b.is_some() && b < e,
            "the banner must arrive first and intact:\n{run}"
        );
    }
    for s in fault.sessions() {
        assert_eq!(s.target.as_deref(), Some("203.0.113.2:7"), "{s:?}");
        assert_eq!(s.command, Some(1), "CONNECT: {s:?}");
    }
    rig.assert_no_leak();
}

#[test]
fn a_reply_dribbled_byte_by_byte_is_reassembled() {
    let rig = Rig::new();
    let fault = rig.fault(Fault::Dribble(std::time::Duration::from_millis(20)));
    for mode in ["block", "nbpoll"] {
        let run = under(
            &rig,
            &fault.url(),
            probe().to_str().unwrap(),
            &[mode, "2001:db8:2::2", "7", "dribbled"],
        );
        probe_connected(&run, "", "[2001:db8:2::2]:7", Some("dribbled"));
    }
    for s in fault.sessions() {
        assert_eq!(
            (s.atyp, s.target.as_deref()),
            (Some(4), Some("[2001:db8:2::2]:7")),
            "{s:?}"
        );
    }
    rig.assert_no_leak();
}

#[test]
fn verbose_mode_names_each_connection() {
    let rig = Rig::new();
    let http = rig.http();
    let proxy = rig.microsocks();
    let mut cmd = rig.laysocks(
        &proxy.url(),
        [
            "-v",
            "--",
            "curl",
            "-sS",
            "-m",
            "15",
            &http.url("hello.txt"),
        ],
    );
    let run = rig.run(&mut cmd);
    run.assert_success();
    assert_eq!(run.stdout, HELLO_BODY);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("laysocks") && l.contains("203.0.113.2:8080")),
        "-v should print a line naming the target:\n{run}"
    );
    rig.assert_no_leak();
}

#[test]
fn the_exit_status_is_the_programs() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    let run = under(
        &rig,
        &proxy.url(),
        "sh",
        &["-c", "echo out; echo err >&2; exit 42"],
    );
    assert_eq!(run.code(), Some(42), "{run}");
    assert_eq!(run.stdout, "out\n");
    assert!(run.stderr.contains("err\n"), "{run}");
    rig.assert_no_leak();
}

#[test]
fn excluded_destinations_go_direct_and_the_rig_sees_them() {
    let rig = Rig::new();
    let http = rig.http();
    let echo = rig.echo();
    let proxy = rig.microsocks();
    // Port 8080 on the target is excluded: curl connects directly, which in this rig
    // means "no route" — and the leak detector must notice exactly that.
    let mut cmd = rig.laysocks(
        &proxy.url(),
        [
            "--exclude",
            "203.0.113.2/32:8080",
            "--",
            "curl",
            "-sS",
            "-m",
            "15",
            &http.url("hello.txt"),
        ],
    );
    let run = rig.run(&mut cmd);
    assert_eq!(
        run.code(),
        Some(7),
        "an excluded destination must go direct:\n{run}"
    );
    let err = rig
        .check_no_leak()
        .expect_err("the direct connect must show as a leak");
    assert!(err.contains("IPv4"), "{err}");
    // Other ports of the same host still go through the proxy.
    rig.reset_leak_baseline();
    let mut cmd = rig.laysocks(
        &proxy.url(),
        [
            "--exclude",
            "203.0.113.2/32:8080",
            "--",
            probe().to_str().unwrap(),
            "block",
            "203.0.113.2",
            "7",
            "not-excluded",
        ],
    );
    let run = rig.run(&mut cmd);
    probe_connected(&run, "", "203.0.113.2:7", Some("not-excluded"));
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn credentials_never_reach_the_programs_environment_or_arguments() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in [rig.microsocks_auth(), rig.danted()] {
        // The program (and its children) see neither the password in the environment
        // nor on any command line, yet their connections still authenticate.
        let script = format!(
            "env; tr '\\0' ' ' < /proc/self/cmdline; echo; curl -sS -m 15 {}",
            http.url("hello.txt")
        );
        let run = under(&rig, &proxy.url(), "sh", &["-c", &script]);
        run.assert_success();
        assert!(run.stdout.ends_with(HELLO_BODY), "{:?}:\n{run}", proxy.kind);
        laysocks_testkit::expect::no_secret(&run, PROXY_PASS);
    }
    rig.assert_no_leak();
}

#[test]
fn a_pending_nonblocking_connect_looks_like_syn_sent() {
    // DESIGN.md §3.4: while the proxy has not answered, the socket behaves like a
    // kernel connect in SYN_SENT: no peer, EALREADY, SO_ERROR 0, EAGAIN, not writable.
    let rig = Rig::new();
    let fault = rig.fault(Fault::NeverAnswer);
    // The expectations are the kernel's (connect(2), getpeername(2)). The connect timeout
    // only bounds the run if the layer wrongly blocks inside connect().
    let run = rig.run(&mut rig.laysocks(
        &fault.url(),
        [
            "--connect-timeout",
            "3",
            "--",
            probe().to_str().unwrap(),
            "pending",
            "203.0.113.2",
            "7",
        ],
    ));
    assert_eq!(
        run.stdout_lines(),
        [
            "connect=EINPROGRESS",
            "getpeername=ENOTCONN",
            "connect2=EALREADY",
            "so_error=0",
            "read=EAGAIN",
            "write=EAGAIN",
            "poll=0",
            "alive"
        ],
        "{run}"
    );
    rig.assert_no_leak();
}

#[test]
fn a_slow_proxy_does_not_block_the_event_loop() {
    // Ten handshakes from one asyncio thread through a proxy that takes ~0.5 s to answer
    // each: done concurrently they take ~0.5 s; a layer that blocks inside connect()
    // serialises them (~5 s), which is what proxychains-ng does (DESIGN.md §8).
    let rig = Rig::new();
    let fault = rig.fault(Fault::Dribble(std::time::Duration::from_millis(30)));
    let py = python3();
    let run = under(
        &rig,
        &fault.url(),
        py.to_str().unwrap(),
        &["-c", PY_ASYNCIO, "203.0.113.2", "7", "10"],
    );
    run.assert_success();
    for i in 0..10 {
        run.assert_stdout_contains(&format!("peer=203.0.113.2:7 line=a{i}\n"));
    }
    assert!(
        run.elapsed < std::time::Duration::from_millis(2500),
        "10 concurrent handshakes of ~0.5 s took {:?}: connect() blocks the event loop\n{run}",
        run.elapsed
    );
    assert_eq!(fault.sessions().len(), 10);
    rig.assert_no_leak();
}
