//! Per-sender relays (Postfix's `sender_dependent_relayhost_maps`): which
//! `[[relay]]` entries serve a message, chosen by its envelope sender as it
//! goes on the wire (after `addresses.sender` rewriting).
//!
//! A relay with `senders = [...]` serves the senders its patterns match; the
//! relays without `senders` are the default group and serve every sender
//! that no pattern matches. A message goes to the relays of its group in
//! config order, failing over inside the group only. Patterns compare
//! case-insensitively; `*` matches any run of characters, `@domain` means
//! `*@domain`, `<>` matches the null sender.
//!
//! The null sender (a bounce or a delay warning that Postern writes, or a
//! message submitted with `-f '<>'`): the relays whose `senders` list `<>`
//! when there are any; else the group of its first recipient taken as a
//! sender — for a DSN that is the original message's sender, so the bounce
//! leaves through the relay (and credentials) of that sender's domain; else
//! the default group.
//!
//! A sender no group serves (every relay has `senders`, none matches) gets
//! no relay: the message is deferred with that reason and stays queued
//! until the configuration says where it goes (as Postfix defers a message
//! it has no transport for); `postern check` warns about such a setup.

use crate::config::Relay;

/// Why a message got its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The sender matched this pattern.
    Pattern(String),
    /// The null sender, with relays that list `<>`.
    NullPattern,
    /// The null sender, routed as its first recipient (the original sender
    /// of a bounce) would be: the pattern that matched it.
    Bounce { original: String, pattern: String },
    /// No pattern matched: the relays without `senders`.
    Default,
}

/// The relays that serve one sender, in config order (indices into
/// `Config::relays`); empty when none does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Relay indices, in order of preference.
    pub relays: Vec<usize>,
    /// Why.
    pub basis: Basis,
}

/// True when `pattern` (lower case, as the config stores it) matches
/// `addr`, case-insensitively.
pub fn matches(pattern: &str, addr: &str) -> bool {
    if pattern == "<>" {
        return addr.is_empty();
    }
    if addr.is_empty() {
        return false;
    }
    let addr = addr.to_ascii_lowercase();
    let pattern = match pattern.strip_prefix('@') {
        Some(_) => format!("*{pattern}"),
        None => pattern.to_string(),
    };
    glob(pattern.as_bytes(), addr.as_bytes())
}

/// `*` matches any run of bytes; everything else itself. Iterative, with
/// one backtrack point: linear in practice, never exponential.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// The first relay pattern that matches `addr`, and every relay that has a
/// matching pattern.
fn matching(relays: &[Relay], addr: &str) -> Option<(String, Vec<usize>)> {
    let mut first = None;
    let mut idx = Vec::new();
    for (i, r) in relays.iter().enumerate() {
        if let Some(p) = r.senders.iter().find(|p| matches(p, addr)) {
            first.get_or_insert_with(|| p.clone());
            idx.push(i);
        }
    }
    first.map(|p| (p, idx))
}

/// The relays without `senders`.
pub fn default_group(relays: &[Relay]) -> Vec<usize> {
    (0..relays.len())
        .filter(|&i| relays[i].senders.is_empty())
        .collect()
}

/// True when some relay has `senders` (routing depends on the sender).
pub fn per_sender(relays: &[Relay]) -> bool {
    relays.iter().any(|r| !r.senders.is_empty())
}

/// The group serving `sender` (as sent on the wire; "" = null sender).
/// `bounce_to` is, for the null sender, its first recipient rewritten as a
/// sender would be (the original sender of a bounce).
pub fn group(relays: &[Relay], sender: &str, bounce_to: Option<&str>) -> Group {
    if let Some((pattern, idx)) = matching(relays, sender) {
        let basis = if sender.is_empty() {
            Basis::NullPattern
        } else {
            Basis::Pattern(pattern)
        };
        return Group { relays: idx, basis };
    }
    if sender.is_empty()
        && let Some(orig) = bounce_to.filter(|o| !o.is_empty())
        && let Some((pattern, idx)) = matching(relays, orig)
    {
        return Group {
            relays: idx,
            basis: Basis::Bounce {
                original: orig.to_string(),
                pattern,
            },
        };
    }
    Group {
        relays: default_group(relays),
        basis: Basis::Default,
    }
}

