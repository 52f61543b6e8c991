//! The request-entry format: how a caller who cannot write the queue asks
//! the queue runner for a change (`postern queue delete|hold|release|retry|
//! bounce`), through a maildrop entry committed like a message.
//!
//! ```text
//! POSTERN-REQUEST 1\n<verb> <target>\nend\n    a change: verb delete|hold|release|retry|bounce,
//!                                               target a queue id, ALL, DEFERRED,
//!                                               USER:<name|uid> or STORM:<id> (release, delete)
//! POSTERN-REQUEST 1\nvoid\nend\n                 an unused pre-opened entry: drop it
//! ```
//! Decoding is strict (exact lines, no CR, one command, a target the verb
//! allows, at most [`MAX_REQUEST`] bytes, a file that does not grow while it
//! is read). This module only encodes and decodes; who may ask for what and
//! how a change is applied is the admin service's business.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// First bytes of a request entry in maildrop.
pub const REQUEST_MAGIC: &[u8; 16] = b"POSTERN-REQUEST ";

/// Content of a request that asks for nothing: how a caller who cannot
/// unlink its unused pre-opened entry gets rid of it (the runner drops it
/// at the next pickup instead of after `maildrop_stale_after`).
pub const VOID_REQUEST: &[u8] = b"POSTERN-REQUEST 1\nvoid\nend\n";

/// Longest request file.
pub const MAX_REQUEST: u64 = 1024;

/// Which messages a queue change acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One queue id.
    Id(String),
    /// Every message.
    All,
    /// Every message with a deferred recipient.
    Deferred,
    /// Every held message of one submitter (a user name or uid, as given;
    /// `[A-Za-z0-9._-]`, see [`valid_user`]).
    User(String),
    /// Every message held in one storm of the outbound guard (its id).
    Storm(String),
}

/// A user name or uid as a target may carry it.
pub fn valid_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !s.starts_with('-')
}

impl Target {
    /// The target as written in requests and logs (`ID`, `ALL`, `DEFERRED`).
    pub fn word(&self) -> String {
        match self {
            Target::Id(id) => id.clone(),
            Target::All => "ALL".into(),
            Target::Deferred => "DEFERRED".into(),
            Target::User(u) => format!("USER:{u}"),
            Target::Storm(id) => format!("STORM:{id}"),
        }
    }
}

/// A queue change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Remove without notice.
    Delete,
    /// Keep from delivery.
    Hold,
    /// Undo hold.
    Release,
    /// Next attempt now.
    Retry,
    /// Return to sender now.
    Bounce,
}

impl Op {
    /// The verb in commands, requests and logs.
    pub fn verb(self) -> &'static str {
        match self {
            Op::Delete => "delete",
            Op::Hold => "hold",
            Op::Release => "release",
            Op::Retry => "retry",
            Op::Bounce => "bounce",
        }
    }
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "delete" => Op::Delete,
            "hold" => Op::Hold,
            "release" => Op::Release,
            "retry" => Op::Retry,
            "bounce" => Op::Bounce,
            _ => return None,
        })
    }
    /// May this change name target `t` (bulk targets only for some)?
    pub fn allows(self, t: &Target) -> bool {
        match t {
            Target::Id(_) => true,
            Target::All => matches!(self, Op::Delete | Op::Retry),
            Target::Deferred => self == Op::Delete,
            Target::User(_) | Target::Storm(_) => matches!(self, Op::Delete | Op::Release),
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// To which messages.
    pub target: Target,
}

/// What a request entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A change to apply.
    Change(Request),
    /// Nothing: an unused pre-opened entry.
    Void,
}

/// The text of a request entry for `op` on `t`.
pub fn encode(op: Op, t: &Target) -> String {
    format!("POSTERN-REQUEST 1\n{} {}\nend\n", op.verb(), t.word())
}

