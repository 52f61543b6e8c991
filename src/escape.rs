//! Escaping text from outside (relay replies, header fields, senders,
//! recipients, anything a user or a relay chose) before it reaches a
//! terminal or a log line: the one function every text renderer (`mailq`,
//! `postern queue show`, `postern status`, `postern check`) and the log
//! writer use, so that bytes such as `ESC ] 2 ; TITLE BEL ESC [ 2 J` can no
//! longer rewrite an admin's terminal or forge a log line.
//!
//! What is escaped, visibly and reversibly enough to read:
//! - C0 controls (U+0000–U+001F) except TAB, and DEL (U+007F): `\x1b`,
//!   `\x0d`, `\x00`, `\x7f`;
//! - C1 controls (U+0080–U+009F), which some terminals take as CSI, OSC…:
//!   `\u{9b}`;
//! - the bidirectional controls: overrides and isolates (U+202A–U+202E,
//!   U+2066–U+2069) and the invisible marks (U+061C, U+200E, U+200F),
//!   which reorder what the reader sees: `\u{202e}`;
//! - bytes that are not UTF-8 ([`bytes`]): `\xff`.
//!
//! [`field`] escapes a line feed too (one field, one line); [`text`] keeps
//! line feeds, for a rendered multi-line report whose lines the renderer
//! made. JSON output needs none of this: serde_json escapes every control
//! character.

use std::borrow::Cow;
use std::fmt::Write;

fn needs(c: char, keep_lf: bool) -> bool {
    match c {
        '\t' => false,
        '\n' => !keep_lf,
        c => {
            (c as u32) < 0x20
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(
                    c,
                    '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                )
        }
    }
}

fn escape(s: &str, keep_lf: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs(c, keep_lf)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs(c, keep_lf) {
            let n = c as u32;
            if n < 0x80 {
                let _ = write!(out, "\\x{n:02x}");
            } else {
                let _ = write!(out, "\\u{{{n:x}}}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One field from outside, for one line: every control but TAB escaped
/// (line feeds included).
pub fn field(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// A rendered text report: every control but TAB and LF escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Bytes from outside as text: invalid UTF-8 bytes become `\xNN`, and
/// controls are escaped as by [`text`] (line feeds kept).
pub fn bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(&text(chunk.valid()));
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_become_visible() {
        assert_eq!(field("a@b.example"), "a@b.example");
        assert_eq!(field("é@b"), "é@b");
        assert_eq!(
            field("x\u{1b}[2J\u{7}\u{9b}\u{202e}y\u{2066}"),
            "x\\x1b[2J\\x07\\u{9b}\\u{202e}y\\u{2066}"
        );
        assert_eq!(
            field("a\u{200e}b\u{200f}\u{61c}"),
            "a\\u{200e}b\\u{200f}\\u{61c}"
        );
    }

    #[test]
    fn controls_become_visible() {
        assert_eq!(field("a\x1b]2;T\x07\x1b[2J"), "a\\x1b]2;T\\x07\\x1b[2J");
        assert_eq!(field("a\r\n\0b\tc\x7f"), "a\\x0d\\x0a\\x00b\tc\\x7f");
        assert_eq!(field("x\u{9b}31m\u{85}"), "x\\u{9b}31m\\u{85}");
        assert_eq!(text("l1\nl2\r\n"), "l1\nl2\\x0d\n");
        assert_eq!(field("plain é ✓"), "plain é ✓");
        assert!(matches!(field("plain"), Cow::Borrowed(_)));
        assert_eq!(bytes(b"a\xff\x1bb\xc3\xa9\n"), "a\\xff\\x1bbé\n");
    }

    #[test]
    fn nothing_raw_survives() {
        for n in 0u32..0x110000 {
            let Some(c) = char::from_u32(n) else { continue };
            let s = format!("<{c}>");
            let e = field(&s);
            assert!(
                !e.chars()
                    .any(|c| c != '\t' && (c.is_control() || ('\u{80}'..='\u{9f}').contains(&c))),
                "{n:x}"
            );
        }
    }
}
