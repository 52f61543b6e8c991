//! End-to-end tests of the wire form: plan and stream over real files,
//! checked against independent decoders and random messages.

use super::*;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

// --- harness -------------------------------------------------------------

fn opts(eight_bit_ok: bool) -> WireOptions {
    WireOptions { eight_bit_ok }
}

/// Spool `msg` behind some junk (so `start` matters), move the cursor
/// elsewhere, plan, stream, and check every invariant.
fn run(msg: &[u8], eight_bit_ok: bool) -> (WirePlan, Vec<u8>) {
    let mut f = tempfile::tempfile().expect("tempfile");
    let prefix = b"JUNK-BEFORE\n\r\n";
    f.write_all(prefix).expect("write");
    f.write_all(msg).expect("write");
    f.write_all(b"\nJUNK-AFTER\n").expect("write");
    f.seek(SeekFrom::Start(3)).expect("seek");
    let start = prefix.len() as u64;
    let len = msg.len() as u64;
    let plan = plan(&f, start, len, opts(eight_bit_ok)).expect("plan");
    let mut out = Vec::new();
    for chunk in stream(&f, start, len, &plan) {
        let chunk = chunk.expect("stream");
        assert!(!chunk.is_empty() && chunk.len() <= CHUNK);
        out.extend_from_slice(&chunk);
    }
    assert_eq!(plan.size, out.len() as u64, "plan.size != streamed bytes");
    assert_eq!(
        plan.eight_bit,
        out.iter().any(|&b| b >= 0x80),
        "eight_bit flag"
    );
    assert_eq!(plan.reencoded_parts, plan.edits.len());
    check_wire(&out);
    for pace in [
        Pace {
            read: None,
            bulk: false,
        },
        Pace {
            read: Some(1),
            bulk: true,
        },
        Pace {
            read: Some(7),
            bulk: true,
        },
        Pace {
            read: Some(100),
            bulk: true,
        },
    ] {
        let (p, o) = walk_with(&f, start, len, eight_bit_ok, pace);
        assert_eq!(
            (p.size, p.eight_bit, &p.edits, p.folded_header_lines),
            (
                plan.size,
                plan.eight_bit,
                &plan.edits,
                plan.folded_header_lines
            ),
            "plan with {pace:?}"
        );
        assert!(o == out, "stream with {pace:?} differs");
    }
    (plan, out)
}

/// Plan and stream with another pace (read size, bulk path on or off).
fn walk_with(f: &File, start: u64, len: u64, ok: bool, pace: Pace) -> (WirePlan, Vec<u8>) {
    let p = plan_in(f, start, len, opts(ok), pace).expect("plan");
    let mut out = Vec::new();
    for chunk in stream_in(f, start, len, &p, pace) {
        out.extend_from_slice(&chunk.expect("stream"));
    }
    (p, out)
}

/// The computed length of a plain quoted-printable line is what the encoder
/// writes, and every line it declines is one the formula would get wrong
/// or that holds a byte outside its domain.
#[test]
fn plain_qp_line_length_matches_the_encoder() {
    let mut r = Rng(0x51_7CC1_B727_220A);
    let alphabet: &[u8] = b"ab-- \t=.~\x01\xc3";
    let mut computed = 0;
    for case in 0..20_000 {
        let len = match r.below(4) {
            0 => r.below(8),
            1 => 70 + r.below(12),
            2 => 145 + r.below(12),
            _ => r.below(998),
        } as usize;
        let plain_only = r.chance(70);
        let line: Vec<u8> = (0..len)
            .map(|_| {
                if plain_only {
                    *b"abz- \t.~".get(r.below(9) as usize).unwrap_or(&b'a')
                } else {
                    *alphabet
                        .get(r.below(alphabet.len() as u64) as usize)
                        .unwrap_or(&b'a')
                }
            })
            .collect();
        let mut enc = QpEnc::default();
        let mut c = Counter::default();
        enc.data(&line, &mut c);
        enc.eol(&mut c);
        if let Some(n) = QpEnc::plain_line_len(&line) {
            computed += 1;
            assert_eq!(
                n,
                c.bytes,
                "case {case}: {:?}",
                String::from_utf8_lossy(&line)
            );
        }
    }
    assert!(computed > 5_000, "too few plain lines: {computed}");
}

/// Copy of lettre 0.11's `ClientCodec::encode` (transparency).
fn lettre_stuff(frame: &[u8]) -> Vec<u8> {
    #[derive(Clone, Copy)]
    enum St {
        Middle,
        Starting,
        Start,
    }
    let mut st = St::Start;
    let mut buf = Vec::with_capacity(frame.len() + 8);
    for &b in frame {
        buf.push(b);
        match (b, st) {
            (b'\r', _) => st = St::Starting,
            (b'\n', St::Starting) => st = St::Start,
            (_, St::Starting) => st = St::Middle,
            (b'.', St::Start) => {
                st = St::Middle;
                buf.push(b'.');
            }
            (_, St::Start) => st = St::Middle,
            _ => {}
        }
    }
    buf.extend_from_slice(b"\r\n.\r\n");
    buf
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// CRLF only, no line over 998, no smuggling pattern
/// once lettre has stuffed it and appended the terminator.
fn check_wire(out: &[u8]) {
    let mut line = 0usize;
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "lone CR at {i}"),
            b'\n' => {
                assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
                line = 0;
            }
            _ => {
                line += 1;
                assert!(line <= MAX_LINE, "line over 998 octets ending near {i}");
            }
        }
    }
    let wire = lettre_stuff(out);
    let body = &wire[..wire.len() - 5];
    assert_eq!(
        find(&wire, b"\r\n.\r\n"),
        Some(wire.len() - 5),
        "early end of data"
    );
    assert_eq!(find(body, b"\n.\r\n"), None);
    assert_eq!(find(&wire, b"\n.\n"), None);
    assert_eq!(find(&wire, b"\r.\r"), None);
}

