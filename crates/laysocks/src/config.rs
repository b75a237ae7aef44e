//! Settings: command line, environment and config file, merged into one [`Settings`].
//!
//! Precedence is command line > `LAYSOCKS_PROXY` > config file, key by key. The config
//! file is TOML and strict (unknown keys are errors: a typo such as `pasword_file` must not
//! silently send a connection without credentials). Every problem in it is reported as
//! one line, `laysocks: FILE:LINE: problem`, with the line taken from the TOML span.
//!
//! DNS: names are resolved by the proxy (remote DNS) unless `dns = "local"` (or `--dns
//! local`) says otherwise, for `socks5://` as well as `socks5h://` and for the built-in
//! server: laysocks never leaks a name by default. (This differs from curl, where
//! `socks5://` means "resolve locally".) `socks5h://` always means remote, so combining it
//! with `dns = "local"` is an error rather than a silent choice. `--dns` beats the file's
//! `dns`; `--dns-server` beats `dns_server`; `--direct-name`s add to `direct_names`.
//! The placeholder pools (`dns_pool4`, `dns_pool6`) and the name table's size
//! (`dns_names`) are file-only settings, checked here against each other.
//!
//! The guard (issue 8: a seccomp filter whose trapped calls the launcher answers, for the
//! programs the preload layer cannot enter) is on unless `--no-guard` or `guard = false`
//! turns it off; the file cannot turn it on against `--no-guard`.
//!
//! Passwords come from the URL, from `password_file` or from the variable named by
//! `password_env`. Whatever carried a secret is named in [`Settings::scrub_env`] so the
//! launcher can remove it from the program's environment: the program (and everything it
//! starts) must never see the password.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use laysocks_config::{
    Exclusion, IpNet, ProxyUrl, Scheme, DEFAULT_NAMES_CAPACITY, DEFAULT_POOL4, DEFAULT_POOL6,
};
use serde::Deserialize;
use toml::Spanned;

/// The environment variable that names a proxy URL.
pub const ENV_PROXY: &str = "LAYSOCKS_PROXY";
/// The environment variable that names a config file.
pub const ENV_CONFIG: &str = "LAYSOCKS_CONFIG";

/// What the command line said about settings (before merging).
#[derive(Clone, Debug, Default)]
pub struct CliSettings {
    pub proxy: Option<String>,
    pub config: Option<PathBuf>,
    pub quiet: bool,
    pub verbose: bool,
    pub exclude: Vec<String>,
    pub connect_timeout: Option<f64>,
    pub pipeline: bool,
    /// `--dns remote|local`.
    pub dns: Option<DnsMode>,
    /// `--dns-server HOST[:PORT]`, as given.
    pub dns_server: Option<String>,
    /// `--direct-name NAME`s, as given.
    pub direct_names: Vec<String>,
    /// `--allow-direct`.
    pub allow_direct: bool,
    /// `--no-guard`.
    pub no_guard: bool,
}

/// Who resolves host names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DnsMode {
    /// The proxy (names travel in the CONNECT request; the program gets placeholders).
    Remote,
    /// The program itself, with the system resolver.
    Local,
}

/// The merged DNS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Names go to the proxy (the default).
    pub remote: bool,
    /// Where `res_*`-style queries go through the proxy, normalised `host:port`
    /// (`[v6]:port` for IPv6).
    pub server: Option<String>,
    /// Names (and domain suffixes) resolved locally even with remote DNS: lowercase, no
    /// leading dot.
    pub direct_names: Vec<String>,
    /// IPv4 placeholder pool.
    pub pool4: IpNet,
    /// IPv6 placeholder pool.
    pub pool6: IpNet,
    /// How many names the shared table holds.
    pub capacity: u32,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            remote: true,
            server: None,
            direct_names: Vec::new(),
            pool4: DEFAULT_POOL4.parse().expect("valid default pool"),
            pool6: DEFAULT_POOL6.parse().expect("valid default pool"),
            capacity: DEFAULT_NAMES_CAPACITY,
        }
    }
}

/// The merged settings.
#[derive(Debug)]
pub struct Settings {
    /// The proxy, with credentials filled in from wherever they came; `None` means "use
    /// the built-in server".
    pub proxy: Option<ProxyUrl>,
    pub connect_timeout_ms: u32,
    pub quiet: bool,
    pub verbose: bool,
    pub excludes: Vec<Exclusion>,
    /// Pipeline the SOCKS5 handshake (see `LayerConfig::pipeline`).
    pub pipeline: bool,
    /// Who resolves names, and how.
    pub dns: DnsSettings,
    /// Environment variables that carry a secret and must not reach the program.
    pub scrub_env: Vec<String>,
    /// Non-fatal problems to print (unless quiet).
    pub warnings: Vec<String>,
    /// The config file that was read, if any.
    pub config_path: Option<PathBuf>,
    /// Start a program the layer cannot enter anyway (`--allow-direct`, `allow_direct`).
    pub allow_direct: bool,
    /// Run the seccomp guard beside the preload layer (the default; off with
    /// `--no-guard` or `guard = false`): programs that bypass libc are covered too.
    pub guard: bool,
}

/// The config file's keys. Unknown keys are rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    proxy: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<f64>>,
    quiet: Option<bool>,
    verbose: Option<bool>,
    exclude: Option<Vec<Spanned<String>>>,
    pipeline: Option<bool>,
    dns: Option<Spanned<String>>,
    dns_server: Option<Spanned<String>>,
    direct_names: Option<Vec<Spanned<String>>>,
    dns_pool4: Option<Spanned<String>>,
    dns_pool6: Option<Spanned<String>>,
    dns_names: Option<Spanned<i64>>,
    allow_direct: Option<bool>,
    guard: Option<bool>,
}

/// The environment the settings are read from (injectable for tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn env_str(env: Env<'_>, key: &str) -> Option<String> {
    env(key)
        .filter(|v| !v.is_empty())
        .map(|v| v.to_string_lossy().into_owned())
}

