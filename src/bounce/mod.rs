//! Delivery status notifications (bounces and delay warnings).
//!
//! This module builds the *text* of a delivery status notification (DSN):
//! an RFC 6522 (formerly RFC 3462) `multipart/report;
//! report-type=delivery-status` message with three parts:
//!
//! 1. a Postfix-like human explanation (`text/plain; charset=us-ascii`);
//! 2. the machine-readable report (`message/delivery-status`, RFC 3464):
//!    per-message fields followed by one block per recipient;
//! 3. the returned original: only its header section
//!    (`text/rfc822-headers`, RET=HDRS, our default) or the whole message
//!    (`message/rfc822`, RET=FULL, unless it is larger than
//!    [`DsnInput::max_full_size`], in which case the headers are returned and
//!    the first part says so).
//!
//! The top-level message carries `Auto-Submitted: auto-replied` (RFC 3834)
//! and is written with LF line endings (the spool convention; the SMTP layer
//! converts to CRLF). Every generated line is at most 998 octets and 7-bit:
//! non-ASCII and control characters coming from the inputs are escaped
//! (see [`write_dsn`]). Only the copied original may carry 8-bit bytes; the
//! top level then says nothing about it and the caller submits the DSN with
//! `BODY=8BITMIME`.
//!
//! What this module never does: it performs no I/O of its own beyond the
//! reader and writer it is given, and it never decides *whether* to bounce.
//! In particular a message from the null sender (`MAIL FROM:<>`) must never
//! be bounced (RFC 5321 §4.5.5, RFC 3464 §2): the caller enforces that, and
//! [`write_dsn`] refuses an empty sender with [`io::ErrorKind::InvalidInput`]
//! as a last line of defence. Sending the DSN (with the null sender, to
//! [`DsnInput::original_sender`]) is the caller's business too.
//!
//! The MIME boundary is made of the queue id, the DSN timestamp (seconds and
//! nanoseconds), the process id and a per-process counter. The copied
//! original sits inside its own MIME part, so a collision would need the
//! original to contain that exact, unpredictable string at the start of a
//! line; this is accepted as enough in practice (the original is streamed and
//! cannot be scanned beforehand).
//!
//! References: RFC 3464 (message/delivery-status), RFC 6522 (multipart/
//! report), RFC 3461 (DSN SMTP extension, ENVID/RET/ORCPT), RFC 3463 and
//! RFC 5248 (enhanced status codes), RFC 6533 (`utf-8` address type and its
//! `\x{HEX}` escape, used for non-ASCII addresses), RFC 5322 (dates,
//! folding, line length), RFC 2047 (encoded words), RFC 3834
//! (Auto-Submitted).
//!
//! One job per file: [`original`] reads and streams the returned original,
//! [`notification`] writes the first part, [`report`] the second,
//! [`text`] makes input values 7-bit and single-line, and [`fold`] lays out
//! lines; this file holds the inputs and assembles the message.

mod fold;
mod notification;
mod original;
mod report;
mod text;

use fold::push_field;
use original::{COPY_CHUNK, CountingWriter, HEADER_SECTION_CAP, HeaderSection, Returned};
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use text::{clean_text, domain_chars, postmaster_addr, strip_angles, to_value, token_chars};

/// Why one recipient failed (or is delayed).
#[derive(Debug, Clone)]
pub struct RecipientReport {
    /// The address we tried, e.g. `bob@example.org`.
    pub final_recipient: String,
    /// The address as the sender wrote it, when different, e.g. `root`
    /// (written as `rfc822;root`). A value that already carries an address
    /// type (`rfc822;...`, `utf-8;...`, e.g. from ORCPT) is used as is.
    pub original_recipient: Option<String>,
    /// Failed or delayed.
    pub action: Action,
    /// Enhanced status code, e.g. `5.1.1`. When the server gave none the
    /// caller derives `5.0.0`/`4.0.0` from the reply code; an empty or
    /// malformed value is replaced the same way here (from the diagnostic's
    /// reply code, else from the action).
    pub status: String,
    /// The relay's host name, e.g. `smtp.example.com` or
    /// `dns; smtp.example.com` (a value without a `type;` prefix gets
    /// `dns; `). `None` if we never connected.
    pub remote_mta: Option<String>,
    /// The SMTP reply, one line, e.g.
    /// `550 5.1.1 <bob@example.org>: Recipient address rejected`; written as
    /// `smtp; <reply>`. A value starting with a `type;` prefix is used as is,
    /// any other text that is not an SMTP reply gets `X-Postern; `. May be
    /// `None` for local failures.
    pub diagnostic: Option<String>,
    /// Human text for the first part, e.g. `host smtp.example.com[192.0.2.1]
    /// said: 550 5.1.1 ... (in reply to RCPT TO command)`.
    pub reason: String,
    /// When delivery was last attempted.
    pub last_attempt: Option<SystemTime>,
    /// Until when delivery will be retried (only used for
    /// [`Action::Delayed`]).
    pub will_retry_until: Option<SystemTime>,
}

