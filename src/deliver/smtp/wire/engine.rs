//! The walk shared by both passes: entity state, multipart boundaries and
//! nesting limits, header ends, and the plan's edits applied in order.

use super::*;

#[derive(Debug)]
pub(super) struct Bound {
    /// `--boundary`
    pub(super) delim: Vec<u8>,
    /// Depth of the multipart entity.
    pub(super) depth: u32,
    pub(super) digest: bool,
}

#[derive(Debug)]
pub(super) enum State {
    Header(Box<Header>),
    Body(Body),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderEnd {
    /// Empty line.
    Blank,
    /// A line that is not a header line (it starts the body).
    NotHeader,
    /// End of input or a boundary line: the entity has no body.
    Cut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Filter {
    /// At a line start (nothing of the line seen yet).
    LineStart,
    /// Buffering a line that may be a boundary delimiter.
    Buffering,
    /// The current line is not a delimiter; its bytes go straight through.
    Released,
}

pub(super) struct Engine<'p> {
    pub(super) opts: WireOptions,
    pub(super) sink: Sink,
    /// Stream pass: the plan's edits, sorted by entity.
    pub(super) edits_in: &'p [Edit],
    pub(super) edit_pos: usize,
    /// Plan pass: edits decided so far.
    pub(super) edits_out: Vec<Edit>,
    pub(super) state: State,
    pub(super) bounds: Vec<Bound>,
    pub(super) head: Vec<u8>,
    pub(super) filter: Filter,
    pub(super) entities: u32,
    pub(super) folded: usize,
    /// Whole lines may take [`Engine::bulk`] (off only in tests).
    pub(super) bulk_ok: bool,
}

pub(super) fn could_be_delimiter(line: &[u8], bounds: &[Bound]) -> bool {
    if line.len() > MAX_LINE {
        return false;
    }
    bounds.iter().any(|b| {
        if line.len() <= b.delim.len() {
            b.delim.starts_with(line)
        } else {
            line.strip_prefix(b.delim.as_slice()).is_some_and(|t| {
                t == b"-" || t.strip_prefix(b"--").unwrap_or(t).iter().all(|&c| is_ws(c))
            })
        }
    })
}

/// `Some((index, close))` if `line` is a delimiter of `bounds[index]`
/// (innermost match wins).
pub(super) fn match_delimiter(line: &[u8], bounds: &[Bound]) -> Option<(usize, bool)> {
    if line.len() > MAX_LINE {
        return None;
    }
    bounds.iter().enumerate().rev().find_map(|(i, b)| {
        let t = line.strip_prefix(b.delim.as_slice())?;
        if let Some(t2) = t.strip_prefix(b"--")
            && t2.iter().all(|&c| is_ws(c))
        {
            return Some((i, true));
        }
        t.iter().all(|&c| is_ws(c)).then_some((i, false))
    })
}

impl<'p> Engine<'p> {
    pub(super) fn new(opts: WireOptions, sink: Sink, edits_in: &'p [Edit]) -> Self {
        let mut e = Engine {
            opts,
            sink,
            edits_in,
            edit_pos: 0,
            edits_out: Vec::new(),
            state: State::Body(Body::pass()),
            bounds: Vec::new(),
            head: Vec::new(),
            filter: Filter::LineStart,
            entities: 0,
            folded: 0,
            bulk_ok: true,
        };
        e.state = e.new_entity(0, true, false);
        e
    }

    /// Stream pass output buffer.
    pub(super) fn out(&mut self) -> Option<&mut Vec<u8>> {
        match &mut self.sink {
            Sink::Stream(w) => Some(&mut w.buf),
            Sink::Plan(_) => None,
        }
    }

    pub(super) fn new_entity(&mut self, depth: u32, is_message: bool, digest_child: bool) -> State {
        if self.entities >= MAX_PARTS {
            // Everything from here on is one opaque part.
            self.bounds.clear();
            return State::Body(Body::pass());
        }
        let entity = self.entities;
        self.entities += 1;
        let mut edit = None;
        while let Some(e) = self.edits_in.get(self.edit_pos) {
            if e.entity < entity {
                self.edit_pos += 1;
                continue;
            }
            if e.entity == entity {
                edit = Some(*e);
                self.edit_pos += 1;
            }
            break;
        }
        State::Header(Box::new(Header::new(
            entity,
            depth,
            is_message,
            digest_child,
            edit,
        )))
    }

    // --- line filter: recognises boundary delimiter lines -----------------

