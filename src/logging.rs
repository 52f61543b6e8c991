//! Logging: the `log` facade written to syslog (facility mail, ident
//! `postern`), to stderr, or to a file.
//!
//! The syslog writer speaks RFC 3164 over the `/dev/log` datagram socket,
//! reconnects once when syslogd was restarted, and falls back to stderr when
//! there is no socket (containers; it tries again at most once a second,
//! not for every line). It never falls back to the network. Each
//! record is one line: every control character (C0 but TAB, DEL, C1 — line
//! feeds too) becomes a visible escape (`\x1b`, `\u{9b}`; `crate::escape`),
//! so no line written from outside text can drive a terminal or forge a
//! second line, and a line is capped at 2 KiB. The timestamp is left to the syslog daemon.
//!
//! A log file is opened for each line, except in the long-running daemon
//! and queue runs ([`keep_file_open`]), which keep it open and reopen it
//! when logrotate renames it (`crate::appender`). The set-group-id
//! submission never holds it open across its privilege drop.
//!
//! The sendmail front end uses `quiet_stderr`: when it falls back to stderr it
//! prints only warnings and errors, because callers such as cron and PHP
//! capture stderr and would take routine lines for trouble.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_LINE: usize = 2048;
const LOG_MAIL: u8 = 2 << 3;
/// Log target for lines that were already shown on stderr: they go to
/// syslog or the log file only.
pub const NO_STDERR: &str = "postern::already_on_stderr";

/// Where log lines go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `/dev/log`, stderr when absent.
    Syslog,
    /// Always stderr.
    Stderr,
    /// Append to a file (tests, containers).
    File(PathBuf),
}

impl Target {
    /// From the config's `log` value.
    pub fn from_config(s: &str) -> Target {
        match s {
            "stderr" => Target::Stderr,
            p if p.starts_with('/') => Target::File(PathBuf::from(p)),
            _ => Target::Syslog,
        }
    }
}

/// From now on, keep the log file (if the target is one) open between
/// lines. For the daemon and queue runs only: they never change privilege.
pub fn keep_file_open() {
    if let Some(l) = LOGGER.get()
        && let Target::File(p) = &l.target
        && let Ok(mut g) = l.file.lock()
    {
        *g = Some(crate::appender::Appender::new(p.clone(), None));
    }
}

/// How long after a failed connection to `/dev/log` lines go straight to
/// the fallback (three system calls per line saved where there is none).
const SYSLOG_RETRY: Duration = Duration::from_secs(1);

/// The connection to syslogd, and when to try again after it failed.
#[derive(Default)]
struct Syslog {
    sock: Option<UnixDatagram>,
    retry_at: Option<Instant>,
}

struct Logger {
    target: Target,
    /// The log file, held open between lines once [`keep_file_open`] ran.
    file: Mutex<Option<crate::appender::Appender>>,
    socket: Mutex<Syslog>,
    /// Level at or above which lines go to stderr when that is the sink.
    stderr_level: Level,
    /// `-v`: also echo every line to stderr.
    verbose: bool,
    pid: u32,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Install the logger. `quiet_stderr` limits a stderr fallback to warnings;
/// `verbose` additionally echoes every line (and debug lines) to stderr.
pub fn init(target: Target, quiet_stderr: bool, verbose: bool) {
    let logger = Logger {
        target,
        file: Mutex::new(None),
        socket: Mutex::new(Syslog::default()),
        stderr_level: if quiet_stderr {
            Level::Warn
        } else {
            Level::Info
        },
        verbose,
        pid: std::process::id(),
    };
    if LOGGER.set(logger).is_ok() {
        if let Some(l) = LOGGER.get() {
            let _ = log::set_logger(l);
        }
        log::set_max_level(if verbose {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}

fn clean(msg: &str) -> String {
    // Every byte from outside (a relay's reply, a sender, a header) may
    // be in a message: controls become visible escapes (`crate::escape`).
    let mut s = crate::escape::field(msg).into_owned();
    if s.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Logger {
    fn send_syslog(&self, line: &[u8]) -> bool {
        let mut guard = match self.socket.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if guard.sock.is_none() && guard.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        for _attempt in 0..2 {
            if guard.sock.is_none() {
                let connected = UnixDatagram::unbound()
                    .and_then(|s| s.connect("/dev/log").map(|()| s))
                    .ok();
                let Some(s) = connected else {
                    // No syslogd (a container): try again in a while, not
                    // for every line.
                    guard.retry_at = Some(Instant::now() + SYSLOG_RETRY);
                    return false;
                };
                guard.sock = Some(s);
                guard.retry_at = None;
            }
            if let Some(s) = guard.sock.as_ref()
                && s.send(line).is_ok()
            {
                return true;
            }
            // syslogd restarted (ECONNREFUSED) or the socket vanished: reconnect once.
            guard.sock = None;
        }
        false
    }

    fn to_stderr(&self, level: Level, msg: &str) {
        let _ = writeln!(std::io::stderr(), "postern: {}{msg}", prefix(level));
    }
}

fn prefix(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        _ => "",
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        let msg = clean(&record.args().to_string());
        // Lines the caller already printed on stderr itself.
        let no_stderr = record.target() == NO_STDERR;
        if self.verbose && !no_stderr && level <= Level::Debug {
            self.to_stderr(level, &msg);
        }
        if level == Level::Debug || level == Level::Trace {
            return; // debug lines only for -v
        }
        match &self.target {
            Target::Syslog => {
                let line = format!(
                    "<{}>postern[{}]: {}{}",
                    LOG_MAIL | severity(level),
                    self.pid,
                    prefix(level),
                    msg
                );
                if !self.send_syslog(line.as_bytes())
                    && !self.verbose
                    && !no_stderr
                    && level <= self.stderr_level
                {
                    self.to_stderr(level, &msg);
                }
            }
            Target::Stderr => {
                if !self.verbose && !no_stderr && level <= self.stderr_level {
                    self.to_stderr(level, &msg);
                }
            }
            Target::File(p) => {
                let line = format!(
                    "{} postern[{}]: {}{}\n",
                    crate::clock::iso8601(crate::clock::now()),
                    self.pid,
                    prefix(level),
                    msg
                );
                let kept = self
                    .file
                    .lock()
                    .ok()
                    .and_then(|mut g| g.as_mut().map(|a| a.write(line.as_bytes()).is_ok()));
                let ok = kept.unwrap_or_else(|| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .and_then(|mut f| f.write_all(line.as_bytes()))
                        .is_ok()
                });
                if !ok && !self.verbose && !no_stderr && level <= self.stderr_level {
                    self.to_stderr(level, &msg);
                }
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned_and_capped() {
        assert_eq!(clean("a\nb\r\tc"), "a\\x0ab\\x0d\tc");
        assert_eq!(clean("\x1b]2;T\x07 \u{9b}"), "\\x1b]2;T\\x07 \\u{9b}");
        let long = "x".repeat(5000);
        assert_eq!(clean(&long).len(), MAX_LINE + 3);
        let multi = "é".repeat(2000);
        assert!(clean(&multi).ends_with("..."));
    }
}
