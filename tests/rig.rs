//! The rig proves itself before it is trusted to judge the layer: isolation holds, the
//! leak detector sees leaks, every server answers real native SOCKS5 clients (curl,
//! ncat, git, ssh), the fault server plays its scripts byte for byte, the C probe reports
//! what the kernel says, and everything is gone after drop. None of this uses laysocks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use laysocks_testkit::{
    big_body, in_netns, probe, Fault, Rig, CLOSED_PORT, HELLO_BODY, PROXY_PASS, PROXY_USER,
    PROXY_V4, REMOTE_NAME, TARGET6_NAME, TARGET_NAME, TARGET_V4,
};

#[test]
fn a_direct_connect_from_the_client_fails_and_is_seen_as_a_leak() {
    let rig = Rig::new();
    let http = rig.http();
    rig.assert_no_leak();

    let run = rig.run(&mut rig.client_cmd("curl", ["-sS", "-m", "5", &http.url("hello.txt")]));
    assert_eq!(run.code(), Some(7), "curl must fail to connect:\n{run}");
    let err = rig
        .check_no_leak()
        .expect_err("the IPv4 leak must be detected");
    assert!(err.contains("IPv4"), "{err}");
    assert!(!err.contains("IPv6"), "{err}");

    rig.reset_leak_baseline();
    let run = rig.run(&mut rig.client_cmd("curl", ["-sS", "-m", "5", &http.url_v6("hello.txt")]));
    assert_eq!(run.code(), Some(7), "curl must fail to connect:\n{run}");
    let err = rig
        .check_no_leak()
        .expect_err("the IPv6 leak must be detected");
    assert!(err.contains("IPv6"), "{err}");
    assert!(!err.contains("IPv4"), "{err}");
}

#[test]
fn the_dns_canary_counts_queries_from_the_client() {
    let rig = Rig::new();
    let run = rig.run(&mut rig.client_cmd("getent", ["hosts", "canary-probe.test"]));
    assert!(!run.success(), "the name must not resolve:\n{run}");
    let err = rig
        .check_no_leak()
        .expect_err("the DNS query must be detected");
    assert!(
        err.contains("DNS") && err.contains("canary-probe.test"),
        "{err}"
    );
    // Names in the client's /etc/hosts resolve locally, without a query.
    rig.reset_leak_baseline();
    // AF_UNSPEC (`ahosts`): `getent hosts` asks for AF_INET6 first and glibc then queries
    // DNS for a name that /etc/hosts lists only with an IPv4 address.
    let run = rig.run(&mut rig.client_cmd("getent", ["ahosts", TARGET_NAME]));
    run.assert_success()
        .assert_stdout_contains(&TARGET_V4.to_string());
    let run = rig.run(&mut rig.client_cmd("getent", ["ahosts", TARGET6_NAME]));
    run.assert_success().assert_stdout_contains("2001:db8:2::2");
    rig.assert_no_leak();
}

#[test]
fn the_proxy_host_is_the_only_host_the_client_reaches() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    // The proxy host answers on both families...
    for addr in [proxy.addr(), proxy.addr_v6()] {
        let ok = in_netns(rig.client_ns(), move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok()
        });
        assert!(ok, "the client cannot reach the proxy at {addr}");
    }
    // ...while the proxy host's far side and the target do not exist for the client.
    for addr in [
        "203.0.113.1:1080",
        "203.0.113.2:8080",
        "[2001:db8:2::2]:8080",
    ] {
        let a: SocketAddr = addr.parse().unwrap();
        let err = in_netns(rig.client_ns(), move || {
            TcpStream::connect_timeout(&a, Duration::from_secs(5)).unwrap_err()
        });
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ENETUNREACH),
            "connect to {addr} from the client: {err}"
        );
    }
    assert!(rig.check_no_leak().is_err());
}

#[test]
fn native_curl_through_microsocks() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    let http = rig.http();
    for (socks, url) in [
        ("--socks5", http.url("hello.txt")),
        ("--socks5", http.url_v6("hello.txt")),
        (
            "--socks5-hostname",
            http.url_named(REMOTE_NAME, "hello.txt"),
        ),
    ] {
        for p in [proxy.host_port(), proxy.addr_v6().to_string()] {
            let run = rig.run(&mut rig.client_cmd("curl", ["-sS", "-m", "10", socks, &p, &url]));
            run.assert_success();
            assert_eq!(run.stdout, HELLO_BODY, "{run}");
        }
    }
    // Integrity of a larger body.
    let dest = rig.dir().join("big.bin");
    let run = rig.run(&mut rig.client_cmd(
        "curl",
        [
            "-sS",
            "-m",
            "20",
            "--socks5",
            &proxy.host_port(),
            "-o",
            dest.to_str().unwrap(),
            &http.url("big.bin"),
        ],
    ));
    run.assert_success();
    assert!(
        std::fs::read(&dest).unwrap() == big_body(),
        "big.bin corrupted"
    );
    rig.assert_no_leak();
}

