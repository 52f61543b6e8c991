//! Fuzz target `api_answer`: what the HTTPS API transports make of an
//! answer — `Mailgun`'s, `SES`'s and `Graph`'s `message_id` and
//! `error_text`, and `deliver::api::classify` (verdict, reply, `Retry-After`
//! delay).
//!
//! The first byte picks the provider (mod 3) and the HTTP status; the rest
//! (lossy UTF-8) is split at NULs into the body, a `Retry-After` value and
//! an `x-amzn-ErrorType` value. Asserts no panic; that the verdict is the
//! documented one for the status (2xx sent, 401/403 credentials (and 404
//! for Graph), other 4xx but 408/429 bounced, anything else deferred) with
//! its reply code; that
//! the reply is one line safe for a log (no control but TAB, no bidi
//! control) no longer than one SMTP reply line; and that a deferral's delay is what
//! `Retry-After` says (delta-seconds exactly, a date at most the last
//! IMF-fixdate away).
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::api_answer::check(data));
