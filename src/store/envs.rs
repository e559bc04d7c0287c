//! Environments, approvals and address allocations. A create request is decided
//! and reserved in one `BEGIN IMMEDIATE` transaction: the team's usage is read,
//! checked against its quota and the result written before any other writer can
//! run, so concurrent requests can never overshoot.

use super::jobs::{insert_job, NewJob};
use super::{audit, now, Store, StoreError};
use crate::domain::lifecycle::EnvState;
use crate::domain::policy::{self, ApprovalReason, Decision};
use crate::domain::quota::{self, Quota, QuotaCheck, Resources, Usage};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

/// An environment as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvRecord {
    pub id: i64,
    pub name: String,
    pub team: String,
    pub owner: String,
    pub owner_display: String,
    pub profile: String,
    pub node: String,
    pub vmid: Option<u32>,
    pub resources: Resources,
    pub address: Option<String>,
    pub state: EnvState,
    pub reason: Option<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub ttl_secs: Option<i64>,
    pub announce_to: Option<String>,
    /// The domain it is published under.
    pub domain: Option<String>,
    /// "lxc" for an environment, "app" for an app (see `domain::app`).
    pub kind: String,
}

impl EnvRecord {
    /// Where lifecycle events go; environments from before announcements existed
    /// fall back to the console.
    /// Whether this row is an app rather than an LXC environment.
    pub fn is_app(&self) -> bool {
        self.kind == crate::domain::app::APP_KIND
    }

    pub fn announce_to_or_default(&self) -> String {
        self.announce_to
            .clone()
            .unwrap_or_else(|| r#"{"platform":"console","channel":"console"}"#.into())
    }
}

const ENV_COLUMNS: &str = "id, name, team, owner, owner_display, profile, node, vmid, cores, memory_mb, swap_mb, disk_gb, address, state, reason, expires_at, created_at, ttl_secs, announce_to, domain, kind";

fn env_row(r: &Row<'_>) -> rusqlite::Result<EnvRecord> {
    let state: String = r.get(13)?;
    Ok(EnvRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        team: r.get(2)?,
        owner: r.get(3)?,
        owner_display: r.get(4)?,
        profile: r.get(5)?,
        node: r.get(6)?,
        vmid: r.get(7)?,
        resources: Resources {
            cores: r.get(8)?,
            memory_mb: r.get(9)?,
            swap_mb: r.get(10)?,
            disk_gb: r.get(11)?,
        },
        address: r.get(12)?,
        state: EnvState::parse(&state).unwrap_or(EnvState::Failed),
        reason: r.get(14)?,
        expires_at: r.get(15)?,
        created_at: r.get(16)?,
        ttl_secs: r.get(17)?,
        announce_to: r.get(18)?,
        domain: r.get(19)?,
        kind: r.get(20)?,
    })
}

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

