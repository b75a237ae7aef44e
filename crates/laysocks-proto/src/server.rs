//! The server side: `laysocks serve`, the fault-injecting test server, and the other half
//! of the in-memory tests of the client.
//!
//! The engine reads the client's greeting, RFC 1929 request and SOCKS request, each exactly
//! to its end: whatever follows the request is relay data and is left to the caller. The
//! decisions that need the outside world are handed back through [`ServerStatus`]:
//! checking credentials (`CheckCredentials`) and carrying out the request (`Request`). A
//! client that pipelines its messages is served: input is parsed while our own answer is
//! still waiting to be written.
//!
//! Errors still get an answer where the RFC has one (method 0xFF, RFC 1929 failure status,
//! REP 0x07/0x08/0x01) so a client can report something better than "connection closed".
//! `status()` reports `NeedWrite` until that answer is written, then `Failed`.

use crate::addr::{Host, TargetAddr};
use crate::auth::Credentials;
use crate::error::Error;
use crate::reply::{encode_reply, ReplyCode};
use crate::wire::{
    framed_len, Command, AUTH_VERSION, HEAD_LEN, MAX_AUTH_REQUEST_LEN, MAX_GREETING_LEN,
    MAX_REQUEST_LEN, METHOD_NONE_ACCEPTABLE, METHOD_NO_AUTH, METHOD_USER_PASS, VERSION,
};
use std::fmt;
use std::net::Ipv4Addr;

/// Method selection + RFC 1929 status + the longest reply: every message is queued once.
const OUT_CAP: usize = 2 + 2 + MAX_REQUEST_LEN;
/// The longest client message: the RFC 1929 request (greeting: 257, request: 262).
const RX_CAP: usize = max(MAX_AUTH_REQUEST_LEN, max(MAX_GREETING_LEN, MAX_REQUEST_LEN));

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Which authentication the server demands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerAuth {
    /// Only 0x00 (no authentication).
    NoAuth,
    /// Only 0x02 (username/password, RFC 1929).
    UserPass,
    /// 0x02 if the client offers it, else 0x00.
    Either,
}

/// A parsed SOCKS request (RFC 1928 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    pub command: Command,
    pub target: TargetAddr,
}

/// What the caller should do next.
// Inline on purpose: the handshake must not allocate, so no Box for the name.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerStatus {
    /// Read more from the client and pass it to `handle_input`.
    NeedRead,
    /// Write `pending_output()` to the client.
    NeedWrite,
    /// Look at `credentials()` and call `accept_credentials`.
    CheckCredentials,
    /// Carry out the request, then call `reply`.
    Request(Request),
    /// The success reply is written; the connection is now the relay's.
    Done,
    /// The handshake failed (any answer to the client has been written).
    Failed(Error),
}

// Inline on purpose: the handshake must not allocate, so no Box for the name.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// VER NMETHODS METHODS (RFC 1928 §3).
    Greeting,
    /// VER ULEN UNAME PLEN PASSWD (RFC 1929 §2).
    Auth,
    CheckCredentials,
    /// VER CMD RSV ATYP DST.ADDR DST.PORT (RFC 1928 §4).
    Request,
    AwaitReply(Request),
    Done,
    Failed(Error),
}

/// A SOCKS5 server handshake, sans I/O.
#[derive(Clone)]
pub struct ServerHandshake {
    auth: ServerAuth,
    out: [u8; OUT_CAP],
    out_start: usize,
    out_end: usize,
    rx: [u8; RX_CAP],
    rx_len: usize,
    state: State,
    credentials: Option<Credentials>,
    request: Option<Request>,
}

impl ServerHandshake {
    pub fn new(auth: ServerAuth) -> ServerHandshake {
        ServerHandshake {
            auth,
            out: [0; OUT_CAP],
            out_start: 0,
            out_end: 0,
            rx: [0; RX_CAP],
            rx_len: 0,
            state: State::Greeting,
            credentials: None,
            request: None,
        }
    }

    /// Bytes to write to the client now.
    pub fn pending_output(&self) -> &[u8] {
        &self.out[self.out_start..self.out_end]
    }

    /// `n` bytes of `pending_output()` were written (clamped to its length).
    pub fn consume_output(&mut self, n: usize) {
        self.out_start += n.min(self.out_end - self.out_start);
        if self.out_start == self.out_end {
            self.out_start = 0;
            self.out_end = 0;
        }
    }

