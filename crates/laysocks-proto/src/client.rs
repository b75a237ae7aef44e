//! The client side: what `connect()` runs against the proxy.
//!
//! All three messages the client may send (greeting, RFC 1929 request, SOCKS request) are
//! encoded once, at construction, into one inline buffer; the handshake then only moves two
//! cursors: how much of the buffer may be sent now ("released") and how much was sent. Each
//! answer from the proxy releases the next message. Nothing is allocated and nothing is
//! formatted on the way.
//!
//! Reading is exact, because the bytes after the proxy's final reply belong to the
//! application (a server may speak first, e.g. SMTP or SSH banners, and they can arrive in
//! the same segment as the reply). [`ClientHandshake::bytes_needed`] never asks for more
//! than what remains of the current message: 2 bytes for the method selection (RFC 1928
//! §3), 2 for the RFC 1929 status, then 5 for the reply (VER REP RSV ATYP and the first
//! address octet, which for a name is its length) and then exactly the rest (§6).
//! A message is only accepted once the message it answers has been handed out in full,
//! so an early (and therefore bogus) answer cannot make us skip our own request.
//!
//! **Pipelining** ([`ClientHandshake::pipelined`]) releases all three messages at once,
//! saving one or two round trips. It is only possible when the client offers exactly one
//! method (it must know which sub-negotiation follows before it hears the answer), and
//! only safe with proxies that keep reading after the greeting: RFC 1928 does not promise
//! it, and some servers (microsocks) discard whatever arrived with the greeting, then
//! wait forever for the request they already threw away. Callers opt in per proxy and
//! must be ready to fall back.

use crate::addr::TargetAddr;
use crate::auth::Credentials;
use crate::error::Error;
use crate::reply::ReplyCode;
use crate::wire::{
    framed_len, Command, AUTH_VERSION, HEAD_LEN, MAX_AUTH_REQUEST_LEN, MAX_REQUEST_LEN,
    METHOD_NONE_ACCEPTABLE, METHOD_NO_AUTH, METHOD_USER_PASS, VERSION,
};
use std::fmt;

/// VER NMETHODS and at most the two methods we offer.
const MAX_CLIENT_GREETING_LEN: usize = 4;
const OUT_CAP: usize = MAX_CLIENT_GREETING_LEN + MAX_AUTH_REQUEST_LEN + MAX_REQUEST_LEN;
/// The longest message from the proxy is the reply with a 255-byte name: 4 + 1 + 255 + 2.
const RX_CAP: usize = MAX_REQUEST_LEN;

/// What the caller should do next.
// Inline on purpose: the handshake must not allocate, so no Box for the name.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientStatus {
    /// Write [`ClientHandshake::pending_output`] to the proxy.
    NeedWrite,
    /// Read [`ClientHandshake::bytes_needed`] bytes from the proxy.
    NeedRead,
    /// The proxy accepted the request; this is BND.ADDR:BND.PORT from its reply.
    Done(TargetAddr),
    /// The handshake failed; the connection to the proxy is of no further use.
    Failed(Error),
}

/// Which answer of the proxy's a handshake waits for, and how much of it has come: what
/// a message needs to say where a broken exchange broke ("after 4 of the 10 bytes of
/// its reply" tells a user more than "during the handshake").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Awaiting {
    /// VER METHOD (RFC 1928 §3): `received` of its 2 bytes are in.
    MethodSelection { received: usize },
    /// VER STATUS (RFC 1929 §2): `received` of 2.
    AuthStatus { received: usize },
    /// The reply (RFC 1928 §6): `received` bytes, of `total` once its head has told.
    Reply {
        received: usize,
        total: Option<usize>,
    },
    /// Nothing: the handshake is over.
    Nothing,
}

/// Where the exchange stood, as the end of a sentence: "the proxy closed the connection
/// *after 5 of the 10 bytes of its reply*". Both layers' messages use it.
impl fmt::Display for Awaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Awaiting::MethodSelection { received: 0 } => {
                f.write_str("before answering the greeting")
            }
            Awaiting::MethodSelection { received } => {
                write!(f, "after {received} of the 2 bytes of its method selection")
            }
            Awaiting::AuthStatus { received: 0 } => {
                f.write_str("before answering the username/password")
            }
            Awaiting::AuthStatus { received } => {
                write!(
                    f,
                    "after {received} of the 2 bytes of its username/password answer"
                )
            }
            Awaiting::Reply { received: 0, .. } => f.write_str("before replying to the request"),
            Awaiting::Reply {
                received,
                total: Some(total),
            } => write!(f, "after {received} of the {total} bytes of its reply"),
            Awaiting::Reply { received: 1, .. } => f.write_str("after 1 byte of its reply"),
            Awaiting::Reply { received, .. } => write!(f, "after {received} bytes of its reply"),
            Awaiting::Nothing => f.write_str("during the SOCKS5 handshake"),
        }
    }
}

// Inline on purpose: the handshake must not allocate, so no Box for the name.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for VER METHOD (RFC 1928 §3).
    Method,
    /// Waiting for VER STATUS (RFC 1929 §2).
    Auth,
    /// Waiting for VER REP RSV ATYP BND.ADDR BND.PORT (RFC 1928 §6).
    Reply,
    Done(TargetAddr),
    Failed(Error),
}

