//! Fuzz target `relay_ports`: `spool::relay_ports::RelayPorts::decode` on
//! arbitrary bytes (the `<spool>/relay-ports` file of `port = "auto"`).
//!
//! Asserts no panic; that a file over `MAX_LEN` or without the exact first
//! line decodes to nothing; that decode→encode→decode is the identity and
//! the encoding is stable and never longer than the input (but for a final
//! LF); that at most 64 hosts are kept; that every encoded line is a
//! non-zero port and one lower-case printable ASCII word of at most 255
//! bytes that `get` answers with that port, in any case.
//!
//! The checks live in `checks/mod.rs` (shared with tests/suite/fuzz_corpus.rs).

#![no_main]

#[path = "checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::relay_ports::check(data));
