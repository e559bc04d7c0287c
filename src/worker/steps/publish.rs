//! The publishing steps: an HTTP route to the environment's domain, its A
//! record and its monitoring target — and their removal, which is also the
//! compensation of each. Every call is idempotent, so a resumed or repeated
//! step does no harm; everything is named after the environment's id or domain.

use super::{JobRun, StepCx, StepError};
use crate::domain::domain_name::Domain;
use crate::domain::lifecycle::StepState;
use crate::domain::names::EnvName;
use crate::provider::publish::{PublishError, Route, Target};
use std::time::Duration;

impl From<PublishError> for StepError {
    fn from(e: PublishError) -> Self {
        StepError(e.to_string())
    }
}

impl StepCx<'_> {
    fn domain(&self, run: &JobRun) -> Result<Option<Domain>, StepError> {
        let Some(raw) = run.env.domain.as_deref() else {
            return Ok(None);
        };
        Domain::parse(raw, &self.config.publish.zones)
            .map(Some)
            .map_err(|e| StepError(format!("the stored domain is no longer valid: {e}")))
    }

    fn target(&self, run: &JobRun) -> Result<Target, StepError> {
        Ok(Target {
            env_id: run.env.id,
            env_name: EnvName::parse(&run.env.name).map_err(|e| StepError(e.0))?,
            team: run.env.team.clone(),
            profile: run.env.profile.clone(),
            address: self.address(run)?,
        })
    }

    /// Runs a publishing call, retrying transient failures a bounded number of times.
    async fn publishing<F, Fut>(&self, mut call: F) -> Result<(), StepError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), PublishError>>,
    {
        let mut wait = Duration::from_millis(200);
        for attempt in 0..=self.config.proxmox.write_retries {
            match call().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < self.config.proxmox.write_retries => {
                    tracing::info!(error = %e, attempt, "transient publishing error; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Publishes the route to the environment's domain. `port` is the one an
    /// app step routes to (blue-green); else the app's serving port or the
    /// profile's exposed one.
    pub(super) async fn publish_route(
        &self,
        run: &mut JobRun,
        port: Option<u16>,
    ) -> Result<StepState, StepError> {
        let (Some(router), Some(domain)) = (self.publishers.router.as_deref(), self.domain(run)?)
        else {
            return Ok(StepState::Skipped);
        };
        let port = match port {
            Some(p) => p,
            None if run.env.is_app() => self.app_route_port(run).await?,
            None => self.profile(run)?.expose_port.ok_or_else(|| {
                StepError(format!(
                    "profile {} may not be exposed (no [expose] port)",
                    run.env.profile
                ))
            })?,
        };
        let t = self.target(run)?;
        let route = Route {
            env_id: t.env_id,
            env_name: t.env_name,
            team: t.team,
            profile: t.profile,
            domain,
            address: t.address,
            port,
        };
        self.publishing(|| router.publish(&route)).await?;
        Ok(StepState::Done)
    }

    /// Removes the route; also the compensation of `publish_route`.
    pub(super) async fn unpublish_route(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let (Some(router), Some(domain)) = (self.publishers.router.as_deref(), self.domain(run)?)
        else {
            return Ok(StepState::Skipped);
        };
        let id = run.env.id;
        self.publishing(|| router.unpublish(id, &domain)).await?;
        Ok(StepState::Done)
    }

    pub(super) async fn register_dns(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let (Some(dns), Some(domain)) = (self.publishers.dns.as_deref(), self.domain(run)?) else {
            return Ok(StepState::Skipped);
        };
        let routed = self.config.publish.router.is_some();
        let address = if routed {
            None
        } else {
            Some(self.address(run)?)
        };
        let target = self.config.publish.dns_target(address).ok_or_else(|| {
            StepError(
                "publish.dns.ingress is not set, so there is nothing to point the name at; \
                 set it to the Traefik/Caddy host's address or name"
                    .into(),
            )
        })?;
        self.publishing(|| dns.upsert(&domain, &target)).await?;
        Ok(StepState::Done)
    }

    /// Removes the record; also the compensation of `register_dns`.
    pub(super) async fn remove_dns(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let (Some(dns), Some(domain)) = (self.publishers.dns.as_deref(), self.domain(run)?) else {
            return Ok(StepState::Skipped);
        };
        self.publishing(|| dns.delete(&domain)).await?;
        Ok(StepState::Done)
    }

    pub(super) async fn add_monitoring(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let Some(monitor) = self.publishers.monitor.as_deref() else {
            return Ok(StepState::Skipped);
        };
        let target = self.target(run)?;
        self.publishing(|| monitor.add_target(&target)).await?;
        Ok(StepState::Done)
    }

    /// Removes the monitoring target; also the compensation of `add_monitoring`.
    pub(super) async fn remove_monitoring(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let Some(monitor) = self.publishers.monitor.as_deref() else {
            return Ok(StepState::Skipped);
        };
        let id = run.env.id;
        self.publishing(|| monitor.remove_target(id)).await?;
        Ok(StepState::Done)
    }
}
