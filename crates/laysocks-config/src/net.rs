//! Address ranges and exclusions: which destinations go direct instead of through the proxy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An IP network in CIDR notation, `198.51.100.0/24` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A network from an address and a prefix length; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than {max} bits"));
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Ok(IpNet { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies inside this network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is treated as the IPv4 address it carries, since that is
    /// where a connect to it goes.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl FromStr for IpNet {
    type Err = String;

    /// `a.b.c.d`, `a.b.c.d/n`, `x:y::z`, `x:y::z/n` (a bare address is a host route).
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR network"))?;
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("`{s}` has a bad prefix length"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        IpNet::new(addr, prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A destination that goes direct: a network and, optionally, one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclusion {
    pub net: IpNet,
    pub port: Option<u16>,
}

impl Exclusion {
    /// Whether a connect to `dest` is excluded from proxying.
    pub fn matches(&self, dest: SocketAddr) -> bool {
        self.net.contains(dest.ip()) && self.port.is_none_or(|p| p == dest.port())
    }
}

impl FromStr for Exclusion {
    type Err = String;

    /// `CIDR`, `CIDR:PORT`, `[IPv6-CIDR]:PORT` — e.g. `198.51.100.0/24:8080`,
    /// `[2001:db8::/32]:443`, `2001:db8::/32` (no port: IPv6 needs brackets for one).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not CIDR[:PORT] (e.g. 198.51.100.0/24:8080 or [2001:db8::/32]:443)")
        };
        let (net, port) = if let Some(rest) = s.strip_prefix('[') {
            let (net, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (net, port)
        } else if s.matches(':').count() == 1 {
            let (net, port) = s.split_once(':').ok_or_else(bad)?;
            (net, Some(port))
        } else {
            (s, None)
        };
        let net = net.parse::<IpNet>()?;
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
            None => None,
        };
        Ok(Exclusion { net, port })
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "[{}]:{}", self.net, p),
            None => write!(f, "[{}]", self.net),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let net: IpNet = "198.51.100.0/24".parse().unwrap();
        assert!(net.contains("198.51.100.7".parse().unwrap()));
        assert!(!net.contains("198.51.101.7".parse().unwrap()));
        assert!(net.contains("::ffff:198.51.100.9".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::2".parse().unwrap()));
        assert!(!v6.contains("2001:db9::2".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        assert_eq!(
            "203.0.113.77/24".parse::<IpNet>().unwrap().to_string(),
            "203.0.113.0/24"
        );
        assert!("1.2.3.4/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
    }

    #[test]
    fn exclusion_forms() {
        let e: Exclusion = "198.51.100.0/24:8080".parse().unwrap();
        assert!(e.matches("198.51.100.3:8080".parse().unwrap()));
        assert!(!e.matches("198.51.100.3:80".parse().unwrap()));
        let e: Exclusion = "[2001:db8::/32]:443".parse().unwrap();
        assert!(e.matches("[2001:db8::1]:443".parse().unwrap()));
        let e: Exclusion = "2001:db8::/32".parse().unwrap();
        assert!(e.matches("[2001:db8::1]:1".parse().unwrap()));
        let e: Exclusion = "203.0.113.5".parse().unwrap();
        assert!(e.matches("203.0.113.5:9".parse().unwrap()));
        assert!(!e.matches("203.0.113.6:9".parse().unwrap()));
        // Round trip through Display.
        for s in ["198.51.100.0/24:8080", "[2001:db8::/32]:443", "10.0.0.0/8"] {
            let e: Exclusion = s.parse().unwrap();
            assert_eq!(e.to_string().parse::<Exclusion>().unwrap(), e);
        }
        assert!("198.51.100.0/24:99999".parse::<Exclusion>().is_err());
    }
}
