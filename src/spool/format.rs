//! The queue-entry file format: one codec for maildrop and queue entries.
//!
//! ```text
//! POSTERN 1 00000000000000002048\n   fixed-size header: magic, version, message length
//! <message bytes, exactly that many>
//! id 01KABC...\n                     envelope: one `key value` per line, UTF-8,
//! sender <a@b>\n                     no CR, LF or NUL inside a value
//! rcpt <c@d>\n                       (one per recipient, at least one)
//! uid 1000\n  user alice\n  arrival 1767225600.123456\n  ...
//! end\n                              trailer: the file is whole
//! ```
//! The message length is patched into the header after the message has been
//! streamed (the writer does not know it in advance). Decoding fails on any
//! truncation, trailing garbage, unknown version, unknown key, over-long line
//! or out-of-range value: a torn or forged file is never mistaken for a
//! message. The module is pure (no I/O beyond the `Read`/`FileExt` it is
//! handed) and fuzzed.

use std::fmt::Write as _;

/// Length of the fixed header line.
pub const HEADER_LEN: u64 = 31;
const MAGIC: &str = "POSTERN 1 ";
/// Longest envelope line accepted.
pub const MAX_LINE: usize = 4096;
/// Most recipients in one message.
pub const MAX_RCPTS: usize = 10_000;
/// Largest envelope section accepted.
pub const MAX_ENVELOPE: usize = MAX_RCPTS * 1100;

/// The envelope of one message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    /// Queue id (also the file name).
    pub id: String,
    /// Envelope sender; empty for the null sender `<>`.
    pub sender: String,
    /// Recipients as submitted (before alias resolution).
    pub recipients: Vec<String>,
    /// Submitting uid (pickup overrides it with the file owner).
    pub uid: u32,
    /// Submitting user name.
    pub user: String,
    /// Arrival time, seconds since the epoch.
    pub arrival: f64,
    /// `-F` full name, if given.
    pub fullname: Option<String>,
    /// DSN NOTIFY (`NEVER` or a comma list of SUCCESS, FAILURE, DELAY).
    pub dsn_notify: Option<String>,
    /// DSN RET (`FULL` or `HDRS`).
    pub dsn_ret: Option<String>,
    /// DSN ENVID (raw, not xtext-encoded).
    pub envid: Option<String>,
    /// The message contains 8-bit bytes.
    pub eight_bit: bool,
    /// The Message-ID header value, for logs.
    pub message_id: Option<String>,
    /// The message is a delivery status notification generated here.
    pub is_bounce: bool,
    /// Submitted with `-odi`: the caller waits for the first attempt and is
    /// told of a permanent failure, so no bounce is sent for it.
    pub interactive: bool,
}

/// Why a file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(s: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError(s.into()))
}

/// True if `v` may be stored as an envelope value.
pub fn is_safe_value(v: &str) -> bool {
    v.len() < MAX_LINE - 16 && !v.chars().any(|c| c == '\r' || c == '\n' || c == '\0')
}

/// The header line for a message of `len` bytes.
pub fn header(len: u64) -> String {
    format!("{MAGIC}{len:020}\n")
}

/// Parse the header line; returns the message length.
pub fn parse_header(h: &[u8]) -> Result<u64, FormatError> {
    if h.len() < HEADER_LEN as usize {
        return err("short header");
    }
    let h = &h[..HEADER_LEN as usize];
    if !h.starts_with(MAGIC.as_bytes()) {
        if h.starts_with(b"POSTERN ") {
            return err("unknown spool format version");
        }
        return err("not a postern queue file");
    }
    if h[30] != b'\n' {
        return err("bad header line");
    }
    let digits = &h[MAGIC.len()..30];
    if !digits.iter().all(u8::is_ascii_digit) {
        return err("bad message length");
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| FormatError("bad message length".into()))
}

/// Encode the envelope section (including the `end` trailer).
pub fn encode_envelope(e: &Envelope) -> Result<String, FormatError> {
    let mut out = String::new();
    let mut put = |k: &str, v: &str| -> Result<(), FormatError> {
        if !is_safe_value(v) {
            return err(format!("envelope value for {k} is not storable"));
        }
        let _ = writeln!(out, "{k} {v}");
        Ok(())
    };
    put("id", &e.id)?;
    put("sender", &format!("<{}>", e.sender))?;
    if e.recipients.is_empty() || e.recipients.len() > MAX_RCPTS {
        return err("a message needs between 1 and 10000 recipients");
    }
    for r in &e.recipients {
        put("rcpt", &format!("<{r}>"))?;
    }
    put("uid", &e.uid.to_string())?;
    put("user", &e.user)?;
    put("arrival", &format!("{:.6}", e.arrival))?;
    if let Some(v) = &e.fullname {
        put("fullname", v)?;
    }
    if let Some(v) = &e.dsn_notify {
        put("notify", v)?;
    }
    if let Some(v) = &e.dsn_ret {
        put("ret", v)?;
    }
    if let Some(v) = &e.envid {
        put("envid", v)?;
    }
    put("body", if e.eight_bit { "8BITMIME" } else { "7BIT" })?;
    if let Some(v) = &e.message_id {
        put("message-id", v)?;
    }
    if e.is_bounce {
        put("kind", "bounce")?;
    }
    if e.interactive {
        put("mode", "interactive")?;
    }
    out.push_str("end\n");
    Ok(out)
}

