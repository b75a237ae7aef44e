//! [`LayerConfig`]: everything the preload layer needs, as one line in the environment.
//!
//! Format: `v1;key=value;key=value…`, values %-escaped (`%`, `;`, `=` and control
//! bytes). Unknown keys are ignored so that an older layer loaded by a newer launcher
//! (or the reverse, across an exec) keeps working with the keys it knows.

use std::net::SocketAddr;

use crate::net::{Exclusion, IpNet};

/// The environment variable that carries the encoded [`LayerConfig`].
pub const ENV_LAYER: &str = "LAYSOCKS_LAYER";

/// The default handshake deadline: connect to the proxy plus the whole SOCKS exchange.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;

/// The default IPv4 placeholder pool: RFC 2544's benchmarking block, never routed on
/// the Internet and, unlike proxychains-ng's 224/4, valid for TCP (DESIGN §4).
pub const DEFAULT_POOL4: &str = "198.18.0.0/15";

/// The default IPv6 placeholder pool: a unique local (RFC 4193) /64 of our own
/// (`fd` + `6c:6179:736f` + subnet `636b`, "laysock").
pub const DEFAULT_POOL6: &str = "fd6c:6179:736f:636b::/64";

/// How many names the shared table holds unless configured otherwise.
pub const DEFAULT_NAMES_CAPACITY: u32 = 65_536;

/// What the preload layer needs to proxy connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerConfig {
    /// The proxy's addresses, already resolved by the launcher, tried in order.
    pub proxy_addrs: Vec<SocketAddr>,
    /// How the proxy is named in messages (`socks5://user@host:port`, no password).
    pub proxy_label: String,
    /// A `0600` file holding the credentials (see [`crate::secret`]); `None` for no auth.
    pub secret_file: Option<String>,
    /// Deadline for reaching the proxy and finishing the SOCKS handshake.
    pub connect_timeout_ms: u32,
    /// No messages at all on stderr.
    pub quiet: bool,
    /// One line per connection on stderr: target, proxy, result, time.
    pub verbose: bool,
    /// Destinations that go direct (loopback always does).
    pub excludes: Vec<Exclusion>,
    /// Names go to the proxy: the layer answers lookups with placeholder addresses and
    /// sends the name in the CONNECT request (DESIGN §4).
    pub remote_dns: bool,
    /// The shared name table (a file the launcher created, mapped by every process of
    /// the run); `None`: each process (and its forked children) keeps a private one.
    pub names_file: Option<String>,
    /// How many names the table holds.
    pub names_capacity: u32,
    /// Where IPv4 placeholders come from.
    pub pool4: IpNet,
    /// Where IPv6 placeholders come from (a /64 or longer prefix is used as given).
    pub pool6: IpNet,
    /// Where `res_*` queries and programs' own DNS over TCP go, through the proxy
    /// (`host:port`, host a name or an address); `None`: such queries are refused.
    pub dns_server: Option<String>,
    /// Names resolved by the system resolver even with remote DNS: a name matches an
    /// entry equal to it or ending in `.entry` (a leading dot in the config is dropped).
    pub direct_names: Vec<String>,
    /// Send greeting, authentication and request in one write (saves round trips; only
    /// for proxies that read on after the greeting — the layer falls back if one stalls).
    pub pipeline: bool,
    /// The seccomp guard supervises this run (the launcher sets it when the guard is on).
    /// The preload layer then lets traffic it would refuse because it bypasses libc's
    /// resolver — a program's own DNS packets and connections to port 53 — reach the
    /// kernel, where the guard traps it and answers it from the shared name table;
    /// without the guard such traffic is refused, as it would otherwise leak.
    pub guarded: bool,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            proxy_addrs: Vec::new(),
            proxy_label: String::new(),
            secret_file: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            quiet: false,
            verbose: false,
            excludes: Vec::new(),
            remote_dns: false,
            names_file: None,
            names_capacity: DEFAULT_NAMES_CAPACITY,
            pool4: DEFAULT_POOL4.parse().expect("valid default pool"),
            pool6: DEFAULT_POOL6.parse().expect("valid default pool"),
            dns_server: None,
            direct_names: Vec::new(),
            pipeline: false,
            guarded: false,
        }
    }
}