/// A SOCKS5 client handshake, sans I/O.
///
/// ```
/// use laysocks_proto::{ClientHandshake, ClientStatus, TargetAddr};
/// let target = TargetAddr::from("192.0.2.10:80".parse::<std::net::SocketAddr>().unwrap());
/// let mut hs = ClientHandshake::new(&target, None);
/// assert_eq!(hs.pending_output(), &[5, 1, 0]);
/// hs.consume_output(3);
/// assert_eq!(hs.bytes_needed(), 2);
/// hs.handle_input(&[5, 0]).unwrap();
/// assert_eq!(hs.pending_output(), &[5, 1, 0, 1, 192, 0, 2, 10, 0, 80]);
/// hs.consume_output(10);
/// assert_eq!(hs.bytes_needed(), 5);
/// // The reply, followed by application data that must stay unread.
/// let from_proxy = [5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38, b'H', b'I'];
/// assert_eq!(hs.handle_input(&from_proxy).unwrap(), 5);
/// assert_eq!(hs.bytes_needed(), 5);
/// assert_eq!(hs.handle_input(&from_proxy[5..]).unwrap(), 5);
/// assert_eq!(hs.bytes_needed(), 0);
/// assert!(matches!(hs.status(), ClientStatus::Done(_)));
/// ```
#[derive(Clone)]
pub struct ClientHandshake {
    /// greeting | RFC 1929 request (if credentials) | SOCKS request.
    out: [u8; OUT_CAP],
    greeting_end: usize,
    auth_end: usize,
    request_end: usize,
    /// `out[sent..released]` is what may be written now.
    sent: usize,
    released: usize,
    offered_user_pass: bool,
    /// Everything was released at once (see the module docs).
    pipelined: bool,
    /// The RFC 1929 request has been wiped from `out` (sent, or not needed).
    auth_scrubbed: bool,
    method: Option<u8>,
    rx: [u8; RX_CAP],
    rx_len: usize,
    /// Total length of the reply once its head is in.
    reply_len: usize,
    state: State,
}

impl ClientHandshake {
    /// CONNECT to `target`. Offers 0x00, plus 0x02 when `auth` is given.
    pub fn new(target: &TargetAddr, auth: Option<&Credentials>) -> ClientHandshake {
        ClientHandshake::with_command(Command::Connect, target, auth)
    }

    /// Any command. For [`Command::UdpAssociate`], `target` is the address the client will
    /// send from (often `0.0.0.0:0`) and the result is the relay's address. For
    /// [`Command::Bind`] only the first reply is read: the second one, sent when the peer
    /// connects, is the caller's business.
    pub fn with_command(
        command: Command,
        target: &TargetAddr,
        auth: Option<&Credentials>,
    ) -> ClientHandshake {
        ClientHandshake::build(command, target, auth, false)
    }

    /// Like [`ClientHandshake::with_command`], but the greeting, the RFC 1929 request and
    /// the SOCKS request are all released at once, to be written in one go. Offers only
    /// the one method it will use: 0x02 with credentials, else 0x00. A proxy that picks
    /// anything else is an [`Error::UnexpectedMethod`].
    pub fn pipelined(
        command: Command,
        target: &TargetAddr,
        auth: Option<&Credentials>,
    ) -> ClientHandshake {
        ClientHandshake::build(command, target, auth, true)
    }

    /// Whether this handshake was built by [`ClientHandshake::pipelined`].
    pub fn is_pipelined(&self) -> bool {
        self.pipelined
    }

    fn build(
        command: Command,
        target: &TargetAddr,
        auth: Option<&Credentials>,
        pipelined: bool,
    ) -> ClientHandshake {
        let mut out = [0u8; OUT_CAP];
        // RFC 1928 §3: VER NMETHODS METHODS.
        out[0] = VERSION;
        let greeting_end = match auth {
            None => {
                out[1] = 1;
                out[2] = METHOD_NO_AUTH;
                3
            }
            Some(_) if pipelined => {
                out[1] = 1;
                out[2] = METHOD_USER_PASS;
                3
            }
            Some(_) => {
                out[1] = 2;
                out[2] = METHOD_NO_AUTH;
                out[3] = METHOD_USER_PASS;
                4
            }
        };
        let auth_end = match auth {
            None => greeting_end,
            Some(c) => greeting_end + c.encode_request(&mut out[greeting_end..]),
        };
        // RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT.
        out[auth_end] = VERSION;
        out[auth_end + 1] = command as u8;
        out[auth_end + 2] = 0x00;
        let addr_len = target
            .encode(&mut out[auth_end + 3..])
            .expect("OUT_CAP holds the longest request");
        let request_end = auth_end + 3 + addr_len;
        ClientHandshake {
            out,
            greeting_end,
            auth_end,
            request_end,
            sent: 0,
            released: if pipelined { request_end } else { greeting_end },
            offered_user_pass: auth.is_some(),
            pipelined,
            auth_scrubbed: auth.is_none(),
            method: None,
            rx: [0; RX_CAP],
            rx_len: 0,
            reply_len: 0,
            state: State::Method,
        }
    }

    /// Bytes to write to the proxy now (empty when nothing is due).
    pub fn pending_output(&self) -> &[u8] {
        &self.out[self.sent..self.released]
    }

