//! Helpers for the unit tests: addresses, credentials, byte builders.

use crate::addr::{DomainName, Host, TargetAddr};
use crate::auth::Credentials;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) fn v4(a: [u8; 4], port: u16) -> TargetAddr {
    TargetAddr {
        host: Host::V4(Ipv4Addr::from(a)),
        port,
    }
}

pub(crate) fn v6(s: &str, port: u16) -> TargetAddr {
    TargetAddr {
        host: Host::V6(s.parse::<Ipv6Addr>().unwrap()),
        port,
    }
}

pub(crate) fn dom(name: &[u8], port: u16) -> TargetAddr {
    TargetAddr {
        host: Host::Domain(DomainName::new(name).unwrap()),
        port,
    }
}

pub(crate) fn creds(u: &str, p: &str) -> Credentials {
    Credentials::new(u.as_bytes(), p.as_bytes()).unwrap()
}

/// ATYP ADDR PORT of `a`.
pub(crate) fn addr_bytes(a: &TargetAddr) -> Vec<u8> {
    let mut v = vec![0u8; a.encoded_len()];
    a.encode(&mut v).unwrap();
    v
}

/// VER REP RSV ATYP ADDR PORT.
pub(crate) fn reply_bytes(rep: u8, bound: &TargetAddr) -> Vec<u8> {
    let mut v = vec![5, rep, 0];
    v.extend(addr_bytes(bound));
    v
}

/// The four targets every test walks through: one per ATYP, and the longest name.
pub(crate) fn targets() -> Vec<TargetAddr> {
    vec![
        v4([198, 51, 100, 1], 80),
        v6("2001:db8::1", 443),
        dom(b"example.com", 8080),
        dom(&[b'z'; 255], 1),
    ]
}
