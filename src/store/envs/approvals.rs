//! Approvals: what waits for an admin, and the approve and deny decisions.
//! An approval re-checks the quota with the usage in its own transaction, so
//! what was fine when asked is not queued if it no longer fits.

use super::{env_row, set_env_state, usage, EnvRecord, ENV_COLUMNS};
use crate::catalog::command::Action;
use crate::domain::lifecycle::EnvState;
use crate::domain::policy::{self, ApprovalReason};
use crate::domain::quota::{self, Quota, QuotaCheck};
use crate::store::jobs::{insert_job, NewJob};
use crate::store::{audit, now, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// An approval as stored.
#[derive(Debug, Clone)]
pub struct ApprovalRecord {
    pub id: i64,
    pub env_id: i64,
    pub team: String,
    pub requester: String,
    pub reason: ApprovalReason,
    pub over_quota: bool,
    pub state: String,
    pub decided_by: Option<String>,
    pub reply_to: String,
    /// "create", "extend" or "keep".
    pub kind: String,
    pub extend_secs: Option<i64>,
}

/// What became of an approve or deny.
#[derive(Debug, Clone)]
pub enum Decided {
    Approved {
        job_id: i64,
        check: QuotaCheck,
    },
    Denied,
    /// It had already been decided (a double click, or two admins at once).
    AlreadyDecided {
        state: String,
        by: Option<String>,
    },
    Refused(String),
}

impl Store {
    pub async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>, StoreError> {
        self.call(move |c| approval(c, id)).await
    }

    pub async fn pending_approvals(
        &self,
        team: Option<String>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.call(move |c| {
            let ids: Vec<i64> = c
                .prepare("SELECT id FROM approvals WHERE state = 'pending' AND (?1 IS NULL OR team = ?1) ORDER BY id")?
                .query_map([team], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::new();
            for id in ids {
                out.extend(approval(c, id)?);
            }
            Ok(out)
        })
        .await
    }

    /// Approves a pending request: the quota is re-checked with this
    /// transaction's usage and the job queued, or nothing changes.
    pub async fn approve(
        &self,
        id: i64,
        decider: String,
        quota: Quota,
        override_quota: bool,
        job: NewJob,
    ) -> Result<Decided, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(a) = approval(&tx, id)? else {
                return Err(StoreError::Corrupt(format!("approval {id} vanished")));
            };
            if a.state != "pending" {
                return Ok(Decided::AlreadyDecided { state: a.state, by: a.decided_by });
            }
            let env: EnvRecord = tx.query_row(
                &format!("SELECT {ENV_COLUMNS} FROM environments WHERE id = ?1"),
                [a.env_id],
                env_row,
            )?;
            let check = quota::check(&quota, usage(&tx, &a.team)?, &env.resources);
            if let Err(why) = policy::approval_allowed(&check, a.over_quota, override_quota) {
                audit(&tx, &decider, Action::ApprovalApprove.name(), &format!("request {id}"), "refused", &why)?;
                tx.commit()?;
                return Ok(Decided::Refused(why));
            }
            tx.execute(
                "UPDATE approvals SET state = 'approved', decided_by = ?2, decided_at = ?3 WHERE id = ?1 AND state = 'pending'",
                params![id, decider, now()],
            )?;
            if !set_env_state(&tx, a.env_id, &[EnvState::PendingApproval], EnvState::Queued, None)? {
                return Err(StoreError::Corrupt(format!("request {id}'s environment is not pending")));
            }
            let job_id = insert_job(&tx, a.env_id, &job)?;
            audit(&tx, &decider, Action::ApprovalApprove.name(), &format!("request {id}"), "approved", &format!("job {job_id}"))?;
            tx.commit()?;
            Ok(Decided::Approved { job_id, check })
        })
        .await
    }

    pub async fn deny(
        &self,
        id: i64,
        decider: String,
        reason: String,
    ) -> Result<Decided, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(a) = approval(&tx, id)? else {
                return Err(StoreError::Corrupt(format!("approval {id} vanished")));
            };
            if a.state != "pending" {
                return Ok(Decided::AlreadyDecided { state: a.state, by: a.decided_by });
            }
            tx.execute(
                "UPDATE approvals SET state = 'denied', decided_by = ?2, decided_at = ?3, deny_reason = ?4
                 WHERE id = ?1 AND state = 'pending'",
                params![id, decider, now(), reason],
            )?;
            set_env_state(&tx, a.env_id, &[EnvState::PendingApproval], EnvState::Denied, Some(&reason))?;
            audit(&tx, &decider, Action::ApprovalDeny.name(), &format!("request {id}"), "denied", &reason)?;
            tx.commit()?;
            Ok(Decided::Denied)
        })
        .await
    }
}

fn approval(c: &Connection, id: i64) -> Result<Option<ApprovalRecord>, StoreError> {
    Ok(c.query_row(
        "SELECT id, env_id, team, requester, reason, over_quota, state, decided_by, reply_to, kind, extend_secs FROM approvals WHERE id = ?1",
        [id],
        |r| {
            let reason: String = r.get(4)?;
            Ok(ApprovalRecord {
                id: r.get(0)?,
                env_id: r.get(1)?,
                team: r.get(2)?,
                requester: r.get(3)?,
                reason: serde_json::from_str(&reason)
                    .unwrap_or(ApprovalReason::OverQuota(reason)),
                over_quota: r.get(5)?,
                state: r.get(6)?,
                decided_by: r.get(7)?,
                reply_to: r.get(8)?,
                kind: r.get(9)?,
                extend_secs: r.get(10)?,
            })
        },
    )
    .optional()?)
}
