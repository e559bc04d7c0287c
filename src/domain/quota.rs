//! Resources an environment asks for, a team's quota, and the pure check of a
//! request against the quota. The check is made inside the store's write
//! transaction with the usage read in that same transaction, so that concurrent
//! requests can never overshoot.

use serde::Serialize;
use std::time::Duration;

/// What one environment takes from its team's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Resources {
    pub cores: u32,
    pub memory_mb: u32,
    pub swap_mb: u32,
    pub disk_gb: u32,
}

/// A team's limits. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Quota {
    pub cores: Option<u32>,
    pub memory_mb: Option<u32>,
    pub disk_gb: Option<u32>,
    pub environments: Option<u32>,
    #[serde(skip)]
    pub max_ttl: Option<Duration>,
}

/// What a team uses now: the sum over its environments that hold resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    pub cores: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub environments: u64,
}

impl Usage {
    pub fn plus(self, r: &Resources) -> Usage {
        Usage {
            cores: self.cores + u64::from(r.cores),
            memory_mb: self.memory_mb + u64::from(r.memory_mb),
            disk_gb: self.disk_gb + u64::from(r.disk_gb),
            environments: self.environments + 1,
        }
    }
}

/// One limit a request would pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excess {
    pub what: &'static str,
    pub after: u64,
    pub limit: u64,
}

/// The outcome of checking a request against a quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaCheck {
    pub before: Usage,
    pub after: Usage,
    pub exceeded: Vec<Excess>,
}

impl QuotaCheck {
    pub fn fits(&self) -> bool {
        self.exceeded.is_empty()
    }

    /// "cores 10 of 8 (2 over), environments 3 of 2 (1 over)".
    pub fn describe_excess(&self) -> String {
        describe(&self.exceeded)
    }
}

/// Checks what `usage` would become with `request` added.
pub fn check(quota: &Quota, usage: Usage, request: &Resources) -> QuotaCheck {
    let after = usage.plus(request);
    QuotaCheck {
        before: usage,
        after,
        exceeded: over(quota, &after),
    }
}

/// The limits `usage` is above (approved requests can take a team past them).
pub fn over(quota: &Quota, after: &Usage) -> Vec<Excess> {
    let limits = [
        ("cores", quota.cores, after.cores),
        ("memory MB", quota.memory_mb, after.memory_mb),
        ("disk GB", quota.disk_gb, after.disk_gb),
        ("environments", quota.environments, after.environments),
    ];
    limits
        .into_iter()
        .filter_map(|(what, limit, after)| {
            let limit = u64::from(limit?);
            (after > limit).then_some(Excess { what, after, limit })
        })
        .collect()
}

impl Excess {
    /// "environments 5 of 2 (3 over)".
    pub fn describe(&self) -> String {
        format!(
            "{} {} of {} ({} over)",
            self.what,
            self.after,
            self.limit,
            self.after - self.limit
        )
    }
}

/// The excesses, comma-separated.
pub fn describe(exceeded: &[Excess]) -> String {
    exceeded
        .iter()
        .map(Excess::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> Quota {
        Quota {
            cores: Some(4),
            memory_mb: Some(4096),
            disk_gb: Some(40),
            environments: Some(2),
            max_ttl: None,
        }
    }

    fn small() -> Resources {
        Resources {
            cores: 1,
            memory_mb: 512,
            swap_mb: 0,
            disk_gb: 8,
        }
    }

    #[test]
    fn a_request_within_every_limit_fits() {
        let c = check(&quota(), Usage::default(), &small());
        assert!(c.fits());
        assert_eq!(c.after.environments, 1);
    }

    #[test]
    fn the_third_environment_of_two_is_refused_with_the_numbers() {
        let used = Usage::default().plus(&small()).plus(&small());
        let c = check(&quota(), used, &small());
        assert!(!c.fits());
        assert_eq!(c.describe_excess(), "environments 3 of 2 (1 over)");
    }

    #[test]
    fn every_exceeded_limit_is_named() {
        let big = Resources {
            cores: 8,
            memory_mb: 8192,
            swap_mb: 0,
            disk_gb: 8,
        };
        let c = check(&quota(), Usage::default(), &big);
        assert_eq!(
            c.describe_excess(),
            "cores 8 of 4 (4 over), memory MB 8192 of 4096 (4096 over)"
        );
    }

    #[test]
    fn no_limit_means_unlimited() {
        let c = check(&Quota::default(), Usage::default(), &small());
        assert!(c.fits());
    }
}
