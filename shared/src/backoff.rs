//! Backoff between attempts, one formula for everyone: the registry transport's request
//! retries, the SQS sender's batch retries and the copier's image and blob rounds. Full
//! jitter keeps many copiers that failed together from retrying together. What to retry,
//! and how often, stays with each caller.

use std::time::Duration;

/// A random delay in `[d/2, d]` with `d = first · 2^retry`, capped at `cap`.
pub fn jittered(first: Duration, retry: u32, cap: Duration) -> Duration {
    let exp = first.saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX));
    let half = exp.min(cap) / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_jitter_and_stops_at_the_cap() {
        let first = Duration::from_millis(100);
        for retry in 0..40 {
            let full = (first * 2u32.pow(retry.min(16))).min(Duration::from_secs(30));
            let delay = jittered(first, retry, Duration::from_secs(30));
            assert!(delay >= full / 2 && delay <= full, "{retry}: {delay:?}");
        }
        assert_eq!(jittered(Duration::ZERO, 3, Duration::MAX), Duration::ZERO);
        assert!(jittered(Duration::from_secs(1), u32::MAX, Duration::MAX) > Duration::ZERO);
    }
}