/// The DSN action for one recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delivery failed permanently; the message will not be retried.
    Failed,
    /// Delivery is delayed; the message will be retried.
    Delayed,
}

/// Everything [`write_dsn`] needs besides the original message.
pub struct DsnInput<'a> {
    /// Our host name, e.g. `web1.example.com` (Reporting-MTA).
    pub reporting_mta: &'a str,
    /// Queue id of the failed message.
    pub queue_id: &'a str,
    /// Envelope sender of the failed message; the DSN goes there. Never
    /// empty (the null sender is never bounced).
    pub original_sender: &'a str,
    /// The ENVID given by the sender, xtext-decoded (Original-Envelope-Id).
    pub envid: Option<&'a str>,
    /// When the original message arrived (Arrival-Date).
    pub arrival: SystemTime,
    /// Now: the DSN's Date header, Message-ID and boundary.
    pub now: SystemTime,
    /// One report per failed or delayed recipient; at least one.
    pub recipients: &'a [RecipientReport],
    /// RET=FULL: return the whole original as `message/rfc822`; otherwise
    /// (RET=HDRS, our default) return its headers as `text/rfc822-headers`.
    pub return_full: bool,
    /// The address part of the From header, e.g.
    /// `MAILER-DAEMON@web1.example.com`; the display name is
    /// `Mail Delivery System`.
    pub postmaster: &'a str,
    /// Domain of the DSN's own Message-ID.
    pub message_id_domain: &'a str,
    /// With `return_full`, an original larger than this is returned as
    /// headers only, and the first part says so.
    pub max_full_size: u64,
}

/// Subject of a DSN reporting at least one failure.
const SUBJECT_FAILED: &str = "Undelivered Mail Returned to Sender";
/// Subject of a DSN reporting only delays.
const SUBJECT_DELAYED: &str = "Delayed Mail (still being retried)";
/// Longest boundary allowed by RFC 2046.
const MAX_BOUNDARY: usize = 70;

/// Distinguishes DSNs built in the same nanosecond by the same process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The Subject for the DSN: "Undelivered Mail Returned to Sender" when any
/// recipient failed (or the list is empty), "Delayed Mail (still being
/// retried)" when all are only delayed.
pub fn subject(recipients: &[RecipientReport]) -> &'static str {
    if !recipients.is_empty() && recipients.iter().all(|r| r.action == Action::Delayed) {
        SUBJECT_DELAYED
    } else {
        SUBJECT_FAILED
    }
}

/// Write a complete DSN message to `out` and return the number of bytes
/// written.
///
/// The output has LF line endings and is ASCII except inside the third
/// part. Text taken from the inputs is made 7-bit and single-line: CR/LF and
/// TAB become spaces, other control characters and every byte of non-ASCII
/// characters are percent-escaped (`%C3%A4`; `%` itself is left alone, so
/// this is for display, not reversible). Non-ASCII addresses are reported
/// with the RFC 6533 `utf-8` address type and its `\x{HEX}` escape; a
/// non-ASCII sender appears in the To header as an RFC 2047 encoded group
/// name (`To: =?utf-8?q?...?= :;`). Generated header fields are folded at
/// whitespace near 78 columns; runs longer than 900 octets without
/// whitespace are split.
///
/// `original` yields the original message as spooled (LF or CRLF; CRLF is
/// turned into LF). For headers-only returns just the header section (up to
/// the first empty line, or all of it when there is none) is read, line by
/// line, into memory, with a cap of 1 MiB beyond which it is cut at a line
/// boundary and the first part says so. For RET=FULL the original is copied
/// in 64 KiB chunks, at most `original_len` bytes, and its part is labelled
/// `Content-Transfer-Encoding: 8bit` (it may contain 8-bit data, which cannot
/// be known before it is streamed); a returned header section is labelled
/// `8bit` only when it does contain 8-bit bytes.
///
/// Errors: [`io::ErrorKind::InvalidInput`] when `original_sender` is empty
/// or `<>` (the null sender is never bounced) or `recipients` is empty;
/// otherwise any error of `original` or `out`. Nothing is written if the
/// input is invalid or reading the header section fails.
pub fn write_dsn<R: Read, W: Write>(
    input: &DsnInput<'_>,
    original: R,
    original_len: u64,
    out: W,
) -> io::Result<u64> {
    let sender = checked_sender(input)?;
    let returned = Returned::choose(input, original_len);
    let mut reader = BufReader::with_capacity(COPY_CHUNK, original);
    let headers = match returned {
        Returned::Full => None,
        Returned::Headers | Returned::HeadersTooLarge => Some(original::read_header_section(
            &mut reader,
            HEADER_SECTION_CAP,
        )?),
    };
    let truncated = headers.as_ref().is_some_and(|h| h.truncated);
    let ids = Ids::new(input);
    let host = clean_text(input.reporting_mta);

    let mut out = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut head = String::with_capacity(4096);
    push_top_header(&mut head, input, sender, &ids);

    // Part 1: human-readable explanation.
    head.push_str(&format!("--{}\n", ids.boundary));
    push_field(&mut head, "Content-Description", "Notification");
    push_field(&mut head, "Content-Type", "text/plain; charset=us-ascii");
    head.push('\n');
    notification::push_notification(&mut head, input, &host, returned, truncated, original_len);
    head.push('\n');

    // Part 2: machine-readable report.
    head.push_str(&format!("--{}\n", ids.boundary));
    push_field(&mut head, "Content-Description", "Delivery report");
    push_field(&mut head, "Content-Type", "message/delivery-status");
    head.push('\n');
    report::push_delivery_status(&mut head, input, &host, sender);
    head.push('\n');

    // Part 3: the returned original.
    head.push_str(&format!("--{}\n", ids.boundary));
    push_returned_header(&mut head, headers.as_ref());
    out.write_all(head.as_bytes())?;
    let ends_with_lf = match &headers {
        Some(h) => {
            out.write_all(&h.data)?;
            h.data.is_empty() || h.data.ends_with(b"\n")
        }
        None => original::copy_normalized(&mut reader.take(original_len), &mut out)?,
    };
    if !ends_with_lf {
        out.write_all(b"\n")?;
    }
    out.write_all(format!("\n--{}--\n", ids.boundary).as_bytes())?;
    out.flush()?;
    Ok(out.count)
}

