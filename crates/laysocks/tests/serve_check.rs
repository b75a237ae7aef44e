//! `laysocks serve` with a real client (curl), and `laysocks check` against our server
//! and against a real microsocks. Loopback only.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn curl(args: &[&str]) -> (std::process::ExitStatus, String) {
    need("curl", "curl");
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "10"]).args(args);
    // curl honours proxy variables; keep the environment's out of the test.
    for k in [
        "ALL_PROXY",
        "all_proxy",
        "http_proxy",
        "HTTP_PROXY",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(k);
    }
    let (st, out, _) = run(c, T);
    (st, out)
}

#[test]
fn serve_relays_curl() {
    let http = http_server("hello through laysocks serve");
    let srv = Serve::start(&["-v"]);
    let url = format!("http://127.0.0.1:{}/", http.port);
    let proxy = format!("127.0.0.1:{}", srv.port);
    let (st, body) = curl(&["--socks5", &proxy, &url]);
    assert!(st.success(), "curl failed: {st}");
    assert_eq!(body, "hello through laysocks serve");

    // A name, resolved by the server (ATYP 0x03).
    let (st, body) = curl(&[
        "--socks5-hostname",
        &proxy,
        &format!("http://localhost:{}/", http.port),
    ]);
    assert!(st.success(), "curl failed: {st}");
    assert_eq!(body, "hello through laysocks serve");

    // A closed port: curl reports the proxy's refusal (exit 97: proxy handshake error).
    let (st, _) = curl(&[
        "--socks5",
        &proxy,
        &format!("http://127.0.0.1:{}/", free_port()),
    ]);
    assert_eq!(st.code(), Some(97));

    let want_ok = format!("-> 127.0.0.1:{}: ok,", http.port);
    assert!(
        eventually(Duration::from_secs(5), || srv.log_text().contains(&want_ok)),
        "no -v line: {}",
        srv.log_text()
    );
    let log = srv.log_text();
    assert!(log.contains(" B up, ") && log.contains(" B down"), "{log}");
    assert!(
        eventually(Duration::from_secs(5), || srv
            .log_text()
            .contains("(REP 0x05)")),
        "{}",
        srv.log_text()
    );
}

#[test]
fn serve_with_user_password() {
    let http = http_server("authenticated");
    let srv = Serve::start(&["--user", "alice:s3cret"]);
    let url = format!("http://127.0.0.1:{}/", http.port);
    let good = format!("socks5://alice:s3cret@127.0.0.1:{}", srv.port);
    let (st, body) = curl(&["-x", &good, &url]);
    assert!(st.success(), "{st}");
    assert_eq!(body, "authenticated");
    let bad = format!("socks5://alice:nope@127.0.0.1:{}", srv.port);
    let (st, _) = curl(&["-x", &bad, &url]);
    assert!(!st.success());
    let none = format!("socks5://127.0.0.1:{}", srv.port);
    let (st, _) = curl(&["-x", &none, &url]);
    assert!(!st.success());
}

fn check(url: &str, extra: &[&str]) -> (Option<i32>, String) {
    let s = Scratch::new("check");
    let mut c = laysocks(&s.0);
    c.args(["check", url])
        .args(extra)
        .args(["--connect-timeout", "5"]);
    let (st, out, err) = run(c, T);
    (st.code(), format!("{out}{err}"))
}

