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

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Cap on the header section copied for RET=HDRS.
const HEADER_SECTION_CAP: usize = 1 << 20;
/// Chunk size for streaming the original.
const COPY_CHUNK: usize = 64 * 1024;
/// Preferred width of generated header lines (RFC 5322 §2.1.1).
const FOLD_WIDTH: usize = 78;
/// Width of the human-readable text.
const TEXT_WIDTH: usize = 76;
/// Longest run without whitespace kept on one line; longer runs are split
/// (which inserts a space when unfolded) so no line exceeds 998 octets.
const MAX_WORD: usize = 900;
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

/// What the third part holds and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returned {
    /// The whole message (RET=FULL).
    Full,
    /// The header section, as requested (RET=HDRS).
    Headers,
    /// The header section because RET=FULL was too large.
    HeadersTooLarge,
}

/// The header section of the original, LF-normalised.
struct HeaderSection {
    data: Vec<u8>,
    truncated: bool,
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

    let returned = if !input.return_full {
        Returned::Headers
    } else if original_len > input.max_full_size {
        Returned::HeadersTooLarge
    } else {
        Returned::Full
    };

    let mut reader = BufReader::with_capacity(COPY_CHUNK, original);
    let headers = match returned {
        Returned::Full => None,
        Returned::Headers | Returned::HeadersTooLarge => {
            Some(read_header_section(&mut reader, HEADER_SECTION_CAP)?)
        }
    };
    let truncated = headers.as_ref().is_some_and(|h| h.truncated);

    let (secs, nanos) = unix_parts(input.now);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let qid = token_chars(input.queue_id);
    let boundary = {
        let short_qid: String = qid.chars().take(16).collect();
        let mut b = format!("=_{short_qid}.{secs:x}.{nanos:x}.{pid:x}.{counter:x}");
        b.truncate(MAX_BOUNDARY);
        b
    };
    let host = clean_text(input.reporting_mta);
    let domain = domain_chars(input.message_id_domain);

    let mut out = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut head = String::with_capacity(4096);

    // Top-level header.
    push_field(
        &mut head,
        "From",
        &format!("Mail Delivery System <{}>", postmaster_addr(input)),
    );
    push_field(&mut head, "To", &to_value(sender));
    push_field(&mut head, "Subject", subject(input.recipients));
    push_field(&mut head, "Date", &rfc5322_date(input.now));
    push_field(
        &mut head,
        "Message-ID",
        &format!("<{qid}.dsn.{secs}.{nanos:09}.{pid}.{counter}@{domain}>"),
    );
    push_field(&mut head, "Auto-Submitted", "auto-replied");
    push_field(&mut head, "MIME-Version", "1.0");
    push_field(
        &mut head,
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    head.push('\n');
    head.push_str("This is a MIME-encapsulated message.\n\n");

    // Part 1: human-readable explanation.
    head.push_str(&format!("--{boundary}\n"));
    push_field(&mut head, "Content-Description", "Notification");
    push_field(&mut head, "Content-Type", "text/plain; charset=us-ascii");
    head.push('\n');
    push_notification(&mut head, input, &host, returned, truncated, original_len);
    head.push('\n');

    // Part 2: machine-readable report.
    head.push_str(&format!("--{boundary}\n"));
    push_field(&mut head, "Content-Description", "Delivery report");
    push_field(&mut head, "Content-Type", "message/delivery-status");
    head.push('\n');
    push_delivery_status(&mut head, input, &host, sender);
    head.push('\n');

    // Part 3 header.
    head.push_str(&format!("--{boundary}\n"));
    match &headers {
        None => {
            push_field(&mut head, "Content-Description", "Undelivered Message");
            push_field(&mut head, "Content-Type", "message/rfc822");
            push_field(&mut head, "Content-Transfer-Encoding", "8bit");
        }
        Some(h) => {
            push_field(
                &mut head,
                "Content-Description",
                "Undelivered Message Headers",
            );
            push_field(&mut head, "Content-Type", "text/rfc822-headers");
            if !h.data.is_ascii() {
                push_field(&mut head, "Content-Transfer-Encoding", "8bit");
            }
        }
    }
    head.push('\n');
    out.write_all(head.as_bytes())?;

    // Part 3 body.
    let ends_with_lf = match &headers {
        Some(h) => {
            out.write_all(&h.data)?;
            h.data.is_empty() || h.data.ends_with(b"\n")
        }
        None => copy_normalized(&mut reader.take(original_len), &mut out)?,
    };
    if !ends_with_lf {
        out.write_all(b"\n")?;
    }
    out.write_all(format!("\n--{boundary}--\n").as_bytes())?;
    out.flush()?;
    Ok(out.count)
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the header section (up to and excluding the first empty line, or
/// everything when there is none), converting CRLF to LF. Past `cap` bytes
/// it stops at the last complete line and reports `truncated`.
fn read_header_section<R: BufRead>(reader: &mut R, cap: usize) -> io::Result<HeaderSection> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let room = cap.saturating_sub(data.len());
        // A line that fits (with its LF, or CRLF) is read whole; a longer one
        // is cut by the limit and then dropped below.
        let limit = u64::try_from(room).unwrap_or(u64::MAX).saturating_add(2);
        let n = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(HeaderSection {
                data,
                truncated: false,
            });
        }
        let complete = line.ends_with(b"\n");
        if complete {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
            if line.is_empty() {
                return Ok(HeaderSection {
                    data,
                    truncated: false,
                });
            }
        }
        if line.len() + 1 > room {
            return Ok(HeaderSection {
                data,
                truncated: true,
            });
        }
        data.extend_from_slice(&line);
        data.push(b'\n');
        if !complete {
            // Last line of an original without a final newline.
            return Ok(HeaderSection {
                data,
                truncated: false,
            });
        }
    }
}

/// Copies `reader` to `out` in chunks, turning CRLF into LF. Returns whether
/// the copied data was empty or ended with LF.
fn copy_normalized<R: BufRead, W: Write>(reader: &mut R, out: &mut W) -> io::Result<bool> {
    let mut buf = Vec::with_capacity(COPY_CHUNK + 1);
    let mut pending_cr = false;
    let mut last = None;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        buf.clear();
        for &b in chunk {
            if pending_cr && b != b'\n' {
                buf.push(b'\r');
            }
            pending_cr = b == b'\r';
            if !pending_cr {
                buf.push(b);
            }
        }
        let len = chunk.len();
        reader.consume(len);
        if let Some(&b) = buf.last() {
            last = Some(b);
        }
        out.write_all(&buf)?;
    }
    if pending_cr {
        out.write_all(b"\r")?;
        last = Some(b'\r');
    }
    Ok(last.is_none_or(|b| b == b'\n'))
}

