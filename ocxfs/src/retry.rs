//! How long a download job waits before it retries a ranged GET.
//!
//! Only transient failures are retried (5xx, 429, resets, short bodies,
//! stalls; `Error::is_transient` says which), a few times, with exponential
//! backoff and full jitter so that many readers hit by one failure do not
//! come back at once. A `Retry-After` is the server's explicit word and is
//! honoured, up to 30 s: a reader is never left hanging for minutes.

use std::time::Duration;

use rand::Rng;

/// Retries of one ranged GET on transient failures: exponential backoff
/// with full jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (from 1).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        let jitter = cap.mul_f64(rand::rng().random::<f64>());
        retry_after.map_or(jitter, |r| r.min(Duration::from_secs(30)).max(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_cap_and_honour_retry_after_up_to_30_s() {
        let policy = RetryPolicy::default();
        for attempt in 1..40 {
            assert!(policy.delay(attempt, None) <= policy.max_delay);
        }
        let asked = Duration::from_secs(7);
        assert_eq!(policy.delay(1, Some(asked)), asked);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(30)
        );
    }
}
