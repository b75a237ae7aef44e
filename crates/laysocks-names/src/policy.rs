//! Which names stay local, read the same way by the preload layer and the guard's DNS
//! responder (DESIGN §4), so that a program gets the same answer whether libc or its
//! own resolver asked: `/etc/hosts` (hosts(5)), the configured `direct_names`, and the
//! `dns_server` setting.
//!
//! Pure functions over text already read: each side reads the files its own way (the
//! preload layer must not use `std::fs` inside a hook; the supervisor may).

use std::net::{IpAddr, SocketAddr};

use laysocks_proto::{DomainName, Host, TargetAddr};

/// The `direct_names` entries in the form names are compared in: lower case, a leading
/// dot dropped, empty ones left out.
pub fn direct_list(entries: &[String]) -> Vec<Vec<u8>> {
    entries
        .iter()
        .map(|n| n.trim_start_matches('.').to_ascii_lowercase().into_bytes())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether the normalised name `norm` is an entry of `list` or under one.
pub fn is_direct(norm: &[u8], list: &[Vec<u8>]) -> bool {
    list.iter()
        .any(|d| norm == *d || (norm.ends_with(d) && norm[norm.len() - d.len() - 1] == b'.'))
}

/// `localhost` and the names under it (RFC 6761 §6.3): loopback, never asked of DNS.
pub fn is_localhost(norm: &[u8]) -> bool {
    norm == b"localhost" || norm.ends_with(b".localhost")
}

/// `host[:port]` or `[v6]:port`, port 53 when absent: the `dns_server` setting.
pub fn parse_server(s: &str) -> Option<TargetAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.into());
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Some(SocketAddr::new(ip, 53).into());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (s, 53),
    };
    let name = DomainName::new(host.as_bytes()).ok()?;
    Some(TargetAddr {
        host: Host::Domain(name),
        port,
    })
}

/// The entries of a hosts(5) file: address, then its names. Comments (`#` to the end
/// of the line) and lines without a valid address are skipped; a `%scope` on an IPv6
/// address is accepted (glibc does) and dropped.
pub fn hosts_lines(text: &[u8]) -> impl Iterator<Item = (IpAddr, Vec<&[u8]>)> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.split(|&b| b == b'#').next().unwrap_or(b"");
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let addr = std::str::from_utf8(fields.next()?).ok()?;
        let addr = addr.split('%').next()?.parse::<IpAddr>().ok()?;
        Some((addr, fields.collect()))
    })
}

fn names_match(entry: &[u8], norm: &[u8]) -> bool {
    let entry = entry.strip_suffix(b".").unwrap_or(entry);
    entry.eq_ignore_ascii_case(norm)
}

/// The families the hosts file has addresses of for `norm`, if it has the name at all.
pub fn hosts_families(text: &[u8], norm: &[u8]) -> Option<(bool, bool)> {
    let mut found = None;
    for (addr, names) in hosts_lines(text) {
        if names.iter().any(|n| names_match(n, norm)) {
            let (v4, v6) = found.get_or_insert((false, false));
            match addr {
                IpAddr::V4(_) => *v4 = true,
                IpAddr::V6(_) => *v6 = true,
            }
        }
    }
    found
}

