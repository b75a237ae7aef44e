//! Real servers we did not write, started on demand inside the rig's namespaces.
//!
//! SOCKS5 servers run in the proxy host: `microsocks` (no auth, and a second instance
//! with user/pass) and Dante's `danted` (username auth against a system user). The target
//! runs an HTTP server (python3's `http.server`, which on `::` is dual-stack), a TCP echo
//! server (in-process, so it can report the peer address it saw: the proxy host's, which
//! proves the connection came through the proxy), a UDP echo server on the same port
//! (in-process too, recording the sources of the datagrams it echoed), `sshd`, and
//! `git daemon`; the HTTP server also serves a bare git repository for the dumb HTTP
//! protocol.
//!
//! The target can also run `dnsmasq` ([`Rig::dnsmasq`]), a real DNS server (UDP and TCP)
//! that knows only [`DNS_ONLY_NAME`] and logs every query it answers, for `res_*` queries
//! and programs' own DNS-over-TCP that the layer sends through the proxy.
//!
//! The client namespace can run a UDP echo of its own on loopback
//! ([`Rig::client_udp_echo`]), for traffic that stays direct; and [`Rig::restart_danted`]
//! kills danted and starts it again on the same port, dropping every session it had.
//!
//! Each `Rig` method starts its server once and returns the same handle afterwards; the
//! rig kills the processes on drop. Every start waits (bounded) until the server listens.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{spawn_in_netns, Rig, PROXY_V4, PROXY_V6, TARGET_V4, TARGET_V6};
use crate::util::{python3, require, WAIT};

pub const MICROSOCKS_PORT: u16 = 1080;
pub const MICROSOCKS_AUTH_PORT: u16 = 1081;
pub const DANTED_PORT: u16 = 1082;
pub const HTTP_PORT: u16 = 8080;
pub const ECHO_PORT: u16 = 7;
pub const SSH_PORT: u16 = 22;
pub const GIT_PORT: u16 = 9418;
pub const DNS_PORT: u16 = 53;

/// The one name [`Rig::dnsmasq`] answers (A [`TARGET_V4`], AAAA [`TARGET_V6`]); no
/// `/etc/hosts` knows it, so an answer for it can only have come from that server.
pub const DNS_ONLY_NAME: &str = "dns-only.test";

/// The user the authenticating proxies accept (a system user for Dante).
pub const PROXY_USER: &str = "laysockstest";
/// Its password. A test fixture, not a secret: it exists only inside the rig.
pub const PROXY_PASS: &str = "Corr3ct-h0rse";

/// What `hello.txt` on the HTTP server contains.
pub const HELLO_BODY: &str = "hello from the laysocks target\n";
/// The size of `big.bin` on the HTTP server.
pub const BIG_LEN: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Servers {
    microsocks: OnceLock<Proxy>,
    microsocks_auth: OnceLock<Proxy>,
    danted: OnceLock<Proxy>,
    http: OnceLock<HttpServer>,
    echo: OnceLock<EchoServer>,
    sshd: OnceLock<Sshd>,
    git: OnceLock<GitServer>,
    dnsmasq: OnceLock<DnsServer>,
    udp_echo: OnceLock<UdpEchoServer>,
    client_udp_echo: OnceLock<UdpEchoServer>,
    /// The slot of the running danted in the rig's processes, and how often it restarted.
    danted_proc: Mutex<Option<(usize, u32)>>,
    pub(crate) udp_watch: OnceLock<crate::udpwatch::UdpWatch>,
}

/// Which SOCKS5 server a [`Proxy`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Microsocks,
    MicrosocksAuth,
    Danted,
    Fault,
}

/// A SOCKS5 server in the proxy host, reachable from the client at 198.51.100.1 and
/// `[2001:db8:1::1]`.
#[derive(Clone, Debug)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub port: u16,
    /// The user and password the server accepts, if it wants any.
    pub credentials: Option<(String, String)>,
}

impl Proxy {
    /// `socks5://[user:pass@]198.51.100.1:port`
    pub fn url(&self) -> String {
        self.url_on(IpAddr::V4(PROXY_V4))
    }

    /// `socks5://[user:pass@][2001:db8:1::1]:port`
    pub fn url_v6(&self) -> String {
        self.url_on(IpAddr::V6(PROXY_V6))
    }

