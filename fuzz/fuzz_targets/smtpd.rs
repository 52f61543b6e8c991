//! Fuzz target `smtpd`: the `sendmail -bs` SMTP dialogue
//! (`submit::smtpd::run`) over arbitrary client bytes, committing into a
//! real development spool.
//!
//! The spool lives under /dev/shm (or the temp dir when /dev/shm is
//! missing), one per fuzzing process, with `max_message_size = 64k` so a
//! run can never fill a disk; every run starts with an empty maildrop.
//! Asserts no panic; that every reply line is a well-formed SMTP reply;
//! that the number of `250 … queued as` replies equals the number of
//! committed messages; and that each committed entry is a whole, ready,
//! decodable file whose envelope matches what `run` returned.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::smtpd::check(data));