    pub(super) fn data(&mut self, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        if self.filter == Filter::Released || self.bounds.is_empty() {
            self.filter = Filter::Released;
            self.state_data(d);
            return;
        }
        let room = (MAX_LINE + 1).saturating_sub(self.head.len());
        let (a, rest) = d.split_at(room.min(d.len()));
        self.head.extend_from_slice(a);
        self.filter = Filter::Buffering;
        if !could_be_delimiter(&self.head, &self.bounds) {
            self.filter = Filter::Released;
            let head = std::mem::take(&mut self.head);
            self.state_data(&head);
            self.reuse_head(head);
            self.data(rest);
        }
    }

    /// The bulk path: whole lines at a line start, in a body whose lines of
    /// at most 998 octets go through as they are (base64, quoted-printable,
    /// pass-through) or are only measured (the plan's probe of an
    /// identity-encoded leaf). Takes every complete line from the start of
    /// `input` until one needs the general walk (over 998 octets, a `-`
    /// that may start a boundary delimiter, a CR that may pair with the next
    /// read's LF) and returns the number of bytes taken. Its effect is
    /// exactly that of `data` + `eol` per line; the tests check both against
    /// each other on random messages read in pieces too small for it.
    pub(super) fn bulk(&mut self, input: &[u8]) -> usize {
        if !self.bulk_ok || self.filter != Filter::LineStart {
            return 0;
        }
        let State::Body(body) = &mut self.state else {
            return 0;
        };
        let ready = match body {
            Body::Gate(g) => g.head.is_empty() && !g.long,
            Body::Pass(w) => w.col == 0 && w.width == MAX_LINE,
            Body::Probe(p) => p.cur_line == 0 && matches!(self.sink, Sink::Plan(_)),
            Body::Qp(_) => false,
        };
        if !ready {
            return 0;
        }
        let guard = !self.bounds.is_empty();
        let mut pos = 0;
        let mut lines = 0u64;
        let mut content = 0u64;
        while let Some(rest) = input.get(pos..) {
            let Some(i) = memchr::memchr2(b'\r', b'\n', rest) else {
                break;
            };
            if i > MAX_LINE || (guard && rest.first() == Some(&b'-')) {
                break;
            }
            let term = match (rest.get(i), rest.get(i + 1)) {
                (Some(b'\n'), _) => 1,
                (_, None) => break,
                (_, Some(b'\n')) => 2,
                _ => 1,
            };
            let line = rest.get(..i).unwrap_or_default();
            match (&mut *body, &mut self.sink) {
                (Body::Probe(p), Sink::Plan(t)) => match QpEnc::plain_line_len(line) {
                    Some(n) => t.qp.merge(&Counter::lines(n, false)),
                    None => {
                        p.qp.data(line, &mut t.qp);
                        p.qp.eol(&mut t.qp);
                    }
                },
                (_, Sink::Stream(w)) => {
                    if w.pending_nl {
                        w.buf.extend_from_slice(b"\r\n");
                    }
                    w.buf.extend_from_slice(line);
                    w.pending_nl = true;
                }
                _ => {}
            }
            lines += 1;
            content += i as u64;
            pos += i + term;
        }
        if lines == 0 {
            return 0;
        }
        let taken = input.get(..pos).unwrap_or_default();
        let counted = Counter::lines(content + 2 * lines, !taken.is_ascii());
        match (body, &mut self.sink) {
            (Body::Probe(p), Sink::Plan(t)) => {
                p.scan(taken);
                t.keep.merge(&counted);
            }
            (_, Sink::Plan(t)) => t.main.merge(&counted),
            _ => {}
        }
        pos
    }

    /// Give the head buffer's allocation back unless a nested call is
    /// buffering a line in it.
    pub(super) fn reuse_head(&mut self, mut head: Vec<u8>) {
        if self.head.is_empty() {
            head.clear();
            self.head = head;
        }
    }

    pub(super) fn eol(&mut self) {
        self.end_of_line(true);
    }

    pub(super) fn eof(&mut self) {
        self.end_of_line(false);
        if let Sink::Stream(w) = &mut self.sink {
            // Drop exactly one trailing CRLF.
            w.pending_nl = false;
        }
    }

