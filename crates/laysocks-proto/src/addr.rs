//! Addresses as SOCKS5 carries them: ATYP + ADDR + PORT (RFC 1928 §5).
//!
//! A target is an IP address *or a name*: sending the name (ATYP 0x03) is what keeps DNS
//! off the local network, so names are first-class here. [`DomainName`] stores its octets
//! inline (at most 255, the limit of its length byte), which keeps [`TargetAddr`] `Copy`
//! and the whole handshake free of heap allocation. Names are octets, not `str`: the RFC
//! does not say they are UTF-8, and a proxy may send anything back in BND.ADDR.

use crate::error::Error;
use crate::wire::{fmt_bytes, ATYP_DOMAIN, ATYP_V4, ATYP_V6};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A domain name of 1..=255 octets, stored inline (RFC 1928 §5: "the first octet of the
/// address field contains the number of octets of name that follow").
#[derive(Clone, Copy)]
pub struct DomainName {
    len: u8,
    buf: [u8; 255],
}

impl DomainName {
    /// Copy `name`; fails with [`Error::EmptyDomain`] or [`Error::DomainTooLong`].
    /// No other check is made: the proxy resolves the name, not us.
    pub fn new(name: &[u8]) -> Result<DomainName, Error> {
        if name.is_empty() {
            return Err(Error::EmptyDomain);
        }
        if name.len() > 255 {
            return Err(Error::DomainTooLong(name.len()));
        }
        let mut buf = [0u8; 255];
        buf[..name.len()].copy_from_slice(name);
        Ok(DomainName {
            len: name.len() as u8,
            buf,
        })
    }

    /// The name's octets (never empty).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for DomainName {}

impl Hash for DomainName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DomainName(\"")?;
        fmt_bytes(f, self.as_bytes())?;
        f.write_str("\")")
    }
}

/// DST.ADDR / BND.ADDR (RFC 1928 §5).
// Inline on purpose: the handshake must not allocate, so no Box for the name.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// ATYP 0x01.
    V4(Ipv4Addr),
    /// ATYP 0x04.
    V6(Ipv6Addr),
    /// ATYP 0x03.
    Domain(DomainName),
}

/// A SOCKS5 address with its port: what a request asks for, what a reply reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TargetAddr {
    pub host: Host,
    pub port: u16,
}

impl TargetAddr {
    /// The address as a socket address; `None` for a domain name.
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::V4(ip) => Some(SocketAddr::V4(SocketAddrV4::new(ip, self.port))),
            Host::V6(ip) => Some(SocketAddr::V6(SocketAddrV6::new(ip, self.port, 0, 0))),
            Host::Domain(_) => None,
        }
    }

    /// Length of the encoding: ATYP + ADDR + PORT.
    pub fn encoded_len(&self) -> usize {
        1 + match &self.host {
            Host::V4(_) => 4,
            Host::V6(_) => 16,
            Host::Domain(d) => 1 + d.as_bytes().len(),
        } + 2
    }

    /// Write ATYP ADDR PORT (RFC 1928 §5, port in network order) to the front of `out`.
    /// Returns the length written, or `None` (writing nothing) if `out` is too small.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.encoded_len();
        let out = out.get_mut(..n)?;
        match &self.host {
            Host::V4(ip) => {
                out[0] = ATYP_V4;
                out[1..5].copy_from_slice(&ip.octets());
            }
            Host::V6(ip) => {
                out[0] = ATYP_V6;
                out[1..17].copy_from_slice(&ip.octets());
            }
            Host::Domain(d) => {
                let name = d.as_bytes();
                out[0] = ATYP_DOMAIN;
                out[1] = name.len() as u8;
                out[2..2 + name.len()].copy_from_slice(name);
            }
        }
        out[n - 2..].copy_from_slice(&self.port.to_be_bytes());
        Some(n)
    }

    /// Parse ATYP ADDR PORT from the front of `input`.
    ///
    /// `Ok(None)`: `input` is a valid prefix, more bytes are needed.
    /// `Ok(Some((addr, used)))`: `used` bytes were the address; the rest is not looked at.
    /// Errors: [`Error::BadAddressType`], [`Error::EmptyDomain`].
    pub fn decode(input: &[u8]) -> Result<Option<(TargetAddr, usize)>, Error> {
        let Some(&atyp) = input.first() else {
            return Ok(None);
        };
        let (host, used) = match atyp {
            ATYP_V4 => {
                let Some(b) = input.get(1..5) else {
                    return Ok(None);
                };
                (Host::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), 5)
            }
            ATYP_V6 => {
                let Some(b) = input.get(1..17) else {
                    return Ok(None);
                };
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                (Host::V6(Ipv6Addr::from(o)), 17)
            }
            ATYP_DOMAIN => {
                let Some(&len) = input.get(1) else {
                    return Ok(None);
                };
                if len == 0 {
                    return Err(Error::EmptyDomain);
                }
                let Some(name) = input.get(2..2 + len as usize) else {
                    return Ok(None);
                };
                (Host::Domain(DomainName::new(name)?), 2 + len as usize)
            }
            other => return Err(Error::BadAddressType(other)),
        };
        let Some(p) = input.get(used..used + 2) else {
            return Ok(None);
        };
        let port = u16::from_be_bytes([p[0], p[1]]);
        Ok(Some((TargetAddr { host, port }, used + 2)))
    }
}

