//! The guard's mechanics without the launcher: a forked child installs the filter, the
//! parent takes its listener with `pidfd_getfd` and serves it, and the child makes raw
//! system calls (`syscall(SYS_connect)`, as Go and static programs do) that no preload
//! layer could see.
//!
//! Each scenario runs in a fresh network namespace that has only loopback (a "world"
//! process forked per scenario), so a call the guard let through by mistake could not
//! leave the machine: 203.0.113.0/24 is unreachable there (ENETUNREACH), and the SOCKS
//! server of the test, which "reaches" every target by connecting to a local echo
//! server, records what it was asked for.
//!
//! `harness = false`: scenarios fork, and a forked child of a multithreaded test harness
//! is a poor place to run code; here the main thread runs them one after the other.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use laysocks_config::LayerConfig;
use laysocks_guard::{GuardConfig, Supervisor};

type Scenario = fn() -> Result<(), String>;

fn main() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let scenarios: &[(&str, Scenario)] = &[
        ("filter_verdicts_in_a_real_process", filter_verdicts),
        ("fail_closed_without_supervisor", fail_closed),
        ("raw_connect_goes_through_the_proxy", proxied_blocking),
        ("nonblocking_connect_answered_zero", proxied_nonblocking),
        ("credentials_and_refusal", credentials_and_refusal),
        ("exempt_udp_and_refused_udp", udp_rules),
        ("ipv4_target_through_ipv6_only_proxy", family_change),
    ];
    let mut failed = 0;
    for (name, f) in scenarios {
        if filter.as_deref().is_some_and(|flt| !name.contains(flt)) {
            continue;
        }
        match in_world(*f) {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        println!("{failed} scenario(s) failed");
        std::process::exit(1);
    }
}