impl LayerConfig {
    /// Whether a connect to `dest` goes direct rather than through the proxy:
    /// loopback, the unspecified address, the proxy itself, and configured exclusions.
    pub fn is_direct(&self, dest: SocketAddr) -> bool {
        let ip = crate::net::canonical(dest.ip());
        if ip.is_loopback() || ip.is_unspecified() {
            return true;
        }
        let dest = SocketAddr::new(ip, dest.port());
        if self
            .proxy_addrs
            .iter()
            .any(|p| SocketAddr::new(crate::net::canonical(p.ip()), p.port()) == dest)
        {
            return true;
        }
        self.excludes.iter().any(|e| e.matches(dest))
    }

    /// The one-line encoding for [`ENV_LAYER`].
    pub fn encode(&self) -> String {
        let mut out = String::from("v1");
        let mut put = |k: &str, v: &str| {
            out.push(';');
            out.push_str(k);
            out.push('=');
            escape_into(v, &mut out);
        };
        let proxies: Vec<String> = self.proxy_addrs.iter().map(|a| a.to_string()).collect();
        put("proxy", &proxies.join(","));
        put("label", &self.proxy_label);
        if let Some(s) = &self.secret_file {
            put("secret", s);
        }
        put("timeout_ms", &self.connect_timeout_ms.to_string());
        put("quiet", if self.quiet { "1" } else { "0" });
        put("verbose", if self.verbose { "1" } else { "0" });
        let ex: Vec<String> = self.excludes.iter().map(|e| e.to_string()).collect();
        put("exclude", &ex.join(","));
        put("remote_dns", if self.remote_dns { "1" } else { "0" });
        if let Some(f) = &self.names_file {
            put("names", f);
        }
        put("names_cap", &self.names_capacity.to_string());
        put("pool4", &self.pool4.to_string());
        put("pool6", &self.pool6.to_string());
        if let Some(d) = &self.dns_server {
            put("dns_server", d);
        }
        put("direct_names", &self.direct_names.join(","));
        put("pipeline", if self.pipeline { "1" } else { "0" });
        put("guarded", if self.guarded { "1" } else { "0" });
        out
    }

    /// Parses [`LayerConfig::encode`]'s output.
    pub fn decode(line: &str) -> Result<Self, String> {
        let mut parts = line.split(';');
        match parts.next() {
            Some("v1") => {}
            other => return Err(format!("unknown layer config version {other:?}")),
        }
        let mut cfg = LayerConfig::default();
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("layer config entry `{part}` has no value"))?;
            let v =
                unescape(v).ok_or_else(|| format!("layer config entry `{k}` is badly escaped"))?;
            match k {
                "proxy" => {
                    cfg.proxy_addrs = split_list(&v)
                        .map(|a| a.parse().map_err(|_| format!("bad proxy address `{a}`")))
                        .collect::<Result<_, _>>()?
                }
                "label" => cfg.proxy_label = v,
                "secret" => cfg.secret_file = Some(v),
                "timeout_ms" => {
                    cfg.connect_timeout_ms = v.parse().map_err(|_| format!("bad timeout `{v}`"))?
                }
                "quiet" => cfg.quiet = v == "1",
                "verbose" => cfg.verbose = v == "1",
                "exclude" => {
                    cfg.excludes = split_list(&v)
                        .map(|e| e.parse())
                        .collect::<Result<_, _>>()?
                }
                "remote_dns" => cfg.remote_dns = v == "1",
                "names" => cfg.names_file = Some(v),
                "names_cap" => {
                    cfg.names_capacity =
                        v.parse().map_err(|_| format!("bad name capacity `{v}`"))?
                }
                "pool4" => cfg.pool4 = v.parse()?,
                "pool6" => cfg.pool6 = v.parse()?,
                "dns_server" => cfg.dns_server = Some(v),
                "direct_names" => cfg.direct_names = split_list(&v).map(String::from).collect(),
                "pipeline" => cfg.pipeline = v == "1",
                "guarded" => cfg.guarded = v == "1",
                _ => {} // a newer launcher's key: ignore
            }
        }
        if cfg.proxy_addrs.is_empty() {
            return Err("layer config names no proxy address".into());
        }
        Ok(cfg)
    }
}

fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').filter(|s| !s.is_empty())
}

fn escape_into(v: &str, out: &mut String) {
    for c in v.chars() {
        if c == '%' || c == ';' || c == '=' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

fn unescape(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LayerConfig {
        LayerConfig {
            proxy_addrs: vec![
                "198.51.100.1:1080".parse().unwrap(),
                "[2001:db8:1::1]:1080".parse().unwrap(),
            ],
            proxy_label: "socks5://bob@proxy;=%:1080".into(),
            secret_file: Some("/dev/shm/laysocks-1-abc".into()),
            connect_timeout_ms: 2500,
            quiet: false,
            verbose: true,
            excludes: vec![
                "203.0.113.0/24:80".parse().unwrap(),
                "[2001:db8::/32]".parse().unwrap(),
            ],
            remote_dns: true,
            names_file: Some("/dev/shm/laysocks-1-names".into()),
            names_capacity: 1000,
            pool4: "198.18.0.0/16".parse().unwrap(),
            pool6: "fd00:1::/64".parse().unwrap(),
            dns_server: Some("203.0.113.2:53".into()),
            direct_names: vec!["internal".into(), "corp.example".into()],
            pipeline: true,
            guarded: true,
        }
    }

    #[test]
    fn round_trip() {
        let c = sample();
        let line = c.encode();
        assert!(!line.contains('\n'));
        assert_eq!(LayerConfig::decode(&line).unwrap(), c);
        let minimal = LayerConfig {
            proxy_addrs: vec!["127.0.0.1:1".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(LayerConfig::decode(&minimal.encode()).unwrap(), minimal);
    }

    #[test]
    fn guarded_flag_travels() {
        let mut c = LayerConfig {
            proxy_addrs: vec!["127.0.0.1:1".parse().unwrap()],
            ..Default::default()
        };
        assert!(!c.guarded, "off unless the launcher runs the guard");
        assert!(c.encode().contains(";guarded=0"));
        c.guarded = true;
        let line = c.encode();
        assert!(line.contains(";guarded=1"));
        assert!(LayerConfig::decode(&line).unwrap().guarded);
    }

    #[test]
    fn rejects_and_tolerates() {
        assert!(LayerConfig::decode("v2;proxy=1.2.3.4:5").is_err());
        assert!(LayerConfig::decode("v1;proxy=").is_err());
        assert!(LayerConfig::decode("v1;proxy=nonsense").is_err());
        let c = LayerConfig::decode("v1;proxy=198.51.100.1:1080;future_key=x").unwrap();
        assert_eq!(c.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS);
        // A line from a launcher that predates the guard: not guarded.
        assert!(!c.guarded);
    }

    #[test]
    fn direct_destinations() {
        let c = sample();
        assert!(c.is_direct("127.0.0.1:80".parse().unwrap()));
        assert!(c.is_direct("[::1]:80".parse().unwrap()));
        assert!(c.is_direct("[::ffff:127.0.0.1]:80".parse().unwrap()));
        assert!(c.is_direct("198.51.100.1:1080".parse().unwrap()));
        assert!(c.is_direct("[::ffff:198.51.100.1]:1080".parse().unwrap()));
        assert!(!c.is_direct("198.51.100.1:1081".parse().unwrap()));
        assert!(c.is_direct("203.0.113.9:80".parse().unwrap()));
        assert!(!c.is_direct("203.0.113.9:81".parse().unwrap()));
        assert!(c.is_direct("[2001:db8:5::1]:1".parse().unwrap()));
    }
}