/// Every address the hosts file gives `norm`, in file order, without repeats.
pub fn hosts_addresses(text: &[u8], norm: &[u8]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (addr, names) in hosts_lines(text) {
        if names.iter().any(|n| names_match(n, norm)) && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Whether the hosts file names `ip` (IPv4-mapped addresses count as IPv4).
pub fn hosts_has_address(text: &[u8], ip: IpAddr) -> bool {
    hosts_name_of(text, ip).is_some()
}

/// The canonical name (the first name of the first line) the hosts file gives `ip`.
pub fn hosts_name_of(text: &[u8], ip: IpAddr) -> Option<Vec<u8>> {
    let ip = laysocks_config::net::canonical(ip);
    hosts_lines(text)
        .find(|(a, names)| !names.is_empty() && laysocks_config::net::canonical(*a) == ip)
        .map(|(_, names)| {
            let n = names[0];
            n.strip_suffix(b".").unwrap_or(n).to_vec()
        })
}

/// The first `nameserver` of a resolv.conf(5) text, port 53; the local machine when
/// there is none ("the default is to use the name server on the local machine").
pub fn first_nameserver(text: &[u8]) -> SocketAddr {
    let found = text.split(|&b| b == b'\n').find_map(|line| {
        let mut f = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        if f.next()? != b"nameserver" {
            return None;
        }
        let addr = std::str::from_utf8(f.next()?).ok()?;
        addr.split('%').next()?.parse::<IpAddr>().ok()
    });
    SocketAddr::new(
        found.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        53,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &[u8] = b"127.0.0.1\tlocalhost\n::1 localhost ip6-localhost # comment\n\
        203.0.113.2 target.test Target-Alias.test.\n# 203.0.113.9 commented.test\n\
        2001:db8:2::2 target6.test\nnot-an-address junk.test\n203.0.113.3 target.test\n\
        fe80::1%eth0 link.test\n";

    #[test]
    fn hosts_file_names_families_and_addresses() {
        assert_eq!(hosts_families(HOSTS, b"localhost"), Some((true, true)));
        assert_eq!(hosts_families(HOSTS, b"target.test"), Some((true, false)));
        assert_eq!(
            hosts_families(HOSTS, b"target-alias.test"),
            Some((true, false))
        );
        assert_eq!(hosts_families(HOSTS, b"target6.test"), Some((false, true)));
        assert_eq!(hosts_families(HOSTS, b"commented.test"), None);
        assert_eq!(hosts_families(HOSTS, b"junk.test"), None);
        assert_eq!(
            hosts_addresses(HOSTS, b"target.test"),
            [
                "203.0.113.2".parse::<IpAddr>().unwrap(),
                "203.0.113.3".parse().unwrap()
            ]
        );
        assert_eq!(
            hosts_addresses(HOSTS, b"link.test"),
            ["fe80::1".parse::<IpAddr>().unwrap()]
        );
        assert!(hosts_has_address(HOSTS, "203.0.113.2".parse().unwrap()));
        assert!(hosts_has_address(
            HOSTS,
            "::ffff:203.0.113.2".parse().unwrap()
        ));
        assert!(!hosts_has_address(HOSTS, "203.0.113.9".parse().unwrap()));
        assert_eq!(
            hosts_name_of(HOSTS, "203.0.113.2".parse().unwrap()).unwrap(),
            b"target.test"
        );
        assert_eq!(
            hosts_name_of(HOSTS, "::1".parse().unwrap()).unwrap(),
            b"localhost"
        );
    }

    #[test]
    fn dns_server_forms() {
        assert_eq!(
            parse_server("203.0.113.2:53").unwrap().to_string(),
            "203.0.113.2:53"
        );
        assert_eq!(
            parse_server("203.0.113.2").unwrap().to_string(),
            "203.0.113.2:53"
        );
        assert_eq!(
            parse_server("[2001:db8::1]:5353").unwrap().to_string(),
            "[2001:db8::1]:5353"
        );
        assert_eq!(parse_server("dns.test").unwrap().to_string(), "dns.test:53");
        assert_eq!(
            parse_server("dns.test:54").unwrap().to_string(),
            "dns.test:54"
        );
        assert!(parse_server("dns.test:x").is_none());
    }

    #[test]
    fn direct_names_and_localhost() {
        let list = direct_list(&[".corp.test".into(), "Intra".into(), ".".into()]);
        assert_eq!(list, [b"corp.test".to_vec(), b"intra".to_vec()]);
        assert!(is_direct(b"corp.test", &list));
        assert!(is_direct(b"a.b.corp.test", &list));
        assert!(is_direct(b"intra", &list));
        assert!(!is_direct(b"notcorp.test", &list));
        assert!(!is_direct(b"test", &list));
        assert!(is_localhost(b"localhost") && is_localhost(b"db.localhost"));
        assert!(!is_localhost(b"notlocalhost"));
    }

    #[test]
    fn resolv_conf_first_nameserver() {
        let t = b"# generated\nsearch example.test\noptions timeout:1\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n";
        assert_eq!(first_nameserver(t), "127.0.0.53:53".parse().unwrap());
        assert_eq!(
            first_nameserver(b"nameserver fe80::1%eth0\n"),
            "[fe80::1]:53".parse().unwrap()
        );
        assert_eq!(
            first_nameserver(b"nameserver bogus\n"),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(first_nameserver(b""), "127.0.0.1:53".parse().unwrap());
    }
}