/// Which config file to read: `-c`, `$LAYSOCKS_CONFIG`, `$XDG_CONFIG_HOME/laysocks/`,
/// `~/.config/laysocks/`, `/etc/laysocks/` — the first that exists. A file named
/// explicitly (by `-c` or the variable) must exist.
pub fn find_config(
    cli: Option<&Path>,
    env: Env<'_>,
    etc: &Path,
) -> Result<Option<PathBuf>, String> {
    if let Some(p) = cli {
        return if p.is_file() {
            Ok(Some(p.to_path_buf()))
        } else {
            Err(format!(
                "config file {} (given with -c) does not exist",
                p.display()
            ))
        };
    }
    if let Some(p) = env(ENV_CONFIG).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(Some(p))
        } else {
            Err(format!(
                "config file {} (from {ENV_CONFIG}) does not exist: fix or unset {ENV_CONFIG}",
                p.display()
            ))
        };
    }
    let mut cands = Vec::new();
    if let Some(x) = env("XDG_CONFIG_HOME").map(PathBuf::from) {
        if x.is_absolute() {
            cands.push(x.join("laysocks/config.toml"));
        }
    }
    if let Some(h) = env("HOME").map(PathBuf::from) {
        if h.is_absolute() {
            cands.push(h.join(".config/laysocks/config.toml"));
        }
    }
    cands.push(etc.join("laysocks/config.toml"));
    Ok(cands.into_iter().find(|p| p.is_file()))
}

/// Line number (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A config file's text, parsed, with errors located.
struct Loaded {
    path: PathBuf,
    text: String,
    cfg: FileConfig,
}

impl Loaded {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        msg: impl std::fmt::Display,
    ) -> Result<T, String> {
        Err(format!(
            "{}:{}: {msg}",
            self.path.display(),
            line_of(&self.text, span.start)
        ))
    }

    /// A path in the config, relative to the config file's directory; `~/` is `$HOME`.
    fn path_value(&self, v: &str, env: Env<'_>) -> PathBuf {
        if let Some(rest) = v.strip_prefix("~/") {
            if let Some(h) = env("HOME") {
                return PathBuf::from(h).join(rest);
            }
        }
        let p = PathBuf::from(v);
        if p.is_absolute() {
            p
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

fn load(path: &Path) -> Result<Loaded, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    match toml::from_str::<FileConfig>(&text) {
        Ok(cfg) => Ok(Loaded {
            path: path.to_path_buf(),
            text,
            cfg,
        }),
        Err(e) => {
            let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(1);
            // The message may span lines (toml adds hints); keep it to one.
            let msg = e
                .message()
                .split('\n')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            Err(format!("{}:{line}: {msg}", path.display()))
        }
    }
}

/// Parses a connect timeout in seconds (fractions allowed) into milliseconds.
pub fn timeout_ms(secs: f64) -> Result<u32, String> {
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!(
            "connect timeout {secs} must be a positive number of seconds"
        ));
    }
    if secs > 86_400.0 {
        return Err(format!(
            "connect timeout {secs} s is more than a day: use a smaller value"
        ));
    }
    Ok(((secs * 1000.0).round() as u32).max(1))
}

