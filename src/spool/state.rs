//! Per-message delivery state: `state/<id>`, the mutable half of a message.
//!
//! `queue/<id>` never changes after pickup; everything that does — tries,
//! next attempt, hold, and each recipient's status with the relay's last
//! reply — lives here and is replaced whole through
//! `durable::write_atomic`. The file is world-readable: it holds exactly what
//! `mailq` shows (sender, size, recipients, reasons) and never the message.
//!
//! ```text
//! postern-state 1
//! id 1K1D6V0JC6N9J9M
//! sender alice@example.com          (percent-encoded; empty for <>)
//! size 2048
//! arrival 1795956513.779995
//! uid 1000
//! tries 2
//! next 1795956700.000000            (0 = now)
//! held 0
//! warned 0
//! last-attempt 1795956600.0
//! relay smtp.example.com[192.0.2.1]:587
//! hold-reason www-data%20over%20200%20messages/hour   (only when the guard held it)
//! storm 1K1D6V0JC6N9J9M             (only when held in a storm)
//! rcpt deferred bob@example.org root 1795956600.0 450%204.2.0%20busy
//! end
//! ```
//! `rcpt` fields: status (`pending|sent|deferred|bounced`), final address,
//! original address, time of the last change, last reply — each
//! percent-encoded (space, `%` and controls), so values cannot break lines.

use std::fmt::Write as _;

/// Status of one recipient (serialised as the lower-case word the state
/// file uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    /// Not tried yet.
    Pending,
    /// Accepted by the relay (done).
    Sent,
    /// Failed temporarily; will be retried.
    Deferred,
    /// Failed permanently (done; a bounce was or will be sent).
    Bounced,
}

impl RcptStatus {
    fn as_str(self) -> &'static str {
        match self {
            RcptStatus::Pending => "pending",
            RcptStatus::Sent => "sent",
            RcptStatus::Deferred => "deferred",
            RcptStatus::Bounced => "bounced",
        }
    }
    fn parse(s: &str) -> Option<RcptStatus> {
        Some(match s {
            "pending" => RcptStatus::Pending,
            "sent" => RcptStatus::Sent,
            "deferred" => RcptStatus::Deferred,
            "bounced" => RcptStatus::Bounced,
            _ => return None,
        })
    }
    /// True when nothing more will be done for this recipient.
    pub fn is_final(self) -> bool {
        matches!(self, RcptStatus::Sent | RcptStatus::Bounced)
    }
}

/// One recipient's state.
#[derive(Debug, Clone, PartialEq)]
pub struct RcptState {
    /// Status.
    pub status: RcptStatus,
    /// The address delivered to (after aliases).
    pub address: String,
    /// The envelope recipient it came from.
    pub original: String,
    /// When the status last changed (unix seconds).
    pub changed: f64,
    /// The relay's last reply or our reason.
    pub reply: String,
}

/// The state of one message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// Queue id.
    pub id: String,
    /// Envelope sender ("" = null sender).
    pub sender: String,
    /// Message size in bytes.
    pub size: u64,
    /// Arrival time (unix seconds).
    pub arrival: f64,
    /// Submitting uid.
    pub uid: u32,
    /// Delivery attempts so far.
    pub tries: u32,
    /// Earliest next attempt (unix seconds; 0 = now).
    pub next: f64,
    /// On hold: not delivered until released.
    pub held: bool,
    /// A delay warning was sent.
    pub warned: bool,
    /// Time of the last attempt (0 = never).
    pub last_attempt: f64,
    /// Relay of the last attempt.
    pub relay: String,
    /// `-odi` message refused for every recipient: the daemon waits until
    /// this time (unix seconds) for the caller's acknowledgement before it
    /// sends a bounce (0 = not waiting).
    pub ack_deadline: f64,
    /// Why the outbound guard held the message ("" = not held by it).
    pub hold_reason: String,
    /// The storm the message was held in ("" = none).
    pub storm: String,
    /// Recipients.
    pub rcpts: Vec<RcptState>,
}

/// Percent-encode space, `%`, controls and DEL (UTF-8 stays as is, which
/// the `percent-encoding` crate's encoders never leave: they escape every
/// non-ASCII byte, and old files must stay byte-identical).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match u8::try_from(c) {
            Ok(b) if b <= b' ' || b == b'%' || b == 0x7f => {
                out.push_str(percent_encoding::percent_encode_byte(b));
            }
            _ => out.push(c),
        }
    }
    out
}

