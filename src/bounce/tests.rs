//! End-to-end checks of [`write_dsn`](super::write_dsn): each DSN is
//! parsed back with mail-parser and checked against RFC 3464/6522.

use super::fold::TEXT_WIDTH;
use super::report::{diagnostic_value, status_of};
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
    let (per_message, blocks) = parse_status(std::str::from_utf8(p2.contents()).expect("status"));
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
