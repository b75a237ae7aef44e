//! The hostile-proxy catalogue: every way we know a SOCKS5 proxy can misbehave, each
//! played by the fault server ([`Fault::Script`]) against the connect probe, blocking
//! and non-blocking (`poll` for POLLOUT, then `SO_ERROR`, as most event loops do), with
//! and without `--pipeline`.
//!
//! For a failure a case checks the errno the program sees (what a direct connect would
//! have given, DESIGN.md §3.5), the layer's one stderr line (target, proxy, and what the
//! proxy did wrong), that the program lives on (the probe prints `alive` after the
//! failure), that the fault server was reached at all, and that nothing leaked. For a
//! success it checks the bytes the program reads, byte for byte. The deadline cases
//! time the run against `--connect-timeout`.
//!
//! Decisions recorded here (the engine's behaviour, `laysocks-proto`):
//! - A method the client did not offer (RFC 1928 §3: the server "selects from one of the
//!   methods given in METHODS") is a protocol error, `EPROTO`, like a wrong version byte
//!   or garbage: the peer does not speak the protocol we asked for.
//! - An unknown ATYP in the reply (§5 defines 0x01, 0x03, 0x04; §6 frames the reply by
//!   it) cannot even be framed: `EPROTO`.
//! - A BND.ADDR domain name of length 0 is refused (`EPROTO`): §5 says the first octet
//!   "contains the number of octets of name that follow", and a name of no octets is not
//!   the "fully-qualified domain name" §5 promises. The framing would still be
//!   unambiguous (8 bytes), but a proxy that writes a malformed reply has not shown it
//!   can be trusted with the stream, and no proxy we know sends one. Length 255 is the
//!   longest valid name and must work, with the data after it intact.
//! - A proxy that closes (FIN) or resets before its reply is complete is `ECONNRESET`,
//!   whatever the step: to the program the connection was torn down before it was
//!   established.

use std::time::Duration;

use laysocks_testkit::expect::no_secret;
use laysocks_testkit::util::wait_for;
use laysocks_testkit::{probe, python3, Act, Fault, FaultServer, Rig, Run, PROXY_V6};

const HOST: &str = "203.0.113.2";
const PORT: &str = "7";
const TARGET: &str = "203.0.113.2:7";

/// How the program connects: probe mode and launcher options.
type Variant = (&'static str, &'static [&'static str]);

/// Blocking and non-blocking, each with and without `--pipeline`.
const VARIANTS: [Variant; 4] = [
    ("block", &[]),
    ("nonblock", &[]),
    ("block", &["--pipeline"]),
    ("nonblock", &["--pipeline"]),
];

/// For data cases also the event-loop style (stays non-blocking, `poll` + `read`).
const DATA_VARIANTS: [Variant; 6] = [
    ("block", &[]),
    ("nonblock", &[]),
    ("nbpoll", &[]),
    ("block", &["--pipeline"]),
    ("nonblock", &["--pipeline"]),
    ("nbpoll", &["--pipeline"]),
];

// ---- building scripts ----

/// RFC 1928 §6: VER REP RSV, then ATYP BND.ADDR BND.PORT as given.
fn reply(rep: u8, bnd: &[u8]) -> Vec<u8> {
    let mut r = vec![5, rep, 0];
    r.extend_from_slice(bnd);
    r
}

/// ATYP 0x01 198.51.100.1:1080.
fn bnd_v4() -> Vec<u8> {
    vec![1, 198, 51, 100, 1, 0x04, 0x38]
}

/// ATYP 0x04 [2001:db8:1::1]:1080.
fn bnd_v6() -> Vec<u8> {
    let mut b = vec![4];
    b.extend_from_slice(&PROXY_V6.octets());
    b.extend_from_slice(&[0x04, 0x38]);
    b
}

/// ATYP 0x03 with this name, port 1080.
fn bnd_name(name: &[u8]) -> Vec<u8> {
    let mut b = vec![3, name.len() as u8];
    b.extend_from_slice(name);
    b.extend_from_slice(&[0x04, 0x38]);
    b
}

fn ok_v4() -> Vec<u8> {
    reply(0, &bnd_v4())
}

/// Reads the greeting, selects "no authentication", reads the request, then `then`.
fn socks(then: Vec<Act>) -> Vec<Act> {
    let mut v = vec![Act::Greeting, Act::Send(vec![5, 0]), Act::Request];
    v.extend(then);
    v
}

/// Reads the greeting, selects username/password, reads the RFC 1929 request, then `then`.
fn socks_auth(then: Vec<Act>) -> Vec<Act> {
    let mut v = vec![Act::Greeting, Act::Send(vec![5, 2]), Act::Auth];
    v.extend(then);
    v
}

/// The probe's `@N` message: `byte[i] = (i * 131 + 7) mod 256`, every byte value.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 131 + 7) & 0xff) as u8).collect()
}

/// Application data that looks like nothing in particular: NUL, 0xFF, bytes that look
/// like a SOCKS5 reply, CR LF, then 4 KiB of every byte value.
fn binary() -> Vec<u8> {
    let mut b = vec![0, 0xFF, 5, 0, 0, 1, b'\r', b'\n', 0x80, 0, 0];
    b.extend(pattern(4096));
    b
}

// ---- running and checking ----

/// `block`, `nonblock --pipeline`, … for messages.
fn variant(mode: &str, opts: &[&str]) -> String {
    std::iter::once(mode)
        .chain(opts.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_probe(rig: &Rig, url: &str, opts: &[&str], mode: &str, msg: Option<&str>) -> Run {
    let p = probe();
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["--", p.to_str().unwrap(), mode, HOST, PORT]);
    args.extend(msg);
    rig.run(&mut rig.laysocks(url, &args))
}

/// The layer's lines on stderr.
fn layer_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("laysocks:"))
        .collect()
}

