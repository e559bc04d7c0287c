//! Lifetimes, pure: when reminders fall due, which one to send after downtime,
//! and whether an extension fits the limits or needs an admin.

use std::time::Duration;

/// The reminders to schedule for an expiry: one per offset whose time is still
/// ahead (a reminder "24 h before" makes no sense for a 2 h lifetime).
pub fn reminder_schedule(expires_at: i64, offsets: &[Duration], now: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = offsets
        .iter()
        .map(|o| o.as_secs() as i64)
        .filter(|o| expires_at - o > now)
        .map(|o| (o, expires_at - o))
        .collect();
    out.sort_by_key(|(_, due)| *due);
    out.dedup();
    out
}

/// After downtime several reminders of one environment may be overdue: send
/// only the latest (closest to expiry), skip the rest. Input: (id, due_at).
pub fn catch_up(overdue: &[(i64, i64)]) -> (Option<i64>, Vec<i64>) {
    let Some(latest) = overdue.iter().max_by_key(|(id, due)| (*due, *id)) else {
        return (None, Vec::new());
    };
    let skip = overdue
        .iter()
        .filter(|(id, _)| *id != latest.0)
        .map(|(id, _)| *id)
        .collect();
    (Some(latest.0), skip)
}

/// What an extension request becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// Within the limits: the new expiry.
    Granted(i64),
    /// Beyond the limits: an admin must approve; the new expiry and the limit passed.
    NeedsApproval { new_expiry: i64, limit: Duration },
}

/// Extends from the current expiry (or from now, if it already passed). The
/// remaining lifetime after extending may not pass `max` (the tighter of the
/// profile's and the team's maximum).
pub fn extend(now: i64, expires_at: i64, by: Duration, max: Duration) -> Extension {
    let new_expiry = expires_at.max(now) + by.as_secs() as i64;
    if new_expiry - now <= max.as_secs() as i64 {
        Extension::Granted(new_expiry)
    } else {
        Extension::NeedsApproval {
            new_expiry,
            limit: max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;

    fn offsets() -> Vec<Duration> {
        vec![Duration::from_secs(24 * 3600), Duration::from_secs(3600)]
    }

    #[test]
    fn both_reminders_are_scheduled_for_a_three_day_lifetime() {
        assert_eq!(
            reminder_schedule(72 * H, &offsets(), 0),
            vec![(24 * H, 48 * H), (H, 71 * H)]
        );
    }

    #[test]
    fn a_reminder_whose_time_has_passed_is_not_scheduled() {
        assert_eq!(reminder_schedule(2 * H, &offsets(), 0), vec![(H, H)]);
    }

    #[test]
    fn after_downtime_only_the_latest_overdue_reminder_is_sent() {
        let (send, skip) = catch_up(&[(1, 100), (2, 200)]);
        assert_eq!(send, Some(2));
        assert_eq!(skip, vec![1]);
        assert_eq!(catch_up(&[]), (None, vec![]));
    }

    #[test]
    fn an_extension_within_the_maximum_is_granted_from_the_current_expiry() {
        let max = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(
            extend(0, 24 * H, Duration::from_secs(24 * 3600), max),
            Extension::Granted(48 * H)
        );
    }

    #[test]
    fn an_extension_beyond_the_maximum_needs_approval() {
        let max = Duration::from_secs(3 * 24 * 3600);
        assert!(matches!(
            extend(0, 48 * H, Duration::from_secs(48 * 3600), max),
            Extension::NeedsApproval { new_expiry, .. } if new_expiry == 96 * H
        ));
    }

    #[test]
    fn an_expired_environment_is_extended_from_now() {
        let max = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(
            extend(100 * H, 90 * H, Duration::from_secs(3600), max),
            Extension::Granted(101 * H)
        );
    }
}
