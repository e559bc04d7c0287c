//! The durable job queue: jobs, their step journal and their log. A job is
//! claimed with a lease that its worker renews; a job whose lease ran out (its
//! worker died) is claimed again and resumes from its journal.

use super::envs::set_env_state;
use super::{audit, now, now_ms, Store, StoreError};
use crate::domain::lifecycle::{EnvState, JobKind, JobState, Step, StepState};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub idempotency_key: String,
    pub requested_by: String,
    /// JSON of [`crate::chat::ReplyTo`].
    pub reply_to: String,
    pub steps: Vec<Step>,
}

/// A job as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub env_id: i64,
    pub kind: JobKind,
    pub state: JobState,
    pub requested_by: String,
    pub reply_to: String,
    pub progress_ref: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

const JOB_COLUMNS: &str =
    "id, env_id, kind, state, requested_by, reply_to, progress_ref, error, created_at, started_at, finished_at";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let kind: String = r.get(2)?;
    let state: String = r.get(3)?;
    Ok(JobRecord {
        id: r.get(0)?,
        env_id: r.get(1)?,
        kind: JobKind::parse(&kind).unwrap_or(JobKind::Create),
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        requested_by: r.get(4)?,
        reply_to: r.get(5)?,
        progress_ref: r.get(6)?,
        error: r.get(7)?,
        created_at: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
    })
}

/// One step of a job's journal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    pub seq: i64,
    /// Stored by its id; `step.label()` is what people read.
    pub step: Step,
    pub state: StepState,
    pub data: serde_json::Value,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One line of a job's log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogLine {
    pub at_ms: i64,
    pub level: String,
    pub line: String,
}

pub(crate) fn insert_job(c: &Connection, env_id: i64, job: &NewJob) -> Result<i64, StoreError> {
    c.prepare_cached(
        "INSERT INTO jobs (env_id, kind, state, idempotency_key, requested_by, reply_to, created_at)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6)",
    )?
    .execute(params![env_id, job.kind.as_str(), job.idempotency_key, job.requested_by, job.reply_to, now()])?;
    let id = c.last_insert_rowid();
    let mut step = c.prepare_cached(
        "INSERT INTO job_steps (job_id, seq, name, state) VALUES (?1, ?2, ?3, 'pending')",
    )?;
    for (seq, s) in job.steps.iter().enumerate() {
        step.execute(params![id, seq as i64, s.id()])?;
    }
    Ok(id)
}

/// Why a lifecycle job was not queued.
#[derive(Debug, Clone)]
pub enum Enqueued {
    Queued(i64),
    /// The same chat event asked before.
    Duplicate(i64),
    Busy(i64),
    WrongState(EnvState),
}

impl Store {
    /// Queues a lifecycle job (start, stop, restart, destroy) for an environment
    /// in one of `from`; moves it to `to` if given. One unfinished job per environment.
    pub async fn enqueue(
        &self,
        env_id: i64,
        from: &'static [EnvState],
        to: Option<EnvState>,
        job: NewJob,
    ) -> Result<Enqueued, StoreError> {
        self.enqueue_with(env_id, from, to, job, |_| Ok(())).await
    }

