//! Proxy URLs: `socks5://[user[:pass]@]host:port` and `socks5h://…`.
//!
//! `socks5h` means "the proxy resolves names" (curl's convention); the difference only
//! matters once the layer answers name lookups itself (remote DNS). User and password
//! may be percent-encoded, as in any URL, so that `@`, `:` and `/` can appear in them.

use std::fmt;

/// The URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `socks5://`: names are resolved locally (by the program).
    Socks5,
    /// `socks5h://`: names are sent to the proxy.
    Socks5h,
}

/// Where the proxy is: a literal address or a host name the launcher resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyHost {
    Ip(std::net::IpAddr),
    Name(String),
}

impl fmt::Display for ProxyHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyHost::Ip(std::net::IpAddr::V6(a)) => write!(f, "[{a}]"),
            ProxyHost::Ip(a) => write!(f, "{a}"),
            ProxyHost::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed proxy URL. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: Scheme,
    pub host: ProxyHost,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The port a URL without one gets (RFC 1928 §3: "The SOCKS service is conventionally
/// located on TCP port 1080").
pub const DEFAULT_PORT: u16 = 1080;

impl ProxyUrl {
    /// Parses `socks5://[user[:pass]@]host[:port]` (IPv6 literals in brackets).
    /// The error is one sentence that says what is wrong, without the password.
    pub fn parse(input: &str) -> Result<Self, String> {
        let shown = redact(input);
        let (scheme, rest) = match input.split_once("://") {
            Some((s, r)) => (s, r),
            None => {
                return Err(format!(
                    "proxy URL `{shown}` has no scheme: write it as socks5://host:port"
                ))
            }
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "socks5" => Scheme::Socks5,
            "socks5h" => Scheme::Socks5h,
            other => {
                return Err(format!(
                    "proxy URL `{shown}` has scheme `{other}`: only socks5:// and socks5h:// are supported"
                ))
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "proxy URL `{shown}` has a path or query: write only socks5://[user[:pass]@]host:port"
            ));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u, None),
                };
                let user = percent_decode(user).ok_or_else(|| {
                    format!("proxy URL `{shown}` has a bad %-escape in the user name")
                })?;
                let pass = match pass {
                    Some(p) => Some(percent_decode(p).ok_or_else(|| {
                        format!("proxy URL `{shown}` has a bad %-escape in the password")
                    })?),
                    None => None,
                };
                if user.is_empty() {
                    return Err(format!("proxy URL `{shown}` has an empty user name"));
                }
                (Some(user), pass)
            }
        };
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| format!("proxy URL `{shown}` has a bad host or port"))?;
        if host.is_empty() {
            return Err(format!("proxy URL `{shown}` has no host"));
        }
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            ProxyHost::Ip(std::net::IpAddr::V6(v6.parse().map_err(|_| {
                format!("proxy URL `{shown}` has a bad IPv6 address `{v6}`")
            })?))
        } else if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            ProxyHost::Ip(ip.into())
        } else if host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            ProxyHost::Name(host.to_ascii_lowercase())
        } else {
            return Err(format!("proxy URL `{shown}` has a bad host name `{host}`"));
        };
        Ok(ProxyUrl {
            scheme,
            host,
            port,
            username,
            password,
        })
    }

    /// `host:port` as a user would write it.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Splits `host:port`, `[v6]:port`, `host`, `[v6]` (port defaults to 1080).
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let host = &s[..=end];
        let port = match &s[end + 1..] {
            "" => DEFAULT_PORT,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p.parse().ok()?)),
        Some(_) => None, // bare IPv6 without brackets
        None => Some((s, DEFAULT_PORT)),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(input: &str) -> String {
    if let Some((scheme, rest)) = input.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    input.to_string()
}

impl fmt::Display for ProxyUrl {
    /// `socks5://user@host:port` — the password is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Socks5 => "socks5",
            Scheme::Socks5h => "socks5h",
        };
        match &self.username {
            Some(u) => write!(f, "{scheme}://{u}@{}:{}", self.host, self.port),
            None => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let u = ProxyUrl::parse("socks5://user:p%40ss@proxy.example:1081").unwrap();
        assert_eq!(u.scheme, Scheme::Socks5);
        assert_eq!(u.host, ProxyHost::Name("proxy.example".into()));
        assert_eq!(u.port, 1081);
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.to_string(), "socks5://user@proxy.example:1081");
        assert!(!format!("{u:?}").contains("p@ss"));

        let u = ProxyUrl::parse("socks5h://[2001:db8::1]:1080").unwrap();
        assert_eq!(u.scheme, Scheme::Socks5h);
        assert_eq!(u.host, ProxyHost::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(u.authority(), "[2001:db8::1]:1080");

        let u = ProxyUrl::parse("SOCKS5://198.51.100.1").unwrap();
        assert_eq!(u.port, DEFAULT_PORT);
        assert_eq!(u.host, ProxyHost::Ip("198.51.100.1".parse().unwrap()));

        let u = ProxyUrl::parse("socks5://a:b:c@h:1").unwrap();
        assert_eq!(u.password.as_deref(), Some("b:c"));
    }

    #[test]
    fn rejects_bad_urls_without_leaking_password() {
        for bad in [
            "proxy:1080",
            "http://proxy:8080",
            "socks5://",
            "socks5://host:99999",
            "socks5://host:port",
            "socks5://2001:db8::1:1080",
            "socks5://host/path",
            "socks5://u:secret@bad host:1",
            "socks5://:secret@host:1",
            "socks5://u:%zz@host:1",
        ] {
            let err = ProxyUrl::parse(bad).unwrap_err();
            assert!(!err.contains("secret"), "{err}");
            assert!(!err.contains('\n'));
        }
    }
}
