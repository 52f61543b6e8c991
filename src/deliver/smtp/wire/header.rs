//! Header blocks: classifying lines as fields or continuations, folding
//! lines over 998 octets, capturing `Content-Type` and
//! `Content-Transfer-Encoding`, and dropping the encoding fields of a
//! re-encoded part.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKind {
    None,
    ContentType,
    Cte,
    MimeVersion,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    NeedMore,
    Blank,
    Continuation,
    Field { kind: FieldKind, colon: usize },
    NotHeader,
}

/// Classify a header-block line from its first bytes. `complete`: the whole
/// line is in `seg`.
pub(super) fn classify(seg: &[u8], complete: bool) -> Class {
    match seg.first() {
        None => {
            if complete {
                Class::Blank
            } else {
                Class::NeedMore
            }
        }
        Some(&b) if is_ws(b) => Class::Continuation,
        Some(_) => {
            let name_len = seg
                .iter()
                .take_while(|&&c| (33..=126).contains(&c) && c != b':')
                .count();
            let (name, after) = seg.split_at(name_len);
            let ws = after.iter().take_while(|&&c| is_ws(c)).count();
            match after.get(ws) {
                Some(b':') if name_len > 0 => Class::Field {
                    kind: field_kind(name),
                    colon: name_len + ws,
                },
                Some(_) => Class::NotHeader,
                None if complete || seg.len() > MAX_LINE => Class::NotHeader,
                None => Class::NeedMore,
            }
        }
    }
}

