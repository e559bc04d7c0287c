//! The forward steps. Each is idempotent: it first looks whether its effect
//! already exists (a container with this environment's tag, a running status, a
//! snapshot by name, a task id saved before a crash) and only then acts.

use super::{JobRun, StepError, Worker};
use crate::domain::lifecycle::{JobKind, Step, StepState};
use crate::provider::command::{self, StepValues};
use crate::provider::docker::server_cert::{self, IssuedFiles};
use crate::provider::TaskRef;
use serde_json::{json, Value};
use std::time::Duration;

/// The tag that marks every container Slipway owns.
pub const OWNER_TAG: &str = "slipway";

/// The tag that ties a container to one environment.
pub fn env_tag(env_id: i64) -> String {
    format!("slipway-env-{env_id}")
}

/// A team name as a PVE tag (`[a-z0-9_][a-z0-9_\-+.]*`).
pub(super) fn team_tag(team: &str) -> String {
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

pub(super) fn task_of(data: &Value, key: &str) -> Option<TaskRef> {
    serde_json::from_value(data.get(key)?.clone()).ok()
}

impl Worker {
    pub(super) async fn run_step(
        &self,
        run: &mut JobRun,
        i: usize,
        step: &Step,
    ) -> Result<StepState, StepError> {
        match step {
            Step::AllocateIp => self.allocate_ip(run, i).await,
            Step::CreateContainer => self.create_container(run, i).await,
            Step::StartContainer | Step::Start => self.start_container(run, i).await,
            Step::AwaitAddress => self.await_address(run).await,
            Step::AddHa => {
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
            Step::PostProvision(name) => self.post_provision(run, name).await,
            Step::InitialSnapshot => self.initial_snapshot(run, i).await,
            Step::MarkReady => {
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
            Step::RemoveHa => {
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
            Step::Shutdown | Step::Stop => self.shut_down(run, i).await,
            Step::DeleteSnapshots => self.delete_snapshots(run).await,
            Step::DeleteContainer => self.delete_container(run, i).await,
            Step::PublishRoute
            | Step::RegisterDns
            | Step::AddMonitoring
            | Step::UnpublishRoute
            | Step::RemoveDns
            | Step::RemoveMonitoring => self.publish_step(run, step).await,
            Step::ReleaseAllocations => {
                self.store.release_ips(run.env.id).await?;
                Ok(StepState::Done)
            }
            Step::PullImage
            | Step::CreateAppContainer
            | Step::StartAppContainer
            | Step::CheckHealth
            | Step::SwitchRoute
            | Step::RemoveOldContainer
            | Step::RestartApp
            | Step::StopApp
            | Step::StartApp
            | Step::RemoveAppContainers => self.app_step(run, i, step).await,
        }
    }

    /// Retries for one Proxmox write, as configured.
    pub(super) fn backoff(&self) -> super::backoff::Backoff {
        super::backoff::Backoff::new(
            self.config.proxmox.write_retries,
            self.config.proxmox.retry_base,
        )
    }

    pub(super) fn vmid(&self, run: &JobRun) -> Result<u32, StepError> {
        run.env
            .vmid
            .ok_or_else(|| StepError("the environment has no container id yet".into()))
    }

    async fn is_running(&self, run: &JobRun, vmid: u32) -> Result<bool, StepError> {
        Ok(self
            .compute
            .status(&run.env.node, vmid)
            .await?
            .is_some_and(|s| s.status == "running"))
    }

    /// In a create the step before made the container stopped, so only a
    /// step resumed after a restart can find it started already; `/env start`
    /// and a restart's start always look first.
    fn may_be_running(&self, run: &JobRun) -> bool {
        run.resumed || run.job.kind != JobKind::Create
    }

    async fn start_container(&self, run: &mut JobRun, i: usize) -> Result<StepState, StepError> {
        let vmid = self.vmid(run)?;
        let timeout = self.config.proxmox.task_timeout;
        if let Some(task) = task_of(&run.steps[i].data, "task") {
            self.compute.wait(&task, timeout).await?;
        } else if !(self.may_be_running(run) && self.is_running(run, vmid).await?) {
            let mut backoff = self.backoff();
            let task = loop {
                match self.compute.start(&run.env.node, vmid).await {
                    Ok(t) => break t,
                    Err(e) if backoff.retry(&e).await => {
                        if self.is_running(run, vmid).await? {
                            return Ok(StepState::Done);
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            run.steps[i].data["task"] = json!(task);
            self.checkpoint(run, i).await?;
            self.compute.wait(&task, timeout).await?;
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

    async fn await_address(&self, run: &mut JobRun) -> Result<StepState, StepError> {
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
                self.store
                    .log(
                        run.job.id,
                        "warn",
                        format!(
                            "no address reported within {}; continuing without one",
                            crate::chat::render::duration(wait)
                        ),
                    )
                    .await?;
                return Ok(StepState::Done);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn post_provision(&self, run: &mut JobRun, name: &str) -> Result<StepState, StepError> {
        if !self.config.provision.enabled {
            self.store
                .log(
                    run.job.id,
                    "info",
                    format!("post-provision '{name}' skipped: provision.enabled is false"),
                )
                .await?;
            return Ok(StepState::Skipped);
        }
        let profile = self.profile(run)?;
        let Some(step) = profile.post_provision.iter().find(|s| s.name == name) else {
            return Err(StepError(format!(
                "profile {} has no post-provision step '{name}' any more",
                profile.name
            )));
        };
        // dockerd's certificate files live as long as this step.
        let tls = if profile.docker_tls {
            Some(self.dockerd_tls(run)?)
        } else {
            None
        };
        let values = StepValues {
            env_id: run.env.id,
            hostname: run.env.name.clone(),
            vmid: self.vmid(run)?,
            node: run.env.node.clone(),
            address: run.env.address.clone().unwrap_or_default(),
            team: run.env.team.clone(),
            profile: profile.name.clone(),
            packages: profile.packages.clone(),
            docker_tls: tls.as_ref().map(|t| t.values.clone()),
        };
        let argv =
            command::render_argv(&step.command, &values).map_err(|e| StepError(e.to_string()))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let store = self.store.clone();
        let job_id = run.job.id;
        let pump = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let _ = store.log(job_id, "out", line).await;
            }
        });
        let result = command::run(&argv, &self.config.provision.workdir, step.timeout, tx).await;
        drop(tls);
        let _ = pump.await;
        result.map_err(|e| StepError(e.to_string()))?;
        Ok(StepState::Done)
    }

    /// Signs dockerd's server certificate for this environment with
    /// `docker.env_tls` (the CA Slipway trusts docker-host environments with).
    fn dockerd_tls(&self, run: &JobRun) -> Result<IssuedFiles, StepError> {
        let docker = &self.config.docker;
        let (Some(tls), Some(ca_key)) = (&docker.env_tls, &docker.env_ca_key) else {
            return Err(StepError(
                "this profile installs dockerd with a certificate Slipway signs; configure \
                 docker.env_tls with ca_file, cert_file, key_file and ca_key_file (the CA's key)"
                    .into(),
            ));
        };
        let address = run
            .env
            .address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                StepError(format!(
                    "{} has no IPv4 address to put in dockerd's certificate; raise \
                     proxmox.address_wait or give the profile network.ip = \"pool\"",
                    run.env.name
                ))
            })?;
        server_cert::issue_files(&tls.ca, ca_key, address, &run.env.name, docker.env_port)
            .map_err(|e| StepError(e.to_string()))
    }

    async fn initial_snapshot(&self, run: &mut JobRun, i: usize) -> Result<StepState, StepError> {
        let vmid = self.vmid(run)?;
        let timeout = self.config.proxmox.task_timeout;
        if let Some(task) = task_of(&run.steps[i].data, "task") {
            self.compute.wait(&task, timeout).await?;
            return Ok(StepState::Done);
        }
        if self
            .compute
            .snapshots(&run.env.node, vmid)
            .await?
            .iter()
            .any(|s| s == INITIAL_SNAPSHOT)
        {
            return Ok(StepState::Done);
        }
        let task = self
            .compute
            .snapshot(&run.env.node, vmid, INITIAL_SNAPSHOT)
            .await?;
        run.steps[i].data["task"] = json!(task);
        self.checkpoint(run, i).await?;
        self.compute.wait(&task, timeout).await?;
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
        let task = match task_of(&run.steps[i].data, "stop_task") {
            Some(t) => t,
            None => {
                let mut backoff = self.backoff();
                let t = loop {
                    match self.compute.shutdown(&run.env.node, vmid, grace).await {
                        Ok(t) => break t,
                        Err(e) if backoff.retry(&e).await => {
                            if !self.is_running(run, vmid).await? {
                                return Ok(StepState::Done);
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                run.steps[i].data["stop_task"] = json!(t);
                self.checkpoint(run, i).await?;
                t
            }
        };
        if let Err(e) = self
            .compute
            .wait(&task, grace + Duration::from_secs(30))
            .await
        {
            self.store
                .log(
                    run.job.id,
                    "warn",
                    format!("graceful shutdown failed ({e}); forcing a stop"),
                )
                .await?;
        }
        if self.is_running(run, vmid).await? {
            let mut backoff = self.backoff();
            let t = loop {
                match self.compute.stop(&run.env.node, vmid).await {
                    Ok(t) => break t,
                    Err(e) if backoff.retry(&e).await => {
                        if !self.is_running(run, vmid).await? {
                            return Ok(StepState::Done);
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            self.compute.wait(&t, timeout).await?;
        }
        Ok(StepState::Done)
    }

    async fn delete_snapshots(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let Some(vmid) = run.env.vmid else {
            return Ok(StepState::Skipped);
        };
        if self.compute.config(&run.env.node, vmid).await?.is_none() {
            return Ok(StepState::Done);
        }
        for snap in self.compute.snapshots(&run.env.node, vmid).await? {
            let t = self
                .compute
                .delete_snapshot(&run.env.node, vmid, &snap)
                .await?;
            self.compute
                .wait(&t, self.config.proxmox.task_timeout)
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
        if let Some(task) = task_of(&run.steps[i].data, "delete_task") {
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
                let mut backoff = self.backoff();
                let task = loop {
                    match self.compute.destroy(&run.env.node, vmid).await {
                        Ok(t) => break t,
                        Err(e) if backoff.retry(&e).await => {
                            if self.compute.config(&run.env.node, vmid).await?.is_none() {
                                return Ok(StepState::Done);
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                run.steps[i].data["delete_task"] = json!(task);
                self.checkpoint(run, i).await?;
                self.compute.wait(&task, timeout).await?;
                Ok(StepState::Done)
            }
        }
    }
}
