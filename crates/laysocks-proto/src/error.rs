//! Errors of the engine and the one question a caller asks of them: what would a direct
//! connect have failed with?
//!
//! The preload layer must make a proxied connect fail the way a direct one would (an app
//! that retries on `ECONNREFUSED` but gives up on `EACCES` must keep doing so), so every
//! [`Error`] carries an [`ErrorKind`] that names the errno family without this crate
//! depending on libc. The mapping of reply codes follows RFC 1928 §6.

use crate::reply::ReplyCode;
use crate::wire::fmt_hex;
use std::fmt;

/// What a direct connect would have failed with; the preload layer maps it to errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `ECONNREFUSED`: REP 0x01 (general failure) and 0x05 (connection refused).
    ConnectionRefused,
    /// `ENETUNREACH`: REP 0x03.
    NetworkUnreachable,
    /// `EHOSTUNREACH`: REP 0x04.
    HostUnreachable,
    /// `ETIMEDOUT`: REP 0x06 (TTL expired).
    TimedOut,
    /// `EACCES`: REP 0x02 (not allowed by ruleset), authentication rejected, no acceptable
    /// methods, credentials that RFC 1929 cannot carry.
    AccessDenied,
    /// `EAFNOSUPPORT`-like: REP 0x07 (command), 0x08 (address type), a name too long for
    /// ATYP 0x03, a fragmented UDP datagram.
    Unsupported,
    /// `EPROTO`: garbage, bad versions, a method we did not offer, unassigned REP codes.
    ProtocolError,
}

/// Everything that can go wrong in a SOCKS5 exchange or when building its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// VER != 0x05 in a method selection, greeting, request or reply (RFC 1928 §3, §4, §6).
    BadVersion(u8),
    /// The server answered METHOD 0xFF: none of the offered methods is acceptable (§3).
    NoAcceptableMethods,
    /// The server chose a method the client did not offer (§3).
    UnexpectedMethod(u8),
    /// RFC 1929 §2: the sub-negotiation VER is not 0x01.
    BadAuthVersion(u8),
    /// RFC 1929 §2: STATUS != 0x00, the server refused the username/password.
    AuthRejected(u8),
    /// REP != 0x00 in the reply (RFC 1928 §6).
    Reply(ReplyCode),
    /// ATYP is not 0x01, 0x03 or 0x04 (RFC 1928 §5).
    BadAddressType(u8),
    /// A domain name of length 0 (§5 allows 1..=255 octets).
    EmptyDomain,
    /// A domain name longer than the 255 octets its length byte can express (§5).
    DomainTooLong(usize),
    /// A username or password that is empty or longer than 255 bytes (RFC 1929 §2).
    BadCredentials,
    /// Server side: CMD is not CONNECT, BIND or UDP ASSOCIATE (RFC 1928 §4).
    UnsupportedCommand(u8),
    /// Server side: a malformed greeting or request (e.g. NMETHODS = 0).
    BadRequest,
    /// A UDP datagram with FRAG != 0: we do not reassemble (RFC 1928 §7 makes it optional).
    FragmentedDatagram(u8),
    /// A UDP datagram shorter than its header says.
    Truncated,
}

impl Error {
    /// The client's words for this error in a proxy's answer: the engine's text,
    /// sharpened where the client knows more (the message is about the proxy's reply,
    /// and a proxy whose first byte is `H` is most likely an HTTP server or proxy). The
    /// preload layer and the guard both print it, so a proxy reads the same either way.
    pub fn explain(&self) -> String {
        match *self {
            Error::BadAddressType(a) => format!(
                "the proxy's reply has an unknown address type {a:#04x} (RFC 1928 §5 defines \
                 0x01 IPv4, 0x03 domain name, 0x04 IPv6)"
            ),
            Error::EmptyDomain => "the proxy's reply gives its bound address as a domain name \
                 of length 0 (RFC 1928 §5: 1 to 255 octets)"
                .into(),
            Error::BadVersion(b'H') => format!(
                "{self}; it starts like an HTTP response: is this an HTTP proxy rather than SOCKS5?"
            ),
            _ => format!("{self}"),
        }
    }

    /// The errno family a direct connect would have reported.
    pub fn kind(&self) -> ErrorKind {
        match *self {
            Error::BadVersion(_)
            | Error::UnexpectedMethod(_)
            | Error::BadAuthVersion(_)
            | Error::BadAddressType(_)
            | Error::EmptyDomain
            | Error::BadRequest
            | Error::Truncated => ErrorKind::ProtocolError,
            Error::NoAcceptableMethods | Error::AuthRejected(_) | Error::BadCredentials => {
                ErrorKind::AccessDenied
            }
            Error::DomainTooLong(_)
            | Error::UnsupportedCommand(_)
            | Error::FragmentedDatagram(_) => ErrorKind::Unsupported,
            Error::Reply(code) => reply_kind(code),
        }
    }
}

/// RFC 1928 §6 reply codes, as errno families (DESIGN.md §3.5).
fn reply_kind(code: ReplyCode) -> ErrorKind {
    match code {
        ReplyCode::GeneralFailure | ReplyCode::ConnectionRefused => ErrorKind::ConnectionRefused,
        ReplyCode::NotAllowed => ErrorKind::AccessDenied,
        ReplyCode::NetworkUnreachable => ErrorKind::NetworkUnreachable,
        ReplyCode::HostUnreachable => ErrorKind::HostUnreachable,
        ReplyCode::TtlExpired => ErrorKind::TimedOut,
        ReplyCode::CommandNotSupported | ReplyCode::AddressTypeNotSupported => {
            ErrorKind::Unsupported
        }
        // "Succeeded" is never an error; reaching here means a caller built one by hand.
        ReplyCode::Succeeded | ReplyCode::Unassigned(_) => ErrorKind::ProtocolError,
    }
}

