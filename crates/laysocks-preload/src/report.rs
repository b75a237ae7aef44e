//! The layer's messages on stderr: one line each, naming target, proxy and reason.
//!
//! Failures are printed unless `quiet`; with `verbose`, every connection gets a line
//! (proxied with its handshake time, and direct ones with why they went direct), so
//! `laysocks -v -- prog` shows everything a program connects to.

use std::net::SocketAddr;

use laysocks_config::LayerConfig;
use laysocks_proto::TargetAddr;
use laysocks_sys::{stderr, Errno};

use crate::driver::Failure;

/// A proxied connect succeeded after `micros`.
pub fn connected(cfg: &LayerConfig, target: &TargetAddr, micros: u64) {
    if cfg.verbose && !cfg.quiet {
        stderr::write_line(&format!(
            "laysocks: {target} via {}: connected in {:.1} ms",
            cfg.proxy_label,
            micros as f64 / 1000.0
        ));
    }
}

/// A connect went direct (loopback, exclusion, the proxy itself).
pub fn direct(cfg: &LayerConfig, dest: SocketAddr) {
    if cfg.verbose && !cfg.quiet {
        let why = if laysocks_config::net::canonical(dest.ip()).is_loopback() {
            "loopback"
        } else {
            "excluded"
        };
        stderr::write_line(&format!("laysocks: {dest}: direct ({why})"));
    }
}

/// A proxied connect failed; the program gets `errno`. The same line again within a
/// second is left out: a program trying a name's IPv4 and then its IPv6 placeholder,
/// or retrying at once, gets one line per failure, not one per attempt.
pub fn failed(cfg: &LayerConfig, target: &TargetAddr, failure: &Failure, errno: Errno) {
    if !cfg.quiet {
        let line = format!(
            "laysocks: connect to {target} via {} failed: {} ({errno})",
            cfg.proxy_label,
            failure.reason()
        );
        if !repeated(&line) {
            stderr::write_line(&line);
        }
    }
}

/// Whether `line` is the one printed last, less than a second ago.
fn repeated(line: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_HASH: AtomicU64 = AtomicU64::new(0);
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let h = line.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let now = laysocks_sys::time::now_ms();
    let same = LAST_HASH.swap(h, Ordering::Relaxed) == h
        && now.saturating_sub(LAST_MS.load(Ordering::Relaxed)) < 1000;
    LAST_MS.store(now, Ordering::Relaxed);
    same
}

/// The layer refused something that would have gone around the proxy (`what` says what
/// and what to do instead).
pub fn refused(cfg: &LayerConfig, what: &str) {
    if !cfg.quiet {
        let line = format!("laysocks: {what}");
        if !repeated(&line) {
            stderr::write_line(&line);
        }
    }
}

/// A UDP ASSOCIATE session could not be opened; the datagram fails with `errno`.
pub fn udp_failed(
    cfg: &LayerConfig,
    target: &TargetAddr,
    failure: &Failure,
    errno: Errno,
    unsupported: bool,
) {
    if !cfg.quiet {
        let why = if unsupported {
            "the proxy does not support UDP ASSOCIATE (it answered \"command not supported\"); use a proxy that relays UDP, such as Dante".to_string()
        } else {
            failure.reason()
        };
        let line = format!(
            "laysocks: UDP to {target} via {} failed: {why} ({errno})",
            cfg.proxy_label
        );
        if !repeated(&line) {
            stderr::write_line(&line);
        }
    }
}
