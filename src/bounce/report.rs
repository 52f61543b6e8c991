//! Part 2, the machine-readable report (`message/delivery-status`,
//! RFC 3464): per-message fields, then one block per recipient, with the
//! status codes, diagnostic types and address types that RFC 3464, RFC 3463
//! and RFC 6533 define.

use super::fold::push_field;
use super::text::{clean_text, strip_angles};
use super::{Action, DsnInput, RecipientReport};
use crate::clock::rfc5322;

/// The `message/delivery-status` body: per-message fields, then one block
/// per recipient, each followed by an empty line.
pub(super) fn push_delivery_status(
    buf: &mut String,
    input: &DsnInput<'_>,
    host: &str,
    sender: &str,
) {
    push_field(buf, "Reporting-MTA", &format!("dns; {host}"));
    push_field(buf, "X-Postern-Queue-ID", &clean_text(input.queue_id));
    push_field(buf, "X-Postern-Sender", &address_value(sender));
    if let Some(envid) = input.envid {
        push_field(buf, "Original-Envelope-Id", &xtext(envid));
    }
    push_field(buf, "Arrival-Date", &rfc5322(input.arrival));
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
            push_field(buf, "Last-Attempt-Date", &rfc5322(t));
        }
        if r.action == Action::Delayed
            && let Some(t) = r.will_retry_until
        {
            push_field(buf, "Will-Retry-Until", &rfc5322(t));
        }
    }
}

/// The recipient's status if it is a well-formed enhanced status code,
/// otherwise `X.0.0` with X from the diagnostic's reply code or the action.
pub(super) fn status_of(r: &RecipientReport) -> String {
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
pub(super) fn is_enhanced_status(s: &str) -> bool {
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
pub(super) fn diagnostic_value(diag: String) -> String {
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
pub(super) fn has_type_prefix(s: &str) -> bool {
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
pub(super) fn has_address_type(s: &str) -> bool {
    s.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("rfc822;"))
        || s.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("utf-8;"))
}

/// The address without an `rfc822;`/`utf-8;` type and angle brackets.
pub(super) fn strip_address_type(s: &str) -> &str {
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
pub(super) fn address_value(addr: &str) -> String {
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
pub(super) fn xtext(s: &str) -> String {
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
