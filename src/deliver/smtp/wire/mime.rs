//! MIME field values: `Content-Transfer-Encoding` and `Content-Type`
//! parsing (comments, quoting, RFC 2231 continuations and extended values),
//! boundary extraction, and the fields added to a re-encoded part.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enc {
    Identity,
    Base64,
    QuotedPrintable,
    Unknown,
}

/// Remove RFC 5322 comments (outside quoted strings), keeping quoted strings.
pub(super) fn strip_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for &b in v {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(b);
            }
            continue;
        }
        match b {
            b'\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(b);
                }
            }
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(b),
        }
    }
    out
}

pub(super) fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_ws(b)).map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

pub(super) fn parse_cte(v: Option<&[u8]>) -> Enc {
    let Some(v) = v else {
        return Enc::Identity;
    };
    let clean = strip_comments(v);
    let t = trim(&clean).to_ascii_lowercase();
    match t.as_slice() {
        b"" | b"7bit" | b"8bit" | b"binary" => Enc::Identity,
        b"base64" => Enc::Base64,
        b"quoted-printable" => Enc::QuotedPrintable,
        _ => Enc::Unknown,
    }
}

/// Split on `sep` outside quoted strings.
pub(super) fn split_unquoted(v: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(v.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    parts.push(v.get(start..).unwrap_or_default());
    parts
}

pub(super) fn unquote(v: &[u8]) -> Vec<u8> {
    let v = trim(v);
    let Some(inner) = v.strip_prefix(b"\"") else {
        return v.to_vec();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if escaped {
            out.push(b);
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            break;
        } else {
            out.push(b);
        }
    }
    out
}

pub(super) fn percent_decode(v: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(v).collect()
}

/// RFC 2231 extended value: drop `charset'language'`, percent-decode.
pub(super) fn decode_extended(v: &[u8], first: bool) -> Vec<u8> {
    let v = trim(v);
    if first {
        let mut it = v.splitn(3, |&b| b == b'\'');
        if let (Some(_), Some(_), Some(rest)) = (it.next(), it.next(), it.next()) {
            return percent_decode(rest);
        }
    }
    percent_decode(v)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// `multipart/*`; `delim` is `--boundary` (None: no usable boundary).
    Multipart {
        delim: Option<Vec<u8>>,
        digest: bool,
    },
    /// `message/rfc822` or `message/global`.
    Message,
    /// Other composite types, never re-encoded.
    OtherComposite,
    Discrete,
}

pub(super) fn parse_content_type(v: Option<&[u8]>, digest_child: bool) -> Kind {
    let default = if digest_child {
        Kind::Message
    } else {
        Kind::Discrete
    };
    let Some(v) = v else {
        return default;
    };
    let clean = strip_comments(v);
    let pieces = split_unquoted(&clean, b';');
    let mut it = pieces.iter();
    let Some(mime) = it.next() else {
        return default;
    };
    let mime = trim(mime).to_ascii_lowercase();
    let mut ts = mime.splitn(2, |&b| b == b'/');
    let (Some(ty), Some(sub)) = (ts.next(), ts.next()) else {
        return default;
    };
    let (ty, sub) = (trim(ty), trim(sub));
    if ty.is_empty() || sub.is_empty() {
        return default;
    }
    match ty {
        b"multipart" => {
            let delim = boundary_param(it.copied()).map(|b| {
                let mut d = b"--".to_vec();
                d.extend_from_slice(&b);
                d
            });
            Kind::Multipart {
                delim,
                digest: sub == b"digest",
            }
        }
        b"message" => match sub {
            b"rfc822" | b"global" => Kind::Message,
            b"partial" | b"external-body" => Kind::OtherComposite,
            _ => Kind::Discrete,
        },
        _ => Kind::Discrete,
    }
}

/// The `boundary` parameter: plain, quoted, or RFC 2231 (`boundary*`,
/// `boundary*0`, `boundary*1*`, ...). None if absent or unusable.
pub(super) fn boundary_param<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut plain = None;
    let mut extended = None;
    let mut sections: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    for p in params {
        let mut kv = p.splitn(2, |&b| b == b'=');
        let (Some(name), Some(value)) = (kv.next(), kv.next()) else {
            continue;
        };
        let name = trim(name).to_ascii_lowercase();
        if name == b"boundary" {
            if plain.is_none() {
                plain = Some(unquote(value));
            }
        } else if let Some(rest) = name.strip_prefix(b"boundary*") {
            if rest.is_empty() {
                if extended.is_none() {
                    extended = Some(decode_extended(&unquote(value), true));
                }
            } else {
                let (num, ext) = match rest.strip_suffix(b"*") {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                let n = std::str::from_utf8(num)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok());
                if let Some(n) = n
                    && num.iter().all(u8::is_ascii_digit)
                    && sections.len() < 64
                {
                    sections.push((n, ext, unquote(value)));
                }
            }
        }
    }
    let joined = if sections.is_empty() {
        None
    } else {
        sections.sort_by_key(|s| s.0);
        let mut out = Vec::new();
        for (i, (n, ext, v)) in sections.iter().enumerate() {
            if usize::try_from(*n).ok() != Some(i) {
                break;
            }
            if *ext {
                out.extend(decode_extended(v, i == 0));
            } else {
                out.extend_from_slice(v);
            }
        }
        Some(out)
    };
    let b = plain.or(extended).or(joined)?;
    (!b.is_empty() && b.len() <= MAX_BOUNDARY && !b.iter().any(|&c| c == b'\r' || c == b'\n'))
        .then_some(b)
}

