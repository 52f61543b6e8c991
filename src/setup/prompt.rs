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
            _ => crate::stdout::line(format_args!("Please answer y or n.")),
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

/// Ask for a secret: the terminal is switched to no echo, no line editing
/// and no signals *before* the prompt is shown (so nothing typed after the
/// prompt is ever echoed; anything typed ahead is discarded), the answer
/// is read byte by byte (Backspace and Ctrl-U edit, Ctrl-C aborts, Ctrl-D
/// on an empty line is the end of input), and the terminal is restored
/// whatever happens.
pub fn ask_secret(question: &str) -> io::Result<String> {
    use nix::sys::termios::{
        LocalFlags, SetArg, SpecialCharacterIndices as C, tcgetattr, tcsetattr,
    };
    use std::io::Read;
    let saved = tcgetattr(io::stdin()).map_err(io::Error::from)?;
    let mut quiet = saved.clone();
    quiet
        .local_flags
        .remove(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG);
    quiet.control_chars[C::VMIN as usize] = 1;
    quiet.control_chars[C::VTIME as usize] = 0;
    let guard = EchoOff { saved };
    tcsetattr(io::stdin(), SetArg::TCSAFLUSH, &quiet).map_err(io::Error::from)?;
    let mut out = io::stdout();
    write!(out, "{question}: ")?;
    out.flush()?;
    let mut secret: Vec<u8> = Vec::new();
    let mut stdin = io::stdin().lock();
    let mut b = [0u8; 1];
    loop {
        if stdin.read(&mut b)? == 0 {
            if secret.is_empty() {
                drop(guard);
                crate::stdout::line(format_args!(""));
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "no answer (end of input)",
                ));
            }
            break;
        }
        match b[0] {
            b'\r' | b'\n' => break,
            0x03 => {
                drop(guard);
                crate::stdout::line(format_args!(""));
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            0x04 if secret.is_empty() => {
                drop(guard);
                crate::stdout::line(format_args!(""));
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "no answer (end of input)",
                ));
            }
            0x7f | 0x08 => {
                while secret.last().is_some_and(|c| c & 0xC0 == 0x80) {
                    secret.pop();
                }
                secret.pop();
            }
            0x15 => secret.clear(),
            c => secret.push(c),
        }
    }
    drop(guard);
    crate::stdout::line(format_args!(""));
    String::from_utf8(secret)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the secret is not UTF-8"))
}
