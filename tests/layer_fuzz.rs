//! Replays the layer fuzz corpus (`fuzz/corpus/layer/`) through the real preload layer:
//! a persistent program under the launcher connects once per input through a replay
//! server playing the input as the proxy (see `laysocks_testkit::layerfuzz`), and what
//! the program sees — errno, timing, bytes after the reply, fds left open, packets
//! around the proxy — must match the protocol oracle. Inputs the fuzzer once found stay
//! here as regression tests without nightly.

#[path = "../fuzz/layer_expect.rs"]
mod layer_expect;

use laysocks_testkit::layerfuzz::{Input, LayerHarness};
use std::path::PathBuf;
use std::time::Instant;

#[test]
fn layer_corpus_replays_through_the_real_layer() {
    // LAYER_FUZZ_DIR replays another directory (a fuzzer's scratch corpus, say).
    let other = std::env::var_os("LAYER_FUZZ_DIR").map(PathBuf::from);
    let whole = other.is_none() && std::env::var_os("LAYER_FUZZ_ONLY").is_none();
    let dir = other
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/layer"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the layer corpus {} is empty",
        dir.display()
    );
    // LAYER_FUZZ_ONLY=SUBSTRING replays the matching files only (to study one finding),
    // LAYER_FUZZ_REPEAT=N each N times (races).
    if let Ok(only) = std::env::var("LAYER_FUZZ_ONLY") {
        files.retain(|p| p.to_string_lossy().contains(&only));
    }
    let repeat: usize = std::env::var("LAYER_FUZZ_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let files: Vec<PathBuf> = files
        .iter()
        .flat_map(|f| std::iter::repeat_n(f.clone(), repeat))
        .collect();
    let started = Instant::now();
    let mut h = LayerHarness::new();
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let Some(input) = Input::parse(&data) else {
            continue;
        };
        // The engine part of the fuzz target, so the corpus covers it here too.
        let engine = layer_expect::engine_input(&input);
        if std::panic::catch_unwind(|| laysocks_proto::fuzzing::check_client(&engine)).is_err() {
            failures.push(format!(
                "{}: the engine's client check fails",
                path.display()
            ));
        }
        let expect = layer_expect::expect(&input);
        if let Err(e) = h.check(&input, &expect) {
            failures.push(format!("{}:\n{e}", path.display()));
        }
    }
    eprintln!(
        "layer corpus: {} inputs in {:.1} s, {:?}",
        files.len(),
        started.elapsed().as_secs_f64(),
        h.stats
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if whole {
        // The checked-in corpus has every kind of outcome; a harness that saw only one
        // kind would be checking nothing.
        let s = &h.stats;
        assert!(
            files.len() >= 50,
            "the layer corpus shrank to {}",
            files.len()
        );
        assert!(
            s.connected >= 10 && s.failed >= 20 && s.timed_out >= 5,
            "{s:?}"
        );
    }
    h.rig().assert_no_leak();
}
