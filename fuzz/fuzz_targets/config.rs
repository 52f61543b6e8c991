//! Fuzz target `config`: `config::Config::parse` on arbitrary text.
//!
//! Asserts no panic; an error is always a configuration error (exit 78)
//! whose message is one line; an accepted config satisfies the validation
//! rules the rest of Postern relies on.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config::check(data));
