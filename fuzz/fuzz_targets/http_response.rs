//! Fuzz target `http_response`: `deliver::http::read_response`, the HTTPS
//! API client's reader of the server's answer (status line, header,
//! `Content-Length`, chunked or to-the-end body), and `retry_after` on the
//! answer's `Retry-After` and on the raw input.
//!
//! The first byte picks how the bytes arrive (1, 7, 512 or 64 KiB per
//! read, as TLS records do, under a 16-byte or 8 KiB buffer); the rest is
//! the server's answer. Asserts no panic; that a parsed status is
//! 100..=999; that the body keeps at most `MAX_RESPONSE` input bytes (each
//! at most one character) and the header at most `MAX_HEAD` bytes in at
//! most 200 fields with lower-case names and no LF; that `retry_after`
//! is the header's value; and that the delay `Retry-After` gives is its
//! delta-seconds exactly or at most the last IMF-fixdate away.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::http_response::check(data));
