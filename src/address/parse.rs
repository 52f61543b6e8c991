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

use std::fmt;
use std::ops::Range;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode_char;

/// Longest envelope address accepted (the RFC 5322 line-length limit).
const MAX_ADDR_LEN: usize = 998;

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

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A run of atext (non-ASCII UTF-8 counts as atext).
    Atom,
    /// A quoted string; `Token::text` holds its unescaped, unfolded content.
    Quoted,
    /// A domain literal `[...]`.
    Literal,
    /// One of `< > @ , : ; .`
    Special(u8),
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    /// Whitespace or a comment precedes this token.
    ws_before: bool,
    /// Content of a quoted string (unescaped, unfolded); empty otherwise.
    text: String,
}

#[derive(Debug)]
struct Comment {
    start: usize,
    /// Content of the outermost comment: quoted-pairs unescaped, line
    /// breaks removed, nested parentheses kept as text.
    text: String,
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Control characters other than HTAB (CR and LF are handled before this).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    i: usize,
    tokens: Vec<Token>,
    comments: Vec<Comment>,
}

impl<'a> Lexer<'a> {
    fn byte(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    fn next_char(&self) -> Option<char> {
        self.src.get(self.i..).and_then(|s| s.chars().next())
    }

    /// Length of the line break at `self.i` (CRLF or LF); a lone CR is an
    /// error.
    fn line_break_len(&self) -> Result<usize, ParseError> {
        match (self.byte(self.i), self.byte(self.i + 1)) {
            (Some(b'\r'), Some(b'\n')) => Ok(2),
            (Some(b'\n'), _) => Ok(1),
            _ => Err(ParseError::new("bare CR", self.i)),
        }
    }

    /// Skip a line break inside a quoted string, comment or domain literal;
    /// it must be folding (followed by SP or HTAB).
    fn fold(&mut self, what: &str) -> Result<(), ParseError> {
        let n = self.line_break_len()?;
        match self.byte(self.i + n) {
            Some(b' ' | b'\t') => {
                self.i += n;
                Ok(())
            }
            _ => Err(ParseError::new(
                format!("line break without folding whitespace in {what}"),
                self.i,
            )),
        }
    }

    /// Read the character after a backslash (the backslash is at `self.i`).
    fn quoted_pair(&mut self, what: &str, start: usize) -> Result<char, ParseError> {
        self.i += 1;
        match self.next_char() {
            None => Err(ParseError::new(format!("unterminated {what}"), start)),
            Some(c) if c == '\r' || c == '\n' || (c.is_ascii() && is_ctl(c as u8)) => {
                Err(ParseError::new("invalid quoted-pair", self.i - 1))
            }
            Some(c) => {
                self.i += c.len_utf8();
                Ok(c)
            }
        }
    }

    fn run(mut self) -> Result<(Vec<Token>, Vec<Comment>), ParseError> {
        let mut ws = false;
        while let Some(c) = self.byte(self.i) {
            match c {
                b' ' | b'\t' => {
                    self.i += 1;
                    ws = true;
                }
                b'\r' | b'\n' => {
                    let n = self.line_break_len()?;
                    match self.byte(self.i + n) {
                        Some(b' ' | b'\t') | None => {
                            self.i += n;
                            ws = true;
                        }
                        Some(_) => {
                            let rest = self.bytes.get(self.i..).unwrap_or_default();
                            if rest
                                .iter()
                                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                            {
                                break;
                            }
                            return Err(ParseError::new(
                                "line break not followed by whitespace",
                                self.i,
                            ));
                        }
                    }
                }
                b'(' => {
                    self.comment()?;
                    ws = true;
                }
                b'"' => {
                    let start = self.i;
                    let text = self.quoted_string()?;
                    self.push(Kind::Quoted, start, ws, text);
                    ws = false;
                }
                b'[' => {
                    let start = self.i;
                    self.domain_literal()?;
                    self.push(Kind::Literal, start, ws, String::new());
                    ws = false;
                }
                b')' => return Err(ParseError::new("unbalanced ')'", self.i)),
                b']' => return Err(ParseError::new("unbalanced ']'", self.i)),
                b'\\' => {
                    return Err(ParseError::new("backslash outside a quoted string", self.i));
                }
                b'<' | b'>' | b'@' | b',' | b':' | b';' | b'.' => {
                    let start = self.i;
                    self.i += 1;
                    self.push(Kind::Special(c), start, ws, String::new());
                    ws = false;
                }
                _ if is_atext(c) => {
                    let start = self.i;
                    while self.byte(self.i).is_some_and(is_atext) {
                        self.i += 1;
                    }
                    self.push(Kind::Atom, start, ws, String::new());
                    ws = false;
                }
                _ => return Err(ParseError::new("control character", self.i)),
            }
        }
        Ok((self.tokens, self.comments))
    }

    fn push(&mut self, kind: Kind, start: usize, ws_before: bool, text: String) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.i,
            ws_before,
            text,
        });
    }

    fn quoted_string(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        self.i += 1;
        let mut text = String::new();
        loop {
            match self.byte(self.i) {
                None => return Err(ParseError::new("unterminated quoted string", start)),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(text);
                }
                Some(b'\\') => text.push(self.quoted_pair("quoted string", start)?),
                Some(b'\r' | b'\n') => self.fold("quoted string")?,
                Some(c) if is_ctl(c) => {
                    return Err(ParseError::new(
                        "control character in quoted string",
                        self.i,
                    ));
                }
                Some(_) => match self.next_char() {
                    Some(ch) => {
                        text.push(ch);
                        self.i += ch.len_utf8();
                    }
                    None => return Err(ParseError::new("invalid UTF-8", self.i)),
                },
            }
        }
    }

    fn comment(&mut self) -> Result<(), ParseError> {
        let start = self.i;
        let mut depth: usize = 0;
        let mut text = String::new();
        loop {
            match self.byte(self.i) {
                None => return Err(ParseError::new("unterminated comment", start)),
                Some(b'(') => {
                    if depth > 0 {
                        text.push('(');
                    }
                    depth += 1;
                    self.i += 1;
                }
                Some(b')') => {
                    depth = depth.saturating_sub(1);
                    self.i += 1;
                    if depth == 0 {
                        self.comments.push(Comment { start, text });
                        return Ok(());
                    }
                    text.push(')');
                }
                Some(b'\\') => text.push(self.quoted_pair("comment", start)?),
                Some(b'\r' | b'\n') => self.fold("comment")?,
                Some(c) if is_ctl(c) => {
                    return Err(ParseError::new("control character in comment", self.i));
                }
                Some(_) => match self.next_char() {
                    Some(ch) => {
                        text.push(ch);
                        self.i += ch.len_utf8();
                    }
                    None => return Err(ParseError::new("invalid UTF-8", self.i)),
                },
            }
        }
    }

    fn domain_literal(&mut self) -> Result<(), ParseError> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.byte(self.i) {
                None => return Err(ParseError::new("unterminated domain literal", start)),
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'[') => {
                    return Err(ParseError::new("'[' inside domain literal", self.i));
                }
                Some(b'\\') => {
                    // Obsolete quoted-pairs in domain literals are not
                    // accepted: SMTP address literals cannot carry them.
                    return Err(ParseError::new("backslash in domain literal", self.i));
                }
                Some(b'\r' | b'\n') => self.fold("domain literal")?,
                Some(c) if is_ctl(c) => {
                    return Err(ParseError::new(
                        "control character in domain literal",
                        self.i,
                    ));
                }
                Some(_) => self.i += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parser