#[test]
fn native_curl_through_danted_and_microsocks_auth() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in [rig.danted(), rig.microsocks_auth()] {
        for (p, url) in [
            (proxy.url(), http.url("hello.txt")),
            (proxy.url_v6(), http.url_v6("hello.txt")),
            (proxy.url_v6(), http.url("hello.txt")),
            (proxy.url(), http.url_v6("hello.txt")),
        ] {
            // curl takes the credentials from the proxy URL (a test fixture, see PROXY_PASS).
            let run = rig.run(&mut rig.client_cmd("curl", ["-sS", "-m", "10", "-x", &p, &url]));
            run.assert_success();
            assert_eq!(run.stdout, HELLO_BODY, "{proxy:?}: {run}");
        }
        let wrong = proxy.url_with(PROXY_USER, "wrong-password");
        let run = rig.run(&mut rig.client_cmd(
            "curl",
            ["-sS", "-m", "10", "-x", &wrong, &http.url("hello.txt")],
        ));
        assert_eq!(
            run.code(),
            Some(97),
            "{proxy:?} must reject a wrong password:\n{run}"
        );
        // Without credentials at all.
        let run = rig.run(&mut rig.client_cmd(
            "curl",
            [
                "-sS",
                "-m",
                "10",
                "--socks5",
                &proxy.host_port(),
                &http.url("hello.txt"),
            ],
        ));
        assert_eq!(
            run.code(),
            Some(97),
            "{proxy:?} must want credentials:\n{run}"
        );
    }
    let _ = PROXY_PASS;
    rig.assert_no_leak();
}

#[test]
fn native_ncat_echo_comes_from_the_proxy_host() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    let echo = rig.echo();
    for target in [echo.addr(), echo.addr_v6()] {
        let run = rig.run_stdin(
            &mut rig.client_cmd(
                "ncat",
                [
                    "--proxy",
                    &proxy.host_port(),
                    "--proxy-type",
                    "socks5",
                    "-w",
                    "5",
                    &target.ip().to_string(),
                    &target.port().to_string(),
                ],
            ),
            b"ping-through-socks\n",
        );
        assert!(
            run.stdout.contains("ping-through-socks"),
            "ncat echo via {target}:\n{run}"
        );
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn native_ssh_and_git_through_microsocks() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    let sshd = rig.sshd();
    let git = rig.git();

    let proxy_cmd = format!(
        "ProxyCommand=ncat --proxy {} --proxy-type socks5 %h %p",
        proxy.host_port()
    );
    let mut args = vec!["-o".to_string(), proxy_cmd];
    args.extend(sshd.ssh_args(&TARGET_V4.to_string()));
    args.push("echo".into());
    args.push("hi-from-sshd".into());
    let run = rig.run(&mut rig.client_cmd("ssh", &args));
    run.assert_success().assert_stdout_contains("hi-from-sshd");

    // git over dumb HTTP through curl's SOCKS support.
    let dest = rig.dir().join("clone-http");
    let run = rig.run(
        rig.client_cmd(
            "git",
            [
                "-c",
                &format!("http.proxy=socks5://{}", proxy.host_port()),
                "clone",
                "-q",
                &git.http_url,
                dest.to_str().unwrap(),
            ],
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null"),
    );
    run.assert_success();
    assert_eq!(read(&dest.join("README")), git.readme);

    // git:// through a proxy command.
    let script = rig.dir().join("git-proxy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec nc -X 5 -x {} \"$1\" \"$2\"\n",
            proxy.host_port()
        ),
    )
    .unwrap();
    chmod_x(&script);
    let dest = rig.dir().join("clone-git");
    let run = rig.run(
        rig.client_cmd(
            "git",
            [
                "-c",
                &format!("core.gitProxy={}", script.display()),
                "clone",
                "-q",
                &git.git_url,
                dest.to_str().unwrap(),
            ],
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null"),
    );
    run.assert_success();
    assert_eq!(read(&dest.join("README")), git.readme);
    rig.assert_no_leak();
}

/// A raw SOCKS5 client on a thread in the client namespace: sends `send` in one write,
/// then reads until EOF, 2 s of silence, or `want` bytes.
fn raw(rig: &Rig, port: u16, send: Vec<u8>, want: usize) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    in_netns(rig.client_ns(), move || {
        let mut s = TcpStream::connect((PROXY_V4, port)).expect("connect to the fault server");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(&send).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let mut end = None;
        while got.len() < want {
            match s.read(&mut buf) {
                Ok(0) => {
                    end = Some(std::io::ErrorKind::UnexpectedEof);
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    end = Some(e.kind());
                    break;
                }
            }
        }
        (got, end)
    })
}

