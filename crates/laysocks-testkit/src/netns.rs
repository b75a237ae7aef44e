//! The rig: three network namespaces in a row, client — proxy host — target.
//!
//! ```text
//!  client ns                proxy ns                          target ns
//!  198.51.100.2/24  ──veth──  198.51.100.1/24 | 203.0.113.1/24  ──veth──  203.0.113.2/24
//!  2001:db8:1::2/64           2001:db8:1::1/64 | 2001:db8:2::1/64          2001:db8:2::2/64
//! ```
//!
//! No namespace has a default route and the proxy host does not forward, so the only host
//! a client program can reach is the proxy host. A connection that tries to go straight
//! to the target fails inside the client's kernel with "no route", which the kernel counts
//! (`Ip OutNoRoutes` in `/proc/net/snmp`, `Ip6OutNoRoutes` in `/proc/net/snmp6`): that
//! count is the leak detector. DNS is watched by a canary: the client's `resolv.conf`
//! points at 127.0.0.53, where an in-process server counts (and refuses) every query.
//!
//! Each rig's namespaces have unique names (pid + counter), so tests run in parallel and
//! every rig can use the same addresses. Processes are started in a namespace with
//! `ip netns exec`, which also bind-mounts `/etc/netns/<name>/{hosts,resolv.conf}` over
//! `/etc`; in-process servers run on threads that `setns(CLONE_NEWNET)` — that call moves
//! only the calling thread, and sockets stay in the namespace they were created in.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::util::{self, require, run_bounded, Run, TempDir, WAIT};

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The proxy host as the client sees it.
pub const PROXY_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const PROXY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The proxy host's side towards the target.
pub const PROXY_OUT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const PROXY_OUT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
pub const TARGET_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const TARGET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

/// In the client's `/etc/hosts` (and the proxy host's): resolves locally.
pub const TARGET_NAME: &str = "target.test";
pub const TARGET6_NAME: &str = "target6.test";
/// Only the proxy host knows these names: they resolve only through the proxy.
pub const REMOTE_NAME: &str = "remote.test";
pub const REMOTE6_NAME: &str = "remote6.test";

/// Where the client's resolver sends queries (the DNS canary listens there).
pub const CLIENT_RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

/// A port nothing listens on in the proxy host.
pub const CLOSED_PORT: u16 = 1099;

const CLIENT_IF: &str = "to-proxy";
const PROXY_CLIENT_IF: &str = "to-client";
const PROXY_TARGET_IF: &str = "to-target";
const TARGET_IF: &str = "to-proxy";
const NS_PREFIX: &str = "lsk";

/// Runs `f` on a fresh thread that has joined the network namespace `ns` and returns its
/// result. Sockets `f` creates live in `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            enter_netns(&ns);
            f()
        })
        .expect("spawn a thread")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Spawns a long-lived thread in the network namespace `ns`.
pub fn spawn_in_netns(ns: &str, name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    let ns = ns.to_string();
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            enter_netns(&ns);
            f()
        })
        .expect("spawn a thread")
}

/// Moves the calling thread into the network namespace `ns` (`/run/netns/<ns>`).
pub fn enter_netns(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file =
        fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e} (is it gone?)"));
    // SAFETY: setns(2) on an fd we own for the duration of the call; CLONE_NEWNET changes
    // only this thread's network namespace and touches no memory of ours.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns({path}) failed: {} (the rig must run as root)",
        std::io::Error::last_os_error()
    );
}

/// Kernel counters that go up when a client tries to reach anything but the proxy host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeakCounters {
    /// `Ip OutNoRoutes` from `/proc/net/snmp`.
    pub v4_no_routes: u64,
    /// `Ip6OutNoRoutes` from `/proc/net/snmp6`.
    pub v6_no_routes: u64,
    /// Queries (UDP datagrams and TCP connections) the DNS canary received.
    pub dns_queries: u64,
}

/// A server thread the rig stops on drop.
pub(crate) struct Stoppable {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) handle: Option<JoinHandle<()>>,
}

