//! Post-provisioning: the profile's commands, run with the environment's
//! values (and, for docker-host profiles, dockerd's certificate files, which
//! live as long as the step). Nothing to undo: it changed only the guest.

use super::{JobRun, StepCx, StepError};
use crate::domain::lifecycle::StepState;
use crate::provider::command::{self, StepValues};
use crate::provider::docker::server_cert::{self, IssuedFiles};

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
}
