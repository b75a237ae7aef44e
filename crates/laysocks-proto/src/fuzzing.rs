//! Invariant checks shared by the cargo-fuzz targets (`fuzz/`), the corpus replay test
//! (`tests/fuzz_corpus.rs`) and the unit tests. Not part of the API.
//!
//! Each check drives an engine over one input in several chunkings (all at once, one byte
//! at a time, pseudo-random pieces, exactly `bytes_needed()` at a time) and compares every
//! run with an oracle: a second, deliberately plain parser of the same RFC rules written
//! without the engine's buffers and states. Any disagreement, any over-read, and any panic
//! is a bug. The checks panic on failure, which is what the fuzzer looks for.

use crate::addr::{DomainName, Host, TargetAddr};
use crate::auth::Credentials;
use crate::client::{ClientHandshake, ClientStatus};
use crate::error::Error;
use crate::reply::ReplyCode;
use crate::server::{Request, ServerAuth, ServerHandshake, ServerStatus};
use crate::udp::{decode_udp_header, encode_udp_header};
use crate::wire::Command;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A small deterministic PRNG (SplitMix64): tests and fuzz targets need reproducible
/// "random" splits without a dependency.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// How the simulated network hands bytes to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunking {
    /// Everything that is left, in one call.
    All,
    /// One byte per call.
    Bytewise,
    /// Pseudo-random pieces of 1..=N bytes.
    Random(u64),
    /// Exactly `min(bytes_needed(), available)` per call, as the preload driver reads.
    Exact,
}

const CHUNKINGS: [Chunking; 5] = [
    Chunking::All,
    Chunking::Bytewise,
    Chunking::Random(1),
    Chunking::Random(0xDEAD_BEEF),
    Chunking::Exact,
];

/// The configuration byte of a client input: target type, credentials, command.
pub fn client_config(cfg: u8) -> (Command, TargetAddr, Option<Credentials>) {
    let target = match cfg & 3 {
        0 => TargetAddr {
            host: Host::V4(Ipv4Addr::new(198, 51, 100, 7)),
            port: 80,
        },
        1 => TargetAddr {
            host: Host::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            port: 443,
        },
        2 => TargetAddr {
            host: Host::Domain(DomainName::new(b"example.com").expect("valid")),
            port: 8080,
        },
        _ => TargetAddr {
            host: Host::Domain(DomainName::new(&[b'a'; 255]).expect("valid")),
            port: 65535,
        },
    };
    let auth = (cfg & 4 != 0).then(|| Credentials::new(b"user", b"pass").expect("valid"));
    let command = match (cfg >> 3) & 3 {
        1 => Command::Bind,
        2 => Command::UdpAssociate,
        _ => Command::Connect,
    };
    (command, target, auth)
}

/// Where the oracle says a byte stream leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The stream ends inside the handshake: everything was consumed, more is needed.
    Incomplete,
    /// The handshake completed after `consumed` bytes.
    Done { value: T, consumed: usize },
    /// The handshake failed.
    Failed(Error),
}

/// RFC 1928 §5 address after ATYP, read plainly: Ok(None) = stream too short.
fn oracle_addr(s: &[u8], at: usize) -> Result<Option<(TargetAddr, usize)>, Error> {
    // `at` points at ATYP.
    let atyp = s[at];
    let addr_len = match atyp {
        1 => 4,
        4 => 16,
        3 => {
            if s[at + 1] == 0 {
                return Err(Error::EmptyDomain);
            }
            1 + s[at + 1] as usize
        }
        other => return Err(Error::BadAddressType(other)),
    };
    let end = at + 1 + addr_len + 2;
    if s.len() < end {
        return Ok(None);
    }
    let a = &s[at + 1..at + 1 + addr_len];
    let host = match atyp {
        1 => Host::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        4 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(a);
            Host::V6(Ipv6Addr::from(o))
        }
        _ => Host::Domain(DomainName::new(&a[1..]).expect("length checked")),
    };
    let port = u16::from(s[end - 2]) << 8 | u16::from(s[end - 1]);
    Ok(Some((TargetAddr { host, port }, end)))
}

