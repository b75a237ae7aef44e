//! The command line: `laysocks [OPTIONS] [--] PROGRAM [ARGS…]` and the subcommands
//! `serve`, `check` and `completions`.
//!
//! A program whose name is also a subcommand runs with `laysocks -- serve`: after `--`
//! every word is the program's. Everything after PROGRAM belongs to the program too, so
//! `laysocks curl -v URL` passes `-v` to curl. Usage errors are one line and exit 125,
//! like the launcher's other own failures.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{self, CliSettings};
use crate::{say, EXIT_USAGE};

const EXAMPLES: &str = "\
Examples:
  laysocks -x socks5://198.51.100.1:1080 -- curl http://203.0.113.5/
  laysocks -x socks5h://alice@proxy.example:1080 -- git fetch
      (with password_file = \"~/.config/laysocks/password\" in the config file)
  laysocks curl http://203.0.113.5/
      (no proxy configured: uses a built-in SOCKS5 server on 127.0.0.1)
  laysocks --exclude 198.51.100.0/24:80 -x socks5://127.0.0.1:1080 -- ssh host
  laysocks --direct-name .corp.example --dns-server 203.0.113.53 -x socks5://127.0.0.1:1080 -- dig example.com
  laysocks --dns local -x socks5://127.0.0.1:1080 -- curl http://example.com/
  laysocks serve --listen 127.0.0.1:1080 --user-file ~/.config/laysocks/serve-user
  laysocks check socks5://alice:secret@127.0.0.1:1080 --target 203.0.113.5:80
  laysocks completions bash > /etc/bash_completion.d/laysocks

Config file (first found): -c FILE, $LAYSOCKS_CONFIG, $XDG_CONFIG_HOME/laysocks/config.toml,
~/.config/laysocks/config.toml, /etc/laysocks/config.toml.
Precedence: command line > $LAYSOCKS_PROXY > config file.

DNS: names are resolved by the proxy by default, with socks5:// as with socks5h:// and
the built-in server; nothing is looked up on this machine unless --dns local (or
dns = \"local\") says so. This differs from curl, where socks5:// means local DNS.
socks5h:// always means remote; with --dns local it is an error.";

#[derive(Parser, Debug)]
#[command(
    name = "laysocks",
    version,
    about = "Run a program with its connections through a SOCKS5 proxy",
    long_about = "Run a program with its TCP connections sent through a SOCKS5 proxy (RFC 1928), \
                  by preloading liblaysocks.so into it. A seccomp guard (Linux 5.19+) also \
                  catches the connections of programs that bypass libc (Go, static binaries, raw \
                  system calls): laysocks stays beside the program as its supervisor and passes \
                  on its exit status and signals; the program keeps its terminal and process \
                  group. With --no-guard (or guard = false) the preload layer works alone and \
                  the program keeps laysocks' pid. With no proxy configured, a built-in SOCKS5 \
                  server on 127.0.0.1 is used.",
    after_help = EXAMPLES,
    disable_help_subcommand = true,
    override_usage = "laysocks [OPTIONS] [--] PROGRAM [ARGS...]\n       \
                      laysocks serve [--listen ADDR:PORT] [--user USER:PASSWORD | --user-file FILE] [-v]\n       \
                      laysocks check [URL] [--target HOST:PORT]\n       \
                      laysocks completions SHELL",
    subcommand_precedence_over_arg = false,
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// The program to run and its arguments
    #[arg(
        value_name = "PROGRAM",
        trailing_var_arg = true,
        allow_hyphen_values = false
    )]
    pub program: Vec<OsString>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Common {
    /// Proxy URL: socks5://[user[:password]@]host[:port] (names go to the proxy with either
    /// scheme unless --dns local; socks5h:// insists on it)
    #[arg(short = 'x', long = "proxy", value_name = "URL", global = true)]
    pub proxy: Option<String>,

    /// Config file (TOML) to read instead of the default places
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// No messages from laysocks
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// One line per connection
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,

    /// Send destinations in CIDR[:PORT] direct instead of through the proxy (repeatable)
    #[arg(long, value_name = "CIDR[:PORT]", global = true)]
    pub exclude: Vec<String>,

    /// Deadline in seconds for reaching the proxy and finishing the handshake [default: 10]
    #[arg(long, value_name = "SECS", global = true)]
    pub connect_timeout: Option<f64>,

    /// Send the SOCKS5 greeting, authentication and request in one write (one or two
    /// round trips fewer; proxies that cannot take it are detected and handled)
    #[arg(long, global = true)]
    pub pipeline: bool,

    /// Who resolves host names: remote (the proxy; the default, also for socks5://) or
    /// local (the program, with the system resolver; not with socks5h://)
    #[arg(long, value_name = "MODE", global = true, value_enum)]
    pub dns: Option<config::DnsMode>,

    /// DNS server for the program's own DNS queries (res_query, dig), reached through the
    /// proxy over TCP; port 53 unless given (without one, such queries are refused)
    #[arg(long, value_name = "HOST[:PORT]", global = true)]
    pub dns_server: Option<String>,

    /// Resolve this name, and names ending in .NAME, locally even with remote DNS
    /// (repeatable; adds to direct_names in the config file)
    #[arg(long = "direct-name", value_name = "NAME", global = true)]
    pub direct_name: Vec<String>,

    /// Start a program laysocks cannot cover (32-bit, setuid/setcap; with --no-guard also
    /// static and Go programs) anyway, with a warning: it runs without the guard and its
    /// connections go direct
    #[arg(long, global = true)]
    pub allow_direct: bool,

    /// Preload layer only: no seccomp guard, no supervisor (the program keeps laysocks'
    /// pid; programs that bypass libc — Go, static binaries — are then refused or direct)
    #[arg(long, global = true)]
    pub no_guard: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a SOCKS5 server (CONNECT; no auth, or user/password with --user)
    Serve(ServeArgs),
    /// Test a proxy: reachability, accepted methods, authentication, optionally a CONNECT
    Check(CheckArgs),
    /// Print a shell completion script
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Internal: the companion process started by the launcher
    #[command(name = "__companion", hide = true)]
    Companion(crate::companion::CompanionArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:1080")]
    pub listen: String,

    /// Require this user name and password (RFC 1929); also $LAYSOCKS_SERVE_USER
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "user_file")]
    pub user: Option<String>,

    /// Read USER:PASSWORD from the first line of FILE
    #[arg(long, value_name = "FILE")]
    pub user_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The proxy to test (default: the configured one)
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Also CONNECT through the proxy to HOST:PORT, and send it one datagram through the UDP relay
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
}

