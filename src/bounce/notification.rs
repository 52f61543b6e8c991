//! Part 1, the human-readable explanation (Postfix-like): what happened,
//! what is attached, and one wrapped line per recipient, failures first,
//! then the delayed ones.

use super::fold::{TEXT_WIDTH, push_paragraph, wrap};
use super::original::{HEADER_SECTION_CAP, Returned};
use super::report::{status_of, strip_address_type};
use super::text::{clean_text, strip_angles};
use super::{Action, DsnInput, RecipientReport};
use crate::clock::rfc5322;

/// The human-readable first part.
pub(super) fn push_notification(
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
        Some(t) => format!("until {}", rfc5322(t)),
        None => "for some time".to_string(),
    };

    let attached = attached_text(returned, input.max_full_size, original_len);
    push_opening(
        buf,
        host,
        failed.is_empty(),
        &retry_text,
        &attached,
        truncated,
    );
    push_recipients(buf, &failed, &delayed, &retry_text);
}

/// What the third part holds, in words.
fn attached_text(returned: Returned, max_full_size: u64, original_len: u64) -> String {
    match returned {
        Returned::Full => "It's attached below.".to_string(),
        Returned::Headers => "Its headers are attached below.".to_string(),
        Returned::HeadersTooLarge => format!(
            "It was too large to be returned in full ({original_len} bytes, the limit is {} \
             bytes), so only its headers are attached below.",
            max_full_size
        ),
    }
}

/// The paragraphs before the recipient lines: who writes, what happened
/// (a warning only when nothing failed), what is attached, where to ask.
fn push_opening(
    buf: &mut String,
    host: &str,
    warning_only: bool,
    retry_text: &str,
    attached: &str,
    truncated: bool,
) {
    push_paragraph(buf, &format!("This is the mail system at host {host}."));
    buf.push('\n');
    if warning_only {
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
}

/// One wrapped line per recipient: the failed ones (or, when none failed,
/// the delayed ones), then the delayed ones under their own warning.
fn push_recipients(
    buf: &mut String,
    failed: &[&RecipientReport],
    delayed: &[&RecipientReport],
    retry_text: &str,
) {
    let first = if failed.is_empty() { delayed } else { failed };
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
        for r in delayed {
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