pub(super) fn field_kind(name: &[u8]) -> FieldKind {
    if name.eq_ignore_ascii_case(b"content-type") {
        FieldKind::ContentType
    } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
        FieldKind::Cte
    } else if name.eq_ignore_ascii_case(b"mime-version") {
        FieldKind::MimeVersion
    } else {
        FieldKind::Other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineState {
    Unclassified,
    /// Classified; `cte`: the line belongs to a Content-Transfer-Encoding field.
    Known {
        cte: bool,
    },
}

#[derive(Debug)]
pub(super) enum HdrEol {
    Continue,
    Blank,
    NotHeader(Vec<u8>),
}

/// One header block being read (and folded where needed).
#[derive(Debug)]
pub(super) struct Header {
    pub(super) entity: u32,
    pub(super) depth: u32,
    pub(super) is_message: bool,
    pub(super) digest_child: bool,
    /// Stream pass: this entity is re-encoded (drop its CTE fields, add the
    /// new fields at the end of the block).
    pub(super) edit: Option<Edit>,
    /// Current physical line (unsent part), at most 998 octets between calls.
    pub(super) seg: Vec<u8>,
    pub(super) line: LineState,
    pub(super) line_folded: bool,
    /// A fold must leave at least this many octets on the line.
    pub(super) min_fold: usize,
    pub(super) field: FieldKind,
    pub(super) capture: bool,
    pub(super) value: Vec<u8>,
    pub(super) content_type: Option<Vec<u8>>,
    pub(super) cte: Option<Vec<u8>>,
    pub(super) has_mv: bool,
}

impl Header {
    pub(super) fn new(
        entity: u32,
        depth: u32,
        is_message: bool,
        digest_child: bool,
        edit: Option<Edit>,
    ) -> Self {
        Header {
            entity,
            depth,
            is_message,
            digest_child,
            edit,
            seg: Vec::new(),
            line: LineState::Unclassified,
            line_folded: false,
            min_fold: 1,
            field: FieldKind::None,
            capture: false,
            value: Vec::new(),
            content_type: None,
            cte: None,
            has_mv: false,
        }
    }

    pub(super) fn keep_value(&mut self, d: &[u8]) {
        if self.capture {
            let room = MAX_FIELD_VALUE.saturating_sub(self.value.len());
            self.value
                .extend_from_slice(d.get(..room.min(d.len())).unwrap_or_default());
        }
    }

    pub(super) fn finish_field(&mut self) {
        if self.capture {
            let v = std::mem::take(&mut self.value);
            match self.field {
                FieldKind::ContentType => self.content_type = Some(v),
                FieldKind::Cte => self.cte = Some(v),
                _ => {}
            }
        }
        self.capture = false;
    }

    pub(super) fn start_line(&mut self, class: Class) {
        match class {
            Class::Field { kind, colon } => {
                self.finish_field();
                self.field = kind;
                self.capture = match kind {
                    FieldKind::ContentType => self.content_type.is_none(),
                    FieldKind::Cte => self.cte.is_none(),
                    _ => false,
                };
                if kind == FieldKind::MimeVersion {
                    self.has_mv = true;
                }
                self.value.clear();
                let seg = std::mem::take(&mut self.seg);
                self.keep_value(seg.get(colon + 1..).unwrap_or_default());
                self.seg = seg;
                self.line = LineState::Known {
                    cte: kind == FieldKind::Cte,
                };
                self.min_fold = colon + 1;
            }
            _ => {
                let seg = std::mem::take(&mut self.seg);
                self.keep_value(&seg);
                self.seg = seg;
                self.line = LineState::Known {
                    cte: self.field == FieldKind::Cte,
                };
                self.min_fold = 1;
            }
        }
    }

    pub(super) fn chan(&self) -> (Chan, bool) {
        let cte = matches!(self.line, LineState::Known { cte: true });
        (Chan::Hdr { cte }, cte && self.edit.is_some())
    }

    /// Emit folded pieces while the line is longer than the limit.
    pub(super) fn fold(&mut self, s: &mut Sink) {
        let (ch, drop) = self.chan();
        while self.seg.len() > MAX_LINE {
            let first_text = self
                .seg
                .iter()
                .position(|&b| !is_ws(b))
                .unwrap_or(self.seg.len());
            let lo = self.min_fold.max(first_text + 1);
            let at_ws = (lo..=MAX_LINE)
                .rev()
                .find(|&i| self.seg.get(i).is_some_and(|&b| is_ws(b)));
            let cut = at_ws.unwrap_or(MAX_LINE).min(self.seg.len());
            if !drop {
                s.data(ch, self.seg.get(..cut).unwrap_or_default());
                s.newline(ch);
            }
            self.seg.drain(..cut);
            if at_ws.is_none() {
                self.seg.insert(0, b' ');
            }
            self.min_fold = 1;
            self.line_folded = true;
        }
    }

    pub(super) fn feed_known(&mut self, mut d: &[u8], s: &mut Sink) {
        while !d.is_empty() {
            let room = (MAX_LINE + 1).saturating_sub(self.seg.len()).max(1);
            let (a, rest) = d.split_at(room.min(d.len()));
            self.seg.extend_from_slice(a);
            self.keep_value(a);
            self.fold(s);
            d = rest;
        }
    }

    /// Line content. Returns the bytes of the line when it turns out not to
    /// be a header line (the block ends and they belong to the body).
    pub(super) fn data(&mut self, d: &[u8], s: &mut Sink) -> Option<Vec<u8>> {
        let mut d = d;
        if self.line == LineState::Unclassified {
            let room = (MAX_LINE + 1).saturating_sub(self.seg.len());
            let (a, rest) = d.split_at(room.min(d.len()));
            self.seg.extend_from_slice(a);
            match classify(&self.seg, false) {
                Class::NeedMore | Class::Blank => {
                    if rest.is_empty() {
                        return None;
                    }
                    // Cannot happen (a full head always classifies); treat
                    // the line as not a header rather than lose bytes.
                    let mut v = std::mem::take(&mut self.seg);
                    v.extend_from_slice(rest);
                    return Some(v);
                }
                Class::NotHeader => {
                    let mut v = std::mem::take(&mut self.seg);
                    v.extend_from_slice(rest);
                    return Some(v);
                }
                class => {
                    self.start_line(class);
                    self.fold(s);
                }
            }
            d = rest;
        }
        self.feed_known(d, s);
        None
    }

    pub(super) fn end_line(&mut self, s: &mut Sink, folded: &mut usize, newline: bool) -> HdrEol {
        if self.line == LineState::Unclassified {
            match classify(&self.seg, true) {
                Class::Blank | Class::NeedMore => return HdrEol::Blank,
                Class::NotHeader => return HdrEol::NotHeader(std::mem::take(&mut self.seg)),
                class => {
                    self.start_line(class);
                    self.fold(s);
                }
            }
        }
        let (ch, drop) = self.chan();
        if !drop {
            s.data(ch, &self.seg);
            if newline {
                s.newline(ch);
            }
        }
        if self.line_folded {
            *folded += 1;
        }
        self.seg.clear();
        self.line = LineState::Unclassified;
        self.line_folded = false;
        self.min_fold = 1;
        HdrEol::Continue
    }
}