/// Decode [`enc`] (any `%HH`, either case); None when an escape is
/// malformed or the result is not UTF-8. The check is strict because the
/// `percent-encoding` crate, which decodes, keeps a malformed `%` as is.
pub fn dec(s: &str) -> Option<String> {
    if !escapes_well_formed(s.as_bytes(), b'%') {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// Every `marker` is followed by two hex digits.
fn escapes_well_formed(b: &[u8], marker: u8) -> bool {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == marker {
            match b.get(i + 1..i + 3) {
                Some(h) if h.iter().all(u8::is_ascii_hexdigit) => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Decode `<marker>HH` hex escapes (`+HH` for SMTP xtext; `%HH` is
/// [`dec`]); None when an escape is malformed or the result is not UTF-8.
pub fn unescape_hex(s: &str, marker: u8) -> Option<String> {
    if marker == b'%' {
        return dec(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == marker {
            let (h, l) = (*b.get(i + 1)?, *b.get(i + 2)?);
            out.push(mail_parser::decoders::quoted_printable::quoted_printable_decode_char(h, l)?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl State {
    /// Serialise.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "postern-state 1");
        let _ = writeln!(s, "id {}", self.id);
        let _ = writeln!(s, "sender {}", enc(&self.sender));
        let _ = writeln!(s, "size {}", self.size);
        let _ = writeln!(s, "arrival {:.6}", self.arrival);
        let _ = writeln!(s, "uid {}", self.uid);
        let _ = writeln!(s, "tries {}", self.tries);
        let _ = writeln!(s, "next {:.6}", self.next);
        let _ = writeln!(s, "held {}", u8::from(self.held));
        let _ = writeln!(s, "warned {}", u8::from(self.warned));
        let _ = writeln!(s, "last-attempt {:.6}", self.last_attempt);
        let _ = writeln!(s, "relay {}", enc(&self.relay));
        if self.ack_deadline > 0.0 {
            let _ = writeln!(s, "ack-deadline {:.6}", self.ack_deadline);
        }
        if !self.hold_reason.is_empty() {
            let _ = writeln!(s, "hold-reason {}", enc(&self.hold_reason));
        }
        if !self.storm.is_empty() {
            let _ = writeln!(s, "storm {}", enc(&self.storm));
        }
        for r in &self.rcpts {
            let _ = writeln!(
                s,
                "rcpt {} {} {} {:.6} {}",
                r.status.as_str(),
                enc(&r.address),
                enc(&r.original),
                r.changed,
                enc(&r.reply)
            );
        }
        s.push_str("end\n");
        s
    }

    /// Parse; None when the file is not a whole, valid state file.
    pub fn decode(text: &str) -> Option<State> {
        let body = text
            .strip_prefix("postern-state 1\n")?
            .strip_suffix("end\n")?;
        let mut st = State::default();
        for line in body.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            let num = |v: &str| v.parse::<f64>().ok().filter(|f| f.is_finite());
            match k {
                "id" => st.id = v.to_string(),
                "sender" => st.sender = dec(v)?,
                "size" => st.size = v.parse().ok()?,
                "arrival" => st.arrival = num(v)?,
                "uid" => st.uid = v.parse().ok()?,
                "tries" => st.tries = v.parse().ok()?,
                "next" => st.next = num(v)?,
                "held" => st.held = v == "1",
                "warned" => st.warned = v == "1",
                "last-attempt" => st.last_attempt = num(v)?,
                "relay" => st.relay = dec(v)?,
                "ack-deadline" => st.ack_deadline = num(v)?,
                "hold-reason" => st.hold_reason = dec(v)?,
                "storm" => st.storm = dec(v)?,
                "rcpt" => {
                    let mut f = v.split(' ');
                    let status = RcptStatus::parse(f.next()?)?;
                    let address = dec(f.next()?)?;
                    let original = dec(f.next()?)?;
                    let changed = num(f.next()?)?;
                    let reply = dec(f.next().unwrap_or(""))?;
                    st.rcpts.push(RcptState {
                        status,
                        address,
                        original,
                        changed,
                        reply,
                    });
                }
                _ => return None,
            }
        }
        if !crate::spool::is_valid_id(&st.id) {
            return None;
        }
        Some(st)
    }

    /// Recipients still to be delivered.
    pub fn open_rcpts(&self) -> impl Iterator<Item = &RcptState> {
        self.rcpts.iter().filter(|r| !r.status.is_final())
    }

    /// True when every recipient is done.
    pub fn is_done(&self) -> bool {
        !self.rcpts.is_empty() && self.rcpts.iter().all(|r| r.status.is_final())
    }

    /// The most recent reply of a deferred recipient.
    pub fn last_deferral(&self) -> Option<&RcptState> {
        self.rcpts
            .iter()
            .filter(|r| r.status == RcptStatus::Deferred)
            .max_by(|a, b| a.changed.total_cmp(&b.changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn() {
        let st = State {
            id: "1K1D6V0JC6N9J9M".into(),
            sender: "".into(),
            size: 42,
            arrival: 1.5,
            uid: 33,
            tries: 2,
            next: 100.0,
            held: true,
            warned: false,
            last_attempt: 99.0,
            relay: "smtp.example.com[192.0.2.1]:587".into(),
            ack_deadline: 5.0,
            hold_reason: "www-data over 200 messages/hour".into(),
            storm: String::new(),
            rcpts: vec![RcptState {
                status: RcptStatus::Deferred,
                address: "\"john doe\"@x".into(),
                original: "jörg".into(),
                changed: 99.0,
                reply: "450 4.2.0 busy\nnext".into(),
            }],
        };
        let text = st.encode();
        assert_eq!(State::decode(&text).unwrap(), st);
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                assert!(State::decode(&text[..cut]).is_none(), "prefix {cut}");
            }
        }
        assert_eq!(dec(&enc("a b%c\td")).unwrap(), "a b%c\td");
        // The on-disk form: ASCII escapes upper-case, UTF-8 as is.
        assert_eq!(enc("ä b%\x7f\n"), "ä%20b%25%7F%0A");
        assert_eq!(dec("%c3%a4%41").as_deref(), Some("äA"));
        for bad in ["%", "%4", "%G0", "%\u{e4}0", "%ff"] {
            assert_eq!(dec(bad), None, "{bad:?}");
        }
        assert_eq!(unescape_hex("a+2Bb+3d", b'+').as_deref(), Some("a+b="));
        assert_eq!(unescape_hex("a+2", b'+'), None);
    }
}