/// Whether a raw proxy URL carries a password (`scheme://user:pass@…`), even if it does
/// not otherwise parse: such a variable is removed from the child's environment.
pub fn url_has_password(raw: &str) -> bool {
    raw.split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Merges command line, environment and config file.
pub fn resolve(cli: &CliSettings, env: Env<'_>, etc: &Path) -> Result<Settings, String> {
    let config_path = find_config(cli.config.as_deref(), env, etc)?;
    let loaded = match &config_path {
        Some(p) => Some(load(p)?),
        None => None,
    };
    let file = loaded.as_ref().map(|l| &l.cfg);
    let mut scrub_env = Vec::new();
    let mut warnings = Vec::new();

    let env_proxy = env_str(env, ENV_PROXY);
    if env_proxy.as_deref().is_some_and(url_has_password) {
        scrub_env.push(ENV_PROXY.to_string());
    }

    // The proxy URL: command line > environment > file.
    let proxy = if let Some(raw) = &cli.proxy {
        Some(ProxyUrl::parse(raw)?)
    } else if let Some(raw) = &env_proxy {
        Some(ProxyUrl::parse(raw).map_err(|e| format!("{ENV_PROXY}: {e}"))?)
    } else if let (Some(l), Some(p)) = (&loaded, file.and_then(|f| f.proxy.as_ref())) {
        match ProxyUrl::parse(p.get_ref()) {
            Ok(u) => Some(u),
            Err(e) => return l.err(p.span(), e),
        }
    } else {
        None
    };

    let proxy = match (proxy, &loaded) {
        (Some(mut url), loaded) => {
            if let Some(l) = loaded {
                fill_credentials(&mut url, l, env, &mut scrub_env, &mut warnings)?;
            }
            if url.password.is_some() && url.username.is_none() {
                return Err("a password is configured but no user name: add username or put user:password in the URL".into());
            }
            if let Some(u) = &url.username {
                if u.len() > 255 {
                    return Err("the proxy user name is longer than 255 bytes (RFC 1929 §2)".into());
                }
                match &url.password {
                    None => {
                        return Err(format!(
                            "the proxy user `{u}` has no password: put it in the URL (user:password@), or set password_file or password_env in the config file"
                        ))
                    }
                    Some(p) if p.is_empty() || p.len() > 255 => {
                        return Err(
                            "the proxy password must be 1 to 255 bytes long (RFC 1929 §2)".into(),
                        )
                    }
                    Some(_) => {}
                }
            }
            Some(url)
        }
        (None, _) => None,
    };

    let connect_timeout_ms = if let Some(s) = cli.connect_timeout {
        timeout_ms(s).map_err(|e| format!("--connect-timeout: {e}"))?
    } else if let (Some(l), Some(t)) = (&loaded, file.and_then(|f| f.connect_timeout.as_ref())) {
        match timeout_ms(*t.get_ref()) {
            Ok(ms) => ms,
            Err(e) => return l.err(t.span(), e),
        }
    } else {
        laysocks_config::layer::DEFAULT_CONNECT_TIMEOUT_MS
    };

    // -q / -v on the command line replace the file's pair.
    let (quiet, verbose) = if cli.quiet || cli.verbose {
        (cli.quiet, cli.verbose)
    } else {
        (
            file.and_then(|f| f.quiet).unwrap_or(false),
            file.and_then(|f| f.verbose).unwrap_or(false),
        )
    };
    if quiet && verbose {
        let where_ = config_path
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        return Err(format!(
            "{where_}quiet and verbose are both set: choose one"
        ));
    }

    // Exclusions: the file's, then the command line's (both apply).
    let mut excludes = Vec::new();
    if let (Some(l), Some(list)) = (&loaded, file.and_then(|f| f.exclude.as_ref())) {
        for e in list {
            match e.get_ref().parse::<Exclusion>() {
                Ok(x) => excludes.push(x),
                Err(msg) => return l.err(e.span(), format!("exclude: {msg}")),
            }
        }
    }
    for e in &cli.exclude {
        excludes.push(
            e.parse::<Exclusion>()
                .map_err(|msg| format!("--exclude: {msg}"))?,
        );
    }

    let pipeline = cli.pipeline || file.and_then(|f| f.pipeline).unwrap_or(false);
    let allow_direct = cli.allow_direct || file.and_then(|f| f.allow_direct).unwrap_or(false);
    // `--no-guard` beats the file; the file can only turn the guard off.
    let guard = !cli.no_guard && file.and_then(|f| f.guard).unwrap_or(true);

    let dns = resolve_dns(cli, loaded.as_ref(), proxy.as_ref())?;

    Ok(Settings {
        proxy,
        connect_timeout_ms,
        quiet,
        verbose,
        excludes,
        pipeline,
        dns,
        scrub_env,
        warnings,
        config_path,
        allow_direct,
        guard,
    })
}

/// The DNS settings: `--dns` > the file's `dns` > remote; a `socks5h://` proxy with
/// local DNS is an error.
fn resolve_dns(
    cli: &CliSettings,
    loaded: Option<&Loaded>,
    proxy: Option<&ProxyUrl>,
) -> Result<DnsSettings, String> {
    let file = loaded.map(|l| &l.cfg);
    let mut dns = DnsSettings::default();

    // Mode, and where a "local" came from (for the conflict message).
    let mut local_from: Option<String> = None;
    if let Some(m) = cli.dns {
        dns.remote = m == DnsMode::Remote;
        if !dns.remote {
            local_from = Some("--dns local: ".into());
        }
    } else if let (Some(l), Some(d)) = (loaded, file.and_then(|f| f.dns.as_ref())) {
        match parse_dns_mode(d.get_ref()) {
            Ok(m) => dns.remote = m == DnsMode::Remote,
            Err(e) => return l.err(d.span(), format!("dns: {e}")),
        }
        if !dns.remote {
            local_from = Some(format!(
                "{}:{}: ",
                l.path.display(),
                line_of(&l.text, d.span().start)
            ));
        }
    }
    if let (Some(url), Some(from)) = (proxy, &local_from) {
        if url.scheme == Scheme::Socks5h {
            return Err(format!(
                "{from}the proxy URL {url} asks the proxy to resolve names but dns is \"local\"; use socks5:// or drop the dns setting"
            ));
        }
    }

    dns.server = if let Some(raw) = &cli.dns_server {
        Some(parse_dns_server(raw).map_err(|e| format!("--dns-server: {e}"))?)
    } else if let (Some(l), Some(d)) = (loaded, file.and_then(|f| f.dns_server.as_ref())) {
        match parse_dns_server(d.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => return l.err(d.span(), format!("dns_server: {e}")),
        }
    } else {
        None
    };

    // Direct names: the file's, then the command line's (both apply), without repeats.
    let mut push = |n: String| {
        if !dns.direct_names.contains(&n) {
            dns.direct_names.push(n);
        }
    };
    if let (Some(l), Some(list)) = (loaded, file.and_then(|f| f.direct_names.as_ref())) {
        for n in list {
            match direct_name(n.get_ref()) {
                Ok(n) => push(n),
                Err(e) => return l.err(n.span(), format!("direct_names: {e}")),
            }
        }
    }
    for n in &cli.direct_names {
        push(direct_name(n).map_err(|e| format!("--direct-name: {e}"))?);
    }

    if let (Some(l), Some(p)) = (loaded, file.and_then(|f| f.dns_pool4.as_ref())) {
        match parse_pool(p.get_ref(), false) {
            Ok(n) => dns.pool4 = n,
            Err(e) => return l.err(p.span(), format!("dns_pool4: {e}")),
        }
    }
    if let (Some(l), Some(p)) = (loaded, file.and_then(|f| f.dns_pool6.as_ref())) {
        match parse_pool(p.get_ref(), true) {
            Ok(n) => dns.pool6 = n,
            Err(e) => return l.err(p.span(), format!("dns_pool6: {e}")),
        }
    }
    let room4 = placeholders(dns.pool4);
    let room6 = placeholders(dns.pool6);
    if let (Some(l), Some(n)) = (loaded, file.and_then(|f| f.dns_names.as_ref())) {
        let v = *n.get_ref();
        if !(1..=i64::from(MAX_NAMES)).contains(&v) {
            return l.err(
                n.span(),
                format!("dns_names = {v}: the name table holds 1 to {MAX_NAMES} names"),
            );
        }
        for (room, pool, key) in [
            (room4, dns.pool4, "dns_pool4"),
            (room6, dns.pool6, "dns_pool6"),
        ] {
            if v as u128 > room {
                return l.err(
                    n.span(),
                    format!(
                        "dns_names = {v} is more than the pool {pool} has placeholders for ({room}): lower dns_names or widen {key}"
                    ),
                );
            }
        }
        dns.capacity = v as u32;
    } else {
        // Unset: the default, or less when a configured pool is smaller.
        dns.capacity = u128::from(DEFAULT_NAMES_CAPACITY).min(room4).min(room6) as u32;
    }
    Ok(dns)
}

/// The largest `dns_names`.
pub const MAX_NAMES: u32 = 1_000_000;

/// `remote` or `local`.
pub fn parse_dns_mode(s: &str) -> Result<DnsMode, String> {
    match s {
        "remote" => Ok(DnsMode::Remote),
        "local" => Ok(DnsMode::Local),
        other => Err(format!("`{other}` is neither \"remote\" nor \"local\"")),
    }
}

/// Placeholders a pool offers: its size minus the network and the last address.
fn placeholders(net: IpNet) -> u128 {
    let bits = u32::from(if net.addr().is_ipv4() { 32 } else { 128 } - net.prefix());
    let size = if bits >= 128 {
        u128::MAX
    } else {
        1u128 << bits
    };
    size - 2
}

/// A placeholder pool: the right family, room for at least two names, and nowhere TCP
/// cannot go or that always goes direct (loopback, unspecified, multicast, mapped).
pub fn parse_pool(s: &str, v6: bool) -> Result<IpNet, String> {
    let net: IpNet = s.parse()?;
    let (family, max) = if v6 { ("IPv6", 120) } else { ("IPv4", 30) };
    if net.addr().is_ipv6() != v6 {
        return Err(format!("`{s}` is not an {family} network"));
    }
    if net.prefix() > max {
        return Err(format!(
            "`{s}` is too small: use a prefix of /{max} or shorter"
        ));
    }
    let bad: &[(&str, &str)] = if v6 {
        &[
            ("::/128", "the unspecified address"),
            ("::1/128", "loopback"),
            ("::ffff:0:0/96", "IPv4-mapped addresses"),
            ("ff00::/8", "multicast, where TCP cannot connect"),
        ]
    } else {
        &[
            ("0.0.0.0/8", "\"this network\""),
            ("127.0.0.0/8", "loopback"),
            ("224.0.0.0/4", "multicast, where TCP cannot connect"),
            ("240.0.0.0/4", "reserved addresses and broadcast"),
        ]
    };
    for (r, what) in bad {
        let r: IpNet = r.parse().expect("valid reserved range");
        if overlaps(r, net) {
            let dflt = if v6 { DEFAULT_POOL6 } else { DEFAULT_POOL4 };
            return Err(format!(
                "`{s}` overlaps {r} ({what}): use another range, such as the default {dflt}"
            ));
        }
    }
    Ok(net)
}

/// Whether two networks of one family share an address (compared bit by bit: unlike
/// [`IpNet::contains`], no IPv4-mapped address stands for its IPv4 one).
fn overlaps(a: IpNet, b: IpNet) -> bool {
    let bits = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    };
    let p = u32::from(a.prefix().min(b.prefix()));
    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
    a.addr().is_ipv4() == b.addr().is_ipv4() && bits(a.addr()) & mask == bits(b.addr()) & mask
}

