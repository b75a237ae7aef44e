//! The guard's lines on stderr: one per failure or refusal (unless quiet), one per
//! proxied or direct connect with `-v` — the preload layer's wording, so a user sees the
//! same messages whichever layer caught the call.

use laysocks_config::LayerConfig;
use laysocks_sys::stderr;

/// Prints `laysocks: {what}` unless quiet, leaving out an exact repeat within a second.
pub fn line(cfg: &LayerConfig, what: &str) {
    if cfg.quiet {
        return;
    }
    let l = format!("laysocks: {what}");
    if !repeated(&l) {
        stderr::write_line(&l);
    }
}

/// Prints `laysocks: {what}` with `-v` only.
pub fn verbose(cfg: &LayerConfig, what: &str) {
    if cfg.verbose && !cfg.quiet {
        stderr::write_line(&format!("laysocks: {what}"));
    }
}

fn repeated(line: &str) -> bool {
    use std::sync::Mutex;
    static LAST: Mutex<(u64, u64)> = Mutex::new((0, 0));
    let h = line.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let now = laysocks_sys::time::now_ms();
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let same = last.0 == h && now.saturating_sub(last.1) < 1000;
    *last = (h, now);
    same
}
