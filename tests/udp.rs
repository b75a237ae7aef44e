//! UDP through the proxy (issue 6, DESIGN §5): SOCKS5 UDP ASSOCIATE for every datagram API.
//!
//! Dante's `danted` grants UDP ASSOCIATE; microsocks refuses it. The target runs a UDP
//! echo server on `[::]:7` that records where datagrams came from (the proxy host's
//! relay, 203.0.113.1 / 2001:db8:2::1, or the test fails), and dnsmasq for DNS over UDP.
//!
//! Leaks: besides the rig's counters (no-route packets, the DNS canary), every test runs
//! the UDP watch ([`Rig::udp_watch`]): a packet socket on the client's only link that
//! checks every outgoing UDP packet is a SOCKS5-wrapped datagram to the proxy host, so a
//! datagram sent direct to a reachable address, or unwrapped to the relay, fails the
//! test too. The first tests prove the rig (danted's relay with a native client, the
//! watch seeing a direct datagram) before the layer is judged.
//!
//! Covered under the layer: python3 (sendto/recvfrom, sendmsg/recvmsg, recvfrom_into,
//! connected send/recv and read/write, IPv4, IPv6, v4-mapped, by name), a C probe
//! (`probes/udpprobe.c`: sendmmsg/recvmmsg, recvmsg with SO_TIMESTAMP and PKTINFO,
//! MSG_PEEK / MSG_TRUNC / MSG_DONTWAIT / non-blocking / poll / epoll, strays from a
//! stranger, 10,000 datagrams up to the largest that fits), `dig @target`, `dig` and
//! node's `dns.resolve4` via `--dns-server`, `nc -u`, eight sockets at once, sockets
//! closed and reopened, microsocks refusing, and `laysocks check`'s `udp:` line;
//! `sendmmsg`/`recvmmsg` through `syscall(2)`, as libuv (node's `dgram`, `dig`) calls
//! them; a session reopened after danted is restarted under a live socket
//! ([`Rig::restart_danted`]); `--exclude` and loopback (a UDP echo in the client
//! namespace, [`Rig::client_udp_echo`]) staying direct; and one socket talking to
//! loopback and through the proxy by turns.

use laysocks_testkit::check::{get, has_line, layer_lines, no_leak, under};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use laysocks_testkit::netns::enter_netns;
use laysocks_testkit::{
    compile_c, in_netns, python3, require, Proxy, Rig, Run, UdpWatch, CLIENT_V4, DANTED_PORT,
    DNS_ONLY_NAME, PROXY_OUT_V4, PROXY_PASS, PROXY_USER, PROXY_V4, PROXY_V6, REMOTE6_NAME,
    REMOTE_NAME, TARGET_V4, TARGET_V6,
};

const UDPPROBE: &str = include_str!("probes/udpprobe.c");

/// The UDP probe (see the comment at the top of `probes/udpprobe.c`).
fn udpprobe() -> PathBuf {
    compile_c("udpprobe", UDPPROBE)
}

/// A rig with the UDP watch running and the UDP echo server started.
fn rig() -> (Rig, UdpWatch) {
    let rig = Rig::new();
    let watch = rig.udp_watch();
    rig.udp_echo();
    rig.reset_leak_baseline();
    (rig, watch)
}

/// The UDP probe under the layer.
fn under_probe(rig: &Rig, url: &str, args: &[&str]) -> Run {
    let p = udpprobe();
    under(rig, url, &[], p.to_str().unwrap(), args)
}

/// [`PY`] under the layer with these arguments.
fn under_py(rig: &Rig, url: &str, opts: &[&str], args: &[&str]) -> Run {
    let py = python3();
    let mut all = vec!["-c", PY];
    all.extend_from_slice(args);
    under(rig, url, opts, py.to_str().unwrap(), &all)
}

/// `a.b.c.d:port` / `[v6]:port`, as the probes print addresses.
fn addr(ip: impl Into<IpAddr>, port: u16) -> String {
    SocketAddr::new(ip.into(), port).to_string()
}

/// The danted URLs to the proxy's IPv4 and IPv6 addresses.
fn danted_urls(p: &Proxy) -> [String; 2] {
    [p.url(), p.url_v6()]
}

// ---------------------------------------------------------------------------------------
// The rig itself
// ---------------------------------------------------------------------------------------

/// A native SOCKS5 UDP client (no layer): greeting, username auth, UDP ASSOCIATE with
/// the control connection's family, then wrapped datagrams to the relay for each target
/// (IPv4, IPv6, a name only the proxy host knows) in sizes up to the largest that fits.
const NATIVE: &str = r#"
import socket, struct, sys
proxy = (sys.argv[1], int(sys.argv[2])); user, pw = sys.argv[3], sys.argv[4]
fam = socket.AF_INET6 if ':' in proxy[0] else socket.AF_INET
c = socket.create_connection(proxy, timeout=5)
c.sendall(b'\x05\x01\x02'); assert c.recv(2) == b'\x05\x02'
c.sendall(bytes([1, len(user)]) + user.encode() + bytes([len(pw)]) + pw.encode())
assert c.recv(2) == b'\x01\x00'
if fam == socket.AF_INET6:
    c.sendall(b'\x05\x03\x00\x04' + bytes(16) + b'\x00\x00')
else:
    c.sendall(b'\x05\x03\x00\x01' + bytes(4) + b'\x00\x00')
r = c.recv(300)
assert r[:2] == b'\x05\x00', r
if r[3] == 1:
    relay = (socket.inet_ntop(socket.AF_INET, r[4:8]), struct.unpack('>H', r[8:10])[0])
else:
    relay = (socket.inet_ntop(socket.AF_INET6, r[4:20]), struct.unpack('>H', r[20:22])[0])
if relay[0] in ('0.0.0.0', '::'):
    relay = (proxy[0], relay[1])