/// Runs `f` in a forked process inside a new network namespace with loopback up.
fn in_world(f: Scenario) -> Result<(), String> {
    let (r, w) = pipe();
    // SAFETY: fork in a single-threaded process (main runs the scenarios in turn).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork failed".into());
    }
    if pid == 0 {
        drop(r);
        let res = (|| {
            // SAFETY: plain flags; we are root in the test container, or fall back to
            // a user namespace (allowed: the process is single-threaded).
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            if rc != 0 {
                // SAFETY: as above.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err("cannot create a network namespace (unshare)".to_string());
                }
            }
            let st = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .map_err(|e| format!("cannot run `ip` (install the iproute2 package): {e}"))?;
            if !st.success() {
                return Err("`ip link set lo up` failed".into());
            }
            f()
        })();
        let msg = match &res {
            Ok(()) => "ok".to_string(),
            Err(e) => e.clone(),
        };
        let mut w = std::fs::File::from(w);
        let _ = w.write_all(msg.as_bytes());
        drop(w);
        // SAFETY: leaving the forked world process without running atexit handlers.
        unsafe { libc::_exit(if res.is_ok() { 0 } else { 1 }) };
    }
    drop(w);
    let mut msg = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut msg);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if msg == "ok" && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if msg.is_empty() {
        Err(format!("world process died (status {status:#x})"))
    } else {
        Err(msg)
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

// ----------------------------------------------------------------------------------
// The program child: raw system calls only (no allocation after fork).

/// What the child reports: a fixed array of i64 results, written to a pipe.
const RESULTS: usize = 16;

fn raw_write(fd: i32, b: &[u8]) {
    // SAFETY: b is valid for its length.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

fn raw_read(fd: i32, b: &mut [u8]) -> isize {
    // SAFETY: b is writable for its length.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}

fn errno() -> i64 {
    // SAFETY: reading this thread's errno.
    i64::from(unsafe { *libc::__errno_location() })
}

/// `-errno` on failure, the value otherwise.
fn sys_ret(rc: i64) -> i64 {
    if rc < 0 {
        -errno()
    } else {
        rc
    }
}

/// Forks the program: it installs the filter, sends the listener's number, waits for
/// "go", runs `body` (which fills the results) and exits. Returns the child's pid, the
/// listener taken from it (None if `take` is false) and the results pipe.
fn spawn_program(
    body: fn(&mut [i64; RESULTS]),
    take: bool,
) -> Result<(i32, Option<OwnedFd>, OwnedFd, OwnedFd), String> {
    let filter = laysocks_guard::filter();
    let (num_r, num_w) = pipe();
    let (go_r, go_w) = pipe();
    let (res_r, res_w) = pipe();
    // SAFETY: the child below only makes system calls on stack data until _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork failed".into());
    }
    if pid == 0 {
        let fd = match filter.install() {
            Ok(fd) => fd,
            Err(e) => {
                // SAFETY: exit the child at once.
                unsafe { libc::_exit(100 + e.0.min(100)) }
            }
        };
        use std::os::fd::AsRawFd;
        raw_write(num_w.as_raw_fd(), &fd.to_ne_bytes());
        let mut go = [0u8; 1];
        raw_read(go_r.as_raw_fd(), &mut go);
        // The parent holds its copy now; an exec would close ours (close-on-exec).
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
        let mut res = [0i64; RESULTS];
        body(&mut res);
        for r in res {
            raw_write(res_w.as_raw_fd(), &r.to_ne_bytes());
        }
        // SAFETY: leave the child.
        unsafe { libc::_exit(0) };
    }
    drop((num_w, go_r, res_w));
    let mut b = [0u8; 4];
    let mut f = std::fs::File::from(num_r);
    f.read_exact(&mut b)
        .map_err(|e| format!("child sent no listener number: {e}"))?;
    let target_fd = i32::from_ne_bytes(b);
    let listener = if take {
        let pidfd = laysocks_sys::pidfd::open(pid, 0).map_err(|e| format!("pidfd_open: {e}"))?;
        Some(
            laysocks_sys::pidfd::get_fd(pidfd.as_fd(), target_fd)
                .map_err(|e| format!("pidfd_getfd: {e}"))?,
        )
    } else {
        None
    };
    Ok((pid, listener, go_w, res_r))
}

fn collect(pid: i32, go: OwnedFd, res: OwnedFd) -> Result<[i64; RESULTS], String> {
    let mut g = std::fs::File::from(go);
    let _ = g.write_all(b"g");
    drop(g);
    let mut buf = vec![0u8; RESULTS * 8];
    let r = std::fs::File::from(res).read_exact(&mut buf);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    r.map_err(|e| format!("child gave no results (status {status:#x}): {e}"))?;
    let mut out = [0i64; RESULTS];
    for (i, c) in buf.chunks(8).enumerate() {
        out[i] = i64::from_ne_bytes(c.try_into().unwrap());
    }
    Ok(out)
}

fn check(what: &str, got: i64, want: i64) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got}, want {want}"))
    }
}

fn sockaddr_v4(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    }
}

fn raw_connect(fd: i32, sa: &libc::sockaddr_in) -> i64 {
    // SAFETY: sa is a valid sockaddr_in of the size given.
    sys_ret(unsafe {
        libc::syscall(
            libc::SYS_connect,
            fd as libc::c_long,
            sa as *const libc::sockaddr_in,
            std::mem::size_of::<libc::sockaddr_in>() as libc::c_long,
        )
    })
}

fn tcp_socket(flags: i32) -> i32 {
    // SAFETY: plain integers.
    unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | flags, 0) }
}

// ----------------------------------------------------------------------------------
// A tiny SOCKS5 server (RFC 1928 CONNECT, optional RFC 1929) that "reaches" any target
// by connecting to a local echo server, recording what it was asked.

struct Socks {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                for _ in 0..10_000 {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    a
}

fn socks_server(bind: &str, auth: Option<(&'static str, &'static str)>) -> Socks {
    let echo = echo_server();
    let l = TcpListener::bind(bind).unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(s) = s else { continue };
            let seen = seen2.clone();
            std::thread::spawn(move || {
                let _ = socks_session(s, auth, echo, &seen);
            });
        }
    });
    Socks { addr, seen }
}

