//! Entry point: the privileged start-up first (it reads argv and learns the
//! intent from the pure parser before anything else), then the one
//! dispatcher (`run`), and the one place where an error becomes an exit
//! code and a log line.

use postern::cli::{self, Invocation};
use postern::error::{Error, Kind};
use postern::privilege::Intent;
use std::process::ExitCode;

mod run;

fn main() -> ExitCode {
    let (prepared, (argv0, invocation)) = postern::privilege::enter(parse);
    postern::clock::init(!prepared.privileged);
    let quiet = matches!(
        invocation,
        Ok(Invocation::Sendmail(ref a)) if a.error_mode == postern::cli::sendmail::ErrorMode::Quiet
    );
    match run::run(prepared, invocation) {
        Ok(code) => ExitCode::from(code),
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

fn report(argv0: &str, e: &Error, quiet: bool) -> ExitCode {
    log::error!(target: postern::logging::NO_STDERR, "{e}");
    if !quiet {
        eprintln!("{argv0}: {e}");
    }
    ExitCode::from(e.kind().exit_code())
}
