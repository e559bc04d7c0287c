//! Submitting a create request. It is decided and reserved in one
//! `BEGIN IMMEDIATE` transaction: the team's usage is read, checked against its
//! quota and the result written before any other writer can run, so
//! concurrent requests can never overshoot.

use super::{live_by_name, usage};
use crate::catalog::command::Action;
use crate::domain::lifecycle::EnvState;
use crate::domain::policy::{ApprovalReason, Decision};
use crate::domain::quota::{self, Quota, QuotaCheck, Resources};
use crate::store::jobs::{insert_job, NewJob};
use crate::store::{audit, now, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// A create request that passed validation.
#[derive(Debug, Clone)]
pub struct NewEnv {
    pub name: String,
    pub team: String,
    pub owner: String,
    pub owner_display: String,
    pub profile: String,
    pub node: String,
    pub resources: Resources,
    pub request_key: String,
    pub ttl_secs: Option<i64>,
    /// JSON ReplyTo where lifecycle events of the environment are announced.
    pub announce_to: String,
    pub domain: Option<String>,
}

/// What became of a create request.
#[derive(Debug, Clone)]
pub enum Submitted {
    Queued {
        env_id: i64,
        job_id: i64,
        check: QuotaCheck,
    },
    Pending {
        env_id: i64,
        approval_id: i64,
        reason: ApprovalReason,
        check: QuotaCheck,
    },
    Denied {
        reason: String,
    },
    /// The same chat event was seen before: nothing new was made.
    Duplicate {
        env_id: i64,
    },
    NameTaken {
        state: EnvState,
    },
    /// A live environment is already published under this domain.
    DomainTaken {
        name: String,
    },
}

fn insert_env(c: &Connection, e: &NewEnv, state: EnvState) -> Result<i64, StoreError> {
    let t = now();
    c.prepare_cached(
        "INSERT INTO environments (name, team, owner, owner_display, profile, node, cores, memory_mb, swap_mb, disk_gb,
                                   state, request_key, ttl_secs, created_at, updated_at, announce_to, domain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16)",
    )?
    .execute(params![
            e.name, e.team, e.owner, e.owner_display, e.profile, e.node,
            e.resources.cores, e.resources.memory_mb, e.resources.swap_mb, e.resources.disk_gb,
            state.as_str(), e.request_key, e.ttl_secs, t, e.announce_to, e.domain
        ])?;
    Ok(c.last_insert_rowid())
}

impl Store {
    /// Decides and reserves a create request atomically. `decide` is the pure
    /// policy, given the quota check made with this transaction's usage.
    pub async fn submit_create(
        &self,
        env: NewEnv,
        quota: Quota,
        decide: impl FnOnce(&QuotaCheck) -> Decision + Send + 'static,
        job: NewJob,
    ) -> Result<Submitted, StoreError> {
        self.submit_create_with(env, quota, decide, job, |_, _| Ok(()))
            .await
    }

    /// [`Store::submit_create`], with `extra` run in the same transaction right
    /// after the environment row is inserted (apps write their details there).
    pub async fn submit_create_with(
        &self,
        env: NewEnv,
        quota: Quota,
        decide: impl FnOnce(&QuotaCheck) -> Decision + Send + 'static,
        job: NewJob,
        extra: impl FnOnce(&Connection, i64) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<Submitted, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(env_id) = tx
                .prepare_cached("SELECT id FROM environments WHERE request_key = ?1")?
                .query_row([&env.request_key], |r| r.get(0))
                .optional()?
            {
                return Ok(Submitted::Duplicate { env_id });
            }
            if let Some(live) = live_by_name(&tx, &env.name)? {
                return Ok(Submitted::NameTaken { state: live.state });
            }
            if let Some(domain) = &env.domain {
                let holder: Option<String> = tx
                    .query_row(
                        "SELECT name FROM environments WHERE domain = ?1 AND state NOT IN ('destroyed', 'failed', 'denied')",
                        [domain],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(name) = holder {
                    return Ok(Submitted::DomainTaken { name });
                }
            }
            let check = quota::check(&quota, usage(&tx, &env.team)?, &env.resources);
            let outcome = match decide(&check) {
                Decision::Enqueue => {
                    let env_id = insert_env(&tx, &env, EnvState::Queued)?;
                    extra(&tx, env_id)?;
                    let job_id = insert_job(&tx, env_id, &job)?;
                    audit(&tx, &env.owner, Action::EnvCreate.name(), &env.name, "approved", &format!("job {job_id}"))?;
                    Submitted::Queued { env_id, job_id, check }
                }
                Decision::AwaitApproval(reason) => {
                    let env_id = insert_env(&tx, &env, EnvState::PendingApproval)?;
                    extra(&tx, env_id)?;
                    tx.execute(
                        "INSERT INTO approvals (env_id, team, requester, reason, over_quota, state, reply_to, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)",
                        params![
                            env_id, env.team, env.owner,
                            serde_json::to_string(&reason).unwrap_or_default(),
                            !check.fits(), job.reply_to, now()
                        ],
                    )?;
                    let approval_id = tx.last_insert_rowid();
                    audit(&tx, &env.owner, Action::EnvCreate.name(), &env.name, "pending approval", &reason.describe())?;
                    Submitted::Pending { env_id, approval_id, reason, check }
                }
                Decision::Deny(reason) => {
                    audit(&tx, &env.owner, Action::EnvCreate.name(), &env.name, "refused", &reason)?;
                    Submitted::Denied { reason }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }
}
