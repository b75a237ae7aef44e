//! When the proxy says no, breaks, or is not there: the program must see the errno a
//! direct connect would have given (RFC 1928 §6 reply codes mapped as in DESIGN.md §3.5),
//! the launcher prints one line naming target and proxy, and the program keeps running
//! (the probe prints `alive` after the failed connect). Nothing may leak on failure —
//! a layer that "falls back" to a direct connect is caught here.
//!
//! These are failures of real servers (microsocks, danted) and of proxies that are not
//! there; proxies that misbehave on purpose (bad versions, unknown methods, reply codes,
//! truncated or garbage answers, resets, silence) are the catalogue in `hostile.rs`.

use laysocks_testkit::expect::{layer_error, no_secret, probe_connected, probe_failed};
use laysocks_testkit::{probe, Rig, Run, CLOSED_PORT, PROXY_PASS, PROXY_USER};

fn probe_under(rig: &Rig, url: &str, opts: &[&str], mode: &str, host: &str, port: &str) -> Run {
    let p = probe();
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["--", p.to_str().unwrap(), mode, host, port]);
    rig.run(&mut rig.laysocks(url, &args))
}

#[test]
fn wrong_password_is_eacces_with_a_message_and_no_secret() {
    let rig = Rig::new();
    let echo = rig.echo();
    for proxy in [rig.microsocks_auth(), rig.danted()] {
        let url = proxy.url_with(PROXY_USER, "not-the-password");
        for mode in ["block", "nonblock"] {
            let run = probe_under(&rig, &url, &[], mode, "203.0.113.2", "7");
            probe_failed(&run, "EACCES");
            layer_error(
                &run,
                "203.0.113.2:7",
                &proxy.url_without_credentials(),
                "EACCES",
            );
            no_secret(&run, "not-the-password");
        }
    }
    assert!(
        echo.peers().is_empty(),
        "no connection may reach the target"
    );
    rig.assert_no_leak();
}

#[test]
fn missing_credentials_are_eacces() {
    let rig = Rig::new();
    for proxy in [rig.microsocks_auth(), rig.danted()] {
        let url = proxy.url_without_credentials();
        let run = probe_under(&rig, &url, &[], "block", "203.0.113.2", "7");
        probe_failed(&run, "EACCES");
        layer_error(&run, "203.0.113.2:7", &url, "EACCES");
    }
    rig.assert_no_leak();
}

#[test]
fn curl_reports_a_failed_connect_and_the_layer_says_why() {
    let rig = Rig::new();
    let http = rig.http();
    let proxy = rig.microsocks_auth();
    let url = proxy.url_with(PROXY_USER, "wrong");
    let run = rig.run(&mut rig.laysocks(
        &url,
        ["--", "curl", "-sS", "-m", "15", &http.url("hello.txt")],
    ));
    assert_eq!(run.code(), Some(7), "curl: couldn't connect:\n{run}");
    layer_error(
        &run,
        "203.0.113.2:8080",
        &proxy.url_without_credentials(),
        "EACCES",
    );
    // -q: the program's own error only.
    let run = rig.run(&mut rig.laysocks(
        &url,
        [
            "-q",
            "--",
            "curl",
            "-sS",
            "-m",
            "15",
            &http.url("hello.txt"),
        ],
    ));
    assert_eq!(run.code(), Some(7), "{run}");
    assert!(
        !run.stderr.contains("laysocks:"),
        "-q must silence the layer:\n{run}"
    );
    let _ = PROXY_PASS;
    rig.assert_no_leak();
}

#[test]
fn a_closed_proxy_port_is_econnrefused() {
    let rig = Rig::new();
    let url = format!("socks5://198.51.100.1:{CLOSED_PORT}");
    for mode in ["block", "nonblock"] {
        let run = probe_under(&rig, &url, &[], mode, "203.0.113.2", "7");
        probe_failed(&run, "ECONNREFUSED");
        layer_error(&run, "203.0.113.2:7", &url, "ECONNREFUSED");
    }
    let url6 = format!("socks5://[2001:db8:1::1]:{CLOSED_PORT}");
    for mode in ["block", "nonblock"] {
        let run = probe_under(&rig, &url6, &[], mode, "2001:db8:2::2", "7");
        probe_failed(&run, "ECONNREFUSED");
        layer_error(&run, "[2001:db8:2::2]:7", &url6, "ECONNREFUSED");
    }
    rig.assert_no_leak();
}

#[test]
fn a_closed_target_port_behind_a_real_proxy() {
    let rig = Rig::new();
    let _echo = rig.echo();
    for proxy in [rig.microsocks(), rig.danted()] {
        // Port 9 is closed on the target; the proxy's connect is refused and it answers
        // REP 0x05, which the program must see as the refusal it is.
        let run = probe_under(&rig, &proxy.url(), &[], "block", "203.0.113.2", "9");
        probe_failed(&run, "ECONNREFUSED");
        layer_error(
            &run,
            "203.0.113.2:9",
            &proxy.url_without_credentials(),
            "ECONNREFUSED",
        );
        // And the same program connects fine to an open port afterwards.
        let p = probe();
        let run = rig.run(&mut rig.laysocks(
            &proxy.url(),
            [
                "--",
                p.to_str().unwrap(),
                "block",
                "203.0.113.2",
                "7",
                "still-ok",
            ],
        ));
        probe_connected(&run, "", "203.0.113.2:7", Some("still-ok"));
    }
    rig.assert_no_leak();
}