    /// The URL with other credentials (e.g. a wrong password).
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("socks5://{user}:{pass}@{}", self.addr())
    }

    /// `socks5://198.51.100.1:port`: how the launcher names this proxy in messages.
    pub fn url_without_credentials(&self) -> String {
        format!("socks5://{}", self.addr())
    }

    /// The IPv4 address of the server.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(PROXY_V4), self.port)
    }

    /// The IPv6 address of the server.
    pub fn addr_v6(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(PROXY_V6), self.port)
    }

    /// `host:port` for `curl --socks5` and friends (no credentials).
    pub fn host_port(&self) -> String {
        self.addr().to_string()
    }

    fn url_on(&self, ip: IpAddr) -> String {
        let auth = match &self.credentials {
            Some((u, p)) => format!("{u}:{p}@"),
            None => String::new(),
        };
        format!("socks5://{auth}{}", SocketAddr::new(ip, self.port))
    }
}

/// The HTTP server in the target: `hello.txt` ([`HELLO_BODY`]), `big.bin`
/// ([`BIG_LEN`] bytes, see [`big_body`]) and `repo.git` (after [`Rig::git`]).
#[derive(Clone, Debug)]
pub struct HttpServer {
    pub port: u16,
    pub root: PathBuf,
}

impl HttpServer {
    /// `http://203.0.113.2:8080/<path>`
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}/{path}",
            SocketAddr::new(TARGET_V4.into(), self.port)
        )
    }

    /// `http://[2001:db8:2::2]:8080/<path>`
    pub fn url_v6(&self, path: &str) -> String {
        format!(
            "http://{}/{path}",
            SocketAddr::new(TARGET_V6.into(), self.port)
        )
    }

    /// `http://<name>:8080/<path>`
    pub fn url_named(&self, name: &str, path: &str) -> String {
        format!("http://{name}:{}/{path}", self.port)
    }
}

/// The bytes of `big.bin`: a fixed pseudo-random sequence (xorshift), so corruption
/// anywhere in the stream shows.
pub fn big_body() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(BIG_LEN);
    while out.len() < BIG_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(BIG_LEN);
    out
}

/// The TCP echo server in the target, with the peers it has seen.
#[derive(Clone, Debug)]
pub struct EchoServer {
    pub port: u16,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl EchoServer {
    /// The source address of every connection accepted so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }

    /// Panics unless every connection came from the proxy host (203.0.113.1 or
    /// 2001:db8:2::1) and there was at least one.
    #[track_caller]
    pub fn assert_peers_are_proxy(&self) {
        let peers = self.peers();
        assert!(
            !peers.is_empty(),
            "the echo server saw no connection at all"
        );
        for p in &peers {
            let ip = match p.ip() {
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            };
            assert!(
                ip == IpAddr::V4(crate::PROXY_OUT_V4) || ip == IpAddr::V6(crate::PROXY_OUT_V6),
                "the echo server saw a connection from {p}, not from the proxy host: {peers:?}"
            );
        }
    }

    /// `203.0.113.2:7`
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(TARGET_V4.into(), self.port)
    }

    /// `[2001:db8:2::2]:7`
    pub fn addr_v6(&self) -> SocketAddr {
        SocketAddr::new(TARGET_V6.into(), self.port)
    }
}

/// The UDP echo server in the target on `[::]:7` (dual-stack, in-process): every datagram
/// goes back to its sender unchanged. It records the distinct source addresses it saw, so
/// a test can check that datagrams came from the proxy host's relay (203.0.113.1 or
/// 2001:db8:2::1) and not from the client, and how many datagrams it echoed.
#[derive(Clone, Debug)]
pub struct UdpEchoServer {
    pub port: u16,
    /// The address its socket is bound to (`[::]:7`).
    pub bound: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl UdpEchoServer {
    /// Every distinct source address seen so far, in order of first appearance
    /// (IPv4-mapped sources are shown as IPv4).
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }

