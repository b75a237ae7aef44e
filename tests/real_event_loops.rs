//! Widely deployed programs with their own event loops, under the layer, with the SOCKS5
//! handshake made slow enough (a 20 ms delaying relay in front of microsocks, so about
//! 80 ms per handshake) that it really runs inside the program's poll/select/epoll.
//!
//! - nginx (reverse proxy, run under the layer): it adds an upstream socket to epoll
//!   *before* calling `connect()`, edge-triggered, and waits for EPOLLOUT — the case
//!   that a layer which only looks at sockets at `connect()` time gets wrong.
//! - redis-cli (hiredis) and psql (libpq): non-blocking connect, then `poll()`.
//! - TCP Fast Open: `sendto(MSG_FASTOPEN)` on an unconnected socket is a connect, and
//!   curl's `--tcp-fastopen` sets `TCP_FASTOPEN_CONNECT` and then connects.
//!
//! Every test checks what came back end to end and that nothing went around the proxy.

use std::time::{Duration, Instant};

use laysocks_testkit::apps::{POSTGRES_PORT, REDIS_PORT};
use laysocks_testkit::{python3, require, DelayRelay, Rig, Run, HELLO_BODY, TARGET_V4};

/// Per-chunk delay of the relay, each direction.
const DELAY: Duration = Duration::from_millis(20);

fn slow_proxy(rig: &Rig) -> DelayRelay {
    rig.delay_relay(&rig.microsocks(), DELAY)
}

/// `laysocks -q -x <url> -- program args…`, run to completion.
fn under(rig: &Rig, url: &str, program: &str, args: &[&str]) -> Run {
    let mut all = vec!["-q", "--", program];
    all.extend_from_slice(args);
    rig.run(&mut rig.laysocks(url, &all))
}

/// An HTTP/1.0 response's status line and body.
fn split_response(text: &str) -> (&str, &str) {
    let status = text.lines().next().unwrap_or("");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body)
}

const NGINX_PORT: u16 = 8081;