enum Element {
    Mailbox(Mailbox),
    /// A group name and its `:` were consumed.
    GroupStart,
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    comments: Vec<Comment>,
    pos: usize,
    comment_cursor: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, ParseError> {
        let (toks, comments) = Lexer {
            src,
            bytes: src.as_bytes(),
            i: 0,
            tokens: Vec::new(),
            comments: Vec::new(),
        }
        .run()?;
        Ok(Parser {
            src,
            toks,
            comments,
            pos: 0,
            comment_cursor: 0,
        })
    }

    fn kind_at(&self, j: usize) -> Option<Kind> {
        self.toks.get(j).map(|t| t.kind)
    }

    fn peek_kind(&self) -> Option<Kind> {
        self.kind_at(self.pos)
    }

    /// Start offset of token `j`, or the end of input.
    fn offset_at(&self, j: usize) -> usize {
        self.toks.get(j).map_or(self.src.len(), |t| t.start)
    }

    fn end_at(&self, j: usize) -> usize {
        self.toks.get(j).map_or(self.src.len(), |t| t.end)
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src.get(start..end).unwrap_or_default()
    }

    fn unexpected(&self, kind: Kind, j: usize, context: &str) -> ParseError {
        let offset = self.offset_at(j);
        match kind {
            Kind::Special(b'>') => ParseError::new("unbalanced '>'", offset),
            Kind::Special(b'<') => ParseError::new(format!("unexpected '<' {context}"), offset),
            Kind::Special(c) => {
                ParseError::new(format!("unexpected '{}' {context}", char::from(c)), offset)
            }
            Kind::Literal => {
                ParseError::new(format!("unexpected domain literal {context}"), offset)
            }
            Kind::Atom | Kind::Quoted => {
                ParseError::new(format!("unexpected word {context}"), offset)
            }
        }
    }

    /// Index of the first token at or after `j` that is not a word or dot.
    fn scan_words(&self, mut j: usize) -> usize {
        while matches!(
            self.kind_at(j),
            Some(Kind::Atom | Kind::Quoted | Kind::Special(b'.'))
        ) {
            j += 1;
        }
        j
    }