    /// How many datagrams it has received (and echoed) so far.
    pub fn datagrams(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Panics unless every datagram came from the proxy host (203.0.113.1 or
    /// 2001:db8:2::1) and there was at least one.
    #[track_caller]
    pub fn assert_peers_are_proxy(&self) {
        let peers = self.peers();
        assert!(
            !peers.is_empty(),
            "the UDP echo server saw no datagram at all"
        );
        for p in &peers {
            assert!(
                p.ip() == IpAddr::V4(crate::PROXY_OUT_V4)
                    || p.ip() == IpAddr::V6(crate::PROXY_OUT_V6),
                "the UDP echo server saw a datagram from {p}, not from the proxy host: {peers:?}"
            );
        }
    }

    /// `203.0.113.2:7` (the target's; [`Rig::client_udp_echo`] is on loopback).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(TARGET_V4.into(), self.port)
    }

    /// `[2001:db8:2::2]:7` (the target's; [`Rig::client_udp_echo`] is on loopback).
    pub fn addr_v6(&self) -> SocketAddr {
        SocketAddr::new(TARGET_V6.into(), self.port)
    }
}

/// `sshd` in the target, accepting `root` with the key at [`Sshd::key`].
#[derive(Clone, Debug)]
pub struct Sshd {
    pub port: u16,
    /// The client's private key.
    pub key: PathBuf,
}

impl Sshd {
    /// `ssh` options for a non-interactive login as root on `host`, then the destination.
    pub fn ssh_args(&self, host: &str) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-i",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            self.key.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            format!("root@{host}"),
        ])
        .collect()
    }
}

/// A bare repository served by `git daemon` (git://) and by the HTTP server (dumb HTTP).
#[derive(Clone, Debug)]
pub struct GitServer {
    /// `git://203.0.113.2/repo.git`
    pub git_url: String,
    /// `git://[2001:db8:2::2]/repo.git`
    pub git_url_v6: String,
    /// `http://203.0.113.2:8080/repo.git`
    pub http_url: String,
    /// What `README` in the repository contains.
    pub readme: String,
}

/// `dnsmasq` in the target on 203.0.113.2:53 (UDP and TCP), authoritative for
/// [`DNS_ONLY_NAME`] only, with no upstream (any other name is REFUSED).
#[derive(Clone, Debug)]
pub struct DnsServer {
    pub addr: SocketAddr,
    log: PathBuf,
}

/// One query [`DnsServer`] logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    /// `A`, `AAAA`, …
    pub qtype: String,
    pub name: String,
    /// The source address of the query (the proxy host's 203.0.113.1 when it came
    /// through the proxy).
    pub from: String,
}

impl DnsServer {
    /// `203.0.113.2:53`, as `--dns-server` takes it.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Every query logged so far, oldest first.
    pub fn queries(&self) -> Vec<DnsQuery> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(parse_dnsmasq_query).collect()
    }
}

/// `dnsmasq[PID]: query[A] NAME from ADDR`
fn parse_dnsmasq_query(line: &str) -> Option<DnsQuery> {
    let rest = &line[line.find("query[")? + "query[".len()..];
    let (qtype, rest) = rest.split_once(']')?;
    let mut it = rest.split_whitespace();
    let name = it.next()?.to_string();
    (it.next()? == "from").then_some(())?;
    let from = it.next()?.to_string();
    Some(DnsQuery {
        qtype: qtype.to_string(),
        name,
        from,
    })
}

impl Rig {
    /// `dnsmasq` in the target on 203.0.113.2:53 (see [`DnsServer`]). The rig kills it
    /// (its process group, by id) on drop.
    pub fn dnsmasq(&self) -> DnsServer {
        self.servers
            .dnsmasq
            .get_or_init(|| {
                let bin = require("dnsmasq", "dnsmasq-base");
                let mut cmd = Command::new(bin);
                cmd.args([
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    &format!("--host-record={DNS_ONLY_NAME},{TARGET_V4},{TARGET_V6}"),
                    &format!("--port={DNS_PORT}"),
                    &format!("--listen-address={TARGET_V4}"),
                    "--bind-interfaces",
                    "--keep-in-foreground",
                    "--log-facility=-",
                    "--log-queries",
                    "--user=root",
                    "--group=root",
                    "--pid-file=",
                ]);
                let i = self.spawn_server(self.target_ns(), "dnsmasq", cmd);
                self.wait_listening(self.target_ns(), IpAddr::V4(TARGET_V4), DNS_PORT, Some(i));
                DnsServer {
                    addr: SocketAddr::new(TARGET_V4.into(), DNS_PORT),
                    log: self.procs.lock().unwrap()[i].log.clone(),
                }
            })
            .clone()
    }

