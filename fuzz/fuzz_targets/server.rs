//! Fuzz target `server`: the checks live in `laysocks_proto::fuzzing::check_server` so that
//! `crates/laysocks-proto/tests/fuzz_corpus.rs` replays the corpus with the same asserts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    laysocks_proto::fuzzing::check_server(data);
});