/// CRLF / CR / LF -> CRLF, then drop one trailing CRLF (what SMTP
/// delivers for the input).
fn normalize(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 8);
    let mut i = 0;
    while let Some(&b) = msg.get(i) {
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if msg.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
        i += 1;
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

// --- test-side MIME walker and decoders ------------------------------------

fn qp_decode(body: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::new();
    let lines: Vec<&[u8]> = split_crlf(body);
    for (n, line) in lines.iter().enumerate() {
        let mut l = *line;
        while let Some((&last, rest)) = l.split_last() {
            if last == b' ' || last == b'\t' {
                l = rest;
            } else {
                break;
            }
        }
        let soft = l.ends_with(b"=");
        if soft {
            l = &l[..l.len() - 1];
        }
        let mut i = 0;
        while i < l.len() {
            if l[i] == b'='
                && i + 2 < l.len()
                && let (Some(h), Some(lo)) = (hex(l[i + 1]), hex(l[i + 2]))
            {
                out.push(h << 4 | lo);
                i += 3;
                continue;
            }
            out.push(l[i]);
            i += 1;
        }
        if !soft && n + 1 < lines.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn b64_decode(body: &[u8]) -> Vec<u8> {
    use base64::Engine;
    // Lenient like a mail reader: line breaks (and padding) are skipped.
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD_INDIFFERENT
        .decode(clean)
        .expect("valid base64")
}

fn b64_encode(data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(data)
        .into_bytes()
}

fn split_crlf(b: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\r' && b[i + 1] == b'\n' {
            v.push(&b[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    v.push(&b[start..]);
    v
}

#[derive(Debug, Clone, PartialEq)]
struct Leaf {
    ctype: String,
    cte: String,
    raw: Vec<u8>,
    decoded: Vec<u8>,
}

fn header_fields(h: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for line in split_crlf(h) {
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let Some(f) = fields.last_mut() {
                f.1.extend_from_slice(line);
            }
        } else if let Some(c) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..c])
                .trim()
                .to_ascii_lowercase();
            fields.push((name, line[c + 1..].to_vec()));
        }
    }
    fields
}

fn field(fields: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|f| f.0 == name)
        .map(|f| String::from_utf8_lossy(&f.1).trim().to_string())
}

fn test_boundary(ct: &str) -> Option<String> {
    let lower = ct.to_ascii_lowercase();
    let i = lower.find("boundary=")? + "boundary=".len();
    let rest = &ct[i..];
    if let Some(q) = rest.strip_prefix('"') {
        Some(q[..q.find('"')?].to_string())
    } else {
        Some(rest.split([';', ' ', '\t']).next()?.to_string())
    }
}

/// Transfer encoding without comments, lower case.
fn test_cte(v: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in v.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim_matches([' ', '\t']).to_ascii_lowercase()
}

/// Leaves of a CRLF message, in order (simple walker, enough for the
/// messages these tests build).
fn leaves(msg: &[u8]) -> Vec<Leaf> {
    let mut out = Vec::new();
    walk(msg, false, &mut out);
    out
}

fn walk(data: &[u8], digest: bool, out: &mut Vec<Leaf>) {
    // Header ends at an empty line or at a line that is neither a field
    // nor a continuation (that line starts the body).
    let mut pos = 0;
    let mut body_at = data.len();
    while pos < data.len() {
        let end = find(&data[pos..], b"\r\n").map_or(data.len(), |i| pos + i);
        let line = &data[pos..end];
        let next = (end + 2).min(data.len());
        if line.is_empty() {
            body_at = next;
            break;
        }
        let is_cont = line[0] == b' ' || line[0] == b'\t';
        let name = line
            .iter()
            .take_while(|&&c| (33..=126).contains(&c) && c != b':')
            .count();
        let rest = &line[name..];
        let ws = rest
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        let is_field = name > 0 && rest.get(ws) == Some(&b':');
        if !is_cont && !is_field {
            body_at = pos;
            break;
        }
        pos = next;
    }
    let h = &data[..body_at.min(pos)];
    let body = &data[body_at..];
    let fields = header_fields(h);
    let ct = field(&fields, "content-type").unwrap_or_else(|| {
        if digest {
            "message/rfc822"
        } else {
            "text/plain"
        }
        .to_string()
    });
    let cte = test_cte(&field(&fields, "content-transfer-encoding").unwrap_or_default());
    let lct = ct.to_ascii_lowercase();
    let identity = matches!(cte.as_str(), "" | "7bit" | "8bit" | "binary");
    if identity
        && lct.starts_with("multipart/")
        && let Some(b) = test_boundary(&ct)
    {
        let delim = format!("--{b}").into_bytes();
        let close = format!("--{b}--").into_bytes();
        let mut part: Option<Vec<&[u8]>> = None;
        for line in split_crlf(body) {
            let t = trim(line);
            if t == close.as_slice() || t == delim.as_slice() {
                if let Some(p) = part.take() {
                    walk(
                        &p.join(&b"\r\n"[..]),
                        lct.starts_with("multipart/digest"),
                        out,
                    );
                }
                if t == close.as_slice() {
                    return;
                }
                part = Some(Vec::new());
            } else if let Some(p) = part.as_mut() {
                p.push(line);
            }
        }
        if let Some(p) = part.take() {
            walk(&p.join(&b"\r\n"[..]), false, out);
        }
    } else if identity && lct.starts_with("message/rfc822") {
        walk(body, false, out);
    } else {
        let decoded = match cte.as_str() {
            "quoted-printable" => qp_decode(body),
            "base64" => b64_decode(body),
            _ => body.to_vec(),
        };
        out.push(Leaf {
            ctype: ct,
            cte,
            raw: body.to_vec(),
            decoded,
        });
    }
}