print('relay_family=' + ('6' if ':' in relay[0] else '4'))
u = socket.socket(socket.AF_INET6 if ':' in relay[0] else socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
fits = 65527 if ':' in relay[0] else 65507
for name, hdr in [
    ('v4', b'\x00\x00\x00\x01' + socket.inet_pton(socket.AF_INET, '203.0.113.2')),
    ('v6', b'\x00\x00\x00\x04' + socket.inet_pton(socket.AF_INET6, '2001:db8:2::2')),
    ('name', b'\x00\x00\x00\x03\x0bremote.test'),
]:
    hdr += struct.pack('>H', 7)
    # Replies carry an IPv4 or IPv6 header (10 or 22 bytes); IPv4 targets fit 65507 too.
    big = min(fits, 65507 + 22 if name == 'v6' else 65507 + 10) - max(len(hdr), 22 if name == 'v6' else 10)
    for size in [1, 1462, 1500, 8192, big]:
        data = bytes((i * 7 + size) & 255 for i in range(size))
        try:
            u.sendto(hdr + data, relay)
            d, src = u.recvfrom(70000)
        except OSError as e:
            print(f'{name} {size} error {e}')
            continue
        ok = d[:3] == b'\x00\x00\x00' and d.endswith(data) and src[:2] == relay
        print(f'{name} {size} ' + ('ok' if ok else f'bad from {src} head {d[:24].hex()}'))
"#;

#[test]
fn danted_relays_udp_for_a_native_client() {
    let (rig, watch) = rig();
    let echo = rig.udp_echo();
    rig.danted();
    for host in [PROXY_V4.to_string(), PROXY_V6.to_string()] {
        let run = rig.run(&mut rig.client_cmd(
            python3(),
            [
                "-c",
                NATIVE,
                &host,
                &DANTED_PORT.to_string(),
                PROXY_USER,
                PROXY_PASS,
            ],
        ));
        no_leak(&rig, &run);
        run.assert_success();
        let lines: Vec<&str> = run
            .stdout_lines()
            .into_iter()
            .filter(|l| l.starts_with("v4 ") || l.starts_with("v6 ") || l.starts_with("name "))
            .collect();
        assert_eq!(lines.len(), 15, "{run}");
        assert!(lines.iter().all(|l| l.ends_with(" ok")), "{run}");
    }
    let c = watch.since_baseline();
    assert_eq!(c.wrapped, 30, "30 wrapped datagrams left the client: {c:?}");
    assert!(c.fragments > 0, "the big ones were fragmented: {c:?}");
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn the_udp_watch_sees_datagrams_that_are_not_wrapped_or_not_for_the_proxy() {
    let (rig, watch) = rig();
    rig.assert_no_leak();
    // A plain datagram to the proxy host (reachable): only the watch can see it.
    in_netns(rig.client_ns(), || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"direct", (PROXY_V4, 9)).unwrap();
    });
    let err = rig
        .check_no_leak()
        .expect_err("a plain datagram to the proxy host must be seen");
    assert!(
        err.contains("not SOCKS5-wrapped") && err.contains("198.51.100.1:9"),
        "{err}"
    );
    // IPv6, and a big one (fragments).
    rig.reset_leak_baseline();
    in_netns(rig.client_ns(), || {
        let s = UdpSocket::bind("[::]:0").unwrap();
        s.send_to(&[7u8; 5000], (PROXY_V6, 9)).unwrap();
    });
    let err = rig
        .check_no_leak()
        .expect_err("a plain IPv6 datagram must be seen");
    assert!(err.contains("[2001:db8:1::1]:9"), "{err}");
    assert!(
        watch.since_baseline().fragments >= 3,
        "{:?}",
        watch.counts()
    );
    // A wrapped one to the proxy host passes; one straight to the target has no route.
    rig.reset_leak_baseline();
    in_netns(rig.client_ns(), || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"\0\0\0\x01\xcb\x00\x71\x02\x00\x07hi", (PROXY_V4, 9))
            .unwrap();
    });
    rig.assert_no_leak();
    assert_eq!(watch.since_baseline().wrapped, 1);
    in_netns(rig.client_ns(), || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        assert!(s.send_to(b"direct", (TARGET_V4, 7)).is_err());
    });
    let err = rig.check_no_leak().expect_err("no route must be seen");
    assert!(err.contains("IPv4"), "{err}");
    rig.reset_leak_baseline();
}

// ---------------------------------------------------------------------------------------
// python3
// ---------------------------------------------------------------------------------------

/// `PY MODE ARGS…` (see each mode). Every step prints `TAG STEP=RESULT` (or
/// `=ERR ERRNO`), so one failing call does not hide the others.
const PY: &str = r#"
import errno, os, select, socket, sys, time
def en(e):
    if isinstance(e, OSError) and e.errno:
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__
def fmt(a):
    return f'[{a[0]}]:{a[1]}' if ':' in a[0] else f'{a[0]}:{a[1]}'
def step(tag, f):
    try:
        r = f()
    except Exception as e:
        r = 'ERR ' + en(e)
    print(f'{tag}={r}', flush=True)
def sessions(port):
    # ESTABLISHED TCP connections to the proxy port in this namespace.
    n = 0
    for f in ('/proc/self/net/tcp', '/proc/self/net/tcp6'):
        for line in open(f).read().splitlines()[1:]:
            p = line.split()
            if p[3] == '01' and int(p[2].split(':')[1], 16) == port:
                n += 1
    return n
mode = sys.argv[1]
F = {'4': socket.AF_INET, '6': socket.AF_INET6}

if mode == 'echo':
    # loopback stays direct
    srv = socket.socket(); srv.close()
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(('127.0.0.1', 0))
    cl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); cl.settimeout(5)
    cl.sendto(b'lo', srv.getsockname())
    d, a = srv.recvfrom(10); srv.sendto(d + b'-back', a)
    step('loopback', lambda: cl.recvfrom(100)[0].decode())
    srv.close(); cl.close()
    for spec in sys.argv[2:]:
        tag, host, fam = spec.split(',')
        fam = F[fam]
        port = 7
        if not host[0].isdigit() and ':' not in host:
            ai = socket.getaddrinfo(host, port, fam, socket.SOCK_DGRAM)
            print(f'{tag} addr={fmt(ai[0][4])}', flush=True)
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5)
        step(f'{tag} sendto', lambda: s.sendto(b'py-sendto', (host, port)))
        def rf():
            d, a = s.recvfrom(65535); return f'{d.decode()} from={fmt(a)}'
        step(f'{tag} recvfrom', rf)
        step(f'{tag} sendmsg', lambda: s.sendmsg([b'py-', b'sendmsg'], [], 0, (host, port)))
        def rm():
            d, anc, flags, a = s.recvmsg(65535); return f'{d.decode()} flags={flags} from={fmt(a)}'
        step(f'{tag} recvmsg', rm)
        def ri():
            s.sendto(b'py-into', (host, port))
            b = bytearray(64); n, a = s.recvfrom_into(b); return f'{b[:n].decode()} from={fmt(a)}'
        step(f'{tag} recvfrom_into', ri)
        s.close()
        c = socket.socket(fam, socket.SOCK_DGRAM); c.settimeout(5)
        step(f'{tag} connect', lambda: c.connect((host, port)))
        step(f'{tag} peer', lambda: fmt(c.getpeername()))
        step(f'{tag} send', lambda: c.send(b'py-send'))
        step(f'{tag} recv', lambda: c.recv(100).decode())
        step(f'{tag} write', lambda: os.write(c.fileno(), b'py-write'))
        def rd():
            r, _, _ = select.select([c], [], [], 5)
            return os.read(c.fileno(), 100).decode() if r else 'select-timeout'
        step(f'{tag} read', rd)
        c.close()
    print('alive')

