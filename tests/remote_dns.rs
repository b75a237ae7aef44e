//! Remote DNS (issue 5, DESIGN §4): names go to the proxy, nothing leaks.
//!
//! The client namespace cannot resolve `remote.test` / `remote6.test` at all: only the
//! proxy host's `/etc/hosts` knows them (the second only as IPv6). The client's resolver
//! is the rig's DNS canary, which counts every query; every test ends with a leak check
//! that includes it, except where a lookup *should* reach the system resolver (then the
//! canary must have seen exactly that name).
//!
//! Under the layer a remote name resolves at once to placeholders (198.18.0.0/15 and
//! fd6c:6179:736f:636b::/64, same slot in both), and connecting to one sends the name to
//! the proxy (ATYP 0x03). Covered: real programs (curl, wget, python3, ssh, git, getent,
//! node, dig), a C probe calling every resolver API ([`RESOLVERS`]), `res_*` and
//! programs' own DNS (refused, or DNS over TCP through the proxy to dnsmasq in the
//! target with `--dns-server`), fork and exec, local names, `--dns local`, a full name
//! table, and getaddrinfo's hint semantics compared with glibc's own answers.

use laysocks_testkit::check::{get, has_line, layer_lines, no_leak, under};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use laysocks_testkit::expect::probe_connected;
use laysocks_testkit::{
    compile_c_with, probe, python3, require, Fault, Proxy, Rig, Run, DNS_ONLY_NAME, HELLO_BODY,
    PROXY_OUT_V4, REMOTE6_NAME, REMOTE_NAME, TARGET_NAME, TARGET_V4,
};

const RESOLVERS: &str = include_str!("probes/resolvers.c");

/// The resolver probe (see the comment at the top of `probes/resolvers.c`).
fn resolvers() -> PathBuf {
    compile_c_with("resolvers", RESOLVERS, &["-pthread"])
}

/// The exit status of a launcher usage error (the README's table: 125).
const USAGE_EXIT: i32 = 125;

/// A name no hosts file and no DNS server knows, not even the proxy host's.
const NOWHERE: &str = "nowhere.test";

/// microsocks and danted (with its credentials in the URL).
fn both(rig: &Rig) -> [Proxy; 2] {
    [rig.microsocks(), rig.danted()]
}

/// The URL with `socks5h://`.
fn socks5h(url: &str) -> String {
    url.replacen("socks5://", "socks5h://", 1)
}

/// The resolver probe under the layer.
fn under_probe(rig: &Rig, url: &str, opts: &[&str], args: &[&str]) -> Run {
    let p = resolvers();
    under(rig, url, opts, p.to_str().unwrap(), args)
}

const POOL4: (Ipv4Addr, u32) = (Ipv4Addr::new(198, 18, 0, 0), 15);
const POOL6: Ipv6Addr = Ipv6Addr::new(0xfd6c, 0x6179, 0x736f, 0x636b, 0, 0, 0, 0);

/// The slot of an IPv4 placeholder, or `None` if `s` is not in 198.18.0.0/15.
fn slot4(s: &str) -> Option<u64> {
    let ip: Ipv4Addr = s.parse().ok()?;
    let (base, len) = POOL4;
    let mask = u32::MAX << (32 - len);
    (u32::from(ip) & mask == u32::from(base)).then(|| u64::from(u32::from(ip) - u32::from(base)))
}

/// The slot of an IPv6 placeholder, or `None` if `s` is not in fd6c:6179:736f:636b::/64.
fn slot6(s: &str) -> Option<u64> {
    let ip: Ipv6Addr = s.parse().ok()?;
    let v = u128::from(ip);
    (v >> 64 == u128::from(POOL6) >> 64).then_some(v as u64)
}

/// Panics unless `ph4`/`ph6` are placeholders of the same slot.
#[track_caller]
fn assert_pair(ph4: &str, ph6: &str, ctx: &dyn std::fmt::Display) {
    let s4 = slot4(ph4).unwrap_or_else(|| panic!("{ph4:?} is not in 198.18.0.0/15:\n{ctx}"));
    let s6 =
        slot6(ph6).unwrap_or_else(|| panic!("{ph6:?} is not in fd6c:6179:736f:636b::/64:\n{ctx}"));
    assert_eq!(
        s4, s6,
        "{ph4} and {ph6} should be the same slot of the two pools:\n{ctx}"
    );
}

fn is_placeholder(s: &str) -> bool {
    slot4(s).is_some() || slot6(s).is_some()
}

// ---------------------------------------------------------------------------------------
// Real programs by name
// ---------------------------------------------------------------------------------------

#[test]
fn curl_by_name_through_microsocks_and_danted() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in both(&rig) {
        // Remote DNS is the default for socks5:// too.
        for url in [proxy.url(), socks5h(&proxy.url())] {
            for name in [REMOTE_NAME, REMOTE6_NAME] {
                for (family, pool_ok) in [
                    ("", slot4 as fn(&str) -> Option<u64>),
                    ("-4", slot4),
                    ("-6", slot6),
                ] {
                    let target = http.url_named(name, "hello.txt");
                    let mut args = vec!["-sS", "-m", "15", "-w", "\n%{remote_ip}"];
                    if !family.is_empty() {
                        args.push(family);
                    }
                    args.push(&target);
                    let run = under(&rig, &url, &[], "curl", &args);
                    no_leak(&rig, &run);
                    run.assert_success();
                    let (body, ip) = run.stdout.rsplit_once('\n').unwrap_or(("", ""));
                    assert_eq!(
                        body, HELLO_BODY,
                        "{:?} {url} {family} {target}:\n{run}",
                        proxy.kind
                    );
                    assert!(
                        pool_ok(ip).is_some(),
                        "curl {family} should have connected to a placeholder, not {ip:?}:\n{run}"
                    );
                }
            }
        }
    }
    rig.assert_no_leak();
}

#[test]
fn the_connect_request_carries_the_name() {
    let rig = Rig::new();
    let fault = rig.fault(Fault::Echo);
    for url in [fault.url(), socks5h(&fault.url())] {
        let before = fault.sessions().len();
        let run = under(
            &rig,
            &url,
            &[],
            probe().to_str().unwrap(),
            &["block", REMOTE_NAME, "7", "named"],
        );
        no_leak(&rig, &run);
        let peer = get(&run, "ok peer");
        let ip = peer.rsplit_once(':').map(|(ip, _)| ip).unwrap_or("");
        assert!(
            slot4(ip).is_some(),
            "getpeername should give the placeholder the program was told:\n{run}"
        );
        probe_connected(&run, "", peer, Some("named"));
        let s = &fault.sessions()[before..];
        assert_eq!(s.len(), 1, "one connection to the proxy: {s:?}\n{run}");
        assert_eq!(
            (s[0].atyp, s[0].target.as_deref()),
            (Some(3), Some("remote.test:7")),
            "the request must carry the name (ATYP 0x03): {s:?}"
        );
    }
    rig.assert_no_leak();
}

