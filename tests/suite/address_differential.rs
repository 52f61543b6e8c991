//! Differential and robustness tests for `postern::address::parse`.
//!
//! A deterministic generator (xorshift PRNG, fixed seeds) builds address
//! lists from well-formed pieces and knows what each one should parse to.
//! Every list is checked against that model, and the lists that only use
//! forms mail-parser 0.11.9 handles correctly are also checked against
//! mail-parser. Finally the fuzz corpus is replayed.

use mail_parser::MessageParser;
use postern::address::parse::{Mailbox, parse_address_list, parse_single_address};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const LOCALS: &[&str] = &[
    "a",
    "john.doe",
    "x+tag",
    "first_last",
    "o'neil",
    "user-1",
    "jörg",
    "a.b.c",
    "UPPER",
];
const LABELS: &[&str] = &[
    "example",
    "mail",
    "x",
    "sub-domain",
    "test",
    "xn--bcher-kva",
    "com",
    "org",
    "de",
    "exämple",
];
const NAMES: &[&str] = &[
    "John",
    "John Smith",
    "Mary Ann Jones",
    "O'Brien",
    "John Q. Public",
    "Jörg Müller",
    "A-Team",
];
/// Display names that need quoting, as (written inside quotes, decoded).
const QUOTED: &[(&str, &str)] = &[
    ("Doe, John", "Doe, John"),
    ("a@b.c", "a@b.c"),
    ("x;y:z", "x;y:z"),
    ("two  spaces", "two  spaces"),
    ("<angle>", "<angle>"),
    ("(paren)", "(paren)"),
];
/// Texts for RFC 2047 names; the bool says whether ISO-8859-1 can carry it.
const ENCODED_TEXTS: &[(&str, bool)] = &[
    ("Jörg", true),
    ("André Pirard", true),
    ("日本語", false),
    ("Ünïcödé Nämé", true),
    ("plain", true),
];
const COMMENTS: &[&str] = &["Comment", "Some Body", "x y z", "Jörg"];
const SEPARATORS: &[&str] = &[", ", ",", " , ", ",\r\n ", ",\r\n\t", ",\n "];

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn q_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b' ' => out.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => out.push(char::from(b)),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

/// One generated mailbox: its text, the expected (name, addr), and whether
/// mail-parser is known to parse this form correctly (and how it names it).
struct GenMailbox {
    text: String,
    name: Option<String>,
    addr: String,
    mail_parser_name: Option<Option<String>>,
}

fn gen_addr(rng: &mut Rng) -> String {
    let mut domain = rng.pick(LABELS).to_string();
    for _ in 0..rng.below(3) {
        domain.push('.');
        let label = *rng.pick(LABELS);
        domain.push_str(label);
    }
    format!("{}@{}", rng.pick(LOCALS), domain)
}

fn gen_encoded_name(rng: &mut Rng) -> (String, String) {
    let (text, latin) = *rng.pick(ENCODED_TEXTS);
    let words: Vec<&str> = text.split(' ').collect();
    // Encode the whole text as one word, or each word separately with a
    // plain trailing word, to exercise whitespace handling between words.
    let encode = |rng: &mut Rng, t: &str| -> String {
        match (rng.below(3), latin) {
            (0, _) => format!("=?UTF-8?B?{}?=", base64(t.as_bytes())),
            (1, true) => format!("=?ISO-8859-1?Q?{}?=", q_encode(&latin1(t))),
            _ => format!("=?utf-8?q?{}?=", q_encode(t.as_bytes())),
        }
    };
    if words.len() > 1 && rng.below(2) == 0 {
        let head: Vec<String> = words
            .iter()
            .take(words.len() - 1)
            .map(|w| encode(rng, w))
            .collect();
        let last = words.last().copied().unwrap_or_default();
        let decoded_head = words[..words.len() - 1].concat();
        (
            format!("{} {last}", head.join(" ")),
            format!("{decoded_head} {last}"),
        )
    } else {
        (encode(rng, text), text.to_string())
    }
}

