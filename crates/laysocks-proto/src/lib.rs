//! A sans-IO SOCKS5 engine: RFC 1928 (SOCKS Protocol Version 5) and RFC 1929
//! (Username/Password Authentication), client and server.
//!
//! # What it does
//!
//! The engine is shaped like `quinn-proto` and `rustls`: it never touches a socket or a
//! clock. The caller moves bytes:
//!
//! * [`ClientHandshake`] runs what the preload layer does inside `connect()`: method
//!   negotiation (0x00 no authentication, 0x02 username/password), the RFC 1929
//!   sub-negotiation, the request (CONNECT, or UDP ASSOCIATE / BIND) and the reply with the
//!   bound address. Ask it for [`ClientHandshake::pending_output`] to write, and for
//!   [`ClientHandshake::bytes_needed`] to read: that number is exact, so a driver that reads
//!   only that many bytes never takes application data that follows the proxy's reply out
//!   of the kernel's buffer.
//! * [`ServerHandshake`] is the other side, for `laysocks serve` and test servers. It hands
//!   the two decisions that need the outside world (credentials, carrying out the request)
//!   back to its caller.
//! * [`encode_udp_header`] / [`decode_udp_header`] wrap and unwrap UDP ASSOCIATE datagrams
//!   (RFC 1928 §7).
//!
//! Every failure is an [`Error`] with an [`ErrorKind`] saying what a direct connect would
//! have failed with, so the layer can hand the application the errno it expects.
//!
//! The handshake never allocates: addresses, credentials and messages live in fixed inline
//! buffers sized from the RFC's length fields (the longest client output is greeting +
//! RFC 1929 request + request, 779 bytes; the longest reply is 4 + 1 + 255 + 2 bytes). The
//! crate has no dependencies and no `unsafe`.
//!
//! # What it leaves out
//!
//! * BIND (§4) in the client beyond encoding the request and reading the first reply; the
//!   second reply (sent when the peer connects) is not parsed.
//! * GSSAPI (method 0x01, RFC 1961) and private methods (0x80–0xFE): never offered; a server
//!   that picks one is an [`Error::UnexpectedMethod`].
//! * UDP fragmentation (§7): datagrams with FRAG != 0 are refused, not reassembled.
//! * Pipelining the client's messages: each is sent after the answer it depends on, since
//!   common servers (microsocks) drop bytes that arrive before they expect them.
//! * SOCKS4/4a: a peer speaking another version gets [`Error::BadVersion`].
//! * Name resolution, timeouts and retries: the caller's business.
//!
//! # Layout
//!
//! `wire` (constants, [`Command`]), `addr` ([`TargetAddr`] and friends), `auth`
//! ([`Credentials`]), `reply` ([`ReplyCode`]), `error`, `client`, `server`, `udp`.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

mod addr;
mod auth;
mod client;
mod error;
mod reply;
mod server;
mod udp;
mod wire;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod pair_tests;
#[cfg(test)]
mod testutil;

pub use addr::{DomainName, Host, TargetAddr};
pub use auth::Credentials;
pub use client::{Awaiting, ClientHandshake, ClientStatus};
pub use error::{Error, ErrorKind};
pub use reply::ReplyCode;
pub use server::{Request, ServerAuth, ServerHandshake, ServerStatus};
pub use udp::{decode_udp_header, encode_udp_header, UdpHeader};
pub use wire::Command;