#[test]
fn wget_by_name() {
    let rig = Rig::new();
    let http = rig.http();
    for proxy in both(&rig) {
        for name in [REMOTE_NAME, REMOTE6_NAME] {
            let target = http.url_named(name, "hello.txt");
            let run = under(
                &rig,
                &proxy.url(),
                &[],
                "wget",
                &["-q", "-O", "-", "-T", "15", "-t", "1", &target],
            );
            no_leak(&rig, &run);
            run.assert_success();
            assert_eq!(run.stdout, HELLO_BODY, "{:?} {target}:\n{run}", proxy.kind);
        }
    }
    rig.assert_no_leak();
}

/// python3: getaddrinfo with several hint sets, the other socket-module resolvers, then
/// create_connection by name and an IPv6 socket to the IPv6 placeholder.
const PYTHON_RESOLVE: &str = r#"
import socket, sys
S, D, R = socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW
I4, I6 = socket.AF_INET, socket.AF_INET6
def gai(*a):
    try:
        return [(f, t, p, c, sa) for f, t, p, c, sa in socket.getaddrinfo(*a)]
    except socket.gaierror as e:
        return e.errno
def check(label, got, want):
    print(label, got)
    if got != want:
        print("MISMATCH", label, "want", want)
        sys.exit(1)

r = gai("remote.test", 8080)
print("default", r)
ph4, ph6 = r[0][4][0], r[3][4][0]
print("ph4=" + ph4)
print("ph6=" + ph6)
check("default", r, [(I4, S, 6, "", (ph4, 8080)), (I4, D, 17, "", (ph4, 8080)),
                     (I4, R, 0, "", (ph4, 8080)), (I6, S, 6, "", (ph6, 8080, 0, 0)),
                     (I6, D, 17, "", (ph6, 8080, 0, 0)), (I6, R, 0, "", (ph6, 8080, 0, 0))])
check("inet-stream-http", gai("remote.test", "http", I4, S), [(I4, S, 6, "", (ph4, 80))])
check("inet6-noport", gai("remote.test", None, I6),
      [(I6, S, 6, "", (ph6, 0, 0, 0)), (I6, D, 17, "", (ph6, 0, 0, 0)), (I6, R, 0, "", (ph6, 0, 0, 0))])
check("canon-mixed-case", gai("Remote.TEST", 443, 0, S, 0, socket.AI_CANONNAME),
      [(I4, S, 6, "Remote.TEST", (ph4, 443)), (I6, S, 6, "", (ph6, 443, 0, 0))])
check("udp-proto", gai("remote.test", 53, I4, 0, socket.IPPROTO_UDP), [(I4, D, 17, "", (ph4, 53))])
check("passive", gai("remote.test", 22, I4, S, 0, socket.AI_PASSIVE), [(I4, S, 6, "", (ph4, 22))])
check("v4mapped", gai("remote.test", 22, I6, S, 0, socket.AI_V4MAPPED), [(I6, S, 6, "", (ph6, 22, 0, 0))])
check("addrconfig", gai("remote.test", 22, 0, S, 0, socket.AI_ADDRCONFIG),
      [(I4, S, 6, "", (ph4, 22)), (I6, S, 6, "", (ph6, 22, 0, 0))])
check("numerichost", gai("remote.test", 80, 0, S, 0, socket.AI_NUMERICHOST), socket.EAI_NONAME)
check("numericserv", gai("remote.test", "http", 0, S, 0, socket.AI_NUMERICSERV), socket.EAI_NONAME)
check("http-is-tcp-only", gai("remote.test", "http", I4, D), socket.EAI_SERVICE)

r6 = gai("remote6.test", 7, 0, S)
print("remote6", r6)
r6ph4, r6ph6 = r6[0][4][0], r6[1][4][0]
print("r6ph4=" + r6ph4)
print("r6ph6=" + r6ph6)
if r6ph4 == ph4 or r6ph6 == ph6:
    print("MISMATCH two names share a placeholder")
    sys.exit(1)

check("gethostbyname", socket.gethostbyname("remote.test"), ph4)
check("gethostbyname_ex", socket.gethostbyname_ex("remote.test"), ("remote.test", [], [ph4]))
check("gethostbyaddr4", socket.gethostbyaddr(ph4), ("remote.test", [], [ph4]))
check("gethostbyaddr6", socket.gethostbyaddr(ph6), ("remote.test", [], [ph6]))
check("getnameinfo", socket.getnameinfo((ph4, 7), socket.NI_NUMERICSERV | socket.NI_NAMEREQD),
      ("remote.test", "7"))

s = socket.create_connection(("remote.test", 7), timeout=10)
check("create_connection-peer", s.getpeername(), (ph4, 7))
s.sendall(b"py-echo\n")
check("create_connection-echo", s.recv(100), b"py-echo\n")
s.close()

s6 = socket.socket(I6, S)
s6.settimeout(10)
s6.connect((r6ph6, 7))
check("v6-peer", s6.getpeername()[:2], (r6ph6, 7))
s6.sendall(b"py-echo6\n")
check("v6-echo", s6.recv(100), b"py-echo6\n")
s6.close()
print("alive")
"#;

