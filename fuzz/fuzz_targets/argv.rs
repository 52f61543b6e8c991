//! Fuzz target `argv`: `cli::parse` on arbitrary argv vectors.
//!
//! The input is split on NUL bytes into arguments (lossy UTF-8, as the
//! privileged start-up does); its first byte picks argv[0] among the names
//! Postern answers to. Asserts no panic, and that whatever the sendmail
//! grammar accepts as a sender, full name or recipient carries no CR, LF or
//! NUL (those would break a header or an envelope line).
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::argv::check(data));
