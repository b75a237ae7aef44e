//! The UDP request header (RFC 1928 §7) that wraps every datagram sent to, and received
//! from, the relay of a UDP ASSOCIATE.
//!
//! +----+------+------+----------+----------+----------+
//! |RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
//! +----+------+------+----------+----------+----------+
//! | 2  |  1   |  1   | Variable |    2     | Variable |
//!
//! Fragmentation is optional in the RFC and nobody relies on it; a datagram with FRAG != 0
//! is refused with [`Error::FragmentedDatagram`] rather than half-reassembled ("an
//! implementation that does not support fragmentation MUST drop any datagram whose FRAG
//! field is other than X'00'"). Decoding borrows nothing and returns the payload offset so
//! the caller can hand the payload to the application without copying.

use crate::addr::TargetAddr;
use crate::error::Error;

/// A decoded UDP request header. `frag` is always 0 when returned by
/// [`decode_udp_header`]; the field exists so the header can be shown as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHeader {
    pub frag: u8,
    pub target: TargetAddr,
}

/// Write RSV(0x0000) FRAG(0x00) ATYP DST.ADDR DST.PORT to the front of `out`; the payload
/// goes right after. Returns the header length, or `None` if `out` is too small.
pub fn encode_udp_header(target: &TargetAddr, out: &mut [u8]) -> Option<usize> {
    if out.len() < 3 + target.encoded_len() {
        return None;
    }
    out[..3].fill(0);
    Some(3 + target.encode(&mut out[3..])?)
}

/// Parse the header of a datagram from the relay. Returns the header and the offset of the
/// payload. RSV is ignored (RFC 1928 §7 gives it no meaning to check).
pub fn decode_udp_header(datagram: &[u8]) -> Result<(UdpHeader, usize), Error> {
    if datagram.len() < 4 {
        return Err(Error::Truncated);
    }
    let frag = datagram[2];
    if frag != 0 {
        return Err(Error::FragmentedDatagram(frag));
    }
    match TargetAddr::decode(&datagram[3..])? {
        Some((target, used)) => Ok((UdpHeader { frag, target }, 3 + used)),
        None => Err(Error::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{DomainName, Host};
    use std::net::SocketAddr;

    #[test]
    fn ipv4_header_bytes() {
        let t = TargetAddr::from("198.51.100.5:53".parse::<SocketAddr>().unwrap());
        let mut out = [0xEEu8; 16];
        let n = encode_udp_header(&t, &mut out).unwrap();
        assert_eq!(&out[..n], &[0, 0, 0, 1, 198, 51, 100, 5, 0, 53]);
        out[n..n + 3].copy_from_slice(b"abc");
        let (h, off) = decode_udp_header(&out[..n + 3]).unwrap();
        assert_eq!(h, UdpHeader { frag: 0, target: t });
        assert_eq!(&out[off..n + 3], b"abc");
    }

    #[test]
    fn ipv6_and_domain_headers() {
        let t6 = TargetAddr::from("[2001:db8::53]:53".parse::<SocketAddr>().unwrap());
        let td = TargetAddr {
            host: Host::Domain(DomainName::new(b"dns.example").unwrap()),
            port: 53,
        };
        for t in [t6, td] {
            let mut out = [0u8; 300];
            let n = encode_udp_header(&t, &mut out).unwrap();
            assert_eq!(n, 3 + t.encoded_len());
            assert_eq!(
                decode_udp_header(&out[..n]),
                Ok((UdpHeader { frag: 0, target: t }, n))
            );
            for short in 0..n {
                assert_eq!(encode_udp_header(&t, &mut out[..short]), None);
            }
        }
        let mut out = [0u8; 64];
        let n = encode_udp_header(&td, &mut out).unwrap();
        assert_eq!(&out[..n], b"\x00\x00\x00\x03\x0bdns.example\x00\x35");
    }

    #[test]
    fn empty_payload_is_fine_and_rsv_is_ignored() {
        let (h, off) = decode_udp_header(&[0xAB, 0xCD, 0, 1, 127, 0, 0, 1, 0, 7]).unwrap();
        assert_eq!(off, 10);
        assert_eq!(h.target.to_string(), "127.0.0.1:7");
    }

    #[test]
    fn errors() {
        assert_eq!(decode_udp_header(&[]), Err(Error::Truncated));
        assert_eq!(decode_udp_header(&[0, 0, 0]), Err(Error::Truncated));
        assert_eq!(
            decode_udp_header(&[0, 0, 0, 1, 127, 0, 0, 1, 0]),
            Err(Error::Truncated)
        );
        assert_eq!(
            decode_udp_header(&[0, 0, 0, 3, 5, b'a']),
            Err(Error::Truncated)
        );
        assert_eq!(
            decode_udp_header(&[0, 0, 1, 1, 127, 0, 0, 1, 0, 7]),
            Err(Error::FragmentedDatagram(1))
        );
        assert_eq!(
            decode_udp_header(&[0, 0, 0x80, 1, 127, 0, 0, 1, 0, 7]),
            Err(Error::FragmentedDatagram(0x80))
        );
        assert_eq!(
            decode_udp_header(&[0, 0, 0, 9, 1, 2]),
            Err(Error::BadAddressType(9))
        );
        assert_eq!(
            decode_udp_header(&[0, 0, 0, 3, 0, 0, 1]),
            Err(Error::EmptyDomain)
        );
    }
}
