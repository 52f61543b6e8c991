//! PLACEHOLDER — replaced by the real RFC 5322 parser.
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub display_name: Option<String>,
    pub addr: String,
    pub span: Range<usize>,
    pub unqualified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub offset: usize,
}
impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}
impl std::error::Error for ParseError {}

pub fn parse_address_list(raw: &[u8]) -> Result<Vec<Mailbox>, ParseError> {
    let s = String::from_utf8_lossy(raw).replace(['\r', '\n'], " ");
    let mut out = Vec::new();
    for part in s.split([',', ';']) {
        let p = part.trim();
        let p = p.rsplit(':').next().unwrap_or(p).trim();
        if p.is_empty() {
            continue;
        }
        let addr = match (p.find('<'), p.find('>')) {
            (Some(a), Some(b)) if a < b => p[a + 1..b].trim().to_string(),
            (None, None) => p.to_string(),
            _ => return Err(ParseError { message: "unbalanced <".into(), offset: 0 }),
        };
        if addr.matches('@').count() > 1 {
            return Err(ParseError { message: "two @".into(), offset: 0 });
        }
        out.push(Mailbox { display_name: None, unqualified: !addr.contains('@'), addr, span: 0..0 });
    }
    Ok(out)
}

pub fn parse_single_address(s: &str) -> Result<String, ParseError> {
    let v = parse_address_list(s.as_bytes())?;
    match v.as_slice() {
        [m] if !m.addr.is_empty() && !m.addr.ends_with('@') && !m.addr.starts_with('@') => Ok(m.addr.clone()),
        _ => Err(ParseError { message: "bad address".into(), offset: 0 }),
    }
}
