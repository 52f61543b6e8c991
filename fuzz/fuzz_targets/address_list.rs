//! Fuzz target `address_list`: `address::parse` on arbitrary header values
//! and single addresses; spans in bounds, results that parse back.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::address_list::check(data));
