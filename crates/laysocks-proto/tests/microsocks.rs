//! Our client engine against an implementation we did not write: `microsocks` (Debian
//! package `microsocks`), driven over real loopback TCP. Covers no auth, RFC 1929
//! user/pass (right and wrong password), each ATYP, an error reply, and that bytes the
//! target sends right after the reply are left in the socket for the application.

mod support;

use laysocks_proto::{
    ClientHandshake, Credentials, DomainName, Error, ErrorKind, Host, ReplyCode, TargetAddr,
};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use support::*;

const MICROSOCKS: &str = "/usr/bin/microsocks";

/// A running microsocks, killed by PID when dropped.
struct Microsocks {
    child: Child,
    addr: SocketAddr,
}

impl Microsocks {
    /// `auth`: test-only credentials; microsocks takes them only as arguments.
    fn start(auth: Option<(&str, &str)>) -> Microsocks {
        require(MICROSOCKS, "microsocks");
        let port = free_port();
        let mut cmd = Command::new(MICROSOCKS);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((u, p)) = auth {
            cmd.args(["-u", u, "-P", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {MICROSOCKS}: {e} (Debian package `microsocks`)"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let m = Microsocks { child, addr };
        wait_listening(addr);
        m
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).expect("connect to microsocks")
    }
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        // Kill our own child by its PID, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn domain(name: &str, port: u16) -> TargetAddr {
    TargetAddr {
        host: Host::Domain(DomainName::new(name.as_bytes()).unwrap()),
        port,
    }
}

/// CONNECT through `proxy` to `target`, check the banner arrives intact after the reply,
/// then echo a line.
fn connect_and_echo(proxy: &Microsocks, target: TargetAddr, auth: Option<&Credentials>) {
    let mut s = proxy.connect();
    let bound = drive(&mut s, ClientHandshake::new(&target, auth))
        .unwrap_or_else(|e| panic!("handshake to {target}: {e}"));
    // microsocks reports some bound address; it must at least parse as one.
    assert!(bound.to_socket_addr().is_some() || matches!(bound.host, Host::Domain(_)));
    assert_eq!(
        read_n(&mut s, 8),
        b"BANNER\r\n",
        "bytes after the reply were lost"
    );
    s.write_all(b"ping\n").unwrap();
    assert_eq!(read_n(&mut s, 5), b"ping\n");
}

#[test]
fn no_auth_ipv4_ipv6_and_domain() {
    let proxy = Microsocks::start(None);
    let t4 = echo_target("127.0.0.1:0", b"BANNER\r\n", 2);
    let t6 = echo_target("[::1]:0", b"BANNER\r\n", 1);
    connect_and_echo(&proxy, TargetAddr::from(t4), None);
    connect_and_echo(&proxy, TargetAddr::from(t6), None);
    // ATYP 0x03: microsocks resolves the name itself.
    connect_and_echo(&proxy, domain("127.0.0.1", t4.port()), None);
}

#[test]
fn user_pass_accepted() {
    let proxy = Microsocks::start(Some(("tester", "opensesame")));
    let t = echo_target("127.0.0.1:0", b"BANNER\r\n", 2);
    let c = Credentials::new(b"tester", b"opensesame").unwrap();
    connect_and_echo(&proxy, TargetAddr::from(t), Some(&c));
    connect_and_echo(&proxy, domain("127.0.0.1", t.port()), Some(&c));
}

#[test]
fn wrong_password_is_auth_rejected() {
    let proxy = Microsocks::start(Some(("tester", "opensesame")));
    let t = echo_target("127.0.0.1:0", b"BANNER\r\n", 1);
    let c = Credentials::new(b"tester", b"wrong").unwrap();
    let mut s = proxy.connect();
    let err = drive(&mut s, ClientHandshake::new(&TargetAddr::from(t), Some(&c))).unwrap_err();
    assert!(matches!(err, Error::AuthRejected(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::AccessDenied);
}

#[test]
fn no_credentials_against_auth_proxy() {
    let proxy = Microsocks::start(Some(("tester", "opensesame")));
    let t = echo_target("127.0.0.1:0", b"BANNER\r\n", 1);
    let mut s = proxy.connect();
    let err = drive(&mut s, ClientHandshake::new(&TargetAddr::from(t), None)).unwrap_err();
    assert_eq!(err, Error::NoAcceptableMethods);
}

#[test]
fn refused_target_is_an_error_reply() {
    let proxy = Microsocks::start(None);
    // A port nobody listens on: bind, note, close.
    let closed = free_port();
    let mut s = proxy.connect();
    let target = TargetAddr::from(SocketAddr::from(([127, 0, 0, 1], closed)));
    let err = drive(&mut s, ClientHandshake::new(&target, None)).unwrap_err();
    assert_eq!(err, Error::Reply(ReplyCode::ConnectionRefused), "{err}");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}