/// The human-readable first part.
fn push_notification(
    buf: &mut String,
    input: &DsnInput<'_>,
    host: &str,
    returned: Returned,
    truncated: bool,
    original_len: u64,
) {
    let failed: Vec<&RecipientReport> = input
        .recipients
        .iter()
        .filter(|r| r.action == Action::Failed)
        .collect();
    let delayed: Vec<&RecipientReport> = input
        .recipients
        .iter()
        .filter(|r| r.action == Action::Delayed)
        .collect();
    let retry_until = delayed.iter().filter_map(|r| r.will_retry_until).max();
    let retry_text = match retry_until {
        Some(t) => format!("until {}", rfc5322_date(t)),
        None => "for some time".to_string(),
    };

    push_paragraph(buf, &format!("This is the mail system at host {host}."));
    buf.push('\n');

    let attached = match returned {
        Returned::Full => "It's attached below.".to_string(),
        Returned::Headers => "Its headers are attached below.".to_string(),
        Returned::HeadersTooLarge => format!(
            "It was too large to be returned in full ({original_len} bytes, the limit is {} \
             bytes), so only its headers are attached below.",
            input.max_full_size
        ),
    };
    if failed.is_empty() {
        buf.push_str(
            "####################################################################\n\
             # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n\
             ####################################################################\n\n",
        );
        push_paragraph(
            buf,
            &format!(
                "This is a warning only; your message could not yet be delivered to one or more \
                 recipients. The message will be retried {retry_text}. {attached}"
            ),
        );
    } else {
        push_paragraph(
            buf,
            &format!(
                "I'm sorry to have to inform you that your message could not be delivered to \
                 one or more recipients. {attached}"
            ),
        );
    }
    if truncated {
        buf.push('\n');
        push_paragraph(
            buf,
            &format!(
                "The header section of your message is longer than {HEADER_SECTION_CAP} bytes; \
                 the returned headers were cut there."
            ),
        );
    }
    buf.push('\n');
    push_paragraph(
        buf,
        "For further assistance, please send mail to postmaster.",
    );
    buf.push('\n');
    push_paragraph(
        buf,
        "If you do so, please include this problem report. You can delete your own text from \
         the attached returned message.",
    );
    buf.push('\n');
    buf.push_str("                   The mail system\n");

    let first = if failed.is_empty() { &delayed } else { &failed };
    for r in first {
        buf.push('\n');
        push_recipient_line(buf, r);
    }
    if !failed.is_empty() && !delayed.is_empty() {
        buf.push('\n');
        push_paragraph(
            buf,
            &format!(
                "Delivery to the following recipients has been delayed. This is a warning only \
                 for them; the message will be retried {retry_text}."
            ),
        );
        for r in &delayed {
            buf.push('\n');
            push_recipient_line(buf, r);
        }
    }
}

/// `<final> (expanded from <orig>): reason`, wrapped with a 4-space indent.
fn push_recipient_line(buf: &mut String, r: &RecipientReport) {
    let mut line = format!("<{}>", clean_text(strip_angles(r.final_recipient.trim())));
    if let Some(orig) = &r.original_recipient {
        let orig = strip_address_type(orig.trim());
        if !orig.is_empty() && orig != r.final_recipient.trim() {
            line.push_str(&format!(" (expanded from <{}>)", clean_text(orig)));
        }
    }
    line.push_str(": ");
    let reason = clean_text(&r.reason);
    if !reason.is_empty() {
        line.push_str(&reason);
    } else if let Some(d) = r
        .diagnostic
        .as_deref()
        .map(clean_text)
        .filter(|d| !d.is_empty())
    {
        line.push_str(&d);
    } else {
        let what = match r.action {
            Action::Failed => "delivery failed",
            Action::Delayed => "delivery temporarily failed",
        };
        line.push_str(&format!("{what} (status {})", status_of(r)));
    }
    wrap(buf, &line, TEXT_WIDTH, "    ");
}

/// The `message/delivery-status` body: per-message fields, then one block
/// per recipient, each followed by an empty line.
fn push_delivery_status(buf: &mut String, input: &DsnInput<'_>, host: &str, sender: &str) {
    push_field(buf, "Reporting-MTA", &format!("dns; {host}"));
    push_field(buf, "X-Postern-Queue-ID", &clean_text(input.queue_id));
    push_field(buf, "X-Postern-Sender", &address_value(sender));
    if let Some(envid) = input.envid {
        push_field(buf, "Original-Envelope-Id", &xtext(envid));
    }
    push_field(buf, "Arrival-Date", &rfc5322_date(input.arrival));
    for r in input.recipients {
        buf.push('\n');
        if let Some(orig) = r.original_recipient.as_deref() {
            let orig = orig.trim();
            if !orig.is_empty() {
                let value = if has_address_type(orig) {
                    clean_text(orig)
                } else {
                    address_value(strip_angles(orig))
                };
                push_field(buf, "Original-Recipient", &value);
            }
        }
        push_field(
            buf,
            "Final-Recipient",
            &address_value(strip_angles(r.final_recipient.trim())),
        );
        let action = match r.action {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        };
        push_field(buf, "Action", action);
        push_field(buf, "Status", &status_of(r));
        if let Some(mta) = r.remote_mta.as_deref().map(clean_text)
            && !mta.is_empty()
        {
            let value = if has_type_prefix(&mta) {
                mta
            } else {
                format!("dns; {mta}")
            };
            push_field(buf, "Remote-MTA", &value);
        }
        if let Some(diag) = r.diagnostic.as_deref().map(clean_text)
            && !diag.is_empty()
        {
            push_field(buf, "Diagnostic-Code", &diagnostic_value(diag));
        }
        if let Some(t) = r.last_attempt {
            push_field(buf, "Last-Attempt-Date", &rfc5322_date(t));
        }
        if r.action == Action::Delayed
            && let Some(t) = r.will_retry_until
        {
            push_field(buf, "Will-Retry-Until", &rfc5322_date(t));
        }
    }
}

