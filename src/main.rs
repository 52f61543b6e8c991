//! Entry point: the privileged start-up first, then dispatch on argv[0], and
//! the one place where an error becomes an exit code and a log line.

use postern::cli::Invocation;
use postern::error::Error;
use std::process::ExitCode;

mod run;

fn main() -> ExitCode {
    let prepared = postern::privilege::enter();
    postern::clock::init(!prepared.privileged);
    let argv0 = prepared.argv0.clone();
    let quiet = matches!(
        prepared.invocation,
        Ok(Invocation::Sendmail(ref a)) if a.error_mode == postern::cli::sendmail::ErrorMode::Quiet
    );
    match run::run(prepared) {
        Ok(code) => ExitCode::from(code),
        Err(e) => report(&argv0, &e, quiet),
    }
}

fn report(argv0: &str, e: &Error, quiet: bool) -> ExitCode {
    log::error!(target: postern::logging::NO_STDERR, "{e}");
    if !quiet {
        eprintln!("{argv0}: {e}");
    }
    ExitCode::from(e.kind().exit_code())
}