    /// `microsocks` without authentication on port 1080, on `::` (IPv4 and IPv6).
    pub fn microsocks(&self) -> Proxy {
        self.servers
            .microsocks
            .get_or_init(|| {
                let bin = require("microsocks", "microsocks");
                let mut cmd = Command::new(bin);
                cmd.args(["-i", "::", "-p", &MICROSOCKS_PORT.to_string()]);
                let i = self.spawn_server(self.proxy_ns(), "microsocks", cmd);
                self.wait_listening(
                    self.proxy_ns(),
                    IpAddr::V4(PROXY_V4),
                    MICROSOCKS_PORT,
                    Some(i),
                );
                Proxy {
                    kind: ProxyKind::Microsocks,
                    port: MICROSOCKS_PORT,
                    credentials: None,
                }
            })
            .clone()
    }

    /// `microsocks -u laysockstest -P …` on port 1081 (user/pass required).
    pub fn microsocks_auth(&self) -> Proxy {
        self.servers
            .microsocks_auth
            .get_or_init(|| {
                let bin = require("microsocks", "microsocks");
                let mut cmd = Command::new(bin);
                cmd.args(["-i", "::", "-p", &MICROSOCKS_AUTH_PORT.to_string()])
                    .args(["-u", PROXY_USER, "-P", PROXY_PASS]);
                let i = self.spawn_server(self.proxy_ns(), "microsocks-auth", cmd);
                self.wait_listening(
                    self.proxy_ns(),
                    IpAddr::V4(PROXY_V4),
                    MICROSOCKS_AUTH_PORT,
                    Some(i),
                );
                Proxy {
                    kind: ProxyKind::MicrosocksAuth,
                    port: MICROSOCKS_AUTH_PORT,
                    credentials: Some((PROXY_USER.into(), PROXY_PASS.into())),
                }
            })
            .clone()
    }

    /// Dante's `danted` on port 1082 (IPv4 and IPv6), username auth against the system
    /// user [`PROXY_USER`], connecting out through the proxy host's target-side link.
    pub fn danted(&self) -> Proxy {
        self.servers
            .danted
            .get_or_init(|| {
                ensure_proxy_user();
                let conf = self.dir().join("danted.conf");
                // Rules: `0/0` matches IPv4 and IPv6, so a v6 client may reach a v4 target.
                // The commands are Dante's default, spelled out because tests/udp.rs
                // relies on UDP ASSOCIATE (`udpassociate`, and `udpreply` for the
                // target's answers). The relay's address family follows the request's
                // ATYP: an IPv4 request gets a relay on 198.51.100.1 even on a control
                // connection to 2001:db8:1::1.
                let text = format!(
                    "logoutput: stderr\n\
                     internal: {PROXY_V4} port = {DANTED_PORT}\n\
                     internal: {PROXY_V6} port = {DANTED_PORT}\n\
                     external: to-target\n\
                     socksmethod: username\n\
                     clientmethod: none\n\
                     user.privileged: root\n\
                     user.unprivileged: nobody\n\
                     client pass {{ from: 0/0 to: 0/0 }}\n\
                     socks pass {{ from: 0/0 to: 0/0 \
                     command: bind connect udpassociate bindreply udpreply }}\n"
                );
                fs::write(&conf, text).expect("write danted.conf");
                let i = self.spawn_server(self.proxy_ns(), "danted", self.danted_cmd());
                self.wait_danted(i);
                *self.servers.danted_proc.lock().unwrap() = Some((i, 0));
                Proxy {
                    kind: ProxyKind::Danted,
                    port: DANTED_PORT,
                    credentials: Some((PROXY_USER.into(), PROXY_PASS.into())),
                }
            })
            .clone()
    }

