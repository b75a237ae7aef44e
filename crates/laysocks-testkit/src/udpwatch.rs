//! The UDP leak watch: every UDP packet that leaves the client namespace is inspected.
//!
//! `Ip OutNoRoutes` sees a datagram sent straight to the target (the client has no route
//! there), but not one sent to an address the client *can* reach by mistake (the proxy
//! host itself, an unwrapped payload written to the relay). So [`Rig::udp_watch`] puts a
//! packet socket (`AF_PACKET`) on the client's only link and checks every outgoing UDP
//! packet: it must go to the proxy host (198.51.100.1 or 2001:db8:1::1) and, unless it is
//! a later fragment of a big datagram, carry a SOCKS5 UDP request header (RFC 1928 §7:
//! RSV 0x0000, FRAG 0, ATYP 1, 3 or 4). Anything else is a violation, reported by
//! [`Rig::check_no_leak`] once the watch runs.
//!
//! A classic BPF filter keeps only outgoing packets and only their first 256 bytes, and
//! the socket has a large buffer, so floods of datagrams fit; the kernel's drop count is
//! reported too (a drop means a packet went unchecked, and counts as a failure).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::netns::{spawn_in_netns, Rig, PROXY_V4, PROXY_V6};
use crate::util::WAIT;

/// The client's link to the proxy host (see [`crate::netns`]).
const CLIENT_IF: &str = "to-proxy";
/// How much of each packet the filter keeps.
const SNAPLEN: u32 = 256;

/// What the watch has seen so far (all counters only grow).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpWatchCounts {
    /// Datagrams (first fragments) to the proxy host with a SOCKS5 UDP header.
    pub wrapped: u64,
    /// Later fragments of datagrams to the proxy host.
    pub fragments: u64,
    /// Packets the kernel dropped before the watch could read them.
    pub dropped: u64,
    /// Outgoing UDP packets that were not wrapped datagrams to the proxy host.
    pub violations: u64,
}

#[derive(Default)]
struct State {
    counts: UdpWatchCounts,
    /// Descriptions of the violations (the first 50).
    seen: Vec<String>,
}

/// The running watch (see the module docs).
#[derive(Clone)]
pub struct UdpWatch {
    state: Arc<Mutex<State>>,
    /// Goes up each time the watch finds its queue empty.
    idle: Arc<AtomicU64>,
    baseline: Arc<Mutex<UdpWatchCounts>>,
}

impl UdpWatch {
    /// The counters now, after the watch has read every packet queued before this call
    /// (bounded wait).
    pub fn counts(&self) -> UdpWatchCounts {
        self.sync();
        self.state.lock().unwrap().counts.clone()
    }

    /// The counters since the last [`UdpWatch::reset`] (or the start).
    pub fn since_baseline(&self) -> UdpWatchCounts {
        let now = self.counts();
        let b = self.baseline.lock().unwrap().clone();
        UdpWatchCounts {
            wrapped: now.wrapped - b.wrapped,
            fragments: now.fragments - b.fragments,
            dropped: now.dropped - b.dropped,
            violations: now.violations - b.violations,
        }
    }

    /// Counts from now on.
    pub fn reset(&self) {
        let now = self.counts();
        *self.baseline.lock().unwrap() = now;
        self.state.lock().unwrap().seen.clear();
    }

    /// `Err(description)` when an outgoing UDP packet since the baseline was not a
    /// wrapped datagram to the proxy host, or went unchecked.
    pub fn check(&self) -> Result<(), String> {
        let d = self.since_baseline();
        let mut what = Vec::new();
        if d.violations > 0 {
            let seen = self.state.lock().unwrap().seen.join("; ");
            what.push(format!(
                "{} UDP packet(s) left the client that were not SOCKS5-wrapped datagrams to \
                 the proxy host: {seen}",
                d.violations
            ));
        }
        if d.dropped > 0 {
            what.push(format!(
                "{} outgoing packet(s) went unchecked (the UDP watch's queue overflowed)",
                d.dropped
            ));
        }
        if what.is_empty() {
            Ok(())
        } else {
            Err(what.join("; "))
        }
    }

