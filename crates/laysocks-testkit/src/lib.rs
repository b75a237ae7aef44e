//! Test-only support for laysocks: a leak-proof network-namespace rig, launchers for real
//! SOCKS5 servers and target servers, a fault-injecting SOCKS5 server, and small C probes.
//!
//! Why a rig at all: the only convincing proof that a program's connections go through the
//! proxy is that the program *cannot* reach the target any other way, and that any attempt
//! to do so is seen. [`Rig`] builds exactly that (three namespaces, no default routes, no
//! forwarding) and counts attempts to go around the proxy ([`Rig::assert_no_leak`]).
//!
//! Everything runs as root (namespaces need it), cleans up on drop, and waits with a
//! deadline. A missing tool is a failure naming the Debian package, never a skip.
//!
//! ```no_run
//! use laysocks_testkit::Rig;
//! let rig = Rig::new();
//! let proxy = rig.microsocks();
//! let http = rig.http();
//! let run = rig.run(&mut rig.laysocks(&proxy.url(), ["--", "curl", "-sS", &http.url("hello.txt")]));
//! run.assert_success();
//! rig.assert_no_leak();
//! ```

pub mod apps;
pub mod check;
pub mod compat;
pub mod cprog;
pub mod expect;
pub mod fault;
pub mod golang;
pub mod layerfuzz;
pub mod netns;
pub mod relay;
pub mod servers;
pub mod udpwatch;
pub mod util;

pub use cprog::{compile_c, compile_c_with, probe};
pub use fault::{Act, Fault, FaultServer, Session};
pub use netns::{
    in_netns, LeakCounters, Rig, CLIENT_RESOLVER, CLIENT_V4, CLIENT_V6, CLOSED_PORT, PROXY_OUT_V4,
    PROXY_OUT_V6, PROXY_V4, PROXY_V6, REMOTE6_NAME, REMOTE_NAME, TARGET6_NAME, TARGET_NAME,
    TARGET_V4, TARGET_V6,
};
pub use relay::DelayRelay;
pub use servers::{
    big_body, DnsQuery, DnsServer, EchoServer, GitServer, HttpServer, Proxy, ProxyKind, Sshd,
    UdpEchoServer, BIG_LEN, DANTED_PORT, DNS_ONLY_NAME, DNS_PORT, ECHO_PORT, GIT_PORT, HELLO_BODY,
    HTTP_PORT, MICROSOCKS_AUTH_PORT, MICROSOCKS_PORT, PROXY_PASS, PROXY_USER, SSH_PORT,
};
pub use udpwatch::{UdpWatch, UdpWatchCounts};
pub use util::{laysocks_bin, python3, require, run_bounded, Run, TempDir};
