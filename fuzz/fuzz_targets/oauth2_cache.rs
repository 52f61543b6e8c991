//! Fuzz target `oauth2_cache`: `deliver::oauth2::cache::decode`, the
//! token cache file (`<spool>/oauth2/<host>_<user>.json`), and `path`.
//!
//! Asserts no panic; that whatever decodes encodes to bytes that decode
//! to the same entry and encode again identically; and that the file name
//! made of the input (split at its first NUL into host and user) is one
//! plain name in the cache directory.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::oauth2_cache::check(data));
