//! RFC 5322 address-list parsing.
//!
//! **Owns**: the syntax of address header field values (`To`, `Cc`, `Bcc`,
//! `Resent-To`, ... as read by `sendmail -t`) and of single addresses given
//! on the command line or in SMTP paths. Raw header bytes become
//! [`Mailbox`]es carrying the envelope address, the decoded display name and
//! the byte span of the addr-spec as written, so that a later stage can
//! qualify unqualified local names in place.
//!
//! **Trusts**: nothing about the input; any byte sequence may arrive. The
//! caller only promises that `raw` is the value of one header field (the
//! part after `Name:`), possibly folded. Decoding RFC 2047 encoded words
//! is delegated: `B` to the base64 crate, `Q`'s hex pairs to mail-parser's
//! decoder, charset conversion to mail-parser's charset tables.
//!
//! **Fails**: with a [`ParseError`] (message plus byte offset into the
//! input) on anything ambiguous or broken: invalid UTF-8, control
//! characters, unterminated quoted strings, comments, domain literals or
//! angle brackets, `a@@b`, `@b`, `a@`, empty domain labels, a `;` or `:`
//! outside a group, nested groups, words without an address (`john doe`),
//! addresses longer than 998 octets. It never panics and runs in linear time:
//! a flat lexer followed by a token walk, no recursion, no backtracking.
//!
//! Decisions on sloppy or ambiguous input:
//! - Empty list elements and a trailing comma are ignored (`a@x,,b@y,`).
//! - CFWS is allowed around `@` and `.` (`a . b @ c`); it is removed from
//!   [`Mailbox::addr`] but covered by [`Mailbox::span`].
//! - Words in a local part must be separated by dots: the obsolete
//!   `john doe@x` form is rejected; `john."doe"@x` is accepted.
//! - A quoted local part that needs no quotes is unquoted (`"john"@x` gives
//!   `john@x`); otherwise it is kept exactly as written (quotes and
//!   backslashes included, folding removed).
//! - A group missing its final `;` at the end of the value is accepted.
//! - `host!user` (UUCP bang path) is just an atom: an unqualified local name.
//! - `a@b <c@d>` is read as display name `a@b` and address `c@d`.
//! - Domains are dot-atoms (no TLD needed, no trailing dot) or domain
//!   literals (`[1.2.3.4]`, whitespace inside removed).
//! - `<>` is an error here; callers special-case the null sender.
//! - Display names: RFC 2047 words are decoded in phrases, in comments and,
//!   liberally, inside quoted strings; an unknown charset keeps the encoded
//!   word as written; control characters in decoded text become U+FFFD.
//!   Without a phrase, the mailbox's comments become the display name.
//! - A lone CR, or a line break not followed by whitespace (except trailing
//!   line breaks at the very end of the value), is an error.
//!
//! Files: `lexer` (bytes to tokens), `walk` (tokens to mailboxes),
//! `encoded` (RFC 2047 words in display names).

mod encoded;
mod lexer;
mod walk;

use lexer::Kind;
use walk::{Element, Parser};

use std::fmt;
use std::ops::Range;

/// Longest envelope address accepted (the RFC 5322 line-length limit).
pub const MAX_ADDR_LEN: usize = 998;

/// One mailbox found in an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, RFC 2047 decoded (B and Q encodings; UTF-8, US-ASCII
    /// and the charsets mail-parser knows, such as ISO-8859-1..15 and
    /// windows-1252; an unknown charset keeps the encoded word as written),
    /// quotes removed, unfolded; `None` when absent. For `addr (Comment
    /// Name)` with no phrase, the comment text becomes the display name.
    pub display_name: Option<String>,
    /// The addr-spec for the SMTP envelope: `local@domain`, or just `local`
    /// when unqualified (e.g. `root`). Quoted local parts keep their quotes
    /// exactly as written when quoting is needed (`"john doe"@example.com`);
    /// a needlessly quoted local part (`"john"@x`) is normalised (`john@x`).
    /// Source routes (`<@r1,@r2:user@x>`) are stripped. CFWS inside the
    /// addr-spec is removed. Non-ASCII UTF-8 is allowed (SMTPUTF8).
    pub addr: String,
    /// Byte range in the input covering the addr-spec as written (for
    /// `Name <a@b>` the range of `a@b` inside the angle brackets; for a bare
    /// `a@b` the range of `a@b`), so a caller can splice a replacement.
    pub span: Range<usize>,
    /// True when the address has no domain part (an unqualified local name);
    /// then `addr` has no `@` outside a quoted string. Decided by structure,
    /// so a lone quoted `"a@b"` is still unqualified.
    pub unqualified: bool,
}

/// A syntax error, with the byte offset in the input where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub offset: usize,
}

impl ParseError {
    fn new(message: impl Into<String>, offset: usize) -> Self {
        ParseError {
            message: message.into(),
            offset,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for ParseError {}

/// Parse the raw value of an address header (everything after `Name:`).
///
/// Groups are flattened: their members are returned and group names are
/// dropped, so `undisclosed-recipients:;` yields nothing. An empty or
/// all-whitespace value yields `Ok(vec![])`.
pub fn parse_address_list(raw: &[u8]) -> Result<Vec<Mailbox>, ParseError> {
    let src =
        std::str::from_utf8(raw).map_err(|e| ParseError::new("invalid UTF-8", e.valid_up_to()))?;
    let mut parser = Parser::new(src)?;
    parser.parse_list()
}

/// Parse one address given on a command line or in an SMTP path, and return
/// the envelope address (as in [`Mailbox::addr`]).
///
/// Accepts `user@dom`, `user`, `<user@dom>`, `Name <user@dom>` and
/// `"quoted local"@dom`; rejects empty input, control characters (CR, LF,
/// NUL, TAB, ...), groups and more than one address. `<>` is rejected too.
pub fn parse_single_address(s: &str) -> Result<String, ParseError> {
    if let Some(i) = s.bytes().position(|b| b < 0x20 || b == 0x7f) {
        let what = match s.as_bytes().get(i) {
            Some(0) => "NUL",
            Some(b'\r') => "CR",
            Some(b'\n') => "LF",
            _ => "control character",
        };
        return Err(ParseError::new(format!("{what} in address"), i));
    }
    let mut parser = Parser::new(s)?;
    match parser.peek_kind() {
        None => return Err(ParseError::new("empty address", 0)),
        Some(Kind::Special(b',')) => {
            return Err(ParseError::new(
                "unexpected ','",
                parser.offset_at(parser.pos),
            ));
        }
        Some(Kind::Special(b';')) => {
            return Err(ParseError::new(
                "unexpected ';'",
                parser.offset_at(parser.pos),
            ));
        }
        Some(_) => {}
    }
    let mailbox = match parser.parse_element(false)? {
        Element::Mailbox(m) => m,
        Element::GroupStart => {
            return Err(ParseError::new(
                "group syntax is not allowed in a single address",
                parser.offset_at(parser.pos.saturating_sub(1)),
            ));
        }
    };
    match parser.peek_kind() {
        None => Ok(mailbox.addr),
        Some(Kind::Special(b',')) => Err(ParseError::new(
            "more than one address",
            parser.offset_at(parser.pos),
        )),
        Some(k) => Err(parser.unexpected(k, parser.pos, "after address")),
    }
}

#[cfg(test)]
mod tests;
