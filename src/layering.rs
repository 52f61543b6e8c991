//! The layering rule, kept by a test: every file under `src/` may name only
//! modules of its own layer or below.
//!
//! ```text
//! front     cli, privilege, run, main (and the crate root)
//! services  daemon, admin, mailq, status, stats, check, setup, guard, listen, verify
//! mail      submit, address, deliver, bounce
//! spool     spool
//! base      config, clock, error, logging, escape, appender, stdout
//! ```
//! The test reads the source text (comments and string literals removed) and
//! finds every path that starts at the crate root — `crate::X`,
//! `postern::X` (the binary's files name the library so), `crate::{X, …}`,
//! and `super::…::X` climbing out of its own top-level module — and fails
//! with `file:line: names X (layer) above its layer` for each one that
//! points up. A new top-level module must be given a layer in [`LAYERS`].
//! There is no list of exceptions.

use std::path::{Path, PathBuf};

/// Layers, lowest first.
const LAYER_NAMES: [&str; 5] = ["base", "spool", "mail", "services", "front"];

/// Every top-level module (and the crate roots) with its layer.
const LAYERS: &[(&str, usize)] = &[
    ("config", 0),
    ("clock", 0),
    ("error", 0),
    ("logging", 0),
    ("escape", 0),
    ("appender", 0),
    ("stdout", 0),
    ("spool", 1),
    ("submit", 2),
    ("address", 2),
    ("deliver", 2),
    ("bounce", 2),
    ("daemon", 3),
    ("admin", 3),
    ("mailq", 3),
    ("status", 3),
    ("stats", 3),
    ("check", 3),
    ("setup", 3),
    ("guard", 3),
    ("listen", 3),
    ("verify", 3),
    ("cli", 4),
    ("privilege", 4),
    ("run", 4),
    ("main", 4),
    ("lib", 4),
    ("layering", 4),
];

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().find(|(n, _)| *n == top).map(|&(_, l)| l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src/") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file relative to `src/`: `spool/queue.rs` →
/// `[spool, queue]`, `spool/mod.rs` → `[spool]`, `lib.rs` → `[lib]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut v: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if v.len() > 1 && v.last().is_some_and(|l| l == "mod") {
        v.pop();
    }
    v
}

/// The source with comments and the contents of string and character
/// literals blanked out (newlines kept, so offsets keep their line).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == b'r'
            && (i == 0 || !ident(b[i - 1]) || (b[i - 1] == b'b' && (i < 2 || !ident(b[i - 2]))))
            && matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
        {
            // A raw string r"…", r#"…"# (or br…).
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.resize(out.len() + (j + 1 - i), b' ');
            i = j + 1;
            while i < b.len() {
                if b[i] == b'"'
                    && b[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    out.resize(out.len() + 1 + hashes, b' ');
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    out.push(b' ');
                    i += 1;
                }
                out.push(blank(b[i]));
                i += 1;
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else {
                let ch_len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 1 + ch_len)
            };
            match end {
                Some(e) => {
                    out.resize(out.len() + (e + 1 - i), b' ');
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn ident_at(s: &[u8], mut i: usize) -> (String, usize) {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < s.len() && is_ident(s[i]) {
        i += 1;
    }
    (String::from_utf8_lossy(&s[start..i]).into_owned(), i)
}

/// The first names of the items of a `{…}` group starting at `s[i] == '{'`.
fn group_heads(s: &[u8], i: usize) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut expect = true;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    expect = true;
                }
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect = true,
            c if depth == 1 && expect && is_ident(c) => {
                let (name, end) = ident_at(s, j);
                out.push((name, j));
                expect = false;
                j = end;
                continue;
            }
            c if !c.is_ascii_whitespace() && depth == 1 => expect = false,
            _ => {}
        }
        j += 1;
    }
    out
}

/// Every top-level module a file names, with the byte offset of the name.
fn named_tops(code: &str, module: &[String]) -> Vec<(String, usize)> {
    let s = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if !is_ident(s[i]) || (i > 0 && is_ident(s[i - 1])) {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(s, i);
        let preceded_by_path = i >= 2 && &s[i - 2..i] == b"::";
        let path_after = s.get(end..end + 2) == Some(b"::");
        if preceded_by_path || !path_after {
            i = end;
            continue;
        }
        let at_root = match word.as_str() {
            "crate" => Some(end + 2),
            // The binary's files name the library so; elsewhere `postern`
            // is `cli::postern`, whose names are no top-level modules.
            "postern" => Some(end + 2),
            "super" => {
                let mut depth = 1;
                let mut j = end + 2;
                loop {
                    let (w, e) = ident_at(s, j);
                    if w == "super" && s.get(e..e + 2) == Some(b"::") {
                        depth += 1;
                        j = e + 2;
                    } else {
                        break;
                    }
                }
                // `super` from module path m names m[..len-depth].
                (depth >= module.len()).then_some(j)
            }
            _ => None,
        };
        if let Some(j) = at_root {
            let mut k = j;
            while k < s.len() && s[k].is_ascii_whitespace() {
                k += 1;
            }
            if s.get(k) == Some(&b'{') {
                out.extend(group_heads(s, k));
            } else {
                let (name, _) = ident_at(s, k);
                if word == "postern" && layer(&name).is_none() {
                    i = end;
                    continue;
                }
                if !name.is_empty() {
                    out.push((name, k));
                }
            }
        }
        i = end;
    }
    out
}

#[test]
fn every_file_names_only_its_own_layer_or_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut problems = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let shown = format!("src/{}", rel.display());
        let module = module_path(rel);
        let Some(own) = layer(&module[0]) else {
            problems.push(format!(
                "{shown}: top-level module `{}` has no layer in src/layering.rs",
                module[0]
            ));
            continue;
        };
        let text = std::fs::read_to_string(path).expect("read source");
        let code = code_only(&text);
        for (name, at) in named_tops(&code, &module) {
            if name == "self" || name == "super" || name == "crate" {
                continue;
            }
            let line = code[..at].matches('\n').count() + 1;
            let Some(theirs) = layer(&name) else {
                problems.push(format!(
                    "{shown}:{line}: names `{name}`, which has no layer in src/layering.rs"
                ));
                continue;
            };
            if theirs <= own {
                continue;
            }
            problems.push(format!(
                "{shown}:{line}: names `{name}` ({}) from the {} layer: an arrow may only point down",
                LAYER_NAMES[theirs], LAYER_NAMES[own]
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layering violations (see docs at the top of src/layering.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scanner_sees_paths_and_skips_text() {
    let m = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let src = "use crate::{clock, spool::Spool};\n// crate::admin\nlet s = \"crate::daemon\";\nlet c = '\"'; use super::super::stats;\nfn f<'a>(x: &'a str) { crate::cli::parse(x); postern::run::x(); }\n";
    let code = code_only(src);
    let names: Vec<String> = named_tops(&code, &m(&["spool", "queue"]))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["clock", "spool", "stats", "cli", "run"]);
    // `super::` inside its own top-level module names nothing above.
    let code = code_only("use super::format; use super::*;");
    assert!(named_tops(&code, &m(&["spool", "queue"])).is_empty());
    // From a top-level file, `super::X` is the crate's X.
    let code = code_only("use super::daemon;");
    assert_eq!(named_tops(&code, &m(&["config"]))[0].0, "daemon");
}