const GREETING: [u8; 3] = [5, 1, 0];
/// CONNECT 203.0.113.2:7 (RFC 1928 §4).
const REQUEST: [u8; 10] = [5, 1, 0, 1, 203, 0, 113, 2, 0, 7];

fn greeting_and_request() -> Vec<u8> {
    let mut v = GREETING.to_vec();
    v.extend_from_slice(&REQUEST);
    v
}

#[test]
fn the_fault_server_plays_its_scripts() {
    use std::io::ErrorKind::*;
    let rig = Rig::new();

    let f = rig.fault(Fault::BadVersion);
    assert_eq!(raw(&rig, f.port, GREETING.to_vec(), 2).0, [4, 0]);
    assert_eq!(f.sessions()[0].methods, [0]);

    let f = rig.fault(Fault::NoAcceptableMethods);
    assert_eq!(raw(&rig, f.port, GREETING.to_vec(), 2).0, [5, 0xFF]);

    let f = rig.fault(Fault::RejectAuth);
    let mut auth = vec![5, 1, 2, 1, 4];
    auth.extend_from_slice(b"user");
    auth.push(2);
    auth.extend_from_slice(b"pw");
    assert_eq!(raw(&rig, f.port, auth, 4).0, [5, 2, 1, 1]);
    assert_eq!(f.sessions()[0].username.as_deref(), Some(&b"user"[..]));

    for code in [1u8, 2, 3, 4, 5, 6, 7, 8] {
        let f = rig.fault(Fault::Reply(code));
        let (got, end) = raw(&rig, f.port, greeting_and_request(), 100);
        assert_eq!(got, [5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0], "REP {code}");
        assert_eq!(end, Some(UnexpectedEof), "REP {code} then close");
        assert_eq!(f.sessions()[0].target.as_deref(), Some("203.0.113.2:7"));
    }

    let f = rig.fault(Fault::CloseAfterGreeting);
    let (got, end) = raw(&rig, f.port, GREETING.to_vec(), 2);
    assert!(
        got.is_empty() && end == Some(UnexpectedEof),
        "{got:?} {end:?}"
    );

    let f = rig.fault(Fault::CloseAfterRequest);
    let (got, end) = raw(&rig, f.port, greeting_and_request(), 100);
    assert!(
        got == [5, 0] && end == Some(UnexpectedEof),
        "{got:?} {end:?}"
    );

    let f = rig.fault(Fault::ResetAfterGreeting);
    let (got, end) = raw(&rig, f.port, GREETING.to_vec(), 2);
    assert!(
        got.is_empty() && end == Some(ConnectionReset),
        "{got:?} {end:?}"
    );

    let f = rig.fault(Fault::ResetAfterRequest);
    let (got, end) = raw(&rig, f.port, greeting_and_request(), 100);
    assert!(
        got == [5, 0] && end == Some(ConnectionReset),
        "{got:?} {end:?}"
    );

    let f = rig.fault(Fault::Garbage(b"HTTP/1.0 400 Bad Request\r\n\r\n".to_vec()));
    let (got, _) = raw(&rig, f.port, GREETING.to_vec(), 100);
    assert_eq!(got, b"HTTP/1.0 400 Bad Request\r\n\r\n");

    let f = rig.fault(Fault::NeverAnswer);
    let (got, end) = raw(&rig, f.port, greeting_and_request(), 1);
    assert!(got.is_empty() && end == Some(WouldBlock), "{got:?} {end:?}");

    let f = rig.fault(Fault::Dribble(Duration::from_millis(5)));
    let mut send = greeting_and_request();
    send.extend_from_slice(b"after\n");
    let (got, _) = raw(&rig, f.port, send, 2 + 17 + 6);
    let mut want = vec![5, 0, 5, 0, 0, 3, 10];
    want.extend_from_slice(b"bound.test");
    want.extend_from_slice(&[4, 0x38]);
    want.extend_from_slice(b"after\n");
    assert_eq!(got, want);

    let f = rig.fault(Fault::SuccessThenData(b"BANNER\n".to_vec()));
    let (got, _) = raw(&rig, f.port, greeting_and_request(), 2 + 22 + 7);
    assert_eq!(&got[..6], [5, 0, 5, 0, 0, 4]);
    assert_eq!(&got[got.len() - 7..], b"BANNER\n");

    let f = rig.fault(Fault::Echo);
    let mut name_req = vec![5, 1, 0, 5, 1, 0, 3, 11];
    name_req.extend_from_slice(b"remote.test");
    name_req.extend_from_slice(&[0, 80]);
    name_req.extend_from_slice(b"data");
    let (got, _) = raw(&rig, f.port, name_req, 2 + 10 + 4);
    assert_eq!(
        got,
        [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0, b'd', b'a', b't', b'a']
    );
    let s = &f.sessions()[0];
    assert_eq!(
        (s.atyp, s.target.as_deref()),
        (Some(3), Some("remote.test:80"))
    );
    assert_eq!(s.after_request, b"data");
    rig.assert_no_leak();
}