    /// [`Store::enqueue`], with `extra` run in the same transaction once the job
    /// is certain to be queued (an app update records its new image there).
    pub async fn enqueue_with(
        &self,
        env_id: i64,
        from: &'static [EnvState],
        to: Option<EnvState>,
        job: NewJob,
        extra: impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<Enqueued, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(id) = tx
                .query_row("SELECT id FROM jobs WHERE idempotency_key = ?1", [&job.idempotency_key], |r| r.get(0))
                .optional()?
            {
                return Ok(Enqueued::Duplicate(id));
            }
            if let Some(id) = tx
                .query_row(
                    "SELECT id FROM jobs WHERE env_id = ?1 AND state NOT IN ('succeeded', 'failed')",
                    [env_id],
                    |r| r.get(0),
                )
                .optional()?
            {
                return Ok(Enqueued::Busy(id));
            }
            let state: String = tx.query_row("SELECT state FROM environments WHERE id = ?1", [env_id], |r| r.get(0))?;
            let state = EnvState::parse(&state).unwrap_or(EnvState::Failed);
            if !from.contains(&state) {
                return Ok(Enqueued::WrongState(state));
            }
            if let Some(to) = to {
                set_env_state(&tx, env_id, from, to, None)?;
            }
            extra(&tx)?;
            let id = insert_job(&tx, env_id, &job)?;
            audit(&tx, &job.requested_by, &format!("env.{}", job.kind), &format!("env {env_id}"), "queued", &format!("job {id}"))?;
            tx.commit()?;
            Ok(Enqueued::Queued(id))
        })
        .await
    }

    /// Claims the oldest runnable job: queued, or unfinished with an expired
    /// lease. At most `per_node` jobs run on one node at a time.
    pub async fn claim(
        &self,
        owner: String,
        lease_secs: i64,
        per_node: usize,
    ) -> Result<Option<JobRecord>, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let t = now();
            let Some(id) = runnable(&tx, t, per_node)? else {
                return Ok(None);
            };
            tx.prepare_cached(
                "UPDATE jobs SET state = CASE state WHEN 'queued' THEN 'running' ELSE state END,
                        lease_owner = ?2, lease_until = ?3, started_at = COALESCE(started_at, ?4)
                 WHERE id = ?1",
            )?
            .execute(params![id, owner, t + lease_secs, t])?;
            let job = tx
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
                .query_row([id], job_row)?;
            tx.commit()?;
            Ok(Some(job))
        })
        .await
    }

    /// Extends a lease; false if this worker no longer holds it.
    pub async fn renew_lease(
        &self,
        job_id: i64,
        owner: String,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        self.call(move |c| {
            let n = c.execute(
                "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state IN ('running', 'rolling_back')",
                params![job_id, owner, now() + lease_secs],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Gives a lease back without finishing (graceful shutdown): the next start resumes it.
    pub async fn release_lease(&self, job_id: i64, owner: String) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_until = 0 WHERE id = ?1 AND lease_owner = ?2",
                params![job_id, owner],
            )?;
            Ok(())
        })
        .await
    }

    /// Puts a job aside for `secs` (a rollback that could not reach Proxmox):
    /// no worker claims it before then.
    pub async fn defer(&self, job_id: i64, secs: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_until = ?2 WHERE id = ?1",
                params![job_id, now() + secs],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_row,
            )
            .optional()?)
        })
        .await
    }

    /// Recent jobs, newest first, optionally only those of environments of a team.
    pub async fn list_jobs(
        &self,
        team: Option<String>,
        limit: i64,
    ) -> Result<Vec<(JobRecord, String)>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {}, e.name FROM jobs j JOIN environments e ON e.id = j.env_id
                 WHERE (?1 IS NULL OR e.team = ?1) ORDER BY j.id DESC LIMIT ?2",
                JOB_COLUMNS
                    .split(", ")
                    .map(|c| format!("j.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
            let rows = stmt
                .query_map(params![team, limit], |r| Ok((job_row(r)?, r.get(11)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// An environment's latest jobs, newest first.
    pub async fn env_jobs(&self, env_id: i64, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE env_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![env_id, limit], job_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Unfinished jobs (for the console's wait and for metrics).
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state NOT IN ('succeeded', 'failed') ORDER BY id"
            ))?;
            let rows = stmt.query_map([], job_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn steps(&self, job_id: i64) -> Result<Vec<StepRecord>, StoreError> {
        self.call(move |c| read_steps(c, job_id)).await
    }

    /// Records a step's new state and data (inputs and outputs so far).
    pub async fn update_step(
        &self,
        job_id: i64,
        seq: i64,
        state: StepState,
        data: serde_json::Value,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(move |c| write_step(c, job_id, seq, state, &data, error.as_deref()))
            .await
    }

    pub async fn set_job_state(
        &self,
        job_id: i64,
        from: JobState,
        to: JobState,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        self.call(move |c| write_job_state(c, job_id, from, to, error.as_deref()))
            .await
    }

    pub async fn set_progress_ref(
        &self,
        job_id: i64,
        progress_ref: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE jobs SET progress_ref = ?2 WHERE id = ?1",
                params![job_id, progress_ref],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn log(
        &self,
        job_id: i64,
        level: &'static str,
        line: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| write_log(c, job_id, level, &line)).await
    }

    pub async fn job_log(&self, job_id: i64) -> Result<Vec<LogLine>, StoreError> {
        self.call(move |c| {
            let mut stmt =
                c.prepare("SELECT at_ms, level, line FROM job_log WHERE job_id = ?1 ORDER BY id")?;
            let rows = stmt
                .query_map([job_id], |r| {
                    Ok(LogLine {
                        at_ms: r.get(0)?,
                        level: r.get(1)?,
                        line: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Counts of jobs by state, for metrics.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// Moves a job from `from` to `to`; a finished job gives its lease up.
/// False (nothing changed) when the job was not in `from`.
pub(super) fn write_job_state(
    c: &Connection,
    job_id: i64,
    from: JobState,
    to: JobState,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let finished = to.is_finished().then(now);
    let n = c
        .prepare_cached(
            "UPDATE jobs SET state = ?3, error = COALESCE(?4, error), finished_at = COALESCE(?5, finished_at),
                lease_owner = CASE WHEN ?5 IS NULL THEN lease_owner ELSE NULL END
             WHERE id = ?1 AND state = ?2",
        )?
        .execute(params![job_id, from.as_str(), to.as_str(), error, finished])?;
    Ok(n == 1)
}

/// A job's steps in order. A step id, state or data this release cannot read
/// is [`StoreError::Corrupt`] naming the job: never a silent default.
pub(super) fn read_steps(c: &Connection, job_id: i64) -> Result<Vec<StepRecord>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, name, state, data, error, started_at, finished_at FROM job_steps WHERE job_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([job_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(seq, id, state, data, error, started_at, finished_at)| {
            let corrupt = |what: String| {
                StoreError::Corrupt(format!("job {job_id}, step {}: {what}", seq + 1))
            };
            Ok(StepRecord {
                seq,
                step: Step::from_id(&id).ok_or_else(|| {
                    corrupt(format!(
                        "unknown step id '{id}'; was this database written by a newer Slipway?"
                    ))
                })?,
                state: StepState::parse(&state)
                    .ok_or_else(|| corrupt(format!("unknown step state '{state}'")))?,
                data: serde_json::from_str(&data)
                    .map_err(|e| corrupt(format!("its data is not JSON ({e})")))?,
                error,
                started_at,
                finished_at,
            })
        })
        .collect()
}

pub(super) fn write_step(
    c: &Connection,
    job_id: i64,
    seq: i64,
    state: StepState,
    data: &serde_json::Value,
    error: Option<&str>,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE job_steps SET state = ?3, data = ?4, error = ?5,
                started_at = CASE WHEN ?3 = 'running' THEN COALESCE(started_at, ?6) ELSE started_at END,
                finished_at = CASE WHEN ?3 IN ('done', 'failed', 'compensated', 'skipped') THEN ?6 ELSE finished_at END
         WHERE job_id = ?1 AND seq = ?2",
    )?
    .execute(params![job_id, seq, state.as_str(), data.to_string(), error, now()])?;
    Ok(())
}

pub(super) fn write_log(
    c: &Connection,
    job_id: i64,
    level: &str,
    line: &str,
) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO job_log (job_id, at_ms, level, line) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![job_id, now_ms(), level, line])?;
    Ok(())
}

/// The oldest runnable job whose node has room: queued, or unfinished with
/// an expired lease. Both lists are read through the `jobs(state)` index in id
/// order and stop at the first fit, so a claim costs the same with 10 or
/// 100,000 jobs waiting.
fn runnable(
    tx: &rusqlite::Transaction<'_>,
    t: i64,
    per_node: usize,
) -> Result<Option<i64>, StoreError> {
    let mut full: Vec<String> = Vec::new();
    {
        let mut busy = tx.prepare_cached(
            "SELECT e.node, COUNT(*) FROM jobs j JOIN environments e ON e.id = j.env_id
             WHERE j.state IN ('running', 'rolling_back') AND j.lease_until >= ?1
             GROUP BY e.node",
        )?;
        let mut rows = busy.query([t])?;
        while let Some(r) = rows.next()? {
            if r.get::<_, i64>(1)? as usize >= per_node {
                full.push(r.get(0)?);
            }
        }
    }
    let first_fit = |sql: &str, arg: Option<i64>| -> Result<Option<i64>, StoreError> {
        let mut stmt = tx.prepare_cached(sql)?;
        let mut rows = match arg {
            Some(a) => stmt.query([a])?,
            None => stmt.query([])?,
        };
        while let Some(r) = rows.next()? {
            let node: String = r.get(1)?;
            if !full.contains(&node) {
                return Ok(Some(r.get(0)?));
            }
        }
        Ok(None)
    };
    let queued = first_fit(
        "SELECT j.id, e.node FROM jobs j JOIN environments e ON e.id = j.env_id
         WHERE j.state = 'queued' ORDER BY j.id",
        None,
    )?;
    let stale = first_fit(
        "SELECT j.id, e.node FROM jobs j JOIN environments e ON e.id = j.env_id
         WHERE j.state IN ('running', 'rolling_back') AND j.lease_until < ?1 ORDER BY j.id",
        Some(t),
    )?;
    Ok(match (queued, stale) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::Decision;
    use crate::domain::quota::{Quota, Resources};
    use crate::store::envs::NewEnv;

    async fn queue(store: &Store, name: &str, node: &str) -> i64 {
        let env = NewEnv {
            name: name.into(),
            team: "web".into(),
            owner: "console:bob".into(),
            owner_display: "bob".into(),
            profile: "p".into(),
            node: node.into(),
            resources: Resources {
                cores: 1,
                memory_mb: 512,
                swap_mb: 0,
                disk_gb: 4,
            },
            request_key: name.into(),
            ttl_secs: None,
            announce_to: "{}".into(),
            domain: None,
        };
        let job = NewJob {
            kind: JobKind::Create,
            idempotency_key: name.into(),
            requested_by: "console:bob".into(),
            reply_to: "{}".into(),
            steps: vec![Step::CreateContainer],
        };
        match store
            .submit_create(env, Quota::default(), |_| Decision::Enqueue, job)
            .await
            .unwrap()
        {
            super::super::envs::Submitted::Queued { job_id, .. } => job_id,
            other => panic!("not queued: {other:?}"),
        }
    }

    #[tokio::test]
    async fn claims_go_oldest_first_and_skip_a_full_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let a1 = queue(&store, "a1", "pve1").await;
        let a2 = queue(&store, "a2", "pve1").await;
        let b1 = queue(&store, "b1", "pve2").await;
        let claim = || store.claim("w".into(), 60, 1);
        assert_eq!(claim().await.unwrap().map(|j| j.id), Some(a1));
        // pve1 runs one job already: its second waits, pve2's goes first.
        assert_eq!(claim().await.unwrap().map(|j| j.id), Some(b1));
        assert_eq!(claim().await.unwrap().map(|j| j.id), None);
        assert!(store
            .set_job_state(a1, JobState::Running, JobState::Succeeded, None)
            .await
            .unwrap());
        assert_eq!(claim().await.unwrap().map(|j| j.id), Some(a2));
    }

    #[tokio::test]
    async fn a_job_whose_lease_ran_out_is_claimed_again_before_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let old = queue(&store, "old", "pve1").await;
        let new = queue(&store, "new", "pve1").await;
        assert_eq!(
            store.claim("w1".into(), -1, 8).await.unwrap().map(|j| j.id),
            Some(old)
        );
        // Its lease (already expired) no longer holds: the oldest goes first.
        let again = store.claim("w2".into(), 60, 8).await.unwrap().unwrap();
        assert_eq!((again.id, again.state), (old, JobState::Running));
        assert_eq!(
            store.claim("w2".into(), 60, 8).await.unwrap().map(|j| j.id),
            Some(new)
        );
    }
}
