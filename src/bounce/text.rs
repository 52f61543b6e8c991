//! Values taken from the inputs made safe for a 7-bit, single-line header
//! or text: escaping, angle brackets, Message-ID and boundary tokens, and
//! the From and To values of the DSN.

use super::DsnInput;

/// Makes text single-line 7-bit: CR/LF runs and TAB become one space, other
/// controls and non-ASCII bytes become `%HH`; leading/trailing whitespace is
/// trimmed.
pub(super) fn clean_text(s: &str) -> String {
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
pub(super) fn strip_angles(s: &str) -> &str {
    s.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(s)
}

/// Characters allowed in a Message-ID's left part and the boundary.
pub(super) fn token_chars(s: &str) -> String {
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
pub(super) fn domain_chars(s: &str) -> String {
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
pub(super) fn postmaster_addr(input: &DsnInput<'_>) -> String {
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
pub(super) fn to_value(sender: &str) -> String {
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