/// A child process the rig kills on drop.
pub(crate) struct Proc {
    pub(crate) label: String,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

/// Three namespaces, their servers, and the leak detector. See the module docs.
pub struct Rig {
    id: String,
    client: String,
    proxy: String,
    target: String,
    dir: TempDir,
    created: Mutex<Vec<String>>,
    pub(crate) procs: Mutex<Vec<Proc>>,
    pub(crate) threads: Mutex<Vec<Stoppable>>,
    baseline: Mutex<LeakCounters>,
    dns_queries: Arc<AtomicUsize>,
    dns_names: Arc<Mutex<Vec<String>>>,
    pub(crate) servers: crate::servers::Servers,
}

impl Rig {
    /// Creates the three namespaces and the DNS canary. Servers start on demand.
    pub fn new() -> Rig {
        static PREREQS: Once = Once::new();
        PREREQS.call_once(|| {
            require_root();
            require("ip", "iproute2");
            cleanup_stale();
        });
        let id = format!("{NS_PREFIX}{}-{}", std::process::id(), util::unique());
        let rig = Rig {
            client: format!("{id}c"),
            proxy: format!("{id}p"),
            target: format!("{id}t"),
            dir: TempDir::new(&format!("rig-{id}")),
            id,
            created: Mutex::new(Vec::new()),
            procs: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            baseline: Mutex::new(LeakCounters::default()),
            dns_queries: Arc::new(AtomicUsize::new(0)),
            dns_names: Arc::new(Mutex::new(Vec::new())),
            servers: Default::default(),
        };
        // If any step panics, `rig` is dropped while unwinding and removes what exists.
        rig.build();
        rig.start_dns_canary();
        rig.reset_leak_baseline();
        rig
    }

    fn build(&self) {
        let (c, p, t) = (&self.client, &self.proxy, &self.target);
        for ns in [c, p, t] {
            self.etc_files(ns);
            ip(&["netns", "add", ns]);
            self.created.lock().unwrap().push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            c,
            "link",
            "add",
            CLIENT_IF,
            "type",
            "veth",
            "peer",
            "name",
            PROXY_CLIENT_IF,
            "netns",
            p,
        ]);
        ip(&[
            "-n",
            p,
            "link",
            "add",
            PROXY_TARGET_IF,
            "type",
            "veth",
            "peer",
            "name",
            TARGET_IF,
            "netns",
            t,
        ]);
        let addrs: [(&str, &str, &str, &str); 4] = [
            (c, CLIENT_IF, "198.51.100.2/24", "2001:db8:1::2/64"),
            (p, PROXY_CLIENT_IF, "198.51.100.1/24", "2001:db8:1::1/64"),
            (p, PROXY_TARGET_IF, "203.0.113.1/24", "2001:db8:2::1/64"),
            (t, TARGET_IF, "203.0.113.2/24", "2001:db8:2::2/64"),
        ];
        for (ns, dev, v4, v6) in addrs {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // A new namespace starts with forwarding off; say so explicitly, since the whole
        // leak argument rests on it.
        in_netns(p, || {
            for f in [
                "/proc/sys/net/ipv4/ip_forward",
                "/proc/sys/net/ipv6/conf/all/forwarding",
            ] {
                fs::write(f, "0").unwrap_or_else(|e| panic!("write {f}: {e}"));
            }
        });
    }

    /// `/etc/netns/<ns>/{hosts,resolv.conf}`, which `ip netns exec` mounts over `/etc`.
    fn etc_files(&self, ns: &str) {
        let dir = PathBuf::from("/etc/netns").join(ns);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        // The machine's own name, as a Debian /etc/hosts has it: programs look it up (git
        // for its ident, ssh for its config), and that query is not the program's traffic.
        let me = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let me = me.trim();
        let local = format!(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{}",
            if me.is_empty() {
                String::new()
            } else {
                format!("127.0.1.1 {me}\n")
            }
        );
        let (hosts, resolver) = if ns == self.client {
            (
                format!("{local}{TARGET_V4} {TARGET_NAME}\n{TARGET_V6} {TARGET6_NAME}\n"),
                CLIENT_RESOLVER.to_string(),
            )
        } else if ns == self.proxy {
            (
                format!(
                    "{local}{TARGET_V4} {TARGET_NAME} {REMOTE_NAME}\n\
                     {TARGET_V6} {TARGET6_NAME} {REMOTE6_NAME}\n"
                ),
                "127.0.0.1".to_string(),
            )
        } else {
            (local, "127.0.0.1".to_string())
        };
        fs::write(dir.join("hosts"), hosts).expect("write netns hosts");
        fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {resolver}\noptions timeout:1 attempts:1\n"),
        )
        .expect("write netns resolv.conf");
    }

