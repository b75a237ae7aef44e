//! `laysocks check`: is this proxy usable, and if not, why?
//!
//! Each question gets its own connection so that one answer cannot spoil the next:
//! 1. TCP connect to the proxy (timed, with the connect deadline);
//! 2. which methods it accepts: a greeting offering only X'00' and one offering only
//!    X'02' (RFC 1928 §3), on separate connections;
//! 3. whether our credentials are accepted (RFC 1929 §2), through the engine the layer
//!    uses;
//! 4. with `--target`, whether a CONNECT to it succeeds (RFC 1928 §4, §6), and how fast;
//! 5. whether the proxy grants UDP ASSOCIATE (RFC 1928 §4, §7) and where its relay is;
//!    with `--target`, one small datagram (a DNS query for the root's NS records, which a
//!    DNS server answers and an echo server returns) goes through the relay to the target
//!    and the answer, if one comes within a second, is reported. This line is
//!    information: a proxy without UDP does not make `check` fail.
//!
//! The first lines say what is checked: the proxy, and who resolves names (`dns:`). A
//! `--target` given by name goes to the proxy as a name (ATYP 0x03) with remote DNS, as
//! the layer would send it, and is resolved here only with `dns = "local"` or when it
//! matches a direct name.
//!
//! A few plain lines on stdout, then a one-line hint on failure. Exit 0 when all that
//! was asked worked, 1 otherwise (125 for bad usage, as everywhere).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use laysocks_config::ProxyUrl;
use laysocks_proto::{
    decode_udp_header, encode_udp_header, ClientHandshake, ClientStatus, Command, Credentials,
    DomainName, Error, Host, ReplyCode, TargetAddr,
};

use crate::cli::{CheckArgs, Common};
use crate::config::{self, CliSettings, DnsSettings};
use crate::say;

/// RFC 1928 §3 method numbers.
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr, Duration)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        let t = Instant::now();
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                let _ = s.set_nodelay(true);
                return Ok((s, *a, t.elapsed()));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What a proxy answered to a greeting offering one method.
enum Probe {
    Accepted,
    Refused,
    Other(String),
}

fn probe_method(addrs: &[SocketAddr], timeout: Duration, method: u8) -> Probe {
    let (mut s, _, _) = match connect(addrs, timeout) {
        Ok(c) => c,
        Err(e) => return Probe::Other(e.to_string()),
    };
    // RFC 1928 §3: VER=5, NMETHODS=1, METHODS.
    if let Err(e) = s.write_all(&[5, 1, method]) {
        return Probe::Other(e.to_string());
    }
    let mut r = [0u8; 2];
    match s.read_exact(&mut r) {
        Ok(()) if r[0] != 5 => Probe::Other(format!("not a SOCKS5 reply (version {})", r[0])),
        Ok(()) if r[1] == method => Probe::Accepted,
        Ok(()) if r[1] == 0xFF => Probe::Refused,
        Ok(()) => Probe::Other(format!("chose method {:#04x}, which was not offered", r[1])),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Probe::Other("closed the connection".into())
        }
        Err(e) => Probe::Other(e.to_string()),
    }
}

/// How far a handshake got.
struct Drive {
    /// The method the proxy chose.
    method: Option<u8>,
    /// `None`: stopped after authentication (no target). `Some(Ok(bound))`: CONNECT done.
    connect: Option<Result<TargetAddr, Error>>,
    /// The failure before CONNECT (auth rejected, no acceptable method, protocol error).
    early: Option<String>,
    /// The proxy said no to the user name and password (RFC 1929 §2 STATUS != 0).
    auth_rejected: bool,
    elapsed: Duration,
}

