//! Bounded, jittered retries for Proxmox writes that failed transiently (lost
//! quorum, a proxy's 502, a dropped connection), and a bounded wait for a
//! config lock another Proxmox task holds (a backup, a snapshot, a
//! migration), whether the API refused the write or the write's task ended on
//! the lock. The caller looks whether the write already happened before it
//! writes again.

use crate::provider::{ErrorKind, ProviderError};
use rand::Rng;
use std::time::{Duration, Instant};

pub struct Backoff {
    attempt: u32,
    max: u32,
    base: Duration,
    /// A held lock is waited out until then, however many tries that takes.
    lock_deadline: Instant,
    lock_tries: u32,
}

/// Another try, after a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub after: Duration,
    /// Set when a lock another Proxmox task holds is waited out: this is
    /// the n-th try since.
    pub lock_try: Option<u32>,
}

impl Backoff {
    /// `max` retries of a transient error, waiting about base, 2·base, 4·base
    /// … (capped at 8 s); a held lock is waited out for up to `lock_wait`.
    pub fn new(max: u32, base: Duration, lock_wait: Duration) -> Self {
        Backoff {
            attempt: 0,
            max,
            base,
            lock_deadline: Instant::now() + lock_wait,
            lock_tries: 0,
        }
    }

    /// Sleeps and returns true if `e` is worth another try and tries remain.
    pub async fn retry(&mut self, e: &ProviderError) -> bool {
        match self.plan(e) {
            Some(w) => {
                tokio::time::sleep(w.after).await;
                true
            }
            None => false,
        }
    }

    /// Whether `e` is worth another try, and after how long.
    pub fn plan(&mut self, e: &ProviderError) -> Option<Wait> {
        if e.kind() == ErrorKind::Locked {
            return self.lock(e);
        }
        if !e.is_transient() || self.attempt >= self.max {
            return None;
        }
        let after = self.step(self.attempt, Duration::from_secs(8));
        self.attempt += 1;
        tracing::info!(error = %e, attempt = self.attempt, "transient Proxmox error; retrying");
        Some(Wait {
            after,
            lock_try: None,
        })
    }

    fn lock(&mut self, e: &ProviderError) -> Option<Wait> {
        if !e.lock_may_be_released() {
            return None;
        }
        let left = self.lock_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let after = self.step(self.lock_tries, Duration::from_secs(5)).min(left);
        self.lock_tries += 1;
        tracing::info!(error = %e, attempt = self.lock_tries, "a Proxmox config lock is held; waiting");
        Some(Wait {
            after,
            lock_try: Some(self.lock_tries),
        })
    }

    /// base · 2ⁿ plus up to half of it again, at most `cap`.
    fn step(&self, n: u32, cap: Duration) -> Duration {
        let wait = self.base.saturating_mul(1 << n.min(6)).min(cap);
        let jitter = rand::rng().random_range(0..=wait.as_millis() as u64 / 2);
        (wait + Duration::from_millis(jitter)).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(max: u32, lock_wait: Duration) -> Backoff {
        Backoff::new(max, Duration::from_millis(1), lock_wait)
    }

    #[tokio::test]
    async fn a_permanent_error_is_not_retried() {
        let mut b = backoff(3, Duration::from_secs(1));
        let e = ProviderError::Api {
            status: 403,
            message: "Permission check failed".into(),
        };
        assert!(!b.retry(&e).await);
    }

    #[tokio::test]
    async fn a_transient_error_is_retried_a_bounded_number_of_times() {
        let mut b = backoff(2, Duration::from_secs(1));
        let e = ProviderError::Api {
            status: 500,
            message: "cluster not ready - no quorum?".into(),
        };
        assert!(b.retry(&e).await);
        assert!(b.retry(&e).await);
        assert!(!b.retry(&e).await);
    }

    #[tokio::test]
    async fn a_lock_is_waited_out_in_both_forms_within_one_budget() {
        let mut b = backoff(0, Duration::from_millis(200));
        let api = ProviderError::Api {
            status: 500,
            message: "CT is locked (backup)".into(),
        };
        let task = ProviderError::Task {
            exit: "can't lock file '/run/lock/lxc/pve-config-7.lock' - got timeout".into(),
            log_tail: vec![],
        };
        assert_eq!(b.plan(&api).unwrap().lock_try, Some(1));
        assert!(b.retry(&task).await);
        let started = Instant::now();
        while b.retry(&task).await {
            assert!(started.elapsed() < Duration::from_secs(2), "unbounded");
        }
        assert!(b.lock_tries > 2, "{}", b.lock_tries);
    }

    #[tokio::test]
    async fn a_stale_create_lock_is_not_waited_for() {
        let mut b = backoff(3, Duration::from_secs(60));
        let e = ProviderError::Task {
            exit: "CT is locked (create)".into(),
            log_tail: vec![],
        };
        assert_eq!(b.plan(&e), None);
    }
}
