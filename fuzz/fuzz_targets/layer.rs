//! Fuzz target `layer`: each input is played by a replay server as the proxy's side of
//! one connection made by a real program under the real preload layer, in network
//! namespaces (`laysocks_testkit::layerfuzz`); what the program sees must match the
//! protocol oracle (`../layer_expect.rs`). Needs root and the main workspace's launcher
//! (`cargo build -p laysocks`; `run.sh` does both).
//!
//! libFuzzer only sees coverage in this process, not in the child where the layer runs,
//! so the same bytes also go through the engine's own check in-process
//! (`laysocks_proto::fuzzing::check_client`, the code the layer runs for the handshake):
//! the coverage feedback then steers inputs through the engine's parse paths, and the
//! harness checks that the layer around the engine agrees.
#![no_main]

#[path = "../layer_expect.rs"]
mod layer_expect;

use laysocks_testkit::layerfuzz::{Input, LayerHarness};
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

/// One harness for the whole run: building the namespaces and starting the two children
/// costs far more than an input.
static HARNESS: Mutex<Option<LayerHarness>> = Mutex::new(None);

/// Removes the namespaces and stops the children when libFuzzer exits normally.
extern "C" fn tear_down() {
    if let Ok(mut h) = HARNESS.lock() {
        if let Some(h) = h.take() {
            eprintln!("layer harness: {:?}", h.stats);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    laysocks_proto::fuzzing::check_client(&layer_expect::engine_input(&input));
    let expect = layer_expect::expect(&input);
    let mut guard = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let h = guard.get_or_insert_with(|| {
        // SAFETY: atexit(3) with a function that takes no arguments and does not unwind
        // (the lock is poison-tolerant and dropping the harness only kills and waits).
        unsafe { libc::atexit(tear_down) };
        LayerHarness::new()
    });
    if let Err(e) = h.check(&input, &expect) {
        // Clean up before the abort that follows the panic (atexit does not run then).
        guard.take();
        panic!("layer fuzz: {e}");
    }
});
