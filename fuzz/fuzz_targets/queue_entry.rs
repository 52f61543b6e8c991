//! Fuzz target `queue_entry`: the spool codecs on arbitrary bytes —
//! `spool::format::decode`, `decode_envelope` and `spool::state::State::decode`.
//!
//! Asserts no panic, that whatever decodes re-encodes to something that
//! decodes to the same value (arrival times are stored with microsecond
//! precision, so they may move by less than 1 µs once), and that a decoded
//! message range lies inside the input.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::queue_entry::check(data));