impl Group {
    /// Why this group, in words (for logs, `-bv`, `queue show`).
    pub fn reason(&self) -> String {
        match &self.basis {
            Basis::Pattern(p) => format!("senders pattern {p}"),
            Basis::NullPattern => "senders pattern <> (the null sender)".into(),
            Basis::Bounce { original, pattern } => format!(
                "null sender: routed as its recipient {original} (the original sender), senders pattern {pattern}"
            ),
            Basis::Default => "the default relays (no senders)".into(),
        }
    }

    /// The relays' labels, in order: `a:587, then b:587`.
    pub fn labels(&self, relays: &[Relay]) -> String {
        self.relays
            .iter()
            .filter_map(|&i| relays.get(i))
            .map(|r| r.label())
            .collect::<Vec<_>>()
            .join(", then ")
    }
}

/// Why no relay serves `sender`, as the deferral reason and the `-bv` text.
pub fn no_relay_reason(sender: &str) -> String {
    let who = if sender.is_empty() {
        "the null sender <>".to_string()
    } else {
        format!("sender <{sender}>")
    };
    format!(
        "no relay serves {who}: every [[relay]] has senders and none matches (add a [[relay]] without senders for everyone else, or a pattern)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(host: &str, senders: &[&str]) -> Relay {
        let mut r = crate::config::Config::parse(
            &format!("[[relay]]\nhost = \"{host}\"\n"),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
        .relays
        .remove(0);
        r.senders = senders.iter().map(|s| s.to_string()).collect();
        r
    }

    #[test]
    fn patterns() {
        assert!(matches("*@example.com", "Billing@Example.COM"));
        assert!(!matches("*@example.com", "a@sub.example.com"));
        assert!(matches("*@*.example.com", "a@sub.example.com"));
        assert!(matches("@example.com", "x@example.com"));
        assert!(!matches("@example.com", "x@badexample.com"));
        assert!(matches("billing@example.org", "billing@example.org"));
        assert!(!matches("billing@example.org", "billing@example.org.evil"));
        assert!(matches("<>", ""));
        assert!(!matches("*@*", ""));
        assert!(matches("a*b*c@x", "aXXbYYc@x"));
        assert!(!matches("a*b*c@x", "aXXbYY@x"));
        let long = "a".repeat(5000);
        assert!(!matches("*a*a*a*a*a*a*b@x", &long));
    }

    #[test]
    fn groups() {
        let relays = vec![
            relay("a.example", &["*@example.com"]),
            relay("b.example", &["billing@example.org", "*@example.com"]),
            relay("d.example", &[]),
            relay("e.example", &[]),
        ];
        let g = group(&relays, "x@example.com", None);
        assert_eq!(g.relays, vec![0, 1]);
        assert_eq!(g.basis, Basis::Pattern("*@example.com".into()));
        assert_eq!(group(&relays, "billing@example.org", None).relays, vec![1]);
        let g = group(&relays, "other@example.net", None);
        assert_eq!((g.relays, g.basis), (vec![2, 3], Basis::Default));
        let g = group(&relays, "", Some("billing@example.org"));
        assert_eq!(g.relays, vec![1]);
        assert!(matches!(g.basis, Basis::Bounce { .. }));
        assert_eq!(group(&relays, "", Some("x@else.net")).relays, vec![2, 3]);
        assert_eq!(group(&relays, "", None).relays, vec![2, 3]);
        let mut with_null = relays.clone();
        with_null[3].senders = vec!["<>".into()];
        let g = group(&with_null, "", Some("billing@example.org"));
        assert_eq!((g.relays, g.basis), (vec![3], Basis::NullPattern));
        let only = vec![relay("a.example", &["*@example.com"])];
        assert!(group(&only, "x@example.net", None).relays.is_empty());
    }
}