fn angle(v: &str, key: &str) -> Result<String, FormatError> {
    match v.strip_prefix('<').and_then(|v| v.strip_suffix('>')) {
        Some(inner) => Ok(inner.to_string()),
        None => err(format!("{key} value is not in angle brackets")),
    }
}

/// Decode an envelope section (everything after the message).
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, FormatError> {
    if bytes.len() > MAX_ENVELOPE {
        return err("envelope too large");
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => return err("envelope is not UTF-8"),
    };
    let body = match text.strip_suffix("end\n") {
        Some(b) if b.is_empty() || b.ends_with('\n') => b,
        _ => return err("missing end trailer (torn file)"),
    };
    let mut e = Envelope::default();
    let (mut have_id, mut have_sender, mut have_uid, mut have_arrival, mut have_body) =
        (false, false, false, false, false);
    for line in body.lines() {
        if line.len() > MAX_LINE || line.contains(['\r', '\0']) {
            return err("bad envelope line");
        }
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "id" if !have_id => {
                if !crate::spool::is_valid_id(v) {
                    return err("bad queue id");
                }
                e.id = v.to_string();
                have_id = true;
            }
            "sender" if !have_sender => {
                e.sender = angle(v, k)?;
                have_sender = true;
            }
            "rcpt" => {
                let r = angle(v, k)?;
                if r.is_empty() || e.recipients.len() >= MAX_RCPTS {
                    return err("bad recipient");
                }
                e.recipients.push(r);
            }
            "uid" if !have_uid => {
                e.uid = v.parse().map_err(|_| FormatError("bad uid".into()))?;
                have_uid = true;
            }
            "user" => e.user = v.to_string(),
            "arrival" if !have_arrival => {
                let a: f64 = v.parse().map_err(|_| FormatError("bad arrival".into()))?;
                if !a.is_finite() || !(0.0..1e11).contains(&a) {
                    return err("bad arrival");
                }
                e.arrival = a;
                have_arrival = true;
            }
            "fullname" => e.fullname = Some(v.to_string()),
            "notify" => e.dsn_notify = Some(v.to_string()),
            "ret" => e.dsn_ret = Some(v.to_string()),
            "envid" => e.envid = Some(v.to_string()),
            "body" if !have_body => {
                e.eight_bit = match v {
                    "8BITMIME" => true,
                    "7BIT" => false,
                    _ => return err("bad body type"),
                };
                have_body = true;
            }
            "message-id" => e.message_id = Some(v.to_string()),
            "kind" if v == "bounce" => e.is_bounce = true,
            "mode" if v == "interactive" => e.interactive = true,
            _ => return err(format!("unexpected envelope line {:?}", truncate(line))),
        }
    }
    if !(have_id && have_sender && have_uid && have_arrival && have_body) {
        return err("incomplete envelope");
    }
    if e.recipients.is_empty() {
        return err("no recipients");
    }
    Ok(e)
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Decode a whole entry held in memory: (envelope, message range).
pub fn decode(bytes: &[u8]) -> Result<(Envelope, std::ops::Range<usize>), FormatError> {
    let len = parse_header(bytes)?;
    let start = HEADER_LEN as usize;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| start.checked_add(l))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| FormatError("message shorter than its header says (torn file)".into()))?;
    let env = decode_envelope(&bytes[end..])?;
    Ok((env, start..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            id: "0123456789ABCDE".into(),
            sender: "alice@example.com".into(),
            recipients: vec!["bob@example.org".into(), "\"john doe\"@x.example".into()],
            uid: 1000,
            user: "alice".into(),
            arrival: 1767225600.25,
            fullname: Some("Alice A".into()),
            dsn_notify: Some("FAILURE,DELAY".into()),
            dsn_ret: Some("HDRS".into()),
            envid: Some("abc+1".into()),
            eight_bit: true,
            message_id: Some("<x@y>".into()),
            is_bounce: false,
            interactive: true,
        }
    }

    fn entry(e: &Envelope, msg: &[u8]) -> Vec<u8> {
        let mut v = header(msg.len() as u64).into_bytes();
        v.extend_from_slice(msg);
        v.extend_from_slice(encode_envelope(e).unwrap().as_bytes());
        v
    }

    #[test]
    fn round_trip() {
        let e = sample();
        let bytes = entry(&e, b"Subject: hi\n\nbody\n");
        let (d, r) = decode(&bytes).unwrap();
        assert_eq!(d, e);
        assert_eq!(&bytes[r], b"Subject: hi\n\nbody\n");
    }

    #[test]
    fn every_prefix_fails() {
        let bytes = entry(&sample(), b"Subject: hi\n\nbody end\n");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "prefix {cut} decoded");
        }
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"x");
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn rejects_unsafe_values() {
        let mut e = sample();
        e.recipients.push("evil\n@x".into());
        assert!(encode_envelope(&e).is_err());
        let mut e = sample();
        e.recipients.clear();
        assert!(encode_envelope(&e).is_err());
    }

    #[test]
    fn rejects_other_versions_and_garbage() {
        assert!(parse_header(b"POSTERN 2 00000000000000000001\n").is_err());
        assert!(parse_header(b"From x\n").is_err());
        assert!(decode_envelope(b"id 0123\nend\n").is_err());
        assert!(decode_envelope(b"bogus\nend\n").is_err());
        let huge =
            "id 0123456789ABCDE\nsender <>\nrcpt <a@b>\nuid 1\narrival 1e300\nbody 7BIT\nend\n";
        assert!(
            decode_envelope(huge.as_bytes()).is_err(),
            "an arrival past year 5000 is refused"
        );
    }
}
