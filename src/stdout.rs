//! Standard output for the commands that print: listings, reports, setup,
//! help. A reader that went away (`mailq | head -1`) ends the output
//! quietly, and the command still finishes its work with its own exit code,
//! where std's `print!` would panic on the EPIPE. Any other write error (a
//! full disk under `mailq > file`) is said once on stderr and turns a
//! successful exit into 74 (EX_IOERR), as `main` asks [`lost`]. After the
//! first failure nothing more is written.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0: fine; 1: the reader went away; 2: another write error.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Print `args` and a newline (what `println!` did).
pub fn line(args: std::fmt::Arguments) {
    emit(|out| out.write_fmt(args).and_then(|()| out.write_all(b"\n")));
}

/// Print `args` as they are (what `print!` did).
pub fn text(args: std::fmt::Arguments) {
    emit(|out| out.write_fmt(args));
}

/// Flush what is buffered, with the same rules; `main` calls it last.
pub fn flush() {
    emit(|out| out.flush());
}

/// True when output was lost to an error other than a reader that went
/// away: the command must not report success.
pub fn lost() -> bool {
    STATE.load(Ordering::Relaxed) == 2
}

fn emit(write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    if STATE.load(Ordering::Relaxed) != 0 {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = write(&mut out) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STATE.store(1, Ordering::Relaxed);
        } else {
            STATE.store(2, Ordering::Relaxed);
            eprintln!(
                "postern: cannot write to standard output: {}",
                crate::error::describe_io(&e)
            );
        }
    }
}