fn gen_mailbox(rng: &mut Rng) -> GenMailbox {
    let addr = gen_addr(rng);
    let plain = |text: String, name: Option<String>, addr: String| GenMailbox {
        mail_parser_name: Some(name.clone()),
        text,
        name,
        addr,
    };
    match rng.below(12) {
        0 => plain(addr.clone(), None, addr),
        1 => plain(format!("<{addr}>"), None, addr),
        2 => {
            let name = rng.pick(NAMES).to_string();
            plain(format!("{name} <{addr}>"), Some(name), addr)
        }
        3 => {
            let (written, decoded) = *rng.pick(QUOTED);
            plain(
                format!("\"{written}\" <{addr}>"),
                Some(decoded.to_string()),
                addr,
            )
        }
        4 => {
            let (written, decoded) = gen_encoded_name(rng);
            plain(format!("{written} <{addr}>"), Some(decoded), addr)
        }
        5 => {
            let comment = rng.pick(COMMENTS).to_string();
            plain(format!("{addr} ({comment})"), Some(comment), addr)
        }
        6 => {
            let name = rng.pick(NAMES).to_string();
            let fold = *rng.pick(&["\r\n ", "\r\n\t", "\n "]);
            plain(format!("{name}{fold}<{addr}>"), Some(name), addr)
        }
        7 => {
            // Quoted local part that needs its quotes: mail-parser splits it.
            let domain = addr.split('@').nth(1).unwrap_or("x").to_string();
            let local = "\"john doe\"";
            GenMailbox {
                text: format!("{local}@{domain}"),
                name: None,
                addr: format!("{local}@{domain}"),
                mail_parser_name: None,
            }
        }
        8 => {
            // Unqualified local name: mail-parser gives no address.
            let local = rng.pick(LOCALS).to_string();
            GenMailbox {
                text: local.clone(),
                name: None,
                addr: local,
                mail_parser_name: None,
            }
        }
        9 => GenMailbox {
            text: format!("<@relay.example,@r2:{addr}>"),
            name: None,
            addr,
            mail_parser_name: None,
        },
        10 => {
            // Phrase plus comment: mail-parser appends the comment.
            let name = rng.pick(NAMES).to_string();
            let comment = rng.pick(COMMENTS).to_string();
            GenMailbox {
                text: format!("{name} <{addr}> ({comment})"),
                name: Some(name.clone()),
                addr,
                mail_parser_name: Some(Some(format!("{name} ({comment})"))),
            }
        }
        _ => {
            let name = rng.pick(NAMES).to_string();
            let text = format!("\"{name}\" <{addr}>");
            plain(text, Some(name), addr)
        }
    }
}

struct GenList {
    text: String,
    expected: Vec<(Option<String>, String)>,
    mail_parser_expected: Option<Vec<(Option<String>, String)>>,
}

fn gen_list(rng: &mut Rng) -> GenList {
    let mut text = String::new();
    let mut expected = Vec::new();
    let mut mp_expected = Some(Vec::new());
    let elements = 1 + rng.below(4);
    for i in 0..elements {
        if i > 0 {
            let separator = *rng.pick(SEPARATORS);
            text.push_str(separator);
        }
        let members: Vec<GenMailbox> = if rng.below(5) == 0 {
            let count = rng.below(4);
            let group = *rng.pick(&["friends", "undisclosed-recipients", "Team A"]);
            text.push_str(group);
            text.push_str(": ");
            let members: Vec<GenMailbox> = (0..count).map(|_| gen_mailbox(rng)).collect();
            let texts: Vec<&str> = members.iter().map(|m| m.text.as_str()).collect();
            text.push_str(&texts.join(", "));
            text.push(';');
            members
        } else {
            let m = gen_mailbox(rng);
            text.push_str(&m.text);
            vec![m]
        };
        for m in members {
            expected.push((m.name.clone(), m.addr.clone()));
            match (&mut mp_expected, m.mail_parser_name) {
                (Some(list), Some(name)) => list.push((name, m.addr)),
                _ => mp_expected = None,
            }
        }
    }
    GenList {
        text,
        expected,
        mail_parser_expected: mp_expected,
    }
}

fn check_spans(raw: &[u8], list: &[Mailbox]) {
    for m in list {
        assert!(
            m.span.start <= m.span.end && m.span.end <= raw.len(),
            "span {:?} out of bounds for {:?}",
            m.span,
            String::from_utf8_lossy(raw)
        );
    }
}