    /// `n` bytes of `pending_output()` were written (clamped to its length).
    pub fn consume_output(&mut self, n: usize) {
        self.sent += n.min(self.released - self.sent);
        if !self.auth_scrubbed && self.sent >= self.auth_end {
            self.scrub_auth();
        }
    }

    /// How many bytes to read from the proxy next. Never more than what remains of the
    /// proxy's current message, so reading exactly this many never swallows application
    /// data that follows the final reply. 0 when not waiting for input, which includes
    /// "the message this answer is for has not been written yet" (status is `NeedWrite`).
    pub fn bytes_needed(&self) -> usize {
        let (answers, need) = match self.state {
            State::Method => (self.greeting_end, 2),
            State::Auth => (self.auth_end, 2),
            State::Reply if self.rx_len < HEAD_LEN => (self.request_end, HEAD_LEN),
            State::Reply => (self.request_end, self.reply_len),
            State::Done(_) | State::Failed(_) => return 0,
        };
        if self.sent < answers {
            0
        } else {
            need - self.rx_len
        }
    }

    /// Feed bytes from the proxy; returns how many were consumed (never past the end of the
    /// final reply). One call consumes at most `bytes_needed()` bytes (the reply's head and
    /// its rest are two steps): call again with what is left while `status()` asks for
    /// input. On Err, status() becomes Failed(err) too, and nothing more is sent.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, Error> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        let need = self.bytes_needed();
        let take = need.min(input.len());
        self.rx[self.rx_len..self.rx_len + take].copy_from_slice(&input[..take]);
        self.rx_len += take;
        if take > 0 && take == need {
            if let Err(e) = self.on_message() {
                self.fail(e);
                return Err(e);
            }
        }
        Ok(take)
    }

    /// NeedWrite whenever pending_output() is non-empty.
    pub fn status(&self) -> ClientStatus {
        if self.sent < self.released {
            return ClientStatus::NeedWrite;
        }
        match self.state {
            State::Method | State::Auth | State::Reply => ClientStatus::NeedRead,
            State::Done(bound) => ClientStatus::Done(bound),
            State::Failed(e) => ClientStatus::Failed(e),
        }
    }

    /// What the handshake waits for from the proxy (see [`Awaiting`]).
    pub fn awaiting(&self) -> Awaiting {
        match self.state {
            State::Method => Awaiting::MethodSelection {
                received: self.rx_len,
            },
            State::Auth => Awaiting::AuthStatus {
                received: self.rx_len,
            },
            State::Reply => Awaiting::Reply {
                received: self.rx_len,
                total: (self.rx_len >= HEAD_LEN).then_some(self.reply_len),
            },
            State::Done(_) | State::Failed(_) => Awaiting::Nothing,
        }
    }

    /// The method the proxy chose (0x00 or 0x02), once it has and we accepted it.
    pub fn selected_method(&self) -> Option<u8> {
        self.method
    }

    /// A complete message (or the reply's head) is in `rx[..rx_len]`.
    fn on_message(&mut self) -> Result<(), Error> {
        match self.state {
            State::Method => {
                // RFC 1928 §3: VER METHOD.
                let (ver, method) = (self.rx[0], self.rx[1]);
                self.rx_len = 0;
                if ver != VERSION {
                    return Err(Error::BadVersion(ver));
                }
                match method {
                    METHOD_NONE_ACCEPTABLE => Err(Error::NoAcceptableMethods),
                    // Pipelined, we offered exactly one method and already sent what
                    // follows it: any other choice is a protocol error.
                    METHOD_NO_AUTH if self.pipelined && self.offered_user_pass => {
                        Err(Error::UnexpectedMethod(method))
                    }
                    METHOD_NO_AUTH if self.pipelined => {
                        self.method = Some(method);
                        self.state = State::Reply;
                        Ok(())
                    }
                    METHOD_NO_AUTH => {
                        self.method = Some(method);
                        // Move the request down over the unused RFC 1929 request.
                        let old_end = self.request_end;
                        self.out
                            .copy_within(self.auth_end..old_end, self.greeting_end);
                        self.request_end = self.greeting_end + (old_end - self.auth_end);
                        self.auth_end = self.greeting_end;
                        self.out[self.request_end..old_end].fill(0);
                        self.auth_scrubbed = true;
                        self.released = self.request_end;
                        self.state = State::Reply;
                        Ok(())
                    }
                    METHOD_USER_PASS if self.offered_user_pass => {
                        self.method = Some(method);
                        // (Pipelined, everything is released already.)
                        self.released = self.released.max(self.auth_end);
                        self.state = State::Auth;
                        Ok(())
                    }
                    other => Err(Error::UnexpectedMethod(other)),
                }
            }
            State::Auth => {
                // RFC 1929 §2: VER STATUS; "a STATUS field of X'00' indicates success".
                let (ver, status) = (self.rx[0], self.rx[1]);
                self.rx_len = 0;
                if ver != AUTH_VERSION {
                    return Err(Error::BadAuthVersion(ver));
                }
                if status != 0x00 {
                    return Err(Error::AuthRejected(status));
                }
                self.released = self.request_end;
                self.state = State::Reply;
                Ok(())
            }
            State::Reply if self.rx_len == HEAD_LEN => {
                // RFC 1928 §6: VER REP RSV ATYP. RSV is ignored: some servers send junk.
                let head: [u8; HEAD_LEN] =
                    [self.rx[0], self.rx[1], self.rx[2], self.rx[3], self.rx[4]];
                if head[0] != VERSION {
                    return Err(Error::BadVersion(head[0]));
                }
                let code = ReplyCode::from_u8(head[1]);
                if code != ReplyCode::Succeeded {
                    return Err(Error::Reply(code));
                }
                self.reply_len = framed_len(&head)?;
                Ok(())
            }
            State::Reply => {
                let (bound, _) = TargetAddr::decode(&self.rx[3..self.reply_len])?
                    .expect("framed_len counted the whole address");
                self.state = State::Done(bound);
                Ok(())
            }
            State::Done(_) | State::Failed(_) => Ok(()),
        }
    }

    fn fail(&mut self, e: Error) {
        self.state = State::Failed(e);
        // Nothing more of ours belongs on this connection.
        self.released = self.sent;
        self.scrub_auth();
    }

    /// Wipe the RFC 1929 request (it holds the password) once it is no longer needed.
    fn scrub_auth(&mut self) {
        if !self.auth_scrubbed {
            self.auth_scrubbed = true;
            self.out[self.greeting_end..self.auth_end].fill(0);
        }
    }
}

