//! A SOCKS5 server that misbehaves on purpose, in-process, in the proxy host.
//!
//! Real servers are polite; the layer must also survive the impolite ones. Each
//! [`FaultServer`] listens on its own port at 198.51.100.1 (and the same port at
//! `[2001:db8:1::1]`) and plays one scripted [`Fault`] on every connection. It writes raw
//! bytes — it is a second SOCKS5 implementation, deliberately not built on the engine
//! it tests — and records what each client sent ([`Session`]), so tests can also check
//! what the layer asked for (e.g. a domain name for remote DNS).
//!
//! Where a script ends in success the server itself plays the target: it echoes what it
//! receives, so a test needs no relay to prove the stream is intact after the handshake.
//!
//! The named faults are the common cases; [`Fault::Script`] plays any sequence of
//! [`Act`]s (read the greeting, send these bytes, dribble those, reset, half-close, echo
//! so many bytes, …), which is what the hostile-proxy catalogue (`tests/hostile.rs`) is
//! written in. A script that starts with no SOCKS5 step at all is a plain TCP server, so
//! the same behaviour can be watched through the layer and over a direct connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{spawn_in_netns, Rig, PROXY_V4, PROXY_V6};
use crate::servers::{accept_loop, Proxy, ProxyKind};
use crate::util::WAIT;

/// The scripted behaviour of a [`FaultServer`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer the greeting with version 0x04 (RFC 1928 §3 wants 0x05).
    BadVersion,
    /// Answer the greeting with METHOD 0xFF: no acceptable methods (RFC 1928 §3).
    NoAcceptableMethods,
    /// Select username/password (0x02), read the RFC 1929 request, answer STATUS 0x01.
    RejectAuth,
    /// Negotiate properly (accepting any credentials), read the request, answer with this
    /// REP code (RFC 1928 §6) and BND 0.0.0.0:0, then close. `Reply(0)` is a success
    /// followed by an echo.
    Reply(u8),
    /// Read the greeting, then close (FIN) without answering.
    CloseAfterGreeting,
    /// Negotiate the method, read the request, then close without a reply.
    CloseAfterRequest,
    /// Read the greeting, then reset the connection (SO_LINGER 0, close).
    ResetAfterGreeting,
    /// Negotiate the method, read the request, then reset.
    ResetAfterRequest,
    /// Answer the greeting with these bytes (e.g. an HTTP error page), then close.
    Garbage(Vec<u8>),
    /// Read whatever comes and never answer; hold the connection until the client goes.
    NeverAnswer,
    /// Negotiate properly, then send the success reply one byte at a time with this delay
    /// between bytes (BND.ADDR is a domain name, so the reply's length depends on its
    /// header), then echo.
    Dribble(Duration),
    /// Send the success reply (with an IPv6 BND.ADDR, 22 bytes) and these bytes in the
    /// same write, then echo: the bytes belong to the application and must reach it.
    SuccessThenData(Vec<u8>),
    /// A correct server that is its own target: success reply (IPv4 BND), then echo.
    Echo,
    /// Play these steps in order, then close (FIN; RST if the client's data is left
    /// unread, as the kernel does). A step that fails (the client went away) ends it.
    Script(Vec<Act>),
}

/// One step of a [`Fault::Script`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Read VER NMETHODS METHODS (RFC 1928 §3), recording the methods.
    Greeting,
    /// Read the RFC 1929 request (§2), recording the username.
    Auth,
    /// Read VER CMD RSV ATYP DST.ADDR DST.PORT (RFC 1928 §4), recording it.
    Request,
    /// Write these bytes in one write.
    Send(Vec<u8>),
    /// Write these bytes one at a time, pausing this long after each.
    Dribble(Vec<u8>, Duration),
    /// Write `total` bytes of `pattern` repeated, in 16 KiB writes, for as long as the
    /// client takes them (the session's `sent` says how many it did).
    Flood(Vec<u8>, usize),
    /// Sleep.
    Pause(Duration),
    /// Echo until the client closes, or until this many bytes were echoed (reading no
    /// more than that: the rest stays unread in the kernel).
    Echo(Option<usize>),
    /// `shutdown(SHUT_WR)`: send FIN and keep the connection open for reading.
    HalfClose,
    /// Read and record until the client closes (or 60 s).
    Drain,
    /// Close with RST (`SO_LINGER` 0).
    Reset,
}

