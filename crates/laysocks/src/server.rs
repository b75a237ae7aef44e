//! `laysocks serve` and the built-in default proxy: a small SOCKS5 server (RFC 1928) on
//! the same engine as the layer (`laysocks_proto::ServerHandshake`).
//!
//! Plain threads and `std::net`: one thread per client for the handshake and one per
//! direction for the relay. The server exists so that `laysocks -- prog` works with no
//! proxy anywhere and so that tests have a server we control; a few hundred connections
//! are its scale, and threads keep every step easy to follow.
//!
//! Rules it keeps:
//! - CONNECT only; BIND and UDP ASSOCIATE are answered with REP 0x07 (RFC 1928 §6).
//! - Domain names are resolved here (ATYP 0x03, RFC 1928 §5); every address is tried.
//! - A connect failure is answered with the REP code that names it (see [`rep_for`]).
//! - The whole handshake has a deadline (10 s), so an idle client cannot hold a thread.
//! - Bytes the client sent after its request belong to the target: the engine stops
//!   consuming at the end of the request, and the rest is forwarded first.
//! - End of stream in one direction is passed on as a half-close (`shutdown(Write)`); an
//!   error in either direction tears down both.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use laysocks_proto::{
    Command, Credentials, Host, ReplyCode, Request, ServerAuth, ServerHandshake, ServerStatus,
    TargetAddr,
};

use crate::cli::{Common, ServeArgs};
use crate::say;

/// Deadline for a client's whole handshake (greeting, auth, request).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// More clients than this at once are turned away (each costs up to three threads).
const MAX_CLIENTS: usize = 1024;

/// What the server writes to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMode {
    /// Nothing per connection.
    Quiet,
    /// One line when a CONNECT is answered (the built-in proxy, so lines appear while the
    /// program runs rather than after it).
    Connect,
    /// One line per connection when it ends: client, target, result, bytes, time.
    Verbose,
}

impl LogMode {
    pub fn as_arg(self) -> &'static str {
        match self {
            LogMode::Quiet => "quiet",
            LogMode::Connect => "connect",
            LogMode::Verbose => "verbose",
        }
    }
    pub fn from_arg(s: &str) -> LogMode {
        match s {
            "quiet" => LogMode::Quiet,
            "verbose" => LogMode::Verbose,
            _ => LogMode::Connect,
        }
    }
}

/// A user name and password (RFC 1929), as bytes.
pub type UserPass = (Vec<u8>, Vec<u8>);

/// How a server behaves.
pub struct Config {
    /// Required credentials (RFC 1929), or `None` for no authentication.
    pub user: Option<UserPass>,
    /// Deadline for connecting to a target.
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub log: LogMode,
    /// Prefix of log lines.
    pub name: &'static str,
}

/// Accepts clients forever.
pub fn serve(listener: TcpListener, cfg: Arc<Config>) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if e.kind() != io::ErrorKind::Interrupted {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        if live.load(Ordering::Relaxed) >= MAX_CLIENTS {
            if cfg.log != LogMode::Quiet {
                say_as(
                    &cfg,
                    format!("too many clients (>{MAX_CLIENTS}); closing a new connection"),
                );
            }
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let cfg2 = Arc::clone(&cfg);
        let live2 = Arc::clone(&live);
        let spawned = std::thread::Builder::new()
            .name("socks-client".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                handle_client(stream, &cfg2);
                live2.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn say_as(cfg: &Config, msg: impl std::fmt::Display) {
    eprintln!("{}{msg}", cfg.name);
}

/// Starts the built-in proxy on 127.0.0.1 (ephemeral port) in a background thread.
pub fn start_builtin(log: LogMode, connect_timeout: Duration) -> io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let port = listener.local_addr()?.port();
    let cfg = Arc::new(Config {
        user: None,
        connect_timeout,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        log,
        name: "laysocks: built-in server: ",
    });
    std::thread::Builder::new()
        .name("socks-accept".into())
        .spawn(move || serve(listener, cfg))?;
    Ok(port)
}

/// Why a client's session ended before the relay.
enum Outcome {
    /// The handshake failed or the client left; the text says why.
    Handshake(String),
    /// The request was answered with a failure code.
    Refused(TargetAddr, ReplyCode, String),
    /// Relayed; bytes up (client → target) and down.
    Relayed(TargetAddr, u64, u64),
}

fn handle_client(client: TcpStream, cfg: &Config) {
    let start = Instant::now();
    let peer = client
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = client.set_nodelay(true);
    let outcome = session(client, cfg);
    let line = match &outcome {
        Outcome::Handshake(why) => {
            if cfg.log != LogMode::Verbose {
                return;
            }
            format!("{peer}: handshake failed: {why}")
        }
        Outcome::Refused(t, code, why) => {
            if cfg.log != LogMode::Verbose {
                return;
            }
            format!("{peer} -> {t}: {why} (REP 0x{:02x})", code.as_u8())
        }
        Outcome::Relayed(t, up, down) => {
            if cfg.log != LogMode::Verbose {
                return;
            }
            format!(
                "{peer} -> {t}: ok, {up} B up, {down} B down, {:.2} s",
                start.elapsed().as_secs_f64()
            )
        }
    };
    say_as(cfg, line);
}

/// Reads from `s` with whatever is left of the deadline.
fn read_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "handshake deadline passed",
        ));
    }
    s.set_read_timeout(Some(left))?;
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake deadline passed",
                ))
            }
            r => return r,
        }
    }
}