fn assert_same_content(input: &[u8], out: &[u8]) {
    let a = leaves(&normalize(input));
    let b = leaves(out);
    assert_eq!(a.len(), b.len(), "leaf count");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            x.decoded == y.decoded,
            "leaf {i} content differs:\n in: {:?}\nout: {:?}",
            String::from_utf8_lossy(&x.decoded),
            String::from_utf8_lossy(&y.decoded)
        );
    }
}

fn lines(out: &[u8]) -> Vec<&[u8]> {
    split_crlf(out)
}

// --- line endings, final CRLF, dots ----------------------------------------

#[test]
fn line_endings_normalised() {
    let (p, out) = run(b"Subject: x\n\nline1\rline2\r\nline3\n", true);
    assert_eq!(out, b"Subject: x\r\n\r\nline1\r\nline2\r\nline3");
    assert_eq!(p.reencoded_parts, 0);
    let (_, out) = run(b"A: 1\r\rB\r\n\n\rC", true);
    assert_eq!(out, b"A: 1\r\n\r\nB\r\n\r\n\r\nC");
    // CR at a read boundary (16 KiB / 64 KiB) is still one CRLF.
    let mut m = b"Subject: x\n\n".to_vec();
    for boundary in [STREAM_READ, PLAN_READ, PLAN_READ + STREAM_READ + 1] {
        while m.len() + 200 < boundary - 1 {
            m.extend_from_slice(&[b'a'; 99]);
            m.push(b'\n');
        }
        m.resize(boundary - 1, b'b');
        m.extend_from_slice(b"\r\nc\r");
    }
    m.extend_from_slice(b"\rd");
    let (_, out) = run(&m, true);
    assert_eq!(out, normalize(&m));
}

#[test]
fn trailing_crlf_dropped_once() {
    for (input, want) in [
        (&b"a\n"[..], &b"a"[..]),
        (b"a\n\n", b"a\r\n"),
        (b"a", b"a"),
        (b"", b""),
        (b"a\r\n", b"a"),
        (b"a\r", b"a"),
        (b"a\r\n\r\n", b"a\r\n"),
        (b"\n", b""),
        (b"\n\n", b"\r\n"),
        (b"S: x\n\nbody\n", b"S: x\r\n\r\nbody"),
    ] {
        let (p, out) = run(input, true);
        assert_eq!(out, want, "input {input:?}");
        assert_eq!(p.size, want.len() as u64);
    }
}

#[test]
fn dot_after_bare_lf_is_a_crlf_line_start() {
    let input = b"Subject: x\n\nfoo\n.\nbar\n.\r.x\n..\n.";
    let (_, out) = run(input, true);
    assert_eq!(
        out,
        b"Subject: x\r\n\r\nfoo\r\n.\r\nbar\r\n.\r\n.x\r\n..\r\n."
    );
    let wire = lettre_stuff(&out);
    assert_eq!(
        wire,
        b"Subject: x\r\n\r\nfoo\r\n..\r\nbar\r\n..\r\n..x\r\n...\r\n..\r\n.\r\n"
    );
    // Smuggling attempts: every variant ends up stuffed.
    for evil in [
        &b"S: x\n\na\n.\nMAIL FROM:<x>\n"[..],
        b"S: x\n\na\r.\rMAIL FROM:<x>\n",
        b"S: x\n\na\r\n.\nMAIL FROM:<x>\n",
        b"S: x\n\na\n.\r\nMAIL FROM:<x>\n",
        b"S: x\n\na\r\n.\r\nMAIL FROM:<x>\n",
        b".\n",
        b"\n.\n",
    ] {
        for ok in [true, false] {
            let (_, out) = run(evil, ok);
            check_wire(&out);
        }
    }
}

// --- re-encoding -------------------------------------------------------

#[test]
fn long_line_plain_text_becomes_qp() {
    let long: String = (0..1500).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let body = format!("short line\n{long}\nlast line = with equals \n");
    let input = format!("From: a@example.org\nSubject: long\n\n{body}");
    let (p, out) = run(input.as_bytes(), true);
    assert_eq!(p.reencoded_parts, 1);
    assert!(!p.eight_bit);
    let s = String::from_utf8(out.clone()).expect("ascii");
    assert!(s.contains("\r\nMIME-Version: 1.0\r\n"));
    assert!(s.contains("\r\nContent-Type: text/plain\r\n"));
    assert!(s.contains("\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"));
    assert!(s.contains("\r\nlast line =3D with equals=20"));
    for l in lines(&out) {
        assert!(l.len() <= 76 || l.starts_with(b"From") || l.starts_with(b"Subject"));
    }
    assert_same_content(input.as_bytes(), &out);
    // Independent check with mail-parser.
    let msg = mail_parser::MessageParser::default()
        .parse(&out)
        .expect("parse");
    let text = msg.body_text(0).expect("text");
    assert_eq!(text.replace("\r\n", "\n"), body.trim_end_matches('\n'));
}

