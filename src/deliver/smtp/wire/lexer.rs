//! Bytes to line content fragments and line ends: the lexer both passes
//! feed, with the single-byte lookahead that tells CRLF from a lone CR.
//! Line ends are found with `memchr2` (SIMD): this scan runs over every
//! byte of every message, twice (plan and stream). At each line start the
//! engine is first offered the rest of the piece ([`Engine::bulk`]), which
//! takes the run of ordinary body lines without a call per line.

use super::*;

#[derive(Default)]
pub(super) struct Lexer {
    pub(super) pending_cr: bool,
}

impl Lexer {
    pub(super) fn feed(&mut self, input: &[u8], e: &mut Engine<'_>) {
        let mut rest = input;
        if self.pending_cr {
            self.pending_cr = false;
            e.eol();
            if let Some((b'\n', tail)) = rest.split_first() {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            rest = rest.get(e.bulk(rest)..).unwrap_or_default();
            match memchr::memchr2(b'\r', b'\n', rest) {
                None => {
                    e.data(rest);
                    break;
                }
                Some(i) => {
                    let (line, tail) = rest.split_at(i);
                    e.data(line);
                    match tail.split_first() {
                        Some((b'\r', after)) => match after.split_first() {
                            None => {
                                self.pending_cr = true;
                                rest = after;
                            }
                            Some((b'\n', after_lf)) => {
                                e.eol();
                                rest = after_lf;
                            }
                            Some(_) => {
                                e.eol();
                                rest = after;
                            }
                        },
                        Some((_, after)) => {
                            e.eol();
                            rest = after;
                        }
                        None => break,
                    }
                }
            }
        }
    }

    pub(super) fn finish(&mut self, e: &mut Engine<'_>) {
        if self.pending_cr {
            self.pending_cr = false;
            e.eol();
        }
        e.eof();
    }
}
