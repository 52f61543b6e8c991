//! Fuzz target `oauth2_login`: the readers of `postern oauth2 login` (a
//! pasted code or address, the loopback redirect's request head, a device
//! endpoint's answer) on arbitrary bytes.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::oauth2_login::check(data));