/// The client's view of a proxy byte stream, per RFC 1928 §3/§6 and RFC 1929 §2.
/// Also returns whether the proxy chose username/password.
pub fn client_oracle(s: &[u8], offered_auth: bool) -> (Outcome<TargetAddr>, bool) {
    if s.len() < 2 {
        return (Outcome::Incomplete, false);
    }
    if s[0] != 5 {
        return (Outcome::Failed(Error::BadVersion(s[0])), false);
    }
    let chose_auth = match s[1] {
        0x00 => false,
        0x02 if offered_auth => true,
        0xFF => return (Outcome::Failed(Error::NoAcceptableMethods), false),
        m => return (Outcome::Failed(Error::UnexpectedMethod(m)), false),
    };
    let mut at = 2;
    if chose_auth {
        if s.len() < 4 {
            return (Outcome::Incomplete, true);
        }
        if s[2] != 1 {
            return (Outcome::Failed(Error::BadAuthVersion(s[2])), true);
        }
        if s[3] != 0 {
            return (Outcome::Failed(Error::AuthRejected(s[3])), true);
        }
        at = 4;
    }
    if s.len() < at + 5 {
        return (Outcome::Incomplete, chose_auth);
    }
    if s[at] != 5 {
        return (Outcome::Failed(Error::BadVersion(s[at])), chose_auth);
    }
    if s[at + 1] != 0 {
        let code = ReplyCode::from_u8(s[at + 1]);
        return (Outcome::Failed(Error::Reply(code)), chose_auth);
    }
    // RSV (s[at + 2]) is ignored.
    let outcome = match oracle_addr(s, at + 3) {
        Err(e) => Outcome::Failed(e),
        Ok(None) => Outcome::Incomplete,
        Ok(Some((value, consumed))) => Outcome::Done { value, consumed },
    };
    (outcome, chose_auth)
}

/// What the client must write, in order, when the proxy chooses `chose_auth`.
pub fn client_expected_output(
    command: Command,
    target: &TargetAddr,
    auth: Option<&Credentials>,
    chose_auth: bool,
) -> (Vec<u8>, usize, usize) {
    let mut v = vec![5];
    match auth {
        None => v.extend_from_slice(&[1, 0]),
        Some(_) => v.extend_from_slice(&[2, 0, 2]),
    }
    let greeting = v.len();
    if let (Some(c), true) = (auth, chose_auth) {
        v.push(1);
        v.push(c.username().len() as u8);
        v.extend_from_slice(c.username());
        v.push(c.password().len() as u8);
        v.extend_from_slice(c.password());
    }
    let auth_end = v.len();
    v.extend_from_slice(&[5, command as u8, 0]);
    let mut addr = [0u8; 300];
    let n = target.encode(&mut addr).expect("fits");
    v.extend_from_slice(&addr[..n]);
    (v, greeting, auth_end)
}

fn check_client_status(hs: &ClientHandshake) {
    let st = hs.status();
    assert_eq!(
        st == ClientStatus::NeedWrite,
        !hs.pending_output().is_empty()
    );
    match st {
        ClientStatus::NeedRead => assert!(hs.bytes_needed() > 0, "NeedRead with 0 needed"),
        ClientStatus::NeedWrite => assert!(hs.pending_output().len() <= 779),
        ClientStatus::Done(_) | ClientStatus::Failed(_) => {
            assert_eq!(hs.bytes_needed(), 0);
            assert!(hs.pending_output().is_empty());
        }
    }
    // The longest message from the proxy is a reply with a 255-byte name.
    assert!(hs.bytes_needed() <= 262);
}

