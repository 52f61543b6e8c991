//! Entry point: the privileged start-up first (it reads argv and learns the
//! intent from the pure parser before anything else), then the one
//! dispatcher (`run`), and the one place where an error becomes an exit
//! code and a log line.
//!
//! `main` is the C entry point (`no_main`). std's own start-up would, before
//! every command, set up an alternate signal stack and a stack-overflow
//! handler, and read and parse `/proc/self/maps` to find the main thread's
//! guard page: about 20 system calls that a one-millisecond submission
//! notices. What of that start-up Postern relies on, `privilege::enter`
//! does itself: fds 0-2 open, SIGPIPE ignored. A stack overflow in the main
//! thread is then a plain SIGSEGV instead of a message.
#![cfg_attr(not(test), no_main)]
// The one `unsafe` outside `privilege.rs` is the entry point's `no_mangle`.
#![deny(unsafe_code)]

use postern::cli::{self, Invocation};
use postern::error::{Error, Kind};
use postern::privilege::Intent;

mod run;

/// The process entry point (see the module docs). A panic still prints its
/// message (the default hook) and exits 101, as under std's start-up;
/// buffered stdout is flushed before returning, and output lost to a write
/// error turns success into 74 (EX_IOERR; see `stdout`).
#[cfg(not(test))]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let code = std::panic::catch_unwind(postern_main).unwrap_or(101);
    postern::stdout::flush();
    if code == 0 && postern::stdout::lost() {
        return 74;
    }
    code.into()
}

#[cfg_attr(test, allow(dead_code))]
fn postern_main() -> u8 {
    let (prepared, (argv0, invocation)) = postern::privilege::enter(parse);
    postern::clock::init(!prepared.privileged);
    let quiet = matches!(
        invocation,
        Ok(Invocation::Sendmail(ref a)) if a.error_mode == postern::cli::sendmail::ErrorMode::Quiet
    );
    match run::run(prepared, invocation) {
        Ok(code) => code,
        Err(e) => report(&argv0, &e, quiet),
    }
}

/// The pure parse of argv that `privilege::enter` runs before it opens
/// anything: the program name for messages, the invocation, its intent.
fn parse(
    args: &[String],
    bad_utf8: bool,
) -> ((String, postern::error::Result<Invocation>), Intent) {
    let argv0 = args
        .first()
        .map(|a| cli::program_name(a).to_string())
        .unwrap_or_else(|| "sendmail".into());
    let invocation = if bad_utf8 {
        Err(Error::new(Kind::Usage, "an argument is not valid UTF-8"))
    } else {
        cli::parse(args)
    };
    let intent = invocation
        .as_ref()
        .map(Invocation::intent)
        .unwrap_or(Intent::Nothing);
    ((argv0, invocation), intent)
}

fn report(argv0: &str, e: &Error, quiet: bool) -> u8 {
    log::error!(target: postern::logging::NO_STDERR, "{e}");
    if !quiet {
        eprintln!("{argv0}: {e}");
    }
    e.kind().exit_code()
}