/// Whether `s` is a host name: dot-separated labels of letters, digits, `-` and `_`
/// (1 to 63 bytes each, 253 in all), not ending in an all-digit label (that would be a
/// mistyped address).
fn is_host_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) && !labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// `HOST[:PORT]` (port 53 by default) → `host:port`; IPv6 as `[addr]:port`, names
/// lowercased.
pub fn parse_dns_server(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`{s}` is not HOST[:PORT] (an IPv4 address, [IPv6 address] or host name; port 1-65535)"
        )
    };
    let port_of = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("`{s}` has a bad port `{p}`")),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        let port = match after {
            "" => 53,
            p => port_of(p.strip_prefix(':').ok_or_else(bad)?)?,
        };
        return Ok(format!("[{ip}]:{port}"));
    }
    // A bare IPv6 address (no port possible without brackets).
    if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Ok(format!("[{ip}]:53"));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, port_of(p)?),
        None => (s, 53),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(format!("{}:{port}", IpAddr::V4(ip)));
    }
    let host = host.to_ascii_lowercase();
    if !is_host_name(&host) {
        return Err(bad());
    }
    Ok(format!("{host}:{port}"))
}

/// A `direct_names` entry: a name or domain suffix; one leading (and one trailing) dot
/// dropped, lowercased.
pub fn direct_name(s: &str) -> Result<String, String> {
    let n = s.strip_prefix('.').unwrap_or(s);
    let n = n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase();
    if n.is_empty() {
        return Err(format!(
            "`{s}` is empty: write a name such as internal or .corp.example"
        ));
    }
    if !is_host_name(&n) {
        return Err(format!(
            "`{s}` is not a host name or domain suffix (letters, digits, -, _ and dots; no spaces; internationalised names in their xn-- form)"
        ));
    }
    Ok(n)
}