#[test]
fn qp_trailing_ws_and_leading_dash() {
    let long = "x".repeat(1200);
    let input = format!("S: y\n\n{long}\n-- \n--b\ntab\t\n \n");
    let (_, out) = run(input.as_bytes(), true);
    let s = String::from_utf8(out.clone()).expect("ascii");
    assert!(s.contains("\r\n=2D-=20\r\n=2D-b\r\ntab=09\r\n=20"), "{s}");
    assert_same_content(input.as_bytes(), &out);
    // A soft break must never make a boundary line appear.
    let part = format!("{}--frontier  ", "y".repeat(75 - 2)) + &"z".repeat(1000);
    let input = format!(
        "Content-Type: multipart/mixed; boundary=frontier\n\n--frontier\n\n{part}\n--frontier--\n"
    );
    let (p, out) = run(input.as_bytes(), true);
    assert_eq!(p.reencoded_parts, 1);
    let delims = lines(&out)
        .iter()
        .filter(|l| l.starts_with(b"--frontier"))
        .count();
    assert_eq!(delims, 2);
    assert_same_content(input.as_bytes(), &out);
}

#[test]
fn eight_bit_utf8_body() {
    let input = "From: a@example.org\nSubject: hi\n\nGrüße, 日本語\nzweite Zeile\n";
    let (p, out) = run(input.as_bytes(), true);
    assert!(p.eight_bit);
    assert_eq!(p.reencoded_parts, 0);
    assert_eq!(out, normalize(input.as_bytes()));

    let (p, out) = run(input.as_bytes(), false);
    assert!(!p.eight_bit);
    assert_eq!(p.reencoded_parts, 1);
    let s = String::from_utf8(out.clone()).expect("ascii");
    assert!(s.contains("Content-Type: text/plain; charset=utf-8\r\n"));
    assert!(s.contains("Gr=C3=BC=C3=9Fe"));
    assert_same_content(input.as_bytes(), &out);
    let msg = mail_parser::MessageParser::default()
        .parse(&out)
        .expect("parse");
    assert_eq!(
        msg.body_text(0).expect("text").replace("\r\n", "\n"),
        "Grüße, 日本語\nzweite Zeile"
    );
}

#[test]
fn eight_bit_charset_choice_and_existing_headers() {
    // Not UTF-8 -> unknown-8bit.
    let (_, out) = run(b"S: x\n\nlatin1 \xe9t\xe9\n", false);
    let s = String::from_utf8_lossy(&out);
    assert!(s.contains("Content-Type: text/plain; charset=unknown-8bit\r\n"));
    assert!(s.contains("latin1 =E9t=E9"));
    // UTF-8 sequence split by a line break is not UTF-8.
    let (_, out) = run(b"S: x\n\n\xc3\n\xa9\n", false);
    assert!(String::from_utf8_lossy(&out).contains("charset=unknown-8bit"));
    // MIME message with its own Content-Type and CTE: CTE replaced, nothing added.
    let input = b"MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8BIT (raw)\nX-After: 1\n\ncaf\xe9\n";
    let (p, out) = run(input, false);
    assert_eq!(p.reencoded_parts, 1);
    assert_eq!(
        out,
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nX-After: 1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9"
    );
    // Folded CTE field is removed whole.
    let input = b"Content-Type: text/plain\nContent-Transfer-Encoding:\n  8bit\nX: y\n\nnul\0\n";
    let (_, out) = run(input, true);
    assert_eq!(
        out,
        b"Content-Type: text/plain\r\nX: y\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nnul=00"
    );
    // Pure 8-bit-free message with eight_bit_ok=false is untouched.
    let (p, out) = run(b"S: x\n\nhello\n", false);
    assert_eq!(
        (p.reencoded_parts, out.as_slice()),
        (0, &b"S: x\r\n\r\nhello"[..])
    );
}

#[test]
fn nul_in_body_becomes_qp() {
    let input = b"Subject: nul\n\nbefore\0after\n";
    let (p, out) = run(input, true);
    assert_eq!(p.reencoded_parts, 1);
    assert!(find(&out, b"before=00after").is_some());
    assert!(!out.contains(&0));
    assert_same_content(input, &out);
}