impl From<SocketAddr> for TargetAddr {
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what an `AF_INET6` socket uses for
    /// an IPv4 peer) becomes [`Host::V4`], so the proxy sees the target as it is.
    fn from(a: SocketAddr) -> Self {
        let host = match a {
            SocketAddr::V4(v4) => Host::V4(*v4.ip()),
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => Host::V4(v4),
                None => Host::V6(*v6.ip()),
            },
        };
        TargetAddr {
            host,
            port: a.port(),
        }
    }
}

impl fmt::Display for TargetAddr {
    /// `1.2.3.4:80`, `[2001:db8::1]:80`, `example.com:443` (non-printable name octets as
    /// `\xNN`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::V4(ip) => write!(f, "{ip}:{}", self.port),
            Host::V6(ip) => write!(f, "[{ip}]:{}", self.port),
            Host::Domain(d) => {
                fmt_bytes(f, d.as_bytes())?;
                write!(f, ":{}", self.port)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, port: u16) -> TargetAddr {
        TargetAddr {
            host: Host::Domain(DomainName::new(name.as_bytes()).unwrap()),
            port,
        }
    }

    #[test]
    fn domain_name_limits() {
        assert_eq!(DomainName::new(b""), Err(Error::EmptyDomain));
        assert_eq!(
            DomainName::new(&[b'a'; 256]),
            Err(Error::DomainTooLong(256))
        );
        assert_eq!(
            DomainName::new(&[b'a'; 255]).unwrap().as_bytes(),
            &[b'a'; 255][..]
        );
        assert_eq!(DomainName::new(b"x").unwrap().as_bytes(), b"x");
        // Equality looks at the name only, not at the unused tail of the buffer.
        assert_eq!(
            DomainName::new(b"ab").unwrap(),
            DomainName::new(b"ab").unwrap()
        );
        assert_ne!(
            DomainName::new(b"ab").unwrap(),
            DomainName::new(b"abc").unwrap()
        );
        assert_eq!(
            format!("{:?}", DomainName::new(b"a\x00b").unwrap()),
            "DomainName(\"a\\x00b\")"
        );
    }

    #[test]
    fn ipv4_bytes() {
        let a = TargetAddr::from("192.0.2.1:80".parse::<SocketAddr>().unwrap());
        let mut out = [0u8; 7];
        assert_eq!(a.encoded_len(), 7);
        assert_eq!(a.encode(&mut out), Some(7));
        assert_eq!(out, [0x01, 192, 0, 2, 1, 0x00, 0x50]);
        assert_eq!(TargetAddr::decode(&out), Ok(Some((a, 7))));
        assert_eq!(a.to_string(), "192.0.2.1:80");
        assert_eq!(a.to_socket_addr(), Some("192.0.2.1:80".parse().unwrap()));
    }

