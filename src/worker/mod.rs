//! The worker pool: claim a job with a lease → run its steps in order, writing
//! each step's state before and after its provider call → publish progress →
//! on failure, compensate what was done in reverse order. A job whose worker
//! died is claimed again when its lease runs out (at once after a restart) and
//! resumes from its journal.

mod backoff;
pub mod guest_ids;
mod rollback;
pub(crate) mod steps;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::domain::lifecycle::{EnvState, JobKind, JobState, Step, StepState};
use crate::progress::{Bus, Outcome, Progress, StepView};
use crate::provider::Compute;
use crate::store::envs::EnvRecord;
use crate::store::jobs::{JobRecord, StepRecord};
use crate::store::runs::{RunEnd, StepWrite};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How an environment's reason starts after its destroy failed.
pub const DESTROY_FAILED: &str = "the last destroy failed: ";

/// What one [`Worker::step_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stepped {
    /// No job was ready to run.
    Idle,
    /// Job `job` did (or, rolling back, undid) one step and is now in `state`.
    Job { job: i64, state: JobState },
}

/// What a step failure tells the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

impl From<crate::provider::ProviderError> for StepError {
    fn from(e: crate::provider::ProviderError) -> Self {
        StepError(e.to_string())
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError(e.to_string())
    }
}

/// Shared by every worker task.
pub struct Worker {
    pub(crate) store: Store,
    pub(crate) compute: Arc<dyn Compute>,
    pub(crate) config: Arc<Config>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) bus: Bus,
    pub(crate) wake: Arc<Notify>,
    /// This process's instance id; each task's lease owner derives from it.
    pub(crate) owner: String,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
    /// Wakes the scheduler when an environment's expiry was set.
    pub(crate) schedule: Arc<Notify>,
    /// Routes, DNS and monitoring, as configured.
    pub(crate) publishers: Arc<crate::provider::publish::Publishers>,
    /// Docker hosts for apps.
    pub(crate) docker: Arc<crate::provider::docker::DockerHosts>,
    /// The cluster's guest ids, shared by concurrent VMID allocations.
    pub(crate) guest_ids: guest_ids::GuestIds,
    /// Slipway's own SSH key pair.
    pub(crate) ssh_identity: Arc<crate::provider::ssh_identity::ProvisioningKey>,
}

/// One job being worked on.
pub(crate) struct JobRun {
    pub job: JobRecord,
    pub env: EnvRecord,
    pub steps: Vec<StepRecord>,
    pub started: Instant,
    /// The current step was under way before a restart: it checks what its
    /// earlier attempt already did before it acts again.
    pub resumed: bool,
    /// Steps left to do (or undo) before the run pauses: `Worker::step_once`
    /// sets one; `None` runs the job to its end.
    pub budget: Option<usize>,
    /// What the current step waits for, shown under it until the next step.
    pub note: Option<String>,
}

impl JobRun {
    /// Step `i` as it is now, to write.
    fn step_write(&self, i: usize) -> StepWrite {
        let s = &self.steps[i];
        StepWrite {
            seq: s.seq,
            state: s.state,
            data: s.data.clone(),
            error: s.error.clone(),
        }
    }

    fn view(&self, rolling_back: bool, outcome: Option<Outcome>) -> Progress {
        let current = self
            .steps
            .iter()
            .position(|s| {
                matches!(
                    s.state,
                    StepState::Running | StepState::Pending | StepState::Failed
                )
            })
            .unwrap_or(self.steps.len().saturating_sub(1));
        Progress {
            job_id: self.job.id,
            env_name: self.env.name.clone(),
            kind: self.job.kind,
            steps: self
                .steps
                .iter()
                .map(|s| StepView {
                    name: s.step.label(),
                    state: s.state,
                })
                .collect(),
            current,
            note: self.note.clone(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            rolling_back,
            outcome,
            reply_to: self.job.reply_to.clone(),
        }
    }
}

impl Worker {
    /// Starts `config.worker.concurrency` worker tasks on the tracker.
    pub fn spawn(self: &Arc<Self>, tracker: &TaskTracker, cancel: &CancellationToken) {
        for n in 0..self.config.worker.concurrency {
            let me = self.clone();
            let cancel = cancel.clone();
            tracker.spawn(async move { me.run(n, cancel).await });
        }
    }