    /// A line ends (`eol`) or the input ends without a final line break.
    pub(super) fn end_of_line(&mut self, eol: bool) {
        if self.filter == Filter::Buffering {
            let head = std::mem::take(&mut self.head);
            self.filter = Filter::LineStart;
            if let Some((k, close)) = match_delimiter(&head, &self.bounds) {
                self.on_delimiter(k, close, &head, eol);
                self.reuse_head(head);
                if !eol {
                    self.state_eof();
                }
                self.filter = Filter::LineStart;
                return;
            }
            self.filter = Filter::Released;
            self.state_data(&head);
            self.reuse_head(head);
            // The line may have been handed to a new entity and be buffered
            // again; finish it through the filter.
            self.end_of_line(eol);
            return;
        }
        if eol {
            self.state_eol();
        } else {
            self.state_eof();
        }
        self.filter = Filter::LineStart;
    }

    /// A header block ended at a line that is not a header line: that line
    /// starts the body, so it goes through the delimiter filter again (the
    /// entity may just have opened a multipart).
    pub(super) fn refilter(&mut self, line: &[u8]) {
        self.filter = Filter::LineStart;
        self.data(line);
    }

    pub(super) fn on_delimiter(&mut self, k: usize, close: bool, line: &[u8], eol: bool) {
        // The current entity ends here (we are at a line start).
        match std::mem::replace(&mut self.state, State::Body(Body::pass())) {
            State::Header(h) => self.end_header(*h, HeaderEnd::Cut),
            State::Body(Body::Probe(p)) => self.finish_probe(*p),
            State::Body(_) => {}
        }
        let (depth, digest) = self
            .bounds
            .get(k)
            .map_or((0, false), |b| (b.depth, b.digest));
        self.bounds.truncate(if close { k } else { k + 1 });
        self.sink.data(Chan::Main, line);
        if eol {
            self.sink.newline(Chan::Main);
        }
        self.state = if close {
            State::Body(Body::pass())
        } else {
            self.new_entity(depth + 1, false, digest)
        };
    }

    // --- state machine -----------------------------------------------------

    pub(super) fn take_header(&mut self) -> Option<Box<Header>> {
        match std::mem::replace(&mut self.state, State::Body(Body::pass())) {
            State::Header(h) => Some(h),
            other => {
                self.state = other;
                None
            }
        }
    }

    pub(super) fn state_data(&mut self, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        match &mut self.state {
            State::Header(h) => {
                if let Some(left) = h.data(d, &mut self.sink)
                    && let Some(h) = self.take_header()
                {
                    self.end_header(*h, HeaderEnd::NotHeader);
                    self.refilter(&left);
                }
            }
            State::Body(b) => b.data(d, &mut self.sink),
        }
    }

    pub(super) fn state_eol(&mut self) {
        match &mut self.state {
            State::Header(h) => match h.end_line(&mut self.sink, &mut self.folded, true) {
                HdrEol::Continue => {}
                HdrEol::Blank => {
                    if let Some(h) = self.take_header() {
                        self.end_header(*h, HeaderEnd::Blank);
                    }
                }
                HdrEol::NotHeader(left) => {
                    if let Some(h) = self.take_header() {
                        self.end_header(*h, HeaderEnd::NotHeader);
                        self.refilter(&left);
                        self.end_of_line(true);
                    }
                }
            },
            State::Body(b) => b.eol(&mut self.sink),
        }
    }

    pub(super) fn state_eof(&mut self) {
        match &mut self.state {
            State::Header(h) => {
                let res = if h.seg.is_empty() && h.line == LineState::Unclassified {
                    HdrEol::Blank
                } else {
                    h.end_line(&mut self.sink, &mut self.folded, false)
                };
                if let Some(h) = self.take_header() {
                    match res {
                        HdrEol::NotHeader(left) => {
                            self.end_header(*h, HeaderEnd::NotHeader);
                            self.refilter(&left);
                            self.end_of_line(false);
                        }
                        _ => self.end_header(*h, HeaderEnd::Cut),
                    }
                }
            }
            State::Body(Body::Probe(p)) => {
                p.eof(&mut self.sink);
                if let State::Body(Body::Probe(p)) =
                    std::mem::replace(&mut self.state, State::Body(Body::pass()))
                {
                    self.finish_probe(*p);
                }
            }
            State::Body(b) => b.eof(&mut self.sink),
        }
    }

    /// Plan pass: the header block is settled as is.
    pub(super) fn commit_header(&mut self) {
        if let Sink::Plan(t) = &mut self.sink {
            let all = t.hdr_all;
            t.main.merge(&all);
            t.reset_part();
        }
    }

