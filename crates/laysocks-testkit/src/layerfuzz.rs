//! A harness that fuzzes the real preload layer: a program under `LD_PRELOAD` connects
//! through a SOCKS5 "proxy" that replays fuzzer bytes, and every answer the program sees
//! is compared with what the protocol says it should see.
//!
//! Why a harness beside the engine's fuzz targets: the engine (`laysocks-proto`) is
//! fuzzed in-process, but the layer adds its own code between the engine and the
//! program — reading exactly `bytes_needed()` from the socket, blocking and non-blocking
//! connects, deadlines, the errno mapping of DESIGN §3.5, closing and forgetting sockets.
//! Bugs there (a hang, an fd left open, a byte of application data swallowed, the wrong
//! errno) only show with the real library in a real process on a real TCP connection.
//!
//! The pieces:
//! - a [`Rig`] (network namespaces: the client namespace only routes to the proxy host,
//!   so a connect that escapes the layer fails and is counted by the leak counters);
//! - a *replay server* in the proxy namespace that, for each connection, plays the next
//!   input as the proxy's side: it writes the input's bytes in pieces chosen by a seed,
//!   reading what the client sends in between, waits for every byte the client is due to
//!   send, then ends as the input says (FIN, RST, or holding the connection open until the
//!   client closes);
//! - two *persistent children* (`layerfuzz_child.c`) under the launcher, one configured
//!   with credentials and one without, each doing one connect per input and reporting the
//!   outcome, the bytes that arrived after "connected", and its open fd count after the
//!   close, so a leak across thousands of connects is seen.
//!
//! The expected outcome is not computed here: this crate does not depend on the engine
//! (see `Cargo.toml`), so callers derive an [`Expect`] from the protocol oracle
//! (`fuzz/layer_expect.rs`, shared by the cargo-fuzz target and `tests/layer_fuzz.rs`).
//!
//! Input format (the first two bytes configure, the rest is what the proxy sends):
//! - byte 0: bit 0 credentials offered (RFC 1929); bit 1 non-blocking connect; bits 2–3
//!   the end (0 and 3 FIN, 1 RST, 2 hold); bits 4–5 the target (0 and 3 IPv4, 1 IPv6,
//!   2 a name only the proxy resolves, so the request carries ATYP 3); bit 6 lockstep
//!   (before a piece the server waits up to 5 ms, four times at most, for the client's
//!   next bytes);
//! - byte 1: a seed; bits 0–1 choose the piece sizes (everything at once, one byte,
//!   1–4, 1–40 bytes), bit 2 short pauses between pieces (so the layer meets partial
//!   messages), all of it seeds the sizes;
//! - the rest, up to [`MAX_STREAM`] bytes: the proxy's side of the exchange.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cprog::compile_c;
use crate::netns::{spawn_in_netns, Rig, PROXY_V4, REMOTE_NAME, TARGET_V4, TARGET_V6};

/// The port the children connect to (only the proxy's request carries it).
pub const TARGET_PORT: u16 = 4321;
/// Credentials of the child that offers RFC 1929.
pub const USER: &str = "user";
pub const PASS: &str = "pass";
/// `--connect-timeout` of the children: short, so that inputs that end in a timeout
/// cost little.
pub const CONNECT_TIMEOUT_MS: u64 = 300;
/// How late a timeout (or any answer) may come on a loaded machine.
pub const TOLERANCE_MS: u64 = 700;
/// Longer inputs are cut: the handshake never reads more than 262 + 4 bytes, the rest is
/// application data, and more of it adds time, not paths.
pub const MAX_STREAM: usize = 4096;

/// How the replay server ends a connection once everything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Fin,
    Rst,
    Hold,
}

/// What the child connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `AF_INET` to [`TARGET_V4`].
    V4,
    /// `AF_INET6` to [`TARGET_V6`] (an IPv4 proxy is reached through `::ffff:`).
    V6,
    /// [`REMOTE_NAME`], resolved by the layer to a placeholder: the request names it.
    Name,
}

/// One decoded fuzz input (see the module docs for the bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub credentials: bool,
    pub nonblocking: bool,
    pub end: End,
    pub target: Target,
    pub lockstep: bool,
    pub seed: u8,
    pub stream: Vec<u8>,
}

