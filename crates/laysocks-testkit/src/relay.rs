//! A delaying TCP relay in the proxy host: latency without netem.
//!
//! This kernel has no `sch_netem`, so a round trip to the proxy is made slow by a relay
//! of our own: it listens on the proxy host's client-side address and forwards to an
//! upstream (a real SOCKS5 server on the same host), holding every chunk for `delay` in
//! each direction. A SOCKS5 handshake through it takes at least four delays per round
//! trip, which makes "did the handshake run inside the program's event loop or block
//! it?" visible to tests and benchmarks.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{spawn_in_netns, Rig, PROXY_V4};
use crate::servers::Proxy;

/// A running relay; stopped with the rig.
pub struct DelayRelay {
    port: u16,
    delay: Duration,
}

impl DelayRelay {
    /// `socks5://198.51.100.1:PORT` — the relay, standing in for the proxy behind it.
    pub fn url(&self) -> String {
        format!("socks5://{PROXY_V4}:{}", self.port)
    }

    /// The same, with credentials for the proxy behind the relay.
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("socks5://{user}:{pass}@{PROXY_V4}:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }
}

impl Rig {
    /// Starts a relay in the proxy host that forwards to `upstream` with `delay` added
    /// to every chunk in each direction.
    pub fn delay_relay(&self, upstream: &Proxy, delay: Duration) -> DelayRelay {
        let up = upstream.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = stop.clone();
        let h = spawn_in_netns(self.proxy_ns(), "delay-relay", move || {
            let l = TcpListener::bind((PROXY_V4, 0)).expect("bind the delay relay");
            tx.send(l.local_addr().unwrap().port()).unwrap();
            l.set_nonblocking(true).unwrap();
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let stop = s2.clone();
                        thread::spawn(move || relay_one(c, up, delay, stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the delay relay did not start");
        self.keep_thread(stop, h);
        DelayRelay { port, delay }
    }
}

fn relay_one(client: TcpStream, upstream: SocketAddr, delay: Duration, stop: Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let st = stop.clone();
    let t = thread::spawn(move || pump(c2, s2, delay, st));
    pump(server, client, delay, stop);
    let _ = t.join();
}

/// Copies `from` → `to`, delivering each chunk `delay` after it arrived (order kept).
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                thread::sleep(delay);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