/// Runs the engine over `s`. Without a target, stops once the proxy has answered the
/// method selection and any authentication (the request is never sent).
fn drive(
    s: &mut TcpStream,
    command: Command,
    target: Option<&TargetAddr>,
    creds: Option<&Credentials>,
) -> Drive {
    let dummy = TargetAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut hs = ClientHandshake::with_command(command, target.unwrap_or(&dummy), creds);
    let start = Instant::now();
    let mut consumed = 0usize;
    let mut out = Drive {
        method: None,
        connect: None,
        early: None,
        auth_rejected: false,
        elapsed: Duration::ZERO,
    };
    let mut buf = [0u8; 600];
    for _ in 0..64 {
        match hs.status() {
            ClientStatus::NeedWrite => {
                // Method reply is 2 bytes (RFC 1928 §3), the auth reply 2 more (RFC 1929 §2):
                // past them, what is pending is the CONNECT request.
                let pre = if hs.selected_method() == Some(USER_PASS) {
                    4
                } else {
                    2
                };
                if target.is_none() && consumed >= pre {
                    break;
                }
                let pending = hs.pending_output().to_vec();
                if let Err(e) = s.write_all(&pending) {
                    out.early = Some(format!("writing to the proxy: {e}"));
                    break;
                }
                hs.consume_output(pending.len());
            }
            ClientStatus::NeedRead => {
                let want = hs.bytes_needed().clamp(1, buf.len());
                match s.read(&mut buf[..want]) {
                    Ok(0) => {
                        out.early = Some("the proxy closed the connection".into());
                        break;
                    }
                    Ok(n) => match hs.handle_input(&buf[..n]) {
                        Ok(k) => {
                            consumed += k;
                            out.method = hs.selected_method();
                        }
                        Err(e) => {
                            out.method = hs.selected_method();
                            record(&mut out, e, target.is_some());
                            break;
                        }
                    },
                    Err(e) => {
                        out.early = Some(format!("reading from the proxy: {e}"));
                        break;
                    }
                }
            }
            ClientStatus::Done(bound) => {
                out.connect = Some(Ok(bound));
                break;
            }
            ClientStatus::Failed(e) => {
                record(&mut out, e, target.is_some());
                break;
            }
        }
    }
    out.method = out.method.or(hs.selected_method());
    out.elapsed = start.elapsed();
    out
}

fn record(out: &mut Drive, e: Error, has_target: bool) {
    out.auth_rejected = matches!(e, Error::AuthRejected(_));
    match e {
        Error::Reply(_) if has_target => out.connect = Some(Err(e)),
        other => out.early = Some(other.to_string()),
    }
}