fn flush(hs: &mut ServerHandshake, s: &mut TcpStream, deadline: Instant) -> io::Result<()> {
    while !hs.pending_output().is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake deadline passed",
            ));
        }
        s.set_write_timeout(Some(left))?;
        match s.write(hs.pending_output()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => hs.consume_output(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The bytes of the client's that the engine has not consumed yet.
struct Inbox {
    buf: [u8; 1024],
    len: usize,
}

impl Inbox {
    fn take(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

/// Runs the handshake up to the client's request. Returns the request and any bytes
/// the client sent after it.
fn handshake(
    hs: &mut ServerHandshake,
    client: &mut TcpStream,
    cfg: &Config,
    deadline: Instant,
    inbox: &mut Inbox,
) -> Result<Request, String> {
    // Bounded: every turn either consumes input, writes output, reads (which fails at the
    // deadline) or returns; the count guard is a second fence.
    for _ in 0..10_000 {
        match hs.status() {
            ServerStatus::NeedWrite => flush(hs, client, deadline).map_err(|e| e.to_string())?,
            ServerStatus::NeedRead => {
                if inbox.len > 0 {
                    match hs.handle_input(&inbox.buf[..inbox.len]) {
                        Ok(n) => {
                            inbox.take(n);
                            if n > 0 {
                                continue;
                            }
                        }
                        Err(e) => {
                            // The engine may have queued the proper error reply (0x07/0x08).
                            let _ = flush(hs, client, deadline);
                            return Err(server_side(&e));
                        }
                    }
                }
                if inbox.len == inbox.buf.len() {
                    return Err("client sent an oversized handshake message".into());
                }
                let len = inbox.len;
                match read_by(client, &mut inbox.buf[len..], deadline) {
                    Ok(0) => return Err("client closed the connection".into()),
                    Ok(n) => inbox.len += n,
                    Err(e) => return Err(crate::cli::io_text(&e)),
                }
            }
            ServerStatus::CheckCredentials => {
                let ok = match (&cfg.user, hs.credentials()) {
                    (Some((u, p)), Some(c)) => {
                        c.username() == u.as_slice() && c.password() == p.as_slice()
                    }
                    _ => false,
                };
                hs.accept_credentials(ok);
                if !ok {
                    let _ = flush(hs, client, deadline);
                    return Err("wrong user name or password".into());
                }
            }
            ServerStatus::Request(r) => return Ok(r),
            ServerStatus::Done => return Err("handshake ended without a request".into()),
            ServerStatus::Failed(e) => {
                let _ = flush(hs, client, deadline);
                return Err(server_side(&e));
            }
        }
    }
    Err("handshake did not progress".into())
}

/// An engine error as the server sees it (its `Display` speaks from the client's side).
fn server_side(e: &laysocks_proto::Error) -> String {
    match e {
        laysocks_proto::Error::NoAcceptableMethods => {
            "the client offered no method this server accepts (RFC 1928 §3)".into()
        }
        laysocks_proto::Error::AuthRejected(_) => "wrong user name or password".into(),
        other => other.to_string(),
    }
}

fn session(mut client: TcpStream, cfg: &Config) -> Outcome {
    let deadline = Instant::now() + cfg.handshake_timeout;
    let auth = if cfg.user.is_some() {
        ServerAuth::UserPass
    } else {
        ServerAuth::NoAuth
    };
    let mut hs = ServerHandshake::new(auth);
    let mut inbox = Inbox {
        buf: [0; 1024],
        len: 0,
    };
    let req = match handshake(&mut hs, &mut client, cfg, deadline, &mut inbox) {
        Ok(r) => r,
        Err(why) => return Outcome::Handshake(why),
    };
    let target = req.target;
    let unspecified = TargetAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
    if req.command != Command::Connect {
        // RFC 1928 §6: X'07' Command not supported.
        hs.reply(ReplyCode::CommandNotSupported, &unspecified);
        let _ = flush(&mut hs, &mut client, deadline);
        return Outcome::Refused(
            target,
            ReplyCode::CommandNotSupported,
            format!("{:?} is not supported", req.command),
        );
    }
    let upstream = match connect_target(&target, cfg.connect_timeout) {
        Ok(s) => s,
        Err((code, why)) => {
            if cfg.log == LogMode::Connect {
                say_as(cfg, format!("{target}: {why}"));
            }
            hs.reply(code, &unspecified);
            let _ = flush(&mut hs, &mut client, deadline);
            return Outcome::Refused(target, code, why);
        }
    };
    let bound = upstream
        .local_addr()
        .map(TargetAddr::from)
        .unwrap_or(unspecified);
    // RFC 1928 §6: BND.ADDR/BND.PORT are the address the server connected from.
    hs.reply(ReplyCode::Succeeded, &bound);
    if let Err(e) = flush(&mut hs, &mut client, deadline) {
        return Outcome::Handshake(format!("writing the reply: {e}"));
    }
    if cfg.log == LogMode::Connect {
        say_as(cfg, format!("{target} connected"));
    }
    let _ = client.set_read_timeout(None);
    let _ = client.set_write_timeout(None);
    let _ = upstream.set_nodelay(true);
    let (up, down) = relay(client, upstream, &inbox.buf[..inbox.len]);
    Outcome::Relayed(target, up, down)
}

/// The REP code for a failed connect (RFC 1928 §6), so the client's program sees what
/// a direct connect would have shown.
pub fn rep_for(e: &io::Error) -> ReplyCode {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ReplyCode::ConnectionRefused,
        Some(libc::ENETUNREACH) => ReplyCode::NetworkUnreachable,
        Some(libc::EHOSTUNREACH) => ReplyCode::HostUnreachable,
        Some(libc::ETIMEDOUT) => ReplyCode::TtlExpired,
        _ if e.kind() == io::ErrorKind::TimedOut => ReplyCode::TtlExpired,
        _ => ReplyCode::GeneralFailure,
    }
}

fn connect_target(t: &TargetAddr, timeout: Duration) -> Result<TcpStream, (ReplyCode, String)> {
    let addrs: Vec<SocketAddr> = match t.host {
        Host::V4(_) | Host::V6(_) => t.to_socket_addr().into_iter().collect(),
        Host::Domain(d) => {
            let name = std::str::from_utf8(d.as_bytes()).map_err(|_| {
                (
                    ReplyCode::HostUnreachable,
                    "the name is not valid UTF-8".to_string(),
                )
            })?;
            // A name that does not resolve is a host we cannot reach: REP 0x04, as other
            // servers (Dante, microsocks) answer it.
            match (name, t.port).to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => {
                    return Err((
                        ReplyCode::HostUnreachable,
                        format!("cannot resolve {name}: {e}"),
                    ))
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err((
            ReplyCode::HostUnreachable,
            "the name has no addresses".into(),
        ));
    }
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one address was tried");
    Err((rep_for(&e), crate::cli::io_text(&e)))
}

/// Copies `from` to `to` until end of stream; returns the bytes copied and whether it
/// ended cleanly (EOF) rather than with an error.
fn pump(from: &mut TcpStream, to: &mut TcpStream) -> (u64, bool) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return (total, true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return (total, false),
        };
        if to.write_all(&buf[..n]).is_err() {
            return (total, false);
        }
        total += n as u64;
    }
}

/// Relays both directions; returns (bytes up, bytes down).
fn relay(mut client: TcpStream, mut upstream: TcpStream, early: &[u8]) -> (u64, u64) {
    let mut up_early = 0u64;
    if !early.is_empty() {
        if upstream.write_all(early).is_err() {
            let _ = client.shutdown(Shutdown::Both);
            return (0, 0);
        }
        up_early = early.len() as u64;
    }
    let (mut c2, mut u2) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return (up_early, 0),
    };
    let up = std::thread::Builder::new()
        .name("socks-up".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let (n, clean) = pump(&mut c2, &mut u2);
            if clean {
                // Half-close: the target sees EOF and can still answer.
                let _ = u2.shutdown(Shutdown::Write);
            } else {
                let _ = u2.shutdown(Shutdown::Both);
                let _ = c2.shutdown(Shutdown::Both);
            }
            n
        });
    let (down, clean) = pump(&mut upstream, &mut client);
    if clean {
        let _ = client.shutdown(Shutdown::Write);
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    }
    let up = match up {
        Ok(h) => h.join().unwrap_or(0),
        Err(_) => {
            // No thread for the other direction: nothing more can be relayed.
            let _ = client.shutdown(Shutdown::Both);
            0
        }
    };
    (up_early + up, down)
}

/// Reads `USER:PASSWORD` from `--user`, `--user-file` or `$LAYSOCKS_SERVE_USER`.
fn serve_user(a: &ServeArgs) -> Result<Option<UserPass>, String> {
    let (raw, from) = if let Some(u) = &a.user {
        (u.clone(), "--user".to_string())
    } else if let Some(f) = &a.user_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read --user-file {}: {e}", f.display()))?;
        (
            text.lines().next().unwrap_or("").to_string(),
            format!("--user-file {}", f.display()),
        )
    } else if let Some(v) = std::env::var_os("LAYSOCKS_SERVE_USER").filter(|v| !v.is_empty()) {
        (
            v.into_string()
                .map_err(|_| "LAYSOCKS_SERVE_USER is not valid UTF-8".to_string())?,
            "LAYSOCKS_SERVE_USER".to_string(),
        )
    } else {
        return Ok(None);
    };
    let (u, p) = raw
        .split_once(':')
        .ok_or_else(|| format!("{from}: write USER:PASSWORD"))?;
    // RFC 1929 §2: ULEN and PLEN are 1 to 255.
    if Credentials::new(u.as_bytes(), p.as_bytes()).is_err() {
        return Err(format!(
            "{from}: user name and password must each be 1 to 255 bytes (RFC 1929)"
        ));
    }
    Ok(Some((u.as_bytes().to_vec(), p.as_bytes().to_vec())))
}

