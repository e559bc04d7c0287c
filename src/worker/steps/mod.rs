//! The steps, one family a module: each holds a step's `apply` and its
//! `compensate` side by side. The two dispatches below are exhaustive and have
//! no wildcard arm, so a new step without a compensation does not compile; a
//! step with nothing to undo says so in `compensate`.
//!
//! Every step is idempotent: it first looks whether its effect already exists
//! (a container with this environment's tag, a running status, a snapshot by
//! name, a task id saved before a crash) and only then acts.

mod access;
mod app;
mod create;
pub(crate) mod data;
mod guest;
mod provision;
mod publish;
mod task_write;

pub use guest::{env_tag, OWNER_TAG};

use super::{JobRun, StepError};
use crate::catalog::profile::Profile;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::lifecycle::{JobKind, Step, StepState};
use crate::provider::docker::DockerHosts;
use crate::provider::publish::Publishers;
use crate::provider::Compute;
use crate::store::{Store, StoreError};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

/// What a step may use: the journal and the job's log (the store), the
/// providers, the configuration and catalog, and the clock. Steps see nothing
/// else of the worker; progress and leases stay the worker's.
pub(crate) struct StepCx<'a> {
    pub store: &'a Store,
    pub compute: &'a dyn Compute,
    pub config: &'a Config,
    pub catalog: &'a Catalog,
    pub clock: &'a dyn Clock,
    /// Wakes the lifetime scheduler when an expiry was set.
    pub schedule: &'a Notify,
    pub publishers: &'a Publishers,
    pub docker: &'a DockerHosts,
    pub guest_ids: &'a super::guest_ids::GuestIds,
    /// Slipway's own key: in every guest it creates, used to provision it.
    pub ssh_identity: &'a crate::provider::ssh_identity::ProvisioningKey,
    /// Where a step's note (what it waits for) reaches the job's message.
    pub bus: &'a crate::progress::Bus,
}

impl StepCx<'_> {
    /// Waits before another try of a Proxmox write that failed with `e`:
    /// true when one is worth it (a transient error with tries left, or a
    /// lock another task holds, within `proxmox.lock_wait`, which the step's
    /// message shows).
    pub(crate) async fn retry(
        &self,
        run: &mut JobRun,
        backoff: &mut crate::worker::backoff::Backoff,
        e: &crate::provider::ProviderError,
    ) -> Result<bool, StoreError> {
        let Some(wait) = backoff.plan(e) else {
            return Ok(false);
        };
        if let Some(n) = wait.lock_try {
            let text = format!("{} — {e}", crate::chat::render::waiting_for_lock(n));
            self.store.log(run.job.id, "info", text).await?;
            run.note = Some(crate::chat::render::waiting_for_lock(n));
            let rolling_back = run.job.state == crate::domain::lifecycle::JobState::RollingBack;
            let _ = self.bus.send(run.view(rolling_back, None));
        }
        tokio::time::sleep(wait.after).await;
        Ok(true)
    }

    /// Saves step `i`'s data mid-step (a task id right after the POST), so a
    /// step resumed after a crash finds what its earlier attempt sent.
    pub(crate) async fn checkpoint(&self, run: &JobRun, i: usize) -> Result<(), StoreError> {
        let s = &run.steps[i];
        self.store
            .update_step(run.job.id, s.seq, s.state, s.data.clone(), None)
            .await
    }

    /// The environment's profile, which must still be in the catalog.
    pub(crate) fn profile(&self, run: &JobRun) -> Result<&Profile, StepError> {
        self.catalog.profile(&run.env.profile).ok_or_else(|| {
            StepError(format!(
                "profile {} is no longer in profiles/; restore it to finish this job",
                run.env.profile
            ))
        })
    }

    /// The environment's IPv4 address, for a step that needs one (never "").
    pub(crate) fn address(&self, run: &JobRun) -> Result<std::net::Ipv4Addr, StepError> {
        let raw = run
            .env
            .address
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| StepError(crate::chat::render::no_address(&run.env.name)))?;
        raw.parse().map_err(|_| {
            StepError(format!(
                "the address {raw} recorded for {} is not an IPv4 address",
                run.env.name
            ))
        })
    }

    /// Does step `i` of the run.
    pub(super) async fn apply(
        &self,
        run: &mut JobRun,
        i: usize,
        step: &Step,
    ) -> Result<StepState, StepError> {
        if run.job.kind != JobKind::Create
            && acts_on_existing_guest(step)
            && !self.locate_guest(run).await?
        {
            return Ok(StepState::Skipped);
        }
        match step {
            Step::AllocateIp => self.allocate_ip(run, i).await,
            Step::CreateContainer => self.create_container(run, i).await,
            Step::StartContainer | Step::Start => self.start_container(run, i).await,
            Step::AwaitAddress => self.await_address(run).await,
            Step::AddHa => self.add_ha(run).await,
            Step::ReachSsh => self.reach_ssh(run).await,
            Step::PostProvision(name) => self.post_provision(run, name).await,
            Step::GrantAccess(who) => self.grant_access(run, who).await,
            Step::RevokeAccess(who) => self.revoke_access(run, who).await,
            Step::InitialSnapshot => self.initial_snapshot(run, i).await,
            Step::MarkReady => self.mark_ready(run).await,
            Step::RemoveHa => self.remove_ha(run).await,
            Step::Shutdown | Step::Stop => self.shut_down(run, i).await,
            Step::DeleteSnapshots => self.delete_snapshots(run).await,
            Step::DeleteContainer => self.delete_container(run, i).await,
            Step::ReleaseAllocations => self.release_allocations(run).await,
            Step::PublishRoute => self.publish_route(run, None).await,
            Step::RegisterDns => self.register_dns(run).await,
            Step::AddMonitoring => self.add_monitoring(run).await,
            Step::UnpublishRoute => self.unpublish_route(run).await,
            Step::RemoveDns => self.remove_dns(run).await,
            Step::RemoveMonitoring => self.remove_monitoring(run).await,
            Step::PullImage => self.pull_image(run, i).await,
            Step::CreateAppContainer => self.create_app_container(run, i).await,
            Step::StartAppContainer => self.start_app_container(run, i).await,
            Step::CheckHealth => self.check_new_container(run).await,
            Step::SwitchRoute => self.switch_route(run, i).await,
            Step::RemoveOldContainer => self.remove_old_container(run).await,
            Step::RestartApp => self.restart_app(run).await,
            Step::StopApp => self.stop_app(run).await,
            Step::StartApp => self.start_app(run).await,
            Step::RemoveAppContainers => self.remove_app_containers(run).await,
        }
    }

    /// Undoes step `i` of a create or an update that failed later on.
    pub(super) async fn compensate(
        &self,
        run: &mut JobRun,
        i: usize,
        step: &Step,
    ) -> Result<(), StepError> {
        match step {
            Step::AllocateIp => self.undo_allocate_ip(run).await,
            Step::CreateContainer => self.undo_create_container(run, i).await,
            Step::StartContainer => self.undo_start_container(run, i).await,
            Step::AddHa => self.undo_add_ha(run).await,
            Step::InitialSnapshot => self.undo_initial_snapshot(run).await,
            Step::PublishRoute => self.unpublish_route(run).await.map(drop),
            Step::RegisterDns => self.remove_dns(run).await.map(drop),
            Step::AddMonitoring => self.remove_monitoring(run).await.map(drop),
            Step::CreateAppContainer => self.undo_create_app_container(run).await,
            Step::SwitchRoute => self.undo_switch_route(run, i).await,
            // What these did lives inside the guest or the app's container, and
            // goes with it when the create's undo removes that.
            // The recorded host key stays with the environment's row: a key is
            // never re-trusted, and a retried create is a new environment.
            Step::AwaitAddress
            | Step::ReachSsh
            | Step::PostProvision(_)
            | Step::MarkReady
            | Step::PullImage
            | Step::StartAppContainer
            | Step::CheckHealth => Ok(()),
            // Steps of jobs that do not roll back (destroy, stop, start, restart)
            // or that come after an update's point of no return: a failure is
            // reported and the job can be asked for again.
            Step::RemoveHa
            | Step::Shutdown
            | Step::Stop
            | Step::Start
            | Step::DeleteSnapshots
            | Step::DeleteContainer
            | Step::ReleaseAllocations
            | Step::UnpublishRoute
            | Step::RemoveDns
            | Step::RemoveMonitoring
            | Step::RemoveOldContainer
            | Step::GrantAccess(_)
            | Step::RevokeAccess(_)
            | Step::RestartApp
            | Step::StopApp
            | Step::StartApp
            | Step::RemoveAppContainers => Ok(()),
        }
    }
}

