//! Our server engine against a client we did not write: curl (Debian package `curl`),
//! with `--socks5` (IPv4 ATYP), `--socks5-hostname` (domain ATYP) and `--proxy-user`
//! (RFC 1929; the credentials reach curl through a config on stdin, not argv).
//!
//! The server is a tiny test-local loop around `ServerHandshake`: it reads what it can,
//! keeps any bytes the engine did not consume (they belong to the relay), connects to the
//! requested target and then relays in both directions.

mod support;

use laysocks_proto::{
    Credentials, Host, ReplyCode, Request, ServerAuth, ServerHandshake, ServerStatus, TargetAddr,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use support::*;

const CURL: &str = "/usr/bin/curl";

/// What the server saw, reported back to the test.
#[derive(Debug)]
struct Seen {
    request: Option<Request>,
    username: Option<Vec<u8>>,
    status: ServerStatus,
}

/// Serve one SOCKS5 connection on a fresh port; returns the port and a receiver for what
/// the server saw once the connection is over.
fn serve_one(auth: ServerAuth, valid: Option<Credentials>) -> (u16, mpsc::Receiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut hs = ServerHandshake::new(auth);
        let mut buf = [0u8; 1024];
        let mut held: Vec<u8> = Vec::new(); // read but not consumed: the relay's
        let mut username = None;
        let mut upstream: Option<TcpStream> = None;
        for _ in 0..1000 {
            match hs.status() {
                ServerStatus::NeedWrite => {
                    let n = c.write(hs.pending_output()).unwrap();
                    hs.consume_output(n);
                }
                ServerStatus::NeedRead => {
                    if held.is_empty() {
                        let n = c.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        held.extend_from_slice(&buf[..n]);
                    }
                    match hs.handle_input(&held) {
                        Ok(n) => {
                            held.drain(..n);
                        }
                        Err(_) => held.clear(),
                    }
                }
                ServerStatus::CheckCredentials => {
                    let got = hs.credentials().unwrap().clone();
                    username = Some(got.username().to_vec());
                    hs.accept_credentials(Some(&got) == valid.as_ref());
                }
                ServerStatus::Request(req) => {
                    let addrs: Vec<SocketAddr> = match req.target.to_socket_addr() {
                        Some(a) => vec![a],
                        None => {
                            let Host::Domain(d) = req.target.host else {
                                unreachable!()
                            };
                            let name = std::str::from_utf8(d.as_bytes()).unwrap();
                            (name, req.target.port)
                                .to_socket_addrs()
                                .map(|i| i.collect())
                                .unwrap_or_default()
                        }
                    };
                    match TcpStream::connect(&addrs[..]) {
                        Ok(up) => {
                            let bound = TargetAddr::from(up.local_addr().unwrap());
                            hs.reply(ReplyCode::Succeeded, &bound);
                            upstream = Some(up);
                        }
                        Err(_) => {
                            let zero = TargetAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
                            hs.reply(ReplyCode::ConnectionRefused, &zero);
                        }
                    }
                }
                ServerStatus::Done | ServerStatus::Failed(_) => break,
            }
        }
        let status = hs.status();
        let request = hs.request();
        if let (ServerStatus::Done, Some(mut up)) = (status, upstream) {
            up.write_all(&held).unwrap();
            relay(c, up);
        }
        let _ = tx.send(Seen {
            request,
            username,
            status,
        });
    });
    (port, rx)
}

/// Copy both ways until either side closes.
fn relay(client: TcpStream, upstream: TcpStream) {
    let (mut c_r, mut u_w) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut c_r, &mut u_w);
        let _ = u_w.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_r, mut c_w) = (upstream, client);
    let _ = std::io::copy(&mut u_r, &mut c_w);
    let _ = c_w.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

/// A one-shot HTTP/1.0 server answering "hello".
fn http_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    });
    addr
}

/// Run curl with `config` on stdin (`-K -`); returns (success, stdout).
fn curl(config: &str) -> (bool, String) {
    require(CURL, "curl");
    let mut child = Command::new(CURL)
        .args(["-sS", "--max-time", "10", "-K", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_PROXY", "")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("http_proxy")
        .spawn()
        .expect("start curl (Debian package `curl`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn seen(rx: mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("server thread reported nothing")
}

#[test]
fn curl_socks5_ipv4() {
    let web = http_target();
    let (port, rx) = serve_one(ServerAuth::NoAuth, None);
    let (ok, body) = curl(&format!(
        "socks5 = \"127.0.0.1:{port}\"\nurl = \"http://127.0.0.1:{}/\"\n",
        web.port()
    ));
    assert!(ok, "curl failed");
    assert_eq!(body, "hello");
    let s = seen(rx);
    assert_eq!(s.status, ServerStatus::Done);
    assert_eq!(s.request.unwrap().target, TargetAddr::from(web));
}

#[test]
fn curl_socks5_hostname_sends_the_name() {
    let web = http_target();
    let (port, rx) = serve_one(ServerAuth::NoAuth, None);
    let (ok, body) = curl(&format!(
        "socks5-hostname = \"127.0.0.1:{port}\"\nurl = \"http://localhost:{}/\"\n",
        web.port()
    ));
    assert!(ok, "curl failed");
    assert_eq!(body, "hello");
    let req = seen(rx).request.unwrap();
    match req.target.host {
        Host::Domain(d) => assert_eq!(d.as_bytes(), b"localhost"),
        other => panic!("expected ATYP 0x03, got {other:?}"),
    }
    assert_eq!(req.target.port, web.port());
}

#[test]
fn curl_proxy_user_accepted() {
    let web = http_target();
    let valid = Credentials::new(b"tester", b"opensesame").unwrap();
    let (port, rx) = serve_one(ServerAuth::UserPass, Some(valid));
    let (ok, body) = curl(&format!(
        "socks5-hostname = \"127.0.0.1:{port}\"\nproxy-user = \"tester:opensesame\"\n\
         url = \"http://127.0.0.1:{}/\"\n",
        web.port()
    ));
    assert!(ok, "curl failed");
    assert_eq!(body, "hello");
    let s = seen(rx);
    assert_eq!(s.username.as_deref(), Some(&b"tester"[..]));
    assert_eq!(s.status, ServerStatus::Done);
}

#[test]
fn curl_proxy_user_rejected() {
    let web = http_target();
    let valid = Credentials::new(b"tester", b"opensesame").unwrap();
    let (port, rx) = serve_one(ServerAuth::UserPass, Some(valid));
    let (ok, body) = curl(&format!(
        "socks5 = \"127.0.0.1:{port}\"\nproxy-user = \"tester:wrong\"\n\
         url = \"http://127.0.0.1:{}/\"\n",
        web.port()
    ));
    assert!(!ok, "curl succeeded with a wrong password");
    assert_eq!(body, "");
    let s = seen(rx);
    assert_eq!(
        s.status,
        ServerStatus::Failed(laysocks_proto::Error::AuthRejected(1))
    );
    assert_eq!(s.request, None);
}

#[test]
fn curl_sees_a_refused_target() {
    let closed = free_port();
    let (port, rx) = serve_one(ServerAuth::NoAuth, None);
    let (ok, _) = curl(&format!(
        "socks5 = \"127.0.0.1:{port}\"\nurl = \"http://127.0.0.1:{closed}/\"\n"
    ));
    assert!(!ok);
    assert_eq!(
        seen(rx).status,
        ServerStatus::Failed(laysocks_proto::Error::Reply(ReplyCode::ConnectionRefused))
    );
}
