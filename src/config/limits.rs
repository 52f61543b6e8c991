//! `[limits]`: the outbound guard's settings (per-submitter limits, storm
//! collapse, suppression, the bounce cap) as written and as validated. The
//! guard itself (`src/guard/`) applies them in the daemon at pickup.

use super::Dur;
use serde::Deserialize;
use std::time::Duration;

/// Limits for one submitter (`[limits]` defaults, `[limits.user.NAME]`
/// overrides). 0 = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimits {
    /// Messages per hour.
    pub messages_per_hour: u64,
    /// Recipients per hour (summed over messages).
    pub recipients_per_hour: u64,
    /// Recipients of one message.
    pub recipients_per_message: u64,
}

/// The `[limits]` section: the outbound guard (applied by the daemon at
/// pickup, never in the submission process).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Per-submitter limits on at all.
    pub enabled: bool,
    /// The defaults for every submitter.
    pub default: UserLimits,
    /// Overrides by user name or uid (the key as written).
    pub users: Vec<(String, UserLimits)>,
    /// Users (names or uids) no per-submitter limit applies to.
    pub exempt: Vec<String>,
    /// Where alerts and storm summaries go.
    pub alert_to: String,
    /// Storm collapse: identical messages delivered per window before the
    /// rest are held (0 = off).
    pub storm_threshold: u64,
    /// Storm window.
    pub storm_window: Duration,
    /// How long a recipient with a permanent 5.1.x failure is suppressed
    /// (zero = off).
    pub suppress_for: Duration,
    /// Bounces (DSNs) per hour to one address (0 = no cap).
    pub max_bounces_per_hour: u64,
}

impl Limits {
    /// The limits of a submitter known by `uid` and (if any) `name`.
    pub fn for_user(&self, uid: u32, name: Option<&str>) -> UserLimits {
        let uid_s = uid.to_string();
        self.users
            .iter()
            .find(|(k, _)| *k == uid_s)
            .or_else(|| name.and_then(|n| self.users.iter().find(|(k, _)| k == n)))
            .map(|(_, l)| *l)
            .unwrap_or(self.default)
    }
    /// True when `uid` (`name`) is exempt from the per-submitter limits.
    pub fn is_exempt(&self, uid: u32, name: Option<&str>) -> bool {
        let uid_s = uid.to_string();
        self.exempt
            .iter()
            .any(|e| *e == uid_s || Some(e.as_str()) == name)
    }
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawUserLimits {
    messages_per_hour: Option<u64>,
    recipients_per_hour: Option<u64>,
    recipients_per_message: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorm {
    threshold: Option<u64>,
    window: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    enabled: Option<bool>,
    messages_per_hour: Option<u64>,
    recipients_per_hour: Option<u64>,
    recipients_per_message: Option<u64>,
    exempt: Option<Vec<String>>,
    alert_to: Option<String>,
    suppress_for: Option<Dur>,
    max_bounces_per_hour: Option<u64>,
    #[serde(default)]
    user: std::collections::BTreeMap<String, RawUserLimits>,
    #[serde(default)]
    storm: RawStorm,
}

/// Defaults of `[limits]`, chosen so that a normal web host never meets
/// them (contact forms, password resets and cron reports are a few dozen
/// messages an hour) while a compromised script is stopped within minutes,
/// long before a provider's bounce or complaint thresholds are reached.
pub const DEFAULT_MESSAGES_PER_HOUR: u64 = 500;
/// See [`DEFAULT_MESSAGES_PER_HOUR`].
pub const DEFAULT_RECIPIENTS_PER_HOUR: u64 = 2000;
/// See [`DEFAULT_MESSAGES_PER_HOUR`].
pub const DEFAULT_RECIPIENTS_PER_MESSAGE: u64 = 100;

pub(super) fn limits_from(l: RawLimits) -> std::result::Result<Limits, (String, String)> {
    let default = UserLimits {
        messages_per_hour: l.messages_per_hour.unwrap_or(DEFAULT_MESSAGES_PER_HOUR),
        recipients_per_hour: l.recipients_per_hour.unwrap_or(DEFAULT_RECIPIENTS_PER_HOUR),
        recipients_per_message: l
            .recipients_per_message
            .unwrap_or(DEFAULT_RECIPIENTS_PER_MESSAGE),
    };
    let mut users = Vec::new();
    for (k, u) in l.user {
        if k.is_empty() || k.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err((
                "limits.user".into(),
                format!("{k:?} is not a user name or uid"),
            ));
        }
        users.push((
            k,
            UserLimits {
                messages_per_hour: u.messages_per_hour.unwrap_or(default.messages_per_hour),
                recipients_per_hour: u.recipients_per_hour.unwrap_or(default.recipients_per_hour),
                recipients_per_message: u
                    .recipients_per_message
                    .unwrap_or(default.recipients_per_message),
            },
        ));
    }
    let alert_to = l.alert_to.unwrap_or_else(|| "root".into());
    if alert_to.is_empty() || alert_to.contains(['\r', '\n', ' ', '<', '>']) {
        return Err((
            "limits.alert_to".into(),
            format!("{alert_to:?} is not an address"),
        ));
    }
    let storm_window = l
        .storm
        .window
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(3600));
    if storm_window.is_zero() {
        return Err(("limits.storm.window".into(), "must be > 0".into()));
    }
    Ok(Limits {
        enabled: l.enabled.unwrap_or(true),
        default,
        users,
        exempt: l.exempt.unwrap_or_else(|| vec!["root".into()]),
        alert_to,
        storm_threshold: l.storm.threshold.unwrap_or(5),
        storm_window,
        suppress_for: l
            .suppress_for
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(7 * 86400)),
        max_bounces_per_hour: l.max_bounces_per_hour.unwrap_or(30),
    })
}
