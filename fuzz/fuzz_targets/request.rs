//! Fuzz target `request`: see `checks::request` in `checks/mod.rs` (shared with
//! tests/suite/fuzz_corpus.rs) for what it feeds and asserts.

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request::check(data));
