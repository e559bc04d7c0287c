//! Compensation after a failed create: every step that did something is undone
//! in reverse order, each undo idempotent. Then the environment ends `failed`
//! with the reason and its quota is free. If Proxmox cannot be reached, the job
//! stays `rolling_back` and is tried again later: nothing is left orphaned.

use super::steps::data::UndoData;
use super::{JobRun, Worker};
use crate::domain::lifecycle::{EnvState, JobKind, JobState, StepState};
use crate::progress::Outcome;
use crate::store::StoreError;

impl Worker {
    pub(super) async fn roll_back(&self, run: &mut JobRun) -> Result<(), StoreError> {
        let reason = run
            .job
            .error
            .clone()
            .unwrap_or_else(|| "a step failed".into());
        if !run.steps.iter().any(|s| s.state == StepState::Compensated) {
            self.store
                .log(
                    run.job.id,
                    "warn",
                    "rolling back what was created, in reverse order".into(),
                )
                .await?;
        }
        let mut left_behind: Vec<String> = Vec::new();
        let retry = self.config.worker.rollback_retry.as_secs().max(1) as i64;
        for i in (0..run.steps.len()).rev() {
            if !matches!(
                run.steps[i].state,
                StepState::Done | StepState::Failed | StepState::Running
            ) {
                continue;
            }
            if run.budget == Some(0) {
                // Driven one step at a time: the next call goes on from here.
                return Ok(());
            }
            run.budget = run.budget.map(|b| b - 1);
            let step = run.steps[i].step.clone();
            match self.cx().compensate(run, i, &step).await {
                Ok(()) => {
                    self.store
                        .log(run.job.id, "info", format!("undid {}", step.label()))
                        .await?;
                    self.mark(run, i, StepState::Compensated, run.steps[i].error.clone())
                        .await?;
                }
                Err(e) => {
                    let tries = run.data::<UndoData>(i)?.undo_attempts + 1;
                    run.set_data(
                        i,
                        &UndoData {
                            undo_attempts: tries,
                        },
                    );
                    if tries < self.config.worker.rollback_attempts {
                        self.store
                            .log(
                                run.job.id,
                                "error",
                                format!(
                                    "could not undo {} ({e}); trying again in {retry}s",
                                    step.label()
                                ),
                            )
                            .await?;
                        tracing::error!(job = run.job.id, step = %step.label(), error = %e, "rollback step failed; will retry");
                        self.cx().checkpoint(run, i).await?;
                        self.store.defer(run.job.id, retry).await?;
                        return Ok(());
                    }
                    // Not forever: a person has to look. Reconcile reports what is left.
                    let what = format!(
                        "{} could not be undone after {tries} tries ({e})",
                        step.label()
                    );
                    self.store.log(run.job.id, "error", what.clone()).await?;
                    tracing::error!(job = run.job.id, step = %step.label(), error = %e, "giving up on a rollback step");
                    self.mark(run, i, StepState::Failed, Some(what.clone()))
                        .await?;
                    left_behind.push(what);
                }
            }
        }
        if run.job.kind == JobKind::Update {
            // The app was never down: it stays ready on its old container.
            self.store
                .set_job_state(run.job.id, JobState::RollingBack, JobState::Failed, None)
                .await?;
            tracing::info!(job = run.job.id, app = %run.env.name, "update rolled back");
            let text = self.cx().app_update_failed(run, &reason).await;
            let _ = self.bus.send(run.view(false, Some(Outcome::Failed(text))));
            return Ok(());
        }
        self.store.release_ips(run.env.id).await?;
        let reason = if left_behind.is_empty() {
            reason
        } else {
            format!(
                "{reason}. Cleanup needs a person: {}; the reconcile loop reports what is left and removes it once it can",
                left_behind.join("; ")
            )
        };
        self.store
            .set_env_state(
                run.env.id,
                &[EnvState::Queued, EnvState::Provisioning, EnvState::Ready],
                EnvState::Failed,
                Some(reason.clone()),
            )
            .await?;
        self.store
            .set_job_state(run.job.id, JobState::RollingBack, JobState::Failed, None)
            .await?;
        tracing::info!(job = run.job.id, env = %run.env.name, "rolled back");
        let text = if left_behind.is_empty() {
            format!("{reason}. Everything it created was removed and its quota released.")
        } else {
            format!("{reason}. Its quota was released.")
        };
        let _ = self.bus.send(run.view(false, Some(Outcome::Failed(text))));
        Ok(())
    }
}
