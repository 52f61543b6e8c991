//! The one error type of Postern and its mapping to sysexits(3) codes.
//!
//! Library code classifies a failure where it happens by picking a [`Kind`] and
//! attaching context (a path, a key, a queue id); only `main` turns a `Kind`
//! into a process exit code. Nothing here decides numbers except
//! [`Kind::exit_code`].

use std::fmt;
use std::io;

/// What went wrong, in sysexits terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line, no recipients (EX_USAGE, 64).
    Usage,
    /// Bad input data: malformed address, oversize message (EX_DATAERR, 65).
    DataErr,
    /// The named input does not exist, e.g. an unknown queue id (EX_NOINPUT, 66).
    NoInput,
    /// A local recipient that resolves to nobody (EX_NOUSER, 67).
    NoUser,
    /// Service unavailable, e.g. every recipient refused permanently (EX_UNAVAILABLE, 69).
    Unavailable,
    /// An internal error that should not happen (EX_SOFTWARE, 70).
    Software,
    /// An operating-system error such as a failed user lookup (EX_OSERR, 71).
    OsErr,
    /// A file could not be created (EX_CANTCREAT, 73).
    CantCreat,
    /// Reading input failed (EX_IOERR, 74).
    IoErr,
    /// Temporary failure: the caller should retry (EX_TEMPFAIL, 75).
    TempFail,
    /// Not permitted (EX_NOPERM, 77).
    NoPerm,
    /// Configuration error (EX_CONFIG, 78).
    Config,
}

impl Kind {
    /// The sysexits code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 64,
            Kind::DataErr => 65,
            Kind::NoInput => 66,
            Kind::NoUser => 67,
            Kind::Unavailable => 69,
            Kind::Software => 70,
            Kind::OsErr => 71,
            Kind::CantCreat => 73,
            Kind::IoErr => 74,
            Kind::TempFail => 75,
            Kind::NoPerm => 77,
            Kind::Config => 78,
        }
    }
}

/// An error with a kind and a human-readable, one-line message.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    message: String,
}

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// Wrap an I/O error with what was being done (`context`).
    pub fn io(kind: Kind, context: impl fmt::Display, err: &io::Error) -> Error {
        Error::new(kind, format!("{context}: {}", describe_io(err)))
    }

    /// The kind of this error.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix more context to the message.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, always: never let a caller-controlled newline split a log line.
        let clean: String = self
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        f.write_str(&clean)
    }
}

impl std::error::Error for Error {}

/// A short description of an I/O error without Rust's "(os error N)" noise.
pub fn describe_io(err: &io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The kind for an I/O error while writing the spool: a full disk or a
/// read-only file system is temporary from the caller's view (75); a
/// permission problem means the entry cannot be created (73).
pub fn spool_write_kind(err: &io::Error) -> Kind {
    match err.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            Kind::CantCreat
        }
        _ => Kind::TempFail,
    }
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;