impl JobRun {
    /// Step `i`'s journal data as `T`; data this release cannot read is
    /// [`StoreError::Corrupt`] naming the job and the step.
    pub(crate) fn data<T: DeserializeOwned>(&self, i: usize) -> Result<T, StoreError> {
        let raw = &self.steps[i].data;
        let value = match raw {
            Value::Null => Value::Object(Default::default()),
            other => other.clone(),
        };
        serde_json::from_value(value).map_err(|e| {
            StoreError::Corrupt(format!(
                "job {}, step {} ({}): its data cannot be read ({e}): {raw}",
                self.job.id,
                i + 1,
                self.steps[i].step.id()
            ))
        })
    }

    /// Writes `value`'s fields into step `i`'s journal data (the other fields
    /// stay); `Worker::checkpoint` makes it durable.
    pub(crate) fn set_data<T: Serialize>(&mut self, i: usize, value: &T) {
        let Ok(Value::Object(fields)) = serde_json::to_value(value) else {
            unreachable!("step data is a struct of plain fields");
        };
        match &mut self.steps[i].data {
            Value::Object(map) => map.extend(fields),
            other => *other = Value::Object(fields),
        }
    }

    /// The data of this job's (first) step `step`, if the job has one: how a
    /// step reads what an earlier step recorded.
    pub(crate) fn output_of<T: DeserializeOwned>(
        &self,
        step: &Step,
    ) -> Result<Option<T>, StoreError> {
        match self.steps.iter().position(|s| &s.step == step) {
            Some(i) => self.data(i).map(Some),
            None => Ok(None),
        }
    }
}

/// Steps that act on a guest made by an earlier job, which HA or a migration
/// may have moved to another node since.
fn acts_on_existing_guest(step: &Step) -> bool {
    matches!(
        step,
        Step::Start
            | Step::StartContainer
            | Step::Shutdown
            | Step::Stop
            | Step::RemoveHa
            | Step::DeleteSnapshots
            | Step::DeleteContainer
    )
}