impl fmt::Display for Error {
    /// One line, no credentials: safe for stderr and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadVersion(v) => {
                f.write_str("SOCKS5 peer sent protocol version ")?;
                fmt_hex(f, v)?;
                f.write_str(" instead of 0x05 (not a SOCKS5 peer?)")
            }
            Error::NoAcceptableMethods => f.write_str(
                "SOCKS5 proxy accepts none of the offered authentication methods \
                 (configure a username and password?)",
            ),
            Error::UnexpectedMethod(m) => {
                f.write_str("SOCKS5 proxy chose authentication method ")?;
                fmt_hex(f, m)?;
                f.write_str(", which was not offered")
            }
            Error::BadAuthVersion(v) => {
                f.write_str("SOCKS5 username/password exchange has version ")?;
                fmt_hex(f, v)?;
                f.write_str(" instead of 0x01")
            }
            Error::AuthRejected(s) => {
                f.write_str("SOCKS5 proxy rejected the username/password (status ")?;
                fmt_hex(f, s)?;
                f.write_str("); check the credentials")
            }
            Error::Reply(code) => write!(f, "SOCKS5 proxy replied: {code}"),
            Error::BadAddressType(a) => {
                f.write_str("SOCKS5 message has unknown address type ")?;
                fmt_hex(f, a)
            }
            Error::EmptyDomain => f.write_str("SOCKS5 domain name is empty"),
            Error::DomainTooLong(n) => {
                write!(
                    f,
                    "domain name is {n} bytes long; SOCKS5 carries at most 255"
                )
            }
            Error::BadCredentials => f.write_str(
                "SOCKS5 username and password must each be 1 to 255 bytes long (RFC 1929)",
            ),
            Error::UnsupportedCommand(c) => {
                f.write_str("SOCKS5 request has unsupported command ")?;
                fmt_hex(f, c)
            }
            Error::BadRequest => f.write_str("malformed SOCKS5 greeting or request"),
            Error::FragmentedDatagram(n) => write!(
                f,
                "SOCKS5 UDP datagram is fragment {n}; fragment reassembly is not supported"
            ),
            Error::Truncated => f.write_str("SOCKS5 UDP datagram is shorter than its header"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_map_to_errno_families() {
        let expect = [
            (0x01, ErrorKind::ConnectionRefused),
            (0x02, ErrorKind::AccessDenied),
            (0x03, ErrorKind::NetworkUnreachable),
            (0x04, ErrorKind::HostUnreachable),
            (0x05, ErrorKind::ConnectionRefused),
            (0x06, ErrorKind::TimedOut),
            (0x07, ErrorKind::Unsupported),
            (0x08, ErrorKind::Unsupported),
            (0x09, ErrorKind::ProtocolError),
            (0xFF, ErrorKind::ProtocolError),
        ];
        for (code, kind) in expect {
            assert_eq!(
                Error::Reply(ReplyCode::from_u8(code)).kind(),
                kind,
                "REP {code:#x}"
            );
        }
    }

    #[test]
    fn negotiation_errors_have_kinds() {
        assert_eq!(Error::NoAcceptableMethods.kind(), ErrorKind::AccessDenied);
        assert_eq!(Error::AuthRejected(1).kind(), ErrorKind::AccessDenied);
        assert_eq!(Error::BadVersion(4).kind(), ErrorKind::ProtocolError);
        assert_eq!(Error::UnexpectedMethod(1).kind(), ErrorKind::ProtocolError);
        assert_eq!(Error::BadAuthVersion(5).kind(), ErrorKind::ProtocolError);
        assert_eq!(Error::BadAddressType(2).kind(), ErrorKind::ProtocolError);
        assert_eq!(Error::FragmentedDatagram(1).kind(), ErrorKind::Unsupported);
        assert_eq!(Error::DomainTooLong(300).kind(), ErrorKind::Unsupported);
        assert_eq!(Error::UnsupportedCommand(9).kind(), ErrorKind::Unsupported);
        assert_eq!(Error::Truncated.kind(), ErrorKind::ProtocolError);
        assert_eq!(Error::BadRequest.kind(), ErrorKind::ProtocolError);
        assert_eq!(Error::BadCredentials.kind(), ErrorKind::AccessDenied);
        assert_eq!(Error::EmptyDomain.kind(), ErrorKind::ProtocolError);
    }

    #[test]
    fn display_is_one_line() {
        let all = [
            Error::BadVersion(4),
            Error::NoAcceptableMethods,
            Error::UnexpectedMethod(0x80),
            Error::BadAuthVersion(5),
            Error::AuthRejected(1),
            Error::Reply(ReplyCode::ConnectionRefused),
            Error::Reply(ReplyCode::Unassigned(0x42)),
            Error::BadAddressType(7),
            Error::EmptyDomain,
            Error::DomainTooLong(300),
            Error::BadCredentials,
            Error::UnsupportedCommand(9),
            Error::BadRequest,
            Error::FragmentedDatagram(2),
            Error::Truncated,
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
        }
        assert_eq!(
            Error::BadVersion(4).to_string(),
            "SOCKS5 peer sent protocol version 0x04 instead of 0x05 (not a SOCKS5 peer?)"
        );
        assert_eq!(
            Error::Reply(ReplyCode::HostUnreachable).to_string(),
            "SOCKS5 proxy replied: host unreachable"
        );
    }
}