    fn parse_list(&mut self) -> Result<Vec<Mailbox>, ParseError> {
        let mut out = Vec::new();
        let mut in_group = false;
        loop {
            match self.peek_kind() {
                None => break,
                Some(Kind::Special(b',')) => {
                    self.pos += 1;
                    continue;
                }
                Some(Kind::Special(b';')) => {
                    if !in_group {
                        return Err(ParseError::new(
                            "';' outside a group",
                            self.offset_at(self.pos),
                        ));
                    }
                    in_group = false;
                    self.pos += 1;
                    match self.peek_kind() {
                        None => {}
                        Some(Kind::Special(b',')) => self.pos += 1,
                        Some(k) => return Err(self.unexpected(k, self.pos, "after group")),
                    }
                    self.take_comments(self.offset_at(self.pos));
                    continue;
                }
                Some(_) => {}
            }
            match self.parse_element(in_group)? {
                Element::GroupStart => {
                    in_group = true;
                    self.take_comments(self.offset_at(self.pos));
                }
                Element::Mailbox(mut mailbox) => {
                    match self.peek_kind() {
                        None | Some(Kind::Special(b',')) => {}
                        Some(Kind::Special(b';')) if in_group => {}
                        Some(k) => return Err(self.unexpected(k, self.pos, "after address")),
                    }
                    let comments = self.take_comments(self.offset_at(self.pos));
                    if mailbox.display_name.is_none() && !comments.is_empty() {
                        mailbox.display_name = Some(comments);
                    }
                    out.push(mailbox);
                }
            }
        }
        Ok(out)
    }