    /// Consumes only up to the end of the request: later bytes belong to the relay.
    /// On Err, status() becomes Failed(err) once any error answer in `pending_output()`
    /// has been written.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, Error> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        let mut used = 0;
        loop {
            let need = self.bytes_needed();
            if need == 0 || used == input.len() {
                return Ok(used);
            }
            let take = need.min(input.len() - used);
            self.rx[self.rx_len..self.rx_len + take].copy_from_slice(&input[used..used + take]);
            self.rx_len += take;
            used += take;
            if take == need {
                if let Err(e) = self.on_bytes() {
                    self.state = State::Failed(e);
                    self.rx[..self.rx_len].fill(0);
                    self.rx_len = 0;
                    return Err(e);
                }
            }
        }
    }

    /// NeedWrite has priority while output is pending.
    pub fn status(&self) -> ServerStatus {
        if self.out_start < self.out_end {
            return ServerStatus::NeedWrite;
        }
        match self.state {
            State::Greeting | State::Auth | State::Request => ServerStatus::NeedRead,
            State::CheckCredentials => ServerStatus::CheckCredentials,
            State::AwaitReply(r) => ServerStatus::Request(r),
            State::Done => ServerStatus::Done,
            State::Failed(e) => ServerStatus::Failed(e),
        }
    }

    /// The client's username and password, while the status is `CheckCredentials`.
    pub fn credentials(&self) -> Option<&Credentials> {
        match self.state {
            State::CheckCredentials => self.credentials.as_ref(),
            _ => None,
        }
    }

    /// Queue the RFC 1929 answer; `false` → Failed(AuthRejected) after it is written.
    /// Ignored unless the status is `CheckCredentials`. The credentials are dropped.
    pub fn accept_credentials(&mut self, ok: bool) {
        if self.state != State::CheckCredentials {
            return;
        }
        self.credentials = None;
        // RFC 1929 §2: VER STATUS, X'00' success; anything else is failure and "the
        // connection must be closed".
        if ok {
            self.queue(&[AUTH_VERSION, 0x00]);
            self.state = State::Request;
        } else {
            self.queue(&[AUTH_VERSION, 0x01]);
            self.state = State::Failed(Error::AuthRejected(0x01));
        }
    }

    /// The request, once it has been read (also after the reply).
    pub fn request(&self) -> Option<Request> {
        self.request
    }

    /// Queue the reply (§6). Succeeded → Done once flushed; other codes →
    /// Failed(Reply(code)) once flushed. Ignored unless the status is `Request`.
    pub fn reply(&mut self, code: ReplyCode, bound: &TargetAddr) {
        if !matches!(self.state, State::AwaitReply(_)) {
            return;
        }
        self.queue_reply(code, bound);
        self.state = if code == ReplyCode::Succeeded {
            State::Done
        } else {
            State::Failed(Error::Reply(code))
        };
    }

    /// How many more bytes the current client message has (at least), 0 when not reading.
    fn bytes_needed(&self) -> usize {
        let total = match self.state {
            State::Greeting if self.rx_len < 2 => 2,
            State::Greeting => 2 + self.rx[1] as usize,
            State::Auth if self.rx_len < 2 => 2,
            State::Auth => {
                let ulen = self.rx[1] as usize;
                if self.rx_len < 3 + ulen {
                    3 + ulen
                } else {
                    3 + ulen + self.rx[2 + ulen] as usize
                }
            }
            State::Request if self.rx_len < HEAD_LEN => HEAD_LEN,
            State::Request => {
                let head = [self.rx[0], self.rx[1], self.rx[2], self.rx[3], self.rx[4]];
                framed_len(&head).unwrap_or(HEAD_LEN)
            }
            _ => return 0,
        };
        total - self.rx_len
    }

    /// Called whenever `rx` has reached the length `bytes_needed` asked for.
    fn on_bytes(&mut self) -> Result<(), Error> {
        match self.state {
            State::Greeting if self.rx_len == 2 => {
                // RFC 1928 §3: VER NMETHODS.
                if self.rx[0] != VERSION {
                    // Not SOCKS5 (maybe SOCKS4): there is no answer it would understand.
                    return Err(Error::BadVersion(self.rx[0]));
                }
                if self.rx[1] == 0 {
                    self.queue(&[VERSION, METHOD_NONE_ACCEPTABLE]);
                    return Err(Error::BadRequest);
                }
                Ok(())
            }
            State::Greeting => {
                let methods = &self.rx[2..self.rx_len];
                let offers = |m: u8| methods.contains(&m);
                let chosen = match self.auth {
                    ServerAuth::NoAuth if offers(METHOD_NO_AUTH) => Some(METHOD_NO_AUTH),
                    ServerAuth::UserPass if offers(METHOD_USER_PASS) => Some(METHOD_USER_PASS),
                    ServerAuth::Either if offers(METHOD_USER_PASS) => Some(METHOD_USER_PASS),
                    ServerAuth::Either if offers(METHOD_NO_AUTH) => Some(METHOD_NO_AUTH),
                    _ => None,
                };
                self.rx_len = 0;
                match chosen {
                    None => {
                        // §3: "the client MUST close the connection".
                        self.queue(&[VERSION, METHOD_NONE_ACCEPTABLE]);
                        Err(Error::NoAcceptableMethods)
                    }
                    Some(m) => {
                        self.queue(&[VERSION, m]);
                        self.state = if m == METHOD_USER_PASS {
                            State::Auth
                        } else {
                            State::Request
                        };
                        Ok(())
                    }
                }
            }
            State::Auth if self.rx_len == 2 => {
                // RFC 1929 §2: VER ULEN.
                if self.rx[0] != AUTH_VERSION {
                    self.queue(&[AUTH_VERSION, 0x01]);
                    return Err(Error::BadAuthVersion(self.rx[0]));
                }
                if self.rx[1] == 0 {
                    self.queue(&[AUTH_VERSION, 0x01]);
                    return Err(Error::BadCredentials);
                }
                Ok(())
            }
            State::Auth if self.rx_len == 3 + self.rx[1] as usize => {
                // PLEN is in; RFC 1929 gives it 1..=255 octets.
                if self.rx[self.rx_len - 1] == 0 {
                    self.queue(&[AUTH_VERSION, 0x01]);
                    return Err(Error::BadCredentials);
                }
                Ok(())
            }
            State::Auth => {
                let ulen = self.rx[1] as usize;
                let creds =
                    Credentials::new(&self.rx[2..2 + ulen], &self.rx[3 + ulen..self.rx_len]);
                self.rx[..self.rx_len].fill(0);
                self.rx_len = 0;
                self.credentials = Some(creds.expect("lengths were checked"));
                self.state = State::CheckCredentials;
                Ok(())
            }
            State::Request if self.rx_len == HEAD_LEN => {
                // RFC 1928 §4: VER CMD RSV ATYP; RSV is ignored.
                let head = [self.rx[0], self.rx[1], self.rx[2], self.rx[3], self.rx[4]];
                let fail = |code: ReplyCode, e: Error, hs: &mut Self| {
                    hs.queue_reply(code, &UNSPECIFIED);
                    Err(e)
                };
                if head[0] != VERSION {
                    return fail(ReplyCode::GeneralFailure, Error::BadVersion(head[0]), self);
                }
                if let Err(e) = Command::from_u8(head[1]) {
                    return fail(ReplyCode::CommandNotSupported, e, self);
                }
                match framed_len(&head) {
                    Ok(_) => Ok(()),
                    Err(e @ Error::BadAddressType(_)) => {
                        fail(ReplyCode::AddressTypeNotSupported, e, self)
                    }
                    Err(e) => fail(ReplyCode::GeneralFailure, e, self),
                }
            }
            State::Request => {
                let command = Command::from_u8(self.rx[1])?;
                let (target, _) = TargetAddr::decode(&self.rx[3..self.rx_len])?
                    .expect("framed_len counted the whole address");
                let req = Request { command, target };
                self.rx_len = 0;
                self.request = Some(req);
                self.state = State::AwaitReply(req);
                Ok(())
            }
            State::CheckCredentials | State::AwaitReply(_) | State::Done | State::Failed(_) => {
                Ok(())
            }
        }
    }

    fn queue(&mut self, bytes: &[u8]) {
        // Every message is queued at most once, so OUT_CAP always suffices.
        let end = self.out_end + bytes.len();
        self.out[self.out_end..end].copy_from_slice(bytes);
        self.out_end = end;
    }

    fn queue_reply(&mut self, code: ReplyCode, bound: &TargetAddr) {
        let n = encode_reply(code, bound, &mut self.out[self.out_end..])
            .expect("OUT_CAP holds the longest reply");
        self.out_end += n;
    }
}