impl fmt::Debug for ClientHandshake {
    /// State only: the buffers may hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("state", &self.state)
            .field("pending_output", &self.pending_output().len())
            .field("bytes_needed", &self.bytes_needed())
            .field("selected_method", &self.method)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::fuzzing::{check_client, run_client, Chunking, Outcome, Prng};
    use crate::testutil::*;

    #[test]
    fn awaiting_reads_as_the_end_of_a_sentence() {
        let cases = [
            (
                Awaiting::MethodSelection { received: 0 },
                "before answering the greeting",
            ),
            (
                Awaiting::AuthStatus { received: 1 },
                "after 1 of the 2 bytes of its username/password answer",
            ),
            (
                Awaiting::Reply {
                    received: 5,
                    total: Some(10),
                },
                "after 5 of the 10 bytes of its reply",
            ),
            (
                Awaiting::Reply {
                    received: 1,
                    total: None,
                },
                "after 1 byte of its reply",
            ),
            (Awaiting::Nothing, "during the SOCKS5 handshake"),
        ];
        for (at, want) in cases {
            assert_eq!(at.to_string(), want);
        }
    }

    /// Write everything that is pending, returning it.
    fn flush(hs: &mut ClientHandshake) -> Vec<u8> {
        let v = hs.pending_output().to_vec();
        hs.consume_output(v.len());
        v
    }