    /// Kills the running [`Rig::danted`] (its process group, by the id the rig made it
    /// with), waits until its port is free, and starts it again on the same port with
    /// the same configuration. Every session it had is gone: control connections are
    /// closed by the kernel and the old relays no longer exist. Starts it first if it
    /// was not running. Returns the same [`Proxy`].
    pub fn restart_danted(&self) -> Proxy {
        let p = self.danted();
        let (i, n) = self
            .servers
            .danted_proc
            .lock()
            .unwrap()
            .expect("danted started");
        self.kill_server(i);
        for ip in [IpAddr::V4(PROXY_V4), IpAddr::V6(PROXY_V6)] {
            self.wait_not_listening(self.proxy_ns(), ip, DANTED_PORT);
        }
        let label = format!("danted-restart{}", n + 1);
        self.respawn_server(i, self.proxy_ns(), &label, self.danted_cmd());
        self.wait_danted(i);
        *self.servers.danted_proc.lock().unwrap() = Some((i, n + 1));
        p
    }

    /// The command line of [`Rig::danted`] (its configuration file already written).
    fn danted_cmd(&self) -> Command {
        let mut cmd = Command::new(require("danted", "dante-server"));
        cmd.arg("-f")
            .arg(self.dir().join("danted.conf"))
            .arg("-p")
            .arg(self.dir().join("danted.pid"));
        cmd
    }

    /// Waits until the danted in slot `i` listens on both of its addresses.
    fn wait_danted(&self, i: usize) {
        self.wait_listening(self.proxy_ns(), IpAddr::V4(PROXY_V4), DANTED_PORT, Some(i));
        self.wait_listening(self.proxy_ns(), IpAddr::V6(PROXY_V6), DANTED_PORT, Some(i));
    }

    /// python3's `http.server` in the target on `[::]:8080` (dual-stack).
    pub fn http(&self) -> HttpServer {
        self.servers
            .http
            .get_or_init(|| {
                let root = self.dir().join("www");
                fs::create_dir_all(&root).expect("mkdir www");
                fs::write(root.join("hello.txt"), HELLO_BODY).expect("write hello.txt");
                fs::write(root.join("big.bin"), big_body()).expect("write big.bin");
                let mut cmd = Command::new(python3());
                cmd.args(["-m", "http.server", "--bind", "::", "--directory"])
                    .arg(&root)
                    .arg(HTTP_PORT.to_string())
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                let i = self.spawn_server(self.target_ns(), "http", cmd);
                self.wait_listening(
                    self.target_ns(),
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    HTTP_PORT,
                    Some(i),
                );
                HttpServer {
                    port: HTTP_PORT,
                    root,
                }
            })
            .clone()
    }

    /// A TCP echo server in the target on `[::]:7` (dual-stack), in-process.
    pub fn echo(&self) -> EchoServer {
        self.servers
            .echo
            .get_or_init(|| {
                let peers = Arc::new(Mutex::new(Vec::new()));
                let stop = Arc::new(AtomicBool::new(false));
                let (tx, rx) = std::sync::mpsc::channel();
                let (p2, s2, s3) = (peers.clone(), stop.clone(), stop.clone());
                let h = spawn_in_netns(self.target_ns(), "echo-server", move || {
                    let l = TcpListener::bind((Ipv6Addr::UNSPECIFIED, ECHO_PORT))
                        .expect("bind the echo server");
                    l.set_nonblocking(true).unwrap();
                    tx.send(()).unwrap();
                    accept_loop(&l, &s2, move |s, peer| {
                        p2.lock().unwrap().push(peer);
                        echo_conn(s, &s3);
                    });
                });
                rx.recv_timeout(WAIT)
                    .expect("the echo server did not start");
                self.keep_thread(stop, h);
                EchoServer {
                    port: ECHO_PORT,
                    peers,
                }
            })
            .clone()
    }

    /// The UDP echo server in the target on `[::]:7` (see [`UdpEchoServer`]).
    pub fn udp_echo(&self) -> UdpEchoServer {
        self.servers
            .udp_echo
            .get_or_init(|| self.start_udp_echo(self.target_ns(), "udp-echo-server"))
            .clone()
    }

    /// A second UDP echo server, in the *client* namespace on `[::]:7` (dual-stack):
    /// programs there reach it on loopback, `127.0.0.1:7` and `[::1]:7`, which the layer
    /// leaves direct. Its peers are the client's own sockets (`127.0.0.1:port`, shown as
    /// IPv4, or `[::1]:port`), so a test can tell which socket reached it directly.
    pub fn client_udp_echo(&self) -> UdpEchoServer {
        self.servers
            .client_udp_echo
            .get_or_init(|| self.start_udp_echo(self.client_ns(), "client-udp-echo"))
            .clone()
    }

