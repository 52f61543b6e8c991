//! Postern: a sendmail-compatible null client.
//!
//! ```text
//! caller --argv+stdin--> sendmail (setgid postern-drop)
//!   privilege::enter: open maildrop/<id>, dir fd, trigger fd; drop the group
//!   parse argv, config, read stdin in bounded pieces, header fix-ups
//!   commit: write, length check, ready bit, fsync file + dir     -> exit 0
//! daemon (user postern) <-- trigger FIFO / timer
//!   pickup maildrop/ -> queue/ (distrust: regular, 1 link, ready, strict decode)
//!   resolve recipients (aliases, local users), rewrite sender
//!   deliver through the smart host (deliver::smtp, rustls): per-recipient
//!   outcomes, state saved after each transaction; retry with backoff;
//!   RFC 3464 bounce after max_lifetime; remove when every recipient is done
//! ```
//! Layers, lowest first; a module names only its own layer or below (the
//! test in `layering.rs` keeps this):
//! ```text
//! base      config, clock, error, logging, escape (outside text made safe to print)
//! spool     spool (format, request entries, maildrop, queue store, state)
//! mail      submit, address, deliver, bounce
//! services  daemon (pickup, runner, schedule), listen, admin, mailq, status, stats, check, verify, setup, guard
//! front     cli (argv grammar, Invocation::intent), privilege, run (one dispatcher)
//! ```
//! Invariants: a message is acknowledged only once it is durable; a crash at
//! any instant leaves either nothing deliverable or a whole message; two
//! runners never deliver one message at the same time; only `privilege.rs`
//! may use `unsafe`.

#![deny(unsafe_code)]

pub mod address;
pub mod admin;
pub mod appender;
pub mod bounce;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod error;
pub mod escape;
pub mod guard;
#[cfg(test)]
mod layering;
pub mod listen;
pub mod logging;
pub mod mailq;
pub mod privilege;
pub mod setup;
pub mod spool;
pub mod stats;
pub mod status;
pub mod stdout;
pub mod submit;
pub mod verify;
