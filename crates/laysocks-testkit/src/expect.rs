//! Assertions on what a program under the layer printed, shared by the end-to-end tests:
//! the connect probe's report, and the launcher's one-line failure message.

use crate::util::Run;

/// Panics unless the connect probe connected, `getpeername` gave `peer` (e.g.
/// `203.0.113.2:7` or `[2001:db8:2::2]:7`), `SO_ERROR` was 0, it received `echo` back
/// (when given), and it printed `alive`. `prefix` is `""` or `"child: "`.
#[track_caller]
pub fn probe_connected(run: &Run, prefix: &str, peer: &str, echo: Option<&str>) {
    let lines = run.stdout_lines();
    let want_peer = format!("{prefix}ok peer={peer}");
    assert!(
        lines.contains(&want_peer.as_str()),
        "the probe should report `{want_peer}`:\n{run}"
    );
    let so = format!("{prefix}so_error=0");
    assert!(lines.contains(&so.as_str()), "SO_ERROR should be 0:\n{run}");
    if let Some(e) = echo {
        let r = format!("{prefix}recv={e}");
        assert!(
            lines.contains(&r.as_str()),
            "the probe should get `{e}` echoed:\n{run}"
        );
    }
    let alive = format!("{prefix}alive");
    assert!(
        lines.contains(&alive.as_str()),
        "the probe should print `{alive}`:\n{run}"
    );
}

/// Panics unless the connect probe reported `errno=<errno>` (e.g. `ECONNREFUSED`), did
/// not connect, exited with 1 (not a signal) and printed `alive` afterwards.
#[track_caller]
pub fn probe_failed(run: &Run, errno: &str) {
    let lines = run.stdout_lines();
    let want = format!("errno={errno}");
    assert!(
        lines.contains(&want.as_str()),
        "the probe should report `{want}`:\n{run}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("ok peer=")),
        "the probe must not connect:\n{run}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("alive"),
        "the program must keep running after the failed connect:\n{run}"
    );
    assert_eq!(run.code(), Some(1), "the probe's exit status:\n{run}");
}

/// Panics unless stderr has the launcher's failure line for `target` (e.g.
/// `203.0.113.2:7`) via the proxy at `proxy` (a URL `socks5://host:port`; the line may
/// name the user, `socks5://user@host:port`, but never a password), ending in
/// `(<errno>)`: `laysocks: connect to <target> via <proxy> failed: <reason> (<errno>)`.
#[track_caller]
pub fn layer_error(run: &Run, target: &str, proxy: &str, errno: &str) {
    let addr = proxy.strip_prefix("socks5://").unwrap_or(proxy);
    let addr = addr.rsplit('@').next().unwrap_or(addr);
    let head = format!("laysocks: connect to {target} via socks5://");
    let tail = format!("({errno})");
    let found = run.stderr.lines().any(|l| {
        let Some(rest) = l.strip_prefix(&head) else {
            return false;
        };
        let Some((named, _reason)) = rest.split_once(" failed: ") else {
            return false;
        };
        let named_ok = named == addr
            || named
                .strip_suffix(addr)
                .is_some_and(|user| user.ends_with('@') && !user[..user.len() - 1].contains(':'));
        named_ok && l.trim_end().ends_with(&tail)
    });
    assert!(
        found,
        "stderr should have a line `{head}[user@]{addr} failed: <reason> {tail}`:\n{run}"
    );
}

/// Panics if `secret` appears anywhere in what the program or the launcher printed.
#[track_caller]
pub fn no_secret(run: &Run, secret: &str) {
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "the password must never be printed:\n{run}"
    );
}