fn socks_session(
    mut s: TcpStream,
    auth: Option<(&str, &str)>,
    echo: SocketAddr,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut methods = vec![0u8; h[1] as usize];
    s.read_exact(&mut methods)?;
    match auth {
        None => s.write_all(&[5, 0])?,
        Some((u, p)) => {
            s.write_all(&[5, 2])?;
            let mut v = [0u8; 2];
            s.read_exact(&mut v)?;
            let mut user = vec![0u8; v[1] as usize];
            s.read_exact(&mut user)?;
            let mut pl = [0u8; 1];
            s.read_exact(&mut pl)?;
            let mut pass = vec![0u8; pl[0] as usize];
            s.read_exact(&mut pass)?;
            let ok = user == u.as_bytes() && pass == p.as_bytes();
            s.write_all(&[1, if ok { 0 } else { 1 }])?;
            if !ok {
                return Ok(());
            }
        }
    }
    let mut req = [0u8; 4];
    s.read_exact(&mut req)?;
    let target = match req[3] {
        1 => {
            let mut a = [0u8; 6];
            s.read_exact(&mut a)?;
            format!(
                "{}.{}.{}.{}:{}",
                a[0],
                a[1],
                a[2],
                a[3],
                u16::from_be_bytes([a[4], a[5]])
            )
        }
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l)?;
            let mut n = vec![0u8; l[0] as usize + 2];
            s.read_exact(&mut n)?;
            let port = u16::from_be_bytes([n[n.len() - 2], n[n.len() - 1]]);
            format!("{}:{port}", String::from_utf8_lossy(&n[..n.len() - 2]))
        }
        _ => {
            let mut a = [0u8; 18];
            s.read_exact(&mut a)?;
            let ip = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&a[..16]).unwrap());
            format!("[{ip}]:{}", u16::from_be_bytes([a[16], a[17]]))
        }
    };
    seen.lock().unwrap().push(target.clone());
    if target.ends_with(":1") {
        // Port 1: "connection refused" (REP 5).
        s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
        return Ok(());
    }
    let up = TcpStream::connect(echo)?;
    s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    s.set_read_timeout(None)?;
    let (mut a, mut b) = (s.try_clone()?, up.try_clone()?);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b);
        let _ = b.shutdown(std::net::Shutdown::Write);
    });
    let (mut c, mut d) = (up, s);
    let _ = std::io::copy(&mut c, &mut d);
    let _ = t.join();
    Ok(())
}

fn guard_cfg(proxy: SocketAddr, creds: Option<(&str, &str)>) -> GuardConfig {
    GuardConfig {
        layer: LayerConfig {
            proxy_addrs: vec![proxy],
            proxy_label: format!("socks5://{proxy}"),
            connect_timeout_ms: 3000,
            verbose: true,
            ..Default::default()
        },
        credentials: creds.map(|(u, p)| (u.as_bytes().to_vec(), p.as_bytes().to_vec())),
    }
}

fn serve(listener: OwnedFd, cfg: GuardConfig) -> Result<Supervisor, String> {
    laysocks_guard::serve(listener, cfg)
}

fn finish(sup: &Supervisor) -> Result<(), String> {
    if sup.wait_finished(Duration::from_secs(5)) {
        Ok(())
    } else {
        Err("the supervisor did not see the program go (no POLLHUP)".into())
    }
}

// ----------------------------------------------------------------------------------
// Scenarios

const TARGET: [u8; 4] = [203, 0, 113, 7];

fn filter_verdicts() -> Result<(), String> {
    let socks = socks_server("127.0.0.1:0", None);
    let (pid, l, go, res) = spawn_program(
        |r| {
            // SAFETY: raw system calls with no pointers, or null ones.
            unsafe {
                r[0] = sys_ret(libc::syscall(libc::SYS_io_uring_setup, 1, 0));
                r[1] = sys_ret(libc::syscall(libc::SYS_getpid));
                r[2] = i64::from(libc::getpid());
                // send(2) without an address is not trapped: on an unconnected socket
                // the kernel's own answer.
                let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                r[3] = sys_ret(libc::send(s, b"x".as_ptr().cast(), 1, 0) as i64);
                // An x32 system call (bit 30) is refused.
                r[4] = sys_ret(libc::syscall(0x4000_0000 | libc::SYS_getpid));
            }
        },
        true,
    )?;
    let sup = serve(l.unwrap(), guard_cfg(socks.addr, None))?;
    let r = collect(pid, go, res)?;
    check("io_uring_setup", r[0], -i64::from(libc::ENOSYS))?;
    check("getpid untouched", r[1], r[2])?;
    check("send without address", r[3], -i64::from(libc::EDESTADDRREQ))?;
    check("x32 getpid", r[4], -i64::from(libc::ENOSYS))?;
    finish(&sup)
}

