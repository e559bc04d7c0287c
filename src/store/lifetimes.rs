//! Lifetimes in the store: expiry, the durable reminder schedule, expired
//! environments, and approvals that extend or keep an environment. A reminder
//! is claimed (`scheduled` → `sent`) before it is posted, so it is never sent twice.

use super::envs::EnvRecord;
use super::{audit, Store, StoreError};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

/// A reminder that is due, with what its message needs.
#[derive(Debug, Clone)]
pub struct DueReminder {
    pub id: i64,
    pub env_id: i64,
    pub env_name: String,
    pub owner_display: String,
    pub expires_at: i64,
    pub due_at: i64,
    pub announce_to: Option<String>,
}

const LIVE: &str = "('ready', 'stopped')";

/// How often the scheduler tries an expired environment's teardown before a
/// person has to look (`/env list` says the last destroy failed and why).
pub const TEARDOWN_TRIES: i64 = 4;

impl Store {
    /// Replaces the environment's scheduled reminders with `schedule` (offset, due_at).
    pub async fn schedule_reminders(
        &self,
        env_id: i64,
        schedule: Vec<(i64, i64)>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            write_reminders(&tx, env_id, &schedule)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Scheduled reminders that are due now, of environments still alive.
    pub async fn due_reminders(&self, now: i64) -> Result<Vec<DueReminder>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT r.id, e.id, e.name, e.owner_display, e.expires_at, r.due_at, e.announce_to
                 FROM reminders r JOIN environments e ON e.id = r.env_id
                 WHERE r.state = 'scheduled' AND r.due_at <= ?1 AND e.state IN {LIVE} AND e.expires_at IS NOT NULL
                 ORDER BY r.due_at"
            ))?;
            let rows = stmt
                .query_map([now], |r| {
                    Ok(DueReminder {
                        id: r.get(0)?,
                        env_id: r.get(1)?,
                        env_name: r.get(2)?,
                        owner_display: r.get(3)?,
                        expires_at: r.get(4)?,
                        due_at: r.get(5)?,
                        announce_to: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Claims a reminder for sending; false if it was sent or skipped already.
    pub async fn claim_reminder(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE reminders SET state = 'sent', sent_at = ?2 WHERE id = ?1 AND state = 'scheduled'",
                params![id, now],
            )? == 1)
        })
        .await
    }

    pub async fn skip_reminders(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.call(move |c| {
            for id in ids {
                c.execute(
                    "UPDATE reminders SET state = 'skipped' WHERE id = ?1 AND state = 'scheduled'",
                    [id],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Skips every scheduled reminder of an environment (it expired, or is kept).
    pub async fn skip_env_reminders(&self, env_id: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE reminders SET state = 'skipped' WHERE env_id = ?1 AND state = 'scheduled'",
                [env_id],
            )?;
            Ok(())
        })
        .await
    }

    /// How many reminders were sent for an environment.
    pub async fn sent_reminders(&self, env_id: i64) -> Result<i64, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM reminders WHERE env_id = ?1 AND state = 'sent'",
                [env_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Environments whose expiry plus `grace` has passed: live ones, and
    /// ones whose teardown failed (no job runs for them) fewer than
    /// [`TEARDOWN_TRIES`] times, with how often it failed.
    pub async fn expired(&self, now: i64, grace: i64) -> Result<Vec<(EnvRecord, i64)>, StoreError> {
        let ids: Vec<(i64, i64)> = self
            .call(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT id, 0 FROM environments WHERE state IN {LIVE} AND expires_at IS NOT NULL AND expires_at <= ?1 - ?2
                     UNION ALL
                     SELECT e.id, (SELECT COUNT(*) FROM jobs j WHERE j.env_id = e.id AND j.kind = 'destroy' AND j.state = 'failed') AS failed
                     FROM environments e
                     WHERE e.state = 'destroying' AND e.expires_at IS NOT NULL AND e.expires_at <= ?1 - ?2
                       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.env_id = e.id AND j.state IN ('queued', 'running', 'rolling_back'))
                       AND failed BETWEEN 1 AND ?3 - 1"
                ))?;
                let rows = stmt
                    .query_map(params![now, grace, TEARDOWN_TRIES], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<(i64, i64)>, _>>()?;
                Ok(rows)
            })
            .await?;
        let mut out = Vec::new();
        for (id, failed) in ids {
            if let Some(env) = self.env(id).await? {
                out.push((env, failed));
            }
        }
        Ok(out)
    }

    /// The next moment something is due: a reminder, or an expiry plus `grace`.
    pub async fn next_due(&self, grace: i64) -> Result<Option<i64>, StoreError> {
        self.call(move |c| {
            let reminder: Option<i64> = c
                .prepare_cached(&format!(
                    "SELECT MIN(r.due_at) FROM reminders r JOIN environments e ON e.id = r.env_id
                     WHERE r.state = 'scheduled' AND e.state IN {LIVE}"
                ))?
                .query_row([], |r| r.get(0))?;
            let expiry: Option<i64> = c
                .prepare_cached(&format!(
                    "SELECT MIN(expires_at) + ?1 FROM environments WHERE state IN {LIVE} AND expires_at IS NOT NULL"
                ))?
                .query_row([grace], |r| r.get(0))?;
            Ok(match (reminder, expiry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        })
        .await
    }

    /// Sets (or clears: kept) an environment's expiry.
    pub async fn set_expiry(&self, env_id: i64, expires_at: Option<i64>) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE environments SET expires_at = ?2 WHERE id = ?1",
                params![env_id, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    /// Asks for an admin's approval of a longer lifetime (`extend_secs`) or of
    /// no expiry at all (`kind` = "keep"). An open request of the same kind is reused.
    /// A pending request by `requester` (who asked, not the owner) to extend
    /// or keep `env`. The terms of a pending request never change: the same
    /// ask again is the same request, a different one is a new request.
    pub async fn request_lifetime(
        &self,
        env: &EnvRecord,
        requester: String,
        kind: &'static str,
        extend_secs: Option<i64>,
        reason: String,
        reply_to: String,
    ) -> Result<i64, StoreError> {
        let (env_id, team, name) = (env.id, env.team.clone(), env.name.clone());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(id) = tx
                .query_row(
                    "SELECT id FROM approvals WHERE env_id = ?1 AND kind = ?2 AND state = 'pending'
                     AND extend_secs IS ?3 AND requester = ?4",
                    params![env_id, kind, extend_secs, requester],
                    |r| r.get(0),
                )
                .optional()?
            {
                return Ok(id);
            }
            let reason_json = serde_json::to_string(&crate::domain::policy::ApprovalReason::Lifetime(reason.clone()))
                .unwrap_or_default();
            tx.execute(
                "INSERT INTO approvals (env_id, team, requester, reason, over_quota, state, reply_to, created_at, kind, extend_secs)
                 VALUES (?1, ?2, ?3, ?4, 0, 'pending', ?5, ?6, ?7, ?8)",
                params![env_id, team, requester, reason_json, reply_to, super::now(), kind, extend_secs],
            )?;
            let id = tx.last_insert_rowid();
            audit(&tx, &requester, &format!("env.{kind}"), &name, "pending approval", &reason)?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Decides a lifetime request in one transaction: the approval and the
    /// environment's expiry change together, and only while the request is
    /// pending and its environment is ready or stopped. A request whose
    /// environment was destroyed (or failed) meanwhile is void, whatever
    /// the admin decided, and nothing else changes.
    pub async fn decide_lifetime(
        &self,
        id: i64,
        decider: String,
        decision: LifetimeDecision,
    ) -> Result<LifetimeDecided, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            type Row = (String, i64, String, String, Option<i64>, Option<i64>);
            let row: Option<Row> = tx
                .query_row(
                    "SELECT a.state, e.id, e.name, e.state, e.expires_at, a.extend_secs
                     FROM approvals a JOIN environments e ON e.id = a.env_id WHERE a.id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            let Some((state, env_id, name, env_state, expires_at, extend_secs)) = row else {
                return Ok(LifetimeDecided::AlreadyDecided);
            };
            if state == "void" {
                return Ok(LifetimeDecided::Void { name, env_state });
            }
            if state != "pending" {
                return Ok(LifetimeDecided::AlreadyDecided);
            }
            let now = super::now();
            if !matches!(env_state.as_str(), "ready" | "stopped") {
                // What it would change is gone: the request is void, nothing else moves.
                tx.execute(
                    "UPDATE approvals SET state = 'void', decided_by = ?2, decided_at = ?3, deny_reason = ?4 WHERE id = ?1",
                    params![id, decider, now, format!("{name} is {env_state}")],
                )?;
                audit(&tx, &decider, "approval.lifetime", &format!("request {id}"), "void", &format!("{name} is {env_state}"))?;
                tx.commit()?;
                return Ok(LifetimeDecided::Void { name, env_state });
            }
            let (state, reason, expiry) = match &decision {
                LifetimeDecision::Deny(reason) => ("denied", Some(reason.clone()), expires_at),
                LifetimeDecision::Keep => ("approved", None, None),
                LifetimeDecision::Extend { now } => {
                    let at = expires_at.unwrap_or(*now).max(*now) + extend_secs.unwrap_or_default();
                    ("approved", None, Some(at))
                }
            };
            tx.execute(
                "UPDATE approvals SET state = ?2, decided_by = ?3, decided_at = ?4, deny_reason = ?5 WHERE id = ?1",
                params![id, state, decider, now, reason],
            )?;
            if state == "approved" {
                tx.execute(
                    "UPDATE environments SET expires_at = ?2 WHERE id = ?1",
                    params![env_id, expiry],
                )?;
            }
            audit(&tx, &decider, "approval.lifetime", &format!("request {id}"), state, reason.as_deref().unwrap_or(""))?;
            tx.commit()?;
            Ok(match decision {
                LifetimeDecision::Deny(_) => LifetimeDecided::Denied,
                _ => LifetimeDecided::Approved { expires_at: expiry },
            })
        })
        .await
    }
}

/// What an admin decided about a lifetime request.
#[derive(Debug, Clone)]
pub enum LifetimeDecision {
    /// Extend by the request's terms, counted from `now` or the expiry, whichever is later.
    Extend {
        now: i64,
    },
    /// No expiry.
    Keep,
    Deny(String),
}

/// What became of a decision about a lifetime request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifetimeDecided {
    /// The environment's expiry is now this (None: it never expires).
    Approved {
        expires_at: Option<i64>,
    },
    Denied,
    AlreadyDecided,
    /// The environment it was for is no longer there (`env_state`): nothing changed.
    Void {
        name: String,
        env_state: String,
    },
}

/// Replaces an environment's scheduled reminders with `schedule` ((offset, due) pairs).
pub(super) fn write_reminders(
    c: &rusqlite::Connection,
    env_id: i64,
    schedule: &[(i64, i64)],
) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM reminders WHERE env_id = ?1 AND state = 'scheduled'")?
        .execute([env_id])?;
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO reminders (env_id, offset_secs, due_at) VALUES (?1, ?2, ?3)",
    )?;
    for (offset, due) in schedule {
        insert.execute(params![env_id, offset, due])?;
    }
    Ok(())
}
