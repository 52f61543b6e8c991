//! Fuzz target `guard_state`: see `checks::guard_state` in `checks/mod.rs` (shared with
//! tests/suite/fuzz_corpus.rs) for what it feeds and asserts.

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::guard_state::check(data));