    async fn run(self: Arc<Self>, n: usize, cancel: CancellationToken) {
        let owner = format!("{}/w{n}", self.owner);
        let lease = self.config.worker.lease.as_secs().max(3) as i64;
        while !cancel.is_cancelled() {
            match self
                .store
                .claim(owner.clone(), lease, self.config.worker.per_node)
                .await
            {
                Ok(Some(job)) => {
                    let id = job.id;
                    if let Err(e) = self.execute(job, &owner, lease, &cancel).await {
                        tracing::error!(job = id, error = %e, "job stopped on a database error; it resumes when its lease runs out");
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not claim a job");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Claims the next runnable job and does (or, rolling back, undoes)
    /// exactly one of its steps, then releases it, as a worker would between
    /// two steps: how a test drives a job step by step.
    pub async fn step_once(&self) -> Result<Stepped, StoreError> {
        let owner = format!("{}/step", self.owner);
        let lease = self.config.worker.lease.as_secs().max(3) as i64;
        let Some(job) = self
            .store
            .claim(owner.clone(), lease, self.config.worker.per_node)
            .await?
        else {
            return Ok(Stepped::Idle);
        };
        let id = job.id;
        let cancel = CancellationToken::new();
        self.execute_with_budget(job, &owner, lease, &cancel, Some(1))
            .await?;
        self.store.release_lease(id, owner).await?;
        let state = self
            .store
            .job(id)
            .await?
            .map(|j| j.state)
            .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished while it ran")))?;
        Ok(Stepped::Job { job: id, state })
    }

    async fn execute(
        &self,
        job: JobRecord,
        owner: &str,
        lease: i64,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        self.execute_with_budget(job, owner, lease, cancel, None)
            .await
    }

    async fn execute_with_budget(
        &self,
        job: JobRecord,
        owner: &str,
        lease: i64,
        cancel: &CancellationToken,
        budget: Option<usize>,
    ) -> Result<(), StoreError> {
        // A create's environment becomes provisioning as its worker starts.
        let provisioning = job.kind == JobKind::Create && job.state != JobState::RollingBack;
        let (env, steps) = self
            .store
            .open_run(job.id, job.env_id, provisioning)
            .await?;
        let Some(env) = env else {
            return Err(StoreError::Corrupt(format!(
                "job {} has no environment",
                job.id
            )));
        };
        let mut run = JobRun {
            job,
            env,
            steps,
            started: Instant::now(),
            resumed: false,
            budget,
            note: None,
        };
        tracing::info!(job = run.job.id, kind = %run.job.kind, env = %run.env.name, state = %run.job.state, "working on job");
        // Renew the lease while the job runs; a lost lease stops this worker's part.
        let lost = CancellationToken::new();
        let renewer = {
            let store = self.store.clone();
            let (id, owner, lost) = (run.job.id, owner.to_string(), lost.clone());
            tokio::spawn(async move {
                let every = std::time::Duration::from_secs((lease / 3).max(1) as u64);
                loop {
                    tokio::time::sleep(every).await;
                    if !matches!(store.renew_lease(id, owner.clone(), lease).await, Ok(true)) {
                        lost.cancel();
                        return;
                    }
                }
            })
        };
        let result = self.drive(&mut run, owner, cancel, &lost).await;
        renewer.abort();
        result
    }

    async fn drive(
        &self,
        run: &mut JobRun,
        owner: &str,
        cancel: &CancellationToken,
        lost: &CancellationToken,
    ) -> Result<(), StoreError> {
        if run.job.state == JobState::RollingBack {
            return self.roll_back(run).await;
        }
        // A step that ended well is written with the next step's start (or the
        // job's end): one transaction instead of two, with nothing in between.
        let mut ended: Option<usize> = None;
        for i in 0..run.steps.len() {
            if matches!(run.steps[i].state, StepState::Done | StepState::Skipped) {
                continue;
            }
            let stopping = cancel.is_cancelled() || lost.is_cancelled();
            if stopping || run.budget == Some(0) {
                // Between steps: the next claim resumes from here.
                if let Some(e) = ended.take() {
                    self.write_step_end(run, e).await?;
                }
                self.store
                    .release_lease(run.job.id, owner.to_string())
                    .await?;
                if stopping {
                    self.store
                        .log(
                            run.job.id,
                            "info",
                            "paused for shutdown; resumes on the next start".into(),
                        )
                        .await?;
                }
                return Ok(());
            }
            run.budget = run.budget.map(|b| b - 1);
            let step = run.steps[i].step.clone();
            run.resumed = run.steps[i].state == StepState::Running;
            let total = run.steps.len();
            run.steps[i].state = StepState::Running;
            run.steps[i].error = None;
            run.note = None;
            self.store
                .begin_step(
                    run.job.id,
                    run.steps[i].seq,
                    run.steps[i].data.clone(),
                    format!("step {}/{total}: {}", i + 1, step.label()),
                    ended.take().map(|e| run.step_write(e)),
                )
                .await?;
            let _ = self
                .bus
                .send(run.view(run.job.state == JobState::RollingBack, None));
            let step_started = Instant::now();
            let outcome = self.cx().apply(run, i, &step).await;
            self.metrics
                .step_seconds
                .get_or_create(&crate::metrics::StepLabel {
                    step: step_label(&step),
                })
                .observe(step_started.elapsed().as_secs_f64());
            match outcome {
                Ok(state) => {
                    // Shown with the next step's start or the job's end.
                    run.steps[i].state = state;
                    run.steps[i].error = None;
                    ended = Some(i);
                }
                Err(e) => {
                    tracing::warn!(job = run.job.id, step = %step.id(), error = %e, "step failed");
                    self.store
                        .log(run.job.id, "error", format!("{} failed: {e}", step.label()))
                        .await?;
                    self.mark(run, i, StepState::Failed, Some(e.0.clone()))
                        .await?;
                    return self.fail(run, &step, e).await;
                }
            }
        }
        self.succeed(run, ended).await
    }

    /// Writes a step's end on its own (when no next step or job end carries it).
    async fn write_step_end(&self, run: &JobRun, i: usize) -> Result<(), StoreError> {
        let w = run.step_write(i);
        self.store
            .update_step(run.job.id, w.seq, w.state, w.data, w.error)
            .await
    }

    /// Records a step's state and publishes the new progress.
    pub(crate) async fn mark(
        &self,
        run: &mut JobRun,
        i: usize,
        state: StepState,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        run.steps[i].state = state;
        run.steps[i].error = error.clone();
        self.store
            .update_step(
                run.job.id,
                run.steps[i].seq,
                state,
                run.steps[i].data.clone(),
                error,
            )
            .await?;
        let rolling_back = run.job.state == JobState::RollingBack;
        let _ = self.bus.send(run.view(rolling_back, None));
        Ok(())
    }

    async fn succeed(&self, run: &mut JobRun, ended: Option<usize>) -> Result<(), StoreError> {
        let env = self
            .store
            .env(run.env.id)
            .await?
            .unwrap_or_else(|| run.env.clone());
        let app_summary = if env.is_app() {
            Some(self.cx().app_summary(run).await)
        } else {
            None
        };
        let (from, to, summary): (&'static [EnvState], EnvState, String) = match run.job.kind {
            JobKind::Create => (&[EnvState::Ready], EnvState::Ready, ready_summary(&env)),
            JobKind::Update => (&[EnvState::Ready], EnvState::Ready, String::new()),
            JobKind::Start => (&[EnvState::Stopped], EnvState::Ready, "started".into()),
            JobKind::Restart => (
                &[EnvState::Ready, EnvState::Stopped],
                EnvState::Ready,
                "restarted".into(),
            ),
            JobKind::Stop => (&[EnvState::Ready], EnvState::Stopped, "stopped".into()),
            JobKind::Readdress => (
                &[EnvState::Ready],
                EnvState::Ready,
                crate::chat::render::readdressed(env.address.as_deref()),
            ),
            JobKind::Access => (
                &[EnvState::Ready],
                EnvState::Ready,
                crate::chat::render::access_changed(
                    run.steps.iter().map(|s| &s.step),
                    &self.config.provision.ssh_user,
                    env.address.as_deref(),
                ),
            ),
            JobKind::Destroy => (
                &[EnvState::Destroying, EnvState::Destroyed],
                EnvState::Destroyed,
                "destroyed; its quota is free again".into(),
            ),
        };
        let summary = app_summary.unwrap_or(summary);
        let ended_here = self
            .store
            .end_run(
                run.job.id,
                RunEnd {
                    job_from: run.job.state,
                    job_to: JobState::Succeeded,
                    error: None,
                    env_id: env.id,
                    env_from: from,
                    env_to: to,
                    step: ended.map(|e| run.step_write(e)),
                    log: Some(("info", format!("done: {summary}"))),
                },
            )
            .await?;
        if !ended_here {
            tracing::warn!(job = run.job.id, state = %run.job.state, "the job changed state while it ran; its end was not written");
            return Ok(());
        }
        tracing::info!(job = run.job.id, env = %env.name, "job succeeded");
        run.env = env;
        let _ = self
            .bus
            .send(run.view(false, Some(Outcome::Succeeded(summary))));
        Ok(())
    }

    async fn fail(&self, run: &mut JobRun, step: &Step, e: StepError) -> Result<(), StoreError> {
        let reason = format!("{}: {e}", step.label());
        // A failed update is rolled back too: the new container goes, the old one keeps serving.
        if matches!(run.job.kind, JobKind::Create | JobKind::Update) {
            self.store
                .set_job_state(
                    run.job.id,
                    run.job.state,
                    JobState::RollingBack,
                    Some(reason.clone()),
                )
                .await?;
            run.job.state = JobState::RollingBack;
            run.job.error = Some(reason);
            if run.budget == Some(0) {
                // Driven one step at a time: the undo is the next call's.
                return Ok(());
            }
            return self.roll_back(run).await;
        }
        self.store
            .set_job_state(
                run.job.id,
                run.job.state,
                JobState::Failed,
                Some(reason.clone()),
            )
            .await?;
        if run.job.kind == JobKind::Destroy {
            // Said by /env list and /env info until a destroy ends well.
            self.store
                .set_env_state(
                    run.env.id,
                    &[EnvState::Destroying],
                    EnvState::Destroying,
                    Some(format!("{DESTROY_FAILED}{reason}")),
                )
                .await?;
            self.store
                .log(
                    run.job.id,
                    "warn",
                    "the environment stays 'destroying'; /env destroy tries again".into(),
                )
                .await?;
        }
        let _ = self
            .bus
            .send(run.view(false, Some(Outcome::Failed(reason))));
        Ok(())
    }

    /// What the steps may use of this worker.
    fn cx(&self) -> steps::StepCx<'_> {
        steps::StepCx {
            store: &self.store,
            compute: self.compute.as_ref(),
            config: &self.config,
            catalog: &self.catalog,
            clock: self.clock.as_ref(),
            schedule: &self.schedule,
            publishers: &self.publishers,
            docker: &self.docker,
            guest_ids: &self.guest_ids,
            ssh_identity: &self.ssh_identity,
            bus: &self.bus,
        }
    }
}

/// Post-provision steps share one label so profile names cannot explode the series.
fn step_label(step: &Step) -> String {
    match step {
        Step::PostProvision(_) => "post-provision".into(),
        other => other.label(),
    }
}

fn ready_summary(env: &EnvRecord) -> String {
    format!(
        "ready — {}CT {} on {}{}",
        env.domain
            .as_deref()
            .map(|d| format!("https://{d} — "))
            .unwrap_or_default(),
        env.vmid.map(|v| v.to_string()).unwrap_or_default(),
        env.node,
        env.address
            .as_deref()
            .map(|a| format!(", address {a}"))
            .unwrap_or_else(|| ", address not reported yet (DHCP)".into())
    )
}