/// Whether `host` is resolved locally even with remote DNS: it equals a direct name or
/// ends in `.NAME`.
fn is_direct_name(host: &str, names: &[String]) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    names.iter().any(|n| {
        host == *n
            || host
                .strip_suffix(n.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// The `dns:` line: the mode, and the DNS server and direct names if any.
fn dns_summary(d: &DnsSettings) -> String {
    let mut s = if d.remote {
        "remote (names go to the proxy)".to_string()
    } else {
        "local (names are resolved on this machine)".to_string()
    };
    if let Some(server) = &d.server {
        s.push_str(&format!(", dns_server {server}"));
    }
    if !d.direct_names.is_empty() {
        s.push_str(&format!(", direct {}", d.direct_names.join(" ")));
    }
    s
}

fn parse_target(s: &str, dns: &DnsSettings) -> Result<TargetAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(TargetAddr::from(a));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("--target {s}: write HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--target {s}: bad port `{port}`"))?;
    if host.is_empty() || host.contains(':') {
        return Err(format!(
            "--target {s}: write HOST:PORT ([v6]:PORT for IPv6)"
        ));
    }
    if dns.remote && !is_direct_name(host, &dns.direct_names) {
        // Remote DNS: the proxy resolves the name (ATYP 0x03, RFC 1928 §5).
        let d = DomainName::new(host.as_bytes()).map_err(|e| format!("--target {s}: {e}"))?;
        return Ok(TargetAddr {
            host: Host::Domain(d),
            port,
        });
    }
    let a = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("--target {s}: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("--target {s}: {host} has no addresses"))?;
    Ok(TargetAddr::from(a))
}

/// `laysocks check`.
pub fn main(common: &Common, a: &CheckArgs) -> ExitCode {
    match check(common, a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            say(e);
            ExitCode::from(crate::EXIT_USAGE)
        }
    }
}

fn check(common: &Common, a: &CheckArgs) -> Result<bool, String> {
    let cli = CliSettings {
        proxy: a.url.clone().or_else(|| common.proxy.clone()),
        config: common.config.clone(),
        quiet: common.quiet,
        verbose: common.verbose,
        exclude: vec![],
        connect_timeout: common.connect_timeout,
        pipeline: common.pipeline,
        dns: common.dns,
        dns_server: common.dns_server.clone(),
        direct_names: common.direct_name.clone(),
        allow_direct: common.allow_direct,
        no_guard: common.no_guard,
    };
    let st = config::resolve(&cli, &crate::cli::process_env, std::path::Path::new("/etc"))?;
    for w in &st.warnings {
        say(w);
    }
    let url: ProxyUrl = st.proxy.ok_or(
        "nothing to check: give a proxy URL (laysocks check socks5://host:port) or configure one",
    )?;
    let timeout = Duration::from_millis(u64::from(st.connect_timeout_ms));
    let target = a
        .target
        .as_deref()
        .map(|t| parse_target(t, &st.dns))
        .transpose()?;
    let creds = match (&url.username, &url.password) {
        (Some(u), Some(p)) => Some(
            Credentials::new(u.as_bytes(), p.as_bytes())
                .map_err(|e| format!("the proxy credentials cannot be used: {e}"))?,
        ),
        _ => None,
    };
    let addrs = crate::run::resolve_proxy(&url).map_err(|f| f.1)?;

    println!("proxy:   {url}");
    println!("dns:     {}", dns_summary(&st.dns));
    let fail = |hint: String| {
        println!("hint:    {hint}");
        Ok(false)
    };
    let (_, used, took) = match connect(&addrs, timeout) {
        Ok(c) => c,
        Err(e) => {
            println!("connect: failed: {}", crate::cli::io_text(&e));
            return fail(format!(
                "cannot reach {} over TCP: is the proxy running there? check the host and port",
                url.authority()
            ));
        }
    };
    println!("connect: {used} in {}", ms(took));

    let show = |p: &Probe| match p {
        Probe::Accepted => "accepted".to_string(),
        Probe::Refused => "refused".to_string(),
        Probe::Other(e) => format!("error ({e})"),
    };
    let no_auth = probe_method(&addrs, timeout, NO_AUTH);
    let user_pass = probe_method(&addrs, timeout, USER_PASS);
    println!(
        "methods: no authentication {}, user/password {}",
        show(&no_auth),
        show(&user_pass)
    );
    if let (Probe::Other(_), Probe::Other(_)) = (&no_auth, &user_pass) {
        return fail("the server does not answer like a SOCKS5 proxy: check the port".into());
    }
    let open = matches!(no_auth, Probe::Accepted);
    let pass_ok = matches!(user_pass, Probe::Accepted);
    if !open && creds.is_none() {
        if pass_ok {
            return fail(
                "the proxy requires a user name and password: put them in the URL (socks5://user:password@host:port) or set username and password_file".into(),
            );
        }
        return fail("the proxy accepts none of the methods laysocks speaks".into());
    }

    let (mut s, _, _) = match connect(&addrs, timeout) {
        Ok(c) => c,
        Err(e) => {
            println!("connect: failed the second time: {e}");
            return fail("the proxy stopped accepting connections".into());
        }
    };
    let d = drive(&mut s, Command::Connect, target.as_ref(), creds.as_ref());
    if let Some(c) = &creds {
        let user = String::from_utf8_lossy(c.username());
        match (&d.early, d.method) {
            (None, Some(NO_AUTH)) => {
                println!("auth:    user {user}: not asked (the proxy chose no authentication)")
            }
            (None, _) => println!("auth:    user {user}: accepted"),
            (Some(e), _) if d.auth_rejected => {
                println!("auth:    user {user}: rejected ({e})");
                return fail("wrong user or password: check the URL or password_file".into());
            }
            (Some(e), _) => {
                println!("auth:    failed: {e}");
                return fail("the proxy refused the handshake: check that it is a SOCKS5 proxy and which methods it allows".into());
            }
        }
    } else if let Some(e) = &d.early {
        println!("handshake: failed: {e}");
        return fail("the proxy refused the handshake".into());
    }

    let hint = match (&target, &d.connect) {
        (Some(t), Some(Ok(bound))) => {
            println!(
                "target:  {t} connected in {} (proxy side {bound})",
                ms(d.elapsed)
            );
            None
        }
        (Some(t), Some(Err(e))) => {
            println!("target:  {t}: failed: {e}");
            Some(format!(
                "the proxy could not connect to {t}: check the target, or the proxy's own network and rules"
            ))
        }
        (Some(_), None) => {
            println!("target:  no answer to the CONNECT request");
            Some("the proxy did not answer the CONNECT request".into())
        }
        (None, _) => None,
    };

    // Information only: the exit status does not depend on it.
    for line in probe_udp(&addrs, timeout, creds.as_ref(), target.as_ref()) {
        println!("udp:     {line}");
    }

    if let Some(h) = hint {
        return fail(h);
    }
    println!("result:  ok");
    Ok(true)
}

/// How long the UDP probe waits for the target's answer (at most the connect timeout).
const UDP_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// A DNS query (RFC 1035 §4.1) for the root's NS records, recursion desired: what a DNS
/// server answers, and as good as anything for an echo server.
fn udp_probe_payload(id: u16) -> [u8; 17] {
    let [hi, lo] = id.to_be_bytes();
    [
        hi, lo, 0x01, 0x00, // ID, RD
        0, 1, 0, 0, 0, 0, 0, 0, // QDCOUNT 1
        0, // QNAME: the root
        0, 2, // QTYPE NS
        0, 1, // QCLASS IN
    ]
}

/// Where to send datagrams for the relay a UDP ASSOCIATE reply named: an unspecified
/// address (0.0.0.0 or ::) means the proxy's own (`proxy`), as most servers mean it.
fn relay_addr(bound: &TargetAddr, proxy: SocketAddr) -> Result<SocketAddr, String> {
    let a = match bound.to_socket_addr() {
        Some(a) => a,
        None => bound
            .to_string()
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| format!("cannot resolve the relay {bound}"))?,
    };
    if a.port() == 0 {
        return Err(format!("the proxy named relay {bound}, which has no port"));
    }
    Ok(if a.ip().is_unspecified() {
        SocketAddr::new(proxy.ip(), a.port())
    } else {
        a
    })
}