impl Input {
    /// `None` for inputs shorter than the two configuration bytes.
    pub fn parse(data: &[u8]) -> Option<Input> {
        let (&cfg, rest) = data.split_first()?;
        let (&seed, stream) = rest.split_first()?;
        Some(Input {
            credentials: cfg & 1 != 0,
            nonblocking: cfg & 2 != 0,
            end: match (cfg >> 2) & 3 {
                1 => End::Rst,
                2 => End::Hold,
                _ => End::Fin,
            },
            target: match (cfg >> 4) & 3 {
                1 => Target::V6,
                2 => Target::Name,
                _ => Target::V4,
            },
            lockstep: cfg & 0x40 != 0,
            seed,
            stream: stream[..stream.len().min(MAX_STREAM)].to_vec(),
        })
    }
}

/// What the program must see from its `connect()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Connected, then exactly these bytes (what the proxy sent after its reply), then
    /// EOF (FIN), `ECONNRESET` (RST) or nothing more (hold).
    Connected { tail: Vec<u8> },
    /// `connect()` (or `SO_ERROR` after a non-blocking one) fails with this errno, well
    /// before the deadline.
    Fails { errno: i32 },
    /// `ETIMEDOUT`, at the connect timeout (within [`TOLERANCE_MS`]).
    TimesOut,
}

/// The whole expectation for one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// Exactly what the layer must send to the proxy (greeting, RFC 1929 request, CONNECT
    /// request — as far as the proxy's answers allow), and nothing more.
    pub sends: Vec<u8>,
    pub outcome: Expected,
}

/// What one connect looked like, from both ends.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// 0, an errno, or -1 when the child's own limit passed without an answer.
    pub rc: i32,
    /// `SO_ERROR` once the failure was reported (must be 0), else -1.
    pub again: i32,
    pub ms: f64,
    /// `getpeername` after connect: `ADDR,PORT`, `e<errno>`, or `-` (not connected).
    pub peer: String,
    /// `eof`, `e<errno>`, `idle`, `limit` or `-` (not connected).
    pub end: String,
    pub fds: i64,
    pub data: Vec<u8>,
    /// What the replay server received from the layer.
    pub received: Vec<u8>,
    /// Anything odd the server saw (an unexpected connection, a write error).
    pub note: Option<String>,
}

/// Counts kept over a harness's life.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub runs: u64,
    pub connected: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Load-induced timeouts that passed on the retry.
    pub flakes: u64,
}

struct Job {
    input: Input,
    sends: usize,
}

struct Report {
    received: Vec<u8>,
    note: Option<String>,
}

struct Kid {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: PathBuf,
    stderr_seen: usize,
    fd_base: i64,
}

/// The rig, the replay server and the two children. See the module docs.
pub struct LayerHarness {
    rig: Rig,
    jobs: Sender<Job>,
    reports: Receiver<Report>,
    /// [without credentials, with credentials]
    kids: Vec<Kid>,
    pub stats: Stats,
}

/// The child program (compiled once per source change).
pub fn child_program() -> PathBuf {
    compile_c("layerfuzz_child", include_str!("layerfuzz_child.c"))
}