/// The one line the layer printed for the failure: `laysocks: connect to TARGET via
/// PROXY failed: REASON (ERRNO)`, with `says` in REASON.
#[track_caller]
fn one_layer_line(case: &str, run: &Run, proxy: &FaultServer, errno: &str, says: &str) {
    let lines = layer_lines(run);
    assert_eq!(
        lines.len(),
        1,
        "{case}: exactly one line from the layer:\n{run}"
    );
    let line = lines[0];
    let addr = proxy.url();
    let addr = addr.strip_prefix("socks5://").unwrap();
    let head = format!("laysocks: connect to {TARGET} via socks5://");
    let rest = line
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("{case}: the line should start `{head}`:\n{run}"));
    let (named, reason) = rest
        .split_once(" failed: ")
        .unwrap_or_else(|| panic!("{case}: `… failed: <reason>`:\n{run}"));
    assert!(
        named == addr || named.ends_with(&format!("@{addr}")),
        "{case}: the line should name the proxy {addr}:\n{run}"
    );
    assert!(
        reason.ends_with(&format!("({errno})")),
        "{case}: the line should end `({errno})`:\n{run}"
    );
    assert!(
        reason.contains(says),
        "{case}: the line should say what went wrong (`{says}`):\n{run}"
    );
}

/// The probe failed its connect with `errno`, did not connect, and lived on.
#[track_caller]
fn probe_failed(case: &str, run: &Run, errno: &str) {
    let lines = run.stdout_lines();
    assert!(
        lines.contains(&format!("errno={errno}").as_str()),
        "{case}: the program should see {errno}:\n{run}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("ok peer=")),
        "{case}: the connect must fail:\n{run}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("alive"),
        "{case}: the program must live on after the failure:\n{run}"
    );
    assert_eq!(run.code(), Some(1), "{case}: the probe's own exit:\n{run}");
}

/// One failure case of the catalogue.
struct Fail {
    name: &'static str,
    script: Vec<Act>,
    errno: &'static str,
    /// Words the layer's line must contain: what the proxy did wrong.
    says: &'static str,
}

fn fail(name: &'static str, script: Vec<Act>, errno: &'static str, says: &'static str) -> Fail {
    Fail {
        name,
        script,
        errno,
        says,
    }
}

/// Plays each case against the probe in every variant; `creds` are put in the proxy URL.
/// Returns each case's fault server.
fn expect_failures(
    rig: &Rig,
    cases: Vec<Fail>,
    creds: Option<(&str, &str)>,
) -> Vec<(&'static str, FaultServer)> {
    let mut servers = Vec::new();
    for case in cases {
        let f = rig.fault(Fault::Script(case.script.clone()));
        let url = match creds {
            Some((u, p)) => f.proxy().url_with(u, p),
            None => f.url(),
        };
        for (mode, opts) in VARIANTS {
            let label = format!("{} [{}]", case.name, variant(mode, opts));
            let before = f.sessions().len();
            let run = run_probe(rig, &url, opts, mode, Some("never-sent"));
            probe_failed(&label, &run, case.errno);
            one_layer_line(&label, &run, &f, case.errno, case.says);
            if let Some((_, p)) = creds {
                no_secret(&run, p);
            }
            assert!(
                f.sessions().len() > before,
                "{label}: the layer never reached the fault server"
            );
            assert!(
                run.elapsed < Duration::from_secs(5),
                "{label}: a failure must not take {:?}",
                run.elapsed
            );
        }
        // The application's bytes never go to a proxy that failed the handshake.
        for s in f.sessions() {
            assert!(
                !s.after_request
                    .windows(b"never-sent".len())
                    .any(|w| w == b"never-sent"),
                "{}: the program's data reached the proxy: {s:?}",
                case.name
            );
        }
        if let Err(e) = rig.check_no_leak() {
            panic!("{}: {e}", case.name);
        }
        servers.push((case.name, f));
    }
    servers
}

// ---- the method selection (RFC 1928 §3) ----

#[test]
fn method_selection_faults() {
    let rig = Rig::new();
    let hold = |m: Vec<u8>| vec![Act::Greeting, Act::Send(m), Act::Drain];
    expect_failures(
        &rig,
        vec![
            fail(
                "wrong version byte 0x04 in the method selection",
                hold(vec![4, 0]),
                "EPROTO",
                "version 0x04",
            ),
            fail(
                "version 0x00 in the method selection",
                hold(vec![0, 0]),
                "EPROTO",
                "version 0x00",
            ),
            fail(
                "no acceptable methods (0xFF)",
                hold(vec![5, 0xFF]),
                "EACCES",
                "none of the offered",
            ),
            fail(
                "unknown method 0x03 (never offered)",
                hold(vec![5, 3]),
                "EPROTO",
                "method 0x03, which was not offered",
            ),
            fail(
                "username/password selected when no credentials were offered",
                hold(vec![5, 2]),
                "EPROTO",
                "method 0x02, which was not offered",
            ),
            fail(
                "a private method 0x80 (RFC 1928 §3)",
                hold(vec![5, 0x80]),
                "EPROTO",
                "method 0x80",
            ),
        ],
        None,
    );
}