fn mail_parser_view(value: &str) -> Vec<(Option<String>, String)> {
    let raw = format!("To: {value}\r\n\r\n");
    let Some(message) = MessageParser::new().parse_headers(raw.as_bytes()) else {
        return Vec::new();
    };
    let Some(address) = message.to() else {
        return Vec::new();
    };
    address
        .iter()
        .map(|a| {
            (
                a.name().map(str::to_string),
                a.address().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn generated_lists_match_model_and_mail_parser() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut compared = 0;
    let mut failures = Vec::new();
    for _ in 0..4000 {
        let list = gen_list(&mut rng);
        let raw = list.text.as_bytes();
        let parsed = match parse_address_list(raw) {
            Ok(parsed) => parsed,
            Err(e) => {
                failures.push(format!("{:?}: {e}", list.text));
                continue;
            }
        };
        check_spans(raw, &parsed);
        let ours: Vec<(Option<String>, String)> = parsed
            .iter()
            .map(|m| (m.display_name.clone(), m.addr.clone()))
            .collect();
        if ours != list.expected {
            failures.push(format!(
                "{:?}: got {ours:?}, model {:?}",
                list.text, list.expected
            ));
        }
        // The generator never puts CFWS inside an addr-spec, so each span
        // covers exactly the address text.
        for m in &parsed {
            let written = list.text.get(m.span.clone()).unwrap_or_default();
            let expected = m.addr.as_str();
            if written != expected {
                failures.push(format!(
                    "{:?}: span text {written:?} != {expected:?}",
                    list.text
                ));
            }
        }
        if let Some(mp_expected) = &list.mail_parser_expected {
            compared += 1;
            let theirs = mail_parser_view(&list.text);
            let our_addrs: Vec<&str> = ours.iter().map(|(_, a)| a.as_str()).collect();
            let their_addrs: Vec<&str> = theirs.iter().map(|(_, a)| a.as_str()).collect();
            if our_addrs != their_addrs {
                failures.push(format!(
                    "{:?}: addresses differ from mail-parser: ours {our_addrs:?}, theirs {their_addrs:?}",
                    list.text
                ));
            }
            if theirs != *mp_expected {
                failures.push(format!(
                    "{:?}: mail-parser gave {theirs:?}, expected {mp_expected:?}",
                    list.text
                ));
            }
        }
        // Single-address parsing agrees with the list parser on lists of one
        // mailbox outside any group.
        if parsed.len() == 1 && !list.text.contains([':', ',', '\r', '\n']) {
            match parse_single_address(&list.text) {
                Ok(addr) if addr == parsed[0].addr => {}
                other => failures.push(format!("{:?}: single gave {other:?}", list.text)),
            }
        }
    }
    eprintln!("compared {compared} lists with mail-parser");
    assert!(
        compared > 1000,
        "only {compared} lists compared with mail-parser"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Random splices of generated lists (truncations, swapped bytes, inserted
/// specials) never panic and keep spans in bounds.
#[test]
fn mangled_lists_never_panic() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let noise: &[&[u8]] = &[
        b"<", b">", b"@", b",", b";", b":", b"\"", b"(", b")", b"[", b"]", b"\\", b"\r\n", b"\n",
        b" ", b".", b"=?", b"?=", b"\xc3", b"\xff", b"\0",
    ];
    for _ in 0..3000 {
        let mut raw = gen_list(&mut rng).text.into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(raw.len() + 1);
            match rng.below(3) {
                0 => raw.truncate(at),
                1 if at < raw.len() => {
                    raw.remove(at);
                }
                _ => {
                    let piece = rng.pick(noise);
                    raw.splice(at..at, piece.iter().copied());
                }
            }
        }
        if let Ok(list) = parse_address_list(&raw) {
            check_spans(&raw, &list);
        }
        if let Ok(s) = std::str::from_utf8(&raw) {
            let _ = parse_single_address(s);
        }
    }
}

#[test]
fn fuzz_corpus_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/address_list");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read fuzz corpus {}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        if !path.is_file() {
            continue;
        }
        let raw = std::fs::read(&path).expect("read corpus file");
        if let Ok(list) = parse_address_list(&raw) {
            check_spans(&raw, &list);
        }
        if let Ok(s) = std::str::from_utf8(&raw) {
            let _ = parse_single_address(s);
        }
        count += 1;
    }
    assert!(count > 0, "empty fuzz corpus at {}", dir.display());
}