/// What one client did on a [`FaultServer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The methods offered in the greeting (RFC 1928 §3).
    pub methods: Vec<u8>,
    /// The RFC 1929 username, if sub-negotiation happened. (The password is not kept.)
    pub username: Option<Vec<u8>>,
    /// The request's CMD (RFC 1928 §4).
    pub command: Option<u8>,
    /// The request's destination: `1.2.3.4:80`, `[2001:db8::1]:80` or `name:80`.
    pub target: Option<String>,
    /// The request's ATYP.
    pub atyp: Option<u8>,
    /// Bytes received after the request (before the server answered, for scripts that
    /// answer at all; in echo mode, everything the application sent).
    pub after_request: Vec<u8>,
    /// Bytes the server wrote to the client (whole writes only).
    pub sent: usize,
    /// A write failed: the client went away before taking everything.
    pub write_failed: bool,
    /// The script has ended and the connection is closed.
    pub finished: bool,
}

/// A running fault server; stopped when the rig is dropped.
#[derive(Clone)]
pub struct FaultServer {
    pub port: u16,
    pub fault: Fault,
    sessions: Arc<Mutex<Vec<Session>>>,
}

impl FaultServer {
    /// `socks5://198.51.100.1:<port>`
    pub fn url(&self) -> String {
        self.proxy().url()
    }

    /// `socks5://[2001:db8:1::1]:<port>`
    pub fn url_v6(&self) -> String {
        self.proxy().url_v6()
    }

    /// As a [`Proxy`] (for URL helpers).
    pub fn proxy(&self) -> Proxy {
        Proxy {
            kind: ProxyKind::Fault,
            port: self.port,
            credentials: None,
        }
    }

    /// The IPv4 address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(PROXY_V4.into(), self.port)
    }

    /// Every session so far (finished or not).
    pub fn sessions(&self) -> Vec<Session> {
        self.sessions.lock().unwrap().clone()
    }
}

impl Rig {
    /// Starts a fault server playing `fault` on a fresh port in the proxy host.
    pub fn fault(&self, fault: Fault) -> FaultServer {
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s2, f2, sess2) = (stop.clone(), fault.clone(), sessions.clone());
        let h = spawn_in_netns(self.proxy_ns(), "fault-server", move || {
            let v4 = TcpListener::bind((PROXY_V4, 0)).expect("bind the fault server");
            let port = v4.local_addr().unwrap().port();
            // The same port on IPv6; if it is taken there, IPv6 just stays closed.
            let v6 = TcpListener::bind((PROXY_V6, port)).ok();
            tx.send(port).unwrap();
            let handler = {
                let stop = s2.clone();
                move |s: TcpStream, peer: SocketAddr| {
                    let index = {
                        let mut all = sess2.lock().unwrap();
                        all.push(Session {
                            peer: Some(peer),
                            ..Default::default()
                        });
                        all.len() - 1
                    };
                    play(s, &f2, &stop, &sess2, index);
                    sess2.lock().unwrap()[index].finished = true;
                }
            };
            if let Some(v6) = v6 {
                v6.set_nonblocking(true).unwrap();
                let (stop, h) = (s2.clone(), handler.clone());
                thread::spawn(move || accept_loop(&v6, &stop, h));
            }
            v4.set_nonblocking(true).unwrap();
            accept_loop(&v4, &s2, handler);
        });
        let port = rx
            .recv_timeout(WAIT)
            .expect("the fault server did not start");
        self.keep_thread(stop, h);
        FaultServer {
            port,
            fault,
            sessions,
        }
    }
}

/// How long the server waits for any one client message.
const READ_LIMIT: Duration = Duration::from_secs(10);

struct Conn<'a> {
    s: TcpStream,
    stop: &'a AtomicBool,
    sessions: &'a Mutex<Vec<Session>>,
    index: usize,
}