impl Default for LayerHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerHarness {
    /// Builds the rig, starts the replay server and the two children, and warms them up
    /// (one clean exchange per target kind) to learn each child's fd count at rest.
    pub fn new() -> LayerHarness {
        // The server writes to sockets the layer may have reset, and we write to the
        // children's stdin: an EPIPE must be an error, not a SIGPIPE that kills the
        // fuzzer (libFuzzer's main does not ignore it as Rust's does).
        // SAFETY: signal(2) with SIG_IGN installs no handler code.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let rig = Rig::new();
        let program = child_program();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (report_tx, reports) = mpsc::channel::<Report>();
        let port = start_replay_server(&rig, job_rx, report_tx);
        let proxy = SocketAddr::from((PROXY_V4, port));
        let timeout = format!("{}", CONNECT_TIMEOUT_MS as f64 / 1000.0);
        let mut kids = Vec::new();
        for (i, url) in [
            format!("socks5://{proxy}"),
            format!("socks5://{USER}:{PASS}@{proxy}"),
        ]
        .iter()
        .enumerate()
        {
            let stderr = rig.dir().join(format!("layerfuzz-child-{i}.err"));
            let err_file = std::fs::File::create(&stderr).expect("create the child's stderr file");
            let mut child = rig
                .laysocks(url, ["--connect-timeout", timeout.as_str(), "--"])
                .arg(&program)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(err_file)
                .spawn()
                .unwrap_or_else(|e| panic!("start the layer fuzz child: {e}"));
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, lines) = mpsc::channel();
            thread::Builder::new()
                .name(format!("layerfuzz-child-{i}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(l) = line else { return };
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawn a reader thread");
            kids.push(Kid {
                child,
                stdin,
                lines,
                stderr,
                stderr_seen: 0,
                fd_base: i64::MAX,
            });
        }
        let mut h = LayerHarness {
            rig,
            jobs,
            reports,
            kids,
            stats: Stats::default(),
        };
        h.warm_up();
        h
    }

    pub fn rig(&self) -> &Rig {
        &self.rig
    }

    /// A clean exchange for every child and target, checked like any input, whose largest
    /// fd count becomes the child's baseline: the layer may open what it keeps for the
    /// process (the shared name table, say) on first use, but never more later.
    fn warm_up(&mut self) {
        for creds in [false, true] {
            let mut most = 0;
            for (t, target) in [(0u8, Target::V4), (1, Target::V6), (2, Target::Name)] {
                let mut stream = vec![5, if creds { 2 } else { 0 }];
                if creds {
                    stream.extend_from_slice(&[1, 0]);
                }
                stream.extend_from_slice(&[5, 0, 0, 1, 198, 51, 100, 1, 0x10, 0x00]);
                stream.extend_from_slice(b"warm");
                let mut data = vec![u8::from(creds) | (t << 4), 0];
                data.extend_from_slice(&stream);
                let input = Input::parse(&data).expect("two configuration bytes");
                let expect = Expect {
                    sends: plain_sends(creds, target),
                    outcome: Expected::Connected {
                        tail: b"warm".to_vec(),
                    },
                };
                self.kids[usize::from(creds)].fd_base = i64::MAX;
                let seen = self
                    .run(&input, &expect)
                    .and_then(|o| self.verdict(&input, &expect, &o).map(|()| o))
                    .unwrap_or_else(|e| panic!("layer fuzz warm-up ({target:?}): {e}"));
                most = most.max(seen.fds);
            }
            self.kids[usize::from(creds)].fd_base = most;
        }
    }

    /// Runs one input and checks everything; a failure is a description of what differs.
    /// An unexpected `ETIMEDOUT` at the deadline is retried once (a loaded machine can
    /// stall a 300 ms handshake); a second one fails.
    pub fn check(&mut self, input: &Input, expect: &Expect) -> Result<(), String> {
        let first = self.run(input, expect)?;
        match self.verdict(input, expect, &first) {
            Ok(()) => Ok(()),
            Err(e) if looks_like_load(expect, &first) => {
                let again = self.run(input, expect)?;
                self.verdict(input, expect, &again)
                    .map(|()| self.stats.flakes += 1)
                    .map_err(|e2| format!("{e}\n(and again: {e2})"))
            }
            Err(e) => Err(e),
        }
    }

    /// One connect: the job for the server, the command for the child, both reports.
    fn run(&mut self, input: &Input, expect: &Expect) -> Result<Observed, String> {
        // Whatever the last input left in the queue (nothing, normally) is stale.
        while self.reports.try_recv().is_ok() {}
        self.jobs
            .send(Job {
                input: input.clone(),
                sends: expect.sends.len(),
            })
            .map_err(|_| "the replay server is gone".to_string())?;
        let want: i64 = match (&expect.outcome, input.end) {
            (Expected::Connected { tail }, End::Hold) => tail.len() as i64,
            (_, End::Hold) => 0,
            _ => -1,
        };
        let limit = CONNECT_TIMEOUT_MS + 3000;
        let cmd = format!(
            "{} {} {TARGET_PORT} {want} {limit}\n",
            if input.nonblocking { 'n' } else { 'b' },
            match input.target {
                Target::V4 => '4',
                Target::V6 => '6',
                Target::Name => 'n',
            }
        );
        let kid = &mut self.kids[usize::from(input.credentials)];
        use std::io::Write;
        kid.stdin
            .write_all(cmd.as_bytes())
            .and_then(|()| kid.stdin.flush())
            .map_err(|e| format!("the child does not take commands: {e}{}", exit_of(kid)))?;
        // The watchdog: the child bounds itself by `limit`, so silence past that is a hang
        // of the layer (or a dead child).
        let line = kid
            .lines
            .recv_timeout(Duration::from_millis(limit + 5000))
            .map_err(|_| format!("the child gave no answer (hung or died){}", exit_of(kid)))?;
        let mut o = parse_line(&line).ok_or_else(|| format!("the child said {line:?}"))?;
        let report = self
            .reports
            .recv_timeout(Duration::from_secs(8))
            .map_err(|_| "the replay server saw no connection (or did not finish)".to_string())?;
        o.received = report.received;
        o.note = report.note;
        self.stats.runs += 1;
        Ok(o)
    }

    fn verdict(&mut self, input: &Input, expect: &Expect, o: &Observed) -> Result<(), String> {
        let kid = &mut self.kids[usize::from(input.credentials)];
        let mut bad = Vec::new();
        if let Some(n) = &o.note {
            bad.push(format!("replay server: {n}"));
        }
        // The replay server is not causal: it may send a refusal before the request it
        // refuses has arrived. The layer then sees the refusal, fails the connect and
        // disconnects the socket, which drops a request still held back by Nagle (the
        // previous message not yet acknowledged). So for a refusal the proxy must get a
        // prefix of the due bytes (at least the greeting); everything else gets all of
        // them. More than due is always wrong.
        let refusal =
            matches!(expect.outcome, Expected::Fails { errno } if errno != libc::ECONNRESET);
        let greeting = if input.credentials { 4 } else { 3 };
        let sent_ok = if refusal {
            expect.sends.starts_with(&o.received)
                && o.received.len() >= greeting.min(expect.sends.len())
        } else {
            o.received == expect.sends
        };
        if !sent_ok {
            bad.push(format!(
                "the layer sent {} but should send {}",
                hex(&o.received),
                hex(&expect.sends)
            ));
        }
        let hard_limit = (CONNECT_TIMEOUT_MS + TOLERANCE_MS) as f64;
        match &expect.outcome {
            Expected::Connected { tail } => {
                if o.rc != 0 {
                    bad.push(format!(
                        "connect failed with {} ({:.0} ms)",
                        errno_name(o.rc),
                        o.ms
                    ));
                } else {
                    // DESIGN §3.6: the target, in the socket's family.
                    let peer_ok = match input.target {
                        Target::V4 => o.peer == format!("{TARGET_V4},{TARGET_PORT}"),
                        Target::V6 => o.peer == format!("{TARGET_V6},{TARGET_PORT}"),
                        Target::Name => {
                            o.peer.ends_with(&format!(",{TARGET_PORT}"))
                                && !o.peer.starts_with(&format!("{PROXY_V4},"))
                        }
                    };
                    if !peer_ok {
                        bad.push(format!("getpeername gave {}", o.peer));
                    }
                    if &o.data != tail {
                        bad.push(format!(
                            "after connect the program read {} instead of {}",
                            hex(&o.data),
                            hex(tail)
                        ));
                    }
                    let end = match input.end {
                        End::Fin => "eof".to_string(),
                        End::Rst => format!("e{}", libc::ECONNRESET),
                        End::Hold => "idle".to_string(),
                    };
                    if o.end != end {
                        bad.push(format!("the data ended with {} instead of {end}", o.end));
                    }
                }
                self.stats.connected += 1;
            }
            Expected::Fails { errno } => {
                if o.rc != *errno {
                    bad.push(format!(
                        "connect gave {} instead of {} ({:.0} ms)",
                        errno_name(o.rc),
                        errno_name(*errno),
                        o.ms
                    ));
                } else if o.ms > hard_limit {
                    bad.push(format!("the failure took {:.0} ms", o.ms));
                }
                self.stats.failed += 1;
            }
            Expected::TimesOut => {
                if o.rc != libc::ETIMEDOUT {
                    bad.push(format!(
                        "connect gave {} instead of ETIMEDOUT ({:.0} ms)",
                        errno_name(o.rc),
                        o.ms
                    ));
                } else if o.ms + 5.0 < CONNECT_TIMEOUT_MS as f64 || o.ms > hard_limit {
                    bad.push(format!(
                        "ETIMEDOUT after {:.0} ms, not {CONNECT_TIMEOUT_MS} ms",
                        o.ms
                    ));
                }
                self.stats.timed_out += 1;
            }
        }
        if o.rc > 0 && o.again != 0 {
            bad.push(format!(
                "SO_ERROR read again after the failure gave {}, not 0",
                errno_name(o.again)
            ));
        }
        if o.fds > kid.fd_base {
            bad.push(format!(
                "the child has {} fds open after the close, {} at rest: an fd leaked",
                o.fds, kid.fd_base
            ));
        }
        if let Ok(Some(st)) = kid.child.try_wait() {
            bad.push(format!("the child exited: {st}"));
        }
        let err = std::fs::read(&kid.stderr).unwrap_or_default();
        let new = String::from_utf8_lossy(&err[kid.stderr_seen.min(err.len())..]).into_owned();
        kid.stderr_seen = err.len();
        if new.contains("panick") || new.contains("internal error") || new.contains("disabled") {
            bad.push(format!("the layer reported trouble: {}", new.trim()));
        }
        // DESIGN §3.5: a failure is one line on stderr (a repeat within a second may be
        // left out), a success none (not verbose); never the credentials.
        let lines: Vec<&str> = new.lines().collect();
        let most = usize::from(o.rc != 0);
        if lines.len() > most || lines.iter().any(|l| !l.starts_with("laysocks: ")) {
            bad.push(format!(
                "stderr got {} line(s), at most {most} expected: {new:?}",
                lines.len()
            ));
        }
        if new.contains(&format!("{USER}:{PASS}")) {
            bad.push(format!("the credentials reached stderr: {new:?}"));
        }
        if let Err(e) = self.rig.check_no_leak() {
            bad.push(e);
            self.rig.reset_leak_baseline();
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{input:?}\nexpected {:?}\nobserved rc={} ms={:.1} peer={} end={} fds={} data={}\n- {}",
                expect.outcome,
                errno_name(o.rc),
                o.ms,
                o.peer,
                o.end,
                o.fds,
                hex(&o.data),
                bad.join("\n- ")
            ))
        }
    }
}

