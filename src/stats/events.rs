//! Reading the event log: `events.log.1` then `events.log`, trusting
//! nothing. A line that does not parse (garbage, a torn write, a line longer
//! than 64 KiB, a final line without its newline) is skipped and counted,
//! never fatal.

use crate::spool::Spool;
use crate::spool::state::dec;
use std::io::BufRead;
use std::path::Path;

/// Longest line a reader accepts.
const MAX_EVENT_LINE: usize = 64 * 1024;
/// Most bytes read from one log file (a bound even if rotation failed).
const MAX_READ: u64 = 256 * 1024 * 1024;

/// What an event line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A message entered the queue.
    Accepted,
    /// The outbound guard held a message (`uid=`, `reason=`).
    Held,
    /// A recipient was accepted by the relay.
    Sent,
    /// A recipient failed temporarily.
    Deferred,
    /// A recipient failed permanently.
    Bounced,
    /// A message left the queue.
    Removed,
    /// A session with a relay was set up.
    RelayOk,
    /// A session with a relay could not be set up.
    RelayError,
}

impl EventKind {
    fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "accepted" => EventKind::Accepted,
            "held" => EventKind::Held,
            "sent" => EventKind::Sent,
            "deferred" => EventKind::Deferred,
            "bounced" => EventKind::Bounced,
            "removed" => EventKind::Removed,
            "relay-ok" => EventKind::RelayOk,
            "relay-error" => EventKind::RelayError,
            _ => return None,
        })
    }
}

/// One parsed event line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unix time.
    pub time: f64,
    /// What happened.
    pub kind: EventKind,
    /// Queue id, or `-` for relay events.
    pub id: String,
    /// Decoded `key=value` fields.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn num(&self, key: &str) -> Option<f64> {
        self.get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    }
}

/// Parse one line (without its newline); None for anything malformed.
pub fn parse_line(line: &str) -> Option<Event> {
    let mut words = line.split(' ');
    let time: f64 = words.next()?.parse().ok()?;
    if !time.is_finite() || time < 0.0 {
        return None;
    }
    let kind = EventKind::parse(words.next()?)?;
    let id = words.next()?;
    let relay_event = matches!(kind, EventKind::RelayOk | EventKind::RelayError);
    if relay_event {
        if id != "-" {
            return None;
        }
    } else if !crate::spool::is_valid_id(id) {
        return None;
    }
    let mut fields = Vec::new();
    for w in words {
        let (k, v) = w.split_once('=')?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        fields.push((k.to_string(), dec(v)?));
    }
    let ev = Event {
        time,
        kind,
        id: id.to_string(),
        fields,
    };
    // The fields each kind needs, with sane values.
    let ok = match kind {
        EventKind::Accepted => ev.num("size").is_some(),
        EventKind::Held => ev.num("uid").is_some(),
        EventKind::Sent | EventKind::Deferred | EventKind::Bounced => {
            ev.get("to").is_some() && ev.get("relay").is_some() && ev.num("delay").is_some()
        }
        EventKind::Removed => ev.num("age").is_some(),
        EventKind::RelayOk => ev.get("relay").is_some(),
        EventKind::RelayError => ev.get("relay").is_some() && ev.get("error").is_some(),
    };
    ok.then_some(ev)
}

/// Events read from the log, and how many lines were skipped.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// Parsed events, oldest first (file order).
    pub events: Vec<Event>,
    /// Lines that did not parse.
    pub ignored: u64,
}

fn read_file(path: &Path, out: &mut Events) -> std::io::Result<()> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut r = std::io::BufReader::new(std::io::Read::take(f, MAX_READ));
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        // Read one line, but never keep more than MAX_EVENT_LINE bytes of it.
        let mut too_long = false;
        let mut ended = false;
        loop {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], i + 1),
                None => (avail, avail.len()),
            };
            if buf.len() + chunk.len() > MAX_EVENT_LINE {
                too_long = true;
            } else {
                buf.extend_from_slice(chunk);
            }
            let nl = done > chunk.len();
            r.consume(done);
            if nl {
                ended = true;
                break;
            }
        }
        if !ended {
            // End of file: a final line without its newline is still being
            // written or was torn; either way it is not an event yet.
            if !buf.is_empty() || too_long {
                out.ignored += 1;
            }
            return Ok(());
        }
        if too_long {
            out.ignored += 1;
            continue;
        }
        match std::str::from_utf8(&buf).ok().and_then(parse_line) {
            Some(ev) => out.events.push(ev),
            None => {
                if !buf.is_empty() {
                    out.ignored += 1;
                }
            }
        }
    }
}

/// Read `events.log.1` then `events.log`. A missing file is empty; an
/// unreadable one is an error (EACCES for a caller outside group postern).
pub fn read_events(spool: &Spool) -> std::io::Result<Events> {
    let mut out = Events::default();
    let current = spool.events();
    let mut old = current.clone().into_os_string();
    old.push(".1");
    read_file(Path::new(&old), &mut out)?;
    read_file(&current, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_reject() {
        let e = parse_line(
            "1795956514.101 sent 1K1D6V0JC6N9J9M to=bob@example.org relay=h[1.2.3.4]:587 delay=0.321 reply=250%20ok",
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Sent);
        assert_eq!(e.get("reply"), Some("250 ok"));
        assert_eq!(crate::stats::relay_key(e.get("relay").unwrap()), "h:587");
        for bad in [
            "",
            "garbage",
            "1.0 sent 1K1D6V0JC6N9J9M to=x relay=y",
            "1.0 sent ../../etc/passw to=x relay=y delay=1",
            "nan accepted 1K1D6V0JC6N9J9M size=1",
            "1.0 accepted 1K1D6V0JC6N9J9M size=-1",
            "1.0 accepted 1K1D6V0JC6N9J9M size=1 bad=%ZZ",
            "1.0 relay-ok 1K1D6V0JC6N9J9M relay=x",
        ] {
            assert!(parse_line(bad).is_none(), "{bad:?}");
        }
    }
}