    /// Consume the comments that start before `until` and return their
    /// decoded text, joined by spaces.
    fn take_comments(&mut self, until: usize) -> String {
        let mut out = String::new();
        while let Some(c) = self.comments.get(self.comment_cursor) {
            if c.start >= until {
                break;
            }
            self.comment_cursor += 1;
            let collapsed = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
            let decoded = sanitize(&decode_mixed(&collapsed));
            let decoded = decoded.trim();
            if !decoded.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(decoded);
            }
        }
        out
    }

    /// Parse one list element starting at `self.pos` (which is not `,` or
    /// `;`): a mailbox, or the name and colon of a group.
    fn parse_element(&mut self, in_group: bool) -> Result<Element, ParseError> {
        let first = self.pos;
        let j = self.scan_words(first);
        match self.kind_at(j) {
            Some(Kind::Special(b'<')) => {
                let name = self.phrase(first, j);
                self.pos = j;
                let (addr, span, unqualified) = self.angle_addr()?;
                mailbox(name, addr, span, unqualified)
            }
            Some(Kind::Special(b':')) => {
                if in_group {
                    return Err(ParseError::new("nested group", self.offset_at(j)));
                }
                if j == first {
                    return Err(ParseError::new(
                        "':' without a group name",
                        self.offset_at(j),
                    ));
                }
                self.pos = j + 1;
                Ok(Element::GroupStart)
            }
            Some(Kind::Special(b'@')) => {
                let (addr, span) = self.addr_spec(first, j)?;
                if self.peek_kind() == Some(Kind::Special(b'<')) {
                    // Sloppy `a@b <c@d>`: the first address is a display name.
                    let (addr2, span2, unqualified) = self.angle_addr()?;
                    return mailbox(Some(addr), addr2, span2, unqualified);
                }
                mailbox(None, addr, span, false)
            }
            None | Some(Kind::Special(b',' | b';')) => {
                if j == first {
                    return Err(ParseError::new("empty address", self.offset_at(j)));
                }
                let local = self.local_part(first, j)?;
                self.pos = j;
                let span = self.offset_at(first)..self.end_at(j.saturating_sub(1));
                mailbox(None, local, span, true)
            }
            Some(k) => Err(self.unexpected(k, j, "in address")),
        }
    }

    /// Decode the display-name phrase made of tokens `first..end`.
    fn phrase(&self, first: usize, end: usize) -> Option<String> {
        let mut joined = String::new();
        for t in self.toks.get(first..end).unwrap_or_default() {
            if t.ws_before && !joined.is_empty() {
                joined.push(' ');
            }
            match t.kind {
                Kind::Atom => joined.push_str(self.slice(t.start, t.end)),
                Kind::Quoted => joined.push_str(&t.text),
                Kind::Special(c) => joined.push(char::from(c)),
                Kind::Literal => {}
            }
        }
        let decoded = sanitize(&decode_mixed(&joined));
        let trimmed = decoded.trim();
        if trimmed.is_empty() {
            None
        } else {
            Some(trimmed.to_string())
        }
    }

    /// Build the local part from tokens `first..end`: words separated by
    /// single dots.
    fn local_part(&self, first: usize, end: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        let mut expect_word = true;
        for t in self.toks.get(first..end).unwrap_or_default() {
            match t.kind {
                Kind::Atom | Kind::Quoted => {
                    if !expect_word {
                        return Err(ParseError::new(
                            "words in a local part must be separated by '.' \
                             (display name without an address?)",
                            t.start,
                        ));
                    }
                    if t.kind == Kind::Atom {
                        out.push_str(self.slice(t.start, t.end));
                    } else if !t.text.is_empty() && t.text.bytes().all(is_atext) {
                        // Needlessly quoted: normalise to the bare atom.
                        out.push_str(&t.text);
                    } else {
                        // Keep as written, minus folding line breaks.
                        out.extend(
                            self.slice(t.start, t.end)
                                .chars()
                                .filter(|c| *c != '\r' && *c != '\n'),
                        );
                    }
                    expect_word = false;
                }
                Kind::Special(b'.') => {
                    if expect_word {
                        return Err(ParseError::new("unexpected '.' in local part", t.start));
                    }
                    out.push('.');
                    expect_word = true;
                }
                _ => return Err(ParseError::new("unexpected token in local part", t.start)),
            }
        }
        if expect_word {
            let offset = self.offset_at(end);
            return Err(if out.is_empty() {
                ParseError::new("empty local part", offset)
            } else {
                ParseError::new("local part ends with '.'", offset)
            });
        }
        Ok(out)
    }

    /// Parse `local@domain` where the local part is tokens `first..at` and
    /// token `at` is `@`. Leaves `self.pos` after the domain.
    fn addr_spec(&mut self, first: usize, at: usize) -> Result<(String, Range<usize>), ParseError> {
        let local = self.local_part(first, at)?;
        self.pos = at + 1;
        let (domain, end) = self.domain()?;
        let mut addr = local;
        addr.push('@');
        addr.push_str(&domain);
        Ok((addr, self.offset_at(first)..end))
    }

    /// Parse a domain at `self.pos`: a dot-atom or a domain literal. Returns
    /// the domain text and its end offset.
    fn domain(&mut self) -> Result<(String, usize), ParseError> {
        let Some((kind, start, end)) = self.toks.get(self.pos).map(|t| (t.kind, t.start, t.end))
        else {
            return Err(ParseError::new("empty domain", self.src.len()));
        };
        match kind {
            Kind::Literal => {
                self.pos += 1;
                let text = self
                    .slice(start, end)
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
                    .collect();
                Ok((text, end))
            }
            Kind::Atom => {
                let mut out = String::new();
                let mut last_end;
                let mut j = self.pos;
                loop {
                    // Token j is an atom.
                    out.push_str(self.slice(self.offset_at(j), self.end_at(j)));
                    last_end = self.end_at(j);
                    j += 1;
                    if self.kind_at(j) != Some(Kind::Special(b'.')) {
                        break;
                    }
                    if self.kind_at(j + 1) != Some(Kind::Atom) {
                        return Err(ParseError::new(
                            match self.kind_at(j + 1) {
                                Some(Kind::Special(b'.')) => "empty domain label",
                                _ => "domain ends with '.'",
                            },
                            self.offset_at(j),
                        ));
                    }
                    out.push('.');
                    j += 1;
                }
                self.pos = j;
                Ok((out, last_end))
            }
            Kind::Special(b'@') => Err(ParseError::new("'@' after '@'", start)),
            _ => Err(ParseError::new("expected a domain after '@'", start)),
        }
    }

    /// Parse `<[route:]addr-spec>` with `self.pos` at `<`.
    fn angle_addr(&mut self) -> Result<(String, Range<usize>, bool), ParseError> {
        let lt = self.offset_at(self.pos);
        self.pos += 1;
        if self.peek_kind() == Some(Kind::Special(b'@')) {
            // Obsolete source route `@r1,@r2:`; stripped.
            loop {
                self.pos += 1;
                self.domain()?;
                let mut commas = 0;
                while self.peek_kind() == Some(Kind::Special(b',')) {
                    self.pos += 1;
                    commas += 1;
                }
                match self.peek_kind() {
                    Some(Kind::Special(b':')) => {
                        self.pos += 1;
                        break;
                    }
                    Some(Kind::Special(b'@')) if commas > 0 => {}
                    None => return Err(ParseError::new("unbalanced '<'", lt)),
                    Some(_) => {
                        return Err(ParseError::new(
                            "malformed source route",
                            self.offset_at(self.pos),
                        ));
                    }
                }
            }
        }
        let first = self.pos;
        let j = self.scan_words(first);
        let (addr, span, unqualified) = match self.kind_at(j) {
            Some(Kind::Special(b'@')) => {
                let (addr, span) = self.addr_spec(first, j)?;
                (addr, span, false)
            }
            _ if j == first => {
                return Err(match self.kind_at(j) {
                    Some(Kind::Special(b'>')) => {
                        ParseError::new("empty address '<>'", self.offset_at(j))
                    }
                    None => ParseError::new("unbalanced '<'", lt),
                    Some(_) => ParseError::new("expected an address after '<'", self.offset_at(j)),
                });
            }
            _ => {
                let local = self.local_part(first, j)?;
                self.pos = j;
                (
                    local,
                    self.offset_at(first)..self.end_at(j.saturating_sub(1)),
                    true,
                )
            }
        };
        match self.peek_kind() {
            Some(Kind::Special(b'>')) => {
                self.pos += 1;
                Ok((addr, span, unqualified))
            }
            None => Err(ParseError::new("unbalanced '<'", lt)),
            Some(_) => Err(ParseError::new("expected '>'", self.offset_at(self.pos))),
        }
    }
}

fn mailbox(
    display_name: Option<String>,
    addr: String,
    span: Range<usize>,
    unqualified: bool,
) -> Result<Element, ParseError> {
    if addr.len() > MAX_ADDR_LEN {
        return Err(ParseError::new(
            format!("address longer than {MAX_ADDR_LEN} octets"),
            span.start,
        ));
    }
    Ok(Element::Mailbox(Mailbox {
        display_name,
        addr,
        span,
        unqualified,
    }))
}

// ---------------------------------------------------------------------------
// RFC 2047

