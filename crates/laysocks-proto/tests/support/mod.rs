//! Shared pieces of the interop tests: a blocking driver for our client engine, targets
//! (echo with a banner, a one-page HTTP server) and port picking. Everything is on
//! loopback; every loop is bounded in count and time.

#![allow(dead_code)]

use laysocks_proto::{ClientHandshake, ClientStatus, Error, TargetAddr};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Fail (never skip) when a tool the test needs is missing.
pub fn require(bin: &str, package: &str) {
    assert!(
        Path::new(bin).exists(),
        "{bin} not found: install the Debian package `{package}` (apt-get install {package})"
    );
}

/// A free TCP port on 127.0.0.1 (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Wait until something accepts on `addr` (a freshly started server).
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr} after 10 s");
}

/// Run the client engine over a blocking stream, reading exactly `bytes_needed()` each time.
pub fn drive(stream: &mut TcpStream, mut hs: ClientHandshake) -> Result<TargetAddr, Error> {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..1000 {
        match hs.status() {
            ClientStatus::NeedWrite => {
                let n = stream.write(hs.pending_output()).expect("write to proxy");
                hs.consume_output(n);
            }
            ClientStatus::NeedRead => {
                let need = hs.bytes_needed();
                assert!(need > 0 && need <= buf.len());
                let n = stream.read(&mut buf[..need]).expect("read from proxy");
                assert!(n > 0, "proxy closed the connection during the handshake");
                let used = hs.handle_input(&buf[..n])?;
                assert_eq!(used, n, "an exact read must be consumed whole");
            }
            ClientStatus::Done(bound) => return Ok(bound),
            ClientStatus::Failed(e) => return Err(e),
        }
    }
    panic!("handshake did not finish in 1000 steps");
}

/// A target that sends `banner` on accept and then echoes, for up to `conns` connections.
pub fn echo_target(bind: &str, banner: &'static [u8], conns: usize) -> SocketAddr {
    let l = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, _)) = l.accept() else { return };
            thread::spawn(move || {
                s.set_read_timeout(Some(IO_TIMEOUT)).ok();
                if s.write_all(banner).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                for _ in 0..1000 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Read exactly `n` bytes (or fail the test).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)
        .expect("read from target through the proxy");
    v
}
