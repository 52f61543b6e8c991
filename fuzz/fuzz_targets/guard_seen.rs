//! Fuzz target `guard_seen`: `spool::guard::Seen::decode` on arbitrary
//! text (the outbound guard's `<spool>/guard-seen` message keys).
//!
//! Asserts no panic; that every decoded time is finite; that whatever
//! decodes re-encodes to text that decodes to the same keys and queue ids
//! (times are written with one decimal, so they may move by at most
//! 0.1 s at each round); that an encoding ends with the `end` line; and
//! that no prefix of an encoding that stops before its `end` line decodes
//! (a torn file is refused, never read as fewer keys).
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::guard_seen::check(data));