impl Drop for LayerHarness {
    fn drop(&mut self) {
        for kid in &mut self.kids {
            let _ = kid.child.kill();
            let _ = kid.child.wait();
        }
    }
}

/// Whether a failed check is a timeout the machine's load may explain.
fn looks_like_load(expect: &Expect, o: &Observed) -> bool {
    expect.outcome != Expected::TimesOut
        && (o.rc == libc::ETIMEDOUT || o.rc == -1)
        && o.ms + 5.0 >= CONNECT_TIMEOUT_MS as f64
}

fn exit_of(kid: &mut Kid) -> String {
    match kid.child.try_wait() {
        Ok(Some(st)) => format!(" (exited: {st})"),
        _ => String::new(),
    }
}

/// What a child sends for a clean CONNECT without help from the engine (warm-up only):
/// RFC 1928 §3 greeting, RFC 1929 §2 request, RFC 1928 §4 request.
fn plain_sends(creds: bool, target: Target) -> Vec<u8> {
    let mut v = if creds {
        vec![5, 2, 0, 2]
    } else {
        vec![5, 1, 0]
    };
    if creds {
        v.push(1);
        v.push(USER.len() as u8);
        v.extend_from_slice(USER.as_bytes());
        v.push(PASS.len() as u8);
        v.extend_from_slice(PASS.as_bytes());
    }
    v.extend_from_slice(&[5, 1, 0]);
    match target {
        Target::V4 => {
            v.push(1);
            v.extend_from_slice(&TARGET_V4.octets());
        }
        Target::V6 => {
            v.push(4);
            v.extend_from_slice(&TARGET_V6.octets());
        }
        Target::Name => {
            v.push(3);
            v.push(REMOTE_NAME.len() as u8);
            v.extend_from_slice(REMOTE_NAME.as_bytes());
        }
    }
    v.extend_from_slice(&TARGET_PORT.to_be_bytes());
    v
}