#[test]
fn multipart_long_text_and_base64_attachment() {
    let attach: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let b64 = b64_encode(&attach);
    let b64_lines: Vec<&[u8]> = b64.chunks(76).collect();
    let b64_text = b64_lines.join(&b"\n"[..]);
    let long = "word ".repeat(400);
    let mut input = format!(
        "From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed;\n boundary=\"=_outer (x)\"\n\npreamble\n--=_outer (x)\nContent-Type: text/plain; charset=us-ascii\n\n{long}\nend\n--=_outer (x)\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    )
    .into_bytes();
    input.extend_from_slice(&b64_text);
    input.extend_from_slice(b"\n--=_outer (x)--\nepilogue\n");
    let (p, out) = run(&input, true);
    assert_eq!(p.reencoded_parts, 1);
    let mut crlf_b64 = b64_lines.join(&b"\r\n"[..]);
    crlf_b64.extend_from_slice(b"\r\n--=_outer (x)--");
    assert!(find(&out, &crlf_b64).is_some(), "attachment changed");
    assert_same_content(&input, &out);
    let ls = leaves(&out);
    assert_eq!(ls.len(), 2);
    assert_eq!(ls[0].cte, "quoted-printable");
    assert_eq!(ls[1].decoded, attach);
    let msg = mail_parser::MessageParser::default()
        .parse(&out)
        .expect("parse");
    assert_eq!(
        msg.attachment(0).expect("attachment").contents(),
        attach.as_slice()
    );
    assert_eq!(
        msg.body_text(0).expect("text").replace("\r\n", "\n"),
        format!("{long}\nend")
    );
}

#[test]
fn base64_single_long_line_rewrapped() {
    let data: Vec<u8> = (0..3750u32).map(|i| (i * 31 % 251) as u8).collect();
    let b64 = b64_encode(&data);
    assert_eq!(b64.len(), 5000);
    let mut input =
        b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n".to_vec();
    input.extend_from_slice(&b64);
    input.push(b'\n');
    let (p, out) = run(&input, true);
    assert_eq!(p.reencoded_parts, 0);
    let ls = lines(&out);
    let body: Vec<&&[u8]> = ls.iter().skip(3).collect();
    assert!(body.iter().all(|l| l.len() <= B64_LINE));
    assert_eq!(body.len(), 5000usize.div_ceil(76));
    assert_eq!(leaves(&out)[0].decoded, data);
    assert_same_content(&input, &out);
}

#[test]
fn long_qp_lines_get_soft_breaks() {
    let mut raw = Vec::new();
    for i in 0..1200u32 {
        match i % 5 {
            0 => raw.extend_from_slice(b"=3D"),
            1 => raw.extend_from_slice(b"=C3=A9"),
            2 => raw.push(b' '),
            _ => raw.push(b'a' + (i % 26) as u8),
        }
    }
    let mut input =
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
            .to_vec();
    input.extend_from_slice(&raw);
    input.extend_from_slice(b"\nshort=\nline\n");
    let (p, out) = run(&input, true);
    assert_eq!(p.reencoded_parts, 0);
    for l in lines(&out).iter().skip(3) {
        assert!(l.len() <= QP_LINE);
        // No escape cut: every '=' has two hex digits or is a soft break.
        for (i, &b) in l.iter().enumerate() {
            if b == b'=' && i + 1 != l.len() {
                assert!(l.len() >= i + 3, "escape cut in {l:?}");
            }
        }
    }
    assert_same_content(&input, &out);
}

#[test]
fn long_header_folded() {
    let words: String = (0..400).map(|i| format!("w{i:03} ")).collect();
    let value = &words[..2000 - "Subject: ".len()];
    let input = format!("Subject: {value}\nTo: b@example.org\n\nbody\n");
    let (p, out) = run(input.as_bytes(), true);
    assert_eq!(p.folded_header_lines, 1);
    assert_eq!(p.reencoded_parts, 0);
    let s = String::from_utf8(out).expect("ascii");
    let (head, body) = s.split_once("\r\n\r\n").expect("blank line");
    assert_eq!(body, "body");
    assert_eq!(
        head.replace("\r\n", ""),
        format!("Subject: {value}To: b@example.org")
    );
    let first = head.split("\r\n").next().expect("line");
    assert!(first.len() <= MAX_LINE && first.len() > MAX_LINE - 10);

    // No whitespace at all: CRLF + SPACE inserted at the limit.
    let blob = "x".repeat(2500);
    let input = format!("X-Blob:{blob}\n\nb");
    let (p, out) = run(input.as_bytes(), true);
    assert_eq!(p.folded_header_lines, 1);
    let s = String::from_utf8(out).expect("ascii");
    let head = s.split("\r\n\r\n").next().expect("head");
    let ls: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(ls.len(), 3);
    assert_eq!(ls[0].len(), MAX_LINE);
    assert!(ls[1].starts_with(' ') && ls[2].starts_with(' '));
    assert_eq!(head.replace("\r\n ", ""), format!("X-Blob:{blob}"));

    // Long continuation line, and a colon-less long line ending the header.
    let input = format!("A: b\n {blob}\n{blob}\n");
    let (_, out) = run(input.as_bytes(), true);
    assert!(String::from_utf8_lossy(&out).contains("A: b\r\n x"));
}

#[test]
fn non_header_line_ends_header() {
    let input = b"Subject: x\nthis is the body\0 with a NUL\n";
    let (p, out) = run(input, true);
    assert_eq!(p.reencoded_parts, 1);
    assert_eq!(
        out,
        b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nthis is the body=00 with a NUL"
    );
    // Headers only, no body.
    let (p, out) = run(b"Subject: x\nX: y", true);
    assert_eq!(
        (p.reencoded_parts, out.as_slice()),
        (0, &b"Subject: x\r\nX: y"[..])
    );
}

// --- structure ---------------------------------------------------------

#[test]
fn boundary_forms() {
    for ct in [
        "multipart/mixed; boundary=simple",
        "multipart/mixed; boundary=\"simple\"",
        "Multipart/Mixed (c); (x) BOUNDARY = \"simple\" (y)",
        "multipart/mixed; boundary*=us-ascii'en'simple",
        "multipart/mixed; boundary*0=sim; boundary*1=\"ple\"",
        "multipart/mixed; charset=\"a;b\"; boundary=simple",
    ] {
        let long = "q".repeat(1100);
        let input = format!(
            "Content-Type: {ct}\n\n--simple\n\n{long}\n--simple  \nContent-Type: text/plain\n\nshort\n--simple--\n"
        );
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.reencoded_parts, 1, "{ct}");
        let s = String::from_utf8(out).expect("ascii");
        let (_, qp) = s
            .split_once("--simple\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
            .expect("re-encoded part");
        let (qp, rest) = qp.split_once("\r\n--simple  \r\n").expect("delimiter");
        assert_eq!(qp_decode(qp.as_bytes()), long.as_bytes());
        assert_eq!(rest, "Content-Type: text/plain\r\n\r\nshort\r\n--simple--");
    }
}

#[test]
fn message_rfc822_and_digest() {
    let long = "r".repeat(1100);
    let input = format!(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: inner\n\n{long}\n--d\nContent-Type: message/rfc822\n\nSubject: inner2\nContent-Type: text/plain\n\nnul\0\n--d--\n"
    );
    let (p, out) = run(input.as_bytes(), true);
    assert_eq!(p.reencoded_parts, 2);
    let s = String::from_utf8(out.clone()).expect("ascii");
    // Embedded messages get MIME-Version (and Content-Type if missing).
    assert!(s.contains("Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nrrr"));
    assert!(s.contains("Subject: inner2\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nnul=00\r\n--d--"));
    assert_same_content(input.as_bytes(), &out);
}

#[test]
fn nested_multipart_and_encoded_composites() {
    let long = "n".repeat(1100);
    let input = format!(
        "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\n{long}\n--o\nContent-Type: text/plain\n\n{long}\n--o\nContent-Type: multipart/mixed; boundary=z\nContent-Transfer-Encoding: base64\n\n{long}\n--o--\n"
    );
    let (p, out) = run(input.as_bytes(), true);
    // Inner part (unterminated inner multipart, closed by outer boundary)
    // and the second part are re-encoded; the base64 "multipart" is
    // rewrapped as base64.
    assert_eq!(p.reencoded_parts, 2);
    assert_same_content(input.as_bytes(), &out);
}

#[test]
fn unknown_encoding_and_preamble_hard_wrapped() {
    let long = "u".repeat(2100);
    let input = format!(
        "Content-Type: multipart/mixed; boundary=b\n\n{long}\n--b\nContent-Transfer-Encoding: x-uuencode\n\n{long}\n--b--\n{long}\n"
    );
    let (p, out) = run(input.as_bytes(), true);
    assert_eq!(p.reencoded_parts, 0);
    let ls = lines(&out);
    assert_eq!(ls.iter().filter(|l| l.len() == MAX_LINE).count(), 6);
}

#[test]
fn depth_limit() {
    let depth = 60;
    let mut input = String::new();
    for d in 0..depth {
        input.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=lvl{d}\n\n--lvl{d}\n"
        ));
    }
    input.push_str(&format!("\n{}\n", "d".repeat(1500)));
    for d in (0..depth).rev() {
        input.push_str(&format!("--lvl{d}--\n"));
    }
    for ok in [true, false] {
        let (p, out) = run(input.as_bytes(), ok);
        // Past depth 50 the rest is opaque: hard-wrapped, not re-encoded.
        assert_eq!(p.reencoded_parts, 0);
        assert!(lines(&out).iter().any(|l| l.len() == MAX_LINE));
    }
    // At depth 49 it is still re-encoded.
    let mut input = String::new();
    for d in 0..49 {
        input.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=lvl{d}\n\n--lvl{d}\n"
        ));
    }
    input.push_str(&format!("\n{}\n", "d".repeat(1500)));
    let (p, out) = run(input.as_bytes(), true);
    assert_eq!(p.reencoded_parts, 1);
    assert_same_content(input.as_bytes(), &out);
}