/// Run one client handshake over `stream` (the proxy's bytes) with one chunking; the
/// engine must never consume past `limit`. Returns the outcome and everything written.
pub fn run_client(
    mut hs: ClientHandshake,
    stream: &[u8],
    chunking: Chunking,
    write_seed: u64,
    limit: usize,
) -> (Outcome<TargetAddr>, Vec<u8>) {
    let mut rng = Prng::new(write_seed);
    let mut chunk_rng = match chunking {
        Chunking::Random(seed) => Some(Prng::new(seed)),
        _ => None,
    };
    let mut written = Vec::new();
    let mut pos = 0; // consumed by the engine
    let mut avail = 0; // delivered by the "network"
    for _ in 0..10_000 {
        check_client_status(&hs);
        // Write in odd pieces, sometimes claiming more than is pending (must clamp).
        while hs.status() == ClientStatus::NeedWrite {
            let pending = hs.pending_output().len();
            let n = rng.range(1, pending + 2);
            written.extend_from_slice(&hs.pending_output()[..n.min(pending)]);
            hs.consume_output(n);
            check_client_status(&hs);
        }
        match hs.status() {
            ClientStatus::Done(bound) => {
                // Nothing after the reply is ever taken.
                assert_eq!(hs.handle_input(&stream[pos..]), Ok(0));
                assert_eq!(hs.status(), ClientStatus::Done(bound));
                return (
                    Outcome::Done {
                        value: bound,
                        consumed: pos,
                    },
                    written,
                );
            }
            ClientStatus::Failed(e) => {
                assert_eq!(hs.handle_input(&stream[pos..]), Err(e));
                assert!(hs.pending_output().is_empty());
                return (Outcome::Failed(e), written);
            }
            ClientStatus::NeedWrite => unreachable!("flushed above"),
            ClientStatus::NeedRead => {}
        }
        if pos == avail {
            if avail == stream.len() {
                assert_eq!(hs.handle_input(&[]), Ok(0));
                return (Outcome::Incomplete, written);
            }
            let left = stream.len() - avail;
            avail += match (chunking, chunk_rng.as_mut()) {
                (Chunking::Bytewise, _) => 1,
                (_, Some(r)) => {
                    let max = 1 + r.range(0, 40);
                    r.range(1, left.min(max))
                }
                _ => left,
            };
        }
        let need = hs.bytes_needed();
        let input = match chunking {
            Chunking::Exact => &stream[pos..avail.min(pos + need)],
            _ => &stream[pos..avail],
        };
        match hs.handle_input(input) {
            Ok(n) => {
                assert!(n <= input.len(), "consumed {n} of {}", input.len());
                assert!(n <= need, "consumed {n} but bytes_needed was {need}");
                assert!(
                    pos + n <= limit,
                    "consumed up to {} past the end {limit}",
                    pos + n
                );
                assert!(n > 0, "NeedRead but nothing consumed");
                if chunking == Chunking::Exact {
                    assert_eq!(n, input.len(), "exact read not fully consumed");
                }
                pos += n;
            }
            Err(e) => {
                assert_eq!(hs.status(), ClientStatus::Failed(e));
                assert!(hs.pending_output().is_empty());
                assert_eq!(hs.bytes_needed(), 0);
                return (Outcome::Failed(e), written);
            }
        }
    }
    panic!("client handshake did not settle in 10000 steps");
}

/// Fuzz entry: `data[0]` configures the client, `data[1]` seeds the write sizes, the rest
/// is what the proxy sends.
pub fn check_client(data: &[u8]) {
    let (&cfg, rest) = match data.split_first() {
        Some(x) => x,
        None => return,
    };
    let (&seed, stream) = match rest.split_first() {
        Some(x) => x,
        None => (&0, rest),
    };
    let (command, target, auth) = client_config(cfg);
    let (expect, chose_auth) = client_oracle(stream, auth.is_some());
    let (full_out, greeting_len, auth_end) =
        client_expected_output(command, &target, auth.as_ref(), chose_auth);
    for chunking in CHUNKINGS {
        let hs = ClientHandshake::with_command(command, &target, auth.as_ref());
        let limit = match expect {
            Outcome::Done { consumed, .. } => consumed,
            _ => stream.len(),
        };
        let (got, written) = run_client(hs, stream, chunking, u64::from(seed), limit);
        assert_eq!(got, expect, "chunking {chunking:?}");
        // What was written is the expected sequence, and never ahead of the answers.
        assert!(
            full_out.starts_with(&written),
            "{written:?} vs {full_out:?}"
        );
        match got {
            Outcome::Done { .. } => assert_eq!(written, full_out),
            _ => {
                if stream.len() < 2 || stream[0] != 5 {
                    assert_eq!(written.len(), greeting_len);
                }
                // No request goes out unless the RFC 1929 exchange succeeded.
                if chose_auth && (stream.len() < 4 || stream[2..4] != [1, 0]) {
                    assert!(written.len() <= auth_end);
                }
            }
        }
    }
}

