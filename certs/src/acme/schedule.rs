//! When to order again: renewal two thirds into the lifetime, which leaves
//! a third for retries before expiry, and jittered backoff after a failure.
//! Pure arithmetic, so that the gateway's renewal loop stays a loop.

use std::time::{Duration, SystemTime};

use crate::loaded::Loaded;

/// When to renew: two thirds into the certificate's lifetime.
pub fn renew_at(loaded: &Loaded) -> SystemTime {
    match loaded.not_after.duration_since(loaded.not_before) {
        Ok(lifetime) => loaded
            .not_before
            .checked_add(lifetime / 3 * 2)
            .unwrap_or(loaded.not_after),
        // A certificate that ends before it starts: renew now.
        Err(_) => loaded.not_after.min(SystemTime::now()),
    }
}

/// Delay before retry number `attempt` (0-based) after a failed issuance:
/// 1 min, 10 min, 100 min, ..., at most 24 h, each ±10% so that many
/// instances do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    const CAP: f64 = 86_400.0;
    let base = 60.0 * 10f64.powi(attempt.min(10) as i32);
    let mut bytes = [0u8; 4];
    // No randomness means no jitter, not no retry.
    let unit = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    let jittered = base.min(CAP) * (0.9 + 0.2 * unit);
    Duration::from_secs_f64(jittered.min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn backoff_grows_tenfold_with_jitter_and_cap() {
        let bounds = [
            (0, 54.0, 66.0),
            (1, 540.0, 660.0),
            (2, 5_400.0, 6_600.0),
            (3, 54_000.0, 66_000.0),
            (4, 77_760.0, 86_400.0),
            (9, 77_760.0, 86_400.0),
            (u32::MAX, 77_760.0, 86_400.0),
        ];
        for (attempt, low, high) in bounds {
            let mut seen = Vec::new();
            for _ in 0..200 {
                let d = backoff(attempt).as_secs_f64();
                assert!(d >= low && d <= high, "attempt {attempt}: {d}");
                seen.push(d);
            }
            // Jitter actually varies.
            seen.dedup();
            assert!(seen.len() > 1, "attempt {attempt}: no jitter");
        }
    }

    fn loaded_with(not_before: u64, not_after: u64) -> Loaded {
        let mut loaded = crate::self_signed::generate(&names(&["a.test"])).expect("generate");
        loaded.not_before = UNIX_EPOCH + Duration::from_secs(not_before);
        loaded.not_after = UNIX_EPOCH + Duration::from_secs(not_after);
        loaded
    }

    #[test]
    fn renew_at_two_thirds() {
        let loaded = loaded_with(1_000_000, 1_000_000 + 90 * 86_400);
        assert_eq!(
            renew_at(&loaded),
            UNIX_EPOCH + Duration::from_secs(1_000_000 + 60 * 86_400)
        );
        // A real certificate: a year of validity from a day ago.
        let real = crate::self_signed::generate(&names(&["a.test"])).expect("generate");
        let lifetime = real
            .not_after
            .duration_since(real.not_before)
            .expect("order");
        assert_eq!(renew_at(&real), real.not_before + lifetime / 3 * 2);
        // Nonsense validity: renew now at the latest.
        let backwards = loaded_with(2_000, 1_000);
        assert!(renew_at(&backwards) <= UNIX_EPOCH + Duration::from_secs(1_000));
    }
}