/// The recipient's status if it is a well-formed enhanced status code,
/// otherwise `X.0.0` with X from the diagnostic's reply code or the action.
fn status_of(r: &RecipientReport) -> String {
    let status = r.status.trim();
    if is_enhanced_status(status) {
        return status.to_string();
    }
    let from_reply = r.diagnostic.as_deref().and_then(|d| {
        let d = d.trim_start();
        let code = d.get(..3)?;
        if code.bytes().all(|b| b.is_ascii_digit()) {
            match code.as_bytes()[0] {
                b'4' => Some("4.0.0"),
                b'5' => Some("5.0.0"),
                _ => None,
            }
        } else {
            None
        }
    });
    let fallback = match r.action {
        Action::Failed => "5.0.0",
        Action::Delayed => "4.0.0",
    };
    from_reply.unwrap_or(fallback).to_string()
}

/// `class "." subject "." detail` with class 2, 4 or 5 and 1-3 digits each
/// (RFC 3463).
fn is_enhanced_status(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && digits(subject) && digits(detail)
}

/// `smtp; <reply>` for an SMTP reply, the value itself when it already has a
/// diagnostic type, `X-Postern; <text>` otherwise.
fn diagnostic_value(diag: String) -> String {
    if has_type_prefix(&diag) {
        return diag;
    }
    let b = diag.as_bytes();
    let is_reply = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b[0], b'2'..=b'5')
        && b.get(3).is_none_or(|&c| c == b' ' || c == b'-');
    if is_reply {
        format!("smtp; {diag}")
    } else {
        format!("X-Postern; {diag}")
    }
}

/// Whether `s` starts with `atom;` (an RFC 3464 type such as `dns;`,
/// `smtp;`, `rfc822;`, `x-unix;`).
fn has_type_prefix(s: &str) -> bool {
    match s.split_once(';') {
        Some((t, _)) => {
            let t = t.trim_end();
            !t.is_empty()
                && t.len() <= 32
                && t.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        None => false,
    }
}

/// Whether an address already carries an `rfc822;` or `utf-8;` type.
fn has_address_type(s: &str) -> bool {
    s.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("rfc822;"))
        || s.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("utf-8;"))
}

/// The address without an `rfc822;`/`utf-8;` type and angle brackets.
fn strip_address_type(s: &str) -> &str {
    if has_address_type(s) {
        match s.split_once(';') {
            Some((_, rest)) => strip_angles(rest.trim()),
            None => s,
        }
    } else {
        strip_angles(s)
    }
}

/// `rfc822;addr` for a printable ASCII address, otherwise `utf-8;` with the
/// RFC 6533 utf-8-addr-xtext escape (`\x{HEX}` for anything but QCHAR).
fn address_value(addr: &str) -> String {
    if addr.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return format!("rfc822;{addr}");
    }
    let mut v = String::from("utf-8;");
    for c in addr.chars() {
        let qchar =
            matches!(c, '\x21'..='\x2a' | '\x2c'..='\x3c' | '\x3e'..='\x5b' | '\x5d'..='\x7e');
        if qchar {
            v.push(c);
        } else {
            v.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    v
}

/// RFC 3461 xtext: printable ASCII except `+` and `=` as is, other bytes as
/// `+HH`.
fn xtext(s: &str) -> String {
    let mut v = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'+' && b != b'=' {
            v.push(char::from(b));
        } else {
            v.push_str(&format!("+{b:02X}"));
        }
    }
    v
}

/// Makes text single-line 7-bit: CR/LF runs and TAB become one space, other
/// controls and non-ASCII bytes become `%HH`; leading/trailing whitespace is
/// trimmed.
fn clean_text(s: &str) -> String {
    let mut v = String::with_capacity(s.len());
    let mut in_break = false;
    for c in s.chars() {
        if c == '\r' || c == '\n' {
            if !in_break {
                v.push(' ');
            }
            in_break = true;
            continue;
        }
        in_break = false;
        if c == '\t' {
            v.push(' ');
        } else if c.is_ascii() && !c.is_ascii_control() {
            v.push(c);
        } else {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                v.push_str(&format!("%{b:02X}"));
            }
        }
    }
    v.trim().to_string()
}

/// Removes one pair of enclosing angle brackets.
fn strip_angles(s: &str) -> &str {
    s.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(s)
}

/// Characters allowed in a Message-ID's left part and the boundary.
fn token_chars(s: &str) -> String {
    let v: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if v.is_empty() {
        "noqueue".to_string()
    } else {
        v
    }
}

/// A dot-atom domain for the Message-ID.
fn domain_chars(s: &str) -> String {
    let labels: Vec<String> = s
        .split('.')
        .map(|l| {
            l.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(63)
                .collect::<String>()
        })
        .filter(|l| !l.is_empty())
        .take(32)
        .collect();
    if labels.is_empty() {
        "localhost".to_string()
    } else {
        labels.join(".")
    }
}

/// The From address: the given one when it is plain printable ASCII,
/// otherwise `MAILER-DAEMON@<reporting host>`.
fn postmaster_addr(input: &DsnInput<'_>) -> String {
    let addr = strip_angles(input.postmaster.trim());
    let ok = !addr.is_empty()
        && addr.len() <= 254
        && addr
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'<' && b != b'>');
    if ok {
        addr.to_string()
    } else {
        format!("MAILER-DAEMON@{}", domain_chars(input.reporting_mta))
    }
}

/// `<sender>` for a printable ASCII sender; otherwise an RFC 2047 encoded
/// group name with no members (an address cannot be encoded).
fn to_value(sender: &str) -> String {
    if sender
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'<' && b != b'>')
    {
        return format!("<{sender}>");
    }
    // RFC 2047 Q encoding restricted to what a phrase allows, in encoded
    // words of at most 75 characters, not splitting a character.
    const PREFIX: &str = "=?utf-8?q?";
    const MAX_PAYLOAD: usize = 75 - PREFIX.len() - 2;
    let mut words = Vec::new();
    let mut word = String::new();
    for c in sender.chars() {
        let mut enc = String::new();
        if c.is_ascii_alphanumeric() || matches!(c, '!' | '*' | '+' | '-' | '/') {
            enc.push(c);
        } else {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                enc.push_str(&format!("={b:02X}"));
            }
        }
        if word.len() + enc.len() > MAX_PAYLOAD {
            words.push(format!("{PREFIX}{word}?="));
            word.clear();
        }
        word.push_str(&enc);
    }
    if !word.is_empty() {
        words.push(format!("{PREFIX}{word}?="));
    }
    format!("{} :;", words.join(" "))
}