#[test]
fn the_probe_reports_what_the_kernel_says() {
    let rig = Rig::new();
    let echo = rig.echo();
    let probe = probe();
    // From the proxy host, which reaches the target directly.
    let port = echo.port.to_string();
    for mode in ["block", "nonblock", "nbpoll", "mapped"] {
        let run = rig.run(&mut rig.proxy_cmd(&probe, [mode, "203.0.113.2", &port, "hello"]));
        run.assert_success();
        let peer = if mode == "mapped" {
            "ok peer=[::ffff:203.0.113.2]:7"
        } else {
            "ok peer=203.0.113.2:7"
        };
        assert_eq!(
            run.stdout_lines()
                .into_iter()
                .filter(|l| *l != "connect=EINPROGRESS")
                .collect::<Vec<_>>(),
            [peer, "so_error=0", "recv=hello", "alive"],
            "{mode}: {run}"
        );
    }
    let run = rig.run(&mut rig.proxy_cmd(&probe, ["fork", "2001:db8:2::2", &port, "x"]));
    run.assert_success();
    assert_eq!(
        run.stdout_lines(),
        [
            "child: ok peer=[2001:db8:2::2]:7",
            "child: so_error=0",
            "child: recv=x",
            "child: alive",
            "child_exit=0",
            "alive"
        ],
        "{run}"
    );
    for mode in ["block", "nonblock", "nbpoll"] {
        let closed = CLOSED_PORT.to_string();
        let run = rig.run(&mut rig.proxy_cmd(&probe, [mode, "198.51.100.1", &closed]));
        assert_eq!(run.code(), Some(1), "{run}");
        assert!(
            run.stdout.contains("errno=ECONNREFUSED\n") && run.stdout.ends_with("alive\n"),
            "{run}"
        );
    }
    // And from the client, straight to the target: no route.
    let run = rig.run(&mut rig.client_cmd(&probe, ["block", "203.0.113.2", &port]));
    run.assert_stdout_contains("errno=ENETUNREACH")
        .assert_stdout_contains("alive");
}

#[test]
fn everything_is_gone_after_drop() {
    let rig = Rig::new();
    let (c, p, t) = (
        rig.client_ns().to_string(),
        rig.proxy_ns().to_string(),
        rig.target_ns().to_string(),
    );
    let dir = rig.dir().to_path_buf();
    rig.microsocks();
    rig.http();
    let pids: Vec<String> = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "pids", &p])
            .output()
            .unwrap()
            .stdout,
    )
    .split_whitespace()
    .map(String::from)
    .collect();
    assert!(!pids.is_empty(), "microsocks should run in {p}");
    drop(rig);
    for ns in [&c, &p, &t] {
        assert!(
            !Path::new(&format!("/run/netns/{ns}")).exists(),
            "{ns} still exists"
        );
        assert!(
            !Path::new(&format!("/etc/netns/{ns}")).exists(),
            "/etc/netns/{ns} still exists"
        );
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs"
        );
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}