#[test]
fn python_getaddrinfo_hints_and_create_connection_by_name() {
    let rig = Rig::new();
    let echo = rig.echo();
    let proxy = rig.microsocks();
    let py = python3();
    let run = under(
        &rig,
        &proxy.url(),
        &[],
        py.to_str().unwrap(),
        &["-c", PYTHON_RESOLVE],
    );
    no_leak(&rig, &run);
    run.assert_success();
    has_line(&run, "alive");
    assert_pair(get(&run, "ph4"), get(&run, "ph6"), &run);
    assert_pair(get(&run, "r6ph4"), get(&run, "r6ph6"), &run);
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn ssh_by_name() {
    let rig = Rig::new();
    let sshd = rig.sshd();
    for proxy in both(&rig) {
        for name in [REMOTE_NAME, REMOTE6_NAME] {
            let mut args = sshd.ssh_args(name);
            args.extend(["echo".to_string(), "hi-by-name".to_string()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = under(&rig, &proxy.url(), &[], "ssh", &args);
            no_leak(&rig, &run);
            run.assert_success();
            assert_eq!(
                run.stdout, "hi-by-name\n",
                "{:?} {name}:\n{run}",
                proxy.kind
            );
        }
    }
    rig.assert_no_leak();
}

#[test]
fn git_clone_by_name_over_git_and_http() {
    let rig = Rig::new();
    let git = rig.git();
    let proxy = rig.microsocks();
    let urls = [
        format!("git://{REMOTE_NAME}/repo.git"),
        format!("git://{REMOTE6_NAME}/repo.git"),
        format!("http://{REMOTE_NAME}:8080/repo.git"),
    ];
    for (i, url) in urls.iter().enumerate() {
        let dest = rig.dir().join(format!("clone-by-name-{i}"));
        let mut cmd = rig.laysocks(
            &proxy.url(),
            ["--", "git", "clone", "-q", url, dest.to_str().unwrap()],
        );
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        let run = rig.run(&mut cmd);
        no_leak(&rig, &run);
        run.assert_success();
        let readme = std::fs::read_to_string(dest.join("README")).unwrap_or_default();
        assert_eq!(readme, git.readme, "{url}:\n{run}");
    }
    rig.assert_no_leak();
}

#[test]
fn getent_hosts_ahosts_ahostsv6() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    // One laysocks run: every getent process shares the run's name table.
    let script = format!(
        "getent hosts {REMOTE_NAME}; echo --; getent ahosts {REMOTE_NAME}; echo --; \
         getent ahostsv6 {REMOTE_NAME}; echo --; getent ahostsv4 {REMOTE_NAME}; echo --; \
         getent ahosts {TARGET_NAME}; echo --; getent ahosts localhost"
    );
    let run = under(&rig, &proxy.url(), &[], "sh", &["-c", &script]);
    no_leak(&rig, &run);
    run.assert_success();
    let parts: Vec<Vec<Vec<&str>>> = run
        .stdout
        .split("--\n")
        .map(|p| p.lines().map(|l| l.split_whitespace().collect()).collect())
        .collect();
    assert_eq!(parts.len(), 6, "{run}");
    // `getent hosts` asks gethostbyname2(AF_INET6) first.
    assert_eq!(parts[0].len(), 1, "{run}");
    let ph6 = parts[0][0][0];
    assert_eq!(parts[0][0][1..], [REMOTE_NAME], "{run}");
    // ahosts: AF_UNSPEC, AI_CANONNAME|AI_ADDRCONFIG: IPv4 first, one line per socktype.
    let a = &parts[1];
    assert_eq!(a.len(), 6, "ahosts gives 3 socktypes × 2 families:\n{run}");
    let ph4 = a[0][0];
    let want: Vec<Vec<&str>> = vec![
        vec![ph4, "STREAM", REMOTE_NAME],
        vec![ph4, "DGRAM"],
        vec![ph4, "RAW"],
        vec![ph6, "STREAM"],
        vec![ph6, "DGRAM"],
        vec![ph6, "RAW"],
    ];
    assert_eq!(*a, want, "{run}");
    assert_pair(ph4, ph6, &run);
    let want6: Vec<Vec<&str>> = vec![
        vec![ph6, "STREAM", REMOTE_NAME],
        vec![ph6, "DGRAM"],
        vec![ph6, "RAW"],
    ];
    assert_eq!(parts[2], want6, "ahostsv6:\n{run}");
    let want4: Vec<Vec<&str>> = vec![
        vec![ph4, "STREAM", REMOTE_NAME],
        vec![ph4, "DGRAM"],
        vec![ph4, "RAW"],
    ];
    assert_eq!(parts[3], want4, "ahostsv4:\n{run}");
    // /etc/hosts and localhost stay local.
    let target = TARGET_V4.to_string();
    assert_eq!(parts[4][0][..2], [target.as_str(), "STREAM"], "{run}");
    assert!(
        parts[5]
            .iter()
            .all(|l| l[0] == "127.0.0.1" || l[0] == "::1"),
        "{run}"
    );

    // Reverse: `getent hosts ADDR` is gethostbyaddr.
    let script = format!("getent hosts {REMOTE_NAME} >/dev/null; getent hosts $(getent ahostsv4 {REMOTE_NAME} | head -n1 | cut -d' ' -f1)");
    let run = under(&rig, &proxy.url(), &[], "sh", &["-c", &script]);
    no_leak(&rig, &run);
    run.assert_success();
    let f: Vec<&str> = run.stdout.split_whitespace().collect();
    assert!(
        f.len() == 2 && slot4(f[0]).is_some() && f[1] == REMOTE_NAME,
        "gethostbyaddr of a placeholder gives the name:\n{run}"
    );
    rig.assert_no_leak();
}

#[test]
fn every_resolver_api_in_c() {
    let rig = Rig::new();
    let fault = rig.fault(Fault::Echo);
    let run = under_probe(
        &rig,
        &fault.url(),
        &[],
        &["apis", REMOTE_NAME, "7", "c-echo"],
    );
    no_leak(&rig, &run);
    run.assert_success();
    let ph4 = get(&run, "ph4");
    let ph6 = get(&run, "ph6");
    assert_pair(ph4, ph6, &run);
    let r = REMOTE_NAME;
    for line in [
        format!("getaddrinfo fam=INET st=STREAM proto=6 addr={ph4} port=7 len=16 safam=INET flags=0 canon=- zero=1"),
        format!("getaddrinfo fam=INET6 st=STREAM proto=6 addr={ph6} port=7 len=28 safam=INET6 flags=0 canon=- scope=0 flow=0"),
        "numeric_getaddrinfo=0".into(),
        format!("gethostbyname name={r} type=INET len=4 aliases=0 addrs={ph4}"),
        format!("gethostbyname2_inet name={r} type=INET len=4 aliases=0 addrs={ph4}"),
        format!("gethostbyname2_inet6 name={r} type=INET6 len=16 aliases=0 addrs={ph6}"),
        format!("gethostbyname_r name={r} type=INET len=4 aliases=0 addrs={ph4}"),
        "gethostbyname_r_small rc=ERANGE result=NULL".into(),
        format!("gethostbyname2_r_inet name={r} type=INET len=4 aliases=0 addrs={ph4}"),
        format!("gethostbyname2_r_inet6 name={r} type=INET6 len=16 aliases=0 addrs={ph6}"),
        "gai_a_wait rc=0".into(),
        format!("gai_a_wait name gai_error=0 addr={ph4}"),
        "gai_a_wait numeric gai_error=0 addr=203.0.113.2".into(),
        "gai_cancel_done=EAI_ALLDONE".into(),
        "gai_a_signal rc=0".into(),
        "gai_a_signal signal=SIGRTMIN value=ours".into(),
        format!("gai_a_signal gai_error=0 addr={ph4}"),
        "gai_a_thread rc=0".into(),
        "gai_a_thread notified=yes".into(),
        format!("gai_a_thread gai_error=0 addr={ph4}"),
        "gai_a_none rc=0".into(),
        "gai_a_none suspend=ok".into(),
        format!("gai_a_none gai_error=0 addr={ph4}"),
        format!("getnameinfo4={r} serv=7"),
        format!("getnameinfo4_namereqd={r} serv=7"),
        format!("getnameinfo4_numerichost={ph4} serv=7"),
        format!("getnameinfo6={r} serv=7"),
        format!("gethostbyaddr4 name={r} type=INET len=4 aliases=0 addrs={ph4}"),
        format!("gethostbyaddr4_r name={r} type=INET len=4 aliases=0 addrs={ph4}"),
        format!("gethostbyaddr6 name={r} type=INET6 len=16 aliases=0 addrs={ph6}"),
        format!("gethostbyaddr6_r name={r} type=INET6 len=16 aliases=0 addrs={ph6}"),
        format!("connect4 peer={ph4}:7"),
        format!("connect4 peer_name={r}"),
        "connect4 recv=c-echo".into(),
        format!("connect6 peer={ph6}:7"),
        format!("connect6 peer_name={r}"),
        "connect6 recv=c-echo".into(),
        "alive".into(),
    ] {
        has_line(&run, &line);
    }
    let s = fault.sessions();
    assert_eq!(
        s.len(),
        2,
        "two connections (IPv4 and IPv6 placeholder): {s:?}\n{run}"
    );
    for sess in &s {
        assert_eq!(
            (sess.atyp, sess.target.as_deref()),
            (Some(3), Some("remote.test:7")),
            "both placeholders carry the name: {s:?}"
        );
    }
    rig.assert_no_leak();
}

/// node: dns.lookup and http.get by name work; dns.resolve4 (c-ares, its own UDP
/// resolver) gets a placeholder from the guard's DNS responder, or with the preload layer
/// alone (`--no-guard`) fails; either way without a query reaching anyone.
const NODE_SCRIPT: &str = r#"
const dns = require('dns');
const http = require('http');
const guard = setTimeout(() => { console.log('timeout'); process.exit(3); }, 20000);
dns.lookup('remote.test', { all: true }, (err, addrs) => {
  console.log('lookup=' + (err ? err.code : addrs.map(a => a.address + '/' + a.family).join(',')));
  http.get('http://remote.test:8080/hello.txt', res => {
    console.log('remote=' + res.socket.remoteAddress);
    let body = '';
    res.on('data', d => body += d);
    res.on('end', () => { console.log('body=' + JSON.stringify(body)); resolve(); });
  }).on('error', e => { console.log('http_error=' + e.code); resolve(); });
});
function resolve() {
  const r = new dns.Resolver({ timeout: 2000, tries: 1 });
  r.resolve4('remote.test', (err, a) => {
    console.log('resolve4=' + (err ? err.code : a.join(',')));
    clearTimeout(guard);
    console.log('alive');
  });
}
"#;

#[test]
fn node_lookup_and_http_get_by_name_and_resolve4_refused() {
    let rig = Rig::new();
    rig.http();
    let proxy = rig.microsocks();
    let node = require("node", "nodejs");
    for guard in [false, true] {
        let opts: &[&str] = if guard { &[] } else { &["--no-guard"] };
        let run = under(
            &rig,
            &proxy.url(),
            opts,
            node.to_str().unwrap(),
            &["-e", NODE_SCRIPT],
        );
        node_by_name(&run, guard);
        no_leak(&rig, &run);
    }
    rig.assert_no_leak();
}

/// What [`NODE_SCRIPT`] must print, with and without the guard.
#[track_caller]
fn node_by_name(run: &Run, guard: bool) {
    run.assert_success();
    let lookup: Vec<&str> = get(run, "lookup").split(',').collect();
    assert_eq!(lookup.len(), 2, "one IPv4 and one IPv6 placeholder:\n{run}");
    let (ph4, ph6) = (
        lookup[0].strip_suffix("/4").unwrap_or(""),
        lookup[1].strip_suffix("/6").unwrap_or(""),
    );
    assert_pair(ph4, ph6, run);
    let remote = get(run, "remote");
    assert!(
        remote == ph4 || remote == ph6,
        "http.get's socket is connected to a placeholder:\n{run}"
    );
    assert_eq!(
        get(run, "body"),
        format!("{HELLO_BODY:?}"),
        "the body by name:\n{run}"
    );
    let resolve4 = get(run, "resolve4");
    if guard {
        // The guard answers c-ares' own UDP query, with the same placeholder.
        assert_eq!(
            resolve4, ph4,
            "c-ares' own UDP query gets {REMOTE_NAME}'s placeholder:\n{run}"
        );
    } else {
        assert_eq!(
            resolve4, "ECONNREFUSED",
            "without the guard c-ares' own UDP query must be refused:\n{run}"
        );
    }
    has_line(run, "alive");
}

// ---------------------------------------------------------------------------------------
// Programs' own DNS and the res_* family
// ---------------------------------------------------------------------------------------

#[test]
fn dig_is_refused_and_dig_tcp_goes_to_the_dns_server_through_the_proxy() {
    let rig = Rig::new();
    let dns = rig.dnsmasq();
    let proxy = rig.microsocks();
    let dig = require("dig", "bind9-dnsutils");
    let dig = dig.to_str().unwrap();
    let server = dns.host_port();

    // UDP to the system resolver, with or without a DNS server configured: with the
    // preload layer alone (--no-guard) refused; with the guard answered by its DNS
    // responder with the name's placeholder.
    for opts in [vec![], vec!["--dns-server", server.as_str()]] {
        let mut alone = vec!["--no-guard"];
        alone.extend(&opts);
        let run = under(
            &rig,
            &proxy.url(),
            &alone,
            dig,
            &["+tries=1", "+time=2", REMOTE_NAME],
        );
        no_leak(&rig, &run);
        run.assert_failure();
        assert!(!run.stdout.contains("ANSWER SECTION"), "{run}");
        assert!(
            !layer_lines(&run).is_empty(),
            "the refusal is reported on stderr:\n{run}"
        );
        let run = under(
            &rig,
            &proxy.url(),
            &opts,
            dig,
            &["+tries=1", "+time=2", "+short", REMOTE_NAME],
        );
        no_leak(&rig, &run);
        run.assert_success();
        assert!(
            slot4(run.stdout.trim()).is_some(),
            "the guard answers with a placeholder:\n{run}"
        );
    }
    // DNS over TCP to the system resolver without a DNS server: refused by the preload
    // layer alone, answered by the guard.
    let run = under(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        dig,
        &["+tcp", "+tries=1", "+time=2", DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    run.assert_failure();
    assert!(!run.stdout.contains("ANSWER SECTION"), "{run}");
    let run = under(
        &rig,
        &proxy.url(),
        &[],
        dig,
        &["+tcp", "+tries=1", "+time=2", "+short", DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    run.assert_success();
    assert!(
        slot4(run.stdout.trim()).is_some(),
        "the guard answers with a placeholder:\n{run}"
    );
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());

    // With one: redirected through the proxy to dnsmasq in the target, with and
    // without the guard.
    for guard in [&[][..], &["--no-guard"][..]] {
        let mut opts = vec!["--dns-server", server.as_str()];
        opts.extend(guard);
        let run = under(
            &rig,
            &proxy.url(),
            &opts,
            dig,
            &["+tcp", "+tries=1", "+time=5", "+short", DNS_ONLY_NAME],
        );
        no_leak(&rig, &run);
        run.assert_success();
        assert_eq!(run.stdout.trim(), TARGET_V4.to_string(), "{run}");
    }
    let q = dns.queries();
    assert!(
        q.iter().any(|q| q.name == DNS_ONLY_NAME
            && q.qtype == "A"
            && q.from == PROXY_OUT_V4.to_string()),
        "dnsmasq should have seen the query from the proxy host: {q:?}\n{run}"
    );
    rig.assert_no_leak();
}

#[test]
fn a_programs_own_dns_packets_never_go_direct() {
    let rig = Rig::new();
    let dns = rig.dnsmasq();
    let proxy = rig.microsocks();
    let server = dns.host_port();
    let resolver = laysocks_testkit::CLIENT_RESOLVER.to_string();
    let target = TARGET_V4.to_string();

    // The preload layer alone (--no-guard) refuses them.
    // No DNS server: UDP and TCP to the system resolver are refused.
    let run = under_probe(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        &["dns53", &resolver, DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    has_line(&run, "udp_connect=ECONNREFUSED");
    has_line(&run, "udp_sendto=ECONNREFUSED");
    has_line(&run, "tcp_connect=ECONNREFUSED");
    has_line(&run, "alive");

    // UDP to a remote address is refused too (it would otherwise leave with no route).
    let run = under_probe(
        &rig,
        &proxy.url(),
        &["--no-guard"],
        &["dns53", &target, DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    has_line(&run, "udp_connect=ECONNREFUSED");
    has_line(&run, "udp_sendto=ECONNREFUSED");
    // TCP to it is an ordinary proxied connection.
    has_line(&run, "tcp_connect=0");
    has_line(&run, &format!("tcp_answer={TARGET_V4}"));

    // With a DNS server: TCP to the system resolver goes there, through the proxy.
    let run = under_probe(
        &rig,
        &proxy.url(),
        &["--no-guard", "--dns-server", &server],
        &["dns53", &resolver, DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    has_line(&run, "udp_connect=ECONNREFUSED");
    has_line(&run, "udp_sendto=ECONNREFUSED");
    has_line(&run, "tcp_connect=0");
    has_line(&run, &format!("tcp_answer={TARGET_V4}"));
    has_line(&run, "alive");

    // With the guard (the default) the DNS the preload layer would refuse is answered by
    // the guard's responder, from the name table: placeholders, and still nothing direct.
    let run = under_probe(
        &rig,
        &proxy.url(),
        &[],
        &["dns53", &resolver, DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    has_line(&run, "udp_connect=0");
    has_line(&run, "udp_sendto=sent");
    has_line(&run, "udp_recv=answer");
    has_line(&run, "tcp_connect=0");
    let ph = get(&run, "tcp_answer");
    assert!(slot4(ph).is_some(), "a placeholder over TCP:\n{run}");
    has_line(&run, "alive");
    // To a remote DNS server the proxy cannot carry UDP to (microsocks): the guard
    // answers; TCP to it is still an ordinary proxied connection.
    let run = under_probe(&rig, &proxy.url(), &[], &["dns53", &target, DNS_ONLY_NAME]);
    no_leak(&rig, &run);
    has_line(&run, "udp_connect=0");
    has_line(&run, "udp_sendto=sent");
    has_line(&run, "udp_recv=answer");
    has_line(&run, "tcp_connect=0");
    has_line(&run, &format!("tcp_answer={TARGET_V4}"));
    // With a DNS server, TCP still goes there through the proxy.
    let run = under_probe(
        &rig,
        &proxy.url(),
        &["--dns-server", &server],
        &["dns53", &resolver, DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    has_line(&run, "udp_connect=0");
    has_line(&run, "udp_recv=answer");
    has_line(&run, "tcp_connect=0");
    has_line(&run, &format!("tcp_answer={TARGET_V4}"));
    has_line(&run, "alive");
    let q = dns.queries();
    assert!(
        q.iter().all(|q| q.from == PROXY_OUT_V4.to_string()),
        "every query reached dnsmasq through the proxy: {q:?}"
    );
    rig.assert_no_leak();
}

const RES_FUNCTIONS: [&str; 11] = [
    "res_query",
    "res_search",
    "res_querydomain",
    "res_send",
    "res_nquery",
    "res_nsearch",
    "res_nquerydomain",
    "res_nsend",
    "__res_query",
    "__res_search",
    "__res_send",
];

#[test]
fn res_functions_fail_without_a_dns_server_and_go_through_the_proxy_with_one() {
    let rig = Rig::new();
    let dns = rig.dnsmasq();
    let proxy = rig.microsocks();

    let run = under_probe(&rig, &proxy.url(), &[], &["res", DNS_ONLY_NAME]);
    no_leak(&rig, &run);
    has_line(&run, "alive");
    for f in RES_FUNCTIONS {
        let v = get(&run, f);
        assert!(
            v.starts_with("-1 h_errno=") && !v.ends_with("h_errno=0"),
            "{f} must fail with h_errno set without a DNS server:\n{run}"
        );
    }
    let lines = layer_lines(&run);
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("dns_server")),
        "the failure names the dns_server setting:\n{run}"
    );
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());

    let server = dns.host_port();
    let run = under_probe(
        &rig,
        &proxy.url(),
        &["--dns-server", &server],
        &["res", DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    has_line(&run, "alive");
    for f in RES_FUNCTIONS {
        assert_eq!(
            get(&run, f),
            format!("ok rcode=0 a={TARGET_V4}"),
            "{f} through the proxy to dnsmasq:\n{run}"
        );
    }
    let q = dns.queries();
    assert!(
        q.len() >= RES_FUNCTIONS.len(),
        "one query per call reached dnsmasq: {q:?}"
    );
    assert!(
        q.iter()
            .all(|q| q.from == PROXY_OUT_V4.to_string() && q.name == DNS_ONLY_NAME),
        "every query came through the proxy host: {q:?}"
    );
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// Failures, fork and exec
// ---------------------------------------------------------------------------------------

#[test]
fn a_name_the_proxy_cannot_resolve_is_ehostunreach_at_connect() {
    let rig = Rig::new();
    let http = rig.http();
    // Dante answers REP 0x04 (host unreachable) when it cannot resolve the name;
    // microsocks answers 0x01 (general failure): for a name the layer sent, both mean
    // the name did not resolve.
    for proxy in [rig.danted(), rig.microsocks()] {
        let run = under(
            &rig,
            &proxy.url(),
            &[],
            probe().to_str().unwrap(),
            &["block", NOWHERE, "7"],
        );
        no_leak(&rig, &run);
        laysocks_testkit::expect::probe_failed(&run, "EHOSTUNREACH");
        let lines = layer_lines(&run);
        assert_eq!(
            lines.len(),
            1,
            "{:?}: one line on stderr:\n{run}",
            proxy.kind
        );
        assert!(
            lines[0].contains(NOWHERE),
            "the line names the host:\n{run}"
        );

        let url = http.url_named(NOWHERE, "hello.txt");
        let run = under(&rig, &proxy.url(), &[], "curl", &["-sS", "-m", "15", &url]);
        no_leak(&rig, &run);
        assert_eq!(
            run.code(),
            Some(7),
            "{:?}: curl: could not connect:\n{run}",
            proxy.kind
        );
        assert!(
            run.stderr.contains("Could not connect") || run.stderr.contains("Couldn't connect"),
            "{run}"
        );
    }
    rig.assert_no_leak();
}

#[test]
fn fork_and_exec_children_share_the_name_table() {
    let rig = Rig::new();
    let fault = rig.fault(Fault::Echo);
    let names_of = |from: usize| -> Vec<(Option<u8>, Option<String>)> {
        fault.sessions()[from..]
            .iter()
            .map(|s| (s.atyp, s.target.clone()))
            .collect()
    };

    // fork: the child connects to what the parent resolved; the parent, after the child
    // resolved a new name, gets a different placeholder for its own new name and the
    // child's placeholder for the child's name.
    let run = under_probe(
        &rig,
        &fault.url(),
        &[],
        &["fork", REMOTE_NAME, "7", "forked"],
    );
    no_leak(&rig, &run);
    run.assert_success();
    let ph = get(&run, "parent resolved");
    assert!(slot4(ph).is_some(), "{run}");
    has_line(&run, &format!("child: connect peer={ph}:7"));
    has_line(&run, &format!("child: connect peer_name={REMOTE_NAME}"));
    has_line(&run, "child: connect recv=forked");
    has_line(&run, "child_exit=0");
    let child_new = get(&run, "child: new");
    let parent_new = get(&run, "parent new");
    assert!(
        slot4(child_new).is_some() && slot4(parent_new).is_some(),
        "{run}"
    );
    assert_ne!(
        child_new, parent_new,
        "a name the child added must not be handed out again by the parent:\n{run}"
    );
    assert_eq!(
        get(&run, "parent child-new"),
        child_new,
        "the parent sees the child's name:\n{run}"
    );
    has_line(&run, "parent connect recv=forked");
    assert_eq!(
        names_of(0),
        vec![
            (Some(3), Some("remote.test:7".into())),
            (Some(3), Some("child-new.test:7".into())),
        ],
        "{run}"
    );

    // exec: the new program image connects to the number it was given.
    let from = fault.sessions().len();
    let run = under_probe(
        &rig,
        &fault.url(),
        &[],
        &["exec", REMOTE_NAME, "7", "execed"],
    );
    no_leak(&rig, &run);
    run.assert_success();
    let ph = get(&run, "before exec resolved");
    has_line(&run, &format!("connect peer={ph}:7"));
    has_line(&run, &format!("connect peer_name={REMOTE_NAME}"));
    has_line(&run, "connect recv=execed");
    assert_eq!(
        names_of(from),
        vec![(Some(3), Some("remote.test:7".into()))],
        "{run}"
    );

    // Two processes one after the other (the first has exited): a shell passes the
    // number from one to the other.
    let from = fault.sessions().len();
    let p = resolvers();
    let p = p.to_str().unwrap();
    let script = format!(
        "a=$({p} lookup {REMOTE6_NAME} 4 | sed -n 's/^gai=//p'); echo \"got=$a\"; \
         exec {p} connect \"$a\" 7 siblings"
    );
    let run = under(&rig, &fault.url(), &[], "sh", &["-c", &script]);
    no_leak(&rig, &run);
    run.assert_success();
    assert!(slot4(get(&run, "got")).is_some(), "{run}");
    has_line(&run, &format!("connect peer_name={REMOTE6_NAME}"));
    has_line(&run, "connect recv=siblings");
    assert_eq!(
        names_of(from),
        vec![(Some(3), Some("remote6.test:7".into()))],
        "{run}"
    );
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// What stays local, and the switches
// ---------------------------------------------------------------------------------------

#[test]
fn local_names_and_addresses_stay_local() {
    let rig = Rig::new();
    let url = rig.microsocks().url();
    let lookup = |opts: &[&str], name: &str, fam: &str| {
        let run = under_probe(&rig, &url, opts, &["lookup", name, fam]);
        has_line(&run, "alive");
        run
    };
    let addrs = |run: &Run| -> Vec<String> {
        run.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("gai="))
            .map(String::from)
            .collect()
    };

    for (name, fam, want) in [
        ("localhost", "4", "127.0.0.1"),
        ("localhost", "6", "::1"),
        (TARGET_NAME, "4", "203.0.113.2"),
        ("203.0.113.2", "0", "203.0.113.2"),
        ("2001:db8:2::2", "0", "2001:db8:2::2"),
    ] {
        let run = lookup(&[], name, fam);
        no_leak(&rig, &run);
        // glibc's own answer, which may repeat an address (`::1 localhost` in the hosts
        // file gives AF_INET a second 127.0.0.1).
        let p = resolvers();
        let glibc = rig.run(&mut rig.client_cmd(&p, ["lookup", name, fam]));
        no_leak(&rig, &glibc);
        assert_eq!(
            run.stdout, glibc.stdout,
            "{name}: glibc's answer:\n{glibc}\n{run}"
        );
        assert!(
            addrs(&run).contains(&want.to_string()),
            "{name}: {want}:\n{run}"
        );
    }

    // *.localhost goes to the system resolver (glibc has no rule for it: DNS).
    let run = lookup(&[], "foo.localhost", "4");
    assert!(
        addrs(&run).iter().all(|a| !is_placeholder(a)),
        "foo.localhost must not get a placeholder:\n{run}"
    );
    if !rig.dns_queries_seen().is_empty() {
        rig.assert_only_dns_query_for("foo.localhost");
    }
    no_leak(&rig, &run);

    // --direct-name: the name and names under it go to the system resolver (the canary
    // refuses, so the lookup fails); a name that only ends in the same letters does not.
    for name in ["host.corp.test", "corp.test", "A.Corp.Test"] {
        let run = lookup(&["--direct-name", "corp.test"], name, "4");
        assert!(
            run.stdout.contains("gai_error="),
            "{name} should fail at the refusing canary:\n{run}"
        );
        rig.assert_only_dns_query_for(name);
    }
    let run = lookup(&["--direct-name", "corp.test"], "xcorp.test", "4");
    no_leak(&rig, &run);
    assert!(slot4(get(&run, "gai")).is_some(), "{run}");

    // Reverse lookups of ordinary addresses: never a PTR query.
    let run = under_probe(&rig, &url, &[], &["reverse", "203.0.113.99"]);
    no_leak(&rig, &run);
    has_line(&run, "getnameinfo=203.0.113.99 serv=7");
    has_line(&run, "getnameinfo_namereqd=EAI_NONAME");
    has_line(&run, "getnameinfo_numerichost=203.0.113.99 serv=7");
    // gethostbyaddr has no numeric form: "not found", as glibc says when PTR fails.
    has_line(&run, "gethostbyaddr=NULL h_errno=HOST_NOT_FOUND");
    has_line(&run, "gethostbyaddr_r=NULL rc=0 h_errno=HOST_NOT_FOUND");
    has_line(&run, "alive");
    let run = under_probe(&rig, &url, &[], &["reverse", "2001:db8:2::99"]);
    no_leak(&rig, &run);
    has_line(&run, "getnameinfo=2001:db8:2::99 serv=7");
    has_line(&run, "getnameinfo_namereqd=EAI_NONAME");
    let run = under_probe(&rig, &url, &[], &["reverse", "203.0.113.2"]);
    no_leak(&rig, &run);
    has_line(&run, &format!("getnameinfo={TARGET_NAME} serv=7"));
    has_line(
        &run,
        &format!("gethostbyaddr name={TARGET_NAME} type=INET len=4 aliases=0 addrs=203.0.113.2"),
    );
    // A placeholder nobody was given: no PTR query either.
    let run = under_probe(&rig, &url, &[], &["reverse", "198.19.255.254"]);
    no_leak(&rig, &run);
    has_line(&run, "getnameinfo_namereqd=EAI_NONAME");
    has_line(&run, "alive");
    rig.assert_no_leak();
}

#[test]
fn dns_local_lets_the_program_resolve_and_conflicts_with_socks5h() {
    let rig = Rig::new();
    let http = rig.http();
    let proxy = rig.microsocks();
    let url = http.url_named(REMOTE_NAME, "hello.txt");
    let run = under(
        &rig,
        &proxy.url(),
        &["--dns", "local"],
        "curl",
        &["-sS", "-m", "10", &url],
    );
    assert_eq!(run.code(), Some(6), "curl: could not resolve:\n{run}");
    rig.assert_only_dns_query_for(REMOTE_NAME);

    let run = under(
        &rig,
        &socks5h(&proxy.url()),
        &["--dns", "local"],
        "curl",
        &["-sS", "-m", "10", &url],
    );
    assert_eq!(run.code(), Some(USAGE_EXIT), "a usage error:\n{run}");
    assert_eq!(run.stderr.lines().count(), 1, "one line on stderr:\n{run}");
    assert!(run.stdout.is_empty(), "curl must not run:\n{run}");
    rig.assert_no_leak();
}

#[test]
fn a_full_name_table_gives_eai_memory() {
    let rig = Rig::new();
    let proxy = rig.microsocks();
    let conf = rig.dir().join("small-table.toml");
    std::fs::write(&conf, "dns_names = 4\n").unwrap();
    let run = under_probe(
        &rig,
        &proxy.url(),
        &["-c", conf.to_str().unwrap()],
        &["fill", "6"],
    );
    no_leak(&rig, &run);
    has_line(&run, "alive");
    let first: Vec<&str> = (0..4).map(|i| get(&run, &format!("fill{i}"))).collect();
    for (i, a) in first.iter().enumerate() {
        assert!(slot4(a).is_some(), "fill{i}.test fits:\n{run}");
    }
    let mut distinct = first.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four names, four placeholders:\n{run}");
    assert_eq!(get(&run, "fill4"), "EAI_MEMORY", "{run}");
    assert_eq!(get(&run, "fill5"), "EAI_MEMORY", "{run}");
    assert_eq!(
        get(&run, "again fill0"),
        first[0],
        "a known name still resolves:\n{run}"
    );
    assert_eq!(get(&run, "numeric"), "203.0.113.2", "{run}");
    assert_eq!(get(&run, "localhost"), "127.0.0.1", "{run}");
    assert!(
        run.stderr.contains("name table is full"),
        "the reason is on stderr:\n{run}"
    );
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// getaddrinfo hint semantics against glibc's own answers
// ---------------------------------------------------------------------------------------

/// Numeric (and /etc/hosts) hosts the dump covers: under the layer they must get exactly
/// glibc's answers. Includes inet_aton forms, a scoped address and numbers that happen
/// to lie in the placeholder pools.
const NUMERIC_HOSTS: [&str; 11] = [
    "203.0.113.2",
    "2001:db8:2::2",
    "::ffff:203.0.113.2",
    "127.1",
    "0x7f000001",
    "fe80::1%lo",
    "localhost",
    "-",
    "198.18.0.7",
    "fd6c:6179:736f:636b::7",
    "127.0.0.1",
];

/// A dump: per host, the queries in order with their result lines.
type Dump = BTreeMap<String, Vec<(String, Vec<String>)>>;

fn parse_dump(text: &str) -> Dump {
    let mut dump = Dump::new();
    let mut host = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("HOST ") {
            host = h.to_string();
            dump.entry(host.clone()).or_default();
        } else if line.starts_with("Q ") {
            dump.get_mut(&host)
                .expect("a HOST line first")
                .push((line.to_string(), Vec::new()));
        } else if line.starts_with("rc=") || line.starts_with(" E ") {
            dump.get_mut(&host)
                .and_then(|q| q.last_mut())
                .expect("a Q line first")
                .1
                .push(line.to_string());
        }
    }
    dump
}

/// Up to 12 differing queries, for messages.
fn diff_dumps(want: &Dump, got: &Dump) -> Vec<String> {
    let mut out = Vec::new();
    for (host, wq) in want {
        let Some(gq) = got.get(host) else {
            out.push(format!("host {host}: missing"));
            continue;
        };
        if wq.len() != gq.len() {
            out.push(format!("host {host}: {} queries vs {}", wq.len(), gq.len()));
        }
        for ((q, w), (q2, g)) in wq.iter().zip(gq) {
            if q != q2 || w != g {
                out.push(format!(
                    "host {host} {q}\n    glibc:    {}\n    layer:    {}",
                    w.join("\n              "),
                    g.join("\n              ")
                ));
            }
            if out.len() >= 12 {
                return out;
            }
        }
    }
    out
}

#[test]
fn getaddrinfo_of_numeric_hosts_is_exactly_glibcs() {
    let rig = Rig::new();
    let p = resolvers();
    let mut args = vec!["dump"];
    args.extend(NUMERIC_HOSTS);
    let glibc = rig.run(&mut rig.client_cmd(&p, &args));
    glibc.assert_success();
    no_leak(&rig, &glibc);
    let layer = under(
        &rig,
        "socks5://198.51.100.1:1080",
        &[],
        p.to_str().unwrap(),
        &args,
    );
    layer.assert_success();
    no_leak(&rig, &layer);
    let (want, got) = (parse_dump(&glibc.stdout), parse_dump(&layer.stdout));
    assert_eq!(want.len(), NUMERIC_HOSTS.len(), "{}", glibc.stderr);
    let diffs = diff_dumps(&want, &got);
    assert!(
        diffs.is_empty(),
        "getaddrinfo under the layer differs from glibc for numeric hosts ({} shown):\n{}\nlayer stderr: {}",
        diffs.len(),
        diffs.join("\n"),
        layer.stderr
    );
    rig.assert_no_leak();
}

/// Replaces the placeholder numbers and the host's own spelling in result lines, so a
/// name's answers can be compared with glibc's for the numbers.
fn normalize(lines: &[String], ph4: &str, ph6: &str, host: &str) -> Vec<String> {
    let mapped = format!("::ffff:{ph4}");
    lines
        .iter()
        .map(|l| {
            l.split(' ')
                .map(|tok| {
                    if let Some(a) = tok.strip_prefix("addr=") {
                        if a == ph4 {
                            return "addr=<A4>".to_string();
                        }
                        if a == ph6 {
                            return "addr=<A6>".to_string();
                        }
                        if a == mapped {
                            return "addr=::ffff:<A4>".to_string();
                        }
                    }
                    if tok.strip_prefix("canon=") == Some(host) {
                        return "canon=<HOST>".to_string();
                    }
                    tok.to_string()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// What glibc would answer for a name with one A (`n4`) and one AAAA (`n6`) record,
/// from its answers for the two numbers with the same hints: the family's list, or for
/// AF_UNSPEC IPv4's then IPv6's (the canonical name only on the first entry).
fn expected_for_name(q: &str, n4: &[String], n6: &[String]) -> Option<Vec<String>> {
    let field = |k: &str| {
        q.split(' ')
            .find_map(|t| t.strip_prefix(k))
            .unwrap_or("")
            .to_string()
    };
    let (fam, flags) = (field("fam="), field("flags="));
    let has = |f: &str| flags.split('|').any(|x| x == f);
    let ok = |r: &[String]| r.first().is_some_and(|l| l.starts_with(" E "));
    let mut want: Vec<String> = match fam.as_str() {
        "INET" | "PACKET" => n4.to_vec(),
        "INET6" => {
            // With AI_V4MAPPED|AI_ALL a real dual-stack name would also give the mapped
            // IPv4 address; what the layer should do there is not glibc's to say.
            if has("V4MAPPED") && has("ALL") {
                return None;
            }
            n6.to_vec()
        }
        // AI_ADDRCONFIG narrowed AF_UNSPEC to AF_INET6 (an IPv6-only host) and
        // AI_V4MAPPED mapped the IPv4 number: for a name with an AAAA record glibc maps
        // nothing without AI_ALL, and with it what the layer should do is not glibc's
        // to say (as for AF_INET6 above).
        "UNSPEC" if n4.iter().any(|l| l.contains("addr=::ffff:")) => {
            if has("ALL") {
                return None;
            }
            n6.to_vec()
        }
        "UNSPEC" => match (ok(n4), ok(n6)) {
            (true, true) => {
                let mut v = n4.to_vec();
                v.extend(n6.iter().map(|l| {
                    l.split(' ')
                        .map(|t| {
                            if t.starts_with("canon=") {
                                "canon=-"
                            } else {
                                t
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                }));
                v
            }
            (true, false) => n4.to_vec(),
            (false, true) => n6.to_vec(),
            (false, false) if n4 == n6 => n4.to_vec(),
            (false, false) => vec![format!("rc=MISMATCH {n4:?} {n6:?}")],
        },
        other => panic!("unknown family {other} in {q}"),
    };
    // A name is not a number.
    if has("NUMERICHOST") && ok(&want) {
        want = vec!["rc=EAI_NONAME".to_string()];
    }
    Some(want)
}

/// Runs the name-vs-numbers comparison with `wrap` around each command line (empty: in
/// the client namespace as it is).
fn compare_name_with_numbers(rig: &Rig, env: &str, wrap: &[&str]) -> Vec<String> {
    let p = resolvers();
    let p = p.to_str().unwrap();
    let name = "Remote.TEST";
    let url = "socks5://198.51.100.1:1080";
    // `wrap` (if any), then the program and its arguments, in the client namespace.
    let cmd = |program: &str, args: &[&str]| {
        if wrap.is_empty() {
            rig.client_cmd(program, args)
        } else {
            let mut c = rig.client_cmd(wrap[0], &wrap[1..]);
            c.arg(program).args(args);
            c
        }
    };
    // One laysocks run: the placeholders, in both spellings, then the dump.
    let script =
        format!("{p} placeholders remote.test && {p} placeholders {name} && exec {p} dump {name}");
    let bin = laysocks_testkit::laysocks_bin();
    let layer = rig.run(&mut cmd(
        bin.to_str().unwrap(),
        &["-x", url, "--", "sh", "-c", &script],
    ));
    layer.assert_success();
    let ph: Vec<&str> = layer
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ph4=").or_else(|| l.strip_prefix("ph6=")))
        .collect();
    assert_eq!(ph.len(), 4, "{env}: placeholders:\n{layer}");
    assert_eq!(
        (ph[0], ph[1]),
        (ph[2], ph[3]),
        "{env}: names are case-insensitive:\n{layer}"
    );
    let (ph4, ph6) = (ph[0].to_string(), ph[1].to_string());
    assert_pair(&ph4, &ph6, &layer);

    let glibc = rig.run(&mut cmd(p, &["dump", &ph4, &ph6]));
    glibc.assert_success();
    let (g, l) = (parse_dump(&glibc.stdout), parse_dump(&layer.stdout));
    let (n4, n6, got) = (&g[&ph4], &g[&ph6], &l[name]);
    assert_eq!(n4.len(), got.len(), "{env}: same grid");
    let mut diffs = Vec::new();
    for (i, (q, got)) in got.iter().enumerate() {
        let a = normalize(&n4[i].1, &ph4, &ph6, &ph4);
        let b = normalize(&n6[i].1, &ph4, &ph6, &ph6);
        let Some(want) = expected_for_name(q, &a, &b) else {
            continue;
        };
        let got = normalize(got, &ph4, &ph6, name);
        if want != got {
            diffs.push(format!(
                "[{env}] {name} {q}\n    expected: {}\n    layer:    {}",
                want.join("\n              "),
                got.join("\n              ")
            ));
        }
    }
    diffs
}

/// Differences grouped by `[env] fam=… flags=…`: how many, and the first one in full.
fn summarize(diffs: &[String]) -> BTreeMap<String, (usize, String)> {
    let mut groups: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for d in diffs {
        let head = d.lines().next().unwrap_or("");
        let env = head.split(']').next().unwrap_or("").to_string() + "]";
        let pick = |k: &str| {
            head.split(' ')
                .find(|t| t.starts_with(k))
                .unwrap_or("")
                .to_string()
        };
        let key = format!("{env} {} {}", pick("fam="), pick("flags="));
        let e = groups.entry(key).or_insert((0, d.clone()));
        e.0 += 1;
    }
    groups
}

#[test]
fn getaddrinfo_of_names_follows_glibcs_hint_semantics() {
    let rig = Rig::new();
    require("unshare", "util-linux");
    let mut diffs = compare_name_with_numbers(&rig, "client namespace", &[]);
    // AI_ADDRCONFIG in namespaces where glibc sees only IPv4, only IPv6, or neither (a
    // fresh network namespace inside the client's, with addresses on lo).
    for (env, setup) in [
        ("loopback only", "ip link set lo up"),
        (
            "IPv4 only",
            "ip link set lo up && ip addr add 198.51.100.9/32 dev lo",
        ),
        (
            "IPv6 only",
            "ip link set lo up && ip addr add 2001:db8:9::9/128 dev lo nodad",
        ),
    ] {
        let script = format!("{setup} && exec \"$@\"");
        let wrap = ["unshare", "-n", "sh", "-c", script.as_str(), "sh"];
        diffs.extend(compare_name_with_numbers(&rig, env, &wrap));
    }
    assert!(
        diffs.is_empty(),
        "{} getaddrinfo answers for a name differ from glibc's for its numbers.\n\
         By environment, family and flags (all services, socktypes, protocols):\n{}\n\
         The first of each:\n{}",
        diffs.len(),
        summarize(&diffs)
            .iter()
            .map(|(k, (n, _))| format!("  {n:4} × {k}"))
            .collect::<Vec<_>>()
            .join("\n"),
        summarize(&diffs)
            .values()
            .map(|(_, first)| first.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    rig.assert_no_leak();
}

#[test]
fn the_placeholder_helpers_agree_with_the_pools() {
    // Rig-free checks of this file's own helpers, so a wrong helper cannot hide a bug.
    assert_eq!(slot4("198.18.0.1"), Some(1));
    assert_eq!(slot4("198.19.255.255"), Some(0x1ffff));
    assert_eq!(slot4("198.20.0.0"), None);
    assert_eq!(slot4("224.0.0.1"), None);
    assert_eq!(slot6("fd6c:6179:736f:636b::1"), Some(1));
    assert_eq!(slot6("fd6c:6179:736f:636c::1"), None);
    let want = vec![" E fam=INET addr=<A4> canon=<HOST>".to_string()];
    assert_eq!(
        normalize(
            &[" E fam=INET addr=198.18.0.1 canon=198.18.0.1".to_string()],
            "198.18.0.1",
            "fd6c:6179:736f:636b::1",
            "198.18.0.1"
        ),
        want
    );
    let q = "Q serv=80 fam=UNSPEC st=0 proto=0 flags=CANONNAME";
    let e = expected_for_name(
        q,
        &[" E a canon=<HOST>".into()],
        &[" E b canon=<HOST>".into()],
    );
    assert_eq!(
        e,
        Some(vec![" E a canon=<HOST>".into(), " E b canon=-".into()])
    );
    let q = "Q serv=80 fam=INET st=0 proto=0 flags=CANONNAME|NUMERICHOST";
    assert_eq!(
        expected_for_name(q, &[" E a".into()], &[]),
        Some(vec!["rc=EAI_NONAME".into()])
    );
}
