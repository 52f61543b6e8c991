//! Fuzz target `headers`: the header section of a submission —
//! `submit::headers::field_name`, `extract_recipients` (`-t`),
//! `qualify_field` (masquerading), `from_mailbox` and `message_id` on
//! arbitrary header blocks.
//!
//! The input is split into fields exactly as `submit::Submitter::submit`
//! does (a line with a field name starts a field, a line starting with a
//! blank continues the previous one, anything else ends the header
//! section). Asserts no panic; that every extracted recipient is a
//! non-empty address without controls; and that a masqueraded field keeps
//! its name, still parses, has the same number of mailboxes, and no longer
//! has an unqualified one.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::headers::check(data));