/// The configuration byte of a server input: auth policy, credential decision, reply code.
pub fn server_config(cfg: u8) -> (ServerAuth, bool, ReplyCode) {
    let auth = match cfg % 3 {
        0 => ServerAuth::NoAuth,
        1 => ServerAuth::UserPass,
        _ => ServerAuth::Either,
    };
    let accept = cfg & 0x04 == 0;
    let code = ReplyCode::from_u8(match (cfg >> 3) & 0x0F {
        c @ 0..=8 => c,
        9..=12 => 0,
        c => c + 0x70,
    });
    (auth, accept, code)
}

/// What the oracle expects a server to see, decide and say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerExpect {
    pub outcome: Outcome<Request>,
    /// Everything the server must have written by the end.
    pub output: Vec<u8>,
    pub credentials: Option<(Vec<u8>, Vec<u8>)>,
}

/// BND.ADDR the fuzzed server replies with.
pub const SERVER_BOUND: TargetAddr = TargetAddr {
    host: Host::V4(Ipv4Addr::new(127, 0, 0, 1)),
    port: 1080,
};

/// The server's view of a client byte stream (RFC 1928 §3/§4, RFC 1929 §2).
pub fn server_oracle(s: &[u8], auth: ServerAuth, accept: bool, code: ReplyCode) -> ServerExpect {
    let mut out = Vec::new();
    let mut creds = None;
    let err_reply =
        |out: &mut Vec<u8>, rep: u8| out.extend_from_slice(&[5, rep, 0, 1, 0, 0, 0, 0, 0, 0]);
    macro_rules! done {
        ($o:expr) => {
            return ServerExpect {
                outcome: $o,
                output: out,
                credentials: creds,
            }
        };
    }
    if s.len() < 2 {
        done!(Outcome::Incomplete);
    }
    if s[0] != 5 {
        done!(Outcome::Failed(Error::BadVersion(s[0])));
    }
    let n = s[1] as usize;
    if n == 0 {
        out.extend_from_slice(&[5, 0xFF]);
        done!(Outcome::Failed(Error::BadRequest));
    }
    if s.len() < 2 + n {
        done!(Outcome::Incomplete);
    }
    let methods = &s[2..2 + n];
    let (no, up) = (methods.contains(&0), methods.contains(&2));
    let chosen = match auth {
        ServerAuth::NoAuth if no => 0,
        ServerAuth::UserPass if up => 2,
        ServerAuth::Either if up => 2,
        ServerAuth::Either if no => 0,
        _ => {
            out.extend_from_slice(&[5, 0xFF]);
            done!(Outcome::Failed(Error::NoAcceptableMethods));
        }
    };
    out.extend_from_slice(&[5, chosen]);
    let mut at = 2 + n;
    if chosen == 2 {
        if s.len() < at + 2 {
            done!(Outcome::Incomplete);
        }
        if s[at] != 1 {
            out.extend_from_slice(&[1, 1]);
            done!(Outcome::Failed(Error::BadAuthVersion(s[at])));
        }
        let ulen = s[at + 1] as usize;
        if ulen == 0 {
            out.extend_from_slice(&[1, 1]);
            done!(Outcome::Failed(Error::BadCredentials));
        }
        if s.len() < at + 3 + ulen {
            done!(Outcome::Incomplete);
        }
        let plen = s[at + 2 + ulen] as usize;
        if plen == 0 {
            out.extend_from_slice(&[1, 1]);
            done!(Outcome::Failed(Error::BadCredentials));
        }
        if s.len() < at + 3 + ulen + plen {
            done!(Outcome::Incomplete);
        }
        creds = Some((
            s[at + 2..at + 2 + ulen].to_vec(),
            s[at + 3 + ulen..at + 3 + ulen + plen].to_vec(),
        ));
        if !accept {
            out.extend_from_slice(&[1, 1]);
            done!(Outcome::Failed(Error::AuthRejected(1)));
        }
        out.extend_from_slice(&[1, 0]);
        at += 3 + ulen + plen;
    }
    if s.len() < at + 5 {
        done!(Outcome::Incomplete);
    }
    if s[at] != 5 {
        err_reply(&mut out, 1);
        done!(Outcome::Failed(Error::BadVersion(s[at])));
    }
    let command = match s[at + 1] {
        1 => Command::Connect,
        2 => Command::Bind,
        3 => Command::UdpAssociate,
        c => {
            err_reply(&mut out, 7);
            done!(Outcome::Failed(Error::UnsupportedCommand(c)));
        }
    };
    match oracle_addr(s, at + 3) {
        Err(e @ Error::BadAddressType(_)) => {
            err_reply(&mut out, 8);
            done!(Outcome::Failed(e));
        }
        Err(e) => {
            err_reply(&mut out, 1);
            done!(Outcome::Failed(e));
        }
        Ok(None) => done!(Outcome::Incomplete),
        Ok(Some((target, end))) => {
            out.extend_from_slice(&[5, code.as_u8(), 0, 1, 127, 0, 0, 1, 0x04, 0x38]);
            let request = Request { command, target };
            if code == ReplyCode::Succeeded {
                done!(Outcome::Done {
                    value: request,
                    consumed: end
                });
            }
            done!(Outcome::Failed(Error::Reply(code)));
        }
    }
}