#[test]
fn part_count_limit() {
    let mut input = String::from("Content-Type: multipart/mixed; boundary=p\n\n");
    for _ in 0..10_050 {
        input.push_str("--p\n\nnul\0\n");
    }
    input.push_str("--p--\n");
    let (p, _) = run(input.as_bytes(), true);
    // Entity 0 is the message itself; 9,999 parts fit under the limit.
    assert_eq!(p.reencoded_parts, MAX_PARTS as usize - 1);
    assert!(p.edits.len() < MAX_PARTS as usize);
}

// --- errors ---------------------------------------------------------------

#[test]
fn short_file_is_unexpected_eof() {
    let mut f = tempfile::tempfile().expect("tempfile");
    f.write_all(b"Subject: x\n\nbody\n").expect("write");
    let e = plan(&f, 0, 100, opts(true)).expect_err("short");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    let e = plan(&f, u64::MAX, 2, opts(true)).expect_err("overflow");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    // Plan fine, file truncated before streaming.
    let p = plan(&f, 0, 17, opts(true)).expect("plan");
    f.set_len(5).expect("truncate");
    let mut s = stream(&f, 0, 17, &p);
    let e = s.next().expect("item").expect_err("eof");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(s.next().is_none());
}

#[test]
fn changed_file_is_detected() {
    let mut f = tempfile::tempfile().expect("tempfile");
    f.write_all(b"Subject: x\n\nbody\n").expect("write");
    let p = plan(&f, 0, 17, opts(true)).expect("plan");
    f.write_all_at(b"Subject: x\n\nbo\0\n", 0).expect("rewrite");
    let items: Vec<io::Result<Vec<u8>>> = stream(&f, 0, 17, &p).collect();
    let last = items.last().expect("item");
    assert_eq!(
        last.as_ref().expect_err("mismatch").kind(),
        io::ErrorKind::InvalidData
    );
    let mut s = stream(&f, 1, 16, &p);
    assert_eq!(
        s.next().expect("item").expect_err("range").kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(s.next().is_none());
}

// --- size / memory --------------------------------------------------------

#[test]
fn twenty_megabytes_bounded() {
    let mut f = tempfile::tempfile().expect("tempfile");
    let mut w = io::BufWriter::new(&mut f);
    w.write_all(b"From: a@example.org\nContent-Type: multipart/mixed; boundary=big\n\n--big\nContent-Type: text/plain\n\n").expect("w");
    let line = b"The quick brown fox jumps over the lazy dog. 0123456789\n";
    let mut total = 0usize;
    while total < 10_000_000 {
        w.write_all(line).expect("w");
        total += line.len();
    }
    w.write_all(b"--big\nContent-Type: text/plain\n\n")
        .expect("w");
    // One 9 MB line: forces quoted-printable of a huge line.
    let chunk = [b'z'; 4096];
    for _ in 0..(9_000_000 / 4096) {
        w.write_all(&chunk).expect("w");
    }
    w.write_all(b"\n--big\nContent-Transfer-Encoding: base64\n\n")
        .expect("w");
    for _ in 0..(1_500_000 / 4096) {
        w.write_all(&[b'Q'; 4096]).expect("w");
    }
    w.write_all(b"\n--big--\n").expect("w");
    w.flush().expect("flush");
    drop(w);
    let len = f.metadata().expect("meta").len();
    assert!(len > 20_000_000);
    for ok in [true, false] {
        let p = plan(&f, 0, len, opts(ok)).expect("plan");
        assert_eq!(p.edits.len(), 1);
        assert!(p.edits.capacity() < 16);
        let mut n = 0u64;
        let mut col = 0usize;
        let mut prev = 0u8;
        let mut max_chunk = 0;
        for c in stream(&f, 0, len, &p) {
            let c = c.expect("chunk");
            max_chunk = max_chunk.max(c.len());
            assert!(c.len() <= CHUNK);
            for &b in &c {
                match b {
                    b'\n' => {
                        assert_eq!(prev, b'\r');
                        col = 0;
                    }
                    b'\r' => {}
                    _ => {
                        assert_ne!(prev, b'\r');
                        col += 1;
                        assert!(col <= MAX_LINE);
                    }
                }
                prev = b;
            }
            n += c.len() as u64;
        }
        assert_eq!(n, p.size);
        assert_eq!(max_chunk, CHUNK);
    }
}

// --- property test ---------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn gen_len(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=6 => r.below(80) as usize,
        7 | 8 => r.below(1000) as usize,
        _ => r.below(3000) as usize,
    }
}

