//! The worker's writes around a job run, each one transaction: what a worker
//! needs once it has claimed a job, a step's end together with the next step's
//! start, and the job's end with its environment's. Fewer round trips to the
//! database thread keep the store off the pipeline's critical path.

use super::envs::{read_env, set_env_state, EnvRecord};
use super::jobs::{read_steps, write_job_state, write_log, write_step, StepRecord};
use super::{Store, StoreError};
use crate::domain::lifecycle::{EnvState, JobState, StepState};
use rusqlite::params;

/// A step's state to write.
#[derive(Debug, Clone)]
pub struct StepWrite {
    pub seq: i64,
    pub state: StepState,
    pub data: serde_json::Value,
    pub error: Option<String>,
}

/// How a job ends: its state, and its environment's.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub job_from: JobState,
    pub job_to: JobState,
    pub error: Option<String>,
    pub env_id: i64,
    pub env_from: &'static [EnvState],
    pub env_to: EnvState,
    /// The last step's end, not written yet.
    pub step: Option<StepWrite>,
    pub log: Option<(&'static str, String)>,
}

impl Store {
    /// What a worker needs to run a claimed job: its environment and steps.
    /// With `provisioning`, a queued environment becomes provisioning in the
    /// same transaction.
    pub async fn open_run(
        &self,
        job_id: i64,
        env_id: i64,
        provisioning: bool,
    ) -> Result<(Option<EnvRecord>, Vec<StepRecord>), StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            if provisioning {
                set_env_state(
                    &tx,
                    env_id,
                    &[EnvState::Queued],
                    EnvState::Provisioning,
                    None,
                )?;
            }
            let env = read_env(&tx, env_id)?;
            let steps = read_steps(&tx, job_id)?;
            tx.commit()?;
            Ok((env, steps))
        })
        .await
    }

    /// Marks a step running and logs `line` for it; `finished`, the step before
    /// it, is written in the same transaction.
    pub async fn begin_step(
        &self,
        job_id: i64,
        seq: i64,
        data: serde_json::Value,
        line: String,
        finished: Option<StepWrite>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            if let Some(f) = &finished {
                write_step(&tx, job_id, f.seq, f.state, &f.data, f.error.as_deref())?;
            }
            write_step(&tx, job_id, seq, StepState::Running, &data, None)?;
            write_log(&tx, job_id, "info", &line)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Ends a job: its last step, its environment's state, its own state and a
    /// log line in one transaction. False (and nothing written) when the job
    /// was no longer in `job_from`.
    pub async fn end_run(&self, job_id: i64, end: RunEnd) -> Result<bool, StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            if let Some(f) = &end.step {
                write_step(&tx, job_id, f.seq, f.state, &f.data, f.error.as_deref())?;
            }
            set_env_state(&tx, end.env_id, end.env_from, end.env_to, None)?;
            if !write_job_state(&tx, job_id, end.job_from, end.job_to, end.error.as_deref())? {
                return Ok(false);
            }
            if let Some((level, line)) = &end.log {
                write_log(&tx, job_id, level, line)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Reserves the lowest VMID in `low..=high` that no live environment holds
    /// and `taken` (the cluster's ids) does not list; None when none is free.
    pub async fn reserve_free_vmid(
        &self,
        env_id: i64,
        low: u32,
        high: u32,
        taken: Vec<u32>,
    ) -> Result<Option<u32>, StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let mut used: std::collections::HashSet<u32> = taken.into_iter().collect();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT vmid FROM environments WHERE vmid BETWEEN ?2 AND ?3 AND id != ?1
                       AND state NOT IN ('destroyed', 'failed', 'denied')",
                )?;
                for vmid in stmt.query_map(params![env_id, low, high], |r| r.get::<_, u32>(0))? {
                    used.insert(vmid?);
                }
            }
            let Some(vmid) = (low..=high).find(|v| !used.contains(v)) else {
                return Ok(None);
            };
            tx.prepare_cached("UPDATE environments SET vmid = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![env_id, vmid, super::now()])?;
            tx.commit()?;
            Ok(Some(vmid))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn reserve_free_vmid_skips_live_and_cluster_ids() {
        let (_dir, store) = temp_store();
        let ids = store
            .call_sync(|c| {
                let mut ids = Vec::new();
                for (name, vmid, state) in [
                    ("a", Some(100), "ready"),
                    ("b", Some(101), "destroyed"),
                    ("c", None, "queued"),
                ] {
                    c.execute(
                        "INSERT INTO environments (name, team, owner, owner_display, profile, node, vmid, cores, memory_mb, swap_mb, disk_gb, state, request_key, created_at, updated_at)
                         VALUES (?1, 'dev', 'u', 'u', 'p', 'pve1', ?2, 1, 512, 0, 4, ?3, ?1, 0, 0)",
                        params![name, vmid, state],
                    )?;
                    ids.push(c.last_insert_rowid());
                }
                Ok(ids)
            })
            .unwrap();
        // 100 is live; 101 belonged to a destroyed environment; the cluster has 102.
        let got = store
            .reserve_free_vmid(ids[2], 100, 105, vec![102])
            .await
            .unwrap();
        assert_eq!(got, Some(101));
        assert_eq!(store.env(ids[2]).await.unwrap().unwrap().vmid, Some(101));
        // Everything taken: none.
        assert_eq!(
            store
                .reserve_free_vmid(ids[2], 100, 100, vec![])
                .await
                .unwrap(),
            None
        );
    }
}
