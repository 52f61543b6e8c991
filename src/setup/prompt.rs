//! Questions on the terminal for an interactive `postern setup`: a line
//! with a default, a yes/no, and the secret, read with echo off (termios).

use std::io::{self, BufRead, IsTerminal, Write};

/// Is standard input a terminal (so setup may ask)?
pub fn is_terminal() -> bool {
    io::stdin().is_terminal()
}

fn read_line() -> io::Result<String> {
    let mut s = String::new();
    if io::stdin().lock().read_line(&mut s)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "no answer (end of input)",
        ));
    }
    Ok(s.trim_end_matches(['\n', '\r']).trim().to_string())
}

/// Ask `question`; an empty answer is `default` (shown in brackets).
pub fn ask(question: &str, default: Option<&str>) -> io::Result<String> {
    let mut out = io::stdout();
    match default {
        Some(d) if !d.is_empty() => write!(out, "{question} [{d}]: ")?,
        _ => write!(out, "{question}: ")?,
    }
    out.flush()?;
    let a = read_line()?;
    Ok(if a.is_empty() {
        default.unwrap_or("").to_string()
    } else {
        a
    })
}

/// Ask a yes/no question.
pub fn yes_no(question: &str, default: bool) -> io::Result<bool> {
    let hint = if default { "Y/n" } else { "y/N" };
    loop {
        let a = ask(&format!("{question} [{hint}]"), None)?;
        match a.to_ascii_lowercase().as_str() {
            "" => return Ok(default),
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => println!("Please answer y or n."),
        }
    }
}

/// Restores the terminal's settings when dropped.
struct EchoOff {
    saved: nix::sys::termios::Termios,
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// Ask for a secret: echo off while it is typed (a newline is echoed),
/// the terminal restored afterwards whatever happens.
pub fn ask_secret(question: &str) -> io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let mut out = io::stdout();
    write!(out, "{question}: ")?;
    out.flush()?;
    let saved = tcgetattr(io::stdin()).map_err(io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    let guard = EchoOff { saved };
    tcsetattr(io::stdin(), SetArg::TCSAFLUSH, &quiet).map_err(io::Error::from)?;
    let mut s = String::new();
    let n = io::stdin().lock().read_line(&mut s);
    drop(guard);
    if n? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "no answer (end of input)",
        ));
    }
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}