/// What a reply to the probe's UDP ASSOCIATE request means, for the `udp:` line.
fn udp_refusal(e: &Error) -> String {
    match e {
        Error::Reply(code @ ReplyCode::CommandNotSupported) => {
            format!("not supported (proxy replied: {code})")
        }
        Error::Reply(code) => format!("not available (proxy replied: {code})"),
        other => format!("not known ({other})"),
    }
}

/// UDP ASSOCIATE on a control connection of its own (RFC 1928 §7), held open while the
/// datagram is out; with a target, one datagram through the relay. Returns the lines.
fn probe_udp(
    addrs: &[SocketAddr],
    timeout: Duration,
    creds: Option<&Credentials>,
    target: Option<&TargetAddr>,
) -> Vec<String> {
    let (mut ctl, proxy, _) = match connect(addrs, timeout) {
        Ok(c) => c,
        Err(e) => return vec![format!("not known (connect: {})", crate::cli::io_text(&e))],
    };
    // DST.ADDR:DST.PORT is where we will send from; all zeros: not known yet (§4).
    let from = TargetAddr::from(match proxy {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    });
    let d = drive(&mut ctl, Command::UdpAssociate, Some(&from), creds);
    let bound = match (d.connect, d.early) {
        (Some(Ok(b)), _) => b,
        (Some(Err(e)), _) => return vec![udp_refusal(&e)],
        (None, Some(e)) => return vec![format!("not known ({e})")],
        (None, None) => return vec!["not known (no answer to the UDP ASSOCIATE request)".into()],
    };
    let relay = match relay_addr(&bound, proxy) {
        Ok(r) => r,
        Err(e) => return vec![format!("supported, but {e}")],
    };
    let mut lines = vec![if bound.to_socket_addr() == Some(relay) {
        format!("supported (relay {relay})")
    } else {
        format!("supported (relay {relay}, named {bound})")
    }];
    if let Some(t) = target {
        lines.push(udp_round_trip(relay, t, timeout.min(UDP_ANSWER_WAIT)));
    }
    drop(ctl);
    lines
}

