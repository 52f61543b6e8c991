//! Fuzz target `oauth2_token`: the token endpoint's answer —
//! `deliver::oauth2::endpoint::answer` (2xx JSON object, RFC 6749 §5.2
//! error named with `error` and the first line of `error_description`,
//! Microsoft's `AADSTS…`, or a quoted start of the body) and `granted`
//! (`access_token`, `token_type`, `expires_in`, `refresh_token`).
//!
//! The first byte picks the HTTP status; the rest (lossy UTF-8) is the
//! body. The body is also tried with a sentinel `access_token` and
//! `refresh_token` added at the front and at the end of its object.
//! Asserts no panic; that every error text is safe for a log line (what
//! `escape::field` promises: no control but TAB, no bidi control) and
//! never holds a sentinel token unless the input itself spelled it; that a
//! granted token and a rotated refresh token are non-empty printable ASCII
//! without blanks; and that only a 2xx answer is granted.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::oauth2_token::check(data));
