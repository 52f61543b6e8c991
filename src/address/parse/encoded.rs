//! RFC 2047 encoded words in display names: `B` through the base64 crate,
//! `Q` through mail-parser's hex pair decoder, charsets through
//! mail-parser's tables; control characters in the result become U+FFFD.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode_char;

/// Replace control characters (which have no place in a display name and
/// could only come from encoded words) with U+FFFD; HTAB becomes a space.
pub(super) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Decode every whitespace-separated word of `s` that is a sequence of RFC
/// 2047 encoded words; whitespace between two decoded words is dropped.
pub(super) fn decode_mixed(s: &str) -> String {
    if !s.contains("=?") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut prev_encoded = false;
    let mut rest = s;
    while !rest.is_empty() {
        let word_start = rest.find(|c| c != ' ' && c != '\t').unwrap_or(rest.len());
        let Some((ws, tail)) = rest.split_at_checked(word_start) else {
            break;
        };
        let word_end = tail.find([' ', '\t']).unwrap_or(tail.len());
        let Some((word, after)) = tail.split_at_checked(word_end) else {
            break;
        };
        match decode_encoded_words(word) {
            Some(decoded) => {
                if !prev_encoded {
                    out.push_str(ws);
                }
                out.push_str(&decoded);
                prev_encoded = true;
            }
            None => {
                out.push_str(ws);
                out.push_str(word);
                prev_encoded = false;
            }
        }
        rest = after;
    }
    out
}

/// Decode `word` when it is one or more concatenated encoded words
/// `=?charset?enc?text?=`; `None` when it is not (or is malformed).
pub(super) fn decode_encoded_words(word: &str) -> Option<String> {
    if word.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut rest = word;
    while !rest.is_empty() {
        let body = rest.strip_prefix("=?")?;
        let (charset, after) = body.split_once('?')?;
        let (encoding, after) = after.split_once('?')?;
        let (text, after) = after.split_once("?=")?;
        if charset.is_empty() || text.contains('?') {
            return None;
        }
        let bytes = match encoding {
            "B" | "b" => base64_decode(text)?,
            "Q" | "q" => q_decode(text),
            _ => return None,
        };
        match decode_charset(charset, &bytes) {
            Some(s) => out.push_str(&s),
            None => {
                // Unknown charset: keep the encoded word as written.
                let len = rest.len() - after.len();
                out.push_str(rest.get(..len).unwrap_or_default());
            }
        }
        rest = after;
    }
    Some(out)
}

pub(super) fn decode_charset(charset: &str, bytes: &[u8]) -> Option<String> {
    // RFC 2231 language suffix: `utf-8*en`.
    let charset = charset
        .split('*')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match charset.as_str() {
        "" => None,
        "utf-8" | "utf8" | "us-ascii" | "ascii" => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        cs => charset_decoder(cs.as_bytes()).map(|decode| decode(bytes)),
    }
}

/// The `B` encoding of RFC 2047, leniently: padding optional (any run of
/// `=` at the end), bits left over after the last whole byte dropped; any
/// other character, or data after a `=`, makes the word malformed. The
/// `base64` crate decodes; this only trims what it would refuse.
pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    pub(super) const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let data = text.trim_end_matches('=').as_bytes();
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    if !data.iter().all(is_b64) {
        return None;
    }
    // A lone sixth of a group (4n+1 characters) carries no whole byte.
    let whole = if data.len() % 4 == 1 {
        &data[..data.len() - 1]
    } else {
        data
    };
    LENIENT.decode(whole).ok()
}

/// The `Q` encoding of RFC 2047: `_` is a space, `=HH` a byte (either case,
/// mail-parser's hex pair decoder); a malformed `=` stays as written.
pub(super) fn q_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'_' => {
                out.push(b' ');
                i += 1;
            }
            b'=' => {
                let pair = b.get(i + 1).zip(b.get(i + 2));
                if let Some(v) = pair.and_then(|(&h, &l)| quoted_printable_decode_char(h, l)) {
                    out.push(v);
                    i += 3;
                } else {
                    out.push(b'=');
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}