    /// Waits until the watch has found its queue empty twice after this call: packets
    /// reach a packet socket's queue as they are sent, so everything sent before is read.
    fn sync(&self) {
        let start = self.idle.load(Ordering::SeqCst);
        let deadline = Instant::now() + WAIT;
        while self.idle.load(Ordering::SeqCst) < start + 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Rig {
    /// Starts (once) the UDP leak watch on the client's link and returns it; from then on
    /// [`Rig::check_no_leak`] also fails on any outgoing UDP packet that is not a wrapped
    /// datagram to the proxy host. See the module docs.
    pub fn udp_watch(&self) -> UdpWatch {
        self.servers
            .udp_watch
            .get_or_init(|| {
                let state = Arc::new(Mutex::new(State::default()));
                let idle = Arc::new(AtomicU64::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let (tx, rx) = std::sync::mpsc::channel();
                let (st2, idle2, stop2) = (state.clone(), idle.clone(), stop.clone());
                let h = spawn_in_netns(self.client_ns(), "udp-watch", move || {
                    let fd = open_packet_socket();
                    tx.send(()).unwrap();
                    watch_loop(&fd, &st2, &idle2, &stop2);
                });
                rx.recv_timeout(WAIT).expect("the UDP watch did not start");
                self.keep_thread(stop, h);
                warm_neighbours(self.client_ns());
                let w = UdpWatch {
                    state,
                    idle,
                    baseline: Arc::new(Mutex::new(UdpWatchCounts::default())),
                };
                w.reset();
                w
            })
            .clone()
    }

    /// The UDP watch, if it has been started.
    pub(crate) fn udp_watch_if_started(&self) -> Option<UdpWatch> {
        self.servers.udp_watch.get().cloned()
    }
}

/// Resolves the proxy host's link-layer addresses (ARP, IPv6 neighbour discovery) from
/// the client, with a TCP connect to a closed port (refused once the neighbour answers).
/// Until then the kernel holds a first packet back, so a datagram sent in a fresh rig
/// could reach the link only after a check had already passed.
fn warm_neighbours(client_ns: &str) {
    use crate::netns::{in_netns, CLOSED_PORT};
    in_netns(client_ns, || {
        for ip in [IpAddr::V4(PROXY_V4), IpAddr::V6(PROXY_V6)] {
            let to = std::net::SocketAddr::new(ip, CLOSED_PORT);
            let deadline = Instant::now() + WAIT;
            loop {
                match std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    _ if Instant::now() > deadline => {
                        panic!("the client cannot reach the proxy host at {ip}")
                    }
                    _ => {}
                }
            }
        }
    });
}

/// Sets a socket's receive and send buffers (forcing past the sysctl limits; root).
pub(crate) fn set_buffers(sock: &UdpSocket, bytes: libc::c_int) {
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt(2) on a socket we own with a c_int option value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &bytes as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

fn last_error(what: &str) -> ! {
    panic!(
        "the UDP watch: {what} failed: {} (the rig must run as root)",
        std::io::Error::last_os_error()
    )
}

/// A non-blocking `AF_PACKET` socket on the client link, outgoing packets only.
fn open_packet_socket() -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::c_int::from(proto),
        )
    };
    if raw < 0 {
        last_error("socket(AF_PACKET)");
    }
    // SAFETY: `raw` is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Filter first, so nothing unfiltered is queued once bound.
    // ld [SKF_AD_OFF + SKF_AD_PKTTYPE]; jeq #PACKET_OUTGOING, 0, 1; ret #SNAPLEN; ret #0
    let mut prog = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0xffff_f000 + 4,
        },
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::PACKET_OUTGOING as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: SNAPLEN,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: setsockopt(2) with a sock_fprog pointing at `prog`, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        last_error("SO_ATTACH_FILTER");
    }
    let bytes: libc::c_int = 64 << 20;
    // SAFETY: setsockopt(2) with a c_int.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let name = std::ffi::CString::new(CLIENT_IF).unwrap();
    // SAFETY: if_nametoindex(3) with a NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        last_error("if_nametoindex(to-proxy)");
    }
    // SAFETY: an all-zero sockaddr_ll is valid; we fill in the fields bind needs.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind(2) with a sockaddr_ll of the right size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        last_error("bind(AF_PACKET)");
    }
    fd
}

fn watch_loop(fd: &OwnedFd, state: &Mutex<State>, idle: &AtomicU64, stop: &AtomicBool) {
    let mut buf = [0u8; SNAPLEN as usize];
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: recv(2) into our buffer.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                read_drops(fd, state);
                idle.fetch_add(1, Ordering::SeqCst);
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll(2) on one pollfd.
                unsafe { libc::poll(&mut p, 1, 5) };
            }
            continue;
        }
        let len = (n as usize).min(buf.len());
        inspect(&buf[..len], state);
        if last_stats.elapsed() > Duration::from_millis(100) {
            read_drops(fd, state);
            last_stats = Instant::now();
        }
    }
}

