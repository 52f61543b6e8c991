//! Line layout of generated text: header fields folded near 78 columns
//! (RFC 5322 §2.2.3), paragraphs wrapped at 76, and runs without
//! whitespace split so that no line exceeds 998 octets.

/// Preferred width of generated header lines (RFC 5322 §2.1.1).
pub(super) const FOLD_WIDTH: usize = 78;
/// Width of the human-readable text.
pub(super) const TEXT_WIDTH: usize = 76;
/// Longest run without whitespace kept on one line; longer runs are split
/// (which inserts a space when unfolded) so no line exceeds 998 octets.
pub(super) const MAX_WORD: usize = 900;

/// Appends `Name: value` folded at spaces near [`FOLD_WIDTH`] (RFC 5322
/// §2.2.3). `value` must be ASCII without CR/LF (see [`super::text::clean_text`]).
pub(super) fn push_field(buf: &mut String, name: &str, value: &str) {
    let mut line_len = name.len() + 1;
    buf.push_str(name);
    buf.push(':');
    let mut first = true;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        for piece in split_long(word) {
            if !first && line_len + 1 + piece.len() > FOLD_WIDTH {
                buf.push('\n');
                line_len = 0;
            }
            buf.push(' ');
            buf.push_str(piece);
            line_len += 1 + piece.len();
            first = false;
        }
    }
    buf.push('\n');
}

/// Appends a paragraph wrapped at [`TEXT_WIDTH`].
pub(super) fn push_paragraph(buf: &mut String, text: &str) {
    wrap(buf, text, TEXT_WIDTH, "");
}

/// Appends `text` word-wrapped at `width`, continuation lines starting with
/// `indent`.
pub(super) fn wrap(buf: &mut String, text: &str, width: usize, indent: &str) {
    let mut line_len = 0;
    let mut at_start = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        for piece in split_long(word) {
            if !at_start && line_len + 1 + piece.len() > width {
                buf.push('\n');
                buf.push_str(indent);
                line_len = indent.len();
                at_start = true;
            }
            if !at_start {
                buf.push(' ');
                line_len += 1;
            }
            buf.push_str(piece);
            line_len += piece.len();
            at_start = false;
        }
    }
    buf.push('\n');
}

/// Splits an ASCII word into pieces of at most [`MAX_WORD`] bytes.
fn split_long(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(MAX_WORD);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}
