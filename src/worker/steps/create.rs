//! The create step and what it needs: a static address from the team's
//! pool, a VMID from the team's range (reserved in the database before the
//! create is sent), the container spec from the profile, and the create
//! itself — which first looks whether an earlier attempt already made the
//! container (its task id saved, or a container with this environment's tag).

use super::data::{AllocateIpData, CreateGuestData};
use super::guest::{env_tag, team_tag, OWNER_TAG};
use super::{JobRun, StepCx, StepError};
use crate::domain::lifecycle::StepState;
use crate::provider::{ContainerSpec, ErrorKind};
use std::time::Duration;

impl StepCx<'_> {
    pub(super) async fn allocate_ip(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let team = self
            .config
            .team(&run.env.team)
            .ok_or_else(|| StepError(format!("team {} is no longer configured", run.env.team)))?;
        let pool = team
            .ip_pool
            .as_ref()
            .ok_or_else(|| StepError(format!("team {} has no ip_pool", team.name)))?;
        let foreign = self.foreign_addresses().await?;
        let candidates: Vec<String> = pool
            .addresses()
            .filter(|a| *a != pool.gateway && !foreign.contains(a))
            .map(|a| a.to_string())
            .collect();
        let Some(addr) = self
            .store
            .allocate_ip(run.env.id, team.name.0.clone(), candidates)
            .await?
        else {
            return Err(StepError(format!(
                "team {}'s address pool {}-{} is used up; destroy an environment or ask an admin to widen it",
                team.name, pool.first, pool.last
            )));
        };
        run.set_data(
            i,
            &AllocateIpData {
                address: Some(addr.clone()),
            },
        );
        self.store
            .set_address(run.env.id, Some(addr.clone()))
            .await?;
        run.env.address = Some(addr);
        Ok(StepState::Done)
    }

    /// The static addresses of guests Slipway did not make (no owner tag):
    /// the pool never hands one of them out. Their configs are read a few
    /// at a time.
    async fn foreign_addresses(&self) -> Result<Vec<std::net::Ipv4Addr>, StepError> {
        let guests = self.compute.guests().await?;
        let foreign: Vec<_> = guests
            .into_iter()
            .filter(|g| !g.tags.iter().any(|t| t == OWNER_TAG))
            .collect();
        let mut addresses = Vec::new();
        for chunk in foreign.chunks(8) {
            let reads = chunk.iter().map(|g| self.compute.static_addresses(g));
            for list in futures_util::future::try_join_all(reads).await? {
                addresses.extend(list);
            }
        }
        Ok(addresses)
    }

    /// Picks the lowest VMID of the team's range that neither the database nor
    /// the cluster uses, and reserves it in the database.
    async fn allocate_vmid(&self, run: &mut JobRun, skip: &[u32]) -> Result<u32, StepError> {
        let team = self
            .config
            .team(&run.env.team)
            .ok_or_else(|| StepError(format!("team {} is no longer configured", run.env.team)))?;
        let mut taken: Vec<u32> = self
            .guest_ids
            .get(self.compute)
            .await?
            .guests
            .iter()
            .map(|g| g.vmid)
            .collect();
        taken.extend_from_slice(skip);
        if let Some(vmid) = self
            .store
            .reserve_free_vmid(run.env.id, team.vmids.0, team.vmids.1, taken)
            .await?
        {
            run.env.vmid = Some(vmid);
            return Ok(vmid);
        }
        Err(StepError(format!(
            "team {}'s VMID range {}-{} has no free id; destroy an environment or ask an admin to widen it",
            team.name, team.vmids.0, team.vmids.1
        )))
    }

    /// The keys that may log in as root: the owner's (`/keys add`), the
    /// team's (configuration) and Slipway's own provisioning key.
    async fn login_keys(&self, run: &JobRun) -> Result<Vec<String>, StepError> {
        let mut keys: Vec<String> = self
            .store
            .ssh_keys(run.env.owner.clone())
            .await?
            .into_iter()
            .map(|k| k.line)
            .collect();
        if let Some(team) = self.config.team(&run.env.team) {
            keys.extend(team.ssh_keys.iter().map(|k| k.line.clone()));
        }
        keys.push(self.ssh_identity.public_line.clone());
        // A key both the owner and the team hold goes in once, where it came first.
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        Ok(keys)
    }

    fn spec(&self, run: &JobRun, vmid: u32) -> Result<ContainerSpec, StepError> {
        let p = self.profile(run)?;
        let team = self.config.team(&run.env.team);
        let mut net0 = format!(
            "name=eth0,bridge={},firewall={},hwaddr={}",
            p.network.bridge,
            u8::from(p.network.firewall),
            crate::domain::mac::mac_of(&run.env)
        );
        if let Some(vlan) = p.network.vlan {
            net0.push_str(&format!(",tag={vlan}"));
        }
        match (&run.env.address, team.and_then(|t| t.ip_pool.as_ref())) {
            (Some(addr), Some(pool)) if p.network.ip == crate::catalog::profile::IpMode::Pool => {
                net0.push_str(&format!(
                    ",ip={addr}/{},gw={}",
                    pool.prefix_len, pool.gateway
                ));
            }
            _ => net0.push_str(",ip=dhcp"),
        }
        let storage = p
            .storage
            .clone()
            .or_else(|| self.config.proxmox.storages.first().cloned())
            .unwrap_or_default();
        Ok(ContainerSpec {
            node: run.env.node.clone(),
            vmid,
            hostname: run.env.name.clone(),
            ostemplate: p.ostemplate.clone(),
            storage,
            disk_gb: run.env.resources.disk_gb,
            cores: run.env.resources.cores,
            memory_mb: run.env.resources.memory_mb,
            swap_mb: run.env.resources.swap_mb,
            unprivileged: p.unprivileged,
            features: p.features.clone(),
            onboot: p.onboot,
            net0,
            tags: vec![OWNER_TAG.into(), env_tag(run.env.id), team_tag(&run.env.team)],
            pool: self.config.proxmox.pool.clone(),
            ssh_public_keys: Vec::new(),
            nameserver: join_nonempty(&p.network.nameserver),
            searchdomain: join_nonempty(&p.network.searchdomain),
            description: format!(
                "Managed by Slipway: environment {} (id {}), team {}, profile {}. Do not edit by hand.",
                run.env.name, run.env.id, run.env.team, run.env.profile
            ),
        })
    }

    pub(super) async fn create_container(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let timeout = self.config.proxmox.task_timeout;
        let mut skip: Vec<u32> = Vec::new();
        // Ids Proxmox said were taken, though this token could not see them.
        let mut taken: Vec<u32> = Vec::new();
        let mut backoff = self.backoff();
        // Whether any create request so far may have made a container.
        let mut acted = false;
        let data: CreateGuestData = run.data(i)?;
        if data.task.is_none() && data.sent != Some(true) {
            self.place_elsewhere(run, None).await?;
        }
        for _ in 0..20 + self.config.proxmox.write_retries {
            let (vmid, fresh) = match run.env.vmid {
                Some(v) => (v, false),
                None => (self.allocate_vmid(run, &skip).await?, true),
            };
            let mut data: CreateGuestData = run.data(i)?;
            data.vmid = Some(vmid);
            run.set_data(i, &data);
            if let Some(task) = data.task {
                // A create was sent before (perhaps before a restart): wait for it.
                self.compute.wait(&task, timeout).await?;
                return Ok(StepState::Done);
            }
            // An id allocated just now was free in the cluster's listing, so
            // only a reserved one (from before a restart, or one Proxmox said
            // was taken) is looked at first. A token limited to Slipway's pool
            // may not see an id outside it (403): then it is not ours, and
            // create itself says if it is taken.
            let existing = if fresh {
                None
            } else {
                match self.compute.config(&run.env.node, vmid).await {
                    Ok(c) => c,
                    Err(e) if e.kind() == ErrorKind::Forbidden => None,
                    Err(e) => return Err(e.into()),
                }
            };
            match existing {
                Some(cfg) if cfg.tags.contains(&env_tag(run.env.id)) => {
                    // Created before a crash, before its task id was saved.
                    if self.wait_unlocked(run, vmid, timeout).await? {
                        return Ok(StepState::Done);
                    }
                    return Err(StepError(format!(
                        "CT {vmid} disappeared while it was being created"
                    )));
                }
                Some(cfg) if cfg.lock.as_deref() == Some("create") => {
                    // Being created right now: its config shows no tags until the
                    // task ends. It may be our own request from before a restart.
                    self.wait_unlocked(run, vmid, timeout).await?;
                    continue;
                }
                None if taken.contains(&vmid) => {
                    skip.push(vmid);
                    self.clear_vmid(run).await?;
                    continue;
                }
                Some(_) => {
                    self.store
                        .log(
                            run.job.id,
                            "warn",
                            format!("CT {vmid} exists and is not ours; trying the next id"),
                        )
                        .await?;
                    skip.push(vmid);
                    self.clear_vmid(run).await?;
                    continue;
                }
                None => {}
            }
            let spec = ContainerSpec {
                ssh_public_keys: self.login_keys(run).await?,
                ..self.spec(run, vmid)?
            };
            // Written ahead: a rollback after a crash mid-request looks for the container.
            self.mark_sent(run, i, Some(true)).await?;
            let sent = self.compute.create(&spec).await;
            if let Err(e) = &sent {
                acted |= e.may_have_acted();
                self.mark_sent(run, i, Some(acted)).await?;
            }
            match sent {
                Ok(task) => {
                    run.set_data(
                        i,
                        &CreateGuestData {
                            vmid: Some(vmid),
                            task: Some(task.clone()),
                            sent: Some(true),
                        },
                    );
                    self.checkpoint(run, i).await?;
                    self.compute.wait(&task, timeout).await?;
                    return Ok(StepState::Done);
                }
                Err(e) if e.is_already_exists() => {
                    // /cluster/nextid reserves nothing: someone took it meanwhile — or
                    // our own earlier request did. The next round looks whose it is.
                    self.store
                        .log(run.job.id, "warn", format!("{e}; looking whose it is"))
                        .await?;
                    taken.push(vmid);
                }
                // Nothing was written and the node did not answer: another one may.
                Err(e)
                    if !acted
                        && e.node_unreachable()
                        && self.place_elsewhere(run, Some(e.to_string())).await? => {}
                // The loop looks again whether the container exists before it creates it again.
                Err(e) if backoff.retry(&e).await => {
                    self.store
                        .log(run.job.id, "warn", format!("{e}; trying again"))
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StepError(
            "gave up after 20 VMIDs were taken by others while trying".into(),
        ))
    }

    /// Undoes a create: a create still running after a restart ends first;
    /// then the container is stopped (if a later step started it) and deleted.
    pub(super) async fn undo_create_container(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<(), StepError> {
        let data = run.data::<CreateGuestData>(i)?;
        if let Some(task) = data.task {
            let _ = self
                .compute
                .wait(&task, self.config.proxmox.task_timeout)
                .await;
        } else if data.sent == Some(false) {
            self.store
                .log(
                    run.job.id,
                    "info",
                    "no create request reached Proxmox, so there is no container to remove".into(),
                )
                .await?;
            return Ok(());
        }
        if run.env.vmid.is_some() {
            self.shut_down(run, i).await?;
            self.delete_container(run, i).await?;
        }
        Ok(())
    }

    /// Undoes `allocate_ip`: the address goes back to the team's pool.
    pub(super) async fn undo_allocate_ip(&self, run: &mut JobRun) -> Result<(), StepError> {
        self.store.release_ips(run.env.id).await?;
        Ok(())
    }

    /// Before anything is written: moves a create whose node is offline (as
    /// `/cluster/resources` says) or did not answer (`why`) to the configured
    /// node with the fewest live environments among those online. False when
    /// it stays: its node is fine, or no other node is online.
    async fn place_elsewhere(
        &self,
        run: &mut JobRun,
        why: Option<String>,
    ) -> Result<bool, StepError> {
        let cluster = self.guest_ids.get(self.compute).await?;
        let here = run.env.node.clone();
        if why.is_none() && !cluster.offline(&here) {
            return Ok(false);
        }
        let counts = self.store.live_per_node().await?;
        let Some(there) = self
            .config
            .proxmox
            .nodes
            .iter()
            .filter(|n| **n != here && cluster.online(n))
            .min_by_key(|n| counts.get(*n).copied().unwrap_or(0))
            .cloned()
        else {
            return Ok(false);
        };
        let why = why.unwrap_or_else(|| format!("{here} is offline"));
        self.store.set_node(run.env.id, there.clone()).await?;
        self.store
            .log(
                run.job.id,
                "warn",
                crate::chat::render::placed_elsewhere(&here, &there, &why),
            )
            .await?;
        run.env.node = there;
        Ok(true)
    }

    /// Records in the journal whether a create request may have made the container.
    async fn mark_sent(
        &self,
        run: &mut JobRun,
        i: usize,
        sent: Option<bool>,
    ) -> Result<(), StepError> {
        let mut data: CreateGuestData = run.data(i)?;
        data.sent = sent;
        run.set_data(i, &data);
        self.checkpoint(run, i).await?;
        Ok(())
    }

    async fn clear_vmid(&self, run: &mut JobRun) -> Result<(), StepError> {
        run.env.vmid = None;
        self.store.clear_vmid(run.env.id).await?;
        Ok(())
    }

    /// Waits until the container's config lock is released: true if it is
    /// there then, false if it vanished (its create failed). A lock that
    /// outlives the task timeout is stale: reported, not waited on for ever.
    pub(super) async fn wait_unlocked(
        &self,
        run: &JobRun,
        vmid: u32,
        timeout: Duration,
    ) -> Result<bool, StepError> {
        let started = std::time::Instant::now();
        loop {
            match self.compute.config(&run.env.node, vmid).await? {
                Some(cfg) if cfg.lock.is_some() => {
                    if started.elapsed() > timeout {
                        return Err(StepError(format!(
                            "CT {vmid} stayed locked ({}) for {}; the lock looks stale: check the task log in Proxmox and `pct unlock {vmid}`",
                            cfg.lock.unwrap_or_default(),
                            crate::chat::render::duration(timeout)
                        )));
                    }
                }
                Some(_) => return Ok(true),
                None => return Ok(false),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The items space-separated, as PVE's `nameserver` and `searchdomain` take
/// them; `None` for none.
fn join_nonempty<T: std::fmt::Display>(items: &[T]) -> Option<String> {
    (!items.is_empty()).then(|| items.iter().map(T::to_string).collect::<Vec<_>>().join(" "))
}