/// Applies the file's `username`, `password_env` and `password_file` to a URL that does
/// not carry them itself.
fn fill_credentials(
    url: &mut ProxyUrl,
    l: &Loaded,
    env: Env<'_>,
    scrub_env: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let f = &l.cfg;
    if let (Some(pf), Some(pe)) = (&f.password_file, &f.password_env) {
        let later = if pf.span().start > pe.span().start {
            pf.span()
        } else {
            pe.span()
        };
        return l.err(
            later,
            "password_file and password_env are both set: keep one",
        );
    }
    if let Some(pe) = &f.password_env {
        let name = pe.get_ref();
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return l.err(
                pe.span(),
                format!("password_env `{name}` is not a variable name"),
            );
        }
        // The variable carries a secret whether or not this URL needs it: never pass it on.
        if env(name).is_some() {
            scrub_env.push(name.clone());
        }
    }
    if url.username.is_none() {
        if let Some(u) = &f.username {
            if u.get_ref().is_empty() {
                return l.err(u.span(), "username is empty");
            }
            url.username = Some(u.get_ref().clone());
        }
    }
    if url.password.is_some() || url.username.is_none() {
        return Ok(());
    }
    if let Some(pe) = &f.password_env {
        let name = pe.get_ref();
        match env(name).filter(|v| !v.is_empty()) {
            Some(v) => {
                url.password = Some(v.into_string().map_err(|_| {
                    format!(
                        "{}:{}: the variable {name} (password_env) is not valid UTF-8",
                        l.path.display(),
                        line_of(&l.text, pe.span().start)
                    )
                })?)
            }
            None => {
                return l.err(
                    pe.span(),
                    format!(
                    "password_env names {name}, which is not set: export it or change password_env"
                ),
                )
            }
        }
    } else if let Some(pf) = &f.password_file {
        let path = l.path_value(pf.get_ref(), env);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                return l.err(
                    pf.span(),
                    format!("cannot read password_file {}: {e}", path.display()),
                )
            }
        };
        if let Ok(m) = fs::metadata(&path) {
            if m.permissions().mode() & 0o077 != 0 {
                warnings.push(format!(
                    "warning: password file {} can be read by other users: chmod 600 {}",
                    path.display(),
                    path.display()
                ));
            }
        }
        let mut s = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => {
                return l.err(
                    pf.span(),
                    format!("password_file {} is not valid UTF-8", path.display()),
                )
            }
        };
        // One trailing newline is the editor's, not the password's.
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        if s.is_empty() {
            return l.err(
                pf.span(),
                format!("password_file {} is empty", path.display()),
            );
        }
        url.password = Some(s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "laysocks-cfgtest-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            if let Some(d) = p.parent() {
                fs::create_dir_all(d).unwrap();
            }
            fs::write(&p, text).unwrap();
            p
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, OsString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect()
    }

    fn run(
        cli: &CliSettings,
        vars: &HashMap<String, OsString>,
        etc: &Path,
    ) -> Result<Settings, String> {
        let env = |k: &str| vars.get(k).cloned();
        resolve(cli, &env, etc)
    }

    #[test]
    fn guard_is_on_unless_turned_off() {
        let s = Scratch::new("guard");
        let none = env_of(&[]);
        let st = run(&CliSettings::default(), &none, &s.0).unwrap();
        assert!(st.guard, "on by default");
        let off = s.file("off.toml", "guard = false\n");
        let on = s.file("on.toml", "guard = true\n");
        let with = |cfg: &Path, no_guard: bool| {
            let cli = CliSettings {
                config: Some(cfg.to_path_buf()),
                no_guard,
                ..Default::default()
            };
            run(&cli, &none, &s.0).unwrap().guard
        };
        assert!(!with(&off, false));
        assert!(with(&on, false));
        assert!(!with(&on, true), "--no-guard beats the file");
        let bad = s.file("bad.toml", "guard = \"no\"\n");
        let e = run(
            &CliSettings {
                config: Some(bad),
                ..Default::default()
            },
            &none,
            &s.0,
        )
        .unwrap_err();
        assert!(e.contains("bad.toml:1:"), "{e}");
    }

    #[test]
    fn precedence_cli_env_file() {
        let s = Scratch::new("prec");
        let cfg = s.file(
            "c.toml",
            "proxy = \"socks5://198.51.100.1:1080\"\nconnect_timeout = 3\nverbose = true\npipeline = true\nallow_direct = true\n",
        );
        let cli = CliSettings {
            config: Some(cfg.clone()),
            ..Default::default()
        };
        let none = env_of(&[]);
        let st = run(&cli, &none, &s.0).unwrap();
        assert_eq!(st.proxy.unwrap().to_string(), "socks5://198.51.100.1:1080");
        assert_eq!(st.connect_timeout_ms, 3000);
        assert!(st.pipeline);
        assert!(st.allow_direct);
        assert!(st.verbose && !st.quiet);

        let env = env_of(&[(ENV_PROXY, "socks5://198.51.100.2:1081")]);
        let st = run(&cli, &env, &s.0).unwrap();
        assert_eq!(st.proxy.unwrap().to_string(), "socks5://198.51.100.2:1081");
        assert!(st.scrub_env.is_empty(), "no password, nothing to scrub");

        let cli2 = CliSettings {
            proxy: Some("socks5h://198.51.100.3:1082".into()),
            connect_timeout: Some(0.25),
            quiet: true,
            ..cli.clone()
        };
        let st = run(&cli2, &env, &s.0).unwrap();
        assert_eq!(st.proxy.unwrap().to_string(), "socks5h://198.51.100.3:1082");
        assert_eq!(st.connect_timeout_ms, 250);
        assert!(st.quiet && !st.verbose, "-q replaces the file's verbose");
    }

    #[test]
    fn discovery_order() {
        let s = Scratch::new("disc");
        let xdg = s.0.join("xdg");
        let home = s.0.join("home");
        let etc = s.0.join("etc");
        let vars = env_of(&[
            ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
            ("HOME", home.to_str().unwrap()),
        ]);
        let env = |k: &str| vars.get(k).cloned();
        assert_eq!(find_config(None, &env, &etc).unwrap(), None);
        let e = s.file("etc/laysocks/config.toml", "");
        assert_eq!(find_config(None, &env, &etc).unwrap(), Some(e));
        let h = s.file("home/.config/laysocks/config.toml", "");
        assert_eq!(find_config(None, &env, &etc).unwrap(), Some(h));
        let x = s.file("xdg/laysocks/config.toml", "");
        assert_eq!(find_config(None, &env, &etc).unwrap(), Some(x.clone()));
        let named = s.file("named.toml", "");
        let mut vars2 = vars.clone();
        vars2.insert(ENV_CONFIG.into(), named.clone().into());
        let env2 = |k: &str| vars2.get(k).cloned();
        assert_eq!(find_config(None, &env2, &etc).unwrap(), Some(named.clone()));
        let cli = s.file("cli.toml", "");
        assert_eq!(find_config(Some(&cli), &env2, &etc).unwrap(), Some(cli));
        // Explicitly named but missing: an error, not a fallback.
        let err = find_config(Some(&s.0.join("nope.toml")), &env2, &etc).unwrap_err();
        assert!(err.contains("nope.toml") && err.contains("-c"), "{err}");
        vars2.insert(ENV_CONFIG.into(), s.0.join("gone.toml").into());
        let env3 = |k: &str| vars2.get(k).cloned();
        let err = find_config(None, &env3, &etc).unwrap_err();
        assert!(err.contains(ENV_CONFIG), "{err}");
    }

    fn cfg_err(text: &str) -> String {
        let s = Scratch::new("err");
        let p = s.file("config.toml", text);
        let cli = CliSettings {
            config: Some(p.clone()),
            ..Default::default()
        };
        let err = run(&cli, &env_of(&[]), &s.0).unwrap_err();
        assert!(!err.contains('\n'), "one line: {err:?}");
        let prefix = format!("{}:", p.display());
        assert!(err.starts_with(&prefix), "{err}");
        err[prefix.len()..].to_string()
    }

    #[test]
    fn toml_errors_name_the_line() {
        let e = cfg_err("proxy = \"socks5://198.51.100.1\"\n\npasword_file = \"x\"\n");
        assert!(e.starts_with("3: "), "{e}");
        assert!(e.contains("pasword_file"), "{e}");
        let e = cfg_err("# comment\nquiet = \"yes\"\n");
        assert!(e.starts_with("2: "), "{e}");
        let e = cfg_err("a = \n");
        assert!(e.starts_with("1: "), "{e}");
        let e = cfg_err("\n\n\nproxy = \"http://198.51.100.1:8080\"\n");
        assert!(e.starts_with("4: ") && e.contains("scheme"), "{e}");
        let e = cfg_err("proxy = \"socks5://198.51.100.1\"\nexclude = [\n  \"198.51.100.0/24\",\n  \"bogus\",\n]\n");
        assert!(e.starts_with("4: ") && e.contains("bogus"), "{e}");
        let e = cfg_err("connect_timeout = -1\n");
        assert!(e.starts_with("1: "), "{e}");
        let e =
            cfg_err("proxy = \"socks5://u@198.51.100.1\"\npassword_file = \"/nonexistent/pw\"\n");
        assert!(e.starts_with("2: ") && e.contains("/nonexistent/pw"), "{e}");
        let e = cfg_err(
            "proxy = \"socks5://u@198.51.100.1\"\npassword_env = \"A\"\npassword_file = \"B\"\n",
        );
        assert!(e.starts_with("3: ") && e.contains("both"), "{e}");
    }

    #[test]
    fn passwords_from_file_and_env_and_scrubbing() {
        let s = Scratch::new("pw");
        let pw = s.file("pw", "s3cret\n");
        fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = s.file(
            "c.toml",
            "proxy = \"socks5://198.51.100.1\"\nusername = \"bob\"\npassword_file = \"pw\"\n",
        );
        let cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        let st = run(&cli, &env_of(&[]), &s.0).unwrap();
        let u = st.proxy.unwrap();
        assert_eq!(u.username.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("s3cret"), "one newline trimmed");
        assert!(st.warnings.is_empty());

        fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
        let st = run(&cli, &env_of(&[]), &s.0).unwrap();
        assert_eq!(st.warnings.len(), 1, "{:?}", st.warnings);
        assert!(!st.warnings[0].contains("s3cret"));

        let cfg = s.file(
            "e.toml",
            "proxy = \"socks5://198.51.100.1\"\nusername = \"bob\"\npassword_env = \"MY_PW\"\n",
        );
        let cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        let st = run(&cli, &env_of(&[("MY_PW", "envpw")]), &s.0).unwrap();
        assert_eq!(st.proxy.unwrap().password.as_deref(), Some("envpw"));
        assert_eq!(st.scrub_env, vec!["MY_PW".to_string()]);
        let err = run(&cli, &env_of(&[]), &s.0).unwrap_err();
        assert!(err.contains("MY_PW") && err.contains(":3:"), "{err}");

        // A password in LAYSOCKS_PROXY: used, and scrubbed; the URL's password wins over
        // the file's password_env, whose variable is scrubbed all the same.
        let st = run(
            &cli,
            &env_of(&[(ENV_PROXY, "socks5://al:pw1@198.51.100.2"), ("MY_PW", "x")]),
            &s.0,
        )
        .unwrap();
        let u = st.proxy.unwrap();
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("al"), Some("pw1"))
        );
        assert!(st.scrub_env.contains(&ENV_PROXY.to_string()));
        assert!(st.scrub_env.contains(&"MY_PW".to_string()));

        // Overridden by -x, LAYSOCKS_PROXY with a password is still scrubbed.
        let cli2 = CliSettings {
            proxy: Some("socks5://198.51.100.9".into()),
            ..Default::default()
        };
        let st = run(&cli2, &env_of(&[(ENV_PROXY, "socks5://a:b@h")]), &s.0).unwrap();
        assert_eq!(st.scrub_env, vec![ENV_PROXY.to_string()]);
    }

    #[test]
    fn user_without_password_is_an_error() {
        let s = Scratch::new("nopw");
        let cli = CliSettings {
            proxy: Some("socks5://bob@198.51.100.1".into()),
            ..Default::default()
        };
        let err = run(&cli, &env_of(&[]), &s.0).unwrap_err();
        assert!(err.contains("no password"), "{err}");
    }

    #[test]
    fn dns_defaults_to_remote_for_every_proxy() {
        let s = Scratch::new("dnsdef");
        for proxy in [
            Some("socks5://198.51.100.1"),
            Some("socks5h://198.51.100.1"),
            None,
        ] {
            let cli = CliSettings {
                proxy: proxy.map(String::from),
                ..Default::default()
            };
            let st = run(&cli, &env_of(&[]), &s.0).unwrap();
            assert_eq!(st.dns, DnsSettings::default(), "{proxy:?}");
            assert!(st.dns.remote);
        }
        let d = DnsSettings::default();
        assert_eq!(d.pool4.to_string(), "198.18.0.0/15");
        assert_eq!(d.pool6.to_string(), "fd6c:6179:736f:636b::/64");
        assert_eq!(d.capacity, 65_536);
        assert_eq!(d.server, None);
        assert!(d.direct_names.is_empty());
    }

    #[test]
    fn dns_mode_precedence_and_socks5h_conflict() {
        let s = Scratch::new("dnsmode");
        let local = s.file(
            "local.toml",
            "proxy = \"socks5://198.51.100.1\"\ndns = \"local\"\n",
        );
        let remote = s.file("remote.toml", "dns = \"remote\"\n");
        let with = |cfg: &PathBuf, dns: Option<DnsMode>, proxy: Option<&str>| CliSettings {
            config: Some(cfg.clone()),
            dns,
            proxy: proxy.map(String::from),
            ..Default::default()
        };
        let none = env_of(&[]);
        assert!(
            !run(&with(&local, None, None), &none, &s.0)
                .unwrap()
                .dns
                .remote
        );
        assert!(
            run(&with(&local, Some(DnsMode::Remote), None), &none, &s.0)
                .unwrap()
                .dns
                .remote,
            "--dns beats the file"
        );
        assert!(
            run(&with(&remote, None, None), &none, &s.0)
                .unwrap()
                .dns
                .remote
        );
        assert!(
            !run(&with(&remote, Some(DnsMode::Local), None), &none, &s.0)
                .unwrap()
                .dns
                .remote
        );
        // The built-in server with local DNS is fine.
        let cli = CliSettings {
            dns: Some(DnsMode::Local),
            ..Default::default()
        };
        assert!(!run(&cli, &none, &s.0).unwrap().dns.remote);

        // socks5h:// with local DNS, wherever each came from: one line, naming the source.
        let err = run(
            &with(
                &remote,
                Some(DnsMode::Local),
                Some("socks5h://198.51.100.1"),
            ),
            &none,
            &s.0,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "--dns local: the proxy URL socks5h://198.51.100.1:1080 asks the proxy to resolve names but dns is \"local\"; use socks5:// or drop the dns setting"
        );
        let err = run(
            &with(&local, None, Some("socks5h://198.51.100.1")),
            &none,
            &s.0,
        )
        .unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}:2: the proxy URL socks5h://198.51.100.1:1080 asks the proxy to resolve names but dns is \"local\"; use socks5:// or drop the dns setting",
                local.display()
            )
        );
        let env = env_of(&[(ENV_PROXY, "socks5h://198.51.100.2")]);
        let err = run(&with(&local, None, None), &env, &s.0).unwrap_err();
        assert!(
            err.contains(":2: the proxy URL socks5h://198.51.100.2:1080"),
            "{err}"
        );
        // socks5h:// and --dns remote, or the file's local overridden by --dns remote: fine.
        let st = run(
            &with(
                &local,
                Some(DnsMode::Remote),
                Some("socks5h://198.51.100.1"),
            ),
            &none,
            &s.0,
        )
        .unwrap();
        assert!(st.dns.remote);
        // A password in the URL never reaches the message.
        let err = run(
            &with(
                &remote,
                Some(DnsMode::Local),
                Some("socks5h://al:hunter2@198.51.100.1"),
            ),
            &none,
            &s.0,
        )
        .unwrap_err();
        assert!(
            err.contains("socks5h://al@198.51.100.1:1080") && !err.contains("hunter2"),
            "{err}"
        );

        let e = cfg_err("\ndns = \"proxy\"\n");
        assert!(e.starts_with("2: dns: `proxy`"), "{e}");
        let e = cfg_err("dns = true\n");
        assert!(e.starts_with("1: "), "{e}");
    }

    #[test]
    fn dns_server_forms() {
        for (given, want) in [
            ("203.0.113.53", "203.0.113.53:53"),
            ("203.0.113.53:5353", "203.0.113.53:5353"),
            ("[2001:db8::53]", "[2001:db8::53]:53"),
            ("[2001:DB8:0::53]:853", "[2001:db8::53]:853"),
            ("2001:db8::53", "[2001:db8::53]:53"),
            ("::1", "[::1]:53"),
            ("DNS.Example", "dns.example:53"),
            ("dns.example:5353", "dns.example:5353"),
            ("resolver", "resolver:53"),
            ("ns_1.example.", "ns_1.example.:53"),
        ] {
            match parse_dns_server(given) {
                Ok(got) if given.ends_with('.') => {
                    panic!("{given}: a trailing dot is an empty label, got {got}")
                }
                Ok(got) => assert_eq!(got, want, "{given}"),
                Err(_) if given.ends_with('.') => {}
                Err(e) => panic!("{given}: {e}"),
            }
        }
        for bad in [
            "",
            "dns.example:0",
            "dns.example:65536",
            "dns.example:",
            ":53",
            "[2001:db8::53",
            "[2001:db8::53]53",
            "[203.0.113.1]:53",
            "dns example",
            "dns..example",
            "300.1.1.1",
            "1.2.3",
            "2001:db8::53:x",
            "bücher.example",
        ] {
            let e = parse_dns_server(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }

        let s = Scratch::new("dnssrv");
        let cfg = s.file("c.toml", "dns_server = \"[2001:db8::53]\"\n");
        let mut cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        let st = run(&cli, &env_of(&[]), &s.0).unwrap();
        assert_eq!(st.dns.server.as_deref(), Some("[2001:db8::53]:53"));
        cli.dns_server = Some("203.0.113.9:5353".into());
        let st = run(&cli, &env_of(&[]), &s.0).unwrap();
        assert_eq!(
            st.dns.server.as_deref(),
            Some("203.0.113.9:5353"),
            "CLI wins"
        );
        cli.dns_server = Some("bad host".into());
        let e = run(&cli, &env_of(&[]), &s.0).unwrap_err();
        assert!(e.starts_with("--dns-server: `bad host`"), "{e}");
        let e = cfg_err("quiet = true\ndns_server = \"dns.example:99999\"\n");
        assert!(e.starts_with("2: dns_server: "), "{e}");
    }

    #[test]
    fn direct_names_merge_and_normalise() {
        assert_eq!(direct_name(".Corp.Example").unwrap(), "corp.example");
        assert_eq!(direct_name("internal").unwrap(), "internal");
        assert_eq!(direct_name("host.lan.").unwrap(), "host.lan");
        for bad in [
            "", ".", "..x", "a b", "a,b", "a..b", " x", "x\t", "*.corp", "bücher",
        ] {
            assert!(direct_name(bad).is_err(), "{bad:?}");
        }
        let s = Scratch::new("direct");
        let cfg = s.file(
            "c.toml",
            "direct_names = [\"internal\", \".Corp.Example\"]\n",
        );
        let cli = CliSettings {
            config: Some(cfg),
            direct_names: vec!["corp.example".into(), ".LAN".into()],
            ..Default::default()
        };
        let st = run(&cli, &env_of(&[]), &s.0).unwrap();
        assert_eq!(st.dns.direct_names, ["internal", "corp.example", "lan"]);
        let cli = CliSettings {
            direct_names: vec!["a b".into()],
            ..Default::default()
        };
        let e = run(&cli, &env_of(&[]), &s.0).unwrap_err();
        assert!(e.starts_with("--direct-name: `a b`"), "{e}");
        let e = cfg_err("direct_names = [\n  \"ok\",\n  \"\",\n]\n");
        assert!(e.starts_with("3: direct_names: "), "{e}");
        let e = cfg_err("direct_names = \"internal\"\n");
        assert!(e.starts_with("1: "), "not an array: {e}");
    }

    #[test]
    fn dns_pools_and_capacity() {
        let s = Scratch::new("pools");
        let cfg = s.file(
            "c.toml",
            "dns_pool4 = \"10.99.0.0/16\"\ndns_pool6 = \"fd00:1:2:3::/64\"\ndns_names = 1000\n",
        );
        let cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        let st = run(&cli, &env_of(&[]), &s.0).unwrap();
        assert_eq!(st.dns.pool4.to_string(), "10.99.0.0/16");
        assert_eq!(st.dns.pool6.to_string(), "fd00:1:2:3::/64");
        assert_eq!(st.dns.capacity, 1000);

        // A small pool with dns_names unset: the default shrinks to fit.
        let cfg = s.file("small.toml", "dns_pool4 = \"198.18.0.0/24\"\n");
        let cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        assert_eq!(run(&cli, &env_of(&[]), &s.0).unwrap().dns.capacity, 254);
        let cfg = s.file("small6.toml", "dns_pool6 = \"fd00::/120\"\n");
        let cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        assert_eq!(run(&cli, &env_of(&[]), &s.0).unwrap().dns.capacity, 254);
        // Exactly the room there is: fine.
        let cfg = s.file("fit.toml", "dns_pool4 = \"198.18.0.0/30\"\ndns_names = 2\n");
        let cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        assert_eq!(run(&cli, &env_of(&[]), &s.0).unwrap().dns.capacity, 2);
        let cfg = s.file(
            "max.toml",
            "dns_pool4 = \"10.0.0.0/8\"\ndns_names = 1000000\n",
        );
        let cli = CliSettings {
            config: Some(cfg),
            ..Default::default()
        };
        assert_eq!(
            run(&cli, &env_of(&[]), &s.0).unwrap().dns.capacity,
            1_000_000
        );

        for (text, want) in [
            ("dns_pool4 = \"fd00::/64\"\n", "1: dns_pool4: `fd00::/64` is not an IPv4 network"),
            ("dns_pool6 = \"198.18.0.0/15\"\n", "1: dns_pool6: `198.18.0.0/15` is not an IPv6 network"),
            ("dns_pool4 = \"198.18.0.0/31\"\n", "1: dns_pool4: `198.18.0.0/31` is too small: use a prefix of /30 or shorter"),
            ("dns_pool6 = \"fd00::/121\"\n", "1: dns_pool6: `fd00::/121` is too small: use a prefix of /120 or shorter"),
            ("dns_pool4 = \"nonsense\"\n", "1: dns_pool4: `nonsense` is not an IP address or CIDR network"),
            ("\ndns_pool4 = \"224.1.0.0/16\"\n", "2: dns_pool4: `224.1.0.0/16` overlaps 224.0.0.0/4 (multicast"),
            ("dns_pool4 = \"0.0.0.0/0\"\n", "1: dns_pool4: `0.0.0.0/0` overlaps 0.0.0.0/8"),
            ("dns_pool4 = \"127.1.0.0/16\"\n", "1: dns_pool4: `127.1.0.0/16` overlaps 127.0.0.0/8 (loopback)"),
            ("dns_pool6 = \"ff05::/64\"\n", "1: dns_pool6: `ff05::/64` overlaps ff00::/8 (multicast"),
            ("dns_pool6 = \"::ffff:198.18.0.0/112\"\n", "1: dns_pool6: `::ffff:198.18.0.0/112` overlaps ::ffff:0.0.0.0/96"),
            ("dns_names = 0\n", "1: dns_names = 0: the name table holds 1 to 1000000 names"),
            ("dns_names = -5\n", "1: dns_names = -5: the name table holds 1 to 1000000 names"),
            ("dns_names = 1000001\n", "1: dns_names = 1000001: the name table holds 1 to 1000000 names"),
            ("dns_names = 200000\n", "1: dns_names = 200000 is more than the pool 198.18.0.0/15 has placeholders for (131070): lower dns_names or widen dns_pool4"),
            ("dns_pool4 = \"198.18.0.0/30\"\n\ndns_names = 3\n", "3: dns_names = 3 is more than the pool 198.18.0.0/30 has placeholders for (2)"),
            ("dns_pool4 = \"10.0.0.0/8\"\ndns_pool6 = \"fd00::/120\"\ndns_names = 255\n", "3: dns_names = 255 is more than the pool fd00::/120 has placeholders for (254): lower dns_names or widen dns_pool6"),
            ("dns_names = \"many\"\n", "1: "),
            ("dns_names = 1.5\n", "1: "),
        ] {
            let e = cfg_err(text);
            assert!(e.starts_with(want), "{text:?}:\n got  {e}\n want {want}…");
        }
    }

    #[test]
    fn cli_errors() {
        let s = Scratch::new("cli");
        let cli = CliSettings {
            proxy: Some("socks5://u:hunter2@bad host".into()),
            ..Default::default()
        };
        let err = run(&cli, &env_of(&[]), &s.0).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let cli = CliSettings {
            exclude: vec!["nonsense".into()],
            ..Default::default()
        };
        assert!(run(&cli, &env_of(&[]), &s.0)
            .unwrap_err()
            .starts_with("--exclude"));
        assert!(timeout_ms(0.0).is_err());
        assert!(timeout_ms(f64::NAN).is_err());
        assert_eq!(timeout_ms(1.5).unwrap(), 1500);
        assert!(url_has_password("socks5://a:b@h:1"));
        assert!(!url_has_password("socks5://a@h:1"));
        assert!(!url_has_password("socks5://h:1"));
    }
}
