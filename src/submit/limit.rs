//! The size limit of a submission.
//!
//! An explicit `max_message_size` wins. Otherwise the limit that matters is
//! the relay's: the smallest SIZE (RFC 1870) advertised by the relays a
//! message could use — every configured relay today — as recorded in the
//! spool by the SMTP session and `postern check`
//! ([`spool::relay_limits`](crate::spool::relay_limits)). A relay not seen
//! yet counts as [`FALLBACK_MESSAGE_SIZE`]; one that announced `SIZE 0`,
//! `SIZE` alone or no SIZE sets no limit. Finding it costs one small read.

use crate::config::{Config, FALLBACK_MESSAGE_SIZE};
use crate::spool::Spool;
use crate::spool::relay_limits::{self, Advertised};

/// Where a limit comes from (for the refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `max_message_size` in the configuration.
    Config,
    /// The SIZE this relay (`host:port`) advertised.
    Relay(String),
    /// No SIZE known yet for a relay (or no relay configured).
    Fallback,
}

/// The largest message a submission accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimit {
    /// None: no limit (every relay announced none).
    pub bytes: Option<u64>,
    /// Where it comes from.
    pub source: Source,
}

impl SizeLimit {
    /// The limit for a submission under `cfg`.
    pub fn for_submission(cfg: &Config) -> SizeLimit {
        if let Some(n) = cfg.max_message_size {
            return SizeLimit {
                bytes: Some(n),
                source: Source::Config,
            };
        }
        let fallback = SizeLimit {
            bytes: Some(FALLBACK_MESSAGE_SIZE),
            source: Source::Fallback,
        };
        if cfg.relays.is_empty() {
            return fallback;
        }
        let known = relay_limits::read(&Spool::new(&cfg.spool_dir));
        let mut best: Option<SizeLimit> = None;
        for relay in &cfg.relays {
            let label = relay.label();
            let this = match known.get(&label) {
                Some(Advertised::Limit(n)) => SizeLimit {
                    bytes: Some(n),
                    source: Source::Relay(label),
                },
                Some(Advertised::NoLimit) => continue,
                None => fallback.clone(),
            };
            if best.as_ref().is_none_or(|b| this.bytes < b.bytes) {
                best = Some(this);
            }
        }
        best.unwrap_or(SizeLimit {
            bytes: None,
            source: Source::Fallback,
        })
    }

    /// The value for `SIZE` in `-bs`'s EHLO (0: no limit).
    pub fn advertised(&self) -> u64 {
        self.bytes.unwrap_or(0)
    }

    /// Is a message of `size` bytes over the limit?
    pub fn exceeded_by(&self, size: u64) -> bool {
        self.bytes.is_some_and(|max| size > max)
    }

    /// The limit in words, naming where it comes from.
    pub fn describe(&self) -> String {
        let n = self.bytes.unwrap_or(0);
        match &self.source {
            Source::Config => format!("{n} bytes (max_message_size)"),
            Source::Relay(label) => {
                format!("{n} bytes, the limit relay {label} announces (SIZE)")
            }
            Source::Fallback => format!(
                "{n} bytes (the default limit while the relay's SIZE is not known yet; set max_message_size to choose one)"
            ),
        }
    }

    /// The refusal of a message over the limit.
    pub fn refusal(&self) -> String {
        format!("message too big: more than {}", self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(dir: &Path, extra: &str) -> Config {
        Config::parse(
            &format!(
                "hostname = \"h.example\"\nspool_dir = \"{}\"\n{extra}\n[[relay]]\nhost = \"a.example\"\nport = 587\n[[relay]]\nhost = \"b.example\"\nport = 465\ntls = \"tls\"\n",
                dir.display()
            ),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn explicit_wins_then_smallest_relay_then_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        std::fs::create_dir_all(spool.tmp()).unwrap();
        let c = cfg(dir.path(), "");
        // Nothing seen: the fallback.
        let l = SizeLimit::for_submission(&c);
        assert_eq!(l.bytes, Some(FALLBACK_MESSAGE_SIZE));
        assert_eq!(l.source, Source::Fallback);
        // One relay seen (bigger than the fallback), the other not: the fallback.
        relay_limits::record(&spool, "a.example:587", Advertised::Limit(100 << 20)).unwrap();
        assert_eq!(SizeLimit::for_submission(&c).source, Source::Fallback);
        // Both seen: the smaller.
        relay_limits::record(&spool, "b.example:465", Advertised::Limit(30_000_000)).unwrap();
        let l = SizeLimit::for_submission(&c);
        assert_eq!(l.bytes, Some(30_000_000));
        assert_eq!(l.source, Source::Relay("b.example:465".into()));
        assert!(l.refusal().contains("relay b.example:465"));
        assert!(l.exceeded_by(30_000_001) && !l.exceeded_by(30_000_000));
        // SIZE 0 / no limit from one: the other's.
        relay_limits::record(&spool, "b.example:465", Advertised::NoLimit).unwrap();
        assert_eq!(SizeLimit::for_submission(&c).bytes, Some(100 << 20));
        relay_limits::record(&spool, "a.example:587", Advertised::NoLimit).unwrap();
        let l = SizeLimit::for_submission(&c);
        assert_eq!(l.bytes, None);
        assert_eq!(l.advertised(), 0);
        assert!(!l.exceeded_by(u64::MAX));
        // Explicit max_message_size wins.
        let c = cfg(dir.path(), "max_message_size = \"10M\"");
        let l = SizeLimit::for_submission(&c);
        assert_eq!(l.bytes, Some(10 << 20));
        assert_eq!(l.source, Source::Config);
    }
}