/// Appends `Name: value` folded at spaces near [`FOLD_WIDTH`] (RFC 5322
/// §2.2.3). `value` must be ASCII without CR/LF (see [`clean_text`]).
fn push_field(buf: &mut String, name: &str, value: &str) {
    let mut line_len = name.len() + 1;
    buf.push_str(name);
    buf.push(':');
    let mut first = true;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        for piece in split_long(word) {
            if !first && line_len + 1 + piece.len() > FOLD_WIDTH {
                buf.push('\n');
                line_len = 0;
            }
            buf.push(' ');
            buf.push_str(piece);
            line_len += 1 + piece.len();
            first = false;
        }
    }
    buf.push('\n');
}

/// Appends a paragraph wrapped at [`TEXT_WIDTH`].
fn push_paragraph(buf: &mut String, text: &str) {
    wrap(buf, text, TEXT_WIDTH, "");
}

/// Appends `text` word-wrapped at `width`, continuation lines starting with
/// `indent`.
fn wrap(buf: &mut String, text: &str, width: usize, indent: &str) {
    let mut line_len = 0;
    let mut at_start = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        for piece in split_long(word) {
            if !at_start && line_len + 1 + piece.len() > width {
                buf.push('\n');
                buf.push_str(indent);
                line_len = indent.len();
                at_start = true;
            }
            if !at_start {
                buf.push(' ');
                line_len += 1;
            }
            buf.push_str(piece);
            line_len += piece.len();
            at_start = false;
        }
    }
    buf.push('\n');
}