/// One datagram to `target` through `relay`, and the first well-formed answer from the
/// relay within `wait`.
fn udp_round_trip(relay: SocketAddr, target: &TargetAddr, wait: Duration) -> String {
    let r = (|| -> io::Result<Option<(Duration, usize, TargetAddr)>> {
        let local: IpAddr = match relay {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let sock = UdpSocket::bind(SocketAddr::new(local, 0))?;
        // Connected: the kernel drops datagrams from anyone but the relay.
        sock.connect(relay)?;
        let mut buf = vec![0u8; 65536];
        let n = encode_udp_header(target, &mut buf)
            .ok_or_else(|| io::Error::other("the target does not fit a UDP header"))?;
        let id = (std::process::id() as u16) ^ 0x5a5a;
        let payload = udp_probe_payload(id);
        buf[n..n + payload.len()].copy_from_slice(&payload);
        let start = Instant::now();
        sock.send(&buf[..n + payload.len()])?;
        loop {
            let left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            sock.set_read_timeout(Some(left))?;
            let got = match sock.recv(&mut buf) {
                Ok(k) => k,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            // FRAG != 0 or a malformed header: dropped (§7), keep waiting.
            if let Ok((h, off)) = decode_udp_header(&buf[..got]) {
                return Ok(Some((start.elapsed(), got - off, h.target)));
            }
        }
    })();
    match r {
        Ok(Some((took, len, from))) => {
            format!("{target} answered a datagram in {} ({len} bytes from {from})", ms(took))
        }
        Ok(None) => format!(
            "no answer from {target} within {} ms (expected unless it is a UDP service such as DNS or echo)",
            wait.as_millis()
        ),
        // An ICMP port unreachable that the proxy passed on (danted does).
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => format!(
            "{target} refused the datagram (port unreachable: no UDP service there)"
        ),
        Err(e) => format!("sending a datagram through {relay}: {}", crate::cli::io_text(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_line_and_targets() {
        let mut d = DnsSettings::default();
        assert_eq!(dns_summary(&d), "remote (names go to the proxy)");
        d.server = Some("203.0.113.53:53".into());
        d.direct_names = vec!["internal".into(), "corp.example".into()];
        assert_eq!(
            dns_summary(&d),
            "remote (names go to the proxy), dns_server 203.0.113.53:53, direct internal corp.example"
        );
        assert!(is_direct_name("internal", &d.direct_names));
        assert!(is_direct_name("Git.Corp.Example.", &d.direct_names));
        assert!(!is_direct_name("notcorp.example", &d.direct_names));
        assert!(!is_direct_name("example", &d.direct_names));

        // Remote DNS: a name goes to the proxy as a name, with socks5:// too.
        let t = parse_target("www.example:80", &d).unwrap();
        assert!(matches!(t.host, Host::Domain(_)));
        let t = parse_target("198.51.100.7:80", &d).unwrap();
        assert!(!matches!(t.host, Host::Domain(_)));
        // A direct name: resolved here (localhost: from /etc/hosts, no query leaves).
        d.direct_names.push("localhost".into());
        let t = parse_target("localhost:80", &d).unwrap();
        assert!(!matches!(t.host, Host::Domain(_)));
        // Local DNS: resolved here.
        d.remote = false;
        d.server = None;
        d.direct_names.clear();
        assert_eq!(
            dns_summary(&d),
            "local (names are resolved on this machine)"
        );
        let t = parse_target("localhost:80", &d).unwrap();
        assert!(!matches!(t.host, Host::Domain(_)));
    }

    /// A one-shot SOCKS5 server on loopback: no authentication, answers the request with
    /// `rep` and, on success, a relay of 0.0.0.0:PORT that first sends a fragment (to be
    /// dropped) and then returns each datagram as it came (header included).
    fn fake_udp_proxy(rep: u8) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 3];
            c.read_exact(&mut b).unwrap();
            assert_eq!(b, [5, 1, 0]);
            c.write_all(&[5, 0]).unwrap();
            let mut req = [0u8; 10];
            c.read_exact(&mut req).unwrap();
            assert_eq!(
                req,
                [5, 3, 0, 1, 0, 0, 0, 0, 0, 0],
                "UDP ASSOCIATE 0.0.0.0:0"
            );
            let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
            let [ph, pl] = relay.local_addr().unwrap().port().to_be_bytes();
            c.write_all(&[5, rep, 0, 1, 0, 0, 0, 0, ph, pl]).unwrap();
            if rep != 0 {
                return;
            }
            let mut d = [0u8; 2048];
            let (n, from) = relay.recv_from(&mut d).unwrap();
            let mut frag = d[..n].to_vec();
            frag[2] = 1;
            relay.send_to(&frag, from).unwrap();
            relay.send_to(&d[..n], from).unwrap();
            // Hold the control connection until the client closes it.
            let _ = c.read(&mut [0u8; 1]);
        });
        addr
    }

    #[test]
    fn udp_probe() {
        let t = Duration::from_secs(5);
        let target = TargetAddr::from("198.51.100.9:53".parse::<SocketAddr>().unwrap());
        let lines = probe_udp(&[fake_udp_proxy(0)], t, None, Some(&target));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("supported (relay 127.0.0.1:"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("198.51.100.9:53 answered a datagram in ")
                && lines[1].ends_with("(17 bytes from 198.51.100.9:53)"),
            "{lines:?}"
        );
        let lines = probe_udp(&[fake_udp_proxy(0)], t, None, None);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let lines = probe_udp(&[fake_udp_proxy(7)], t, None, Some(&target));
        assert_eq!(
            lines,
            ["not supported (proxy replied: command not supported)"]
        );
        let lines = probe_udp(&[fake_udp_proxy(2)], t, None, None);
        assert_eq!(
            lines,
            ["not available (proxy replied: connection not allowed by ruleset)"]
        );
        // The relay named as 0.0.0.0 is the proxy's own address.
        let proxy: SocketAddr = "198.51.100.1:1080".parse().unwrap();
        let zero = TargetAddr::from("0.0.0.0:4000".parse::<SocketAddr>().unwrap());
        assert_eq!(
            relay_addr(&zero, proxy).unwrap().to_string(),
            "198.51.100.1:4000"
        );
        let no_port = TargetAddr::from("198.51.100.2:0".parse::<SocketAddr>().unwrap());
        assert!(relay_addr(&no_port, proxy).is_err());
        assert_eq!(udp_probe_payload(0x1234)[..4], [0x12, 0x34, 1, 0]);
    }
}
