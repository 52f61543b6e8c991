//! The integration tests, one binary (`cargo test --test suite`): the real
//! `postern` binary (`CARGO_BIN_EXE_postern`) run against real SMTP servers
//! on 127.0.0.1, in throwaway installations. The shared support code
//! (`support`: the test installation, the controllable SMTP server) is
//! compiled once for all of them.
//!
//! One module per area; a test's name says where it lives, e.g.
//! `cargo test --test suite delivery::` or `fault_runner::`.

mod support;

mod address_differential;
mod addresses;
mod check;
mod compat;
mod concurrency;
mod delivery;
mod delivery_basic;
mod fault_disk;
mod fault_runner;
mod fault_submit;
mod fuzz_corpus;
mod interop;
mod operability;
mod privilege;
mod smtp_server_selftest;
mod submit_errors;
mod submit_flags;
mod submit_input;
mod submit_smtp;
