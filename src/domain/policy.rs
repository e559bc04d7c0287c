//! The decision on a request: go ahead, wait for an admin, or refuse. Pure: the
//! quota numbers come in already read, inside the caller's transaction.

use super::quota::QuotaCheck;
use super::team::OverQuota;
use serde::{Deserialize, Serialize};

/// Why a request waits for an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum ApprovalReason {
    /// The request would pass these limits.
    OverQuota(String),
    /// The profile always needs approval.
    ProfileRequiresApproval(String),
    /// A lifetime beyond the limits, or no expiry at all.
    Lifetime(String),
}

impl ApprovalReason {
    pub fn describe(&self) -> String {
        match self {
            ApprovalReason::OverQuota(excess) => format!("over the team's quota: {excess}"),
            ApprovalReason::ProfileRequiresApproval(profile) => {
                format!("profile {profile} always needs an admin's approval")
            }
            ApprovalReason::Lifetime(why) => why.clone(),
        }
    }
}

/// What happens to a request that passed validation and permission checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved at once: reserve and queue the job.
    Enqueue,
    /// Reserve nothing yet; post an approval card.
    AwaitApproval(ApprovalReason),
    /// Refused, with the reason for the user.
    Deny(String),
}

/// Decides a create request from its quota check and its profile.
pub fn decide_create(
    check: &QuotaCheck,
    over_quota: OverQuota,
    profile: &str,
    profile_needs_approval: bool,
) -> Decision {
    if !check.fits() {
        return match over_quota {
            OverQuota::Refuse => Decision::Deny(format!(
                "this would exceed the team's quota: {}. Destroy an environment or ask an admin to raise the quota",
                check.describe_excess()
            )),
            OverQuota::Approval => {
                Decision::AwaitApproval(ApprovalReason::OverQuota(check.describe_excess()))
            }
        };
    }
    if profile_needs_approval {
        return Decision::AwaitApproval(ApprovalReason::ProfileRequiresApproval(
            profile.to_string(),
        ));
    }
    Decision::Enqueue
}

/// Whether an admin's approval may go ahead given the quota at approval time.
/// A request that was already over quota when it was made was shown as such on
/// its card, so approving it is a knowing override. A request that fitted then
/// but no longer fits needs the admin to say so explicitly.
pub fn approval_allowed(
    now: &QuotaCheck,
    was_over_quota: bool,
    override_quota: bool,
) -> Result<(), String> {
    if now.fits() || was_over_quota || override_quota {
        Ok(())
    } else {
        Err(format!(
            "approving now would exceed the team's quota ({}), which it did not when it was requested; \
             add override:true to grant it anyway",
            now.describe_excess()
        ))
    }
}

/// Whether the decider may decide on a request made by the requester.
pub fn may_decide(
    is_admin: bool,
    decider: &str,
    requester: &str,
    allow_self: bool,
) -> Result<(), String> {
    if !is_admin {
        return Err("only an admin of the request's team may approve or deny it".into());
    }
    if decider == requester && !allow_self {
        return Err("you cannot approve your own request; ask another admin of the team".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::quota::{check, Quota, Resources, Usage};

    fn one() -> Resources {
        Resources {
            cores: 1,
            memory_mb: 512,
            swap_mb: 0,
            disk_gb: 4,
        }
    }

    fn full_quota() -> (Quota, Usage) {
        let q = Quota {
            environments: Some(1),
            ..Quota::default()
        };
        (q, Usage::default().plus(&one()))
    }

    #[test]
    fn within_quota_is_enqueued() {
        let c = check(&Quota::default(), Usage::default(), &one());
        assert_eq!(
            decide_create(&c, OverQuota::Approval, "web-app", false),
            Decision::Enqueue
        );
    }

    #[test]
    fn over_quota_waits_for_approval_by_default() {
        let (q, u) = full_quota();
        let c = check(&q, u, &one());
        assert!(matches!(
            decide_create(&c, OverQuota::Approval, "web-app", false),
            Decision::AwaitApproval(ApprovalReason::OverQuota(_))
        ));
    }

    #[test]
    fn over_quota_is_refused_when_the_team_says_so() {
        let (q, u) = full_quota();
        let c = check(&q, u, &one());
        assert!(matches!(
            decide_create(&c, OverQuota::Refuse, "web-app", false),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn a_profile_that_needs_approval_waits_even_within_quota() {
        let c = check(&Quota::default(), Usage::default(), &one());
        assert!(matches!(
            decide_create(&c, OverQuota::Approval, "docker-host", true),
            Decision::AwaitApproval(ApprovalReason::ProfileRequiresApproval(_))
        ));
    }

    #[test]
    fn a_request_that_no_longer_fits_needs_an_explicit_override() {
        let (q, u) = full_quota();
        let c = check(&q, u, &one());
        assert!(approval_allowed(&c, false, false).is_err());
        assert!(approval_allowed(&c, false, true).is_ok());
        assert!(approval_allowed(&c, true, false).is_ok());
    }

    #[test]
    fn self_approval_is_refused_unless_configured() {
        assert!(may_decide(true, "a", "a", false).is_err());
        assert!(may_decide(true, "a", "a", true).is_ok());
        assert!(may_decide(false, "a", "b", true).is_err());
    }
}