impl Conn<'_> {
    fn record(&self, f: impl FnOnce(&mut Session)) {
        f(&mut self.sessions.lock().unwrap()[self.index]);
    }

    /// Reads exactly `n` bytes (bounded); `None` when the client goes away or is silent.
    fn read_n(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        let start = Instant::now();
        let _ = self.s.set_read_timeout(Some(Duration::from_millis(100)));
        while got < n {
            if self.stop.load(Ordering::SeqCst) || start.elapsed() > READ_LIMIT {
                return None;
            }
            match self.s.read(&mut buf[got..]) {
                Ok(0) => return None,
                Ok(k) => got += k,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(buf)
    }

    /// RFC 1928 §3: VER NMETHODS METHODS.
    fn greeting(&mut self) -> Option<Vec<u8>> {
        let head = self.read_n(2)?;
        let methods = self.read_n(head[1] as usize)?;
        let m = methods.clone();
        self.record(|s| s.methods = m);
        Some(methods)
    }

    /// Picks 0x00 if offered, else 0x02 (then runs RFC 1929 accepting anything).
    fn negotiate(&mut self) -> Option<()> {
        let methods = self.greeting()?;
        if methods.contains(&0x00) {
            self.send(&[5, 0])?;
        } else {
            self.send(&[5, 2])?;
            self.auth(true)?;
        }
        Some(())
    }

    /// RFC 1929 §2: VER ULEN UNAME PLEN PASSWD, answered with VER STATUS.
    fn auth(&mut self, accept: bool) -> Option<()> {
        self.read_auth()?;
        self.send(&[1, if accept { 0 } else { 1 }])
    }

    /// RFC 1929 §2: VER ULEN UNAME PLEN PASSWD (the password is read and dropped).
    fn read_auth(&mut self) -> Option<()> {
        let head = self.read_n(2)?;
        let user = self.read_n(head[1] as usize)?;
        let plen = self.read_n(1)?[0] as usize;
        let _password = self.read_n(plen)?;
        self.record(|s| s.username = Some(user));
        Some(())
    }

    /// RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT.
    fn request(&mut self) -> Option<()> {
        let head = self.read_n(4)?;
        let (cmd, atyp) = (head[1], head[3]);
        let host = match atyp {
            1 => {
                let a = self.read_n(4)?;
                format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
            }
            4 => {
                let a: [u8; 16] = self.read_n(16)?.try_into().ok()?;
                format!("[{}]", Ipv6Addr::from(a))
            }
            3 => {
                let len = self.read_n(1)?[0] as usize;
                String::from_utf8_lossy(&self.read_n(len)?).into_owned()
            }
            _ => return None,
        };
        let p = self.read_n(2)?;
        let target = format!("{host}:{}", u16::from_be_bytes([p[0], p[1]]));
        self.record(|s| {
            s.command = Some(cmd);
            s.atyp = Some(atyp);
            s.target = Some(target);
        });
        Some(())
    }

    fn send(&mut self, bytes: &[u8]) -> Option<()> {
        match self.s.write_all(bytes) {
            Ok(()) => {
                self.record(|s| s.sent += bytes.len());
                Some(())
            }
            Err(_) => {
                self.record(|s| s.write_failed = true);
                None
            }
        }
    }

    /// [`Act::Flood`]: bounded by `stop` and 60 s even if the client never reads.
    fn flood(&mut self, pattern: &[u8], total: usize) -> Option<()> {
        let chunk: Vec<u8> = pattern.iter().copied().cycle().take(16384).collect();
        let _ = self.s.set_write_timeout(Some(Duration::from_millis(100)));
        let start = Instant::now();
        let mut done = 0;
        while done < total {
            if self.stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(60) {
                return None;
            }
            let n = chunk.len().min(total - done);
            match self.s.write(&chunk[..n]) {
                Ok(k) => {
                    done += k;
                    self.record(|s| s.sent += k);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.record(|s| s.write_failed = true);
                    return None;
                }
            }
        }
        let _ = self.s.set_write_timeout(None);
        Some(())
    }

    /// [`Act::HalfClose`].
    fn half_close(&mut self) -> Option<()> {
        self.s.shutdown(std::net::Shutdown::Write).ok()
    }

    /// Sets SO_LINGER {on, 0} so that the close sends RST instead of FIN.
    fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt(2) on a socket we own, with a pointer to a live `linger`
        // and its exact size.
        unsafe {
            libc::setsockopt(
                self.s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(self.s);
    }

    /// Holds the connection, reading and discarding, until the client closes, `stop`, or
    /// 60 s.
    fn hold(&mut self) {
        let _ = self.s.set_read_timeout(Some(Duration::from_millis(100)));
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while !self.stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
            match self.s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    self.record(|s| s.after_request.extend_from_slice(&data));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }

    /// Echoes (recording what came) until the client closes, `stop`, or 60 s.
    fn echo(&mut self) {
        self.echo_up_to(usize::MAX);
    }

    /// Echoes until `limit` bytes went back (reading no more than that), the client
    /// closes, `stop`, or 60 s.
    fn echo_up_to(&mut self, limit: usize) {
        let _ = self.s.set_read_timeout(Some(Duration::from_millis(100)));
        let start = Instant::now();
        let mut buf = [0u8; 16384];
        let mut echoed = 0;
        while echoed < limit
            && !self.stop.load(Ordering::SeqCst)
            && start.elapsed() < Duration::from_secs(60)
        {
            let want = buf.len().min(limit - echoed);
            match self.s.read(&mut buf[..want]) {
                Ok(0) => return,
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    self.record(|s| s.after_request.extend_from_slice(&data));
                    if self.send(&data).is_none() {
                        return;
                    }
                    echoed += n;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }
}

/// RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT, with BND 0.0.0.0:0.
fn reply_v4(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

fn play(
    s: TcpStream,
    fault: &Fault,
    stop: &AtomicBool,
    sessions: &Mutex<Vec<Session>>,
    index: usize,
) {
    let _ = s.set_nodelay(true);
    let mut c = Conn {
        s,
        stop,
        sessions,
        index,
    };
    let _ = (|| -> Option<()> {
        match fault {
            Fault::BadVersion => {
                c.greeting()?;
                c.send(&[4, 0])?;
                c.hold();
            }
            Fault::NoAcceptableMethods => {
                c.greeting()?;
                c.send(&[5, 0xFF])?;
                c.hold();
            }
            Fault::RejectAuth => {
                c.greeting()?;
                c.send(&[5, 2])?;
                c.auth(false)?;
                c.hold();
            }
            Fault::Reply(0) | Fault::Echo => {
                c.negotiate()?;
                c.request()?;
                c.send(&reply_v4(0))?;
                c.echo();
            }
            Fault::Reply(code) => {
                c.negotiate()?;
                c.request()?;
                c.send(&reply_v4(*code))?;
                // RFC 1928 §6: the server closes shortly after a failure reply.
                thread::sleep(Duration::from_millis(50));
            }
            Fault::CloseAfterGreeting => {
                c.greeting()?;
            }
            Fault::CloseAfterRequest => {
                c.negotiate()?;
                c.request()?;
            }
            Fault::ResetAfterGreeting => {
                c.greeting()?;
                c.reset();
                return None;
            }
            Fault::ResetAfterRequest => {
                c.negotiate()?;
                c.request()?;
                c.reset();
                return None;
            }
            Fault::Garbage(bytes) => {
                c.greeting()?;
                c.send(bytes)?;
                thread::sleep(Duration::from_millis(50));
            }
            Fault::NeverAnswer => {
                c.hold();
            }
            Fault::Dribble(delay) => {
                c.negotiate()?;
                c.request()?;
                let name = b"bound.test";
                let mut r = vec![5, 0, 0, 3, name.len() as u8];
                r.extend_from_slice(name);
                r.extend_from_slice(&1080u16.to_be_bytes());
                for b in r {
                    c.send(&[b])?;
                    thread::sleep(*delay);
                }
                c.echo();
            }
            Fault::SuccessThenData(data) => {
                c.negotiate()?;
                c.request()?;
                let mut r = vec![5, 0, 0, 4];
                r.extend_from_slice(&PROXY_V6.octets());
                r.extend_from_slice(&1080u16.to_be_bytes());
                r.extend_from_slice(data);
                c.send(&r)?;
                c.echo();
            }
            Fault::Script(acts) => {
                for act in acts {
                    match act {
                        Act::Greeting => {
                            c.greeting()?;
                        }
                        Act::Auth => c.read_auth()?,
                        Act::Request => c.request()?,
                        Act::Send(bytes) => c.send(bytes)?,
                        Act::Dribble(bytes, delay) => {
                            for b in bytes {
                                c.send(&[*b])?;
                                thread::sleep(*delay);
                            }
                        }
                        Act::Flood(pattern, total) => c.flood(pattern, *total)?,
                        Act::Pause(d) => thread::sleep(*d),
                        Act::Echo(limit) => c.echo_up_to(limit.unwrap_or(usize::MAX)),
                        Act::HalfClose => c.half_close()?,
                        Act::Drain => c.hold(),
                        Act::Reset => {
                            c.reset();
                            return None;
                        }
                    }
                }
            }
        }
        Some(())
    })();
}