/// Splits an ASCII word into pieces of at most [`MAX_WORD`] bytes.
fn split_long(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(MAX_WORD);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
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

/// RFC 5322 date in UTC, e.g. `Tue, 05 Mar 2024 14:03:09 +0000`.
fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (secs, _) = unix_parts(t);
    // Keep years within 4 digits (0000-9999).
    let secs = secs.clamp(-62_167_219_200, 253_402_300_799);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} +0000",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Proleptic Gregorian date from days since 1970-01-01 (H. Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{Message, MessageParser, MimeHeaders};
    use std::time::Duration;

    const SENDER: &str = "alice@example.net";
    const ORIGINAL: &[u8] = b"From: Alice <alice@example.net>\n\
        To: Bob <bob@example.org>\n\
        Subject: Quarterly figures\n\
        Message-ID: <orig-123@example.net>\n\
        Date: Tue, 05 Mar 2024 14:03:09 +0000\n\
        \n\
        Hello Bob,\n\
        here are the figures.\n";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn failed(addr: &str) -> RecipientReport {
        RecipientReport {
            final_recipient: addr.to_string(),
            original_recipient: None,
            action: Action::Failed,
            status: "5.1.1".to_string(),
            remote_mta: Some("smtp.example.com".to_string()),
            diagnostic: Some(format!(
                "550 5.1.1 <{addr}>: Recipient address rejected: User unknown"
            )),
            reason: format!(
                "host smtp.example.com[192.0.2.1] said: 550 5.1.1 <{addr}>: Recipient address \
                 rejected: User unknown (in reply to RCPT TO command)"
            ),
            last_attempt: Some(at(1_709_647_389)),
            will_retry_until: None,
        }
    }

    fn delayed(addr: &str) -> RecipientReport {
        RecipientReport {
            final_recipient: addr.to_string(),
            original_recipient: None,
            action: Action::Delayed,
            status: "4.4.1".to_string(),
            remote_mta: None,
            diagnostic: None,
            reason: "connect to mx.example.com[192.0.2.7]:25: Connection refused".to_string(),
            last_attempt: Some(at(1_709_647_389)),
            will_retry_until: Some(at(1_710_079_389)),
        }
    }

    fn input(recipients: &[RecipientReport]) -> DsnInput<'_> {
        DsnInput {
            reporting_mta: "web1.example.com",
            queue_id: "4F2A1B3C9D",
            original_sender: SENDER,
            envid: None,
            arrival: at(1_709_640_000),
            now: at(1_709_647_400),
            recipients,
            return_full: false,
            postmaster: "MAILER-DAEMON@web1.example.com",
            message_id_domain: "web1.example.com",
            max_full_size: 10 * 1024 * 1024,
        }
    }

    fn build(input: &DsnInput<'_>, original: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_dsn(input, original, original.len() as u64, &mut out).expect("write_dsn");
        assert_eq!(n, out.len() as u64);
        out
    }

    /// Per-message fields and per-recipient blocks of a delivery-status
    /// body: (lower-case name, unfolded value).
    type Block = Vec<(String, String)>;

    fn parse_status(text: &str) -> (Block, Vec<Block>) {
        let mut blocks: Vec<Block> = Vec::new();
        let mut current: Block = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                if !current.is_empty() {
                    blocks.push(std::mem::take(&mut current));
                }
            } else if line.starts_with(' ') || line.starts_with('\t') {
                let last = current.last_mut().expect("continuation without field");
                last.1.push_str(line);
            } else {
                let (name, value) = line.split_once(':').expect("field without colon");
                current.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        if !current.is_empty() {
            blocks.push(current);
        }
        assert!(!blocks.is_empty(), "empty delivery-status");
        let per_message = blocks.remove(0);
        (per_message, blocks)
    }

    fn field<'b>(block: &'b Block, name: &str) -> Option<&'b str> {
        let name = name.to_ascii_lowercase();
        block
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What every DSN must satisfy; returns the parsed pieces.
    struct Dsn<'m> {
        msg: Message<'m>,
        notification: String,
        per_message: Block,
        recipients: Vec<Block>,
        returned_ctype: String,
    }

    fn check(out: &[u8]) -> Dsn<'_> {
        let msg = MessageParser::default().parse(out).expect("parse DSN");
        let ct = msg.content_type().expect("content type");
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let boundary = ct.attribute("boundary").expect("boundary").to_string();
        assert!(boundary.len() <= 70);
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        let from = msg.from().and_then(|a| a.first()).expect("from");
        assert_eq!(from.name.as_deref(), Some("Mail Delivery System"));
        assert_eq!(
            from.address.as_deref(),
            Some("MAILER-DAEMON@web1.example.com")
        );
        assert!(msg.date().is_some());
        assert!(msg.message_id().is_some_and(|id| id.contains(".dsn.")));

        let parts = msg.root_part().sub_parts().expect("multipart").to_vec();
        assert_eq!(parts.len(), 3);
        let p1 = msg.part(parts[0]).expect("part 1");
        let p1ct = p1.content_type().expect("part 1 type");
        assert_eq!((p1ct.ctype(), p1ct.subtype()), ("text", Some("plain")));
        assert_eq!(p1ct.attribute("charset"), Some("us-ascii"));
        let notification = p1.text_contents().expect("text").to_string();

        let p2 = msg.part(parts[1]).expect("part 2");
        let p2ct = p2.content_type().expect("part 2 type");
        assert_eq!(
            (p2ct.ctype(), p2ct.subtype()),
            ("message", Some("delivery-status"))
        );
        let status = std::str::from_utf8(p2.contents()).expect("utf-8 status");
        let (per_message, recipients) = parse_status(status);
        assert_eq!(
            field(&per_message, "Reporting-MTA"),
            Some("dns; web1.example.com")
        );

        let p3 = msg.part(parts[2]).expect("part 3");
        let p3ct = p3.content_type().expect("part 3 type");
        let returned_ctype = format!("{}/{}", p3ct.ctype(), p3ct.subtype().unwrap_or(""));

        // Everything outside part 3's body is 7-bit, LF-only, lines <= 998.
        let delim = format!("--{boundary}\n");
        let third = nth_find(out, delim.as_bytes(), 3).expect("third delimiter");
        let body_start = find_from(out, b"\n\n", third).expect("part 3 header end") + 2;
        let close = format!("\n--{boundary}--\n");
        assert!(out.ends_with(close.as_bytes()));
        let body_end = out.len() - close.len();
        for region in [&out[..body_start], &out[body_end..]] {
            assert!(region.is_ascii(), "8-bit outside part 3");
            assert!(!region.contains(&b'\r'), "CR outside part 3");
            for line in region.split(|&b| b == b'\n') {
                assert!(line.len() <= 998, "line of {} octets", line.len());
            }
        }
        // The boundary does not occur inside the copied part.
        assert!(find_from(&out[body_start..body_end], boundary.as_bytes(), 0).is_none());

        Dsn {
            msg,
            notification,
            per_message,
            recipients,
            returned_ctype,
        }
    }

    fn find_from(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }

    fn nth_find(hay: &[u8], needle: &[u8], n: usize) -> Option<usize> {
        let mut pos = 0;
        let mut found = None;
        for _ in 0..n {
            let p = find_from(hay, needle, pos)?;
            found = Some(p);
            pos = p + needle.len();
        }
        found
    }

    /// The notification with whitespace runs collapsed (undoes wrapping).
    fn flat(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Part 3 as a message (headers-only or full).
    fn returned(dsn: &Dsn<'_>) -> (Option<String>, Option<String>, Vec<u8>) {
        let parts = dsn.msg.root_part().sub_parts().expect("multipart");
        let p3 = dsn.msg.part(parts[2]).expect("part 3");
        let raw = p3.contents().to_vec();
        let inner = MessageParser::default()
            .parse(&raw)
            .expect("returned message");
        (
            inner.subject().map(str::to_string),
            inner.message_id().map(str::to_string),
            raw.clone(),
        )
    }

    #[test]
    fn one_failed_recipient() {
        let mut r = failed("bob@example.org");
        r.original_recipient = Some("root".to_string());
        let recipients = [r];
        let mut inp = input(&recipients);
        inp.envid = Some("QQ314159");
        let out = build(&inp, ORIGINAL);
        let dsn = check(&out);

        assert_eq!(
            dsn.msg.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
        let to = dsn.msg.to().and_then(|a| a.first()).expect("to");
        assert_eq!(to.address.as_deref(), Some(SENDER));
        let text = std::str::from_utf8(&out).expect("ascii");
        assert!(text.contains("\nDate: Tue, 05 Mar 2024 14:03:20 +0000\n"));
        assert!(text.contains("\nMessage-ID: <4F2A1B3C9D.dsn.1709647400.000000000."));

        assert_eq!(
            field(&dsn.per_message, "X-Postern-Queue-ID"),
            Some("4F2A1B3C9D")
        );
        assert_eq!(
            field(&dsn.per_message, "Original-Envelope-Id"),
            Some("QQ314159")
        );
        assert_eq!(
            field(&dsn.per_message, "Arrival-Date"),
            Some("Tue, 05 Mar 2024 12:00:00 +0000")
        );
        assert_eq!(dsn.recipients.len(), 1);
        let b = &dsn.recipients[0];
        assert_eq!(field(b, "Original-Recipient"), Some("rfc822;root"));
        assert_eq!(field(b, "Final-Recipient"), Some("rfc822;bob@example.org"));
        assert_eq!(field(b, "Action"), Some("failed"));
        assert_eq!(field(b, "Status"), Some("5.1.1"));
        assert_eq!(field(b, "Remote-MTA"), Some("dns; smtp.example.com"));
        assert_eq!(
            field(b, "Diagnostic-Code"),
            Some("smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown")
        );
        assert_eq!(
            field(b, "Last-Attempt-Date"),
            Some("Tue, 05 Mar 2024 14:03:09 +0000")
        );
        assert_eq!(field(b, "Will-Retry-Until"), None);
        // Field order of RFC 3464 §2.3.
        let names: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "original-recipient",
                "final-recipient",
                "action",
                "status",
                "remote-mta",
                "diagnostic-code",
                "last-attempt-date"
            ]
        );

        let note = flat(&dsn.notification);
        assert!(note.starts_with("This is the mail system at host web1.example.com."));
        assert!(note.contains("could not be delivered to one or more recipients"));
        assert!(note.contains(
            "<bob@example.org> (expanded from <root>): host smtp.example.com[192.0.2.1] said: \
             550 5.1.1"
        ));
        assert!(note.contains("(in reply to RCPT TO command)"));
        for line in dsn.notification.lines() {
            assert!(line.len() <= TEXT_WIDTH, "{line:?}");
        }

        assert_eq!(dsn.returned_ctype, "text/rfc822-headers");
        let (subject, message_id, raw) = returned(&dsn);
        assert_eq!(subject.as_deref(), Some("Quarterly figures"));
        assert_eq!(message_id.as_deref(), Some("orig-123@example.net"));
        assert!(!raw.windows(9).any(|w| w == b"Hello Bob"), "body returned");
        assert!(!text.contains("Content-Transfer-Encoding"));
    }

    #[test]
    fn two_failed_and_one_delayed() {
        let recipients = [
            failed("bob@example.org"),
            delayed("carol@example.com"),
            failed("dave@example.org"),
        ];
        let out = build(&input(&recipients), ORIGINAL);
        let dsn = check(&out);
        assert_eq!(
            dsn.msg.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
        assert_eq!(dsn.recipients.len(), 3);
        let expect = [
            ("rfc822;bob@example.org", "failed", "5.1.1"),
            ("rfc822;carol@example.com", "delayed", "4.4.1"),
            ("rfc822;dave@example.org", "failed", "5.1.1"),
        ];
        for (b, (rcpt, action, status)) in dsn.recipients.iter().zip(expect) {
            assert_eq!(field(b, "Final-Recipient"), Some(rcpt));
            assert_eq!(field(b, "Action"), Some(action));
            assert_eq!(field(b, "Status"), Some(status));
            assert_eq!(field(b, "Original-Recipient"), None);
        }
        assert_eq!(
            field(&dsn.recipients[1], "Will-Retry-Until"),
            Some("Sun, 10 Mar 2024 14:03:09 +0000")
        );
        assert_eq!(field(&dsn.recipients[1], "Remote-MTA"), None);
        assert_eq!(field(&dsn.recipients[1], "Diagnostic-Code"), None);
        assert_eq!(field(&dsn.recipients[0], "Will-Retry-Until"), None);

        let note = flat(&dsn.notification);
        let bob = note.find("<bob@example.org>:").expect("bob");
        let dave = note.find("<dave@example.org>:").expect("dave");
        let delay = note.find("has been delayed").expect("delay section");
        let carol = note.find("<carol@example.com>: connect to").expect("carol");
        assert!(bob < dave && dave < delay && delay < carol);
        assert!(note.contains("retried until Sun, 10 Mar 2024 14:03:09 +0000"));
        let (subject, message_id, _) = returned(&dsn);
        assert_eq!(subject.as_deref(), Some("Quarterly figures"));
        assert_eq!(message_id.as_deref(), Some("orig-123@example.net"));
    }

    #[test]
    fn delay_only_warning() {
        let recipients = [delayed("carol@example.com")];
        let out = build(&input(&recipients), ORIGINAL);
        let dsn = check(&out);
        assert_eq!(
            dsn.msg.subject(),
            Some("Delayed Mail (still being retried)")
        );
        let b = &dsn.recipients[0];
        assert_eq!(
            field(b, "Final-Recipient"),
            Some("rfc822;carol@example.com")
        );
        assert_eq!(field(b, "Action"), Some("delayed"));
        assert_eq!(field(b, "Status"), Some("4.4.1"));
        assert_eq!(
            field(b, "Will-Retry-Until"),
            Some("Sun, 10 Mar 2024 14:03:09 +0000")
        );
        let note = flat(&dsn.notification);
        assert!(note.contains("THIS IS A WARNING ONLY"));
        assert!(note.contains(
            "This is a warning only; your message could not yet be delivered to one or more \
             recipients. The message will be retried until Sun, 10 Mar 2024 14:03:09 +0000."
        ));
        assert!(!note.contains("I'm sorry"));
        assert!(note.contains("<carol@example.com>: connect to mx.example.com[192.0.2.7]:25"));
    }

    #[test]
    fn ret_full_small_original() {
        let recipients = [failed("bob@example.org")];
        let mut inp = input(&recipients);
        inp.return_full = true;
        let out = build(&inp, ORIGINAL);
        let dsn = check(&out);
        assert_eq!(dsn.returned_ctype, "message/rfc822");
        let parts = dsn.msg.root_part().sub_parts().expect("multipart");
        let p3 = dsn.msg.part(parts[2]).expect("part 3");
        let inner = p3.message().expect("nested message");
        assert_eq!(inner.subject(), Some("Quarterly figures"));
        assert_eq!(inner.message_id(), Some("orig-123@example.net"));
        assert!(
            inner
                .body_text(0)
                .is_some_and(|t| t.contains("here are the figures."))
        );
        assert_eq!(p3.content_transfer_encoding(), Some("8bit"));
        // The original is copied byte for byte.
        assert!(find_from(&out, ORIGINAL, 0).is_some());
        assert!(flat(&dsn.notification).contains("It's attached below."));
    }

    #[test]
    fn ret_full_over_limit_falls_back_to_headers() {
        let recipients = [failed("bob@example.org")];
        let mut inp = input(&recipients);
        inp.return_full = true;
        inp.max_full_size = 100;
        let out = build(&inp, ORIGINAL);
        let dsn = check(&out);
        assert_eq!(dsn.returned_ctype, "text/rfc822-headers");
        let (subject, message_id, raw) = returned(&dsn);
        assert_eq!(subject.as_deref(), Some("Quarterly figures"));
        assert_eq!(message_id.as_deref(), Some("orig-123@example.net"));
        assert!(!raw.windows(9).any(|w| w == b"Hello Bob"));
        let note = flat(&dsn.notification);
        assert!(note.contains(&format!(
            "too large to be returned in full ({} bytes, the limit is 100 bytes)",
            ORIGINAL.len()
        )));
        assert!(note.contains("only its headers are attached below"));
    }

    /// An original with CRLF endings and an 8-bit body (UTF-8 and Latin-1).
    fn crlf_8bit_original() -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.net>\r\n");
        o.extend_from_slice(b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n");
        o.extend_from_slice(b"Message-ID: <crlf-8bit@example.net>\r\n");
        o.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        o.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n\r\n");
        o.extend_from_slice(b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\nLatin-1: caf\xe9\r\n");
        o
    }

    #[test]
    fn crlf_and_8bit_original_headers() {
        let recipients = [failed("bob@example.org")];
        let original = crlf_8bit_original();
        let out = build(&input(&recipients), &original);
        let dsn = check(&out);
        let (subject, message_id, raw) = returned(&dsn);
        assert_eq!(subject.as_deref(), Some("Grüße"));
        assert_eq!(message_id.as_deref(), Some("crlf-8bit@example.net"));
        assert!(!raw.contains(&b'\r'));
        assert!(!raw.windows(4).any(|w| w == b"K\xc3\xb6l"), "body returned");
        // 8-bit headers are labelled as such.
        let parts = dsn.msg.root_part().sub_parts().expect("multipart");
        let p3 = dsn.msg.part(parts[2]).expect("part 3");
        assert_eq!(p3.content_transfer_encoding(), Some("8bit"));
    }

    #[test]
    fn crlf_and_8bit_original_full() {
        let recipients = [failed("bob@example.org")];
        let original = crlf_8bit_original();
        let mut inp = input(&recipients);
        inp.return_full = true;
        let out = build(&inp, &original);
        let dsn = check(&out);
        assert_eq!(dsn.returned_ctype, "message/rfc822");
        assert!(!out.contains(&b'\r'));
        let lf: Vec<u8> = String::from_utf8_lossy(&original)
            .replace("\r\n", "\n")
            .into_bytes();
        // Lossy conversion mangled the Latin-1 byte; compare the UTF-8 part.
        let utf8_part = &lf[..lf.len() - "Latin-1: caf\u{fffd}\n".len()];
        assert!(find_from(&out, utf8_part, 0).is_some());
        assert!(find_from(&out, b"Latin-1: caf\xe9\n", 0).is_some());
        let parts = dsn.msg.root_part().sub_parts().expect("multipart");
        let inner = dsn
            .msg
            .part(parts[2])
            .and_then(|p| p.message())
            .expect("nested");
        assert_eq!(inner.message_id(), Some("crlf-8bit@example.net"));
    }

    /// A reader that hands out one byte per read, so CRLF pairs straddle
    /// chunk boundaries.
    struct Trickle<'b>(&'b [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn crlf_split_across_reads() {
        let recipients = [failed("bob@example.org")];
        let original = b"Subject: a\r\nMessage-ID: <t@x>\r\n\r\nbody\rline\r\nend\r".to_vec();
        for full in [false, true] {
            let mut inp = input(&recipients);
            inp.return_full = full;
            let mut out = Vec::new();
            let n = write_dsn(&inp, Trickle(&original), original.len() as u64, &mut out)
                .expect("write_dsn");
            assert_eq!(n, out.len() as u64);
            let dsn = check(&out);
            let (subject, message_id, raw) = returned(&dsn);
            assert_eq!(subject.as_deref(), Some("a"));
            assert_eq!(message_id.as_deref(), Some("t@x"));
            if full {
                // Lone CRs are kept, CRLF becomes LF, a final newline is added.
                assert!(find_from(&out, b"\n\nbody\rline\nend\r\n\n--", 0).is_some());
            } else {
                assert_eq!(raw, b"Subject: a\nMessage-ID: <t@x>\n");
            }
        }
    }

    #[test]
    fn original_without_separator() {
        let recipients = [failed("bob@example.org")];
        let original = b"Subject: No body here\nMessage-ID: <nosep@example.net>\nX-Last: 1";
        for full in [false, true] {
            let mut inp = input(&recipients);
            inp.return_full = full;
            let out = build(&inp, original);
            let dsn = check(&out);
            let (subject, message_id, _) = returned(&dsn);
            assert_eq!(subject.as_deref(), Some("No body here"));
            assert_eq!(message_id.as_deref(), Some("nosep@example.net"));
            // The last line is kept and terminated before the closing boundary.
            assert!(find_from(&out, b"\nX-Last: 1\n\n--=_", 0).is_some());
        }
        // An empty original gives an empty third part.
        let out = build(&input(&recipients), b"");
        let dsn = check(&out);
        assert_eq!(dsn.returned_ctype, "text/rfc822-headers");
    }

    #[test]
    fn non_ascii_reason_and_long_diagnostic() {
        let long_word = "x".repeat(2000);
        let filler = "lorem ipsum dolor sit amet ".repeat(120);
        let mut r = failed("bob@example.org");
        r.reason = "Empfänger unbekannt — ✓\r\nsecond line\tend".to_string();
        r.diagnostic = Some(format!("550 5.1.1 Mailbox für {filler}{long_word} gone"));
        r.remote_mta = Some("dns; smtp.example.com".to_string());
        let recipients = [r];
        let out = build(&input(&recipients), ORIGINAL);
        let dsn = check(&out);
        let note = flat(&dsn.notification);
        assert!(note.contains(
            "<bob@example.org>: Empf%C3%A4nger unbekannt %E2%80%94 %E2%9C%93 second line end"
        ));
        let b = &dsn.recipients[0];
        assert_eq!(field(b, "Remote-MTA"), Some("dns; smtp.example.com"));
        let diag = field(b, "Diagnostic-Code").expect("diagnostic");
        assert!(diag.starts_with("smtp; 550 5.1.1 Mailbox f%C3%BCr lorem ipsum"));
        assert!(diag.ends_with(" gone"));
        // Folded at whitespace; only the 2000-octet word had to be split.
        assert!(!diag.contains(&long_word));
        assert!(diag.replace(' ', "").contains(&long_word));
        let status_lines = std::str::from_utf8(&out).expect("ascii");
        let diag_lines: Vec<&str> = status_lines
            .lines()
            .skip_while(|l| !l.starts_with("Diagnostic-Code:"))
            .take_while(|l| l.starts_with("Diagnostic-Code:") || l.starts_with(' '))
            .collect();
        assert!(diag_lines.len() > 10);
        assert!(diag_lines.iter().all(|l| l.len() <= 998));
    }

    #[test]
    fn huge_header_section_is_cut() {
        let recipients = [failed("bob@example.org")];
        let mut original = b"Subject: big\nMessage-ID: <big@example.net>\n".to_vec();
        let line = format!("X-Filler: {}\n", "y".repeat(1000));
        while original.len() < HEADER_SECTION_CAP + 10_000 {
            original.extend_from_slice(line.as_bytes());
        }
        original.extend_from_slice(b"\nbody\n");
        let out = build(&input(&recipients), &original);
        let dsn = check(&out);
        let (subject, message_id, raw) = returned(&dsn);
        assert_eq!(subject.as_deref(), Some("big"));
        assert_eq!(message_id.as_deref(), Some("big@example.net"));
        assert!(raw.len() <= HEADER_SECTION_CAP);
        assert!(raw.ends_with(b"y\n"), "cut at a line boundary");
        assert!(flat(&dsn.notification).contains("the returned headers were cut there"));
    }

    #[test]
    fn non_ascii_addresses_and_header_injection() {
        let mut r = failed("bøb@exämple.org");
        r.original_recipient = Some("rfc822;root".to_string());
        let recipients = [r];
        let mut inp = input(&recipients);
        inp.original_sender = "jürgen@example.net";
        inp.reporting_mta = "web1.example.com\r\nBcc: evil@example.com";
        inp.queue_id = "Q1\nX-Evil: 1";
        inp.envid = Some("id with space+é");
        let mut out = Vec::new();
        let n = write_dsn(&inp, ORIGINAL, ORIGINAL.len() as u64, &mut out).expect("write");
        assert_eq!(n, out.len() as u64);
        let text = std::str::from_utf8(&out).expect("utf-8");
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("Bcc:") || l.starts_with("X-Evil"))
        );
        let msg = MessageParser::default().parse(&out).expect("parse");
        let parts = msg.root_part().sub_parts().expect("multipart");
        assert_eq!(parts.len(), 3);
        let p2 = msg.part(parts[1]).expect("part 2");
        let (per_message, blocks) =
            parse_status(std::str::from_utf8(p2.contents()).expect("status"));
        assert_eq!(
            field(&per_message, "Reporting-MTA"),
            Some("dns; web1.example.com Bcc: evil@example.com")
        );
        assert_eq!(
            field(&per_message, "X-Postern-Queue-ID"),
            Some("Q1 X-Evil: 1")
        );
        assert_eq!(
            field(&per_message, "X-Postern-Sender"),
            Some("utf-8;j\\x{FC}rgen@example.net")
        );
        assert_eq!(
            field(&per_message, "Original-Envelope-Id"),
            Some("id+20with+20space+2B+C3+A9")
        );
        assert_eq!(
            field(&blocks[0], "Final-Recipient"),
            Some("utf-8;b\\x{F8}b@ex\\x{E4}mple.org")
        );
        assert_eq!(field(&blocks[0], "Original-Recipient"), Some("rfc822;root"));
        assert!(text.contains("\nTo: =?utf-8?q?j=C3=BCrgen=40example=2Enet?= :;\n"));
        let to = msg.to().and_then(|a| a.as_group()).expect("group");
        assert_eq!(to[0].name.as_deref(), Some("jürgen@example.net"));
        // Everything before part 3's body is 7-bit.
        let third = nth_find(&out, b"Content-Description: Undelivered", 1).expect("part 3");
        assert!(out[..third].is_ascii());
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let recipients = [failed("bob@example.org")];
        for sender in ["", "<>", "  "] {
            let mut inp = input(&recipients);
            inp.original_sender = sender;
            let mut out = Vec::new();
            let err = write_dsn(&inp, ORIGINAL, 0, &mut out).expect_err("null sender");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(out.is_empty());
        }
        let inp = input(&[]);
        let mut out = Vec::new();
        let err = write_dsn(&inp, ORIGINAL, 0, &mut out).expect_err("no recipients");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }

    #[test]
    fn status_is_derived_when_missing() {
        let mut r = failed("bob@example.org");
        r.status = String::new();
        r.diagnostic = Some("451 try again later".to_string());
        assert_eq!(status_of(&r), "4.0.0");
        r.diagnostic = Some("554 no".to_string());
        assert_eq!(status_of(&r), "5.0.0");
        r.status = "5.7".to_string();
        r.diagnostic = None;
        assert_eq!(status_of(&r), "5.0.0");
        r.action = Action::Delayed;
        r.status = "bogus".to_string();
        assert_eq!(status_of(&r), "4.0.0");
        r.status = " 4.7.26 ".to_string();
        assert_eq!(status_of(&r), "4.7.26");
        assert_eq!(
            diagnostic_value("connection refused".to_string()),
            "X-Postern; connection refused"
        );
        assert_eq!(diagnostic_value("x-unix; 127".to_string()), "x-unix; 127");
        assert_eq!(diagnostic_value("421".to_string()), "smtp; 421");
    }

    #[test]
    fn subject_choice() {
        assert_eq!(subject(&[]), "Undelivered Mail Returned to Sender");
        assert_eq!(
            subject(&[delayed("a@b"), delayed("c@d")]),
            "Delayed Mail (still being retried)"
        );
        assert_eq!(
            subject(&[delayed("a@b"), failed("c@d")]),
            "Undelivered Mail Returned to Sender"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(at(1_709_647_389)),
            "Tue, 05 Mar 2024 14:03:09 +0000"
        );
        assert_eq!(
            rfc5322_date(at(951_782_400 + 3723)),
            "Tue, 29 Feb 2000 01:02:03 +0000"
        );
        assert_eq!(
            rfc5322_date(UNIX_EPOCH - Duration::from_secs(86_401)),
            "Tue, 30 Dec 1969 23:59:59 +0000"
        );
        assert_eq!(
            rfc5322_date(UNIX_EPOCH - Duration::from_millis(500)),
            "Wed, 31 Dec 1969 23:59:59 +0000"
        );
    }

    #[test]
    fn boundaries_and_message_ids_are_unique() {
        let recipients = [failed("bob@example.org")];
        let inp = input(&recipients);
        let a = build(&inp, ORIGINAL);
        let b = build(&inp, ORIGINAL);
        let (ma, mb) = (check(&a), check(&b));
        let ba = ma.msg.content_type().and_then(|c| c.attribute("boundary"));
        let bb = mb.msg.content_type().and_then(|c| c.attribute("boundary"));
        assert!(ba.is_some() && ba != bb);
        assert_ne!(ma.msg.message_id(), mb.msg.message_id());
    }
}