fn parse_line(line: &str) -> Option<Observed> {
    let mut o = Observed::default();
    for field in line.split(' ') {
        let (k, v) = field.split_once('=')?;
        match k {
            "rc" => o.rc = v.parse().ok()?,
            "again" => o.again = v.parse().ok()?,
            "ms" => o.ms = v.parse().ok()?,
            "end" => o.end = v.to_string(),
            "peer" => o.peer = v.to_string(),
            "fds" => o.fds = v.parse().ok()?,
            "data" => {
                o.data = (0..v.len() / 2)
                    .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16))
                    .collect::<Result<_, _>>()
                    .ok()?
            }
            _ => return None,
        }
    }
    Some(o)
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "nothing".into();
    }
    let mut s: String = b.iter().take(64).map(|x| format!("{x:02x}")).collect();
    if b.len() > 64 {
        s.push_str(&format!("… ({} bytes)", b.len()));
    }
    s
}

/// A readable name for the errnos this harness meets.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        0 => "0",
        -1 => "no answer (hang)",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EACCES => "EACCES",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTO => "EPROTO",
        libc::EPIPE => "EPIPE",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EINPROGRESS => "EINPROGRESS",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// SplitMix64, as the engine's checks use (a copy: this crate stays free of the engine).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Starts the replay server on a fresh port of the proxy host and returns the port.
