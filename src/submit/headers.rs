//! The header section of a submitted message: splitting it into fields,
//! `-t` recipient extraction, and the fix-ups a valid message needs.
//!
//! End of headers is defined here, not by a library: the first empty line,
//! or the first line that is neither a field (`name:`, printable ASCII name,
//! optional blanks before the colon) nor a continuation (leading blank) of
//! one. Such a line starts the body and a separating empty line is added, as
//! Postfix's cleanup does. Field names match exactly (case-insensitive), so
//! `B cc:` is not a Bcc field.

use crate::address::parse::{MAX_ADDR_LEN, Mailbox, parse_address_list};
use crate::error::{Error, Kind, Result};

/// One header field, possibly folded over several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written (without blanks and colon).
    pub name: String,
    /// The whole field: all its lines joined with `\n`, without the final
    /// line break.
    pub raw: Vec<u8>,
}

impl Field {
    /// The value: everything after the first colon, folding kept.
    pub fn value(&self) -> &[u8] {
        match self.raw.iter().position(|&b| b == b':') {
            Some(i) => &self.raw[i + 1..],
            None => &[],
        }
    }

    /// True if the name equals `n` (ASCII case-insensitive).
    pub fn is(&self, n: &str) -> bool {
        self.name.eq_ignore_ascii_case(n)
    }
}

/// If `line` starts a header field, its name.
pub fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name_part = &line[..colon];
    let name_end = name_part
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map(|i| i + 1)
        .unwrap_or(0);
    let name = &name_part[..name_end];
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b) && b != b':') {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// The normal form of a field's first line: `Name: value`. The only
/// obsolete field-name form [`field_name`] accepts is white space between
/// the name and the colon (RFC 5322 4.5.3, `obs-optional`); a generator
/// must not emit it, so it is removed (Postfix's cleanup does the same).
/// Anything else is returned unchanged.
pub fn normal_form(mut raw: Vec<u8>) -> Vec<u8> {
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return raw;
    };
    let name_end = raw[..colon]
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map(|i| i + 1)
        .unwrap_or(0);
    if name_end > 0 && name_end < colon {
        raw.drain(name_end..colon);
    }
    raw
}

/// True if `line` continues the previous field.
pub fn is_continuation(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ') | Some(b'\t'))
}

/// True for an mbox `From ` separator line.
pub fn is_mbox_from(line: &[u8]) -> bool {
    line.starts_with(b"From ")
}

/// Recipients named by the header fields for `-t`: To, Cc and Bcc, or — when
/// any Resent- field is present — Resent-To, Resent-Cc and Resent-Bcc.
/// A malformed address list is an error (65) naming the field.
pub fn extract_recipients(fields: &[Field]) -> Result<Vec<Mailbox>> {
    let resent = fields
        .iter()
        .any(|f| f.name.len() > 7 && f.name[..7].eq_ignore_ascii_case("resent-"));
    let names: &[&str] = if resent {
        &["Resent-To", "Resent-Cc", "Resent-Bcc"]
    } else {
        &["To", "Cc", "Bcc"]
    };
    let mut out = Vec::new();
    for f in fields.iter().filter(|f| names.iter().any(|n| f.is(n))) {
        let list = parse_address_list(f.value()).map_err(|e| {
            Error::new(
                Kind::DataErr,
                format!("malformed address in the {} header: {e}", f.name),
            )
        })?;
        out.extend(list);
    }
    Ok(out)
}

/// Fields never passed on: Bcc and Resent-Bcc (they would reveal the blind
/// copies), Return-Path (set by the final delivery agent) and Content-Length
/// (meaningless in SMTP, harmful in mbox).
pub fn is_dropped(f: &Field) -> bool {
    ["Bcc", "Resent-Bcc", "Return-Path", "Content-Length"]
        .iter()
        .any(|n| f.is(n))
}

/// A display name as a phrase: an atom run when safe, a quoted string when
/// it has specials, RFC 2047 encoded words (UTF-8, B) when it is not ASCII.
pub fn encode_phrase(name: &str) -> String {
    if name.is_ascii() {
        let plain = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c));
        if plain && !name.trim().is_empty() && name.trim() == name {
            return name.to_string();
        }
        let mut s = String::from("\"");
        for c in name.chars().filter(|c| !c.is_control()) {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        return s;
    }
    // Encoded words of at most 75 characters: =?UTF-8?B?<= 60 base64 chars?=
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join(" ")
}

/// Standard base64 with padding (the `base64` crate's standard engine).
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The Message-ID value (with angle brackets) of the first Message-ID field.
pub fn message_id(fields: &[Field]) -> Option<String> {
    let f = fields.iter().find(|f| f.is("Message-ID"))?;
    let v = String::from_utf8_lossy(f.value());
    let v = v.split_whitespace().collect::<Vec<_>>().join("");
    if v.is_empty() || v.len() > 998 {
        return None;
    }
    Some(v)
}