// ---- RFC 1929 username/password ----

#[test]
fn authentication_faults() {
    let rig = Rig::new();
    let servers = expect_failures(
        &rig,
        vec![
            fail(
                "auth refused (STATUS 0x01)",
                socks_auth(vec![Act::Send(vec![1, 1]), Act::Drain]),
                "EACCES",
                "rejected the username/password",
            ),
            fail(
                "auth refused with STATUS 0xFF",
                socks_auth(vec![Act::Send(vec![1, 0xFF]), Act::Drain]),
                "EACCES",
                "status 0xff",
            ),
            fail(
                "wrong sub-negotiation version (0x05) in the auth answer",
                socks_auth(vec![Act::Send(vec![5, 0]), Act::Drain]),
                "EPROTO",
                "version 0x05 instead of 0x01",
            ),
            fail(
                "RST after reading the auth request",
                socks_auth(vec![Act::Reset]),
                "ECONNRESET",
                "the proxy reset the connection before answering the username/password",
            ),
            fail(
                "FIN after reading the auth request",
                socks_auth(vec![]),
                "ECONNRESET",
                "the proxy closed the connection before answering the username/password",
            ),
            fail(
                "auth answer cut after 1 byte, then FIN",
                socks_auth(vec![Act::Send(vec![1])]),
                "ECONNRESET",
                "closed the connection after 1 of the 2 bytes of its username/password answer",
            ),
        ],
        Some(("someone", "secret-pw")),
    );
    for (name, f) in servers {
        for s in f.sessions() {
            assert_eq!(
                s.username.as_deref(),
                Some(&b"someone"[..]),
                "{name}: the RFC 1929 request the proxy got: {s:?}"
            );
        }
    }
}

// ---- the reply (RFC 1928 §6) ----

#[test]
fn reply_codes_map_to_errno() {
    let rig = Rig::new();
    // RFC 1928 §6 → what a direct connect would have said (DESIGN.md §3.5).
    let mut cases = Vec::new();
    for (name, code, errno, says) in [
        ("REP 0x01 general failure", 1u8, "ECONNREFUSED", "general"),
        ("REP 0x02 not allowed", 2, "EACCES", "not allowed"),
        ("REP 0x03 network unreachable", 3, "ENETUNREACH", "network"),
        ("REP 0x04 host unreachable", 4, "EHOSTUNREACH", "host"),
        ("REP 0x05 refused", 5, "ECONNREFUSED", "refused"),
        ("REP 0x06 TTL expired", 6, "ETIMEDOUT", "TTL"),
        (
            "REP 0x07 command not supported",
            7,
            "EAFNOSUPPORT",
            "command",
        ),
        (
            "REP 0x08 address type not supported",
            8,
            "EAFNOSUPPORT",
            "address type",
        ),
        ("REP 0x09 unassigned", 9, "EPROTO", "0x09"),
        ("REP 0xFF unassigned", 0xFF, "EPROTO", "0xff"),
    ] {
        cases.push(fail(
            name,
            socks(vec![
                Act::Send(reply(code, &bnd_v4())),
                Act::Pause(Duration::from_millis(50)),
            ]),
            errno,
            says,
        ));
    }
    expect_failures(&rig, cases, None);
}

#[test]
fn malformed_replies_are_eproto() {
    let rig = Rig::new();
    let then_hold = |r: Vec<u8>| socks(vec![Act::Send(r), Act::Drain]);
    let mut bad_version = ok_v4();
    bad_version[0] = 4;
    expect_failures(
        &rig,
        vec![
            fail(
                "wrong version byte 0x04 in the reply",
                then_hold(bad_version),
                "EPROTO",
                "version 0x04",
            ),
            fail(
                "unknown ATYP 0x07 in a success reply",
                then_hold(reply(0, &[7, 1, 2, 3, 4, 0, 80])),
                "EPROTO",
                "unknown address type 0x07",
            ),
            fail(
                "ATYP 0x00 in a success reply",
                then_hold(reply(0, &[0, 1, 2, 3, 4, 0, 80])),
                "EPROTO",
                "unknown address type 0x00",
            ),
            fail(
                "ATYP 0x02 in a success reply",
                then_hold(reply(0, &[2, 1, 2, 3, 4, 0, 80])),
                "EPROTO",
                "unknown address type 0x02",
            ),
            fail(
                "BND domain name of length 0",
                then_hold(reply(0, &[3, 0, 0x04, 0x38])),
                "EPROTO",
                "domain name of length 0",
            ),
        ],
        None,
    );
}

// ---- the proxy goes away half-way ----

