//! The sendmail command-line grammar, as Sendmail and Postfix define it.
//!
//! Options are single letters and may be clustered (`-ti`); letters that take
//! a value take the rest of the word or, when nothing is left, the next word
//! (`-fuser@x`, `-f user@x`, `-oi`, `-odb`, `-ODeliveryMode=b`). `-q` takes
//! only an attached value (`-q`, `-q30m`). Options may appear before or after
//! recipients until `--`; everything after `--` is a recipient.
//!
//! This module is pure: it returns what it parsed, plus the legacy options it
//! accepted and ignored (for a debug log line), and never logs or exits. It
//! runs before the privilege drop, so it does no I/O at all.

use crate::error::{Error, Kind, Result};
use crate::privilege::Intent;
use std::path::PathBuf;

/// What sendmail was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-bm` (default): read a message from stdin and queue it.
    Deliver,
    /// `-bs`: an SMTP dialogue on stdin/stdout.
    Smtp,
    /// `-bp`: list the queue (mailq).
    List,
    /// `-bi`: check the aliases file (newaliases).
    Aliases,
    /// `-bv`: show how each recipient would be routed; deliver nothing.
    Verify,
    /// `-q`: run the queue now; `-q30m` names an interval (a daemon does that).
    RunQueue(Option<String>),
}

pub use crate::daemon::handoff::DeliveryMode;

/// How errors are reported (`-oe…`). Postern always reports on stderr and
/// with the exit status; `Mail`/`Write`/`Quiet` are accepted for compatibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    /// `-oep` (default): print.
    Print,
    /// `-oem`: mail back (errors after queueing are bounced anyway).
    Mail,
    /// `-oeq`: quiet, exit status only.
    Quiet,
    /// `-oew`: write to the terminal.
    Write,
}

/// Parsed sendmail arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendmailArgs {
    /// What to do.
    pub mode: Mode,
    /// When to deliver.
    pub delivery: DeliveryMode,
    /// Error reporting.
    pub error_mode: ErrorMode,
    /// `-t`: take recipients from the headers too.
    pub extract: bool,
    /// `-i`/`-oi`: a line with a single `.` is data.
    pub ignore_dots: bool,
    /// `-f`/`-r`: envelope sender exactly as given (`<>` or empty = null sender).
    pub sender: Option<String>,
    /// `-F`: full name for a generated From.
    pub fullname: Option<String>,
    /// `-N`: DSN NOTIFY, normalised upper case (`NEVER` or a list).
    pub notify: Option<String>,
    /// `-R`: DSN RET (`FULL` or `HDRS`).
    pub ret: Option<String>,
    /// `-V`: DSN ENVID.
    pub envid: Option<String>,
    /// `-v`: verbose.
    pub verbose: bool,
    /// `-C FILE`.
    pub config: Option<PathBuf>,
    /// Recipients from the command line, as given.
    pub recipients: Vec<String>,
    /// Options accepted and ignored, for a debug line.
    pub ignored: Vec<String>,
    /// `--help`.
    pub help: bool,
}

impl Default for SendmailArgs {
    fn default() -> Self {
        SendmailArgs {
            mode: Mode::Deliver,
            delivery: DeliveryMode::Background,
            error_mode: ErrorMode::Print,
            extract: false,
            ignore_dots: false,
            sender: None,
            fullname: None,
            notify: None,
            ret: None,
            envid: None,
            verbose: false,
            config: None,
            recipients: Vec::new(),
            ignored: Vec::new(),
            help: false,
        }
    }
}

impl SendmailArgs {
    /// What the privileged start-up must prepare for these arguments.
    pub fn intent(&self) -> Intent {
        if self.help {
            return Intent::Nothing;
        }
        match self.mode {
            Mode::Deliver => Intent::SubmitOne,
            Mode::Smtp => Intent::SubmitMany,
            Mode::List => Intent::ListQueue,
            Mode::RunQueue(_) => Intent::Poke,
            Mode::Aliases | Mode::Verify => Intent::Nothing,
        }
    }
}

