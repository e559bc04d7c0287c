//! Bounded, jittered retries for Proxmox writes that failed transiently (lost
//! quorum, a held config lock, a proxy's 502, a dropped connection). The caller
//! looks whether the write already happened before it writes again.

use crate::provider::ProviderError;
use rand::Rng;
use std::time::Duration;

pub struct Backoff {
    attempt: u32,
    max: u32,
    base: Duration,
}

impl Backoff {
    /// `max` retries, waiting about base, 2·base, 4·base … (capped at 8 s).
    pub fn new(max: u32, base: Duration) -> Self {
        Backoff {
            attempt: 0,
            max,
            base,
        }
    }

    /// Sleeps and returns true if `e` is worth another try and tries remain.
    pub async fn retry(&mut self, e: &ProviderError) -> bool {
        if !e.is_transient() || self.attempt >= self.max {
            return false;
        }
        let wait = self
            .base
            .saturating_mul(1 << self.attempt.min(6))
            .min(Duration::from_secs(8));
        let jitter = rand::rng().random_range(0..=wait.as_millis() as u64 / 2);
        self.attempt += 1;
        tracing::info!(error = %e, attempt = self.attempt, "transient Proxmox error; retrying");
        tokio::time::sleep(wait + Duration::from_millis(jitter)).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_permanent_error_is_not_retried() {
        let mut b = Backoff::new(3, Duration::from_millis(1));
        let e = ProviderError::Api {
            status: 403,
            message: "Permission check failed".into(),
        };
        assert!(!b.retry(&e).await);
    }

    #[tokio::test]
    async fn a_transient_error_is_retried_a_bounded_number_of_times() {
        let mut b = Backoff::new(2, Duration::from_millis(1));
        let e = ProviderError::Api {
            status: 500,
            message: "cluster not ready - no quorum?".into(),
        };
        assert!(b.retry(&e).await);
        assert!(b.retry(&e).await);
        assert!(!b.retry(&e).await);
    }
}