#[test]
fn truncated_answers_then_close() {
    let rig = Rig::new();
    let v6 = reply(0, &bnd_v6());
    let named = reply(0, &bnd_name(b"bound.test"));
    let mut cases = vec![
        fail(
            "FIN before answering the greeting",
            vec![Act::Greeting],
            "ECONNRESET",
            "the proxy closed the connection before answering the greeting",
        ),
        fail(
            "method selection cut after 1 byte",
            vec![Act::Greeting, Act::Send(vec![5])],
            "ECONNRESET",
            "closed the connection after 1 of the 2 bytes of its method selection",
        ),
        fail(
            "FIN right after the method selection",
            vec![Act::Greeting, Act::Send(vec![5, 0])],
            "ECONNRESET",
            "the connection before replying to the request",
        ),
        fail(
            "FIN after the request, no reply",
            socks(vec![]),
            "ECONNRESET",
            "closed the connection before replying to the request",
        ),
    ];
    for (name, full, cut, says) in [
        (
            "IPv4 reply cut after 1 byte",
            ok_v4(),
            1,
            "after 1 byte of its reply",
        ),
        (
            "IPv4 reply cut after 3 bytes",
            ok_v4(),
            3,
            "after 3 bytes of its reply",
        ),
        (
            "IPv4 reply cut after ATYP",
            ok_v4(),
            4,
            "after 4 bytes of its reply",
        ),
        (
            "IPv4 reply cut after 5 bytes",
            ok_v4(),
            5,
            "after 5 of the 10 bytes",
        ),
        (
            "IPv4 reply cut 1 byte short",
            ok_v4(),
            9,
            "after 9 of the 10 bytes",
        ),
        (
            "IPv6 reply cut 1 byte short",
            v6.clone(),
            21,
            "after 21 of the 22 bytes",
        ),
        (
            "IPv6 reply cut in the address",
            v6,
            12,
            "after 12 of the 22 bytes",
        ),
        (
            "domain reply cut in the name",
            named.clone(),
            8,
            "after 8 of the 17 bytes",
        ),
        (
            "domain reply cut 1 byte short",
            named,
            16,
            "after 16 of the 17 bytes",
        ),
    ] {
        cases.push(fail(
            name,
            socks(vec![Act::Send(full[..cut].to_vec())]),
            "ECONNRESET",
            says,
        ));
    }
    expect_failures(&rig, cases, None);
}

#[test]
fn resets_at_every_handshake_step() {
    let rig = Rig::new();
    let mut mid_reply = ok_v4();
    mid_reply.truncate(4);
    expect_failures(
        &rig,
        vec![
            fail(
                "RST on accept",
                vec![Act::Reset],
                "ECONNRESET",
                "reset the connection before answering the greeting",
            ),
            fail(
                "RST after reading the greeting",
                vec![Act::Greeting, Act::Reset],
                "ECONNRESET",
                "reset the connection before answering the greeting",
            ),
            fail(
                "RST right after the method selection",
                vec![Act::Greeting, Act::Send(vec![5, 0]), Act::Reset],
                "ECONNRESET",
                "reset the connection before replying to the request",
            ),
            fail(
                "RST after reading the request",
                socks(vec![Act::Reset]),
                "ECONNRESET",
                "reset the connection before replying to the request",
            ),
            fail(
                "RST in the middle of the reply",
                socks(vec![
                    Act::Send(mid_reply),
                    Act::Pause(Duration::from_millis(50)),
                    Act::Reset,
                ]),
                "ECONNRESET",
                "reset the connection after 4 bytes of its reply",
            ),
        ],
        None,
    );
    // (RST during RFC 1929 is in `authentication_faults`.)
}

// ---- garbage ----