/// Parse a request file strictly: exactly
/// `POSTERN-REQUEST 1\n<verb> <target>\nend\n`.
pub fn parse_request(bytes: &[u8]) -> std::result::Result<Request, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let body = text
        .strip_prefix("POSTERN-REQUEST 1\n")
        .ok_or("bad first line")?
        .strip_suffix("\nend\n")
        .ok_or("no end line")?;
    if body.contains('\n') || body.contains('\r') {
        return Err("more than one command".into());
    }
    let (verb, arg) = body.split_once(' ').ok_or("no target")?;
    let op = Op::parse(verb).ok_or_else(|| format!("unknown request {verb:?}"))?;
    let target = match arg {
        "ALL" => Target::All,
        "DEFERRED" => Target::Deferred,
        id if crate::spool::is_valid_id(id) => Target::Id(id.to_string()),
        u if u.strip_prefix("USER:").is_some_and(valid_user) => Target::User(u[5..].to_string()),
        s if s
            .strip_prefix("STORM:")
            .is_some_and(crate::spool::is_valid_id) =>
        {
            Target::Storm(s[6..].to_string())
        }
        _ => return Err("bad target".into()),
    };
    if !op.allows(&target) {
        return Err(format!("{verb} takes a queue id"));
    }
    Ok(Request { op, target })
}

/// Does the open entry `file` start like a request (rather than a message)?
pub fn is_request(file: &File) -> bool {
    let mut magic = [0u8; 16];
    file.read_exact_at(&mut magic, 0).is_ok() && &magic == REQUEST_MAGIC
}

fn read_request(file: &File) -> std::result::Result<Request, String> {
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size > MAX_REQUEST {
        return Err(format!("{size} bytes is too large for a request"));
    }
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf, 0).map_err(|e| e.to_string())?;
    // Nothing may follow what the size said.
    let mut extra = [0u8; 1];
    if matches!(file.read_at(&mut extra, size), Ok(n) if n > 0) {
        return Err("file grew while being read".into());
    }
    parse_request(&buf)
}

/// Read and decode the request entry `file`: a change, or void; `Err` says
/// why it is malformed.
pub fn read(file: &File) -> std::result::Result<Entry, String> {
    let mut void = [0u8; VOID_REQUEST.len() + 1];
    if matches!(file.read_at(&mut void, 0), Ok(n) if &void[..n] == VOID_REQUEST) {
        return Ok(Entry::Void);
    }
    read_request(file).map(Entry::Change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let ok = parse_request(b"POSTERN-REQUEST 1\ndelete 1K1D6V0JC6N9J9M\nend\n").unwrap();
        assert_eq!(ok.op, Op::Delete);
        assert_eq!(ok.target, Target::Id("1K1D6V0JC6N9J9M".into()));
        let b = parse_request(b"POSTERN-REQUEST 1\nbounce 1K1D6V0JC6N9J9M\nend\n").unwrap();
        assert_eq!(b.op, Op::Bounce);
        assert_eq!(
            parse_request(b"POSTERN-REQUEST 1\ndelete DEFERRED\nend\n")
                .unwrap()
                .target,
            Target::Deferred
        );
        for bad in [
            &b"POSTERN-REQUEST 1\ndelete 1K1D6V0JC6N9J9M\nend"[..],
            b"POSTERN-REQUEST 2\ndelete 1K1D6V0JC6N9J9M\nend\n",
            b"POSTERN-REQUEST 1\ndelete ../../etc/passwd\nend\n",
            b"POSTERN-REQUEST 1\nbounce ALL\nend\n",
            b"POSTERN-REQUEST 1\nfrobnicate 1K1D6V0JC6N9J9M\nend\n",
            b"POSTERN-REQUEST 1\nhold ALL\nend\n",
            b"POSTERN-REQUEST 1\ndelete 1K1D6V0JC6N9J9M\ndelete ALL\nend\n",
            b"POSTERN-REQUEST 1\ndelete  1K1D6V0JC6N9J9M\nend\n",
            b"POSTERN-REQUEST 1\r\ndelete 1K1D6V0JC6N9J9M\r\nend\r\n",
            b"POSTERN-REQUEST 1\ndelete\nend\n",
        ] {
            assert!(
                parse_request(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encode_round_trips() {
        for (op, t) in [
            (Op::Delete, Target::Id("1K1D6V0JC6N9J9M".into())),
            (Op::Delete, Target::Deferred),
            (Op::Retry, Target::All),
            (Op::Release, Target::User("www-data".into())),
            (Op::Delete, Target::Storm("1K1D6V0JC6N9J9M".into())),
            (Op::Bounce, Target::Id("1K1D6V0JC6N9J9M".into())),
        ] {
            let r = parse_request(encode(op, &t).as_bytes()).unwrap();
            assert_eq!((r.op, r.target), (op, t));
        }
    }
}
