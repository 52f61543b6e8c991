//! PLACEHOLDER — replaced by the real wire normaliser.
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

#[derive(Debug, Clone, Copy)]
pub struct WireOptions {
    pub eight_bit_ok: bool,
}

#[derive(Debug, Clone)]
pub struct WirePlan {
    pub size: u64,
    pub eight_bit: bool,
    pub reencoded_parts: usize,
    pub folded_header_lines: usize,
}

fn normalise(data: &[u8], prev_cr: &mut bool, out: &mut Vec<u8>) {
    for &b in data {
        match b {
            b'\n' => {
                if !*prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                *prev_cr = false;
            }
            b'\r' => {
                if *prev_cr {
                    out.extend_from_slice(b"\n\r");
                } else {
                    out.push(b'\r');
                }
                *prev_cr = true;
                continue;
            }
            _ => {
                if *prev_cr {
                    out.push(b'\n');
                }
                out.push(b);
                *prev_cr = false;
            }
        }
    }
}

fn all(file: &File, start: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, start)?;
    let mut out = Vec::new();
    let mut cr = false;
    normalise(&buf, &mut cr, &mut out);
    if cr {
        out.push(b'\n');
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    Ok(out)
}

pub fn plan(file: &File, start: u64, len: u64, _opts: WireOptions) -> io::Result<WirePlan> {
    let out = all(file, start, len)?;
    Ok(WirePlan {
        size: out.len() as u64,
        eight_bit: out.iter().any(|&b| b >= 0x80),
        reencoded_parts: 0,
        folded_header_lines: 0,
    })
}

pub struct WireStream<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    done: bool,
}

impl Iterator for WireStream<'_> {
    type Item = io::Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.done = true;
        Some(all(self.file, self.start, self.len))
    }
}

pub fn stream<'a>(file: &'a File, start: u64, len: u64, _plan: &'a WirePlan) -> WireStream<'a> {
    WireStream {
        file,
        start,
        len,
        done: false,
    }
}