    /// The rig's unique id (prefix of its namespace names).
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn client_ns(&self) -> &str {
        &self.client
    }
    pub fn proxy_ns(&self) -> &str {
        &self.proxy
    }
    pub fn target_ns(&self) -> &str {
        &self.target
    }
    /// A scratch directory removed with the rig.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ip netns exec <ns> program args…`
    pub fn ns_cmd<S: AsRef<std::ffi::OsStr>>(
        &self,
        ns: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program).args(args);
        cmd
    }

    /// A command that runs in the client namespace, without the layer.
    pub fn client_cmd<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        self.ns_cmd(&self.client, program, args)
    }

    /// A command that runs in the proxy host's namespace.
    pub fn proxy_cmd<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        self.ns_cmd(&self.proxy, program, args)
    }

    /// A command that runs in the target's namespace.
    pub fn target_cmd<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        self.ns_cmd(&self.target, program, args)
    }

    /// `laysocks -x <proxy_url> args…` in the client namespace; `args` holds any other
    /// launcher options, then `--`, the program and its arguments. An empty `proxy_url`
    /// leaves out `-x`.
    pub fn laysocks<S: AsRef<std::ffi::OsStr>>(
        &self,
        proxy_url: &str,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        let mut cmd = self.client_cmd(util::laysocks_bin(), std::iter::empty::<&str>());
        if !proxy_url.is_empty() {
            cmd.args(["-x", proxy_url]);
        }
        cmd.args(args);
        cmd
    }

    /// Runs `cmd` to completion (at most 30 s).
    pub fn run(&self, cmd: &mut Command) -> Run {
        run_bounded(cmd, None, Duration::from_secs(30))
    }

    /// Runs `cmd` with `input` on its stdin (at most 30 s).
    pub fn run_stdin(&self, cmd: &mut Command, input: &[u8]) -> Run {
        run_bounded(cmd, Some(input), Duration::from_secs(30))
    }

    /// Starts a long-running process (a server) in namespace `ns` with its output in a
    /// log file; the rig kills its process group on drop. Returns the index for
    /// [`Rig::check_alive`].
    pub(crate) fn spawn_server(&self, ns: &str, label: &str, cmd: Command) -> usize {
        let p = self.start_proc(ns, label, cmd);
        let mut procs = self.procs.lock().unwrap();
        procs.push(p);
        procs.len() - 1
    }

    /// Kills the process group of the server at `index` (by its id, the group the rig
    /// made for it) and reaps it; [`Rig::respawn_server`] then fills its slot.
    pub(crate) fn kill_server(&self, index: usize) {
        util::kill_group(&mut self.procs.lock().unwrap()[index].child);
    }

    /// Starts `cmd` in `ns` in the slot of the server at `index` (killed first if it
    /// still runs), so the index stays valid and the rig never signals the old, reaped
    /// group again (its id may belong to someone else by then).
    pub(crate) fn respawn_server(&self, index: usize, ns: &str, label: &str, cmd: Command) {
        {
            let mut procs = self.procs.lock().unwrap();
            if !matches!(procs[index].child.try_wait(), Ok(Some(_))) {
                util::kill_group(&mut procs[index].child);
            }
        }
        let p = self.start_proc(ns, label, cmd);
        self.procs.lock().unwrap()[index] = p;
    }

    /// Waits (bounded) until nothing listens on TCP `port` at `addr` in `ns` any more.
    pub(crate) fn wait_not_listening(&self, ns: &str, addr: IpAddr, port: u16) {
        let start = Instant::now();
        loop {
            if !in_netns(ns, move || tcp_listening(addr, port)) {
                return;
            }
            if start.elapsed() > WAIT {
                panic!("something still listens on {addr} port {port} in {ns} after {WAIT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `cmd` in `ns` in a process group of its own, output to `<label>.log`.
    fn start_proc(&self, ns: &str, label: &str, cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let log = self.dir.join(&format!("{label}.log"));
        let out = fs::File::create(&log).expect("create server log");
        let err = out.try_clone().expect("clone log fd");
        let mut full = Command::new("ip");
        full.args(["netns", "exec", ns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(d) = cmd.get_current_dir() {
            full.current_dir(d);
        }
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => full.env(k, v),
                None => full.env_remove(k),
            };
        }
        full.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let line = util::cmdline(&full);
        let child = full
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} (`{line}`): {e}"));
        Proc {
            label: label.to_string(),
            child,
            log,
        }
    }

    /// Panics with the server's log if it has exited.
    pub(crate) fn check_alive(&self, index: usize) {
        let mut procs = self.procs.lock().unwrap();
        let p = &mut procs[index];
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!(
                "{} exited early ({st}); its log {}:\n{}",
                p.label,
                p.log.display(),
                util::tail(&p.log, 30)
            );
        }
    }

    /// The log file of a server process, for messages.
    pub(crate) fn log_of(&self, index: usize) -> String {
        let procs = self.procs.lock().unwrap();
        util::tail(&procs[index].log, 30)
    }

    /// Waits (bounded) until something listens on TCP `port` at `addr` (or any address
    /// when `addr` is unspecified) in namespace `ns`, reading `/proc/net/tcp{,6}` there so
    /// the server sees no probe connection. Panics with the server's log otherwise.
    pub(crate) fn wait_listening(&self, ns: &str, addr: IpAddr, port: u16, index: Option<usize>) {
        let ns_owned = ns.to_string();
        let start = Instant::now();
        loop {
            let ns2 = ns_owned.clone();
            if in_netns(&ns2, move || tcp_listening(addr, port)) {
                return;
            }
            if let Some(i) = index {
                self.check_alive(i);
            }
            if start.elapsed() > WAIT {
                let log = index.map(|i| self.log_of(i)).unwrap_or_default();
                panic!("nothing listens on {addr} port {port} in {ns} after {WAIT:?}; log:\n{log}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Registers an in-process server thread to be stopped on drop.
    pub(crate) fn keep_thread(&self, stop: Arc<AtomicBool>, handle: JoinHandle<()>) {
        self.threads.lock().unwrap().push(Stoppable {
            stop,
            handle: Some(handle),
        });
    }

    // ---- leak detection ----

    /// The client namespace's leak counters now.
    pub fn leak_counters(&self) -> LeakCounters {
        let (v4, v6) = in_netns(&self.client, || {
            let snmp = fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
            let snmp6 = fs::read_to_string("/proc/thread-self/net/snmp6").expect("read snmp6");
            (
                parse_snmp(&snmp, "Ip", "OutNoRoutes"),
                parse_snmp6(&snmp6, "Ip6OutNoRoutes"),
            )
        });
        LeakCounters {
            v4_no_routes: v4,
            v6_no_routes: v6,
            dns_queries: self.dns_queries.load(Ordering::SeqCst) as u64,
        }
    }

    /// From now on, leaks are counted against the current counters.
    pub fn reset_leak_baseline(&self) {
        let now = self.leak_counters();
        *self.baseline.lock().unwrap() = now;
        self.dns_names.lock().unwrap().clear();
        if let Some(w) = self.udp_watch_if_started() {
            w.reset();
        }
    }

    /// `Err(description)` when the client tried to reach anything but the proxy host
    /// since the baseline (rig creation or the last [`Rig::reset_leak_baseline`]). Once
    /// [`Rig::udp_watch`] runs, that includes any outgoing UDP packet that is not a
    /// SOCKS5-wrapped datagram to the proxy host.
    pub fn check_no_leak(&self) -> Result<(), String> {
        let before = *self.baseline.lock().unwrap();
        let now = self.leak_counters();
        let mut what = Vec::new();
        if now.v4_no_routes > before.v4_no_routes {
            what.push(format!(
                "{} IPv4 packet(s) without a route (Ip OutNoRoutes {} -> {})",
                now.v4_no_routes - before.v4_no_routes,
                before.v4_no_routes,
                now.v4_no_routes
            ));
        }
        if now.v6_no_routes > before.v6_no_routes {
            what.push(format!(
                "{} IPv6 packet(s) without a route (Ip6OutNoRoutes {} -> {})",
                now.v6_no_routes - before.v6_no_routes,
                before.v6_no_routes,
                now.v6_no_routes
            ));
        }
        if now.dns_queries > before.dns_queries {
            let names = self.dns_names.lock().unwrap().join(", ");
            what.push(format!(
                "{} DNS query(ies) to the client's resolver {CLIENT_RESOLVER} ({names})",
                now.dns_queries - before.dns_queries
            ));
        }
        if let Some(w) = self.udp_watch_if_started() {
            if let Err(e) = w.check() {
                what.push(e);
            }
        }
        if what.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "traffic leaked around the proxy: {}",
                what.join("; ")
            ))
        }
    }

    /// Fails the test if anything leaked (see [`Rig::check_no_leak`]).
    #[track_caller]
    pub fn assert_no_leak(&self) {
        if let Err(e) = self.check_no_leak() {
            panic!("{e}");
        }
    }

    /// For a lookup that *should* reach the system resolver: panics unless the DNS canary
    /// was asked about `name` (case-insensitively) and nothing else, and nothing else left
    /// the client without a route, since the baseline. Then resets the baseline, so the
    /// next check starts clean.
    #[track_caller]
    pub fn assert_only_dns_query_for(&self, name: &str) {
        let before = *self.baseline.lock().unwrap();
        let now = self.leak_counters();
        let names = self.dns_queries_seen();
        assert!(
            now.v4_no_routes == before.v4_no_routes && now.v6_no_routes == before.v6_no_routes,
            "packets without a route while looking up {name}: {before:?} -> {now:?}"
        );
        assert!(
            !names.is_empty(),
            "the system resolver (the DNS canary at {CLIENT_RESOLVER}) should have been asked \
             for {name}, and saw nothing"
        );
        assert!(
            names.iter().all(|n| n.eq_ignore_ascii_case(name)),
            "the DNS canary should have seen only {name}, saw: {names:?}"
        );
        self.reset_leak_baseline();
    }

    /// The names the DNS canary was asked for since the baseline.
    pub fn dns_queries_seen(&self) -> Vec<String> {
        self.dns_names.lock().unwrap().clone()
    }

    /// A UDP and TCP listener on the client's resolver address that counts every query
    /// and answers REFUSED, so a leaking resolver fails fast instead of timing out.
    fn start_dns_canary(&self) {
        let stop = Arc::new(AtomicBool::new(false));
        let count = self.dns_queries.clone();
        let names = self.dns_names.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let handle = spawn_in_netns(&self.client, "dns-canary", move || {
            let addr = SocketAddr::new(CLIENT_RESOLVER.into(), 53);
            let udp = UdpSocket::bind(addr).expect("bind the DNS canary (udp)");
            let tcp = TcpListener::bind(addr).expect("bind the DNS canary (tcp)");
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            tcp.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::SeqCst) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    count.fetch_add(1, Ordering::SeqCst);
                    names.lock().unwrap().push(query_name(&buf[..n]));
                    if let Some(reply) = refuse(&buf[..n]) {
                        let _ = udp.send_to(&reply, from);
                    }
                }
                if let Ok((mut s, _)) = tcp.accept() {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_ok() {
                        let n = u16::from_be_bytes(len) as usize;
                        let mut q = vec![0u8; n];
                        if s.read_exact(&mut q).is_ok() {
                            names.lock().unwrap().push(query_name(&q));
                            if let Some(r) = refuse(&q) {
                                let mut msg = (r.len() as u16).to_be_bytes().to_vec();
                                msg.extend_from_slice(&r);
                                let _ = s.write_all(&msg);
                            }
                        }
                    } else {
                        names.lock().unwrap().push("(tcp, no query)".into());
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(WAIT)
            .expect("the DNS canary did not start");
        self.keep_thread(stop, handle);
    }
}

impl Default for Rig {
    fn default() -> Self {
        Rig::new()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for t in self
            .threads
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            t.stop.store(true, Ordering::SeqCst);
        }
        for t in self
            .threads
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            if let Some(h) = t.handle.take() {
                let _ = h.join();
            }
        }
        for p in self
            .procs
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            util::kill_group(&mut p.child);
        }
        let created = std::mem::take(self.created.get_mut().unwrap_or_else(|e| e.into_inner()));
        for ns in [&self.client, &self.proxy, &self.target] {
            // Anything still inside (a grandchild that left our process groups) goes too.
            if created.contains(ns) {
                kill_ns_pids(ns);
                let _ = Command::new("ip")
                    .args(["netns", "del", ns])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
    }
}

/// Runs `ip args…` and panics with its stderr on failure.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (Debian package iproute2): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn kill_ns_pids(ns: &str) {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            util::kill_pid(pid);
        }
    }
}