fn fail_closed() -> Result<(), String> {
    let socks = socks_server("127.0.0.1:0", None);
    let proxy = socks.addr;
    let (pid, l, go, res) = spawn_program(
        |r| {
            let s = tcp_socket(0);
            r[0] = raw_connect(s, &sockaddr_v4(TARGET, 80));
            // Even the proxy's own address is refused: nothing is let through.
            let s = tcp_socket(0);
            r[1] = raw_connect(s, &sockaddr_v4([127, 0, 0, 1], 9));
            // SAFETY: getpid has no preconditions.
            r[2] = i64::from(unsafe { libc::getpid() });
        },
        true,
    )?;
    // The supervisor is gone: the listener closes without ever being served.
    drop(l);
    let _ = proxy;
    let r = collect(pid, go, res)?;
    check("connect without supervisor", r[0], -i64::from(libc::ENOSYS))?;
    check(
        "loopback connect without supervisor",
        r[1],
        -i64::from(libc::ENOSYS),
    )?;
    if r[2] != i64::from(pid) {
        return Err(format!("getpid gave {} in child {pid}", r[2]));
    }
    Ok(())
}

fn proxied_blocking() -> Result<(), String> {
    let socks = socks_server("127.0.0.1:0", None);
    let (pid, l, go, res) = spawn_program(
        |r| {
            let s = tcp_socket(0);
            r[0] = raw_connect(s, &sockaddr_v4(TARGET, 80));
            raw_write(s, b"ping");
            let mut b = [0u8; 4];
            let n = raw_read(s, &mut b);
            r[1] = if n == 4 && &b == b"ping" {
                1
            } else {
                -(n as i64) - 1000
            };
            // SAFETY: out-parameters of the right sizes.
            unsafe {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                r[2] = sys_ret(libc::syscall(
                    libc::SYS_getpeername,
                    s as libc::c_long,
                    &mut sa as *mut libc::sockaddr_in,
                    &mut len as *mut libc::socklen_t,
                ));
                r[3] = i64::from(u32::from_be(sa.sin_addr.s_addr));
                r[4] = i64::from(u16::from_be(sa.sin_port));
                r[5] = i64::from(len);
            }
            // A second connect on the established socket: EISCONN, no new handshake.
            r[6] = raw_connect(s, &sockaddr_v4(TARGET, 80));
            // Loopback goes direct (the echo of the SOCKS server itself is there).
            let s2 = tcp_socket(0);
            r[7] = raw_connect(s2, &sockaddr_v4([127, 0, 0, 1], 1));
        },
        true,
    )?;
    let sup = serve(l.unwrap(), guard_cfg(socks.addr, None))?;
    let r = collect(pid, go, res)?;
    check("connect", r[0], 0)?;
    check("echo through the proxy", r[1], 1)?;
    check("getpeername", r[2], 0)?;
    check(
        "getpeername address",
        r[3],
        i64::from(u32::from_be_bytes(TARGET)),
    )?;
    check("getpeername port", r[4], 80)?;
    check("getpeername length", r[5], 16)?;
    check("second connect", r[6], -i64::from(libc::EISCONN))?;
    check("loopback direct", r[7], -i64::from(libc::ECONNREFUSED))?;
    let seen = socks.seen.lock().unwrap().clone();
    if seen != vec!["203.0.113.7:80".to_string()] {
        return Err(format!("the proxy saw {seen:?}"));
    }
    finish(&sup)
}

