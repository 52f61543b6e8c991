//! The token walk of the address parser: a list of tokens from the lexer
//! becomes mailboxes (groups flattened, display names decoded), with every
//! ambiguous or broken construct refused with its byte offset.

use super::encoded::*;
use super::lexer::*;
use super::{MAX_ADDR_LEN, Mailbox, ParseError};
use std::ops::Range;

pub(super) enum Element {
    Mailbox(Mailbox),
    /// A group name and its `:` were consumed.
    GroupStart,
}

pub(super) struct Parser<'a> {
    pub(super) src: &'a str,
    pub(super) toks: Vec<Token>,
    pub(super) comments: Vec<Comment>,
    pub(super) pos: usize,
    pub(super) comment_cursor: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str) -> Result<Self, ParseError> {
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

    pub(super) fn kind_at(&self, j: usize) -> Option<Kind> {
        self.toks.get(j).map(|t| t.kind)
    }

    pub(super) fn peek_kind(&self) -> Option<Kind> {
        self.kind_at(self.pos)
    }

    /// Start offset of token `j`, or the end of input.
    pub(super) fn offset_at(&self, j: usize) -> usize {
        self.toks.get(j).map_or(self.src.len(), |t| t.start)
    }

    pub(super) fn end_at(&self, j: usize) -> usize {
        self.toks.get(j).map_or(self.src.len(), |t| t.end)
    }

    pub(super) fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src.get(start..end).unwrap_or_default()
    }

    pub(super) fn unexpected(&self, kind: Kind, j: usize, context: &str) -> ParseError {
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
    pub(super) fn scan_words(&self, mut j: usize) -> usize {
        while matches!(
            self.kind_at(j),
            Some(Kind::Atom | Kind::Quoted | Kind::Special(b'.'))
        ) {
            j += 1;
        }
        j
    }

    pub(super) fn parse_list(&mut self) -> Result<Vec<Mailbox>, ParseError> {
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
    pub(super) fn take_comments(&mut self, until: usize) -> String {
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
    pub(super) fn parse_element(&mut self, in_group: bool) -> Result<Element, ParseError> {
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
    pub(super) fn phrase(&self, first: usize, end: usize) -> Option<String> {
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
    pub(super) fn local_part(&self, first: usize, end: usize) -> Result<String, ParseError> {
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
    pub(super) fn addr_spec(
        &mut self,
        first: usize,
        at: usize,
    ) -> Result<(String, Range<usize>), ParseError> {
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
    pub(super) fn domain(&mut self) -> Result<(String, usize), ParseError> {
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
    pub(super) fn angle_addr(&mut self) -> Result<(String, Range<usize>, bool), ParseError> {
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

pub(super) fn mailbox(
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