    /// An in-process UDP echo on `[::]:7` in `ns`, stopped with the rig.
    fn start_udp_echo(&self, ns: &str, name: &str) -> UdpEchoServer {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (p2, c2, s2) = (peers.clone(), count.clone(), stop.clone());
        let bound = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), ECHO_PORT);
        let h = spawn_in_netns(ns, name, move || {
            let sock = UdpSocket::bind(bound).expect("bind the UDP echo server");
            crate::udpwatch::set_buffers(&sock, 8 << 20);
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            tx.send(()).unwrap();
            udp_echo_loop(&sock, &s2, &p2, &c2);
        });
        rx.recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("the UDP echo server {name} did not start"));
        self.keep_thread(stop, h);
        UdpEchoServer {
            port: ECHO_PORT,
            bound,
            peers,
            count,
        }
    }

    /// `sshd` in the target on port 22 (IPv4 and IPv6), key login for root, SFTP (for `scp`).
    pub fn sshd(&self) -> Sshd {
        self.servers
            .sshd
            .get_or_init(|| {
                let sshd = require("/usr/sbin/sshd", "openssh-server");
                let keygen = require("ssh-keygen", "openssh-client");
                require("ssh", "openssh-client");
                let dir = self.dir().join("ssh");
                fs::create_dir_all(&dir).expect("mkdir ssh");
                let host_key = dir.join("host_ed25519");
                let key = dir.join("id_ed25519");
                for (k, comment) in [(&host_key, "laysocks-host"), (&key, "laysocks-client")] {
                    let st = Command::new(&keygen)
                        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                        .arg(k)
                        .stdin(Stdio::null())
                        .status()
                        .expect("run ssh-keygen");
                    assert!(st.success(), "ssh-keygen failed for {}", k.display());
                }
                let pubkey = fs::read_to_string(dir.join("id_ed25519.pub")).expect("read pub key");
                let auth = dir.join("authorized_keys");
                fs::write(&auth, pubkey).expect("write authorized_keys");
                let conf = dir.join("sshd_config");
                fs::write(
                    &conf,
                    format!(
                        "Port {SSH_PORT}\n\
                         ListenAddress 0.0.0.0\n\
                         ListenAddress ::\n\
                         HostKey {}\n\
                         PidFile none\n\
                         UsePAM no\n\
                         PermitRootLogin prohibit-password\n\
                         PubkeyAuthentication yes\n\
                         PasswordAuthentication no\n\
                         KbdInteractiveAuthentication no\n\
                         AuthorizedKeysFile {}\n\
                         StrictModes no\n\
                         UseDNS no\n\
                         Subsystem sftp internal-sftp\n\
                         LogLevel VERBOSE\n",
                        host_key.display(),
                        auth.display()
                    ),
                )
                .expect("write sshd_config");
                fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
                let mut cmd = Command::new(sshd);
                cmd.args(["-D", "-e", "-f"]).arg(&conf);
                let i = self.spawn_server(self.target_ns(), "sshd", cmd);
                self.wait_listening(self.target_ns(), IpAddr::V4(TARGET_V4), SSH_PORT, Some(i));
                Sshd {
                    port: SSH_PORT,
                    key,
                }
            })
            .clone()
    }

    /// A bare repository with one commit, served by `git daemon` on port 9418 and by the
    /// HTTP server at `/repo.git` (starts the HTTP server too).
    pub fn git(&self) -> GitServer {
        let http = self.http();
        self.servers
            .git
            .get_or_init(|| {
                let git = require("git", "git");
                let work = self.dir().join("git-work");
                let readme = format!("laysocks git fixture {}\n", self.id());
                let bare = http.root.join("repo.git");
                fs::create_dir_all(&work).expect("mkdir git-work");
                fs::write(work.join("README"), &readme).expect("write README");
                let g = |args: &[&str], dir: &Path| {
                    let out = Command::new(&git)
                        .args([
                            "-c",
                            "user.name=laysocks",
                            "-c",
                            "user.email=test@example.invalid",
                        ])
                        .args(["-c", "init.defaultBranch=main"])
                        .args(args)
                        .current_dir(dir)
                        .env("GIT_CONFIG_NOSYSTEM", "1")
                        .env("GIT_CONFIG_GLOBAL", "/dev/null")
                        .stdin(Stdio::null())
                        .output()
                        .expect("run git");
                    assert!(
                        out.status.success(),
                        "git {args:?} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                };
                g(&["init", "-q"], &work);
                g(&["add", "README"], &work);
                g(&["commit", "-q", "-m", "fixture"], &work);
                g(
                    &[
                        "clone",
                        "-q",
                        "--bare",
                        work.to_str().unwrap(),
                        bare.to_str().unwrap(),
                    ],
                    &work,
                );
                g(&["update-server-info"], &bare);
                let mut cmd = Command::new(&git);
                cmd.arg("daemon")
                    .arg("--export-all")
                    .arg("--reuseaddr")
                    .arg("--informative-errors")
                    .arg(format!("--base-path={}", http.root.display()))
                    .arg(format!("--listen={TARGET_V4}"))
                    .arg(format!("--listen={TARGET_V6}"))
                    .arg(format!("--port={GIT_PORT}"))
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("GIT_CONFIG_GLOBAL", "/dev/null");
                let i = self.spawn_server(self.target_ns(), "git-daemon", cmd);
                self.wait_listening(self.target_ns(), IpAddr::V4(TARGET_V4), GIT_PORT, Some(i));
                self.wait_listening(self.target_ns(), IpAddr::V6(TARGET_V6), GIT_PORT, Some(i));
                GitServer {
                    git_url: format!("git://{TARGET_V4}/repo.git"),
                    git_url_v6: format!("git://[{TARGET_V6}]/repo.git"),
                    http_url: http.url("repo.git"),
                    readme,
                }
            })
            .clone()
    }
}

/// Creates the system user Dante authenticates against, once per process; idempotent
/// across processes (an existing user just gets its password set again).
fn ensure_proxy_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let exists = || {
            Command::new("id")
                .args(["-u", PROXY_USER])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !exists() {
            let useradd = require("useradd", "passwd");
            let out = Command::new(useradd)
                .args([
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    PROXY_USER,
                ])
                .stdin(Stdio::null())
                .output()
                .expect("run useradd");
            // Another test process may have won the race; only a missing user is fatal.
            assert!(
                out.status.success() || exists(),
                "useradd {PROXY_USER} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let chpasswd = require("chpasswd", "passwd");
        // The password goes through stdin, never a command line.
        let mut child = Command::new(chpasswd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PROXY_USER}:{PROXY_PASS}\n").as_bytes())
            .expect("feed chpasswd");
        let out = child.wait_with_output().expect("wait for chpasswd");
        assert!(
            out.status.success(),
            "chpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Accepts on a non-blocking listener until `stop`, one thread per connection.
pub(crate) fn accept_loop(
    l: &TcpListener,
    stop: &Arc<AtomicBool>,
    handle: impl Fn(TcpStream, SocketAddr) + Send + Sync + Clone + 'static,
) {
    while !stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((s, peer)) => {
                let _ = s.set_nonblocking(false);
                let h = handle.clone();
                thread::spawn(move || h(s, peer));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Echoes until EOF, an error, `stop`, or 60 s.
fn echo_conn(mut s: TcpStream, stop: &Arc<AtomicBool>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let start = Instant::now();
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
}

/// Echoes every datagram to its sender until `stop`, recording distinct senders.
fn udp_echo_loop(
    sock: &UdpSocket,
    stop: &Arc<AtomicBool>,
    peers: &Arc<Mutex<Vec<SocketAddr>>>,
    count: &Arc<std::sync::atomic::AtomicU64>,
) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        count.fetch_add(1, Ordering::SeqCst);
        let shown = match from {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(v4.into(), v6.port()),
                None => from,
            },
            v4 => v4,
        };
        {
            let mut p = peers.lock().unwrap();
            if !p.contains(&shown) {
                p.push(shown);
            }
        }
        // A full socket buffer drops the echo, as a network would; the tests allow
        // for a little loss where they send floods.
        let _ = sock.send_to(&buf[..n], from);
    }
}