fn check_server_status(hs: &ServerHandshake) {
    let st = hs.status();
    assert_eq!(
        st == ServerStatus::NeedWrite,
        !hs.pending_output().is_empty()
    );
    assert!(hs.pending_output().len() <= 2 + 2 + 262);
    if st == ServerStatus::CheckCredentials {
        assert!(hs.credentials().is_some());
    }
    if hs.credentials().is_some() {
        assert!(matches!(
            st,
            ServerStatus::CheckCredentials | ServerStatus::NeedWrite
        ));
    }
    if let ServerStatus::Request(r) = st {
        assert_eq!(hs.request(), Some(r));
    }
}

/// Outcome, bytes written, credentials seen.
pub type ServerRun = (Outcome<Request>, Vec<u8>, Option<(Vec<u8>, Vec<u8>)>);

/// Run one server handshake over `stream` (the client's bytes) with one chunking.
pub fn run_server(
    mut hs: ServerHandshake,
    stream: &[u8],
    chunking: Chunking,
    accept: bool,
    code: ReplyCode,
    seed: u64,
) -> ServerRun {
    let mut rng = Prng::new(seed);
    let mut chunk_rng = match chunking {
        Chunking::Random(seed) => Some(Prng::new(seed)),
        _ => None,
    };
    let mut written = Vec::new();
    let mut creds = None;
    let mut pos = 0;
    let mut avail = 0;
    let mut failed = None;
    for _ in 0..10_000 {
        check_server_status(&hs);
        // Sometimes read before writing: the engine must cope with pipelining clients.
        let defer_write = failed.is_none() && pos < avail && rng.range(0, 3) == 0;
        if !defer_write {
            while hs.status() == ServerStatus::NeedWrite {
                let pending = hs.pending_output().len();
                let n = rng.range(1, pending + 2);
                written.extend_from_slice(&hs.pending_output()[..n.min(pending)]);
                hs.consume_output(n);
                check_server_status(&hs);
            }
        }
        let mut reading = false;
        match hs.status() {
            ServerStatus::CheckCredentials => {
                let c = hs
                    .credentials()
                    .expect("credentials while CheckCredentials");
                creds = Some((c.username().to_vec(), c.password().to_vec()));
                hs.accept_credentials(accept);
                continue;
            }
            ServerStatus::Request(r) => {
                assert_eq!(hs.request(), Some(r));
                // Relay data is not the handshake's.
                assert_eq!(hs.handle_input(&stream[pos..avail]), Ok(0));
                hs.reply(code, &SERVER_BOUND);
                continue;
            }
            ServerStatus::Done => {
                assert_eq!(hs.handle_input(&stream[pos..]), Ok(0));
                let request = hs.request().expect("request after Done");
                return (
                    Outcome::Done {
                        value: request,
                        consumed: pos,
                    },
                    written,
                    creds,
                );
            }
            ServerStatus::Failed(e) => {
                assert_eq!(hs.handle_input(&stream[pos..]), Err(e));
                if let Some(f) = failed {
                    assert_eq!(f, e);
                }
                return (Outcome::Failed(e), written, creds);
            }
            ServerStatus::NeedRead => reading = true,
            ServerStatus::NeedWrite => {}
        }
        if failed.is_some() {
            continue; // flush the error answer first
        }
        if pos == avail {
            if avail == stream.len() {
                if reading {
                    assert_eq!(hs.handle_input(&[]), Ok(0));
                    return (Outcome::Incomplete, written, creds);
                }
                continue;
            }
            let left = stream.len() - avail;
            avail += match (chunking, chunk_rng.as_mut()) {
                (Chunking::Bytewise, _) => 1,
                (_, Some(r)) => {
                    let max = 1 + r.range(0, 40);
                    r.range(1, left.min(max))
                }
                _ => left,
            };
        }
        let input = match chunking {
            Chunking::Exact => &stream[pos..avail.min(pos + 1)],
            _ => &stream[pos..avail],
        };
        match hs.handle_input(input) {
            Ok(n) => {
                assert!(n <= input.len());
                if reading {
                    assert!(n > 0, "NeedRead but nothing consumed");
                }
                pos += n;
            }
            Err(e) => {
                // The answer (if any) is queued; Failed shows once it is written.
                failed = Some(e);
                assert_eq!(hs.handle_input(b"x"), Err(e));
            }
        }
    }
    panic!("server handshake did not settle in 10000 steps");
}

