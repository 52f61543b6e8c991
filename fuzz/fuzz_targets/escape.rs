//! Fuzz target `escape`: see `checks::escape` in `checks/mod.rs` (shared with
//! tests/suite/fuzz_corpus.rs) for what it feeds and asserts.

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::escape::check(data));
