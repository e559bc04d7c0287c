//! The reconcile loop (level-triggered, at start and then every few minutes):
//! compares the database with Proxmox's `/cluster/resources`, filtered by
//! Slipway's ownership tag. Drift — a live environment whose container is
//! missing, or stopped while it should run — is marked and reported in the
//! environment's thread. Orphans — containers with Slipway's tag and no live
//! environment — are reported, and removed only after a grace period, only
//! inside Slipway's VMID ranges and only with its tag. A container without the
//! tag is never touched. A ready environment's address is re-read and
//! followed when DHCP gave it another ([`addresses`]).
//!
//! [`apps`] does the same for apps' containers on the Docker hosts. The two
//! halves run independently: Proxmox being down says nothing about Docker.

mod addresses;
mod apps;

use crate::chat::{announce, Announcement, AnnouncementKind, Sinks};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::lifecycle::EnvState;
use crate::provider::docker::DockerHosts;
use crate::provider::{Compute, Guest, ProviderError};
use crate::store::envs::EnvRecord;
use crate::store::{Store, StoreError};
use crate::worker::steps::{env_tag, OWNER_TAG};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// What one pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Environments whose drift was newly reported.
    pub drifted: Vec<String>,
    /// LXC orphans seen (VMIDs).
    pub orphans: Vec<u32>,
    pub removed: Vec<u32>,
    /// Apps whose drift was newly reported.
    pub apps_drifted: Vec<String>,
    /// App orphans seen, as `host/container name`.
    pub app_orphans: Vec<String>,
    pub apps_removed: Vec<String>,
    /// Docker hosts that could not be asked this time (nothing judged there).
    pub unreachable: Vec<String>,
    /// Environments whose guest was found on another node (HA, a migration).
    pub moved: Vec<String>,
    /// Environments whose address changed (DHCP): a readdress job was queued.
    pub readdressed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Docker(#[from] crate::provider::docker::DockerError),
}

pub struct Reconciler {
    pub store: Store,
    pub compute: Arc<dyn Compute>,
    /// Docker hosts of apps.
    pub docker: Arc<DockerHosts>,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub sinks: Sinks,
    /// Wakes the workers when a job is queued.
    pub workers: Arc<tokio::sync::Notify>,
}

impl Reconciler {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            match self.pass().await {
                Ok(p) if p != Pass::default() => tracing::info!(?p, "reconciled"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile pass failed; trying again next time")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.reconcile.interval) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    fn in_ranges(&self, vmid: u32) -> bool {
        self.config
            .teams
            .iter()
            .any(|t| (t.vmids.0..=t.vmids.1).contains(&vmid))
    }

    /// One comparison of the database with Proxmox and the Docker hosts.
    pub async fn pass(&self) -> Result<Pass, ReconcileError> {
        let mut pass = Pass::default();
        let lxc = self.pass_lxc(&mut pass).await;
        let apps = self.pass_apps(&mut pass).await;
        lxc.and(apps)?;
        Ok(pass)
    }

    async fn pass_lxc(&self, pass: &mut Pass) -> Result<(), ReconcileError> {
        let guests = self.compute.guests().await?;
        let envs = self.store.list_envs(None).await?;
        self.check_drift(&guests, &envs, pass).await?;
        self.check_addresses(&guests, &envs, pass).await?;
        self.check_orphans(&guests, pass).await
    }

    async fn check_drift(
        &self,
        guests: &[Guest],
        envs: &[EnvRecord],
        pass: &mut Pass,
    ) -> Result<(), ReconcileError> {
        for env in envs {
            if env.is_app() {
                continue; // see `apps`
            }
            let expected_running = match env.state {
                EnvState::Ready => true,
                EnvState::Stopped => false,
                _ => continue, // a job is working on it
            };
            let Some(vmid) = env.vmid else { continue };
            let guest = guests.iter().find(|g| g.vmid == vmid);
            if let Some(g) = guest.filter(|g| g.node != env.node) {
                self.follow_node(env, g).await?;
                pass.moved.push(env.name.clone());
            }
            let drift = match guest {
                None => Some(format!("its container CT {vmid} is missing from Proxmox")),
                Some(g) if expected_running && g.status != "running" => Some(format!(
                    "its container CT {vmid} is {}, but it should be running",
                    g.status
                )),
                Some(_) => None,
            };
            if !self.store.set_drift(env.id, drift.clone()).await? {
                continue;
            }
            let text = match &drift {
                Some(d) => {
                    pass.drifted.push(env.name.clone());
                    tracing::warn!(env = %env.name, drift = %d, "drift");
                    format!("⚠️ @{} {} has drifted: {d}. /env info {} shows it; /env destroy {} cleans up.", env.owner_display, env.name, env.name, env.name)
                }
                None => format!("✅ {} matches Proxmox again.", env.name),
            };
            self.tell(env, text).await;
        }
        Ok(())
    }