/// Replace control characters (which have no place in a display name and
/// could only come from encoded words) with U+FFFD; HTAB becomes a space.
fn sanitize(s: &str) -> String {
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
fn decode_mixed(s: &str) -> String {
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
fn decode_encoded_words(word: &str) -> Option<String> {
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

fn decode_charset(charset: &str, bytes: &[u8]) -> Option<String> {
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
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
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
fn q_decode(text: &str) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, [(display name, addr, addr-spec as written, unqualified)])
    type Expect = (
        &'static str,
        &'static [(Option<&'static str>, &'static str, &'static str, bool)],
    );

    const OK_CASES: &[Expect] = &[
        ("", &[]),
        ("   ", &[]),
        ("\r\n", &[]),
        ("\r\n a@b", &[(None, "a@b", "a@b", false)]),
        (" \r\n \r\n", &[]),
        ("a@b", &[(None, "a@b", "a@b", false)]),
        ("  a@b  ", &[(None, "a@b", "a@b", false)]),
        ("a@b\r\n", &[(None, "a@b", "a@b", false)]),
        ("Name <a@b>", &[(Some("Name"), "a@b", "a@b", false)]),
        ("<a@b>", &[(None, "a@b", "a@b", false)]),
        ("< a@b >", &[(None, "a@b", "a@b", false)]),
        (
            "\"john doe\"@example.com",
            &[(
                None,
                "\"john doe\"@example.com",
                "\"john doe\"@example.com",
                false,
            )],
        ),
        (
            "Jd <\"john doe\"@example.com>",
            &[(
                Some("Jd"),
                "\"john doe\"@example.com",
                "\"john doe\"@example.com",
                false,
            )],
        ),
        ("\"john\"@x", &[(None, "john@x", "\"john\"@x", false)]),
        ("\"jo\\hn\"@x", &[(None, "john@x", "\"jo\\hn\"@x", false)]),
        (
            "\"john\".doe@x",
            &[(None, "john.doe@x", "\"john\".doe@x", false)],
        ),
        (
            "\"john doe\".smith@x",
            &[(None, "\"john doe\".smith@x", "\"john doe\".smith@x", false)],
        ),
        (
            "\"a\\\"b\"@x",
            &[(None, "\"a\\\"b\"@x", "\"a\\\"b\"@x", false)],
        ),
        ("\"\"@x", &[(None, "\"\"@x", "\"\"@x", false)]),
        ("plainlocal", &[(None, "plainlocal", "plainlocal", true)]),
        (
            "root, a@b",
            &[(None, "root", "root", true), (None, "a@b", "a@b", false)],
        ),
        ("first.last", &[(None, "first.last", "first.last", true)]),
        ("Name <root>", &[(Some("Name"), "root", "root", true)]),
        ("(Root) root", &[(Some("Root"), "root", "root", true)]),
        (
            "root (Root User)",
            &[(Some("Root User"), "root", "root", true)],
        ),
        ("host!user", &[(None, "host!user", "host!user", true)]),
        (
            "user%host@relay",
            &[(None, "user%host@relay", "user%host@relay", false)],
        ),
        (
            "friends: a@x, \"B, Bee\" <b@y>;",
            &[
                (None, "a@x", "a@x", false),
                (Some("B, Bee"), "b@y", "b@y", false),
            ],
        ),
        (
            "c@z, friends: a@x, Bob <b@y>;, d@w",
            &[
                (None, "c@z", "c@z", false),
                (None, "a@x", "a@x", false),
                (Some("Bob"), "b@y", "b@y", false),
                (None, "d@w", "d@w", false),
            ],
        ),
        ("undisclosed-recipients:;", &[]),
        ("undisclosed-recipients: ;", &[]),
        (
            "a@x, g: ;, b@y",
            &[(None, "a@x", "a@x", false), (None, "b@y", "b@y", false)],
        ),
        ("g (the group): a@b;", &[(None, "a@b", "a@b", false)]),
        (
            "g: a@b, c@d",
            &[(None, "a@b", "a@b", false), (None, "c@d", "c@d", false)],
        ),
        (
            "A: a@b;,B: c@d;",
            &[(None, "a@b", "a@b", false), (None, "c@d", "c@d", false)],
        ),
        (
            "=?UTF-8?B?SsO2cmc=?= <jorg@x>",
            &[(Some("Jörg"), "jorg@x", "jorg@x", false)],
        ),
        (
            "=?ISO-8859-1?Q?Andr=E9?= Pirard <a@x>",
            &[(Some("André Pirard"), "a@x", "a@x", false)],
        ),
        (
            "=?utf-8?q?a?= =?utf-8?q?b?= <x@y>",
            &[(Some("ab"), "x@y", "x@y", false)],
        ),
        (
            "=?utf-8?q?a?=\r\n =?utf-8?q?_b?= c <x@y>",
            &[(Some("a b c"), "x@y", "x@y", false)],
        ),
        (
            "=?utf-8*en?q?hi?= <x@y>",
            &[(Some("hi"), "x@y", "x@y", false)],
        ),
        (
            "=?x-unknown?q?abc?= <x@y>",
            &[(Some("=?x-unknown?q?abc?="), "x@y", "x@y", false)],
        ),
        (
            "=?utf-8?x?abc?= <x@y>",
            &[(Some("=?utf-8?x?abc?="), "x@y", "x@y", false)],
        ),
        (
            "=?windows-1252?Q?=80uro?= <a@b>",
            &[(Some("€uro"), "a@b", "a@b", false)],
        ),
        (
            "=?iso-8859-15?Q?=A4?= <a@b>",
            &[(Some("€"), "a@b", "a@b", false)],
        ),
        (
            "=?us-ascii?Q?plain?= <a@b>",
            &[(Some("plain"), "a@b", "a@b", false)],
        ),
        (
            "=?utf-8?b?4pyT?= <a@b>",
            &[(Some("✓"), "a@b", "a@b", false)],
        ),
        (
            "=?utf-8?b?YQ0KYg==?= <a@b>",
            &[(Some("a\u{FFFD}\u{FFFD}b"), "a@b", "a@b", false)],
        ),
        (
            "\"=?UTF-8?B?SsO2cmc=?=\" <jorg@x>",
            &[(Some("Jörg"), "jorg@x", "jorg@x", false)],
        ),
        (
            "=?utf-8?q?John_Q._Public?= <a@b>",
            &[(Some("John Q. Public"), "a@b", "a@b", false)],
        ),
        (
            "a@b (=?utf-8?q?J=C3=B6rg?=)",
            &[(Some("Jörg"), "a@b", "a@b", false)],
        ),
        (
            "c@z.example (Comment Name)",
            &[(Some("Comment Name"), "c@z.example", "c@z.example", false)],
        ),
        ("a@b (x (y) z)", &[(Some("x (y) z"), "a@b", "a@b", false)]),
        ("a@b (x \\) y)", &[(Some("x ) y"), "a@b", "a@b", false)]),
        ("<a@b> (Comment)", &[(Some("Comment"), "a@b", "a@b", false)]),
        ("Foo (Bar) <a@b>", &[(Some("Foo"), "a@b", "a@b", false)]),
        ("Foo <a@b> (Bar)", &[(Some("Foo"), "a@b", "a@b", false)]),
        (
            "a@b (one), c@d (two)",
            &[
                (Some("one"), "a@b", "a@b", false),
                (Some("two"), "c@d", "c@d", false),
            ],
        ),
        ("a(x)@(y)b", &[(Some("x y"), "a@b", "a(x)@(y)b", false)]),
        (
            "John Q. Public <jqp@x>",
            &[(Some("John Q. Public"), "jqp@x", "jqp@x", false)],
        ),
        (
            "\"Doe, John\" <j@x>",
            &[(Some("Doe, John"), "j@x", "j@x", false)],
        ),
        (
            "\"  spaced  \" <j@x>",
            &[(Some("spaced"), "j@x", "j@x", false)],
        ),
        ("\"a  b\" <j@x>", &[(Some("a  b"), "j@x", "j@x", false)]),
        ("\"\" <j@x>", &[(None, "j@x", "j@x", false)]),
        (
            "Mixed \"Quoted\" Words <j@x>",
            &[(Some("Mixed Quoted Words"), "j@x", "j@x", false)],
        ),
        (
            "Alice <a@x>,\r\n\tBob <b@y>",
            &[
                (Some("Alice"), "a@x", "a@x", false),
                (Some("Bob"), "b@y", "b@y", false),
            ],
        ),
        (
            "a@x,\n b@y",
            &[(None, "a@x", "a@x", false), (None, "b@y", "b@y", false)],
        ),
        (
            "\"folded\r\n name\" <a@x>",
            &[(Some("folded name"), "a@x", "a@x", false)],
        ),
        (
            "\"folded\r\n local\"@x",
            &[(None, "\"folded local\"@x", "\"folded\r\n local\"@x", false)],
        ),
        (
            "Long\r\n Name\n\t<a@x>",
            &[(Some("Long Name"), "a@x", "a@x", false)],
        ),
        ("<@r1,@r2:user@x>", &[(None, "user@x", "user@x", false)]),
        (
            "Name <@r1:user@x>",
            &[(Some("Name"), "user@x", "user@x", false)],
        ),
        (
            "<@r1,,@r2.example:user@x>",
            &[(None, "user@x", "user@x", false)],
        ),
        (
            "jörg@exämple.de",
            &[(None, "jörg@exämple.de", "jörg@exämple.de", false)],
        ),
        (
            "Jörg <jörg@exämple.de>",
            &[(Some("Jörg"), "jörg@exämple.de", "jörg@exämple.de", false)],
        ),
        (
            "a@x,,b@y,",
            &[(None, "a@x", "a@x", false), (None, "b@y", "b@y", false)],
        ),
        (",,a@x", &[(None, "a@x", "a@x", false)]),
        ("a @ b . c", &[(None, "a@b.c", "a @ b . c", false)]),
        ("a . b@c", &[(None, "a.b@c", "a . b@c", false)]),
        (
            "user@[1.2.3.4]",
            &[(None, "user@[1.2.3.4]", "user@[1.2.3.4]", false)],
        ),
        (
            "user@[IPv6:::1]",
            &[(None, "user@[IPv6:::1]", "user@[IPv6:::1]", false)],
        ),
        (
            "<user@[ 1.2.3.4 ]>",
            &[(None, "user@[1.2.3.4]", "user@[ 1.2.3.4 ]", false)],
        ),
        (
            "user@localhost",
            &[(None, "user@localhost", "user@localhost", false)],
        ),
        ("a@b <c@d>", &[(Some("a@b"), "c@d", "c@d", false)]),
        (
            "Name <a@b>, c@d",
            &[
                (Some("Name"), "a@b", "a@b", false),
                (None, "c@d", "c@d", false),
            ],
        ),
        (
            "x+tag@sub.example.org",
            &[(
                None,
                "x+tag@sub.example.org",
                "x+tag@sub.example.org",
                false,
            )],
        ),
    ];

    #[test]
    fn table_ok() {
        let mut failures = Vec::new();
        for (raw, expected) in OK_CASES {
            let got = match parse_address_list(raw.as_bytes()) {
                Ok(got) => got,
                Err(e) => {
                    failures.push(format!("{raw:?} failed: {e}"));
                    continue;
                }
            };
            let got: Vec<_> = got
                .iter()
                .map(|m| {
                    (
                        m.display_name.as_deref(),
                        m.addr.as_str(),
                        raw.get(m.span.clone()).unwrap_or("<bad span>"),
                        m.unqualified,
                    )
                })
                .collect();
            if got != *expected {
                failures.push(format!("{raw:?}: got {got:?}, expected {expected:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// (input, error offset)
    const ERR_CASES: &[(&[u8], usize)] = &[
        (b"a@@b", 2),
        (b"<a@b", 0),
        (b"Name <a@b", 5),
        (b"a@b>", 3),
        (b"<a@b>>", 5),
        (b"<a@b c>", 5),
        (b";", 0),
        (b":", 0),
        (b"a@b;", 3),
        (b"a@b; c@d", 3),
        (b": a@b;", 0),
        (b"@b", 0),
        (b"a@", 2),
        (b"a@, b@c", 2),
        (b"\"abc@x", 0),
        (b"a@b, \"abc", 5),
        (b"(abc a@b", 0),
        (b"a@b (x (y)", 4),
        (b"a@b)", 3),
        (b"a\\b@c", 1),
        (b"john doe", 5),
        (b"john doe@x", 5),
        (b"a@b..c", 3),
        (b"a@.b", 2),
        (b"a@b.", 3),
        (b".a@b", 0),
        (b"a.@b", 2),
        (b"a..b@c", 2),
        (b"<>", 1),
        (b"Name <>", 6),
        (b"a@b, <c@d", 5),
        (b"g: h: a@b;;", 4),
        (b"a@b c@d", 4),
        (b"a@b <c@d", 4),
        (b"<a@b> <c@d>", 6),
        (b"a\xff@b", 1),
        (b"\xc3", 0),
        (b"a@b\rc@d", 3),
        (b"a@b\r\nc@d", 3),
        (b"a@b\nc@d", 3),
        (b"\"a\r\nb\"@c", 2),
        (b"a\x00@b", 1),
        (b"a@b\x7f", 3),
        (b"\"a\x01\"@b", 2),
        (b"[1.2.3.4]", 0),
        (b"a@[1.2", 2),
        (b"a@[1[2]", 4),
        (b"a@b]", 3),
        (b"<@r1 user@x>", 5),
        (b"<@r1:>", 5),
        (b"<@:a@b>", 2),
        (b"a@b\xc3(", 3),
        (b"\"a\\", 0),
        (b"\"a\\\n b\"@c", 2),
        // Fuzz finding: an escaped TAB in a domain literal became `\]`
        // once whitespace was stripped.
        (b"r=@[(\\\t\t]", 5),
        (b"a@[1\\]]", 4),
    ];

    #[test]
    fn table_err() {
        let mut failures = Vec::new();
        for (raw, offset) in ERR_CASES {
            let shown = String::from_utf8_lossy(raw);
            match parse_address_list(raw) {
                Ok(v) => failures.push(format!("{shown:?} parsed as {v:?}")),
                Err(e) if e.offset != *offset => {
                    failures.push(format!("{shown:?}: {e}, expected offset {offset}"));
                }
                Err(_) => {}
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn long_address() {
        let local = "a".repeat(988);
        let ok = format!("{local}@b.example");
        assert_eq!(ok.len(), 998);
        assert_eq!(parse_address_list(ok.as_bytes()).unwrap().len(), 1);
        let long = format!("x, {local}@bc.example");
        let e = parse_address_list(long.as_bytes()).unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(parse_single_address(&format!("{local}@bc.example")).is_err());
    }

    #[test]
    fn error_display() {
        let e = parse_address_list(b"a@@b").unwrap_err();
        assert_eq!(e.to_string(), format!("{} at byte 2", e.message));
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().ends_with("at byte 2"));
    }

    #[test]
    fn single_ok() {
        for (input, expected) in [
            ("user@dom", "user@dom"),
            ("user", "user"),
            ("<user@dom>", "user@dom"),
            ("Name <user@dom>", "user@dom"),
            ("\"Some Name\" <user@dom>", "user@dom"),
            ("\"quoted local\"@dom", "\"quoted local\"@dom"),
            ("\"quoted\"@dom", "quoted@dom"),
            ("<@relay:user@dom>", "user@dom"),
            ("user@dom (comment)", "user@dom"),
            (" user@dom ", "user@dom"),
            ("jörg@exämple.de", "jörg@exämple.de"),
            ("user@[1.2.3.4]", "user@[1.2.3.4]"),
            ("host!user", "host!user"),
            ("<root>", "root"),
        ] {
            assert_eq!(
                parse_single_address(input).as_deref(),
                Ok(expected),
                "{input:?}"
            );
        }
    }

    #[test]
    fn single_err() {
        for input in [
            "",
            "   ",
            "a@b\r",
            "a@b\n",
            "a@b\r\n",
            "a\0b",
            "a\x01b@c",
            "a\tb@c",
            "a@@b",
            "a@",
            "@b",
            "<a@b",
            "a@b>",
            "a@b, c@d",
            "a@b,",
            ",a@b",
            "a@b c@d",
            "<>",
            "g: a@b;",
            "g:;",
            ";",
            ":",
            "a@b;",
            "john doe",
            "\"unterminated@x",
            "(comment",
            "a@b..c",
        ] {
            assert!(parse_single_address(input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn pathological_inputs_are_fast() {
        let mb = 1 << 20;
        let inputs: Vec<Vec<u8>> = vec![
            vec![b'('; mb],
            vec![b'<'; mb],
            vec![b'"'; mb],
            vec![b'@'; mb],
            vec![b'.'; mb],
            vec![b'a'; mb],
            "a,".repeat(mb / 2).into_bytes(),
            "a ".repeat(mb / 2).into_bytes(),
            "a.".repeat(mb / 2).into_bytes(),
            "g:".repeat(mb / 2).into_bytes(),
            "(a".repeat(mb / 2).into_bytes(),
            "()".repeat(mb / 2).into_bytes(),
            "=?".repeat(mb / 2).into_bytes(),
            "<@a,".repeat(mb / 4).into_bytes(),
            "a@b (=?utf-8?q?x?=".repeat(mb / 18).into_bytes(),
            format!("\"{}\" <a@b>", "=?utf-8?q?x?= ".repeat(mb / 15)).into_bytes(),
        ];
        for input in &inputs {
            let start = std::time::Instant::now();
            let result = parse_address_list(input);
            let elapsed = start.elapsed();
            // Generous for unoptimised test builds; release is far faster.
            assert!(
                elapsed < std::time::Duration::from_secs(3),
                "{:?}... took {elapsed:?}",
                String::from_utf8_lossy(input.get(..20).unwrap_or_default())
            );
            if let Ok(list) = result {
                for m in list {
                    assert!(m.span.start <= m.span.end && m.span.end <= input.len());
                }
            }
        }
    }

    /// Every prefix and every single-byte deletion of every table input must
    /// parse or fail without panicking, with spans in bounds.
    #[test]
    fn mutations_never_panic() {
        let inputs = OK_CASES
            .iter()
            .map(|(raw, _)| raw.as_bytes())
            .chain(ERR_CASES.iter().map(|(raw, _)| *raw));
        for raw in inputs {
            let mut variants: Vec<Vec<u8>> = Vec::new();
            for i in 0..=raw.len() {
                variants.push(raw.get(..i).unwrap_or_default().to_vec());
                let mut deleted = raw.to_vec();
                if i < deleted.len() {
                    deleted.remove(i);
                    variants.push(deleted);
                }
            }
            for v in variants {
                if let Ok(list) = parse_address_list(&v) {
                    for m in list {
                        assert!(m.span.start <= m.span.end && m.span.end <= v.len());
                        assert!(std::str::from_utf8(&v).is_ok());
                    }
                }
                if let Ok(s) = std::str::from_utf8(&v) {
                    let _ = parse_single_address(s);
                }
            }
        }
    }

    #[test]
    fn spans_allow_splicing() {
        let raw = "Root <root>, (x) admin, \"Bob B\" <bob@y>, g: ops;";
        let list = parse_address_list(raw.as_bytes()).unwrap();
        let mut out = raw.to_string();
        for m in list.iter().rev() {
            if m.unqualified {
                out.replace_range(m.span.clone(), &format!("{}@host.example", m.addr));
            }
        }
        assert_eq!(
            out,
            "Root <root@host.example>, (x) admin@host.example, \"Bob B\" <bob@y>, g: ops@host.example;"
        );
        let again = parse_address_list(out.as_bytes()).unwrap();
        assert!(again.iter().all(|m| !m.unqualified));
    }

    #[test]
    fn base64_and_q() {
        assert_eq!(
            base64_decode("SsO2cmc=").as_deref(),
            Some(&b"J\xc3\xb6rg"[..])
        );
        assert_eq!(
            base64_decode("SsO2cmc").as_deref(),
            Some(&b"J\xc3\xb6rg"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("Y=Q"), None);
        assert_eq!(base64_decode("a b"), None);
        assert_eq!(q_decode("a_b=3Dc=zz="), b"a b=c=zz=".to_vec());
    }
}