fn proxied_nonblocking() -> Result<(), String> {
    let socks = socks_server("127.0.0.1:0", None);
    let (pid, l, go, res) = spawn_program(
        |r| {
            let s = tcp_socket(libc::SOCK_NONBLOCK);
            r[0] = raw_connect(s, &sockaddr_v4(TARGET, 443));
            // Still non-blocking afterwards.
            // SAFETY: F_GETFL takes no argument.
            r[1] = i64::from(unsafe { libc::fcntl(s, libc::F_GETFL) } & libc::O_NONBLOCK);
            raw_write(s, b"pong");
            let mut p = libc::pollfd {
                fd: s,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 3000) };
            let mut b = [0u8; 4];
            let n = raw_read(s, &mut b);
            r[2] = if n == 4 && &b == b"pong" {
                1
            } else {
                -(n as i64) - 1000
            };
            r[3] = raw_connect(s, &sockaddr_v4(TARGET, 443));
            // A blocking socket stays blocking.
            let s2 = tcp_socket(0);
            r[4] = raw_connect(s2, &sockaddr_v4(TARGET, 80));
            // SAFETY: as above.
            r[5] = i64::from(unsafe { libc::fcntl(s2, libc::F_GETFL) } & libc::O_NONBLOCK);
        },
        true,
    )?;
    let sup = serve(l.unwrap(), guard_cfg(socks.addr, None))?;
    let r = collect(pid, go, res)?;
    check("non-blocking connect", r[0], 0)?;
    check("O_NONBLOCK kept", r[1], i64::from(libc::O_NONBLOCK))?;
    check("echo", r[2], 1)?;
    check("connect again", r[3], -i64::from(libc::EISCONN))?;
    check("blocking connect", r[4], 0)?;
    check("blocking kept", r[5], 0)?;
    finish(&sup)
}

fn credentials_and_refusal() -> Result<(), String> {
    let socks = socks_server("127.0.0.1:0", Some(("alice", "s3cret")));
    let (pid, l, go, res) = spawn_program(
        |r| {
            let s = tcp_socket(0);
            r[0] = raw_connect(s, &sockaddr_v4(TARGET, 80));
            // The proxy refuses port 1: ECONNREFUSED, and the socket can be reused.
            let s = tcp_socket(0);
            r[1] = raw_connect(s, &sockaddr_v4(TARGET, 1));
            r[2] = raw_connect(s, &sockaddr_v4(TARGET, 80));
        },
        true,
    )?;
    let sup = serve(l.unwrap(), guard_cfg(socks.addr, Some(("alice", "s3cret"))))?;
    let r = collect(pid, go, res)?;
    check("connect with credentials", r[0], 0)?;
    check("refused by the proxy", r[1], -i64::from(libc::ECONNREFUSED))?;
    check("retry on the same socket", r[2], 0)?;
    finish(&sup)
}