fn start_replay_server(rig: &Rig, jobs: Receiver<Job>, reports: Sender<Report>) -> u16 {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let s2 = stop.clone();
    let h = spawn_in_netns(rig.proxy_ns(), "layerfuzz-server", move || {
        let l = TcpListener::bind((PROXY_V4, 0)).expect("bind the replay server");
        tx.send(l.local_addr().unwrap().port()).unwrap();
        // One connection at a time, on this thread (the layer makes one per input): no
        // thread per input, and a second connection for one input is seen, not served.
        // Not `servers::accept_loop` either: its 10 ms nap between polls would cost every
        // input 5 ms on average; this one waits in poll(2) and answers at once.
        while !s2.load(Ordering::SeqCst) {
            if !readable(&l, 100) {
                continue;
            }
            let Ok((s, _)) = l.accept() else { continue };
            let mut report = match jobs.recv_timeout(Duration::from_secs(2)) {
                Ok(job) => play(s, &job, &s2),
                Err(_) => Report {
                    received: Vec::new(),
                    note: Some("a connection with no input waiting for it".into()),
                },
            };
            if readable(&l, 0) {
                if let Ok((extra, _)) = l.accept() {
                    drop(extra);
                    report.note = Some("the layer opened a second connection for one input".into());
                }
            }
            if reports.send(report).is_err() {
                return;
            }
        }
    });
    let port = rx
        .recv_timeout(crate::util::WAIT)
        .expect("the replay server did not start");
    rig.keep_thread(stop, h);
    port
}