    #[test]
    fn ipv6_bytes() {
        let a = TargetAddr::from("[2001:db8::1]:443".parse::<SocketAddr>().unwrap());
        let mut out = [0u8; 19];
        assert_eq!(a.encode(&mut out), Some(19));
        let mut expect = [0u8; 19];
        expect[0] = 0x04;
        expect[1..5].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        expect[16] = 1;
        expect[17..].copy_from_slice(&[0x01, 0xbb]);
        assert_eq!(out, expect);
        assert_eq!(TargetAddr::decode(&out), Ok(Some((a, 19))));
        assert_eq!(a.to_string(), "[2001:db8::1]:443");
    }

    #[test]
    fn domain_bytes() {
        let a = domain("example.com", 443);
        let mut out = [0u8; 32];
        assert_eq!(a.encode(&mut out), Some(15));
        assert_eq!(&out[..15], b"\x03\x0bexample.com\x01\xbb");
        assert_eq!(TargetAddr::decode(&out[..15]), Ok(Some((a, 15))));
        assert_eq!(a.to_string(), "example.com:443");
        assert_eq!(a.to_socket_addr(), None);
        let long = domain(&"a".repeat(255), 1);
        assert_eq!(long.encoded_len(), 1 + 1 + 255 + 2);
    }

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let a = TargetAddr::from("[::ffff:198.51.100.7]:22".parse::<SocketAddr>().unwrap());
        assert_eq!(a.host, Host::V4(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(a.port, 22);
        // ::1 and the IPv4-compatible form are not mapped addresses.
        let b = TargetAddr::from("[::1]:22".parse::<SocketAddr>().unwrap());
        assert_eq!(b.host, Host::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn encode_into_short_buffer_fails_and_writes_nothing() {
        for a in [
            TargetAddr::from("192.0.2.1:80".parse::<SocketAddr>().unwrap()),
            TargetAddr::from("[2001:db8::1]:80".parse::<SocketAddr>().unwrap()),
            domain("example.com", 80),
        ] {
            for n in 0..a.encoded_len() {
                let mut out = vec![0xAA; n];
                assert_eq!(a.encode(&mut out), None);
                assert!(out.iter().all(|&b| b == 0xAA));
            }
        }
    }

    #[test]
    fn decode_every_prefix_asks_for_more() {
        for a in [
            TargetAddr::from("192.0.2.1:80".parse::<SocketAddr>().unwrap()),
            TargetAddr::from("[2001:db8::1]:80".parse::<SocketAddr>().unwrap()),
            domain("example.com", 80),
        ] {
            let mut out = [0u8; 64];
            let n = a.encode(&mut out).unwrap();
            for cut in 0..n {
                assert_eq!(TargetAddr::decode(&out[..cut]), Ok(None), "cut {cut}");
            }
            // Trailing bytes are not consumed.
            out[n] = 0x99;
            assert_eq!(TargetAddr::decode(&out[..n + 1]), Ok(Some((a, n))));
        }
    }

    #[test]
    fn decode_errors() {
        assert_eq!(TargetAddr::decode(&[0x00]), Err(Error::BadAddressType(0)));
        assert_eq!(
            TargetAddr::decode(&[0x02, 1, 2]),
            Err(Error::BadAddressType(2))
        );
        assert_eq!(
            TargetAddr::decode(&[0xFF]),
            Err(Error::BadAddressType(0xFF))
        );
        assert_eq!(
            TargetAddr::decode(&[0x03, 0x00, 0, 80]),
            Err(Error::EmptyDomain)
        );
    }

    #[test]
    fn display_escapes_odd_names() {
        assert_eq!(domain("a b", 1).to_string(), "a\\x20b:1");
    }
}