elif mode == 'multi':
    port = int(sys.argv[2])
    socks = []
    for k in range(8):
        fam, host = (socket.AF_INET, '203.0.113.2') if k % 2 == 0 else (socket.AF_INET6, '2001:db8:2::2')
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5)
        conn = k % 4 >= 2
        if conn:
            s.connect((host, 7))
        socks.append((s, host, conn))
    ok = bad = 0
    for r in range(20):
        for k, (s, h, conn) in enumerate(socks):
            m = f's{k}-r{r}'.encode()
            try:
                s.send(m) if conn else s.sendto(m, (h, 7))
            except OSError as e:
                bad += 1; print(f'send s{k} r{r} {en(e)}')
        for k, (s, h, conn) in reversed(list(enumerate(socks))):
            try:
                d, a = s.recvfrom(100)
                if d == f's{k}-r{r}'.encode() and a[0] == h and a[1] == 7:
                    ok += 1
                else:
                    bad += 1; print(f'bad s{k} r{r} got {d!r} from {a}')
            except OSError as e:
                bad += 1; print(f'err s{k} r{r} {en(e)}')
        if r == 0:
            print(f'sessions={sessions(port)}', flush=True)
    print(f'multi ok={ok} bad={bad}')
    for s, _, _ in socks:
        s.close()
    t = time.time() + 3
    while sessions(port) and time.time() < t:
        time.sleep(0.02)
    print(f'sessions_after_close={sessions(port)}')
    print('alive')

elif mode == 'reopen':
    port = int(sys.argv[2])
    for cycle in range(5):
        fam, host = (socket.AF_INET, '203.0.113.2') if cycle % 2 == 0 else (socket.AF_INET6, '2001:db8:2::2')
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5)
        before = sessions(port)
        try:
            s.sendto(b'cycle-%d' % cycle, (host, 7))
            d, a = s.recvfrom(100)
            got = f'{d.decode()} from={fmt(a)}'
        except OSError as e:
            got = 'ERR ' + en(e)
        print(f'cycle{cycle} recv={got}', flush=True)
        print(f'cycle{cycle} sessions_before={before} sessions_open={sessions(port)} fd={s.fileno()}', flush=True)
        s.close()
        t = time.time() + 3
        while sessions(port) and time.time() < t:
            time.sleep(0.02)
        print(f'cycle{cycle} sessions_after_close={sessions(port)}', flush=True)
    print('alive')

elif mode == 'refused':
    what = sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    if what == 'sendto':
        step('sendto', lambda: s.sendto(b'x', ('203.0.113.2', 7)))
    elif what == 'connect':
        step('connect', lambda: s.connect(('203.0.113.2', 7)))
    elif what == 'name':
        step('sendto', lambda: s.sendto(b'x', ('remote.test', 7)))
    elif what == 'sendto6':
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        step('sendto', lambda: s.sendto(b'x', ('2001:db8:2::2', 7)))
    s.close()
    def tcp():
        t = socket.create_connection(('203.0.113.2', 7), timeout=5)
        t.sendall(b'tcp-after'); d = t.recv(100); t.close(); return d.decode()
    step('tcp', tcp)
    print('alive')

elif mode == 'dns53':
    # A hand-made DNS query for dns-only.test A, over a plain and a connected socket.
    host = sys.argv[2]
    q = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00' + b'\x08dns-only\x04test\x00' + b'\x00\x01\x00\x01'
    def answer(d):
        # The last A record's address (the answer section ends the message).
        return socket.inet_ntop(socket.AF_INET, d[-4:]) if len(d) > len(q) and d[:2] == b'\x12\x34' else 'none'
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    def plain():
        s.sendto(q, (host, 53)); d, a = s.recvfrom(512); return f'{answer(d)} from={fmt(a)}'
    step('udp_sendto', plain)
    s.close()
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(5)
    def conn():
        c.connect((host, 53)); c.send(q); d = c.recv(512); return f'{answer(d)} peer={fmt(c.getpeername())}'
    step('udp_connect', conn)
    print('alive')

elif mode == 'restart':
    # One socket, connected or not, echoes before and after the test restarts the proxy:
    # the program writes READY, the test restarts danted and writes GO (bounded waits).
    conn, ready, go, port = sys.argv[2] == 'connect', sys.argv[3], sys.argv[4], int(sys.argv[5])
    dest = ('203.0.113.2', 7)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    if conn:
        step('connect', lambda: s.connect(dest))
    def xchg(m):
        s.send(m) if conn else s.sendto(m, dest)
        d, a = s.recvfrom(100); return f'{d.decode()} from={fmt(a)}'
    step('before', lambda: xchg(b'before'))
    print(f'sessions_before={sessions(port)}', flush=True)
    open(ready, 'w').close()
    t = time.time() + 10
    while not os.path.exists(go) and time.time() < t:
        time.sleep(0.01)
    print('go=' + ('yes' if os.path.exists(go) else 'timeout'), flush=True)
    # The layer checks its control connection at most every 250 ms.
    time.sleep(0.6)
    print(f'sessions_dropped={sessions(port)}', flush=True)
    step('after', lambda: xchg(b'after'))
    print(f'sessions_after={sessions(port)}', flush=True)
    step('again', lambda: xchg(b'again'))
    if conn:
        step('peer', lambda: fmt(s.getpeername()))
    print('alive')

elif mode in ('excluded', 'two', 'one'):
    # FAM TARGET LOOPBACK: the target (port 7, proxied unless excluded) and the client's
    # own UDP echo on loopback (port 7, always direct).
    fam = F[sys.argv[2]]; target = (sys.argv[3], 7); lo = (sys.argv[4], 7)
    def new():
        x = socket.socket(fam, socket.SOCK_DGRAM); x.settimeout(5); return x
    def xchg(x, to, m):
        x.sendto(m, to)
        d, a = x.recvfrom(100); return f'{d.decode()} from={fmt(a)}'
    port = lambda x: x.getsockname()[1]
    if mode == 'excluded':
        s = new()
        step('sendto', lambda: s.sendto(b'excluded', target))
        c = new()
        step('connect', lambda: c.connect(target))
        l = new()
        step('loopback', lambda: xchg(l, lo, b'loopback'))
        print(f'loopback_port={port(l)}')
        print(f'sessions={sessions(int(sys.argv[5]))}')
    elif mode == 'two':
        # Two sockets: one to loopback, one to the target, interleaved.
        l, p = new(), new()
        def both(r):
            l.sendto(b'lo-%d' % r, lo); p.sendto(b'px-%d' % r, target)
            dp, ap = p.recvfrom(100); dl, al = l.recvfrom(100)
            return f'{dl.decode()} from={fmt(al)} {dp.decode()} from={fmt(ap)}'
        for r in range(3):
            step(f'round{r}', lambda: both(r))
        print(f'loopback_port={port(l)} proxied_port={port(p)}')
    else:
        # One unconnected socket: the target, loopback, the target again, then both
        # at once (the replies in either order).
        s = new()
        step('first', lambda: xchg(s, target, b'first'))
        step('loopback', lambda: xchg(s, lo, b'loopback'))
        step('third', lambda: xchg(s, target, b'third'))
        def both():
            s.sendto(b'to-lo', lo); s.sendto(b'to-target', target)
            got = []
            for _ in range(2):
                d, a = s.recvfrom(100); got.append(f'{d.decode()} from={fmt(a)}')
            return ' '.join(sorted(got))
        step('both', both)
        step('fourth', lambda: xchg(s, target, b'fourth'))
        print(f'port={port(s)}')
    print('alive')
