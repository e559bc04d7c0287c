//! Post-provisioning: reaching the guest over SSH (its host key trusted on
//! first use), then the profile's commands, run with the environment's values
//! (and, for docker-host profiles, dockerd's certificate files, which live as
//! long as the step). Nothing to undo: they changed only the guest.

use super::{JobRun, StepCx, StepError};
use crate::domain::lifecycle::StepState;
use crate::provider::command::{self, SshValues, StepValues};
use crate::provider::docker::server_cert::{self, IssuedFiles};
use crate::provider::guest_ssh::{self, KnownHostsFile, Target};

impl StepCx<'_> {
    pub(super) async fn post_provision(
        &self,
        run: &mut JobRun,
        name: &str,
    ) -> Result<StepState, StepError> {
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
        // The guest's host key, checked (or, on first contact, learned) now:
        // the known_hosts file lives as long as the step.
        let known = if step.logs_in() {
            Some(KnownHostsFile::new(&self.known_hosts(run).await?).map_err(ssh_error)?)
        } else {
            None
        };
        let ssh = known.as_ref().map(|k| SshValues {
            user: self.config.provision.ssh_user.clone(),
            key_file: self.ssh_identity.private_file.display().to_string(),
            known_hosts: k.path().display().to_string(),
        });
        let values = StepValues {
            env_id: run.env.id,
            hostname: run.env.name.clone(),
            vmid: self.vmid(run)?,
            node: run.env.node.clone(),
            address: if step.uses("address") || step.logs_in() {
                Some(self.address(run)?.to_string())
            } else {
                run.env.address.clone()
            },
            team: run.env.team.clone(),
            profile: profile.name.clone(),
            packages: profile.packages.clone(),
            docker_tls: tls.as_ref().map(|t| t.values.clone()),
            ssh,
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
        drop(known);
        let _ = pump.await;
        result.map_err(|e| StepError(e.to_string()))?;
        Ok(StepState::Done)
    }

    /// Logs in with Slipway's key, waiting (`provision.ssh_wait`) for a new
    /// guest's sshd, and records the host key it presents at first contact.
    pub(super) async fn reach_ssh(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        if !self.config.provision.enabled {
            return Ok(StepState::Skipped);
        }
        self.known_hosts(run).await?;
        Ok(StepState::Done)
    }

    /// The guest's recorded host key as known_hosts lines, after checking that
    /// the guest still presents it; learned and recorded on first contact.
    async fn known_hosts(&self, run: &JobRun) -> Result<String, StepError> {
        let address = self.address(run)?.to_string();
        let address = address.as_str();
        let recorded = self.store.host_keys(run.env.id).await?;
        let target = Target {
            user: &self.config.provision.ssh_user,
            address,
            key_file: &self.ssh_identity.private_file,
        };
        let first_contact = recorded.is_none();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let reach = async move {
            guest_ssh::reach(
                &target,
                recorded.as_deref(),
                self.config.provision.ssh_wait,
                |n, why| {
                    let _ = tx.send(format!("ssh {address}: try {n}: {why}"));
                },
            )
            .await
        };
        let log = async {
            while let Some(line) = rx.recv().await {
                let _ = self.store.log(run.job.id, "info", line).await;
            }
        };
        let (learned, ()) = tokio::join!(reach, log);
        let learned = learned.map_err(ssh_error)?;
        if first_contact {
            let fingerprint = guest_ssh::preferred_fingerprint(&learned).unwrap_or_default();
            self.store
                .record_host_keys(run.env.id, learned.clone())
                .await?;
            self.store
                .log(
                    run.job.id,
                    "info",
                    format!("host key of {address} recorded at first contact: {fingerprint}"),
                )
                .await?;
        }
        Ok(learned)
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
}

fn ssh_error(e: guest_ssh::SshError) -> StepError {
    StepError(e.to_string())
}