pub(super) fn added_lines(e: &Edit) -> Vec<&'static [u8]> {
    let mut v: Vec<&'static [u8]> = Vec::with_capacity(3);
    if e.add_mime_version {
        v.push(b"MIME-Version: 1.0");
    }
    match e.add_content_type {
        None => {}
        Some(Charset::Ascii) => v.push(b"Content-Type: text/plain"),
        Some(Charset::Utf8) => v.push(b"Content-Type: text/plain; charset=utf-8"),
        Some(Charset::Unknown8bit) => v.push(b"Content-Type: text/plain; charset=unknown-8bit"),
    }
    v.push(b"Content-Transfer-Encoding: quoted-printable");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_parsers() {
        assert_eq!(parse_cte(Some(b" Quoted-Printable ")), Enc::QuotedPrintable);
        assert_eq!(parse_cte(Some(b"(c) base64")), Enc::Base64);
        assert_eq!(parse_cte(Some(b"x-uue")), Enc::Unknown);
        assert_eq!(parse_cte(None), Enc::Identity);
        assert_eq!(
            parse_content_type(Some(b" text/plain"), true),
            Kind::Discrete
        );
        assert_eq!(parse_content_type(None, true), Kind::Message);
        assert_eq!(parse_content_type(Some(b"garbage"), false), Kind::Discrete);
        assert_eq!(
            parse_content_type(Some(b"message/partial; id=1"), false),
            Kind::OtherComposite
        );
        assert_eq!(
            parse_content_type(Some(b"multipart/mixed; boundary=\"a\\\"b\""), false),
            Kind::Multipart {
                delim: Some(b"--a\"b".to_vec()),
                digest: false
            }
        );
        assert_eq!(
            parse_content_type(
                Some(b"multipart/mixed; boundary*0*=utf-8''a%20; boundary*1=b"),
                false
            ),
            Kind::Multipart {
                delim: Some(b"--a b".to_vec()),
                digest: false
            }
        );
        let too_long = format!("multipart/mixed; boundary={}", "b".repeat(71));
        assert_eq!(
            parse_content_type(Some(too_long.as_bytes()), false),
            Kind::Multipart {
                delim: None,
                digest: false
            }
        );
        let mut u = Utf8Check::default();
        for b in "aé日本😀".as_bytes() {
            u.feed(&[*b]);
        }
        assert!(u.valid());
        u.feed(b"\xf0\x9f");
        assert!(!u.valid());
        u.feed(b"\x98\x80");
        assert!(u.valid());
        u.feed(b"\xff");
        assert!(!u.valid());
    }
}