    /// Tells the environment's thread (or its request's channel).
    async fn tell(&self, env: &EnvRecord, text: String) {
        let a = Announcement {
            text,
            env_id: env.id,
            kind: AnnouncementKind::Notice,
        };
        announce(&self.sinks, Some(&env.announce_to_or_default()), &a).await;
    }

    /// Records the node a guest was moved to, and tells the environment's thread.
    async fn follow_node(&self, env: &EnvRecord, g: &Guest) -> Result<(), ReconcileError> {
        tracing::info!(env = %env.name, from = %env.node, to = %g.node, "guest moved");
        self.store.set_node(env.id, g.node.clone()).await?;
        let text = format!(
            "ℹ️ {}: {}",
            env.name,
            crate::chat::render::guest_moved(g.vmid, &env.node, &g.node)
        );
        self.tell(env, text).await;
        Ok(())
    }

    async fn check_orphans(&self, guests: &[Guest], pass: &mut Pass) -> Result<(), ReconcileError> {
        let now = self.clock.now();
        let grace = self.config.reconcile.orphan_grace.as_secs() as i64;
        let mut present = Vec::new();
        for g in guests
            .iter()
            .filter(|g| g.tags.iter().any(|t| t == OWNER_TAG))
        {
            if self.accounted_for(g).await? || !self.in_ranges(g.vmid) {
                continue;
            }
            present.push(g.vmid);
            pass.orphans.push(g.vmid);
            let orphan = self
                .store
                .see_orphan(g.vmid, g.node.clone(), g.tags.join(";"), now)
                .await?;
            if !orphan.reported {
                tracing::warn!(vmid = g.vmid, node = %g.node, "orphan: a container with Slipway's tag and no live environment");
                self.store
                    .audit(
                        "slipway:reconcile".into(),
                        "reconcile.orphan".into(),
                        format!("CT {}", g.vmid),
                        "reported".into(),
                        format!("removed after {}s unless an environment claims it", grace),
                    )
                    .await?;
                self.store.orphan_reported(g.vmid).await?;
            }
            if self.config.reconcile.remove_orphans
                && now - orphan.first_seen >= grace
                && self.remove(g).await?
            {
                pass.removed.push(g.vmid);
                self.store.orphan_removed(g.vmid, now).await?;
                self.store
                    .audit(
                        "slipway:reconcile".into(),
                        "reconcile.orphan".into(),
                        format!("CT {}", g.vmid),
                        "removed".into(),
                        String::new(),
                    )
                    .await?;
            }
        }
        self.store.forget_orphans_except(present).await?;
        Ok(())
    }

    /// A live environment owns this container (including one being created).
    async fn accounted_for(&self, g: &Guest) -> Result<bool, ReconcileError> {
        for tag in &g.tags {
            if let Some(id) = tag
                .strip_prefix("slipway-env-")
                .and_then(|n| n.parse::<i64>().ok())
            {
                if let Some(env_id) = self.store.live_env_id(id).await? {
                    let env = self.store.env(env_id).await?;
                    if env.is_some_and(|e| e.vmid.is_none() || e.vmid == Some(g.vmid))
                        && *tag == env_tag(env_id)
                    {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Stops and deletes an orphan, after checking its tag once more.
    async fn remove(&self, g: &Guest) -> Result<bool, ReconcileError> {
        let Some(cfg) = self.compute.config(&g.node, g.vmid).await? else {
            return Ok(false);
        };
        if !cfg.tags.iter().any(|t| t == OWNER_TAG) || cfg.lock.is_some() {
            return Ok(false);
        }
        let timeout = self.config.proxmox.task_timeout;
        let status = self.compute.status(&g.node, g.vmid).await?;
        if status.as_ref().is_some_and(|s| s.ha_managed) {
            self.compute.ha_remove(g.vmid).await?;
        }
        if status.is_some_and(|s| s.status == "running") {
            let t = self.compute.stop(&g.node, g.vmid).await?;
            self.compute.wait(&t, timeout).await?;
        }
        let t = self.compute.destroy(&g.node, g.vmid).await?;
        self.compute.wait(&t, timeout).await?;
        tracing::info!(vmid = g.vmid, "orphan removed");
        Ok(true)
    }
}