/// Namespaces (and temp dirs) left by an earlier test process that was killed before its
/// rigs could clean up: their names carry that process's pid.
fn cleanup_stale() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let pid_of = |name: &str| -> Option<u32> {
        let rest = name.strip_prefix(NS_PREFIX)?;
        rest.split('-').next()?.parse().ok()
    };
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = pid_of(&name) {
                if pid != std::process::id() && !alive(pid) {
                    kill_ns_pids(&name);
                    let _ = Command::new("ip")
                        .args(["netns", "del", &name])
                        .stderr(Stdio::null())
                        .status();
                    let _ = fs::remove_dir_all(PathBuf::from("/etc/netns").join(&name));
                }
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/etc/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = pid_of(&name) {
                if pid != std::process::id() && !alive(pid) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // <prefix><label>-<pid>-<n>
            let Some(rest) = name.strip_prefix(util::TEMP_PREFIX) else {
                continue;
            };
            let parts: Vec<&str> = rest.rsplitn(3, '-').collect();
            if parts.len() == 3 {
                if let Ok(pid) = parts[1].parse::<u32>() {
                    if pid != std::process::id() && !alive(pid) {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
    }
}

/// The value of `field` in the `Ip:` (or other `table`) section of `/proc/net/snmp`.
pub fn parse_snmp(text: &str, table: &str, field: &str) -> u64 {
    let prefix = format!("{table}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        panic!("no {table} table in /proc/net/snmp");
    };
    let col = header
        .split_whitespace()
        .position(|h| h == field)
        .unwrap_or_else(|| panic!("no {field} in the {table} table of /proc/net/snmp"));
    values
        .split_whitespace()
        .nth(col)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {field} value in /proc/net/snmp"))
}

/// The value of `field` in `/proc/net/snmp6`.
pub fn parse_snmp6(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(field)).then(|| it.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/net/snmp6"))
}

/// Is a TCP socket in LISTEN state on `port` (at `addr`, or any address if unspecified)?
/// Reads the calling thread's namespace.
fn tcp_listening(addr: IpAddr, port: u16) -> bool {
    let mut found = false;
    for (file, v6) in [
        ("/proc/thread-self/net/tcp", false),
        ("/proc/thread-self/net/tcp6", true),
    ] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                continue;
            }
            let Some((a, p)) = f[1].split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            let local = if v6 { hex_v6(a) } else { hex_v4(a) };
            let matches = addr.is_unspecified()
                || local == Some(addr)
                || local.is_some_and(|l| l.is_unspecified())
                || (matches!(addr, IpAddr::V4(_))
                    && local == Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
            found |= matches;
        }
    }
    found
}

fn hex_v4(a: &str) -> Option<IpAddr> {
    let n = u32::from_str_radix(a, 16).ok()?;
    // /proc prints the address as a host-order u32 of network-order bytes.
    Some(IpAddr::V4(Ipv4Addr::from(n.to_ne_bytes())))
}

fn hex_v6(a: &str) -> Option<IpAddr> {
    if a.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for w in 0..4 {
        let n = u32::from_str_radix(&a[w * 8..w * 8 + 8], 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&n.to_ne_bytes());
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// The QNAME of a DNS query, for leak messages.
fn query_name(msg: &[u8]) -> String {
    let mut name = Vec::new();
    let mut i = 12;
    while let Some(&len) = msg.get(i) {
        if len == 0 || len & 0xC0 != 0 {
            break;
        }
        let label = msg.get(i + 1..i + 1 + len as usize).unwrap_or(&[]);
        name.push(String::from_utf8_lossy(label).into_owned());
        i += 1 + len as usize;
    }
    if name.is_empty() {
        "(unparsable query)".into()
    } else {
        name.join(".")
    }
}

/// A REFUSED answer to `query` (header + question, RFC 1035 §4.1.1).
fn refuse(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut end = 12;
    loop {
        let len = *query.get(end)? as usize;
        end += 1;
        if len == 0 {
            break;
        }
        end += len;
    }
    end += 4; // QTYPE, QCLASS
    if end > query.len() {
        return None;
    }
    let mut r = query[..end].to_vec();
    r[2] = 0x80 | (query[2] & 0x79); // QR=1, keep opcode and RD
    r[3] = 0x05; // RCODE REFUSED
    r[4..6].copy_from_slice(&[0, 1]);
    r[6..12].fill(0);
    Some(r)
}

/// Is this process root? The rig needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

static ROOT_CHECK: OnceLock<()> = OnceLock::new();

/// Panics unless running as root, with a message saying why.
pub(crate) fn require_root() {
    ROOT_CHECK.get_or_init(|| {
        assert!(
            is_root(),
            "the laysocks test rig creates network namespaces and must run as root"
        );
    });
}