fn holding_list() -> String {
    EnvState::HOLDING
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The team's usage now, inside the caller's transaction.
pub fn usage(c: &Connection, team: &str) -> Result<Usage, StoreError> {
    let sql = format!(
        "SELECT COALESCE(SUM(cores), 0), COALESCE(SUM(memory_mb), 0), COALESCE(SUM(disk_gb), 0), COUNT(*)
         FROM environments WHERE team = ?1 AND state IN ({})",
        holding_list()
    );
    Ok(c.query_row(&sql, [team], |r| {
        Ok(Usage {
            cores: r.get::<_, i64>(0)? as u64,
            memory_mb: r.get::<_, i64>(1)? as u64,
            disk_gb: r.get::<_, i64>(2)? as u64,
            environments: r.get::<_, i64>(3)? as u64,
        })
    })?)
}

fn insert_env(c: &Connection, e: &NewEnv, state: EnvState) -> Result<i64, StoreError> {
    let t = now();
    c.execute(
        "INSERT INTO environments (name, team, owner, owner_display, profile, node, cores, memory_mb, swap_mb, disk_gb,
                                   state, request_key, ttl_secs, created_at, updated_at, announce_to, domain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16)",
        params![
            e.name, e.team, e.owner, e.owner_display, e.profile, e.node,
            e.resources.cores, e.resources.memory_mb, e.resources.swap_mb, e.resources.disk_gb,
            state.as_str(), e.request_key, e.ttl_secs, t, e.announce_to, e.domain
        ],
    )?;
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
                .query_row("SELECT id FROM environments WHERE request_key = ?1", [&env.request_key], |r| r.get(0))
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
                    audit(&tx, &env.owner, "env.create", &env.name, "approved", &format!("job {job_id}"))?;
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
                    audit(&tx, &env.owner, "env.create", &env.name, "pending approval", &reason.describe())?;
                    Submitted::Pending { env_id, approval_id, reason, check }
                }
                Decision::Deny(reason) => {
                    audit(&tx, &env.owner, "env.create", &env.name, "refused", &reason)?;
                    Submitted::Denied { reason }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    pub async fn env(&self, id: i64) -> Result<Option<EnvRecord>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ENV_COLUMNS} FROM environments WHERE id = ?1"),
                [id],
                env_row,
            )
            .optional()?)
        })
        .await
    }

    /// The live environment with this name, if any.
    pub async fn env_by_name(&self, name: String) -> Result<Option<EnvRecord>, StoreError> {
        self.call(move |c| live_by_name(c, &name)).await
    }

    /// Live environments, optionally of one team, newest last.
    pub async fn list_envs(&self, team: Option<String>) -> Result<Vec<EnvRecord>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ENV_COLUMNS} FROM environments
                 WHERE state NOT IN ('destroyed', 'failed', 'denied') AND (?1 IS NULL OR team = ?1) ORDER BY id"
            ))?;
            let rows = stmt.query_map([team], env_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn usage(&self, team: String) -> Result<Usage, StoreError> {
        self.call(move |c| usage(c, &team)).await
    }

    /// Moves an environment between states; false if it was not in `from`.
    pub async fn set_env_state(
        &self,
        id: i64,
        from: &'static [EnvState],
        to: EnvState,
        reason: Option<String>,
    ) -> Result<bool, StoreError> {
        self.call(move |c| set_env_state(c, id, from, to, reason.as_deref()))
            .await
    }

    /// Reserves a VMID for an environment; false if a live environment has it.
    pub async fn reserve_vmid(&self, env_id: i64, vmid: u32) -> Result<bool, StoreError> {
        self.call(move |c| {
            match c.execute(
                "UPDATE environments SET vmid = ?2, updated_at = ?3 WHERE id = ?1",
                params![env_id, vmid, now()],
            ) {
                Ok(_) => Ok(true),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// VMIDs held by live environments.
    pub async fn live_vmids(&self) -> Result<Vec<u32>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT vmid FROM environments WHERE vmid IS NOT NULL AND state NOT IN ('destroyed', 'failed', 'denied')",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<u32>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// A provisioned environment becomes ready; its lifetime starts `t`.
    pub async fn mark_ready(
        &self,
        env_id: i64,
        t: i64,
        ttl_secs: Option<i64>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE environments SET state = 'ready', expires_at = ?2 + ?3, updated_at = ?2
                 WHERE id = ?1 AND state = 'provisioning'",
                params![env_id, t, ttl_secs],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets a VMID that turned out to be taken by someone else.
    pub async fn clear_vmid(&self, env_id: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE environments SET vmid = NULL, updated_at = ?2 WHERE id = ?1",
                params![env_id, now()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn set_address(
        &self,
        env_id: i64,
        address: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE environments SET address = ?2, updated_at = ?3 WHERE id = ?1",
                params![env_id, address, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// Allocates the first free address of `candidates` to the environment, or
    /// returns the one it already holds (so a resumed step allocates nothing new).
    pub async fn allocate_ip(
        &self,
        env_id: i64,
        team: String,
        candidates: Vec<String>,
    ) -> Result<Option<String>, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(held) = tx
                .query_row(
                    "SELECT address FROM ip_allocations WHERE env_id = ?1",
                    [env_id],
                    |r| r.get(0),
                )
                .optional()?
            {
                return Ok(Some(held));
            }
            let mut chosen = None;
            for addr in candidates {
                let taken: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM ip_allocations WHERE address = ?1)",
                    [&addr],
                    |r| r.get(0),
                )?;
                if !taken {
                    tx.execute(
                        "INSERT INTO ip_allocations (address, team, env_id) VALUES (?1, ?2, ?3)",
                        params![addr, team, env_id],
                    )?;
                    chosen = Some(addr);
                    break;
                }
            }
            tx.commit()?;
            Ok(chosen)
        })
        .await
    }

    pub async fn release_ips(&self, env_id: i64) -> Result<usize, StoreError> {
        self.call(move |c| Ok(c.execute("DELETE FROM ip_allocations WHERE env_id = ?1", [env_id])?))
            .await
    }

    pub async fn allocated_ips(&self, env_id: i64) -> Result<Vec<String>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare("SELECT address FROM ip_allocations WHERE env_id = ?1")?;
            let rows = stmt
                .query_map([env_id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

fn live_by_name(c: &Connection, name: &str) -> Result<Option<EnvRecord>, StoreError> {
    Ok(c.query_row(
        &format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE name = ?1 AND state NOT IN ('destroyed', 'failed', 'denied')"
        ),
        [name],
        env_row,
    )
    .optional()?)
}

pub(crate) fn set_env_state(
    c: &Connection,
    id: i64,
    from: &[EnvState],
    to: EnvState,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let list = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let n = c.execute(
        &format!(
            "UPDATE environments SET state = ?2, reason = COALESCE(?3, reason), updated_at = ?4
             WHERE id = ?1 AND state IN ({list})"
        ),
        params![id, to.as_str(), reason, now()],
    )?;
    Ok(n == 1)
}

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
                audit(&tx, &decider, "approval.approve", &format!("request {id}"), "refused", &why)?;
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
            audit(&tx, &decider, "approval.approve", &format!("request {id}"), "approved", &format!("job {job_id}"))?;
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
            audit(&tx, &decider, "approval.deny", &format!("request {id}"), "denied", &reason)?;
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
