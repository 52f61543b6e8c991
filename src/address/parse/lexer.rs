//! The flat lexer of the address parser: raw header bytes (already checked
//! as UTF-8) become atoms, quoted strings, domain literals, specials and
//! comments, each with its byte span. No recursion, no backtracking.

use super::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Whitespace or a comment precedes this token.
    pub(super) ws_before: bool,
    /// Content of a quoted string (unescaped, unfolded); empty otherwise.
    pub(super) text: String,
}

#[derive(Debug)]
pub(super) struct Comment {
    pub(super) start: usize,
    /// Content of the outermost comment: quoted-pairs unescaped, line
    /// breaks removed, nested parentheses kept as text.
    pub(super) text: String,
}

pub(super) fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Control characters other than HTAB (CR and LF are handled before this).
pub(super) fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
    pub(super) bytes: &'a [u8],
    pub(super) i: usize,
    pub(super) tokens: Vec<Token>,
    pub(super) comments: Vec<Comment>,
}

impl<'a> Lexer<'a> {
    pub(super) fn byte(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    pub(super) fn next_char(&self) -> Option<char> {
        self.src.get(self.i..).and_then(|s| s.chars().next())
    }

    /// Length of the line break at `self.i` (CRLF or LF); a lone CR is an
    /// error.
    pub(super) fn line_break_len(&self) -> Result<usize, ParseError> {
        match (self.byte(self.i), self.byte(self.i + 1)) {
            (Some(b'\r'), Some(b'\n')) => Ok(2),
            (Some(b'\n'), _) => Ok(1),
            _ => Err(ParseError::new("bare CR", self.i)),
        }
    }

    /// Skip a line break inside a quoted string, comment or domain literal;
    /// it must be folding (followed by SP or HTAB).
    pub(super) fn fold(&mut self, what: &str) -> Result<(), ParseError> {
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
    pub(super) fn quoted_pair(&mut self, what: &str, start: usize) -> Result<char, ParseError> {
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

    pub(super) fn run(mut self) -> Result<(Vec<Token>, Vec<Comment>), ParseError> {
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

    pub(super) fn push(&mut self, kind: Kind, start: usize, ws_before: bool, text: String) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.i,
            ws_before,
            text,
        });
    }

    pub(super) fn quoted_string(&mut self) -> Result<String, ParseError> {
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

    pub(super) fn comment(&mut self) -> Result<(), ParseError> {
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

    pub(super) fn domain_literal(&mut self) -> Result<(), ParseError> {
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