#[test]
fn nginx_reverse_proxy_under_the_layer() {
    let rig = Rig::new();
    let curl = require("curl", "curl");
    rig.http();
    let relay = slow_proxy(&rig);
    let nginx = rig.nginx_reverse_proxy(&relay.url(), NGINX_PORT);
    let url = format!("http://127.0.0.1:{NGINX_PORT}/hello.txt");
    let fetch = || rig.run(&mut rig.client_cmd(&curl, ["-sS", "--fail", "--max-time", "15", &url]));

    // One after the other: each request is a new upstream connection, so a handshake.
    let start = Instant::now();
    for i in 0..20 {
        let run = fetch();
        run.assert_success();
        assert_eq!(run.stdout, HELLO_BODY, "request {i} through nginx:\n{run}");
    }
    let serial = start.elapsed();
    // Four relay hops for the handshake alone: a faster round means the requests did not
    // go through the relay at all.
    assert!(
        serial >= DELAY * 4 * 20,
        "20 proxied requests took only {serial:?}"
    );

    // The same over IPv6 to the target (the proxy is still reached over IPv4).
    let url6 = format!("http://127.0.0.1:{NGINX_PORT}/v6/hello.txt");
    for i in 0..5 {
        let run = rig.run(&mut rig.client_cmd(&curl, ["-sS", "--fail", "--max-time", "15", &url6]));
        run.assert_success();
        assert_eq!(
            run.stdout, HELLO_BODY,
            "IPv6 request {i} through nginx:\n{run}"
        );
    }

    // At the same time: one nginx worker runs eight handshakes in one epoll loop.
    // A layer that blocked inside connect() would run the eight handshakes (four relay
    // hops each) one after the other, every time; overlapped they take about one
    // (~200 ms here). A second round is allowed only because one lost SYN on a loaded
    // machine costs a 1 s retransmit once; a blocked loop is slow in both.
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        let runs: Vec<Run> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(fetch)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let parallel = start.elapsed();
        for run in &runs {
            run.assert_success();
            assert_eq!(run.stdout, HELLO_BODY, "concurrent request:\n{run}");
        }
        rounds.push(parallel);
        if parallel < DELAY * 4 * 8 {
            break;
        }
    }
    assert!(
        rounds.iter().any(|p| *p < DELAY * 4 * 8),
        "8 concurrent requests took {rounds:?} (two rounds): nginx's loop was blocked"
    );

    nginx.assert_alive();
    let errors =
        std::fs::read_to_string(rig.dir().join(format!("nginx-{NGINX_PORT}/logs/error.log")))
            .unwrap_or_default();
    let bad: Vec<&str> = errors
        .lines()
        .filter(|l| {
            ["[error]", "[crit]", "[alert]", "[emerg]"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    assert!(bad.is_empty(), "nginx logged errors:\n{}", bad.join("\n"));
    nginx.kill();
    rig.assert_no_leak();
}

#[test]
fn redis_cli_set_get_ping() {
    let rig = Rig::new();
    let cli = require("redis-cli", "redis-tools");
    let relay = slow_proxy(&rig);
    let server = rig.redis_server();
    let host = TARGET_V4.to_string();
    let port = REDIS_PORT.to_string();
    let cli = cli.to_str().unwrap();
    let redis = |args: &[&str]| {
        let mut all = vec!["-h", host.as_str(), "-p", port.as_str()];
        all.extend_from_slice(args);
        let run = under(&rig, &relay.url(), cli, &all);
        run.assert_success();
        run
    };
    let set = redis(&["SET", "k", "v"]);
    assert_eq!(set.stdout_lines(), ["OK"], "{set}");
    let get = redis(&["GET", "k"]);
    assert_eq!(get.stdout_lines(), ["v"], "{get}");
    let ping = redis(&["PING"]);
    assert_eq!(ping.stdout_lines(), ["PONG"], "{ping}");
    assert!(
        ping.elapsed >= DELAY * 4,
        "PING answered in {:?}, faster than the relay allows:\n{ping}",
        ping.elapsed
    );
    // The server saw the clients come from the proxy host, not from the client.
    let clients = redis(&["CLIENT", "LIST"]);
    assert!(
        clients.stdout.contains("addr=203.0.113.1:"),
        "redis saw a client not from the proxy host:\n{clients}"
    );
    assert!(!clients.stdout.contains("198.51.100."), "{clients}");
    server.kill();
    rig.assert_no_leak();
}

#[test]
fn psql_runs_a_query() {
    let rig = Rig::new();
    let psql = require("psql", "postgresql-client");
    let relay = slow_proxy(&rig);
    let server = rig.postgres();
    let host = TARGET_V4.to_string();
    let port = POSTGRES_PORT.to_string();
    let psql = psql.to_str().unwrap();
    let query = |sql: &str| {
        let run = under(
            &rig,
            &relay.url(),
            psql,
            &[
                "-X", "-h", &host, "-p", &port, "-U", "postgres", "-Atc", sql,
            ],
        );
        run.assert_success();
        run
    };
    let run = query("select 40+2");
    assert_eq!(run.stdout_lines(), ["42"], "{run}");
    // The server's view of the connection: from the proxy host to its own address.
    let run = query("select inet_client_addr(), inet_server_addr()");
    assert_eq!(run.stdout_lines(), ["203.0.113.1|203.0.113.2"], "{run}");
    server.kill();
    rig.assert_no_leak();
}

/// `sendto(MSG_FASTOPEN)` on a fresh, unconnected socket, then the response. `blocking`:
/// the call connects and sends like `connect` + `send`. `nonblocking`: like the kernel
/// without a Fast Open cookie, the call may start the connect and fail with
/// `EINPROGRESS` having sent nothing; the program then waits in `poll()` for writable.
const PY_FASTOPEN: &str = r#"
import errno, select, socket, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
req = b"GET /hello.txt HTTP/1.0\r\n\r\n"
if mode == "blocking":
    n = s.sendto(req, socket.MSG_FASTOPEN, (host, port))
else:
    s.setblocking(False)
    try:
        n = s.sendto(req, socket.MSG_FASTOPEN, (host, port))
    except BlockingIOError as e:
        assert e.errno == errno.EINPROGRESS, e
        n = 0
    p = select.poll()
    p.register(s, select.POLLOUT)
    ev = p.poll(15000)
    assert ev and ev[0][1] == select.POLLOUT, ev
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    assert err == 0, err
    s.setblocking(True)
s.settimeout(15)
if n < len(req):
    s.sendall(req[n:])
peer = s.getpeername()
print("peer=%s:%d" % (peer[0], peer[1]))
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
sys.stdout.write(data.decode())
"#;

#[test]
fn tcp_fast_open_sendto_and_curl() {
    let rig = Rig::new();
    let http = rig.http();
    let relay = slow_proxy(&rig);
    let py = python3();
    for mode in ["blocking", "nonblocking"] {
        for (host, peer) in [
            ("203.0.113.2", "203.0.113.2:8080"),
            ("2001:db8:2::2", "2001:db8:2::2:8080"),
        ] {
            let run = under(
                &rig,
                &relay.url(),
                py.to_str().unwrap(),
                &["-c", PY_FASTOPEN, mode, host, "8080"],
            );
            run.assert_success();
            let (first, response) = run.stdout.split_once('\n').unwrap_or(("", ""));
            assert_eq!(
                first,
                format!("peer={peer}"),
                "{mode} sendto(MSG_FASTOPEN) to {host}:\n{run}"
            );
            let (status, body) = split_response(response);
            assert!(status.contains(" 200 "), "status {status:?}:\n{run}");
            assert_eq!(body, HELLO_BODY, "{run}");
        }
    }

    let curl = require("curl", "curl");
    for url in [http.url("hello.txt"), http.url_v6("hello.txt")] {
        let run = under(
            &rig,
            &relay.url(),
            curl.to_str().unwrap(),
            &["-sS", "--fail", "--max-time", "15", "--tcp-fastopen", &url],
        );
        run.assert_success();
        assert_eq!(run.stdout, HELLO_BODY, "curl --tcp-fastopen {url}:\n{run}");
    }
    rig.assert_no_leak();
}