#[test]
fn check_against_our_server() {
    let http = http_server("x");
    let srv = Serve::start(&[]);
    let url = format!("socks5://127.0.0.1:{}", srv.port);
    let target = format!("127.0.0.1:{}", http.port);
    let (code, out) = check(&url, &["--target", &target]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no authentication accepted"), "{out}");
    assert!(out.contains("user/password refused"), "{out}");
    assert!(
        out.contains(&format!("target:  {target} connected in")),
        "{out}"
    );
    assert!(
        out.contains("\ndns:     remote (names go to the proxy)\n"),
        "{out}"
    );
    // Our server is CONNECT-only: UDP ASSOCIATE gets REP 0x07, which is information, not a
    // failure (exit 0 above).
    assert!(
        out.contains(
            "\nudp:     not supported (proxy replied: command not supported)\nresult:  ok\n"
        ),
        "{out}"
    );

    // Remote DNS (the default, with socks5:// too): a name goes to the proxy as a name,
    // and our server resolves it.
    let named = format!("localhost:{}", http.port);
    let (code, out) = check(
        &url,
        &[
            "--target",
            &named,
            "--dns-server",
            "203.0.113.53",
            "--direct-name",
            ".Internal",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("dns:     remote (names go to the proxy), dns_server 203.0.113.53:53, direct internal\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("target:  {named} connected in")),
        "{out}"
    );
    let (code, out) = check(&url, &["--dns", "local"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("dns:     local (names are resolved on this machine)"),
        "{out}"
    );
    let (code, out) = check(
        &format!("socks5h://127.0.0.1:{}", srv.port),
        &["--dns", "local"],
    );
    assert_eq!(code, Some(125), "{out}");
    assert!(out.contains("asks the proxy to resolve names"), "{out}");

    let closed = format!("127.0.0.1:{}", free_port());
    let (code, out) = check(&url, &["--target", &closed]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused"), "{out}");
    assert!(out.contains("hint:"), "{out}");

    let authed = Serve::start(&["--user", "bob:pw"]);
    let (code, out) = check(&format!("socks5://bob:pw@127.0.0.1:{}", authed.port), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("auth:    user bob: accepted"), "{out}");
    let (code, out) = check(
        &format!("socks5://bob:wrong@127.0.0.1:{}", authed.port),
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("wrong user or password"), "{out}");

    // Nothing listening.
    let (code, out) = check(&format!("socks5://127.0.0.1:{}", free_port()), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("connect: failed"), "{out}");
}

/// microsocks on a free loopback port, killed (by pid) on drop.
struct Microsocks(std::process::Child, u16);

impl Microsocks {
    fn start(user: &str, pass: &str) -> Microsocks {
        need("microsocks", "microsocks");
        let port = free_port();
        let child = Command::new("microsocks")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-u",
                user,
                "-P",
                pass,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start microsocks");
        assert!(
            eventually(Duration::from_secs(5), || listening(port)),
            "microsocks did not listen on 127.0.0.1:{port}"
        );
        Microsocks(child, port)
    }
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn check_against_microsocks() {
    let http = http_server("x");
    let ms = Microsocks::start("alice", "wonderland");
    let target = format!("127.0.0.1:{}", http.port);

    let (code, out) = check(
        &format!("socks5://alice:wonderland@127.0.0.1:{}", ms.1),
        &["--target", &target],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("no authentication refused, user/password accepted"),
        "{out}"
    );
    assert!(out.contains("auth:    user alice: accepted"), "{out}");
    assert!(out.contains("connected in"), "{out}");
    // microsocks has no UDP ASSOCIATE either; the line is there, the exit status is 0.
    assert!(
        out.contains("\nudp:     not supported (proxy replied: command not supported)\n"),
        "{out}"
    );

    let (code, out) = check(
        &format!("socks5://alice:wrong@127.0.0.1:{}", ms.1),
        &["--target", &target],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("wrong user or password"), "{out}");
    assert!(!out.contains("wrong@"), "the password is not shown: {out}");

    let (code, out) = check(&format!("socks5://127.0.0.1:{}", ms.1), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("requires a user name and password"), "{out}");
}

/// Dante's `danted` on a free loopback port, no authentication, UDP ASSOCIATE allowed;
/// killed (by pid) on drop. It needs root (it switches to `nobody` for its I/O children).
struct Danted(std::process::Child, u16);

impl Danted {
    fn start(s: &Scratch) -> Danted {
        need("danted", "dante-server");
        let port = free_port();
        let conf = s.file(
            "danted.conf",
            &format!(
                "logoutput: stderr\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: 127.0.0.1\n\
                 socksmethod: none\n\
                 clientmethod: none\n\
                 user.privileged: root\n\
                 user.unprivileged: nobody\n\
                 client pass {{ from: 0/0 to: 0/0 }}\n\
                 socks pass {{ from: 0/0 to: 0/0 command: bind connect udpassociate bindreply udpreply }}\n"
            ),
        );
        let child = Command::new("danted")
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(s.0.join("danted.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start danted");
        let mut d = Danted(child, port);
        assert!(
            eventually(Duration::from_secs(10), || listening(port)),
            "danted did not listen on 127.0.0.1:{port}: {:?}",
            d.0.try_wait()
        );
        d
    }
}

impl Drop for Danted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn check_udp_through_danted() {
    assert_eq!(
        euid(),
        0,
        "this test runs danted (package dante-server), which needs root: run the suite as root (sudo bash .ci/run)"
    );
    let s = Scratch::new("danted");
    let dante = Danted::start(&s);
    // The target: an HTTP server for the CONNECT, and a UDP echo on the same port number.
    let http = http_server("x");
    let echo = std::net::UdpSocket::bind(("127.0.0.1", http.port)).expect("udp echo port");
    echo.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let echoer = std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        let (n, from) = echo.recv_from(&mut b).expect("a datagram from danted");
        echo.send_to(&b[..n], from).unwrap();
        (n, from)
    });
    let url = format!("socks5://127.0.0.1:{}", dante.1);
    let target = format!("127.0.0.1:{}", http.port);
    let (code, out) = check(&url, &["--target", &target]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("\nudp:     supported (relay 127.0.0.1:"),
        "{out}"
    );
    assert!(
        out.contains(&format!("\nudp:     {target} answered a datagram in "))
            && out.contains(&format!("(17 bytes from {target})\nresult:  ok\n")),
        "{out}"
    );
    let (n, from) = echoer.join().unwrap();
    assert_eq!(n, 17, "the probe is a 17-byte DNS query");
    assert_ne!(from.port(), dante.1, "it came from danted's UDP relay");

    // Without a target: the relay only, no datagram.
    let (code, out) = check(&url, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\nudp:     supported (relay "), "{out}");
    assert_eq!(out.matches("\nudp:").count(), 1, "{out}");
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}
