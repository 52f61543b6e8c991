//! The integration tests, one binary (`cargo test --test suite`): the real
//! `postern` binary (`CARGO_BIN_EXE_postern`) run against real SMTP servers
//! on 127.0.0.1, in throwaway installations. The shared support code
//! (`support`: the test installation, the controllable SMTP server, the
//! test clock, skip rules) is compiled once for all of them.
//!
//! One module per area; a test's name says where it lives, e.g.
//! `cargo test --test suite delivery::` or `fault_runner::`.
//!
//! Skips: a test that needs root is `#[ignore = "needs root ..."]` and calls
//! `support::require_root()`; scripts/test.sh adds `--include-ignored` when
//! run as root (CI is). A test that needs something the host may lack
//! (python3 aiosmtpd or prometheus_client, a tmpfs mount, a mount
//! namespace, strace) is `#[ignore = "needs ..."]` too and calls
//! `support::unavailable` when it is missing: it fails, never passes unrun.

mod support;

mod address_differential;
mod addresses;
mod check;
mod compat;
mod compat_round2;
mod compat_round3;
mod concurrency;
mod containers;
mod delivery;
mod delivery_basic;
mod fault_disk;
mod fault_killpoints;
mod fault_runner;
mod fault_submit;
mod fuzz_corpus;
mod graph;
mod guard;
mod hostile_ops;
mod https_transports;
mod interop;
mod listener;
mod maildrop_hostile;
mod oauth2;
mod operability;
mod pipelining;
mod port_fallback;
mod privilege;
mod security_round2;
mod sender_relays;
mod setup;
mod smtp_server_selftest;
mod starttls_injection;
mod submit_errors;
mod submit_flags;
mod submit_input;
mod submit_smtp;
mod tls_pinning;
