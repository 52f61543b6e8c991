//! Fuzz target `aliases`: `address::aliases::Aliases::parse` and `expand`
//! on arbitrary aliases files.
//!
//! Every name the file defines is expanded with an `is_local` that treats
//! addresses without `@` (or `@localhost`) as local and a terminal closure
//! that accepts names starting with a letter. `:include:` targets are only
//! followed when they name the fixture file below (a fuzzer must not make
//! the target read /dev/zero or a FIFO); the fixture is created on first
//! use. Each distinct name (case-insensitively) is expanded once.
//! Asserts no panic, bounded output, and that every final address is
//! non-empty.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::aliases::check(data));