fn gen_line(r: &mut Rng, len: usize, eight: bool) -> Vec<u8> {
    (0..len)
        .map(|_| match r.below(100) {
            0..=69 => 33 + r.below(94) as u8,
            70..=77 => [b' ', b'\t'][r.below(2) as usize],
            78..=85 if eight => 0x80 + r.below(128) as u8,
            86 | 87 if eight => 0,
            88..=91 => b'.',
            92..=95 => b'-',
            _ => b'=',
        })
        .collect()
}

fn ending(r: &mut Rng) -> &'static [u8] {
    match r.below(20) {
        0..=11 => b"\n",
        12..=16 => b"\r\n",
        _ => b"\r",
    }
}

fn gen_lines(r: &mut Rng, out: &mut Vec<u8>, n: u64, eight: bool) {
    for _ in 0..n {
        let len = gen_len(r);
        out.extend(gen_line(r, len, eight));
        out.extend_from_slice(ending(r));
    }
}

fn gen_headers(r: &mut Rng, out: &mut Vec<u8>) {
    for i in 0..r.below(4) {
        out.extend_from_slice(format!("X-H{i}:").as_bytes());
        let len = if r.chance(15) {
            900 + r.below(2000) as usize
        } else {
            r.below(60) as usize
        };
        let mut v = gen_line(r, len, true);
        if r.chance(50) {
            v.retain(|&b| b != b' ' && b != b'\t');
        }
        out.push(b' ');
        out.extend(v);
        out.extend_from_slice(ending(r));
    }
}