"#;

/// The placeholder a `TAG addr=` line announced.
fn placeholder<'a>(run: &'a Run, tag: &str) -> &'a str {
    get(run, &format!("{tag} addr"))
}

#[test]
fn python_sendto_recvfrom_and_connected_send_recv_v4_v6_mapped_and_by_name() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    let specs = [
        format!("v4,{TARGET_V4},4"),
        format!("v6,{TARGET_V6},6"),
        format!("mapped,::ffff:{TARGET_V4},6"),
        format!("name4,{REMOTE_NAME},4"),
        format!("name6,{REMOTE6_NAME},6"),
    ];
    let mut args = vec!["echo"];
    args.extend(specs.iter().map(String::as_str));
    for url in danted_urls(&d) {
        let run = under_py(&rig, &url, &[], &args);
        no_leak(&rig, &run);
        run.assert_success();
        has_line(&run, "loopback=lo-back");
        let mapped = format!("[::ffff:{TARGET_V4}]:7");
        let targets: [(&str, String); 5] = [
            ("v4", addr(TARGET_V4, 7)),
            ("v6", addr(TARGET_V6, 7)),
            ("mapped", mapped),
            ("name4", placeholder(&run, "name4").to_string()),
            ("name6", placeholder(&run, "name6").to_string()),
        ];
        for (tag, src) in &targets {
            // Sources and the peer are what the program sent to: the address, or the
            // placeholder for a name (README, "UDP").
            for line in [
                format!("{tag} sendto=9"),
                format!("{tag} recvfrom=py-sendto from={src}"),
                format!("{tag} sendmsg=10"),
                format!("{tag} recvmsg=py-sendmsg flags=0 from={src}"),
                format!("{tag} recvfrom_into=py-into from={src}"),
                format!("{tag} connect=None"),
                format!("{tag} peer={src}"),
                format!("{tag} send=7"),
                format!("{tag} recv=py-send"),
                format!("{tag} write=8"),
                format!("{tag} read=py-write"),
            ] {
                assert!(
                    run.stdout_lines().contains(&line.as_str()),
                    "{url}: stdout lacks the line {line:?}:\n{run}"
                );
            }
        }
        has_line(&run, "alive");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn eight_sockets_at_once_each_with_its_own_session() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    let before = echo.peers().len();
    let run = under_py(&rig, &d.url(), &[], &["multi", &DANTED_PORT.to_string()]);
    no_leak(&rig, &run);
    run.assert_success();
    has_line(&run, "multi ok=160 bad=0");
    has_line(&run, "sessions=8");
    has_line(&run, "sessions_after_close=0");
    has_line(&run, "alive");
    let peers = echo.peers();
    assert!(
        peers.len() - before >= 8,
        "eight sessions should reach the target from eight relay ports: {peers:?}\n{run}"
    );
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn a_closed_socket_ends_its_session_and_a_new_socket_gets_a_new_one() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    let run = under_py(&rig, &d.url(), &[], &["reopen", &DANTED_PORT.to_string()]);
    no_leak(&rig, &run);
    run.assert_success();
    for cycle in 0..5 {
        let src = if cycle % 2 == 0 {
            addr(TARGET_V4, 7)
        } else {
            addr(TARGET_V6, 7)
        };
        has_line(&run, &format!("cycle{cycle} recv=cycle-{cycle} from={src}"));
        let l = get(&run, &format!("cycle{cycle} sessions_before"));
        assert!(
            l.starts_with("0 sessions_open=1 "),
            "cycle {cycle}: no session before the first datagram, one while the socket \
             lives:\n{run}"
        );
        has_line(&run, &format!("cycle{cycle} sessions_after_close=0"));
    }
    has_line(&run, "alive");
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn microsocks_refuses_udp_associate_with_one_clear_line_and_nothing_goes_direct() {
    let (rig, watch) = rig();
    rig.echo();
    let m = rig.microsocks();
    for what in ["sendto", "connect", "name", "sendto6"] {
        let run = under_py(&rig, &m.url(), &[], &["refused", what]);
        no_leak(&rig, &run);
        run.assert_success();
        let step = if what == "connect" {
            "connect"
        } else {
            "sendto"
        };
        has_line(&run, &format!("{step}=ERR ECONNREFUSED"));
        // The program lives on, and its TCP still goes through the proxy.
        has_line(&run, "tcp=tcp-after");
        has_line(&run, "alive");
        let lines = layer_lines(&run);
        assert_eq!(
            lines.len(),
            1,
            "{what}: exactly one line from the layer:\n{run}"
        );
        assert!(
            lines[0].contains("UDP"),
            "{what}: the line should say it is about UDP:\n{run}"
        );
    }
    let c = watch.since_baseline();
    assert_eq!(
        (c.wrapped, c.violations),
        (0, 0),
        "no datagram may leave the client at all: {c:?}"
    );
    assert_eq!(rig.udp_echo().datagrams(), 0);
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// The C probe
// ---------------------------------------------------------------------------------------

#[test]
fn c_sendmmsg_recvmmsg_and_recvmsg_with_ancillary_data() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    for url in danted_urls(&d) {
        for (host, src, pktinfo) in [
            (
                TARGET_V4.to_string(),
                addr(TARGET_V4, 7),
                vec!["198.51.100.2".to_string()],
            ),
            (
                TARGET_V6.to_string(),
                addr(TARGET_V6, 7),
                // The relay may be IPv4 (a dual-stack socket then sees a mapped address).
                vec![
                    "2001:db8:1::2".to_string(),
                    "::ffff:198.51.100.2".to_string(),
                ],
            ),
        ] {
            let ctx = format!("{url} {host}");
            let run = under_probe(&rig, &url, &["mmsg", &host, "7"]);
            no_leak(&rig, &run);
            run.assert_success();
            has_line(&run, "sendmmsg=8");
            has_line(&run, "sendmmsg_lens=ok");
            for i in 0..8 {
                let data = format!("mmsg-{i}-{}", "x".repeat(i));
                has_line(
                    &run,
                    &format!(
                        "reply i={i} len={} from={src} data={data} flags=0",
                        data.len()
                    ),
                );
            }
            has_line(&run, "recvmmsg_total=8");
            let trunc = run
                .stdout_lines()
                .iter()
                .filter(|l| **l == "recvmmsg_trunc len=4 flags=MSG_TRUNC data=mmsg")
                .count();
            assert_eq!(trunc, 2, "{ctx}: recvmmsg into 4-byte buffers:\n{run}");
            has_line(&run, "alive");

            let run = under_probe(&rig, &url, &["ancil", &host, "7"]);
            no_leak(&rig, &run);
            run.assert_success();
            has_line(&run, "sendmsg=ok");
            has_line(&run, &format!("anc data=ancillary from={src}"));
            has_line(&run, "anc_flags=0");
            has_line(&run, "anc_timestamp=ok");
            let pk = get(&run, "anc_pktinfo");
            assert!(
                pktinfo.iter().any(|p| p == pk),
                "{ctx}: PKTINFO should name the client's address the datagram came to, \
                 one of {pktinfo:?}:\n{run}"
            );
            has_line(&run, "alive");
        }
        let run = under_probe(&rig, &url, &["mapped", &TARGET_V4.to_string(), "7"]);
        no_leak(&rig, &run);
        run.assert_success();
        has_line(
            &run,
            &format!("mapped from=[::ffff:{TARGET_V4}]:7 data=mapped-hello"),
        );
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn peek_trunc_dontwait_nonblocking_poll_and_epoll_behave_as_a_direct_socket() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    for (host, src) in [
        (TARGET_V4.to_string(), addr(TARGET_V4, 7)),
        (TARGET_V6.to_string(), addr(TARGET_V6, 7)),
        (REMOTE_NAME.to_string(), String::new()),
    ] {
        let run = under_probe(&rig, &d.url(), &["flags", &host, "7"]);
        no_leak(&rig, &run);
        run.assert_success();
        // For a name, the source is the placeholder (the first `from=` tells it).
        let src = if src.is_empty() {
            let from = get(&run, "peek=peek-me from");
            assert!(
                from.starts_with("198.1") && from.ends_with(":7"),
                "a placeholder:\n{run}"
            );
            from.to_string()
        } else {
            src
        };
        // What a direct socket says, line for line (checked against a loopback echo).
        for line in [
            "idle_poll=0".to_string(),
            "idle_epoll=0".into(),
            "idle_dontwait=EAGAIN".into(),
            "poll=1".into(),
            "epoll=1".into(),
            format!("peek=peek-me from={src}"),
            format!("peek2=peek-me from={src}"),
            "poll_after_peek=1".into(),
            format!("read=peek-me from={src}"),
            "dontwait=EAGAIN".into(),
            "poll_empty=0".into(),
            "epoll_empty=0".into(),
            "trunc_len=100".into(),
            "trunc_data=ok".into(),
            format!("recvmsg_trunc len=10 flags=MSG_TRUNC from={src}"),
            "recvmsg_msgtrunc len=100 flags=MSG_TRUNC".into(),
            "short_len=10".into(),
            "short_rest=EAGAIN".into(),
            "peektrunc_len=100".into(),
            "after_peektrunc_len=100".into(),
            "empty_poll=1".into(),
            format!("empty_len=0 from={src}"),
            "nb_empty=EAGAIN".into(),
            "nb_send=2".into(),
            "nb_epoll=1".into(),
            format!("nb_read=nb from={src}"),
            "nb_read_empty=EAGAIN".into(),
            "alive".into(),
        ] {
            assert!(
                run.stdout_lines().contains(&line.as_str()),
                "{host}: stdout lacks the line {line:?}:\n{run}"
            );
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

/// libuv (node's `dgram`, BIND's `dig`) calls `sendmmsg` and `recvmmsg` through
/// `syscall(2)`, not through libc's wrappers.
#[test]
fn sendmmsg_and_recvmmsg_through_syscall_as_libuv_makes_them() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    for (host, src) in [
        (TARGET_V4.to_string(), addr(TARGET_V4, 7)),
        (TARGET_V6.to_string(), addr(TARGET_V6, 7)),
    ] {
        let run = under_probe(&rig, &d.url(), &["rawmmsg", &host, "7"]);
        no_leak(&rig, &run);
        run.assert_success();
        for tag in ["raw_unconnected", "raw_connected"] {
            has_line(&run, &format!("{tag} sent=1 got={tag}-hello from={src}"));
        }
        has_line(&run, "alive");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

/// Runs the stray probe while the proxy host sends the client's port datagrams from a
/// stranger: raw ones, and ones with a SOCKS5 header claiming to come from the target.
fn with_strays(rig: &Rig, url: &str, port: u16, connect: bool) -> Run {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let p = udpprobe();
            let mut args = vec![
                "--".to_string(),
                p.display().to_string(),
                "stray".into(),
                TARGET_V4.to_string(),
                "7".into(),
                port.to_string(),
            ];
            if connect {
                args.push("connect".into());
            }
            let run = rig.run(&mut rig.laysocks(url, &args));
            done.store(true, Ordering::SeqCst);
            run
        });
        s.spawn(|| {
            // Only this thread moves into the proxy host's namespace.
            enter_netns(rig.proxy_ns());
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            let to = SocketAddr::new(CLIENT_V4.into(), port);
            let mut forged = vec![0, 0, 0, 1];
            forged.extend_from_slice(&TARGET_V4.octets());
            forged.extend_from_slice(&7u16.to_be_bytes());
            forged.extend_from_slice(b"stray-forged");
            let end = Instant::now() + Duration::from_secs(8);
            while !done.load(Ordering::SeqCst) && Instant::now() < end {
                let _ = sock.send_to(b"stray-raw", to);
                let _ = sock.send_to(&forged, to);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        h.join().unwrap()
    })
}

#[test]
fn datagrams_from_anyone_but_the_relay_never_reach_the_program() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    let src = addr(TARGET_V4, 7);
    for (port, connect) in [(40123, false), (40124, true)] {
        let run = with_strays(&rig, &d.url(), port, connect);
        no_leak(&rig, &run);
        run.assert_success();
        has_line(&run, &format!("first=first from={src}"));
        has_line(&run, &format!("bound_port={port}"));
        has_line(&run, "stray_data=none");
        if connect {
            // README: a connected socket is connected to the relay, so readiness is exact.
            has_line(&run, "stray_poll=none");
        } else {
            // An unconnected socket may wake up for a stray the layer then drops.
            println!("unconnected: stray_poll={}", get(&run, "stray_poll"));
        }
        has_line(&run, &format!("second=second from={src}"));
        has_line(&run, "alive");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn ten_thousand_datagrams_up_to_the_largest_that_fits_arrive_intact() {
    let (rig, watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    let before = echo.datagrams();
    let run = under_probe(
        &rig,
        &d.url(),
        &["flood", &TARGET_V4.to_string(), "7", "10000"],
    );
    no_leak(&rig, &run);
    run.assert_success();
    let line = get(&run, "flood");
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k}= in {line:?}:\n{run}"))
    };
    println!("flood: {line}");
    assert!(!line.contains("timeout"), "the flood took too long:\n{run}");
    assert_eq!(field("sent"), 10_000, "{run}");
    assert_eq!(
        field("bad"),
        0,
        "every datagram intact, from the target:\n{run}"
    );
    // The largest payload that fits a 65507-byte IPv4 datagram after the 10-byte header.
    assert_eq!(field("maxsize"), 65_497, "{run}");
    let lost = field("lost");
    assert!(
        lost <= 20,
        "at most 0.2 % lost on two veth links and one relay, lost {lost}:\n{run}"
    );
    assert_eq!(field("received") + lost, 10_000, "{run}");
    // Every datagram left the client once, wrapped, to the relay.
    let c = watch.since_baseline();
    assert_eq!(
        c.wrapped, 10_000,
        "each datagram leaves the client once, wrapped: {c:?}\n{run}"
    );
    assert!(echo.datagrams() - before >= field("received"), "{run}");
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// Real programs: dig, node, nc
// ---------------------------------------------------------------------------------------

#[test]
fn dig_at_the_target_goes_over_udp_through_danted() {
    let (rig, watch) = rig();
    let dns = rig.dnsmasq();
    let d = rig.danted();
    let dig = require("dig", "bind9-dnsutils");
    let dig = dig.to_str().unwrap();
    let server = format!("@{TARGET_V4}");
    for url in danted_urls(&d) {
        let before = dns.queries().len();
        let run = under(
            &rig,
            &url,
            &[],
            dig,
            &[
                &server,
                "+notcp",
                "+tries=1",
                "+time=5",
                "+short",
                DNS_ONLY_NAME,
                "A",
                DNS_ONLY_NAME,
                "AAAA",
            ],
        );
        no_leak(&rig, &run);
        run.assert_success();
        assert_eq!(
            run.stdout_lines(),
            [TARGET_V4.to_string(), TARGET_V6.to_string()],
            "{url}:\n{run}"
        );
        let q = &dns.queries()[before..];
        assert_eq!(q.len(), 2, "{url}: {q:?}\n{run}");
        assert!(
            q.iter().all(|q| q.from == PROXY_OUT_V4.to_string()),
            "{url}: dnsmasq should see the queries from the proxy host: {q:?}"
        );
    }
    assert!(watch.since_baseline().wrapped >= 4);
    rig.assert_no_leak();
}

#[test]
fn dns_to_the_local_resolver_goes_to_the_dns_server_through_the_proxy_or_is_refused() {
    let (rig, _watch) = rig();
    let dns = rig.dnsmasq();
    let d = rig.danted();
    let dig = require("dig", "bind9-dnsutils");
    let dig = dig.to_str().unwrap();
    let server = dns.host_port();
    let resolver = laysocks_testkit::CLIENT_RESOLVER.to_string();

    // Without --dns-server, the preload layer alone (--no-guard): refused, the canary
    // untouched (no_leak checks it).
    let run = under(
        &rig,
        &d.url(),
        &["--no-guard"],
        dig,
        &["+notcp", "+tries=1", "+time=2", "+short", DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    run.assert_failure();
    assert!(!run.stdout.contains(&TARGET_V4.to_string()), "{run}");
    assert!(
        !layer_lines(&run).is_empty(),
        "the refusal is reported:\n{run}"
    );
    let run = under_py(&rig, &d.url(), &["--no-guard"], &["dns53", &resolver]);
    no_leak(&rig, &run);
    has_line(&run, "udp_sendto=ERR ECONNREFUSED");
    has_line(&run, "udp_connect=ERR ECONNREFUSED");
    has_line(&run, "alive");
    // With the guard (the default): answered by its DNS responder with the name's
    // placeholder, as coming from the resolver the program asked; the canary untouched.
    let run = under(
        &rig,
        &d.url(),
        &[],
        dig,
        &["+notcp", "+tries=1", "+time=2", "+short", DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    run.assert_success();
    let ph = run.stdout.trim().to_string();
    assert!(
        ph.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 198 && ip.octets()[1] & 0xfe == 18),
        "a placeholder in 198.18.0.0/15:\n{run}"
    );
    let run = under_py(&rig, &d.url(), &[], &["dns53", &resolver]);
    no_leak(&rig, &run);
    has_line(&run, &format!("udp_sendto={ph} from={resolver}:53"));
    has_line(&run, &format!("udp_connect={ph} peer={resolver}:53"));
    has_line(&run, "alive");
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());

    // To a remote server: like any UDP, through the proxy, with or without --dns-server.
    let run = under_py(&rig, &d.url(), &[], &["dns53", &TARGET_V4.to_string()]);
    no_leak(&rig, &run);
    has_line(&run, &format!("udp_sendto={TARGET_V4} from={TARGET_V4}:53"));
    has_line(
        &run,
        &format!("udp_connect={TARGET_V4} peer={TARGET_V4}:53"),
    );

    // With --dns-server: dig, a hand-made query and node's c-ares all get dnsmasq's
    // answer, reported as coming from the resolver they asked.
    let opts = ["--dns-server", server.as_str()];
    let before = dns.queries().len();
    let run = under(
        &rig,
        &d.url(),
        &opts,
        dig,
        &["+notcp", "+tries=1", "+time=5", "+short", DNS_ONLY_NAME],
    );
    no_leak(&rig, &run);
    run.assert_success();
    assert_eq!(run.stdout.trim(), TARGET_V4.to_string(), "{run}");
    let run = under_py(&rig, &d.url(), &opts, &["dns53", &resolver]);
    no_leak(&rig, &run);
    has_line(&run, &format!("udp_sendto={TARGET_V4} from={resolver}:53"));
    has_line(&run, &format!("udp_connect={TARGET_V4} peer={resolver}:53"));
    has_line(&run, "alive");
    let q = &dns.queries()[before..];
    assert!(
        q.len() >= 3 && q.iter().all(|q| q.from == PROXY_OUT_V4.to_string()),
        "dnsmasq should have seen every query from the proxy host: {q:?}"
    );
    rig.assert_no_leak();
}

/// node: c-ares (`dns.Resolver`) asks the system resolver (127.0.0.53) and, with its own
/// server list, the target; both are UDP c-ares sends itself.
const NODE_RESOLVE: &str = r#"
const dns = require('dns');
const guard = setTimeout(() => { console.log('timeout'); process.exit(3); }, 15000);
const r = new dns.Resolver({ timeout: 3000, tries: 1 });
r.resolve4('dns-only.test', (err, a) => {
  console.log('resolve4=' + (err ? err.code : a.join(',')));
  const t = new dns.Resolver({ timeout: 3000, tries: 1 });
  t.setServers(['203.0.113.2']);
  t.resolve4('dns-only.test', (err, a) => {
    console.log('target_resolve4=' + (err ? err.code : a.join(',')));
    clearTimeout(guard);
    console.log('alive');
  });
});
"#;

#[test]
fn node_dns_resolve4_via_the_dns_server_and_at_the_target() {
    let (rig, _watch) = rig();
    let dns = rig.dnsmasq();
    let d = rig.danted();
    let node = require("node", "nodejs");
    let node = node.to_str().unwrap();
    let server = dns.host_port();
    let run = under(
        &rig,
        &d.url(),
        &["--dns-server", &server],
        node,
        &["-e", NODE_RESOLVE],
    );
    no_leak(&rig, &run);
    run.assert_success();
    has_line(&run, &format!("resolve4={TARGET_V4}"));
    has_line(&run, &format!("target_resolve4={TARGET_V4}"));
    has_line(&run, "alive");
    // Without one, the preload layer alone (--no-guard) refuses the system resolver's
    // query, and the guard answers it with a placeholder; the target still answers.
    let run = under(&rig, &d.url(), &["--no-guard"], node, &["-e", NODE_RESOLVE]);
    no_leak(&rig, &run);
    run.assert_success();
    has_line(&run, "resolve4=ECONNREFUSED");
    has_line(&run, &format!("target_resolve4={TARGET_V4}"));
    let run = under(&rig, &d.url(), &[], node, &["-e", NODE_RESOLVE]);
    no_leak(&rig, &run);
    run.assert_success();
    let ph = get(&run, "resolve4");
    assert!(
        ph.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 198 && ip.octets()[1] & 0xfe == 18),
        "c-ares' query to the system resolver gets a placeholder from the guard:\n{run}"
    );
    has_line(&run, &format!("target_resolve4={TARGET_V4}"));
    let q = dns.queries();
    assert!(
        q.len() >= 3 && q.iter().all(|q| q.from == PROXY_OUT_V4.to_string()),
        "{q:?}"
    );
    rig.assert_no_leak();
}

/// node's `dgram` (libuv): an unconnected IPv4 socket and a connected IPv6 one.
const NODE_DGRAM: &str = r#"
const dgram = require('dgram');
const guard = setTimeout(() => { console.log('timeout'); process.exit(3); }, 15000);
const s = dgram.createSocket('udp4');
s.on('error', e => { console.log('udp4_error=' + e.code); s.close(); connected(); });
s.once('message', (m, r) => {
  console.log(`udp4=${m} from=${r.address}:${r.port}`);
  s.close();
  connected();
});
s.send('node-dgram', 7, '203.0.113.2');
function connected() {
  const c = dgram.createSocket('udp6');
  c.on('error', e => { console.log('udp6_error=' + e.code); finish(c); });
  c.once('message', (m, r) => {
    const p = c.remoteAddress();
    console.log(`udp6=${m} from=[${r.address}]:${r.port} peer=[${p.address}]:${p.port}`);
    finish(c);
  });
  c.connect(7, '2001:db8:2::2', () => c.send('node-connected'));
}
function finish(c) { c.close(); clearTimeout(guard); console.log('alive'); }
"#;

#[test]
fn node_dgram_sends_and_receives_through_the_relay() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    let node = require("node", "nodejs");
    let run = under(
        &rig,
        &d.url(),
        &[],
        node.to_str().unwrap(),
        &["-e", NODE_DGRAM],
    );
    no_leak(&rig, &run);
    run.assert_success();
    has_line(
        &run,
        &format!("udp4=node-dgram from={}", addr(TARGET_V4, 7)),
    );
    let v6 = addr(TARGET_V6, 7);
    has_line(&run, &format!("udp6=node-connected from={v6} peer={v6}"));
    has_line(&run, "alive");
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

#[test]
fn nc_u_sends_a_line_to_the_udp_echo_and_reads_it_back() {
    let (rig, _watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    require("nc", "netcat-openbsd");
    for url in danted_urls(&d) {
        for host in [
            TARGET_V4.to_string(),
            TARGET_V6.to_string(),
            REMOTE_NAME.into(),
        ] {
            let line = format!("hello-nc {host}\n");
            let mut cmd = rig.laysocks(&url, ["--", "nc", "-u", "-q", "1", "-w", "5", &host, "7"]);
            let run = rig.run_stdin(&mut cmd, line.as_bytes());
            no_leak(&rig, &run);
            run.assert_success();
            assert_eq!(run.stdout, line, "{url} {host}:\n{run}");
        }
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// laysocks check
// ---------------------------------------------------------------------------------------

#[test]
fn laysocks_check_says_whether_the_proxy_grants_udp_associate() {
    let (rig, _watch) = rig();
    // --target checks a TCP connect too: the TCP echo answers it, the UDP echo the datagram.
    rig.echo();
    let d = rig.danted();
    let m = rig.microsocks();
    let target = addr(TARGET_V4, 7);
    let run = rig.run(&mut rig.laysocks("", ["check", &d.url(), "--target", &target]));
    no_leak(&rig, &run);
    run.assert_success();
    let udp: Vec<&str> = run
        .stdout_lines()
        .into_iter()
        .filter(|l| l.starts_with("udp:"))
        .collect();
    assert_eq!(udp.len(), 2, "{run}");
    assert!(
        udp[0].contains("supported (relay 198.51.100.1:") && !udp[0].contains("not supported"),
        "{run}"
    );
    assert!(
        udp[1].contains(&format!("{target} answered a datagram"))
            && udp[1].contains(&format!("from {target})")),
        "the echo server answers the probe datagram:\n{run}"
    );
    let run = rig.run(&mut rig.laysocks("", ["check", &m.url()]));
    no_leak(&rig, &run);
    run.assert_success();
    assert!(
        run.stdout_lines()
            .iter()
            .any(|l| l.starts_with("udp:") && l.contains("not supported")),
        "{run}"
    );
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------
// Sessions the proxy drops; destinations that stay direct
// ---------------------------------------------------------------------------------------

/// [`PY`]'s `restart` mode under the layer, while this thread restarts danted once the
/// program says it has its session (the READY file) and tells it to go on (GO).
fn across_a_restart(rig: &Rig, url: &str, how: &str) -> Run {
    let ready = rig.dir().join(format!("restart-{how}.ready"));
    let go = rig.dir().join(format!("restart-{how}.go"));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let port = DANTED_PORT.to_string();
            let args = [
                "restart",
                how,
                ready.to_str().unwrap(),
                go.to_str().unwrap(),
                &port,
            ];
            let run = under_py(rig, url, &[], &args);
            done.store(true, Ordering::SeqCst);
            run
        });
        let end = Instant::now() + Duration::from_secs(10);
        while !ready.exists() && !done.load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        if ready.exists() {
            rig.restart_danted();
        }
        std::fs::write(&go, b"").unwrap();
        h.join().unwrap()
    })
}

/// README "UDP": the association lives as long as the control connection; when the proxy
/// drops it (here: danted killed and started again on the same port, so the old relay is
/// gone too), the next datagram, sent more than 250 ms later, opens a new session.
#[test]
fn a_session_is_reopened_after_the_proxy_drops_it() {
    let (rig, watch) = rig();
    let echo = rig.udp_echo();
    let d = rig.danted();
    let src = addr(TARGET_V4, 7);
    for how in ["sendto", "connect"] {
        let before = echo.datagrams();
        let run = across_a_restart(&rig, &d.url(), how);
        no_leak(&rig, &run);
        run.assert_success();
        if how == "connect" {
            has_line(&run, "connect=None");
            has_line(&run, &format!("peer={src}"));
        }
        has_line(&run, &format!("before=before from={src}"));
        has_line(&run, "sessions_before=1");
        has_line(&run, "go=yes");
        // The restart really closed the control connection the layer had.
        has_line(&run, "sessions_dropped=0");
        has_line(&run, &format!("after=after from={src}"));
        has_line(&run, "sessions_after=1");
        has_line(&run, &format!("again=again from={src}"));
        has_line(&run, "alive");
        assert_eq!(echo.datagrams() - before, 3, "{how}:\n{run}");
    }
    let c = watch.since_baseline();
    assert!(c.wrapped >= 6 && c.violations == 0, "{c:?}");
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

/// `--exclude` covers UDP: an excluded destination goes direct, which in this rig has no
/// route (ENETUNREACH, counted by the kernel, nothing on the link). Loopback is direct
/// without any exclusion, and a second socket of the same program still goes through the
/// proxy.
#[test]
fn excluded_and_loopback_destinations_stay_direct() {
    let (rig, watch) = rig();
    let echo = rig.udp_echo();
    let lo = rig.client_udp_echo();
    let d = rig.danted();
    let port = DANTED_PORT.to_string();
    let excludes = [
        "--exclude",
        "203.0.113.0/24",
        "--exclude",
        "2001:db8:2::/64",
    ];
    for (fam, target, loopback) in [
        ("4", TARGET_V4.to_string(), "127.0.0.1"),
        ("6", TARGET_V6.to_string(), "::1"),
    ] {
        rig.reset_leak_baseline();
        let before = rig.leak_counters();
        let lo_before = lo.datagrams();
        let run = under_py(
            &rig,
            &d.url(),
            &excludes,
            &["excluded", fam, &target, loopback, &port],
        );
        run.assert_success();
        has_line(&run, "sendto=ERR ENETUNREACH");
        has_line(&run, "connect=ERR ENETUNREACH");
        let lip: IpAddr = loopback.parse().unwrap();
        has_line(&run, &format!("loopback=loopback from={}", addr(lip, 7)));
        has_line(&run, "sessions=0");
        has_line(&run, "alive");
        // Tried direct: the kernel found no route, twice (sendto, connect), in the family.
        let now = rig.leak_counters();
        let (v4, v6) = (
            now.v4_no_routes - before.v4_no_routes,
            now.v6_no_routes - before.v6_no_routes,
        );
        let want = if fam == "4" { (2, 0) } else { (0, 2) };
        assert_eq!((v4, v6), want, "no-route packets (v4, v6):\n{run}");
        assert_eq!(now.dns_queries, before.dns_queries, "{run}");
        // And nothing went to the proxy: not wrapped, not plain.
        assert_eq!(
            watch.since_baseline(),
            laysocks_testkit::UdpWatchCounts::default(),
            "nothing may leave the client's link:\n{run}"
        );
        // The loopback echo saw the program's socket itself.
        let lo_port: u16 = get(&run, "loopback_port").parse().unwrap();
        let peers = lo.peers();
        assert!(
            peers.contains(&SocketAddr::new(lip, lo_port)),
            "{peers:?}\n{run}"
        );
        assert_eq!(lo.datagrams() - lo_before, 1);
    }
    assert_eq!(echo.datagrams(), 0, "the target saw nothing");
    rig.reset_leak_baseline();

    // Without --exclude: one socket to loopback (direct), one to the target (proxied).
    for (fam, target, loopback) in [
        ("4", TARGET_V4.to_string(), "127.0.0.1"),
        ("6", TARGET_V6.to_string(), "::1"),
    ] {
        let ip: IpAddr = target.parse().unwrap();
        let lip: IpAddr = loopback.parse().unwrap();
        let lo_before = lo.datagrams();
        let wrapped = watch.since_baseline().wrapped;
        let run = under_py(&rig, &d.url(), &[], &["two", fam, &target, loopback]);
        no_leak(&rig, &run);
        run.assert_success();
        for r in 0..3 {
            has_line(
                &run,
                &format!(
                    "round{r}=lo-{r} from={} px-{r} from={}",
                    addr(lip, 7),
                    addr(ip, 7)
                ),
            );
        }
        has_line(&run, "alive");
        let ports = get(&run, "loopback_port");
        let lo_port: u16 = ports.split_whitespace().next().unwrap().parse().unwrap();
        assert!(
            lo.peers().contains(&SocketAddr::new(lip, lo_port)),
            "{:?}\n{run}",
            lo.peers()
        );
        assert_eq!(lo.datagrams() - lo_before, 3, "{run}");
        assert_eq!(watch.since_baseline().wrapped - wrapped, 3, "{run}");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}

/// README "UDP": an unconnected session socket that also sends to a direct destination
/// stops being filtered for the relay by the kernel; the layer's receive hooks then let
/// through what comes from the relay (unwrapped) and from direct destinations.
#[test]
fn a_socket_that_talks_to_loopback_and_through_the_proxy_gets_both_replies() {
    let (rig, watch) = rig();
    let echo = rig.udp_echo();
    let lo = rig.client_udp_echo();
    let d = rig.danted();
    for (fam, target, loopback) in [
        ("4", TARGET_V4.to_string(), "127.0.0.1"),
        ("6", TARGET_V6.to_string(), "::1"),
    ] {
        let t = addr(target.parse::<IpAddr>().unwrap(), 7);
        let lip: IpAddr = loopback.parse().unwrap();
        let l = addr(lip, 7);
        let (lo_before, echo_before) = (lo.datagrams(), echo.datagrams());
        let wrapped = watch.since_baseline().wrapped;
        let run = under_py(&rig, &d.url(), &[], &["one", fam, &target, loopback]);
        no_leak(&rig, &run);
        run.assert_success();
        has_line(&run, &format!("first=first from={t}"));
        has_line(&run, &format!("loopback=loopback from={l}"));
        has_line(&run, &format!("third=third from={t}"));
        has_line(&run, &format!("both=to-lo from={l} to-target from={t}"));
        has_line(&run, &format!("fourth=fourth from={t}"));
        has_line(&run, "alive");
        let p: u16 = get(&run, "port").parse().unwrap();
        assert!(
            lo.peers().contains(&SocketAddr::new(lip, p)),
            "{:?}\n{run}",
            lo.peers()
        );
        assert_eq!(lo.datagrams() - lo_before, 2, "{run}");
        assert_eq!(echo.datagrams() - echo_before, 4, "{run}");
        assert_eq!(watch.since_baseline().wrapped - wrapped, 4, "{run}");
    }
    echo.assert_peers_are_proxy();
    rig.assert_no_leak();
}
