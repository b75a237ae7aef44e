//! Replays every file of every fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! invariant checks the cargo-fuzz targets run, on the stable toolchain, so what the fuzzer
//! once found keeps being tested by a plain `cargo test`.

use laysocks_proto::fuzzing::{check_client, check_server, check_udp};
use std::fs;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
        .into_iter()
        .map(|p| {
            let data = fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

fn replay(target: &str, check: fn(&[u8])) {
    for (path, data) in corpus(target) {
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{target}: {} fails its checks", path.display());
    }
}

#[test]
fn client_corpus() {
    replay("client", check_client);
}

#[test]
fn server_corpus() {
    replay("server", check_server);
}

#[test]
fn udp_corpus() {
    replay("udp", check_udp);
}