impl Common {
    fn settings(&self) -> CliSettings {
        CliSettings {
            proxy: self.proxy.clone(),
            config: self.config.clone(),
            quiet: self.quiet,
            verbose: self.verbose,
            exclude: self.exclude.clone(),
            connect_timeout: self.connect_timeout,
            pipeline: self.pipeline,
            dns: self.dns,
            dns_server: self.dns_server.clone(),
            direct_names: self.direct_name.clone(),
            allow_direct: self.allow_direct,
            no_guard: self.no_guard,
        }
    }
}

/// An I/O error as a short phrase: "connection refused", without "(os error 111)".
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// Reads the process environment.
pub fn process_env(key: &str) -> Option<OsString> {
    std::env::var_os(key)
}

/// Merges settings from the command line, the environment and the config file; prints
/// the merge's warnings unless quiet.
pub fn settings(common: &Common) -> Result<config::Settings, String> {
    let s = config::resolve(
        &common.settings(),
        &process_env,
        std::path::Path::new("/etc"),
    )?;
    if !s.quiet {
        for w in &s.warnings {
            say(w);
        }
    }
    Ok(s)
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message has several lines (usage, hints); keep the first.
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            say(format!("{first} (see laysocks --help)"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "laysocks",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Some(Command::Serve(a)) => crate::server::main(&cli.common, &a),
        Some(Command::Check(a)) => crate::check::main(&cli.common, &a),
        Some(Command::Companion(a)) => crate::companion::main(&a),
        None => {
            if cli.program.is_empty() {
                say("no program given: laysocks [OPTIONS] [--] PROGRAM [ARGS...] (see laysocks --help)");
                return ExitCode::from(EXIT_USAGE);
            }
            crate::run::main(&cli.common, cli.program)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("laysocks").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn program_and_subcommands() {
        let c = parse(&["-x", "socks5://h", "curl", "-v", "http://x/"]);
        assert!(c.command.is_none());
        assert_eq!(c.program, ["curl", "-v", "http://x/"]);
        assert_eq!(c.common.proxy.as_deref(), Some("socks5://h"));
        assert!(!c.common.verbose, "-v after the program is the program's");

        let c = parse(&["-v", "--", "serve", "--listen", "x"]);
        assert!(c.command.is_none());
        assert_eq!(c.program, ["serve", "--listen", "x"]);
        assert!(c.common.verbose);

        let c = parse(&["serve", "-v", "--listen", "127.0.0.1:0"]);
        assert!(matches!(c.command, Some(Command::Serve(_))));
        assert!(c.common.verbose);

        let c = parse(&[
            "--exclude",
            "198.51.100.0/24",
            "--exclude",
            "203.0.113.1:80",
            "--connect-timeout",
            "2.5",
            "true",
        ]);
        assert_eq!(c.common.exclude.len(), 2);
        assert_eq!(c.common.connect_timeout, Some(2.5));

        let c = parse(&["check", "socks5://127.0.0.1:1", "--target", "127.0.0.1:2"]);
        assert!(matches!(
            c.command,
            Some(Command::Check(CheckArgs {
                url: Some(_),
                target: Some(_)
            }))
        ));

        let c = parse(&[
            "--dns",
            "local",
            "--dns-server",
            "[2001:db8::53]:5353",
            "--direct-name",
            ".corp.example",
            "--direct-name",
            "internal",
            "check",
        ]);
        assert_eq!(c.common.dns, Some(config::DnsMode::Local));
        assert_eq!(c.common.dns_server.as_deref(), Some("[2001:db8::53]:5353"));
        assert_eq!(c.common.direct_name, [".corp.example", "internal"]);
        assert!(matches!(c.command, Some(Command::Check(_))));
        let c = parse(&["--dns", "remote", "true"]);
        assert_eq!(c.common.dns, Some(config::DnsMode::Remote));
        assert!(Cli::try_parse_from(["laysocks", "--dns", "proxy", "true"]).is_err());

        assert!(Cli::try_parse_from(["laysocks", "-q", "-v", "true"]).is_err());
        assert!(Cli::try_parse_from(["laysocks", "--bogus", "true"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