    /// Feed `input` in as many calls as it takes; returns how much was consumed.
    fn feed_all(hs: &mut ClientHandshake, input: &[u8]) -> usize {
        let mut off = 0;
        for _ in 0..input.len() + 1 {
            match hs.handle_input(&input[off..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => off += n,
            }
        }
        off
    }

    fn request_bytes(cmd: u8, t: &TargetAddr) -> Vec<u8> {
        let mut v = vec![5, cmd, 0];
        v.extend(addr_bytes(t));
        v
    }

    #[test]
    fn awaiting_says_where_the_exchange_stands() {
        let t = v4([203, 0, 113, 2], 80);
        let c = creds("user", "pass");
        let mut hs = ClientHandshake::new(&t, Some(&c));
        assert_eq!(hs.awaiting(), Awaiting::MethodSelection { received: 0 });
        flush(&mut hs);
        hs.handle_input(&[5]).unwrap();
        assert_eq!(hs.awaiting(), Awaiting::MethodSelection { received: 1 });
        hs.handle_input(&[2]).unwrap();
        assert_eq!(hs.awaiting(), Awaiting::AuthStatus { received: 0 });
        flush(&mut hs);
        hs.handle_input(&[1, 0]).unwrap();
        flush(&mut hs);
        let reply = reply_bytes(0, &v6("2001:db8::1", 1080));
        assert_eq!(
            hs.awaiting(),
            Awaiting::Reply {
                received: 0,
                total: None
            }
        );
        hs.handle_input(&reply[..4]).unwrap();
        assert_eq!(
            hs.awaiting(),
            Awaiting::Reply {
                received: 4,
                total: None
            }
        );
        hs.handle_input(&reply[4..5]).unwrap();
        hs.handle_input(&reply[5..12]).unwrap();
        assert_eq!(
            hs.awaiting(),
            Awaiting::Reply {
                received: 12,
                total: Some(22)
            }
        );
        hs.handle_input(&reply[12..]).unwrap();
        assert_eq!(hs.awaiting(), Awaiting::Nothing);
        let mut hs = ClientHandshake::new(&t, None);
        flush(&mut hs);
        assert!(hs.handle_input(&[4, 0]).is_err());
        assert_eq!(hs.awaiting(), Awaiting::Nothing);
    }

    #[test]
    fn pipelined_sends_everything_at_once() {
        let t = v4([203, 0, 113, 2], 80);
        let bound = v4([0, 0, 0, 0], 0);
        // No auth: greeting + request in one write, then the two answers.
        let mut hs = ClientHandshake::pipelined(Command::Connect, &t, None);
        assert!(hs.is_pipelined());
        let mut want = vec![5, 1, 0];
        want.extend(request_bytes(1, &t));
        assert_eq!(flush(&mut hs), want);
        assert_eq!(hs.bytes_needed(), 2);
        let mut answers = vec![5, 0];
        answers.extend(reply_bytes(0, &bound));
        answers.extend_from_slice(b"APP");
        assert_eq!(feed_all(&mut hs, &answers), answers.len() - 3);
        assert_eq!(hs.status(), ClientStatus::Done(bound));
        assert!(hs.pending_output().is_empty());

        // User/pass: only 0x02 is offered, and the RFC 1929 request follows at once.
        let c = creds("user", "pass");
        let mut hs = ClientHandshake::pipelined(Command::Connect, &t, Some(&c));
        let out = flush(&mut hs);
        let mut want = vec![5, 1, 2, 1, 4];
        want.extend_from_slice(b"user");
        want.push(4);
        want.extend_from_slice(b"pass");
        want.extend(request_bytes(1, &t));
        assert_eq!(out, want);
        let mut answers = vec![5, 2, 1, 0];
        answers.extend(reply_bytes(0, &bound));
        assert_eq!(feed_all(&mut hs, &answers), answers.len());
        assert_eq!(hs.status(), ClientStatus::Done(bound));
        assert_eq!(hs.selected_method(), Some(2));

        // A proxy that picks no-auth when we already sent credentials is refused.
        let mut hs = ClientHandshake::pipelined(Command::Connect, &t, Some(&c));
        flush(&mut hs);
        assert_eq!(hs.handle_input(&[5, 0]), Err(Error::UnexpectedMethod(0)));
    }

    #[test]
    fn pipelined_against_our_server() {
        use crate::server::{ServerAuth, ServerHandshake, ServerStatus};
        let c = creds("user", "pass");
        for (auth, sauth) in [(None, ServerAuth::NoAuth), (Some(&c), ServerAuth::UserPass)] {
            for target in targets() {
                let mut client = ClientHandshake::pipelined(Command::Connect, &target, auth);
                let mut server = ServerHandshake::new(sauth);
                // Everything the client sends arrives in one segment.
                let mut wire = flush(&mut client);
                let mut back = Vec::new();
                for _ in 0..16 {
                    match server.status() {
                        ServerStatus::NeedRead => {
                            let n = server.handle_input(&wire).unwrap();
                            wire.drain(..n);
                        }
                        ServerStatus::NeedWrite => {
                            back.extend_from_slice(server.pending_output());
                            let n = server.pending_output().len();
                            server.consume_output(n);
                        }
                        ServerStatus::CheckCredentials => server.accept_credentials(true),
                        ServerStatus::Request(r) => {
                            assert_eq!(r.target, target);
                            server.reply(ReplyCode::Succeeded, &v4([0, 0, 0, 0], 0));
                        }
                        ServerStatus::Done => break,
                        ServerStatus::Failed(e) => panic!("{e:?}"),
                    }
                }
                assert!(wire.is_empty());
                assert_eq!(feed_all(&mut client, &back), back.len());
                assert!(matches!(client.status(), ClientStatus::Done(_)));
            }
        }
    }

    #[test]
    fn greeting_bytes() {
        let t = v4([198, 51, 100, 1], 80);
        let hs = ClientHandshake::new(&t, None);
        assert_eq!(hs.pending_output(), &[5, 1, 0]);
        assert_eq!(hs.status(), ClientStatus::NeedWrite);
        assert_eq!(
            hs.bytes_needed(),
            0,
            "nothing to read before the greeting is out"
        );
        let c = creds("user", "pass");
        let hs = ClientHandshake::new(&t, Some(&c));
        assert_eq!(hs.pending_output(), &[5, 2, 0, 2]);
        assert_eq!(hs.selected_method(), None);
    }

    #[test]
    fn no_auth_handshake_byte_by_byte_for_every_atyp() {
        for target in targets() {
            for bound in targets() {
                let mut hs = ClientHandshake::new(&target, None);
                assert_eq!(flush(&mut hs), [5, 1, 0]);
                assert_eq!(hs.status(), ClientStatus::NeedRead);
                assert_eq!(hs.bytes_needed(), 2);
                assert_eq!(hs.handle_input(&[5]), Ok(1));
                assert_eq!(hs.bytes_needed(), 1);
                assert_eq!(hs.handle_input(&[0]), Ok(1));
                assert_eq!(hs.selected_method(), Some(0));
                assert_eq!(hs.status(), ClientStatus::NeedWrite);
                assert_eq!(hs.bytes_needed(), 0);
                assert_eq!(flush(&mut hs), request_bytes(1, &target));
                let reply = reply_bytes(0, &bound);
                // RFC 1928 §6: first VER REP RSV ATYP + one address octet ...
                assert_eq!(hs.bytes_needed(), 5);
                assert_eq!(hs.handle_input(&reply[..5]), Ok(5));
                // ... then exactly the rest.
                assert_eq!(hs.bytes_needed(), reply.len() - 5);
                for (i, b) in reply[5..].iter().enumerate() {
                    assert_eq!(hs.bytes_needed(), reply.len() - 5 - i);
                    assert_eq!(hs.handle_input(std::slice::from_ref(b)), Ok(1));
                }
                assert_eq!(hs.status(), ClientStatus::Done(bound));
                assert_eq!(hs.bytes_needed(), 0);
                assert!(hs.pending_output().is_empty());
            }
        }
    }

    #[test]
    fn reply_lengths_per_atyp() {
        let t = v4([198, 51, 100, 1], 80);
        for (head, rest) in [
            ([5, 0, 0, 1, 1], 5),
            ([5, 0, 0, 4, 1], 17),
            ([5, 0, 0, 3, 1], 3),
            ([5, 0, 0, 3, 255], 257),
        ] {
            let mut hs = ClientHandshake::new(&t, None);
            flush(&mut hs);
            hs.handle_input(&[5, 0]).unwrap();
            flush(&mut hs);
            assert_eq!(hs.handle_input(&head), Ok(5));
            assert_eq!(hs.bytes_needed(), rest);
        }
    }

    #[test]
    fn user_pass_handshake_bytes() {
        let t = dom(b"example.com", 443);
        let c = creds("alice", "s3cret");
        let mut hs = ClientHandshake::new(&t, Some(&c));
        assert_eq!(flush(&mut hs), [5, 2, 0, 2]);
        assert_eq!(hs.handle_input(&[5, 2]), Ok(2));
        assert_eq!(hs.selected_method(), Some(2));
        // RFC 1929 §2: VER ULEN UNAME PLEN PASSWD.
        assert_eq!(flush(&mut hs), b"\x01\x05alice\x06s3cret");
        assert_eq!(hs.bytes_needed(), 2);
        assert_eq!(hs.handle_input(&[1, 0]), Ok(2));
        assert_eq!(flush(&mut hs), b"\x05\x01\x00\x03\x0bexample.com\x01\xbb");
        let bound = v4([127, 0, 0, 1], 1080);
        feed_all(&mut hs, &reply_bytes(0, &bound));
        assert_eq!(hs.status(), ClientStatus::Done(bound));
    }

    #[test]
    fn credentials_offered_but_no_auth_chosen_sends_no_password() {
        let t = v4([198, 51, 100, 1], 80);
        let c = creds("alice", "s3cret");
        let mut hs = ClientHandshake::new(&t, Some(&c));
        flush(&mut hs);
        hs.handle_input(&[5, 0]).unwrap();
        assert_eq!(flush(&mut hs), request_bytes(1, &t));
        assert!(!contains(&hs.out, b"s3cret"), "password left in the buffer");
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn password_is_wiped_once_sent_or_failed() {
        let t = v4([198, 51, 100, 1], 80);
        let c = creds("alice", "s3cret");
        let mut hs = ClientHandshake::new(&t, Some(&c));
        assert!(contains(&hs.out, b"s3cret"));
        flush(&mut hs);
        hs.handle_input(&[5, 2]).unwrap();
        hs.consume_output(5);
        assert!(contains(&hs.out, b"s3cret"));
        flush(&mut hs);
        assert!(!contains(&hs.out, b"s3cret"));
        // Failing before it was sent wipes it too.
        let mut hs = ClientHandshake::new(&t, Some(&c));
        flush(&mut hs);
        assert!(hs.handle_input(&[5, 0xFF]).is_err());
        assert!(!contains(&hs.out, b"s3cret"));
        assert!(!format!("{hs:?}").contains("s3cret"));
    }

    #[test]
    fn commands_encode() {
        let t = v4([0, 0, 0, 0], 0);
        for (cmd, b) in [
            (Command::Connect, 1),
            (Command::Bind, 2),
            (Command::UdpAssociate, 3),
        ] {
            let mut hs = ClientHandshake::with_command(cmd, &t, None);
            flush(&mut hs);
            hs.handle_input(&[5, 0]).unwrap();
            assert_eq!(flush(&mut hs), request_bytes(b, &t));
            let relay = v4([127, 0, 0, 1], 40000);
            feed_all(&mut hs, &reply_bytes(0, &relay));
            assert_eq!(hs.status(), ClientStatus::Done(relay));
        }
    }

    /// Drive to the point where the reply is expected.
    fn at_reply(auth: bool) -> ClientHandshake {
        let t = v4([198, 51, 100, 1], 80);
        let c = creds("u", "p");
        let mut hs = ClientHandshake::new(&t, auth.then_some(&c));
        flush(&mut hs);
        if auth {
            hs.handle_input(&[5, 2]).unwrap();
            flush(&mut hs);
            hs.handle_input(&[1, 0]).unwrap();
        } else {
            hs.handle_input(&[5, 0]).unwrap();
        }
        flush(&mut hs);
        hs
    }

    fn assert_failed(hs: &mut ClientHandshake, r: Result<usize, Error>, e: Error) {
        assert_eq!(r, Err(e));
        assert_eq!(hs.status(), ClientStatus::Failed(e));
        assert_eq!(hs.bytes_needed(), 0);
        assert!(
            hs.pending_output().is_empty(),
            "nothing is sent after a failure"
        );
        // Sticky.
        assert_eq!(hs.handle_input(&[5, 0, 0, 1]), Err(e));
    }

    #[test]
    fn every_reply_code_is_a_named_error() {
        let kinds = [
            (1, ReplyCode::GeneralFailure, ErrorKind::ConnectionRefused),
            (2, ReplyCode::NotAllowed, ErrorKind::AccessDenied),
            (
                3,
                ReplyCode::NetworkUnreachable,
                ErrorKind::NetworkUnreachable,
            ),
            (4, ReplyCode::HostUnreachable, ErrorKind::HostUnreachable),
            (
                5,
                ReplyCode::ConnectionRefused,
                ErrorKind::ConnectionRefused,
            ),
            (6, ReplyCode::TtlExpired, ErrorKind::TimedOut),
            (7, ReplyCode::CommandNotSupported, ErrorKind::Unsupported),
            (
                8,
                ReplyCode::AddressTypeNotSupported,
                ErrorKind::Unsupported,
            ),
            (9, ReplyCode::Unassigned(9), ErrorKind::ProtocolError),
            (0xFF, ReplyCode::Unassigned(0xFF), ErrorKind::ProtocolError),
        ];
        for (rep, code, kind) in kinds {
            for auth in [false, true] {
                let mut hs = at_reply(auth);
                let r = hs.handle_input(&reply_bytes(rep, &v4([0, 0, 0, 0], 0))[..5]);
                assert_failed(&mut hs, r, Error::Reply(code));
                assert_eq!(Error::Reply(code).kind(), kind);
            }
        }
    }

    #[test]
    fn error_reply_with_junk_address_still_reports_the_code() {
        // Some servers send ATYP 0 with error replies; REP is what matters.
        let mut hs = at_reply(false);
        let r = hs.handle_input(&[5, 5, 0, 0, 0]);
        assert_failed(&mut hs, r, Error::Reply(ReplyCode::ConnectionRefused));
    }

    #[test]
    fn method_selection_errors() {
        let t = v4([198, 51, 100, 1], 80);
        let c = creds("u", "p");
        let cases: [(Option<&Credentials>, [u8; 2], Error); 9] = [
            (None, [4, 0], Error::BadVersion(4)),
            (None, [0, 0], Error::BadVersion(0)),
            (None, [5, 0xFF], Error::NoAcceptableMethods),
            (Some(&c), [5, 0xFF], Error::NoAcceptableMethods),
            (None, [5, 1], Error::UnexpectedMethod(1)),
            (None, [5, 2], Error::UnexpectedMethod(2)),
            (Some(&c), [5, 1], Error::UnexpectedMethod(1)),
            (Some(&c), [5, 3], Error::UnexpectedMethod(3)),
            (Some(&c), [5, 0x80], Error::UnexpectedMethod(0x80)),
        ];
        for (auth, input, e) in cases {
            let mut hs = ClientHandshake::new(&t, auth);
            flush(&mut hs);
            let r = hs.handle_input(&input);
            assert_failed(&mut hs, r, e);
            assert_eq!(hs.selected_method(), None);
        }
        assert_eq!(Error::NoAcceptableMethods.kind(), ErrorKind::AccessDenied);
    }

    #[test]
    fn auth_errors() {
        let t = v4([198, 51, 100, 1], 80);
        let c = creds("u", "p");
        for (input, e) in [
            ([5, 0], Error::BadAuthVersion(5)),
            ([0, 0], Error::BadAuthVersion(0)),
            ([1, 1], Error::AuthRejected(1)),
            ([1, 0xFF], Error::AuthRejected(0xFF)),
        ] {
            let mut hs = ClientHandshake::new(&t, Some(&c));
            flush(&mut hs);
            hs.handle_input(&[5, 2]).unwrap();
            flush(&mut hs);
            let r = hs.handle_input(&input);
            assert_failed(&mut hs, r, e);
        }
        assert_eq!(Error::AuthRejected(1).kind(), ErrorKind::AccessDenied);
    }

    #[test]
    fn reply_errors() {
        for (input, e) in [
            ([4, 0, 0, 1, 0], Error::BadVersion(4)),
            ([5, 0, 0, 0, 0], Error::BadAddressType(0)),
            ([5, 0, 0, 2, 0], Error::BadAddressType(2)),
            ([5, 0, 0, 5, 0], Error::BadAddressType(5)),
            ([5, 0, 0, 0xFF, 0], Error::BadAddressType(0xFF)),
            ([5, 0, 0, 3, 0], Error::EmptyDomain),
        ] {
            let mut hs = at_reply(false);
            let r = hs.handle_input(&input);
            assert_failed(&mut hs, r, e);
        }
    }

    #[test]
    fn rsv_is_ignored() {
        let mut hs = at_reply(false);
        let mut reply = reply_bytes(0, &v4([127, 0, 0, 1], 1));
        reply[2] = 0xAB;
        assert_eq!(feed_all(&mut hs, &reply), 10);
        assert_eq!(hs.status(), ClientStatus::Done(v4([127, 0, 0, 1], 1)));
    }

    #[test]
    fn application_data_after_the_reply_is_not_consumed() {
        for bound in targets() {
            for auth in [false, true] {
                let mut hs = at_reply(auth);
                let mut input = reply_bytes(0, &bound);
                let len = input.len();
                input.extend_from_slice(b"SSH-2.0-banner\r\n");
                assert_eq!(hs.handle_input(&input), Ok(5));
                assert_eq!(hs.handle_input(&input[5..]), Ok(len - 5));
                assert_eq!(hs.status(), ClientStatus::Done(bound));
                assert_eq!(hs.handle_input(&input[len..]), Ok(0));
            }
        }
    }

    #[test]
    fn nothing_is_read_before_the_question_is_sent() {
        let t = v4([198, 51, 100, 1], 80);
        let mut hs = ClientHandshake::new(&t, None);
        assert_eq!(hs.handle_input(&[5, 0]), Ok(0));
        hs.consume_output(2);
        assert_eq!(hs.pending_output(), &[0]);
        assert_eq!(hs.handle_input(&[5, 0]), Ok(0));
        hs.consume_output(1);
        // One call cannot run past a message whose follow-up is not written yet.
        let mut all = vec![5, 0];
        all.extend(reply_bytes(0, &t));
        assert_eq!(hs.handle_input(&all), Ok(2));
        assert_eq!(hs.handle_input(&all[2..]), Ok(0));
        flush(&mut hs);
        assert_eq!(feed_all(&mut hs, &all[2..]), 10);
    }

    #[test]
    fn consume_output_clamps() {
        let t = v4([198, 51, 100, 1], 80);
        let mut hs = ClientHandshake::new(&t, None);
        hs.consume_output(0);
        assert_eq!(hs.pending_output(), &[5, 1, 0]);
        hs.consume_output(1000);
        assert!(hs.pending_output().is_empty());
        assert_eq!(hs.status(), ClientStatus::NeedRead);
    }

    #[test]
    fn empty_input_is_a_no_op() {
        let mut hs = at_reply(true);
        assert_eq!(hs.handle_input(&[]), Ok(0));
        assert_eq!(hs.bytes_needed(), 5);
    }

    /// A complete proxy stream for `check_client`'s configuration byte `cfg`.
    fn proxy_stream(auth: bool, bound: &TargetAddr) -> Vec<u8> {
        let mut s = if auth { vec![5, 2, 1, 0] } else { vec![5, 0] };
        s.extend(reply_bytes(0, bound));
        s
    }

    #[test]
    fn every_two_way_split_of_every_handshake() {
        for cfg in 0..8u8 {
            let auth = cfg & 4 != 0;
            for bound in targets() {
                let (command, target, creds) = crate::fuzzing::client_config(cfg);
                let stream = proxy_stream(auth, &bound);
                for cut in 0..=stream.len() {
                    let mut hs = ClientHandshake::with_command(command, &target, creds.as_ref());
                    let mut pos = 0;
                    for part in [&stream[..cut], &stream[cut..]] {
                        let mut off = 0;
                        // Feed the part, writing whenever asked, until it is used up.
                        for _ in 0..10 {
                            flush(&mut hs);
                            if off == part.len() {
                                break;
                            }
                            let n = hs.handle_input(&part[off..]).unwrap();
                            off += n;
                            if off == part.len() {
                                break;
                            }
                        }
                        assert_eq!(off, part.len());
                        pos += off;
                    }
                    assert_eq!(pos, stream.len());
                    assert_eq!(hs.status(), ClientStatus::Done(bound), "cut {cut}");
                }
            }
        }
    }

    #[test]
    fn random_multi_splits_and_bytewise() {
        let mut rng = Prng::new(7);
        for cfg in 0..32u8 {
            for bound in targets() {
                let (command, target, creds) = crate::fuzzing::client_config(cfg);
                let mut stream = proxy_stream(cfg & 4 != 0, &bound);
                let hs_len = stream.len();
                stream.extend_from_slice(b"app data");
                for chunking in [
                    Chunking::Bytewise,
                    Chunking::Exact,
                    Chunking::All,
                    Chunking::Random(rng.next_u64()),
                    Chunking::Random(rng.next_u64()),
                    Chunking::Random(rng.next_u64()),
                ] {
                    let hs = ClientHandshake::with_command(command, &target, creds.as_ref());
                    let (out, _) = run_client(hs, &stream, chunking, rng.next_u64(), hs_len);
                    assert_eq!(
                        out,
                        Outcome::Done {
                            value: bound,
                            consumed: hs_len
                        },
                        "{chunking:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn oracle_agrees_on_every_prefix_and_corruption() {
        // Every prefix (truncation) and every single-byte corruption of valid streams.
        for cfg in [0u8, 1, 2, 3, 4, 7, 8, 16] {
            for bound in targets().into_iter().take(3) {
                let stream = proxy_stream(cfg & 4 != 0, &bound);
                for cut in 0..=stream.len() {
                    let mut d = vec![cfg, 3];
                    d.extend_from_slice(&stream[..cut]);
                    check_client(&d);
                }
                for i in 0..stream.len() {
                    for v in [0u8, 1, 2, 3, 4, 5, 0x7F, 0xFF] {
                        let mut d = vec![cfg, 9];
                        d.extend_from_slice(&stream);
                        d[2 + i] = v;
                        check_client(&d);
                    }
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Prng::new(0x5eed);
        for _ in 0..3000 {
            let len = rng.range(0, 300);
            let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            // Bias towards plausible prefixes so the fuzz reaches the later states.
            if len > 3 && rng.range(0, 1) == 0 {
                d[2] = 5;
                d[3] = [0, 2, 0xFF][rng.range(0, 2)];
            }
            check_client(&d);
        }
    }
}
