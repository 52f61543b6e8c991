//! Fuzz target `wire`: any bytes a local program may hand to sendmail must
//! plan and stream through `postern::deliver::smtp::wire` without panicking, and
//! the stream must be legal SMTP `DATA` content of exactly the planned size.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::wire::check(data));
