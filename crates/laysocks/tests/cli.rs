//! The command line and configuration as a user meets them: help, version, and the
//! one-line errors with exit status 125.

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[test]
fn help_lists_usage_examples_and_subcommands() {
    let s = Scratch::new("help");
    let mut c = laysocks(&s.0);
    c.arg("--help");
    let (st, out, _) = run(c, T);
    assert!(st.success());
    for want in [
        "laysocks [OPTIONS] [--] PROGRAM [ARGS...]",
        "Examples:",
        "serve",
        "check",
        "completions",
        "--proxy",
        "--exclude",
        "--connect-timeout",
        "--dns <MODE>",
        "--dns-server",
        "--direct-name",
        "differs from curl",
    ] {
        assert!(out.contains(want), "--help lacks `{want}`:\n{out}");
    }
}

#[test]
fn version() {
    let s = Scratch::new("version");
    let mut c = laysocks(&s.0);
    c.arg("--version");
    let (st, out, _) = run(c, T);
    assert!(st.success());
    assert_eq!(
        out.trim(),
        format!("laysocks {}", env!("CARGO_PKG_VERSION"))
    );
}

fn one_line_125(c: std::process::Command) -> String {
    let (st, out, err) = run(c, T);
    assert_eq!(st.code(), Some(125), "stderr: {err}");
    assert!(out.is_empty(), "stdout: {out}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("laysocks: "), "{err}");
    err
}

#[test]
fn bad_url_is_one_line_and_hides_the_password() {
    let s = Scratch::new("badurl");
    let mut c = laysocks(&s.0);
    c.args(["-x", "http://198.51.100.1:8080", "--", "true"]);
    let err = one_line_125(c);
    assert!(err.contains("socks5://"), "{err}");

    let mut c = laysocks(&s.0);
    c.args(["-x", "socks5://u:hunter2@bad host:1", "--", "true"]);
    let err = one_line_125(c);
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn bad_usage_is_one_line() {
    let s = Scratch::new("usage");
    let mut c = laysocks(&s.0);
    c.args(["--no-such-option", "true"]);
    one_line_125(c);
    let c = laysocks(&s.0);
    let err = one_line_125(c);
    assert!(err.contains("no program"), "{err}");
    let mut c = laysocks(&s.0);
    c.args(["-q", "-v", "true"]);
    one_line_125(c);
    let mut c = laysocks(&s.0);
    c.args([
        "--exclude",
        "nonsense",
        "-x",
        "socks5://127.0.0.1:9",
        "true",
    ]);
    one_line_125(c);
    let mut c = laysocks(&s.0);
    c.args([
        "--connect-timeout",
        "0",
        "-x",
        "socks5://127.0.0.1:9",
        "true",
    ]);
    one_line_125(c);
}

#[test]
fn bad_config_names_file_and_line() {
    let s = Scratch::new("badcfg");
    let cfg = s.file(
        "config.toml",
        "# laysocks\nproxy = \"socks5://127.0.0.1:9\"\nconect_timeout = 3\n",
    );
    let mut c = laysocks(&s.0);
    c.arg("-c").arg(&cfg).args(["--", "true"]);
    let err = one_line_125(c);
    assert!(
        err.starts_with(&format!("laysocks: {}:3: ", cfg.display())),
        "{err}"
    );
    assert!(err.contains("conect_timeout"), "{err}");

    // Found through $XDG_CONFIG_HOME, a bad value on line 2.
    std::fs::create_dir_all(s.0.join("config/laysocks")).unwrap();
    let xdg = s.file(
        "config/laysocks/config.toml",
        "\nproxy = \"socks4://127.0.0.1:9\"\n",
    );
    let mut c = laysocks(&s.0);
    c.args(["--", "true"]);
    let err = one_line_125(c);
    assert!(
        err.starts_with(&format!("laysocks: {}:2: ", xdg.display())),
        "{err}"
    );

    // $LAYSOCKS_CONFIG naming a missing file is an error, not a fallback.
    let mut c = laysocks(&s.0);
    c.env("LAYSOCKS_CONFIG", s.0.join("missing.toml"))
        .args(["--", "true"]);
    let err = one_line_125(c);
    assert!(err.contains("LAYSOCKS_CONFIG"), "{err}");
}

#[test]
fn program_not_found_or_not_executable() {
    let s = Scratch::new("prog");
    let mut c = laysocks(&s.0);
    c.args([
        "-x",
        "socks5://127.0.0.1:9",
        "--",
        "laysocks-no-such-program",
    ]);
    let (st, _, err) = run(c, T);
    assert_eq!(st.code(), Some(127), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("command not found"), "{err}");

    let f = s.file("not-executable", "#!/bin/sh\necho hi\n");
    let mut c = laysocks(&s.0);
    c.args(["-x", "socks5://127.0.0.1:9", "--"]).arg(&f);
    let (st, _, err) = run(c, T);
    assert_eq!(st.code(), Some(126), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn completions_for_bash() {
    let s = Scratch::new("compl");
    let mut c = laysocks(&s.0);
    c.args(["completions", "bash"]);
    let (st, out, _) = run(c, T);
    assert!(st.success());
    assert!(
        out.contains("_laysocks") && out.contains("--proxy"),
        "{out}"
    );
}