fn listen_addr(s: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    s.to_socket_addrs()
        .map(|a| a.collect())
        .map_err(|e| format!("--listen {s}: {e} (write ADDR:PORT, e.g. 127.0.0.1:1080)"))
}

/// `laysocks serve`.
pub fn main(common: &Common, a: &ServeArgs) -> ExitCode {
    let usage = |m: String| {
        say(m);
        ExitCode::from(crate::EXIT_USAGE)
    };
    let user = match serve_user(a) {
        Ok(u) => u,
        Err(e) => return usage(e),
    };
    let connect_timeout = match common.connect_timeout.map(crate::config::timeout_ms) {
        None => Duration::from_secs(10),
        Some(Ok(ms)) => Duration::from_millis(u64::from(ms)),
        Some(Err(e)) => return usage(format!("--connect-timeout: {e}")),
    };
    let addrs = match listen_addr(&a.listen) {
        Ok(a) => a,
        Err(e) => return usage(e),
    };
    let listener = match TcpListener::bind(&addrs[..]) {
        Ok(l) => l,
        Err(e) => {
            say(format!("serve: cannot listen on {}: {e}", a.listen));
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| a.listen.clone());
    if !common.quiet {
        let auth = if user.is_some() {
            "user/password required"
        } else {
            "no authentication"
        };
        eprintln!("laysocks serve: listening on {local} ({auth})");
        if user.is_none() && !listener.local_addr().is_ok_and(|l| l.ip().is_loopback()) {
            eprintln!("laysocks serve: warning: no authentication on a non-loopback address: anyone who can reach it can use it; add --user-file");
        }
    }
    let log = if common.quiet {
        LogMode::Quiet
    } else if common.verbose {
        LogMode::Verbose
    } else {
        LogMode::Quiet
    };
    serve(
        listener,
        Arc::new(Config {
            user,
            connect_timeout,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            log,
            name: "laysocks serve: ",
        }),
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rep_codes_follow_errno() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            rep_for(&e(libc::ECONNREFUSED)),
            ReplyCode::ConnectionRefused
        );
        assert_eq!(
            rep_for(&e(libc::ENETUNREACH)),
            ReplyCode::NetworkUnreachable
        );
        assert_eq!(rep_for(&e(libc::EHOSTUNREACH)), ReplyCode::HostUnreachable);
        assert_eq!(rep_for(&e(libc::ETIMEDOUT)), ReplyCode::TtlExpired);
        assert_eq!(
            rep_for(&io::Error::new(io::ErrorKind::TimedOut, "x")),
            ReplyCode::TtlExpired
        );
        assert_eq!(rep_for(&e(libc::EACCES)), ReplyCode::GeneralFailure);
    }

    #[test]
    fn refused_port_maps_to_rep_5() {
        // A port nobody listens on: bind, learn the port, close.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let t = TargetAddr::from(SocketAddr::from(([127, 0, 0, 1], port)));
        let (code, _) = connect_target(&t, Duration::from_secs(2)).unwrap_err();
        assert_eq!(code, ReplyCode::ConnectionRefused);
    }
}