/// Whether the listener has a connection waiting (within `ms`).
fn readable(l: &TcpListener, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one live pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Plays one input as the proxy's side of one connection (see the module docs).
fn play(mut s: TcpStream, job: &Job, stop: &AtomicBool) -> Report {
    let _ = s.set_nodelay(true);
    let mut c = Conn {
        rx: Vec::new(),
        open: true,
        note: None,
    };
    let input = &job.input;
    let stream = &input.stream;
    let mut rng = Mix(u64::from(input.seed) << 8 | 0x5E);
    let (mut at, mut pauses, mut waits) = (0, 0, 0);
    while at < stream.len() && !stop.load(Ordering::SeqCst) {
        c.drain(&mut s);
        if input.lockstep && c.rx.len() < job.sends && waits < 4 {
            waits += 1;
            let want = c.rx.len() + 1;
            c.pull(&mut s, want, Instant::now() + Duration::from_millis(5));
        }
        if input.seed & 4 != 0 && pauses < 8 && rng.next().is_multiple_of(3) {
            pauses += 1;
            thread::sleep(Duration::from_micros(300 + rng.next() % 1200));
        }
        let left = stream.len() - at;
        let n = match input.seed & 3 {
            0 => left,
            1 => 1,
            2 => 1 + (rng.next() % 4) as usize,
            _ => 1 + (rng.next() % 40) as usize,
        }
        .min(left);
        if let Err(e) = send_all(&s, &stream[at..at + n]) {
            // The layer gave up (and closed) before the proxy finished: fine when it had
            // already failed, and the verdict checks what it told the program.
            let _ = e;
            break;
        }
        at += n;
    }
    // Every byte the layer is due to send arrives before the end, so that FIN/RST never
    // races the layer's own writes.
    c.pull(&mut s, job.sends, Instant::now() + Duration::from_secs(1));
    let until = Instant::now() + Duration::from_secs(5);
    match input.end {
        End::Fin => {
            let _ = s.shutdown(std::net::Shutdown::Write);
            c.pull(&mut s, usize::MAX, until);
        }
        End::Hold => c.pull(&mut s, usize::MAX, until),
        End::Rst => {
            // SO_LINGER {1, 0} drops what is still queued: wait until the client has it.
            wait_sent(&s, Instant::now() + Duration::from_secs(1));
            c.drain(&mut s);
            reset(s);
        }
    }
    Report {
        received: c.rx,
        note: c.note,
    }
}

struct Conn {
    rx: Vec<u8>,
    open: bool,
    note: Option<String>,
}

impl Conn {
    /// Takes what the client has sent so far without waiting.
    fn drain(&mut self, s: &mut TcpStream) {
        if !self.open {
            return;
        }
        let _ = s.set_nonblocking(true);
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    self.open = false;
                    break;
                }
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.open = false;
                    break;
                }
            }
        }
        let _ = s.set_nonblocking(false);
    }

    /// Reads until `want` bytes in all, EOF, an error or `until`.
    fn pull(&mut self, s: &mut TcpStream, want: usize, until: Instant) {
        let mut buf = [0u8; 4096];
        while self.open && self.rx.len() < want {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if want == usize::MAX {
                    self.note = Some("the client did not close within 5 s".into());
                }
                return;
            }
            let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match s.read(&mut buf) {
                Ok(0) => self.open = false,
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.open = false,
            }
        }
    }
}

/// `send(2)` with `MSG_NOSIGNAL` until all is written.
fn send_all(s: &TcpStream, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        // SAFETY: send(2) on a socket we own, reading `b.len()` bytes from a live slice.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        b = &b[n as usize..];
    }
    Ok(())
}

/// Waits until the kernel has nothing unacknowledged left in the send queue.
fn wait_sent(s: &TcpStream, until: Instant) {
    while Instant::now() < until {
        let mut queued: libc::c_int = 0;
        // SAFETY: ioctl(TIOCOUTQ) on a socket we own writes one int to `queued`.
        let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        if rc != 0 || queued == 0 {
            return;
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// Closes with SO_LINGER {1, 0}: the peer gets RST instead of FIN.
fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt(2) on a socket we own, with a pointer to a live `linger` and its
    // exact size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_decode() {
        assert_eq!(Input::parse(&[1]), None);
        let i = Input::parse(&[0x7f, 9, 5, 0]).unwrap();
        assert!(i.credentials && i.nonblocking && i.lockstep);
        assert_eq!((i.end, i.target, i.seed), (End::Fin, Target::V4, 9));
        assert_eq!(i.stream, vec![5, 0]);
        let i = Input::parse(&[0x24, 0]).unwrap();
        assert_eq!((i.end, i.target), (End::Rst, Target::Name));
        let i = Input::parse(&[0x18, 0]).unwrap();
        assert_eq!((i.end, i.target), (End::Hold, Target::V6));
    }

    #[test]
    fn child_lines_parse() {
        let o =
            parse_line("rc=0 again=-1 ms=1.5 peer=203.0.113.2,80 end=eof fds=4 data=00ff").unwrap();
        assert_eq!((o.rc, o.end.as_str(), o.fds), (0, "eof", 4));
        assert_eq!(o.data, vec![0, 0xff]);
        assert!(parse_line("bad-command").is_none());
    }
}