/// Adds the kernel's drop count (PACKET_STATISTICS resets on read) to the state.
fn read_drops(fd: &OwnedFd, state: &Mutex<State>) {
    // SAFETY: an all-zero tpacket_stats is valid.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: getsockopt(2) into a tpacket_stats of the size we pass.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut libc::tpacket_stats as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 && st.tp_drops > 0 {
        state.lock().unwrap().counts.dropped += u64::from(st.tp_drops);
    }
}

/// One outgoing Ethernet frame (its first [`SNAPLEN`] bytes).
fn inspect(frame: &[u8], state: &Mutex<State>) {
    if frame.len() < 14 {
        return;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[14..];
    let verdict = match ethertype {
        0x0800 => inspect_v4(ip),
        0x86dd => inspect_v6(ip),
        _ => Verdict::NotUdp,
    };
    let mut st = state.lock().unwrap();
    match verdict {
        Verdict::NotUdp => {}
        Verdict::Wrapped => st.counts.wrapped += 1,
        Verdict::Fragment => st.counts.fragments += 1,
        Verdict::Bad(what) => {
            st.counts.violations += 1;
            if st.seen.len() < 50 {
                st.seen.push(what);
            }
        }
    }
}

enum Verdict {
    NotUdp,
    Wrapped,
    Fragment,
    Bad(String),
}

fn inspect_v4(ip: &[u8]) -> Verdict {
    if ip.len() < 20 {
        return Verdict::NotUdp;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let proto = ip[9];
    let frag_off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    if proto != 17 {
        return Verdict::NotUdp;
    }
    udp_verdict(
        IpAddr::V4(src),
        IpAddr::V4(dst),
        dst == PROXY_V4,
        frag_off != 0,
        ip.get(ihl..).unwrap_or(&[]),
    )
}

fn inspect_v6(ip: &[u8]) -> Verdict {
    if ip.len() < 40 {
        return Verdict::NotUdp;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&ip[24..40]);
    let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
    let mut next = ip[6];
    let mut off = 40;
    let mut later_fragment = false;
    // Walk the extension headers (hop-by-hop, routing, fragment, destination options).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let Some(h) = ip.get(off..off + 2) else {
                    return Verdict::NotUdp;
                };
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            44 => {
                let Some(h) = ip.get(off..off + 8) else {
                    return Verdict::NotUdp;
                };
                next = h[0];
                later_fragment = u16::from_be_bytes([h[2], h[3]]) >> 3 != 0;
                off += 8;
            }
            _ => break,
        }
    }
    if next != 17 {
        return Verdict::NotUdp;
    }
    udp_verdict(
        IpAddr::V6(src),
        IpAddr::V6(dst),
        dst == PROXY_V6,
        later_fragment,
        ip.get(off..).unwrap_or(&[]),
    )
}

fn udp_verdict(
    src: IpAddr,
    dst: IpAddr,
    to_proxy: bool,
    later_fragment: bool,
    udp: &[u8],
) -> Verdict {
    if later_fragment {
        return if to_proxy {
            Verdict::Fragment
        } else {
            Verdict::Bad(format!("a UDP fragment {src} -> {dst}"))
        };
    }
    let (sport, dport) = match udp.get(0..4) {
        Some(h) => (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        ),
        None => (0, 0),
    };
    let payload = udp.get(8..).unwrap_or(&[]);
    let what = |why: &str| {
        let head: Vec<String> = payload.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "UDP {} -> {} {why}, payload starts {}",
            std::net::SocketAddr::new(src, sport),
            std::net::SocketAddr::new(dst, dport),
            head.join(" ")
        )
    };
    if !to_proxy {
        return Verdict::Bad(what("not to the proxy host"));
    }
    let wrapped = payload.len() >= 4
        && payload[0] == 0
        && payload[1] == 0
        && payload[2] == 0
        && matches!(payload[3], 1 | 3 | 4);
    if wrapped {
        Verdict::Wrapped
    } else {
        Verdict::Bad(what(
            "without a SOCKS5 UDP header (RSV 0, FRAG 0, ATYP 1/3/4)",
        ))
    }
}