/// The sender to report to, without angle brackets; refuses the null
/// sender and an empty recipient list.
fn checked_sender<'a>(input: &DsnInput<'a>) -> io::Result<&'a str> {
    let sender = strip_angles(input.original_sender.trim());
    if sender.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a message from the null sender is never bounced",
        ));
    }
    if input.recipients.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a DSN needs at least one recipient report",
        ));
    }
    Ok(sender)
}

/// The MIME boundary and Message-ID of one DSN.
struct Ids {
    boundary: String,
    message_id: String,
}

impl Ids {
    /// From the queue id, the DSN time, the process id and the counter.
    fn new(input: &DsnInput<'_>) -> Ids {
        let (secs, nanos) = unix_parts(input.now);
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let qid = token_chars(input.queue_id);
        let short_qid: String = qid.chars().take(16).collect();
        let mut boundary = format!("=_{short_qid}.{secs:x}.{nanos:x}.{pid:x}.{counter:x}");
        boundary.truncate(MAX_BOUNDARY);
        let domain = domain_chars(input.message_id_domain);
        Ids {
            boundary,
            message_id: format!("<{qid}.dsn.{secs}.{nanos:09}.{pid}.{counter}@{domain}>"),
        }
    }
}

/// The top-level header and the MIME preamble.
fn push_top_header(head: &mut String, input: &DsnInput<'_>, sender: &str, ids: &Ids) {
    push_field(
        head,
        "From",
        &format!("Mail Delivery System <{}>", postmaster_addr(input)),
    );
    push_field(head, "To", &to_value(sender));
    push_field(head, "Subject", subject(input.recipients));
    push_field(head, "Date", &crate::clock::rfc5322(input.now));
    push_field(head, "Message-ID", &ids.message_id);
    push_field(head, "Auto-Submitted", "auto-replied");
    push_field(head, "MIME-Version", "1.0");
    push_field(
        head,
        "Content-Type",
        &format!(
            "multipart/report; report-type=delivery-status; boundary=\"{}\"",
            ids.boundary
        ),
    );
    head.push('\n');
    head.push_str("This is a MIME-encapsulated message.\n\n");
}

/// The header of part 3: the whole message, or its header section
/// (labelled 8bit only when it holds 8-bit bytes).
fn push_returned_header(head: &mut String, headers: Option<&HeaderSection>) {
    match headers {
        None => {
            push_field(head, "Content-Description", "Undelivered Message");
            push_field(head, "Content-Type", "message/rfc822");
            push_field(head, "Content-Transfer-Encoding", "8bit");
        }
        Some(h) => {
            push_field(head, "Content-Description", "Undelivered Message Headers");
            push_field(head, "Content-Type", "text/rfc822-headers");
            if !h.data.is_ascii() {
                push_field(head, "Content-Transfer-Encoding", "8bit");
            }
        }
    }
    head.push('\n');
}

/// Seconds (possibly negative) and nanoseconds since the Unix epoch.
fn unix_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

#[cfg(test)]
mod tests;
