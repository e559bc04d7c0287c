//! The guest's own steps after its create: start, address, HA, snapshot,
//! readiness, and the teardown (shutdown, snapshots, delete, allocations) —
//! each with its compensation beside it.

use super::data::{DeleteGuestData, ShutdownData, TaskData};
use super::task_write::{forget_task, Effect};
use super::{JobRun, StepCx, StepError};
use crate::domain::lifecycle::{JobKind, Step, StepState};
use std::time::Duration;

/// The tag that marks every container Slipway owns.
pub const OWNER_TAG: &str = "slipway";

/// The tag that ties a container to one environment.
pub fn env_tag(env_id: i64) -> String {
    format!("slipway-env-{env_id}")
}

/// A team name as a PVE tag (`[a-z0-9_][a-z0-9_\-+.]*`).
pub(crate) fn team_tag(team: &str) -> String {
    let t: String = team
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("slipway-team-{t}")
}

pub const INITIAL_SNAPSHOT: &str = "slipway_initial";

impl StepCx<'_> {
    /// Retries for one Proxmox write, as configured.
    pub(crate) fn backoff(&self) -> crate::worker::backoff::Backoff {
        crate::worker::backoff::Backoff::new(
            self.config.proxmox.write_retries,
            self.config.proxmox.retry_base,
            self.config.proxmox.lock_wait,
        )
    }

    pub(crate) fn vmid(&self, run: &JobRun) -> Result<u32, StepError> {
        run.env
            .vmid
            .ok_or_else(|| StepError("the environment has no container id yet".into()))
    }

    /// Before any write to an existing guest (non-create jobs): finds it and
    /// checks that it is still this environment's, with one config read at
    /// the recorded node. When Proxmox says it is not there (HA relocated it or
    /// someone migrated it), one `/cluster/resources` read finds it and the
    /// record follows; a guest that is nowhere is left to the step. A guest at
    /// the recorded VMID without this environment's tag (the VMID was reused)
    /// is never touched: a destroy takes this environment's container as gone
    /// and goes on (false: skip the step); every other job fails here.
    pub(super) async fn locate_guest(&self, run: &mut JobRun) -> Result<bool, StepError> {
        let Some(vmid) = run.env.vmid else {
            return Ok(true);
        };
        let tag = env_tag(run.env.id);
        match self.compute.config(&run.env.node, vmid).await? {
            Some(cfg) if cfg.tags.contains(&tag) => Ok(true),
            Some(_) => self.not_ours(run, vmid, &tag).await,
            None => {
                self.follow_node(run, vmid, &tag).await?;
                Ok(true)
            }
        }
    }

    /// The guest at the recorded VMID is someone else's: see [`Self::locate_guest`].
    async fn not_ours(&self, run: &JobRun, vmid: u32, tag: &str) -> Result<bool, StepError> {
        let why = format!(
            "CT {vmid} on {} does not carry this environment's tag {tag}, so it is not {}'s \
             container any more (its VMID was reused?); Slipway does not touch it",
            run.env.node, run.env.name
        );
        if run.job.kind == JobKind::Destroy {
            let line = format!("{why}; {}'s own container is taken as gone", run.env.name);
            self.store.log(run.job.id, "warn", line).await?;
            return Ok(false);
        }
        Err(StepError(format!(
            "{why}. Nothing was changed; /env destroy {} removes the environment and leaves CT {vmid} alone",
            run.env.name
        )))
    }

    /// The guest is not on the recorded node: finds it by its tag elsewhere
    /// and records the node it is on now.
    async fn follow_node(&self, run: &mut JobRun, vmid: u32, tag: &str) -> Result<(), StepError> {
        let guests = self.compute.guests().await?;
        let Some(moved) = guests
            .into_iter()
            .find(|g| g.vmid == vmid && g.node != run.env.node && g.tags.iter().any(|t| t == tag))
        else {
            return Ok(());
        };
        self.store.set_node(run.env.id, moved.node.clone()).await?;
        self.store
            .log(
                run.job.id,
                "info",
                crate::chat::render::guest_moved(vmid, &run.env.node, &moved.node),
            )
            .await?;
        run.env.node = moved.node;
        Ok(())
    }

    async fn is_running(&self, run: &JobRun, vmid: u32) -> Result<bool, StepError> {
        self.running(&run.env.node, vmid).await
    }

    async fn running(&self, node: &str, vmid: u32) -> Result<bool, StepError> {
        Ok(self
            .compute
            .status(node, vmid)
            .await?
            .is_some_and(|s| s.status == "running"))
    }

    async fn has_snapshot(&self, node: &str, vmid: u32, name: &str) -> Result<bool, StepError> {
        Ok(self
            .compute
            .snapshots(node, vmid)
            .await?
            .iter()
            .any(|s| s == name))
    }

    /// In a create the step before made the container stopped, so only a
    /// step resumed after a restart can find it started already; `/env start`
    /// and a restart's start always look first.
    fn may_be_running(&self, run: &JobRun) -> bool {
        run.resumed || run.job.kind != JobKind::Create
    }

    pub(super) async fn start_container(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let vmid = self.vmid(run)?;
        let timeout = self.config.proxmox.task_timeout;
        let node = run.env.node.clone();
        let n = node.as_str();
        let saved = run.data::<TaskData>(i)?.task.is_some();
        if saved || !(self.may_be_running(run) && self.running(&node, vmid).await?) {
            self.task_write::<TaskData, _, _, _, _>(
                run,
                Some(i),
                timeout,
                move || self.compute.start(n, vmid),
                move || self.running(n, vmid),
            )
            .await?;
        }
        // Wait until Proxmox reports it running (HA starts are asynchronous).
        let started = std::time::Instant::now();
        while !self.is_running(run, vmid).await? {
            if started.elapsed() > timeout {
                return Err(StepError(format!(
                    "CT {vmid} was started but is not running after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(StepState::Done)
    }

    pub(super) async fn await_address(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        if run.env.address.is_some() {
            return Ok(StepState::Done);
        }
        let vmid = self.vmid(run)?;
        let wait = self.config.proxmox.address_wait;
        let started = std::time::Instant::now();
        loop {
            if let Some(addr) = self
                .compute
                .addresses(&run.env.node, vmid)
                .await?
                .into_iter()
                .next()
            {
                self.store
                    .set_address(run.env.id, Some(addr.clone()))
                    .await?;
                run.env.address = Some(addr);
                return Ok(StepState::Done);
            }
            if started.elapsed() >= wait {
                if needs_address(run, self.profile(run).ok(), self.config.provision.enabled) {
                    return Err(StepError(crate::chat::render::no_address_within(
                        &run.env.name,
                        vmid,
                        wait,
                    )));
                }
                self.store
                    .log(
                        run.job.id,
                        "warn",
                        format!(
                            "no address reported within {}; nothing in this job needs one, \
                             so it goes on (the reconcile loop records it when it comes)",
                            crate::chat::render::duration(wait)
                        ),
                    )
                    .await?;
                return Ok(StepState::Done);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub(super) async fn initial_snapshot(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let vmid = self.vmid(run)?;
        let timeout = self.config.proxmox.task_timeout;
        if run.data::<TaskData>(i)?.task.is_none()
            && self
                .has_snapshot(&run.env.node, vmid, INITIAL_SNAPSHOT)
                .await?
        {
            return Ok(StepState::Done);
        }
        let node = run.env.node.clone();
        let n = node.as_str();
        self.task_write::<TaskData, _, _, _, _>(
            run,
            Some(i),
            timeout,
            move || self.compute.snapshot(n, vmid, INITIAL_SNAPSHOT),
            move || self.has_snapshot(n, vmid, INITIAL_SNAPSHOT),
        )
        .await?;
        Ok(StepState::Done)
    }

    /// Graceful shutdown within the timeout, then a forced stop if it still runs.
    pub(super) async fn shut_down(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let Some(vmid) = run.env.vmid else {
            return Ok(StepState::Skipped);
        };
        let timeout = self.config.proxmox.task_timeout;
        if self.compute.config(&run.env.node, vmid).await?.is_none()
            || !self.is_running(run, vmid).await?
        {
            return Ok(StepState::Done);
        }
        let grace = self.config.proxmox.shutdown_timeout;
        let node = run.env.node.clone();
        let n = node.as_str();
        let graceful = self
            .task_write::<ShutdownData, _, _, _, _>(
                run,
                Some(i),
                grace + Duration::from_secs(30),
                move || self.compute.shutdown(n, vmid, grace),
                move || async move { Ok(!self.running(n, vmid).await?) },
            )
            .await;
        match graceful {
            Ok(Effect::AlreadyThere) => return Ok(StepState::Done),
            Ok(Effect::Done) => {}
            Err(e) => {
                self.store
                    .log(
                        run.job.id,
                        "warn",
                        format!("graceful shutdown failed ({e}); forcing a stop"),
                    )
                    .await?
            }
        }
        if self.running(&node, vmid).await? {
            self.task_write::<ShutdownData, _, _, _, _>(
                run,
                None,
                timeout,
                move || self.compute.stop(n, vmid),
                move || async move { Ok(!self.running(n, vmid).await?) },
            )
            .await?;
        }
        Ok(StepState::Done)
    }

    pub(super) async fn delete_snapshots(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let Some(vmid) = run.env.vmid else {
            return Ok(StepState::Skipped);
        };
        if self.compute.config(&run.env.node, vmid).await?.is_none() {
            return Ok(StepState::Done);
        }
        let node = run.env.node.clone();
        let n = node.as_str();
        for snap in self.compute.snapshots(n, vmid).await? {
            let s = snap.as_str();
            self.task_write::<TaskData, _, _, _, _>(
                run,
                None,
                self.config.proxmox.task_timeout,
                move || self.compute.delete_snapshot(n, vmid, s),
                move || async move { Ok(!self.has_snapshot(n, vmid, s).await?) },
            )
            .await?;
        }
        Ok(StepState::Done)
    }

    /// Deletes the container with purge — only if it carries this environment's tag.
    pub(super) async fn delete_container(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let Some(vmid) = run.env.vmid else {
            return Ok(StepState::Skipped);
        };
        let timeout = self.config.proxmox.task_timeout;
        if let Some(task) = run.data::<DeleteGuestData>(i)?.delete_task {
            // Sent before a restart; a failed wait falls through to look again.
            let _ = self.compute.wait(&task, timeout).await;
        }
        match self.compute.config(&run.env.node, vmid).await? {
            None => Ok(StepState::Done),
            Some(cfg) if !cfg.tags.contains(&env_tag(run.env.id)) => Err(StepError(format!(
                "CT {vmid} does not carry this environment's tag {}; Slipway will not delete a container it does not own",
                env_tag(run.env.id)
            ))),
            Some(cfg) if cfg.lock.as_deref() == Some("destroyed") => {
                // A delete was sent before a restart and is still running.
                match self.wait_unlocked(run, vmid, timeout).await? {
                    false => Ok(StepState::Done),
                    true => Err(StepError(format!("CT {vmid} is still there after its delete ended; look at the task log in Proxmox"))),
                }
            }
            Some(_) => {
                // A task id saved before a restart was waited for above.
                forget_task::<DeleteGuestData>(run, i);
                let node = run.env.node.clone();
        let n = node.as_str();
                self.task_write::<DeleteGuestData, _, _, _, _>(
                    run,
                    Some(i),
                    timeout,
                    move || self.compute.destroy(n, vmid),
                    move || async move { Ok(self.compute.config(n, vmid).await?.is_none()) },
                )
                .await?;
                Ok(StepState::Done)
            }
        }
    }

    pub(super) async fn add_ha(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let vmid = self.vmid(run)?;
        let mut backoff = self.backoff();
        loop {
            match self.compute.ha_add(vmid).await {
                Ok(()) => return Ok(StepState::Done),
                // Adding is idempotent: "already defined" counts as done.
                Err(e) if backoff.retry(&e).await => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(super) async fn undo_add_ha(&self, run: &mut JobRun) -> Result<(), StepError> {
        if let Some(vmid) = run.env.vmid {
            self.compute.ha_remove(vmid).await?;
        }
        Ok(())
    }

    pub(super) async fn mark_ready(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let now = self.clock.now();
        let reminders = run
            .env
            .ttl_secs
            .map(|ttl| {
                crate::domain::lifetime::reminder_schedule(
                    now + ttl,
                    &self.config.lifetimes.reminders,
                    now,
                )
            })
            .unwrap_or_default();
        self.store
            .mark_ready(run.env.id, now, run.env.ttl_secs, reminders)
            .await?;
        if run.env.ttl_secs.is_some() {
            self.schedule.notify_one();
        }
        Ok(StepState::Done)
    }

    pub(super) async fn remove_ha(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        // Only an HA-managed container has a resource to remove (and the
        // removal needs Sys.Console, which the least-privilege role lacks).
        let Some(vmid) = run.env.vmid else {
            return Ok(StepState::Skipped);
        };
        match self.compute.status(&run.env.node, vmid).await? {
            Some(s) if s.ha_managed => {
                self.compute.ha_remove(vmid).await?;
                Ok(StepState::Done)
            }
            _ => Ok(StepState::Skipped),
        }
    }

    pub(super) async fn release_allocations(
        &self,
        run: &mut JobRun,
    ) -> Result<StepState, StepError> {
        self.store.release_ips(run.env.id).await?;
        Ok(StepState::Done)
    }

    pub(super) async fn undo_start_container(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<(), StepError> {
        if run.env.vmid.is_some() {
            self.shut_down(run, i).await?;
        }
        Ok(())
    }

    pub(super) async fn undo_initial_snapshot(&self, run: &mut JobRun) -> Result<(), StepError> {
        let Some(vmid) = run.env.vmid else {
            return Ok(());
        };
        let node = run.env.node.clone();
        let n = node.as_str();
        if self.compute.config(&node, vmid).await?.is_some()
            && self
                .compute
                .snapshots(&node, vmid)
                .await?
                .iter()
                .any(|s| s == INITIAL_SNAPSHOT)
        {
            self.task_write::<TaskData, _, _, _, _>(
                run,
                None,
                self.config.proxmox.task_timeout,
                move || self.compute.delete_snapshot(n, vmid, INITIAL_SNAPSHOT),
                move || async move { Ok(!self.has_snapshot(n, vmid, INITIAL_SNAPSHOT).await?) },
            )
            .await?;
        }
        Ok(())
    }
}

/// Whether a later step of the job needs the guest's address.
/// Steps that run only when `provision.enabled` are left out when it is false.
fn needs_address(
    run: &JobRun,
    profile: Option<&crate::catalog::profile::Profile>,
    provisioning: bool,
) -> bool {
    run.steps.iter().any(|s| match &s.step {
        Step::PublishRoute
        | Step::RegisterDns
        | Step::AddMonitoring
        | Step::GrantAccess(_)
        | Step::RevokeAccess(_) => true,
        Step::ReachSsh => provisioning,
        Step::PostProvision(name) => {
            provisioning
                && profile.is_some_and(|p| {
                    p.post_provision
                        .iter()
                        .any(|post| &post.name == name && (post.uses("address") || post.logs_in()))
                })
        }
        _ => false,
    })
}