/// Fuzz entry: `data[0]` configures the server, `data[1]` seeds the pieces, the rest is
/// what the client sends.
pub fn check_server(data: &[u8]) {
    let (&cfg, rest) = match data.split_first() {
        Some(x) => x,
        None => return,
    };
    let (&seed, stream) = match rest.split_first() {
        Some(x) => x,
        None => (&0, rest),
    };
    let (auth, accept, code) = server_config(cfg);
    let expect = server_oracle(stream, auth, accept, code);
    for chunking in CHUNKINGS {
        let hs = ServerHandshake::new(auth);
        let (got, written, creds) = run_server(hs, stream, chunking, accept, code, u64::from(seed));
        assert_eq!(got, expect.outcome, "chunking {chunking:?}");
        assert_eq!(creds, expect.credentials, "chunking {chunking:?}");
        if got == Outcome::Incomplete {
            assert!(expect.output.starts_with(&written), "chunking {chunking:?}");
        } else {
            assert_eq!(written, expect.output, "chunking {chunking:?}");
        }
    }
}

/// Fuzz entry: `data` is a datagram from a UDP relay.
pub fn check_udp(data: &[u8]) {
    // The address codec alone: whatever decodes re-encodes to the same bytes.
    if let Ok(Some((addr, used))) = TargetAddr::decode(data) {
        assert!(used <= data.len());
        assert_eq!(addr.encoded_len(), used);
        let mut buf = [0u8; 300];
        assert_eq!(addr.encode(&mut buf), Some(used));
        assert_eq!(&buf[..used], &data[..used]);
    }
    match decode_udp_header(data) {
        Ok((h, off)) => {
            assert!(off <= data.len());
            assert_eq!(h.frag, 0);
            assert_eq!(data[2], 0);
            let mut buf = [0u8; 300];
            let n = encode_udp_header(&h.target, &mut buf).expect("fits");
            assert_eq!(n, off);
            // Same header except RSV, which the decoder ignores.
            assert_eq!(&buf[2..n], &data[2..off]);
            assert_eq!(&buf[..2], &[0, 0]);
            assert_eq!(decode_udp_header(&buf[..n]), Ok((h, n)));
            // A too-small buffer is refused, never overrun.
            assert_eq!(encode_udp_header(&h.target, &mut buf[..n - 1]), None);
        }
        Err(e) => {
            let expect = if data.len() < 4 {
                Error::Truncated
            } else if data[2] != 0 {
                Error::FragmentedDatagram(data[2])
            } else {
                match oracle_addr_checked(data, 3) {
                    Err(e) => e,
                    Ok(()) => panic!("oracle accepts what decode refused: {e:?}"),
                }
            };
            assert_eq!(e, expect);
        }
    }
}

/// `oracle_addr` that tolerates a missing length byte (reports Truncated).
fn oracle_addr_checked(s: &[u8], at: usize) -> Result<(), Error> {
    if s[at] == 3 && s.len() < at + 2 {
        return Err(Error::Truncated);
    }
    match oracle_addr(s, at) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::Truncated),
        Err(e) => Err(e),
    }
}
