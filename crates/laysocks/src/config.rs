//! Settings: command line, environment and config file, merged into one [`Settings`].
//!
//! Precedence is command line > `LAYSOCKS_PROXY` > config file, key by key. The config
//! file is TOML and strict (unknown keys are errors: a typo such as `pasword_file` must not
//! silently send a connection without credentials). Every problem in it is reported as
//! one line, `laysocks: FILE:LINE: problem`, with the line taken from the TOML span.
//!
//! Passwords come from the URL, from `password_file` or from the variable named by
//! `password_env`. Whatever carried a secret is named in [`Settings::scrub_env`] so the
//! launcher can remove it from the program's environment: the program (and everything it
//! starts) must never see the password.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use laysocks_config::{Exclusion, ProxyUrl};
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
    /// Environment variables that carry a secret and must not reach the program.
    pub scrub_env: Vec<String>,
    /// Non-fatal problems to print (unless quiet).
    pub warnings: Vec<String>,
    /// The config file that was read, if any.
    pub config_path: Option<PathBuf>,
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

    Ok(Settings {
        proxy,
        connect_timeout_ms,
        quiet,
        verbose,
        excludes,
        pipeline,
        scrub_env,
        warnings,
        config_path,
    })
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
    fn precedence_cli_env_file() {
        let s = Scratch::new("prec");
        let cfg = s.file(
            "c.toml",
            "proxy = \"socks5://198.51.100.1:1080\"\nconnect_timeout = 3\nverbose = true\npipeline = true\n",
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