#[test]
fn garbage_is_eproto_and_read_in_bounded_amounts() {
    let rig = Rig::new();
    const MIB: usize = 1 << 20;
    let page_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n".to_vec();
    let cases = vec![
        fail(
            "an HTTP error page for a greeting",
            vec![
                Act::Greeting,
                Act::Send(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
                Act::Pause(Duration::from_millis(50)),
            ],
            "EPROTO",
            "HTTP proxy",
        ),
        fail(
            "a huge HTTP page for a greeting",
            vec![
                Act::Greeting,
                Act::Send(page_head),
                Act::Flood(b"<p>not a SOCKS5 proxy</p>\n".to_vec(), 4 * MIB),
            ],
            "EPROTO",
            "HTTP proxy",
        ),
        fail(
            "1 MiB of junk after the greeting",
            vec![Act::Greeting, Act::Flood(vec![0xde, 0xad, 0xbe, 0xef], MIB)],
            "EPROTO",
            "version 0xde",
        ),
        fail(
            "1 MiB of junk instead of the reply",
            socks(vec![Act::Flood(vec![0x17, 0x03, 0x03, 0x00], MIB)]),
            "EPROTO",
            "version 0x17",
        ),
    ];
    // The layer reads only the message it waits for (2 bytes of a method selection, 5 of
    // a reply's head) and stops: the server cannot get its flood out, nobody reads it.
    for (name, f) in expect_failures(&rig, cases, None) {
        let total = match &f.fault {
            Fault::Script(acts) => match acts.last() {
                Some(Act::Flood(_, n)) => *n,
                _ => continue,
            },
            _ => continue,
        };
        let all = wait_for(
            Duration::from_secs(15),
            || {
                let all = f.sessions();
                all.iter().all(|s| s.finished).then_some(all)
            },
            || format!("{name}: the fault server's flood never ended"),
        );
        for s in all {
            eprintln!("{name}: the server got {} of {total} bytes out", s.sent);
            assert!(
                s.write_failed && s.sent < total,
                "{name}: the layer must not read the flood ({} of {total} bytes went out): {s:?}",
                s.sent
            );
        }
    }
}

// ---- deadlines ----

/// Runs the probe against `f` with `--connect-timeout secs` and returns the run.
fn timed(rig: &Rig, f: &FaultServer, secs: &str, mode: &str, opts: &[&str]) -> Run {
    let mut o = vec!["--connect-timeout", secs];
    o.extend_from_slice(opts);
    run_probe(rig, &f.url(), &o, mode, Some("late"))
}

#[test]
fn a_proxy_that_never_speaks_ends_at_the_connect_timeout() {
    let rig = Rig::new();
    let f = rig.fault(Fault::Script(vec![Act::Drain]));
    for (mode, opts) in VARIANTS {
        let case = format!("accepts and never speaks [{}]", variant(mode, opts));
        let run = timed(&rig, &f, "1.5", mode, opts);
        eprintln!("{case}: failed after {:?}", run.elapsed);
        probe_failed(&case, &run, "ETIMEDOUT");
        one_layer_line(&case, &run, &f, "ETIMEDOUT", "within 1.5 s");
        assert!(
            run.elapsed >= Duration::from_millis(1500),
            "{case}: gave up after {:?}, before the 1.5 s deadline",
            run.elapsed
        );
        assert!(
            run.elapsed < Duration::from_millis(2500),
            "{case}: the 1.5 s deadline took {:?}",
            run.elapsed
        );
    }
    rig.assert_no_leak();
}

#[test]
fn a_dribbled_reply_completes_within_the_deadline_and_fails_past_it() {
    let rig = Rig::new();
    let step = Duration::from_millis(100);
    // 17 bytes at 100 ms each: the reply takes 1.7 s.
    let r = reply(0, &bnd_name(b"bound.test"));
    assert_eq!(r.len(), 17);
    let f = rig.fault(Fault::Script(socks(vec![
        Act::Dribble(r, step),
        Act::Echo(None),
    ])));
    for (mode, opts) in DATA_VARIANTS {
        let case = format!(
            "reply at 100 ms a byte, 5 s deadline [{}]",
            variant(mode, opts)
        );
        let run = timed(&rig, &f, "5", mode, opts);
        eprintln!("{case}: connected and echoed after {:?}", run.elapsed);
        let lines = run.stdout_lines();
        assert!(
            lines.contains(&"ok peer=203.0.113.2:7")
                && lines.contains(&"recv=late")
                && lines.last() == Some(&"alive"),
            "{case}: the slow reply must complete and the stream work:\n{run}"
        );
        assert!(
            run.elapsed >= Duration::from_millis(1600),
            "{case}: done in {:?}, faster than the proxy answered",
            run.elapsed
        );
        assert!(layer_lines(&run).is_empty(), "{case}: no message:\n{run}");
    }
    // A 30-byte reply at 100 ms a byte (3 s) against a 1.5 s deadline: the deadline is
    // for the whole handshake, not for each byte (each comes well within it), so the
    // connect fails at 1.5 s although the proxy never goes quiet for long.
    let r = reply(0, &bnd_name(b"a-rather-long-bound.tst"));
    assert_eq!(r.len(), 30);
    let slow = rig.fault(Fault::Script(socks(vec![
        Act::Dribble(r, step),
        Act::Echo(None),
    ])));
    for (mode, opts) in VARIANTS {
        let case = format!(
            "30-byte reply at 100 ms a byte, 1.5 s deadline [{}]",
            variant(mode, opts)
        );
        let run = timed(&rig, &slow, "1.5", mode, opts);
        eprintln!("{case}: failed after {:?}", run.elapsed);
        probe_failed(&case, &run, "ETIMEDOUT");
        one_layer_line(&case, &run, &slow, "ETIMEDOUT", "within 1.5 s");
        assert!(
            run.elapsed >= Duration::from_millis(1500) && run.elapsed < Duration::from_millis(2700),
            "{case}: must fail at the 1.5 s deadline, well before the 3 s reply is done; took {:?}",
            run.elapsed
        );
    }
    rig.assert_no_leak();
}

// ---- success, and the application's bytes ----

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// What the probe's raw exchange read (`data=`) and how it ended (`recv_eof`, …).
fn probe_data(run: &Run) -> Option<(Vec<u8>, String)> {
    let lines = run.stdout_lines();
    let i = lines.iter().position(|l| l.starts_with("data="))?;
    let data = unescape(&lines[i]["data=".len()..]);
    let len: usize = lines[i - 1].strip_prefix("data_len=")?.parse().ok()?;
    assert_eq!(data.len(), len, "data_len and data disagree:\n{run}");
    Some((data, lines.get(i + 1)?.to_string()))
}

/// Shows where two byte strings first differ.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "lengths {} and {}, first difference at byte {i}",
        a.len(),
        b.len()
    )
}