    /// Stream pass: the fields a re-encoded part gets, at the end of its
    /// header (and the blank line a header ended by a non-header line
    /// lacks).
    fn write_added_fields(&mut self, h: &Header, how: HeaderEnd) {
        if self.sink.is_stream()
            && how != HeaderEnd::Cut
            && let Some(e) = &h.edit
        {
            for line in added_lines(e) {
                self.sink.data(Chan::Hdr { cte: false }, line);
                self.sink.newline(Chan::Hdr { cte: false });
            }
            if how == HeaderEnd::NotHeader {
                self.sink.newline(Chan::Hdr { cte: false });
            }
        }
    }

    pub(super) fn end_header(&mut self, mut h: Header, how: HeaderEnd) {
        h.finish_field();
        let stream = self.sink.is_stream();
        self.write_added_fields(&h, how);
        if how == HeaderEnd::Blank {
            self.sink.newline(Chan::Hdr { cte: false });
        }
        if how == HeaderEnd::Cut {
            self.commit_header();
            self.state = State::Body(Body::pass());
            return;
        }
        let enc = parse_cte(h.cte.as_deref());
        let kind = parse_content_type(h.content_type.as_deref(), h.digest_child);
        let deep = h.depth >= MAX_DEPTH;
        let body = match (kind, enc) {
            (
                Kind::Multipart {
                    delim: Some(delim),
                    digest,
                },
                Enc::Identity,
            ) if !deep => {
                self.commit_header();
                self.bounds.push(Bound {
                    delim,
                    depth: h.depth,
                    digest,
                });
                Body::pass()
            }
            (Kind::Message, Enc::Identity) if !deep => {
                if how == HeaderEnd::NotHeader {
                    // Keep fields that may be added to the embedded message
                    // out of this header block.
                    self.sink.newline(Chan::Hdr { cte: false });
                }
                self.commit_header();
                self.state = self.new_entity(h.depth + 1, true, false);
                return;
            }
            (_, Enc::Base64) => {
                self.commit_header();
                Body::Gate(Gate::new(GateKind::Base64))
            }
            (_, Enc::QuotedPrintable) => {
                self.commit_header();
                Body::Gate(Gate::new(GateKind::QuotedPrintable))
            }
            (Kind::Discrete, Enc::Identity) => leaf_body(&h, how, stream),
            _ => {
                self.commit_header();
                Body::pass()
            }
        };
        self.state = State::Body(body);
    }

    /// Plan pass: an identity-encoded leaf ended; decide and settle counts.
    pub(super) fn finish_probe(&mut self, p: Probe) {
        let Sink::Plan(t) = &mut self.sink else {
            return;
        };
        let reencode = p.long || p.nul || (!self.opts.eight_bit_ok && p.eight);
        if reencode {
            let charset = if !p.eight {
                Charset::Ascii
            } else if p.utf8.valid() {
                Charset::Utf8
            } else {
                Charset::Unknown8bit
            };
            let edit = Edit {
                entity: p.entity,
                add_mime_version: p.is_message && !p.has_mv,
                add_content_type: (p.is_message && !p.has_ct).then_some(charset),
            };
            let mut added = Counter::default();
            for line in added_lines(&edit) {
                added.data(line);
                added.newline();
            }
            if p.case_c {
                added.newline();
            }
            let (other, qp) = (t.hdr_other, t.qp);
            t.main.merge(&other);
            t.main.merge(&added);
            t.main.merge(&qp);
            self.edits_out.push(edit);
        } else {
            let (all, keep) = (t.hdr_all, t.keep);
            t.main.merge(&all);
            t.main.merge(&keep);
        }
        t.reset_part();
    }
}

/// The body of an identity-encoded leaf: probed in the plan pass;
/// re-encoded as quoted-printable or passed through in the stream pass.
fn leaf_body(h: &Header, how: HeaderEnd, stream: bool) -> Body {
    if stream {
        if h.edit.is_some() {
            Body::Qp(QpEnc::default())
        } else {
            Body::pass()
        }
    } else {
        Body::Probe(Box::new(Probe {
            entity: h.entity,
            is_message: h.is_message,
            has_ct: h.content_type.is_some(),
            has_mv: h.has_mv,
            case_c: how == HeaderEnd::NotHeader,
            keep: Wrap::new(MAX_LINE),
            qp: QpEnc::default(),
            cur_line: 0,
            long: false,
            nul: false,
            eight: false,
            utf8: Utf8Check::default(),
        }))
    }
}