fn gen_entity(r: &mut Rng, out: &mut Vec<u8>, depth: u32, top: bool, counter: &mut u32) {
    gen_headers(r, out);
    let kind = if depth >= 4 { r.below(5) } else { r.below(7) };
    match kind {
        0 | 1 => {
            // Identity text, maybe non-MIME at the top.
            if !(top && r.chance(50)) {
                out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8");
                out.extend_from_slice(ending(r));
                let cte = ["", "7bit", "8bit", "binary", "8BIT (x)"][r.below(5) as usize];
                if !cte.is_empty() {
                    out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}").as_bytes());
                    out.extend_from_slice(ending(r));
                }
            }
            out.extend_from_slice(ending(r));
            let n = r.below(8);
            gen_lines(r, out, n, true);
        }
        2 => {
            out.extend_from_slice(
                b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64",
            );
            out.extend_from_slice(ending(r));
            out.extend_from_slice(ending(r));
            let n = r.below(6000) as usize;
            let data = gen_line(r, n, true);
            let b64 = b64_encode(&data);
            let mut rest = &b64[..];
            while !rest.is_empty() {
                let w = if r.chance(30) {
                    1 + r.below(3000) as usize
                } else {
                    76
                };
                let (a, b) = rest.split_at(w.min(rest.len()));
                out.extend_from_slice(a);
                out.extend_from_slice(ending(r));
                rest = b;
            }
        }
        3 => {
            out.extend_from_slice(
                b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable",
            );
            out.extend_from_slice(ending(r));
            out.extend_from_slice(ending(r));
            for _ in 0..r.below(6) {
                let len = gen_len(r);
                let raw = gen_line(r, len, true);
                let mut enc = Vec::new();
                for (i, &b) in raw.iter().enumerate() {
                    if (33..=126).contains(&b) && b != b'='
                        || ((b == b' ' || b == b'\t') && i + 1 < raw.len())
                    {
                        enc.push(b);
                    } else {
                        enc.extend_from_slice(&hex_escape(b));
                    }
                    if r.chance(1) {
                        enc.extend_from_slice(b"=\n");
                    }
                }
                out.extend(enc);
                out.extend_from_slice(ending(r));
            }
        }
        4 => {
            // Leaf with NUL / 8-bit in an unusual type.
            out.extend_from_slice(b"Content-Type: application/x-thing");
            out.extend_from_slice(ending(r));
            out.extend_from_slice(ending(r));
            let n = r.below(4);
            gen_lines(r, out, n, true);
        }
        5 => {
            *counter += 1;
            let b = format!("=_b{}x{}", *counter, r.below(1_000_000));
            let quoted = r.chance(50);
            let pad = if r.chance(10) {
                format!("; x-pad={}", "p".repeat(1200))
            } else {
                String::new()
            };
            if quoted {
                out.extend_from_slice(
                    format!("Content-Type: multipart/mixed; boundary=\"{b}\"{pad}").as_bytes(),
                );
            } else {
                out.extend_from_slice(b"Content-Type: multipart/mixed;");
                out.extend_from_slice(ending(r));
                out.extend_from_slice(format!("\tboundary=\"{b}\"{pad}").as_bytes());
            }
            out.extend_from_slice(ending(r));
            out.extend_from_slice(ending(r));
            let n = r.below(3);
            gen_lines(r, out, n, true);
            for _ in 0..1 + r.below(3) {
                out.extend_from_slice(format!("--{b}").as_bytes());
                if r.chance(20) {
                    out.extend_from_slice(b"  \t");
                }
                out.extend_from_slice(ending(r));
                gen_entity(r, out, depth + 1, false, counter);
                // The entity's last line needs an ending before the delimiter.
                if !out.ends_with(b"\n") && !out.ends_with(b"\r") {
                    out.extend_from_slice(ending(r));
                }
            }
            out.extend_from_slice(format!("--{b}--").as_bytes());
            out.extend_from_slice(ending(r));
            let n = r.below(3);
            gen_lines(r, out, n, true);
        }
        _ => {
            out.extend_from_slice(b"Content-Type: message/rfc822");
            out.extend_from_slice(ending(r));
            out.extend_from_slice(ending(r));
            gen_entity(r, out, depth + 1, true, counter);
        }
    }
}

#[test]
fn property_random_messages() {
    let seed = std::env::var("WIRE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mut r = Rng(seed);
    let mut reencoded = 0;
    let cases: u32 = std::env::var("WIRE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    for case in 0..cases {
        let mut msg = Vec::new();
        if r.chance(70) {
            msg.extend_from_slice(b"MIME-Version: 1.0\n");
        }
        let mut counter = 0;
        gen_entity(&mut r, &mut msg, 0, true, &mut counter);
        for ok in [true, false] {
            let (p, out) = run(&msg, ok);
            reencoded += p.reencoded_parts;
            let a = leaves(&normalize(&msg));
            let b = leaves(&out);
            assert_eq!(a.len(), b.len(), "case {case}: leaf count");
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                let known = matches!(
                    x.cte.as_str(),
                    "" | "7bit" | "8bit" | "binary" | "base64" | "quoted-printable"
                );
                if !known && split_crlf(&x.raw).iter().any(|l| l.len() > MAX_LINE) {
                    // Unknown encoding with long lines: hard-wrapped (documented).
                    continue;
                }
                assert!(
                    x.decoded == y.decoded,
                    "case {case} ok={ok}: leaf {i} differs ({} -> {})",
                    x.cte,
                    y.cte
                );
                if !ok && known {
                    assert!(
                        y.raw.iter().all(|&c| c < 0x80),
                        "case {case}: 8-bit body left"
                    );
                }
                if y.cte != x.cte {
                    assert_eq!(y.cte, "quoted-printable");
                }
            }
        }
    }
    assert!(reencoded > 100, "generator too tame: {reencoded}");
}
