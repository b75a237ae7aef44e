//! Constants of the SOCKS5 wire format and the largest size of each message.
//!
//! Kept in one place so that the inline buffers of the client and the server are sized from
//! the RFC's own limits (a length byte caps every variable field at 255 octets) and no
//! message can ever need a heap allocation.

use crate::error::Error;
use std::fmt;

/// RFC 1928 §3: VER of every SOCKS5 message except the RFC 1929 sub-negotiation.
pub(crate) const VERSION: u8 = 0x05;
/// RFC 1929 §2: VER of the username/password sub-negotiation.
pub(crate) const AUTH_VERSION: u8 = 0x01;
/// RFC 1928 §3: NO AUTHENTICATION REQUIRED.
pub(crate) const METHOD_NO_AUTH: u8 = 0x00;
/// RFC 1928 §3: USERNAME/PASSWORD (RFC 1929).
pub(crate) const METHOD_USER_PASS: u8 = 0x02;
/// RFC 1928 §3: NO ACCEPTABLE METHODS.
pub(crate) const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;

/// RFC 1928 §5 address types.
pub(crate) const ATYP_V4: u8 = 0x01;
pub(crate) const ATYP_DOMAIN: u8 = 0x03;
pub(crate) const ATYP_V6: u8 = 0x04;

/// ATYP + the longest address (length byte + 255 octets) + PORT.
pub(crate) const MAX_ADDR_LEN: usize = 1 + 1 + 255 + 2;
/// VER CMD RSV + address (§4); a reply has the same shape (VER REP RSV + address, §6).
pub(crate) const MAX_REQUEST_LEN: usize = 3 + MAX_ADDR_LEN;
/// VER NMETHODS METHODS(1..=255) (§3).
pub(crate) const MAX_GREETING_LEN: usize = 2 + 255;
/// VER ULEN UNAME PLEN PASSWD (RFC 1929 §2).
pub(crate) const MAX_AUTH_REQUEST_LEN: usize = 1 + 1 + 255 + 1 + 255;
/// What a reply or request header must hold before its length is known: VER CMD/REP RSV
/// ATYP and the first address octet (for ATYP 0x03 that octet is the name's length).
pub(crate) const HEAD_LEN: usize = 5;

/// RFC 1928 §4 CMD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// CONNECT: a TCP stream to the target.
    Connect = 1,
    /// BIND: the proxy listens for one inbound connection (FTP-style).
    Bind = 2,
    /// UDP ASSOCIATE: the proxy relays datagrams (§7).
    UdpAssociate = 3,
}

impl Command {
    pub(crate) fn from_u8(b: u8) -> Result<Command, Error> {
        match b {
            1 => Ok(Command::Connect),
            2 => Ok(Command::Bind),
            3 => Ok(Command::UdpAssociate),
            other => Err(Error::UnsupportedCommand(other)),
        }
    }
}

/// Total length of a request or reply whose first [`HEAD_LEN`] bytes are `head`, or the
/// error for an unknown address type. RFC 1928 §4/§6: the address's length follows from
/// ATYP, and for a domain from its first octet.
pub(crate) fn framed_len(head: &[u8; HEAD_LEN]) -> Result<usize, Error> {
    let addr = match head[3] {
        ATYP_V4 => 4,
        ATYP_V6 => 16,
        ATYP_DOMAIN if head[4] == 0 => return Err(Error::EmptyDomain),
        ATYP_DOMAIN => 1 + head[4] as usize,
        other => return Err(Error::BadAddressType(other)),
    };
    Ok(3 + 1 + addr + 2)
}

/// `0x0a`-style formatting without allocating.
pub(crate) fn fmt_hex(f: &mut fmt::Formatter<'_>, b: u8) -> fmt::Result {
    write!(f, "{b:#04x}")
}

/// Bytes of a name or username for humans: printable ASCII as is, the rest as `\xNN`.
pub(crate) fn fmt_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' {
            fmt::Write::write_char(f, b as char)?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_codes() {
        assert_eq!(Command::Connect as u8, 1);
        assert_eq!(Command::Bind as u8, 2);
        assert_eq!(Command::UdpAssociate as u8, 3);
        for b in 0..=255u8 {
            match Command::from_u8(b) {
                Ok(c) => assert_eq!(c as u8, b),
                Err(e) => {
                    assert!(!(1..=3).contains(&b));
                    assert_eq!(e, Error::UnsupportedCommand(b));
                }
            }
        }
    }

    #[test]
    fn framed_lengths() {
        assert_eq!(framed_len(&[5, 0, 0, 1, 9]), Ok(10));
        assert_eq!(framed_len(&[5, 0, 0, 4, 9]), Ok(22));
        assert_eq!(framed_len(&[5, 0, 0, 3, 1]), Ok(8));
        assert_eq!(framed_len(&[5, 0, 0, 3, 255]), Ok(MAX_REQUEST_LEN));
        assert_eq!(framed_len(&[5, 0, 0, 3, 0]), Err(Error::EmptyDomain));
        assert_eq!(framed_len(&[5, 0, 0, 2, 0]), Err(Error::BadAddressType(2)));
        assert_eq!(framed_len(&[5, 0, 0, 0, 0]), Err(Error::BadAddressType(0)));
    }
}
