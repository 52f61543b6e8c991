//! The retry schedule: exponential backoff with jitter, and the queue
//! lifetime. Pure functions of the config, the message and the clock.

use std::time::Duration;

/// Delay before the attempt after `tries` failed attempts: `min * 2^(tries-1)`
/// capped at `max`, with ±10 % jitter derived from the queue id (stable for
/// one message, spread across messages, so a queue of deferred mail does not
/// retry in lock-step).
pub fn backoff(tries: u32, min: Duration, max: Duration, id: &str) -> Duration {
    let exp = tries.saturating_sub(1).min(30);
    let base = min.saturating_mul(1u32 << exp).min(max);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(tries.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let permille = (h % 201) as i64 - 100; // -100 ..= +100, i.e. ±10 %
    let ms = base.as_millis() as i64;
    let jittered = ms + ms * permille / 1000;
    Duration::from_millis(jittered.max(1000) as u64)
}

/// True when a message that arrived at `arrival` has outlived `lifetime` at `now`.
pub fn expired(arrival: f64, now: f64, lifetime: Duration) -> bool {
    now - arrival > lifetime.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_bounded_jitter() {
        let min = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        let table = [
            (1, 60),
            (2, 120),
            (3, 240),
            (4, 480),
            (5, 960),
            (6, 1920),
            (7, 3600),
            (20, 3600),
        ];
        for (tries, secs) in table {
            let d = backoff(tries, min, max, "1K1D6V0JC6N9J9M").as_secs_f64();
            let s = secs as f64;
            assert!(
                d >= s * 0.9 - 0.001 && d <= s * 1.1 + 0.001,
                "tries {tries}: {d}"
            );
        }
        // different ids spread out
        let a = backoff(3, min, max, "AAAAAAAAAAAAAAA");
        let b = backoff(3, min, max, "BBBBBBBBBBBBBBB");
        assert_ne!(a, b);
        assert!(expired(
            0.0,
            5.0 * 86400.0 + 1.0,
            Duration::from_secs(5 * 86400)
        ));
        assert!(!expired(0.0, 100.0, Duration::from_secs(5 * 86400)));
    }
}