/// Qualify unqualified addresses (`root`) in an address field with
/// `@domain` (masquerading). Returns the new raw field, or None when there is
/// nothing to change or the field does not parse (it is then left alone).
pub fn qualify_field(f: &Field, domain: &str) -> Option<Vec<u8>> {
    let colon = f.raw.iter().position(|&b| b == b':')?;
    let value = &f.raw[colon + 1..];
    let list = parse_address_list(value).ok()?;
    let mut spans: Vec<std::ops::Range<usize>> = list
        .iter()
        .filter(|m| m.unqualified && !m.addr.is_empty())
        // An address that `@domain` would make longer than the parser takes
        // stays as it is, so the field still parses after masquerading.
        .filter(|m| m.addr.len() + 1 + domain.len() <= MAX_ADDR_LEN)
        .map(|m| m.span.clone())
        .filter(|s| s.end <= value.len() && s.start < s.end)
        .collect();
    if spans.is_empty() {
        return None;
    }
    spans.sort_by_key(|s| s.start);
    let mut out = f.raw[..=colon].to_vec();
    let mut pos = 0;
    for s in spans {
        if s.start < pos {
            continue;
        }
        out.extend_from_slice(&value[pos..s.end]);
        out.push(b'@');
        out.extend_from_slice(domain.as_bytes());
        pos = s.end;
    }
    out.extend_from_slice(&value[pos..]);
    Some(out)
}

/// The first mailbox of a From field: (raw display name, address).
pub fn from_mailbox(f: &Field) -> Option<(Option<String>, String)> {
    let list = parse_address_list(f.value()).ok()?;
    let m = list.into_iter().next()?;
    Some((m.display_name, m.addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> Field {
        Field {
            name: field_name(s.as_bytes()).unwrap().to_string(),
            raw: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn obsolete_blanks_before_the_colon_are_removed() {
        assert_eq!(normal_form(b"Foo : bar".to_vec()), b"Foo: bar");
        assert_eq!(normal_form(b"Foo\t \t:bar".to_vec()), b"Foo:bar");
        assert_eq!(normal_form(b"Foo: a : b".to_vec()), b"Foo: a : b");
        assert_eq!(normal_form(b"Foo :x\n y : z".to_vec()), b"Foo:x\n y : z");
        assert_eq!(normal_form(b"Subject: ok".to_vec()), b"Subject: ok");
    }

    #[test]
    fn an_address_too_long_to_qualify_is_left_alone() {
        let long = format!("To: \"{}\", root", "x".repeat(990));
        let q = qualify_field(&field(&long), "example.com").unwrap();
        let q = String::from_utf8(q).unwrap();
        assert!(q.ends_with(", root@example.com"), "{q}");
        assert!(q.contains(&format!("\"{}\",", "x".repeat(990))), "{q}");
        assert!(parse_address_list(field(&q).value()).is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(field_name(b"Subject: x"), Some("Subject"));
        assert_eq!(field_name(b"Subject : x"), Some("Subject"));
        assert_eq!(field_name(b"X-Y:"), Some("X-Y"));
        assert_eq!(field_name(b"no colon here"), None);
        assert_eq!(field_name(b"B cc: x"), None);
        assert_eq!(field_name(b": x"), None);
        assert_eq!(field_name(b" folded: x"), None);
    }

    #[test]
    fn extraction_prefers_resent() {
        let fields = vec![
            field("To: a@x"),
            field("Cc: b@x,\n c@x"),
            field("Bcc: hidden@x"),
        ];
        let r: Vec<String> = extract_recipients(&fields)
            .unwrap()
            .into_iter()
            .map(|m| m.addr)
            .collect();
        assert_eq!(r, vec!["a@x", "b@x", "c@x", "hidden@x"]);
        let mut with_resent = fields.clone();
        with_resent.push(field("Resent-To: r@x"));
        let r: Vec<String> = extract_recipients(&with_resent)
            .unwrap()
            .into_iter()
            .map(|m| m.addr)
            .collect();
        assert_eq!(r, vec!["r@x"]);
        let bad = vec![field("To: a@@b")];
        let e = extract_recipients(&bad).unwrap_err();
        assert_eq!(e.kind(), Kind::DataErr);
        assert!(e.message().contains("To header"));
    }

    #[test]
    fn phrases() {
        assert_eq!(encode_phrase("Cron Daemon"), "Cron Daemon");
        assert_eq!(encode_phrase("Doe, John"), "\"Doe, John\"");
        assert_eq!(encode_phrase("a\"b"), "\"a\\\"b\"");
        assert_eq!(encode_phrase("Jörg"), "=?UTF-8?B?SsO2cmc=?=");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
