//! The REP field of the reply (RFC 1928 §6) and the reply message itself.
//!
//! Codes are a named enum rather than a `u8` so that every place that reacts to a failure
//! handles each one on purpose; unassigned values (0x09–0xFF) are kept, not collapsed, so a
//! log line can still say what the proxy actually sent.

use crate::addr::TargetAddr;
use std::fmt;

/// RFC 1928 §6 REP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    /// X'00' succeeded.
    Succeeded,
    /// X'01' general SOCKS server failure.
    GeneralFailure,
    /// X'02' connection not allowed by ruleset.
    NotAllowed,
    /// X'03' Network unreachable.
    NetworkUnreachable,
    /// X'04' Host unreachable.
    HostUnreachable,
    /// X'05' Connection refused.
    ConnectionRefused,
    /// X'06' TTL expired.
    TtlExpired,
    /// X'07' Command not supported.
    CommandNotSupported,
    /// X'08' Address type not supported.
    AddressTypeNotSupported,
    /// X'09' to X'FF' unassigned.
    Unassigned(u8),
}

impl ReplyCode {
    /// Decode a REP octet; 0x09..=0xFF become [`ReplyCode::Unassigned`].
    pub fn from_u8(b: u8) -> Self {
        match b {
            0x00 => ReplyCode::Succeeded,
            0x01 => ReplyCode::GeneralFailure,
            0x02 => ReplyCode::NotAllowed,
            0x03 => ReplyCode::NetworkUnreachable,
            0x04 => ReplyCode::HostUnreachable,
            0x05 => ReplyCode::ConnectionRefused,
            0x06 => ReplyCode::TtlExpired,
            0x07 => ReplyCode::CommandNotSupported,
            0x08 => ReplyCode::AddressTypeNotSupported,
            other => ReplyCode::Unassigned(other),
        }
    }

    /// The REP octet.
    pub fn as_u8(self) -> u8 {
        match self {
            ReplyCode::Succeeded => 0x00,
            ReplyCode::GeneralFailure => 0x01,
            ReplyCode::NotAllowed => 0x02,
            ReplyCode::NetworkUnreachable => 0x03,
            ReplyCode::HostUnreachable => 0x04,
            ReplyCode::ConnectionRefused => 0x05,
            ReplyCode::TtlExpired => 0x06,
            ReplyCode::CommandNotSupported => 0x07,
            ReplyCode::AddressTypeNotSupported => 0x08,
            ReplyCode::Unassigned(b) => b,
        }
    }
}

impl fmt::Display for ReplyCode {
    /// The RFC's wording (in lower case, to sit inside a sentence).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ReplyCode::Succeeded => "succeeded",
            ReplyCode::GeneralFailure => "general SOCKS server failure",
            ReplyCode::NotAllowed => "connection not allowed by ruleset",
            ReplyCode::NetworkUnreachable => "network unreachable",
            ReplyCode::HostUnreachable => "host unreachable",
            ReplyCode::ConnectionRefused => "connection refused",
            ReplyCode::TtlExpired => "TTL expired",
            ReplyCode::CommandNotSupported => "command not supported",
            ReplyCode::AddressTypeNotSupported => "address type not supported",
            ReplyCode::Unassigned(b) => return write!(f, "unassigned reply code {b:#04x}"),
        };
        f.write_str(s)
    }
}

/// RFC 1928 §6: VER REP RSV(0x00) ATYP BND.ADDR BND.PORT. Returns the length written, or
/// `None` if `out` is too small (callers size `out` with `wire::MAX_REQUEST_LEN`).
pub(crate) fn encode_reply(code: ReplyCode, bound: &TargetAddr, out: &mut [u8]) -> Option<usize> {
    if out.len() < 3 {
        return None;
    }
    let n = bound.encode(&mut out[3..])?;
    out[0] = crate::wire::VERSION;
    out[1] = code.as_u8();
    out[2] = 0x00;
    Some(3 + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn every_code_round_trips() {
        for b in 0..=255u8 {
            let c = ReplyCode::from_u8(b);
            assert_eq!(c.as_u8(), b);
            assert_eq!(matches!(c, ReplyCode::Unassigned(_)), b > 8);
        }
    }

    #[test]
    fn named_codes() {
        let named = [
            ReplyCode::Succeeded,
            ReplyCode::GeneralFailure,
            ReplyCode::NotAllowed,
            ReplyCode::NetworkUnreachable,
            ReplyCode::HostUnreachable,
            ReplyCode::ConnectionRefused,
            ReplyCode::TtlExpired,
            ReplyCode::CommandNotSupported,
            ReplyCode::AddressTypeNotSupported,
        ];
        for (i, c) in named.iter().enumerate() {
            assert_eq!(c.as_u8() as usize, i);
            assert_eq!(ReplyCode::from_u8(i as u8), *c);
        }
        assert_eq!(ReplyCode::TtlExpired.to_string(), "TTL expired");
        assert_eq!(
            ReplyCode::Unassigned(0x09).to_string(),
            "unassigned reply code 0x09"
        );
    }

    #[test]
    fn reply_bytes() {
        let bound = TargetAddr::from(std::net::SocketAddr::from((
            Ipv4Addr::new(127, 0, 0, 1),
            1080,
        )));
        let mut out = [0u8; 16];
        let n = encode_reply(ReplyCode::HostUnreachable, &bound, &mut out).unwrap();
        assert_eq!(&out[..n], &[5, 4, 0, 1, 127, 0, 0, 1, 0x04, 0x38]);
        assert_eq!(
            encode_reply(ReplyCode::Succeeded, &bound, &mut out[..9]),
            None
        );
        assert_eq!(
            encode_reply(ReplyCode::Succeeded, &bound, &mut out[..2]),
            None
        );
    }
}