fn usage(msg: impl Into<String>) -> Error {
    Error::new(Kind::Usage, msg)
}

/// Reject values that would break a header or an envelope line.
fn no_controls(what: &str, v: &str) -> Result<()> {
    if v.contains(['\r', '\n', '\0']) {
        return Err(usage(format!(
            "{what} must not contain a line break or NUL"
        )));
    }
    Ok(())
}

/// Longest `-F` full name: it becomes a display name in a generated From
/// line, which must stay well under SMTP's 998-octet line limit.
pub const MAX_FULLNAME: usize = 256;

/// Letters that take a value.
fn takes_value(c: char) -> bool {
    matches!(
        c,
        'A' | 'B'
            | 'C'
            | 'F'
            | 'L'
            | 'N'
            | 'O'
            | 'R'
            | 'V'
            | 'X'
            | 'b'
            | 'd'
            | 'e'
            | 'f'
            | 'h'
            | 'o'
            | 'p'
            | 'r'
    )
}

/// Letters that are accepted and ignored without a value.
fn ignored_flag(c: char) -> bool {
    matches!(c, 'm' | 'n' | 'U' | 'G' | 'c' | 'x' | '4' | '6' | 's')
}

/// Parse sendmail's arguments (without argv[0]).
pub fn parse(args: &[String]) -> Result<SendmailArgs> {
    let mut a = SendmailArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            for r in &args[i..] {
                no_controls("a recipient", r)?;
                a.recipients.push(r.clone());
            }
            break;
        }
        if arg == "--help" {
            a.help = true;
            continue;
        }
        if arg.starts_with("--") {
            return Err(usage(format!("unknown option {arg}")));
        }
        if !arg.starts_with('-') || arg == "-" {
            no_controls("a recipient", arg)?;
            a.recipients.push(arg.clone());
            continue;
        }
        let body = &arg[1..];
        let chars = body.char_indices();
        for (pos, c) in chars {
            let rest = &body[pos + c.len_utf8()..];
            if c == 'q' {
                a.mode = Mode::RunQueue(if rest.is_empty() {
                    None
                } else {
                    Some(rest.to_string())
                });
                break;
            }
            if takes_value(c) {
                let value = if !rest.is_empty() {
                    rest.to_string()
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return Err(usage(format!("option -{c} needs a value")));
                };
                apply_value(&mut a, c, &value)?;
                break;
            }
            match c {
                't' => a.extract = true,
                'i' => a.ignore_dots = true,
                'v' => a.verbose = true,
                'I' => a.mode = Mode::Aliases,
                c if ignored_flag(c) => a.ignored.push(format!("-{c}")),
                _ => return Err(usage(format!("unknown option -{c}"))),
            }
        }
    }
    Ok(a)
}

fn apply_value(a: &mut SendmailArgs, c: char, v: &str) -> Result<()> {
    match c {
        'b' => {
            a.mode = match v {
                "m" => Mode::Deliver,
                "s" => Mode::Smtp,
                "p" => Mode::List,
                "i" => Mode::Aliases,
                "v" => Mode::Verify,
                "d" | "D" => {
                    return Err(usage(format!(
                        "-b{v} (run as an SMTP daemon) is not supported: Postern does not listen for mail; use `postern daemon` to run the queue"
                    )));
                }
                "t" => {
                    return Err(usage(
                        "-bt (address test mode) is not supported; use -bv ADDRESS",
                    ));
                }
                _ => return Err(usage(format!("-b{v} is not supported"))),
            }
        }
        'f' | 'r' => {
            no_controls("the sender (-f)", v)?;
            a.sender = Some(v.to_string());
        }
        'F' => {
            no_controls("the full name (-F)", v)?;
            if v.len() > MAX_FULLNAME {
                return Err(usage(format!(
                    "the full name (-F) must be at most {MAX_FULLNAME} bytes"
                )));
            }
            a.fullname = Some(v.to_string());
        }
        'N' => a.notify = Some(parse_notify(v)?),
        'R' => {
            let u = v.to_ascii_uppercase();
            if u != "FULL" && u != "HDRS" {
                return Err(usage(format!("-R {v}: use full or hdrs")));
            }
            a.ret = Some(u);
        }
        'V' => {
            if v.is_empty() || v.len() > 100 || !v.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(usage(
                    "-V: the envelope id must be 1-100 printable ASCII characters",
                ));
            }
            a.envid = Some(v.to_string());
        }
        'C' => a.config = Some(PathBuf::from(v)),
        'o' => apply_o(a, v)?,
        'O' => apply_big_o(a, v)?,
        'e' => apply_error_mode(a, v, "-e")?,
        'B' => a.ignored.push(format!("-B{v}")),
        _ => a.ignored.push(format!("-{c}{v}")),
    }
    Ok(())
}

