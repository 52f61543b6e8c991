//! Wall-clock time, RFC 5322 date formatting, and the test clock.
//!
//! Every "now" in Postern comes from [`now`]. An unprivileged process (tests,
//! development) may set a frozen test clock with `POSTERN_NOW`; the
//! installed setgid binary never reads it (see [`init`]):
//! - `POSTERN_NOW=<unix seconds>`: the clock stands still at that instant
//!   (every [`now`] returns exactly it), so retry schedules and lifetimes are
//!   tested without sleeping and without margins for elapsed time. Each CLI
//!   run of a test gets its own value.
//! - `POSTERN_NOW=@<file>`: the instant written in the file (unix seconds),
//!   read again on every [`now`]; a test moves the clock of a long-running
//!   daemon by replacing the file (write and rename). Timers wait at most a
//!   short tick under such a clock ([`wait_limit`]), so a moved clock is
//!   noticed at once.
//!
//! Timeouts and elapsed times never use this clock: they use `Instant`.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A test clock set by `POSTERN_NOW` (see the module header).
enum TestClock {
    /// `<unix seconds>`: this instant, standing still.
    Fixed(SystemTime),
    /// `@<file>`: the instant in the file, re-read on every call; the last
    /// good reading while the file is briefly unreadable.
    File(PathBuf, Mutex<SystemTime>),
}

static BASE: OnceLock<Option<TestClock>> = OnceLock::new();

/// Unix seconds from `POSTERN_NOW` text; None when not a usable number.
fn parse_secs(text: &str) -> Option<SystemTime> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(from_unix_f64)
}

/// Honour `POSTERN_NOW` when `allow_override` (an unprivileged process).
pub fn init(allow_override: bool) {
    let base = if allow_override {
        std::env::var("POSTERN_NOW")
            .ok()
            .and_then(|v| match v.strip_prefix('@') {
                Some(path) => {
                    let path = PathBuf::from(path);
                    let t = parse_secs(&std::fs::read_to_string(&path).ok()?)?;
                    Some(TestClock::File(path, Mutex::new(t)))
                }
                None => parse_secs(&v).map(TestClock::Fixed),
            })
    } else {
        None
    };
    let _ = BASE.set(base);
}

/// The current time.
pub fn now() -> SystemTime {
    match BASE.get() {
        Some(Some(TestClock::Fixed(t))) => *t,
        Some(Some(TestClock::File(path, last))) => {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| parse_secs(&s))
            {
                *last = t;
            }
            *last
        }
        _ => SystemTime::now(),
    }
}

/// How long to block while waiting for a clock time `d` ahead: `d`, or at
/// most a short tick under a test clock that a test may move
/// (`POSTERN_NOW=@<file>`), so that the waiter sees the moved clock.
pub fn wait_limit(d: Duration) -> Duration {
    match BASE.get() {
        Some(Some(TestClock::File(..))) => d.min(Duration::from_millis(50)),
        _ => d,
    }
}

/// Seconds since the epoch, as a float.
pub fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whole seconds since the epoch.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Microseconds since the epoch.
pub fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Largest number of seconds we turn into a Duration (about year 5138):
/// `Duration::from_secs_f64` and `SystemTime + Duration` panic on overflow,
/// and these numbers come from files.
const MAX_SECS: f64 = 1e11;

/// A Duration from float seconds, never panicking: NaN and negative give
/// zero, huge values are capped.
pub fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(MAX_SECS))
    } else {
        Duration::ZERO
    }
}

/// A SystemTime from float seconds since the epoch (see [`secs`]).
pub fn from_unix_f64(s: f64) -> SystemTime {
    UNIX_EPOCH + secs(s)
}

/// (year, month 1-12, day 1-31) from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    wday: usize,
    hour: u64,
    min: u64,
    sec: u64,
}

fn parts(t: SystemTime) -> Parts {
    let secs = unix_secs(t) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u64;
    let (year, month, day) = civil_from_days(days);
    Parts {
        year,
        month,
        day,
        wday: days.rem_euclid(7) as usize,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
    }
}

/// RFC 5322 date in UTC: `Sun, 29 Nov 2026 12:33:01 +0000`, the day of the
/// month always two digits (`Thu, 01 Jan 1970`): the fixed-width day field
/// Postfix writes (its `%e` pads with a blank, `Thu,  1 Jan`; RFC 5322's
/// `1*2DIGIT` allows the zero, which keeps one space between the words).
/// The one date function: submission's `Date:` and every date of a DSN.
/// Times before 1970 count back from the epoch; years stay within
/// 0000-9999.
pub fn rfc5322(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Whole seconds before the epoch, rounding down (-0.5 s is -1 s).
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                -whole
            } else {
                -whole - 1
            }
        }
    };
    let secs = secs.clamp(-62_167_219_200, 253_402_300_799);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Postfix mailq style: `Sun Nov 29 12:33:01`.
pub fn mailq_date(t: SystemTime) -> String {
    let p = parts(t);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02}",
        DAYS[p.wday],
        MONTHS[(p.month - 1) as usize],
        p.day,
        p.hour,
        p.min,
        p.sec
    )
}

/// ISO 8601 UTC: `2026-11-29T12:33:01Z`.
pub fn iso8601(t: SystemTime) -> String {
    let p = parts(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p.year, p.month, p.day, p.hour, p.min, p.sec
    )
}

/// A short human duration: `42s`, `5m`, `3h12m`, `2d4h`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}d{:02}h", s / 86_400, s / 3600 % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_955_581); // 2026-11-29 12:33:01 UTC
        assert_eq!(rfc5322(t), "Sun, 29 Nov 2026 12:33:01 +0000");
        assert_eq!(iso8601(t), "2026-11-29T12:33:01Z");
        assert_eq!(mailq_date(t), "Sun Nov 29 12:33:01");
        assert_eq!(rfc5322(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(
            rfc5322(at(1_709_647_389)),
            "Tue, 05 Mar 2024 14:03:09 +0000"
        );
        assert_eq!(
            rfc5322(at(951_782_400 + 3723)),
            "Tue, 29 Feb 2000 01:02:03 +0000"
        );
        assert_eq!(
            rfc5322(UNIX_EPOCH - Duration::from_secs(86_401)),
            "Tue, 30 Dec 1969 23:59:59 +0000"
        );
        assert_eq!(
            rfc5322(UNIX_EPOCH - Duration::from_millis(500)),
            "Wed, 31 Dec 1969 23:59:59 +0000"
        );
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 720)), "3h12m");
        // Numbers from files never panic.
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(-5.0), Duration::ZERO);
        assert!(from_unix_f64(1e300) > UNIX_EPOCH);
    }
}