/// The probe connected (peer is the target, `SO_ERROR` 0), read exactly `want`, then
/// `end`, sent what it was told to, and lived on; the layer said nothing.
#[track_caller]
fn probe_read(case: &str, run: &Run, want: &[u8], end: &str) {
    let lines = run.stdout_lines();
    assert!(
        lines.contains(&"ok peer=203.0.113.2:7") && lines.contains(&"so_error=0"),
        "{case}: the connect must succeed:\n{run}"
    );
    let (data, how) =
        probe_data(run).unwrap_or_else(|| panic!("{case}: no data report from the probe:\n{run}"));
    assert!(
        data == want,
        "{case}: the program must read the proxy's data byte for byte ({}):\n{run}",
        first_difference(&data, want)
    );
    assert_eq!(how, end, "{case}: how the stream ended:\n{run}");
    assert_eq!(lines.last().copied(), Some("alive"), "{case}:\n{run}");
    assert_eq!(run.code(), Some(0), "{case}:\n{run}");
    assert!(
        layer_lines(run).is_empty(),
        "{case}: the layer must stay quiet:\n{run}"
    );
}

/// The newest session of `f` once it has ended (the program closed), after `before`.
fn finished_session(f: &FaultServer, before: usize, case: &str) -> laysocks_testkit::Session {
    wait_for(
        Duration::from_secs(10),
        || {
            let all = f.sessions();
            all.last()
                .filter(|s| all.len() > before && s.finished)
                .cloned()
        },
        || format!("{case}: the session never ended: {:?}", f.sessions()),
    )
}