fn parse_notify(v: &str) -> Result<String> {
    let u = v.to_ascii_uppercase();
    if u == "NEVER" {
        return Ok(u);
    }
    let mut out: Vec<&str> = Vec::new();
    for part in u.split(',') {
        let p = part.trim();
        match p {
            "SUCCESS" | "FAILURE" | "DELAY" => {
                if !out.contains(&p) {
                    out.push(p)
                }
            }
            _ => {
                return Err(usage(format!(
                    "-N {v}: use never, or a list of success, failure, delay"
                )));
            }
        }
    }
    Ok(out.join(","))
}

fn apply_error_mode(a: &mut SendmailArgs, v: &str, flag: &str) -> Result<()> {
    a.error_mode = match v.chars().next() {
        Some('p') => ErrorMode::Print,
        Some('m') => ErrorMode::Mail,
        Some('q') => ErrorMode::Quiet,
        Some('w') => ErrorMode::Write,
        Some('e') => ErrorMode::Mail,
        _ => return Err(usage(format!("{flag}{v}: unknown error mode"))),
    };
    Ok(())
}

fn apply_delivery(a: &mut SendmailArgs, v: &str, flag: &str) -> Result<()> {
    a.delivery = match v.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('b') => DeliveryMode::Background,
        Some('i') | Some('f') => DeliveryMode::Interactive,
        Some('q') | Some('d') => DeliveryMode::Queue,
        _ => return Err(usage(format!("{flag}{v}: unknown delivery mode"))),
    };
    Ok(())
}

fn apply_o(a: &mut SendmailArgs, v: &str) -> Result<()> {
    let mut chars = v.chars();
    match chars.next() {
        Some('i') if v == "i" => a.ignore_dots = true,
        Some('d') => apply_delivery(a, chars.as_str(), "-od")?,
        Some('e') => apply_error_mode(a, chars.as_str(), "-oe")?,
        _ => a.ignored.push(format!("-o{v}")),
    }
    Ok(())
}