/// BND.ADDR of an error reply: 0.0.0.0:0 (the RFC gives error replies no address).
const UNSPECIFIED: TargetAddr = TargetAddr {
    host: Host::V4(Ipv4Addr::UNSPECIFIED),
    port: 0,
};

impl fmt::Debug for ServerHandshake {
    /// State only: the buffers may hold the client's password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("auth", &self.auth)
            .field("state", &self.state)
            .field("pending_output", &self.pending_output().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{check_server, Prng};
    use crate::testutil::*;

    fn flush(hs: &mut ServerHandshake) -> Vec<u8> {
        let v = hs.pending_output().to_vec();
        hs.consume_output(v.len());
        v
    }

    fn request_bytes(cmd: u8, t: &TargetAddr) -> Vec<u8> {
        let mut v = vec![5, cmd, 0];
        v.extend(addr_bytes(t));
        v
    }

    fn auth_bytes(u: &[u8], p: &[u8]) -> Vec<u8> {
        let mut v = vec![1, u.len() as u8];
        v.extend_from_slice(u);
        v.push(p.len() as u8);
        v.extend_from_slice(p);
        v
    }

    fn assert_failed(hs: &mut ServerHandshake, r: Result<usize, Error>, e: Error, answer: &[u8]) {
        assert_eq!(r, Err(e));
        assert_eq!(flush(hs), answer, "answer to {e:?}");
        assert_eq!(hs.status(), ServerStatus::Failed(e));
        assert_eq!(hs.handle_input(&[5, 1, 0]), Err(e));
    }

    #[test]
    fn no_auth_every_atyp_byte_by_byte() {
        for target in targets() {
            for bound in targets() {
                let mut hs = ServerHandshake::new(ServerAuth::NoAuth);
                assert_eq!(hs.status(), ServerStatus::NeedRead);
                for b in [5u8, 1, 0] {
                    assert!(hs.pending_output().is_empty());
                    assert_eq!(hs.handle_input(&[b]), Ok(1));
                }
                assert_eq!(hs.status(), ServerStatus::NeedWrite);
                assert_eq!(flush(&mut hs), [5, 0]);
                let req = request_bytes(1, &target);
                for (i, b) in req.iter().enumerate() {
                    assert_eq!(hs.status(), ServerStatus::NeedRead, "at {i}");
                    assert_eq!(hs.handle_input(std::slice::from_ref(b)), Ok(1));
                }
                let r = Request {
                    command: Command::Connect,
                    target,
                };
                assert_eq!(hs.status(), ServerStatus::Request(r));
                assert_eq!(hs.request(), Some(r));
                assert_eq!(hs.handle_input(b"relay"), Ok(0));
                hs.reply(ReplyCode::Succeeded, &bound);
                assert_eq!(hs.status(), ServerStatus::NeedWrite);
                assert_eq!(flush(&mut hs), reply_bytes(0, &bound));
                assert_eq!(hs.status(), ServerStatus::Done);
                assert_eq!(hs.request(), Some(r));
                assert_eq!(hs.handle_input(b"relay"), Ok(0));
            }
        }
    }

    #[test]
    fn commands_are_parsed() {
        for (b, cmd) in [
            (1, Command::Connect),
            (2, Command::Bind),
            (3, Command::UdpAssociate),
        ] {
            let mut hs = ServerHandshake::new(ServerAuth::NoAuth);
            hs.handle_input(&[5, 1, 0]).unwrap();
            let t = v4([0, 0, 0, 0], 0);
            assert_eq!(hs.handle_input(&request_bytes(b, &t)), Ok(10));
            assert_eq!(hs.request().unwrap().command, cmd);
        }
    }

    #[test]
    fn user_pass_accepted() {
        let mut hs = ServerHandshake::new(ServerAuth::UserPass);
        hs.handle_input(&[5, 2, 0, 2]).unwrap();
        assert_eq!(flush(&mut hs), [5, 2]);
        assert_eq!(hs.credentials(), None);
        let a = auth_bytes(b"alice", b"s3cret");
        assert_eq!(hs.handle_input(&a), Ok(a.len()));
        assert_eq!(hs.status(), ServerStatus::CheckCredentials);
        assert_eq!(hs.credentials(), Some(&creds("alice", "s3cret")));
        assert_eq!(
            hs.handle_input(&[5]),
            Ok(0),
            "nothing is read while deciding"
        );
        hs.reply(ReplyCode::Succeeded, &v4([0, 0, 0, 0], 0));
        assert_eq!(
            hs.status(),
            ServerStatus::CheckCredentials,
            "reply() ignored here"
        );
        hs.accept_credentials(true);
        assert_eq!(hs.credentials(), None);
        assert_eq!(flush(&mut hs), [1, 0]);
        assert!(!format!("{hs:?}").contains("s3cret"));
        let t = dom(b"example.com", 443);
        let req = request_bytes(1, &t);
        assert_eq!(hs.handle_input(&req), Ok(req.len()));
        assert_eq!(hs.request().unwrap().target, t);
    }

    #[test]
    fn user_pass_rejected() {
        let mut hs = ServerHandshake::new(ServerAuth::UserPass);
        hs.handle_input(&[5, 1, 2]).unwrap();
        hs.handle_input(&auth_bytes(b"alice", b"wrong")).unwrap();
        hs.accept_credentials(false);
        assert_eq!(hs.status(), ServerStatus::NeedWrite);
        assert_eq!(flush(&mut hs), [5, 2, 1, 1]);
        assert_eq!(hs.status(), ServerStatus::Failed(Error::AuthRejected(1)));
        // A second decision changes nothing.
        hs.accept_credentials(true);
        assert!(hs.pending_output().is_empty());
    }

    #[test]
    fn method_choice() {
        let cases: [(ServerAuth, &[u8], u8); 9] = [
            (ServerAuth::NoAuth, &[0], 0),
            (ServerAuth::NoAuth, &[2, 1, 0], 0),
            (ServerAuth::NoAuth, &[2], 0xFF),
            (ServerAuth::UserPass, &[0, 2], 2),
            (ServerAuth::UserPass, &[0], 0xFF),
            (ServerAuth::Either, &[0, 2], 2),
            (ServerAuth::Either, &[0], 0),
            (ServerAuth::Either, &[1, 0x80], 0xFF),
            (ServerAuth::Either, &[0xFF; 255], 0xFF),
        ];
        for (auth, methods, expect) in cases {
            let mut hs = ServerHandshake::new(auth);
            let mut g = vec![5, methods.len() as u8];
            g.extend_from_slice(methods);
            let r = hs.handle_input(&g);
            if expect == 0xFF {
                assert_failed(&mut hs, r, Error::NoAcceptableMethods, &[5, 0xFF]);
            } else {
                assert_eq!(r, Ok(g.len()));
                assert_eq!(flush(&mut hs), [5, expect]);
            }
        }
    }

    #[test]
    fn greeting_errors() {
        let mut hs = ServerHandshake::new(ServerAuth::Either);
        let r = hs.handle_input(&[4, 1, 0]);
        assert_failed(&mut hs, r, Error::BadVersion(4), &[]);
        let mut hs = ServerHandshake::new(ServerAuth::Either);
        let r = hs.handle_input(&[5, 0, 0]);
        assert_failed(&mut hs, r, Error::BadRequest, &[5, 0xFF]);
        // An HTTP request is not a greeting.
        let mut hs = ServerHandshake::new(ServerAuth::Either);
        let r = hs.handle_input(b"GET / HTTP/1.1\r\n");
        assert_failed(&mut hs, r, Error::BadVersion(b'G'), &[]);
    }

    #[test]
    fn auth_request_errors() {
        for (a, e) in [
            (vec![5, 1, b'u', 1, b'p'], Error::BadAuthVersion(5)),
            (vec![1, 0, 1, b'p'], Error::BadCredentials),
            (vec![1, 1, b'u', 0], Error::BadCredentials),
        ] {
            let mut hs = ServerHandshake::new(ServerAuth::UserPass);
            hs.handle_input(&[5, 1, 2]).unwrap();
            flush(&mut hs);
            let r = hs.handle_input(&a);
            assert_failed(&mut hs, r, e, &[1, 1]);
        }
    }

    #[test]
    fn request_errors_get_an_answer() {
        let zero = [0u8, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let answer = |rep: u8| {
            let mut v = zero;
            v[0] = 5;
            v[1] = rep;
            v
        };
        for (req, e, rep) in [
            (vec![4, 1, 0, 1, 1], Error::BadVersion(4), 1),
            (vec![5, 0, 0, 1, 1], Error::UnsupportedCommand(0), 7),
            (vec![5, 4, 0, 1, 1], Error::UnsupportedCommand(4), 7),
            (vec![5, 0xFF, 0, 1, 1], Error::UnsupportedCommand(0xFF), 7),
            (vec![5, 1, 0, 0, 1], Error::BadAddressType(0), 8),
            (vec![5, 1, 0, 2, 1], Error::BadAddressType(2), 8),
            (vec![5, 1, 0, 5, 1], Error::BadAddressType(5), 8),
            (vec![5, 1, 0, 3, 0], Error::EmptyDomain, 1),
        ] {
            let mut hs = ServerHandshake::new(ServerAuth::NoAuth);
            hs.handle_input(&[5, 1, 0]).unwrap();
            flush(&mut hs);
            let r = hs.handle_input(&req);
            assert_failed(&mut hs, r, e, &answer(rep));
            assert_eq!(hs.request(), None);
        }
    }

    #[test]
    fn rsv_is_ignored() {
        let mut hs = ServerHandshake::new(ServerAuth::NoAuth);
        hs.handle_input(&[5, 1, 0]).unwrap();
        let mut req = request_bytes(1, &v4([198, 51, 100, 9], 9));
        req[2] = 0x77;
        assert_eq!(hs.handle_input(&req), Ok(req.len()));
        assert!(hs.request().is_some());
    }

    #[test]
    fn every_error_reply_code() {
        for rep in 1..=255u8 {
            let code = ReplyCode::from_u8(rep);
            let mut hs = ServerHandshake::new(ServerAuth::NoAuth);
            hs.handle_input(&[5, 1, 0]).unwrap();
            hs.handle_input(&request_bytes(1, &v4([198, 51, 100, 9], 9)))
                .unwrap();
            hs.reply(code, &v4([0, 0, 0, 0], 0));
            assert_eq!(hs.status(), ServerStatus::NeedWrite);
            let mut expect = vec![5, 0];
            expect.extend(reply_bytes(rep, &v4([0, 0, 0, 0], 0)));
            assert_eq!(flush(&mut hs), expect);
            assert_eq!(hs.status(), ServerStatus::Failed(Error::Reply(code)));
            // A second reply is ignored.
            hs.reply(ReplyCode::Succeeded, &v4([0, 0, 0, 0], 0));
            assert!(hs.pending_output().is_empty());
        }
    }

    #[test]
    fn pipelined_client_and_relay_data() {
        for target in targets() {
            let mut s = vec![5, 2, 0, 2];
            s.extend(auth_bytes(b"user", b"pass"));
            s.extend(request_bytes(1, &target));
            let hs_len = s.len();
            s.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
            let mut hs = ServerHandshake::new(ServerAuth::Either);
            assert_eq!(hs.handle_input(&s), Ok(4 + 11));
            hs.accept_credentials(true);
            assert_eq!(hs.handle_input(&s[15..]), Ok(hs_len - 15));
            assert_eq!(hs.status(), ServerStatus::NeedWrite);
            assert_eq!(flush(&mut hs), [5, 2, 1, 0]);
            assert_eq!(hs.request().unwrap().target, target);
            hs.reply(ReplyCode::Succeeded, &target);
            flush(&mut hs);
            assert_eq!(hs.status(), ServerStatus::Done);
            assert_eq!(hs.handle_input(&s[hs_len..]), Ok(0));
        }
    }

    #[test]
    fn consume_output_clamps() {
        let mut hs = ServerHandshake::new(ServerAuth::NoAuth);
        hs.handle_input(&[5, 1, 0]).unwrap();
        hs.consume_output(1);
        assert_eq!(hs.pending_output(), &[0]);
        hs.consume_output(99);
        assert!(hs.pending_output().is_empty());
        assert_eq!(hs.status(), ServerStatus::NeedRead);
    }

    /// A full client stream for `check_server`.
    fn client_stream(auth: bool, target: &TargetAddr) -> Vec<u8> {
        let mut s = if auth {
            vec![5, 2, 0, 2]
        } else {
            vec![5, 1, 0]
        };
        if auth {
            s.extend(auth_bytes(b"user", b"pass"));
        }
        s.extend(request_bytes(1, target));
        s
    }

    #[test]
    fn every_split_and_corruption_agrees_with_the_oracle() {
        // cfg: auth policy (cfg % 3), accept (bit 2), reply code (bits 3..7).
        for cfg in [0u8, 1, 2, 4, 5, 8, 9, 0x31, 0x40, 0x71] {
            let auth = cfg % 3 != 0;
            for target in targets().into_iter().take(3) {
                let s = client_stream(auth, &target);
                for cut in 0..=s.len() {
                    let mut d = vec![cfg, cut as u8];
                    d.extend_from_slice(&s[..cut]);
                    check_server(&d);
                }
                for i in 0..s.len() {
                    for v in [0u8, 1, 2, 3, 4, 5, 0xFF] {
                        let mut d = vec![cfg, i as u8];
                        d.extend_from_slice(&s);
                        d[2 + i] = v;
                        d.extend_from_slice(b"relay");
                        check_server(&d);
                    }
                }
            }
        }
    }

    /// Feed `parts` in order, writing whenever asked and accepting the credentials;
    /// returns the total consumed and everything written.
    fn feed_parts(hs: &mut ServerHandshake, parts: &[&[u8]]) -> (usize, Vec<u8>) {
        let mut used = 0;
        let mut written = Vec::new();
        for part in parts {
            let mut off = 0;
            for _ in 0..10 {
                written.extend(flush(hs));
                match hs.status() {
                    ServerStatus::CheckCredentials => hs.accept_credentials(true),
                    ServerStatus::Request(r) => hs.reply(ReplyCode::Succeeded, &r.target),
                    _ => {}
                }
                if off == part.len() {
                    break;
                }
                off += hs.handle_input(&part[off..]).unwrap();
            }
            used += off;
        }
        written.extend(flush(hs));
        (used, written)
    }

    #[test]
    fn every_two_way_split() {
        for auth in [false, true] {
            for target in targets() {
                let s = client_stream(auth, &target);
                let mode = if auth {
                    ServerAuth::UserPass
                } else {
                    ServerAuth::NoAuth
                };
                for cut in 0..=s.len() {
                    let mut hs = ServerHandshake::new(mode);
                    let (used, out) = feed_parts(&mut hs, &[&s[..cut], &s[cut..], b"data"]);
                    assert_eq!(used, s.len());
                    let r = hs.request().unwrap_or_else(|| panic!("cut {cut}"));
                    assert_eq!(r.target, target);
                    let mut expect = vec![5, if auth { 2 } else { 0 }];
                    if auth {
                        expect.extend_from_slice(&[1, 0]);
                    }
                    expect.extend(reply_bytes(0, &target));
                    assert_eq!(out, expect, "cut {cut}");
                    assert_eq!(hs.status(), ServerStatus::Done);
                }
            }
        }
    }

    #[test]
    fn longest_messages() {
        // 255 methods, 255-byte username and password, 255-byte name.
        let mut hs = ServerHandshake::new(ServerAuth::UserPass);
        let mut g = vec![5, 255];
        g.extend((0..255u8).rev());
        assert_eq!(hs.handle_input(&g), Ok(257));
        let a = auth_bytes(&[b'u'; 255], &[b'p'; 255]);
        assert_eq!(hs.handle_input(&a), Ok(513));
        assert_eq!(hs.credentials().unwrap().password(), &[b'p'; 255][..]);
        hs.accept_credentials(true);
        let t = dom(&[b'n'; 255], 65535);
        let req = request_bytes(3, &t);
        assert_eq!(hs.handle_input(&req), Ok(262));
        hs.reply(ReplyCode::Succeeded, &t);
        let out = flush(&mut hs);
        assert_eq!(out.len(), 2 + 2 + 262);
        assert_eq!(hs.status(), ServerStatus::Done);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Prng::new(0xfeed);
        for _ in 0..3000 {
            let len = rng.range(0, 300);
            let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if len > 4 && rng.range(0, 1) == 0 {
                d[2] = 5;
                d[3] %= 4;
            }
            check_server(&d);
        }
    }
}