#[test]
fn data_right_after_the_reply_reaches_the_program_byte_for_byte() {
    let rig = Rig::new();
    let bin = binary();
    let with = |mut r: Vec<u8>, d: &[u8]| {
        r.extend_from_slice(d);
        r
    };
    let long_name = vec![b'n'; 255];
    let mut big = pattern(256 * 1024);
    big[0] = 0;
    let cases: Vec<(&str, Vec<Act>, Vec<u8>)> = vec![
        (
            "IPv6 BND, data in the same segment as the reply",
            vec![Act::Send(with(reply(0, &bnd_v6()), &bin))],
            bin.clone(),
        ),
        (
            "IPv4 BND, data in a separate write right after",
            vec![Act::Send(ok_v4()), Act::Send(bin.clone())],
            bin.clone(),
        ),
        (
            "IPv4 BND, data 100 ms after the reply",
            vec![
                Act::Send(ok_v4()),
                Act::Pause(Duration::from_millis(100)),
                Act::Send(bin.clone()),
            ],
            bin.clone(),
        ),
        (
            "BND domain of 255 octets, data in the same segment",
            vec![Act::Send(with(reply(0, &bnd_name(&long_name)), &bin))],
            bin.clone(),
        ),
        (
            "BND domain of 1 octet, data in the same segment",
            vec![Act::Send(with(reply(0, &bnd_name(b"x")), &bin))],
            bin.clone(),
        ),
        (
            "reply and data dribbled together, 1 ms a byte",
            vec![Act::Dribble(
                with(reply(0, &bnd_name(b"bound.test")), &bin[..64]),
                Duration::from_millis(1),
            )],
            bin[..64].to_vec(),
        ),
        (
            "256 KiB in the same write as the reply",
            vec![Act::Send(with(ok_v4(), &big))],
            big.clone(),
        ),
        (
            "no data at all, only the half-close",
            vec![Act::Send(ok_v4())],
            Vec::new(),
        ),
    ];
    for (name, acts, want) in cases {
        // Half-close after the data: the program reads EOF, then still sends, and the
        // server receives what it sent.
        let mut script = socks(acts);
        script.extend([Act::HalfClose, Act::Drain]);
        let f = rig.fault(Fault::Script(script));
        for (mode, opts) in DATA_VARIANTS {
            let case = format!("{name} [{}]", variant(mode, opts));
            let before = f.sessions().len();
            let run = run_probe(
                &rig,
                &f.url(),
                opts,
                &format!("{mode}+drain"),
                Some("sent-after-eof"),
            );
            probe_read(&case, &run, &want, "recv_eof");
            assert!(
                run.stdout_lines().contains(&"sent=14"),
                "{case}: the program must still send after the half-close:\n{run}"
            );
            let s = finished_session(&f, before, &case);
            assert_eq!(
                s.after_request, b"sent-after-eof",
                "{case}: what the server received after its half-close"
            );
        }
        if let Err(e) = rig.check_no_leak() {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn choices_a_client_must_accept() {
    // Valid answers that are easy to get wrong: "no authentication" although credentials
    // were offered (RFC 1928 §3 lets the server choose), a method selection and reply
    // that come together before the request was even read (the engine still sends its
    // request first, and takes the reply after), junk in RSV (ignored), BND 0.0.0.0:0
    // (§6: the server need not say).
    let rig = Rig::new();
    let cases: Vec<(&str, Vec<Act>, bool)> = vec![
        (
            "no authentication chosen although credentials were offered",
            socks(vec![Act::Send(ok_v4())]),
            true,
        ),
        (
            "username/password accepted",
            socks_auth(vec![
                Act::Send(vec![1, 0]),
                Act::Request,
                Act::Send(ok_v4()),
            ]),
            true,
        ),
        (
            "method selection and reply in one write, before the request was read",
            vec![
                Act::Greeting,
                Act::Send([vec![5, 0], ok_v4()].concat()),
                Act::Request,
            ],
            false,
        ),
        (
            "RSV 0xFF in the reply",
            socks(vec![Act::Send(vec![5, 0, 0xFF, 1, 0, 0, 0, 0, 0, 0])]),
            false,
        ),
        (
            "BND 0.0.0.0:0",
            socks(vec![Act::Send(vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0])]),
            false,
        ),
    ];
    for (name, mut script, creds) in cases {
        script.extend([Act::Echo(Some(3000)), Act::HalfClose, Act::Drain]);
        let f = rig.fault(Fault::Script(script));
        let url = if creds {
            f.proxy().url_with("someone", "secret-pw")
        } else {
            f.url()
        };
        for (mode, opts) in DATA_VARIANTS {
            // Pipelined with credentials offers only 0x02: "no authentication" is then a
            // method it did not offer (covered by the failures).
            if creds && opts.contains(&"--pipeline") && name.starts_with("no auth") {
                continue;
            }
            let case = format!("{name} [{}]", variant(mode, opts));
            let run = run_probe(&rig, &url, opts, &format!("{mode}+talk"), Some("@3000"));
            probe_read(&case, &run, &pattern(3000), "recv_eof");
            no_secret(&run, "secret-pw");
        }
    }
    rig.assert_no_leak();
}

// ---- the proxy goes away mid-transfer ----

/// The probe's lines from the data report on: compared between a direct connection and
/// one through the layer.
fn exchange_lines(run: &Run) -> Vec<String> {
    let lines = run.stdout_lines();
    let from = lines
        .iter()
        .position(|l| l.starts_with("sent=") || l.starts_with("data_len="))
        .unwrap_or(lines.len());
    lines[from..].iter().map(|l| l.to_string()).collect()
}

#[test]
fn a_proxy_that_closes_mid_transfer_looks_like_the_peer_closing() {
    let rig = Rig::new();
    const N: usize = 8192;
    for (name, tail, end) in [
        (
            "FIN after 8 KiB of echo",
            vec![Act::Echo(Some(N)), Act::HalfClose, Act::Drain],
            "recv_eof",
        ),
        (
            "RST after 8 KiB of echo",
            vec![
                Act::Echo(Some(N)),
                Act::Pause(Duration::from_millis(100)),
                Act::Reset,
            ],
            "recv_errno=ECONNRESET",
        ),
    ] {
        let mut script = socks(vec![Act::Send(ok_v4())]);
        script.extend(tail.clone());
        let proxied = rig.fault(Fault::Script(script));
        // The same behaviour from a plain TCP server, reached directly (the proxy host is
        // routable from the program's namespace): what the program sees must match.
        let direct = rig.fault(Fault::Script(tail));
        let p = probe();
        let port = direct.port.to_string();
        for mode in ["block", "nonblock", "nbpoll"] {
            let case = format!("{name} [{mode}]");
            let m = format!("{mode}+talk");
            let d = rig.run(
                &mut rig.client_cmd(&p, [m.as_str(), "198.51.100.1", port.as_str(), "@20000"]),
            );
            probe_read_direct(&case, &d, N, end);
            for opts in [&[][..], &["--pipeline"][..]] {
                let case = format!("{name} [{}]", variant(mode, opts));
                let run = run_probe(&rig, &proxied.url(), opts, &m, Some("@20000"));
                probe_read(&case, &run, &pattern(N), end);
                assert_eq!(
                    exchange_lines(&run),
                    exchange_lines(&d),
                    "{case}: the program must see what it sees over a direct connection\n\
                     through the layer:\n{run}\ndirect:\n{d}"
                );
            }
        }
        if let Err(e) = rig.check_no_leak() {
            panic!("{name}: {e}");
        }
    }
}

#[track_caller]
fn probe_read_direct(case: &str, run: &Run, n: usize, end: &str) {
    let (data, how) = probe_data(run)
        .unwrap_or_else(|| panic!("{case} (direct): no data report from the probe:\n{run}"));
    assert!(
        data == pattern(n) && how == end,
        "{case} (direct): the reference run should read {n} bytes then {end}:\n{run}"
    );
}

// ---- real programs ----

const PY_CLIENT: &str = r#"
import errno, socket, sys
host, port, talk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.settimeout(10)
try:
    s.connect((host, port))
except OSError as e:
    print("connect failed:", type(e).__name__, errno.errorcode.get(e.errno, e.errno))
else:
    print("connected to %s:%d" % s.getpeername())
    want = bytes((i * 131 + 7) & 255 for i in range(talk))
    s.sendall(want)
    got = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                print("eof")
                break
            got += b
    except OSError as e:
        print("recv failed:", type(e).__name__, errno.errorcode.get(e.errno, e.errno))
    print("got %d bytes, intact: %s" % (len(got), got == want[: len(got)]))
s.close()
print("alive")
"#;

#[test]
fn python_sees_the_errors_and_lives_on() {
    let rig = Rig::new();
    let py = python3();
    let py = py.to_str().unwrap();
    // Unknown ATYP: the connect fails with EPROTO, Python raises, the script goes on.
    let f = rig.fault(Fault::Script(socks(vec![
        Act::Send(reply(0, &[7, 1, 2, 3, 4, 0, 80])),
        Act::Drain,
    ])));
    let run = rig.run(&mut rig.laysocks(&f.url(), ["--", py, "-c", PY_CLIENT, HOST, PORT, "10"]));
    assert_eq!(
        run.stdout, "connect failed: OSError EPROTO\nalive\n",
        "python, unknown ATYP:\n{run}"
    );
    run.assert_success();
    one_layer_line(
        "python, unknown ATYP",
        &run,
        &f,
        "EPROTO",
        "address type 0x07",
    );
    // A proxy that resets after 8 KiB: Python reads them, then ConnectionResetError.
    let f = rig.fault(Fault::Script(socks(vec![
        Act::Send(ok_v4()),
        Act::Echo(Some(8192)),
        Act::Pause(Duration::from_millis(100)),
        Act::Reset,
    ])));
    let run =
        rig.run(&mut rig.laysocks(&f.url(), ["--", py, "-c", PY_CLIENT, HOST, PORT, "20000"]));
    assert_eq!(
        run.stdout,
        "connected to 203.0.113.2:7\nrecv failed: ConnectionResetError ECONNRESET\n\
         got 8192 bytes, intact: True\nalive\n",
        "python, RST mid-transfer:\n{run}"
    );
    run.assert_success();
    rig.assert_no_leak();
}

#[test]
fn curl_sees_a_failed_connect_from_an_http_server_posing_as_proxy() {
    let rig = Rig::new();
    let f = rig.fault(Fault::Script(vec![
        Act::Greeting,
        Act::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()),
        Act::Pause(Duration::from_millis(100)),
    ]));
    let run = rig.run(&mut rig.laysocks(
        &f.url(),
        [
            "--",
            "curl",
            "-sS",
            "-m",
            "10",
            "http://203.0.113.2:8080/hello.txt",
        ],
    ));
    // curl's own verdict: exit 7, "Failed to connect" / "Couldn't connect to server".
    assert_eq!(run.code(), Some(7), "curl: couldn't connect:\n{run}");
    assert!(
        run.stderr.contains("curl: (7)"),
        "curl's own message:\n{run}"
    );
    assert!(
        run.stdout.is_empty(),
        "nothing of the page reaches curl:\n{run}"
    );
    let lines = layer_lines(&run);
    assert!(
        lines.len() == 1
            && lines[0].starts_with("laysocks: connect to 203.0.113.2:8080 via ")
            && lines[0].contains("HTTP proxy")
            && lines[0].ends_with("(EPROTO)"),
        "one line from the layer naming the HTTP answer:\n{run}"
    );
    rig.assert_no_leak();
}

#[test]
fn data_then_rst_right_after_the_reply_is_read_then_the_reset_once() {
    // The reply, data and an RST back to back: the program must get the data intact,
    // and the reset exactly once — from SO_ERROR or from the read after the data,
    // whichever the kernel's timing gives (a direct connection is the same race). A
    // non-blocking program that polls after the RST arrived sees its connect fail with
    // ECONNRESET, as it would directly.
    let rig = Rig::new();
    let bin = binary();
    let f = rig.fault(Fault::Script(socks(vec![
        Act::Send([ok_v4(), bin.clone()].concat()),
        Act::Reset,
    ])));
    for (mode, opts) in DATA_VARIANTS {
        let case = format!("reply, data, RST [{}]", variant(mode, opts));
        let run = run_probe(&rig, &f.url(), opts, &format!("{mode}+drain"), None);
        let lines = run.stdout_lines();
        assert_eq!(lines.last().copied(), Some("alive"), "{case}:\n{run}");
        assert!(
            layer_lines(&run).is_empty(),
            "{case}: the handshake succeeded, the layer must stay quiet:\n{run}"
        );
        if mode != "block" && lines.contains(&"errno=ECONNRESET") {
            // The RST came before the program's poll: like a direct non-blocking connect
            // to a server that resets at once, SO_ERROR says ECONNRESET and the program
            // gives up on the socket. (A blocking connect has returned 0 by then.)
            continue;
        }
        assert!(
            lines.contains(&"ok peer=203.0.113.2:7"),
            "{case}: the proxy said yes, so the connect succeeds:\n{run}"
        );
        let (data, end) =
            probe_data(&run).unwrap_or_else(|| panic!("{case}: no data report:\n{run}"));
        assert!(
            data == bin,
            "{case}: the data before the reset must be intact ({}):\n{run}",
            first_difference(&data, &bin)
        );
        let resets = lines.iter().filter(|l| **l == "so_error=104").count()
            + usize::from(end == "recv_errno=ECONNRESET");
        assert!(
            resets == 1 && (end == "recv_eof" || end == "recv_errno=ECONNRESET"),
            "{case}: the reset must show exactly once:\n{run}"
        );
    }
    rig.assert_no_leak();
}