fn apply_big_o(a: &mut SendmailArgs, v: &str) -> Result<()> {
    let (k, val) = v.split_once('=').unwrap_or((v, ""));
    match k.trim() {
        "DeliveryMode" => apply_delivery(a, val.trim(), "-ODeliveryMode=")?,
        "ErrorMode" => apply_error_mode(a, val.trim(), "-OErrorMode=")?,
        "IgnoreDots" => {
            a.ignore_dots = matches!(
                val.trim().to_ascii_lowercase().as_str(),
                "" | "true" | "t" | "yes" | "y" | "1"
            )
        }
        _ => a.ignored.push(format!("-O{v}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Result<SendmailArgs> {
        parse(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn attached_and_separate_values() {
        let a = p(&["-fuser@x", "-oi", "-odb", "rcpt@y"]).unwrap();
        assert_eq!(a.sender.as_deref(), Some("user@x"));
        assert!(a.ignore_dots);
        assert_eq!(a.delivery, DeliveryMode::Background);
        assert_eq!(a.recipients, vec!["rcpt@y"]);
        let a = p(&["-f", "user@x", "-F", "Full Name", "-t"]).unwrap();
        assert_eq!(a.sender.as_deref(), Some("user@x"));
        assert_eq!(a.fullname.as_deref(), Some("Full Name"));
        assert!(a.extract);
        let a = p(&["-Ffull name", "-ODeliveryMode=q"]).unwrap();
        assert_eq!(a.fullname.as_deref(), Some("full name"));
        assert_eq!(a.delivery, DeliveryMode::Queue);
    }

    #[test]
    fn clusters_and_double_dash() {
        let a = p(&["-ti", "-itfme@x", "--", "-weird", "b"]).unwrap();
        assert!(a.extract && a.ignore_dots);
        assert_eq!(a.sender.as_deref(), Some("me@x"));
        assert_eq!(a.recipients, vec!["-weird", "b"]);
    }

    #[test]
    fn modes() {
        assert_eq!(p(&["-bs"]).unwrap().mode, Mode::Smtp);
        assert_eq!(p(&["-b", "p"]).unwrap().mode, Mode::List);
        assert_eq!(p(&["-q"]).unwrap().mode, Mode::RunQueue(None));
        assert_eq!(
            p(&["-q30m"]).unwrap().mode,
            Mode::RunQueue(Some("30m".into()))
        );
        assert_eq!(p(&["-bd"]).unwrap_err().kind(), Kind::Usage);
        assert_eq!(p(&["-bt"]).unwrap_err().kind(), Kind::Usage);
        assert_eq!(p(&["-bD"]).unwrap_err().kind(), Kind::Usage);
        assert_eq!(p(&["-k"]).unwrap_err().kind(), Kind::Usage);
        assert_eq!(p(&["--bogus"]).unwrap_err().kind(), Kind::Usage);
        assert_eq!(p(&["-f"]).unwrap_err().kind(), Kind::Usage);
    }

    #[test]
    fn cron_and_php_invocations() {
        let a = p(&["-FCronDaemon", "-odi", "-oem", "-oi", "-t"]).unwrap();
        assert_eq!(a.delivery, DeliveryMode::Interactive);
        assert_eq!(a.error_mode, ErrorMode::Mail);
        let a = p(&["-i", "-FCronDaemon", "-B8BITMIME", "-oem", "root"]).unwrap();
        assert_eq!(a.recipients, vec!["root"]);
        assert_eq!(a.ignored, vec!["-B8BITMIME"]);
        let a = p(&[
            "-L", "tag", "-h", "5", "-n", "-m", "-U", "-X", "/tmp/x", "-Ac", "a@b",
        ])
        .unwrap();
        assert_eq!(a.recipients, vec!["a@b"]);
    }

    #[test]
    fn dsn_options() {
        let a = p(&["-N", "success,Failure", "-R", "hdrs", "-V", "env1"]).unwrap();
        assert_eq!(a.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(a.ret.as_deref(), Some("HDRS"));
        assert_eq!(a.envid.as_deref(), Some("env1"));
        assert!(p(&["-N", "sometimes"]).is_err());
        assert!(p(&["-R", "body"]).is_err());
    }

    #[test]
    fn newlines_rejected() {
        assert_eq!(p(&["-f", "a@b\nBcc: x"]).unwrap_err().kind(), Kind::Usage);
        assert_eq!(p(&["-F", "x\r\ny"]).unwrap_err().kind(), Kind::Usage);
        assert_eq!(p(&["a@b\n"]).unwrap_err().kind(), Kind::Usage);
    }

    #[test]
    fn long_full_name_rejected() {
        let ok = "N".repeat(MAX_FULLNAME);
        assert_eq!(
            p(&["-F", &ok]).unwrap().fullname.as_deref(),
            Some(ok.as_str())
        );
        let long = "N".repeat(MAX_FULLNAME + 1);
        assert_eq!(p(&["-F", &long]).unwrap_err().kind(), Kind::Usage);
    }
}
