//! Fuzz target `smtpd_listener`: the daemon listener's SMTP dialogue —
//! `submit::smtpd::serve` under a listener `Policy` (AUTH PLAIN/LOGIN
//! checked against a real `listen::Users` file holding one user,
//! STARTTLS, recipient and error bounds, a client address) — over
//! arbitrary client bytes, committing into a real development spool.
//!
//! The first byte picks the policy: AUTH required before MAIL (bit 0),
//! AUTH only under TLS (bit 1), STARTTLS offered (bit 2; the in-memory
//! channel's "handshake" then succeeds, or fails with bit 3), and how the
//! input ends (bits 4-5: end of stream, a read timeout, or a shutdown
//! while the session waits for a command). The rest is the client's
//! bytes. Asserts no panic; that every reply line is a well-formed SMTP
//! reply; that the number of `250 … queued as` replies equals the
//! number of committed messages, of ready maildrop entries and of
//! `on_commit` calls, and each entry decodes to what `serve` returned;
//! that a `235` (AUTH success) comes only after the checker accepted,
//! only for the fixture's exact user and password, and only when the input
//! carries their base64 form; that with AUTH required nothing is
//! committed without a successful AUTH; and that nothing follows a 221,
//! a 421 or a refused pipelined STARTTLS.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::smtpd_listener::check(data));