fn udp_rules() -> Result<(), String> {
    let socks = socks_server("127.0.0.1:0", None);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let port = peer.local_addr().unwrap().port();
    PORT.store(port, std::sync::atomic::Ordering::SeqCst);
    let (pid, l, go, res) = spawn_program(
        |r| {
            let port = PORT.load(std::sync::atomic::Ordering::SeqCst);
            // SAFETY: raw system calls on stack data of the sizes given.
            unsafe {
                let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                let lo = sockaddr_v4([127, 0, 0, 1], port);
                let far = sockaddr_v4(TARGET, 5000);
                let sl = std::mem::size_of::<libc::sockaddr_in>() as libc::c_long;
                r[0] = sys_ret(libc::syscall(
                    libc::SYS_sendto,
                    s as libc::c_long,
                    b"hello".as_ptr(),
                    5 as libc::c_long,
                    0 as libc::c_long,
                    &lo as *const libc::sockaddr_in,
                    sl,
                ));
                r[1] = sys_ret(libc::syscall(
                    libc::SYS_sendto,
                    s as libc::c_long,
                    b"leak".as_ptr(),
                    4 as libc::c_long,
                    0 as libc::c_long,
                    &far as *const libc::sockaddr_in,
                    sl,
                ));
                // sendmsg with two iovecs to loopback: gathered into one datagram.
                let mut iov = [
                    libc::iovec {
                        iov_base: b"wor".as_ptr() as *mut libc::c_void,
                        iov_len: 3,
                    },
                    libc::iovec {
                        iov_base: b"ld".as_ptr() as *mut libc::c_void,
                        iov_len: 2,
                    },
                ];
                let mut m: libc::msghdr = std::mem::zeroed();
                m.msg_name = &lo as *const _ as *mut libc::c_void;
                m.msg_namelen = sl as u32;
                m.msg_iov = iov.as_mut_ptr();
                m.msg_iovlen = 2;
                r[2] = sys_ret(libc::syscall(libc::SYS_sendmsg, s as libc::c_long, &m, 0));
                // connect of a UDP socket to a far address: refused.
                r[3] = raw_connect(s, &far);
                // ICMP ping socket: refused.
                let p = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP);
                r[4] = if p < 0 { -9999 } else { raw_connect(p, &far) };
                // An AF_UNIX socket is let through (continued): ENOENT from the kernel.
                let u = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let mut sun: libc::sockaddr_un = std::mem::zeroed();
                sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (i, c) in b"/nonexistent/sock".iter().enumerate() {
                    sun.sun_path[i] = *c as libc::c_char;
                }
                r[5] = sys_ret(libc::syscall(
                    libc::SYS_connect,
                    u as libc::c_long,
                    &sun as *const libc::sockaddr_un,
                    std::mem::size_of::<libc::sockaddr_un>() as libc::c_long,
                ));
            }
        },
        true,
    )?;
    let sup = serve(l.unwrap(), guard_cfg(socks.addr, None))?;
    let r = collect(pid, go, res)?;
    check("sendto loopback", r[0], 5)?;
    check("sendto far", r[1], -i64::from(libc::ENETUNREACH))?;
    check("sendmsg loopback", r[2], 5)?;
    check("udp connect far", r[3], -i64::from(libc::ENETUNREACH))?;
    if r[4] != -9999 {
        check("icmp connect", r[4], -i64::from(libc::EACCES))?;
    }
    check("AF_UNIX continued", r[5], -i64::from(libc::ENOENT))?;
    let mut b = [0u8; 16];
    let n = peer.recv(&mut b).map_err(|e| format!("no datagram: {e}"))?;
    check("first datagram", (&b[..n] == b"hello") as i64, 1)?;
    let n = peer.recv(&mut b).map_err(|e| format!("no datagram: {e}"))?;
    check("second datagram", (&b[..n] == b"world") as i64, 1)?;
    finish(&sup)
}

static PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

fn family_change() -> Result<(), String> {
    let socks = socks_server("[::1]:0", None);
    let (pid, l, go, res) = spawn_program(
        |r| {
            // SAFETY: F_GETFD takes no argument.
            let s = tcp_socket(libc::SOCK_CLOEXEC);
            r[0] = raw_connect(s, &sockaddr_v4(TARGET, 80));
            raw_write(s, b"v4v6");
            let mut b = [0u8; 4];
            let n = raw_read(s, &mut b);
            r[1] = if n == 4 && &b == b"v4v6" {
                1
            } else {
                -(n as i64) - 1000
            };
            // SAFETY: as above.
            r[2] = i64::from(unsafe { libc::fcntl(s, libc::F_GETFD) } & libc::FD_CLOEXEC);
            // SAFETY: out-parameters of the right sizes.
            unsafe {
                let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                r[3] = sys_ret(libc::syscall(
                    libc::SYS_getpeername,
                    s as libc::c_long,
                    &mut ss as *mut libc::sockaddr_storage,
                    &mut len as *mut libc::socklen_t,
                ));
                r[4] = i64::from(ss.ss_family);
            }
        },
        true,
    )?;
    let sup = serve(l.unwrap(), guard_cfg(socks.addr, None))?;
    let r = collect(pid, go, res)?;
    check("connect (IPv4 socket, IPv6 proxy)", r[0], 0)?;
    check("echo", r[1], 1)?;
    check("close-on-exec kept", r[2], i64::from(libc::FD_CLOEXEC))?;
    check("getpeername", r[3], 0)?;
    // The replacement is an IPv6 socket, but the program made an IPv4 one: the target
    // shows as the sockaddr_in it connected to.
    check("getpeername family", r[4], i64::from(libc::AF_INET))?;
    finish(&sup)
}
