//! Addresses stay true: a ready environment whose guest now reports another
//! IPv4 address than the recorded one (a DHCP lease that changed) gets the new
//! address recorded and a `readdress` job that moves its route, DNS record and
//! monitoring target there; its thread is told. A readdress that failed is
//! queued again on later passes, up to [`READDRESS_ATTEMPTS`] in a row.

use super::{Pass, ReconcileError, Reconciler};
use crate::chat::render;
use crate::domain::lifecycle::{plan, CreateOptions, EnvState, JobKind, JobState};
use crate::provider::Guest;
use crate::store::envs::EnvRecord;
use crate::store::jobs::{Enqueued, NewJob};

/// Readdress jobs in a row that may fail before the loop stops queueing them.
pub const READDRESS_ATTEMPTS: usize = 3;

impl Reconciler {
    /// Compares the address of every ready, running environment with what its
    /// guest reports. A guest that cannot be asked is skipped this time.
    pub(super) async fn check_addresses(
        &self,
        guests: &[Guest],
        envs: &[EnvRecord],
        pass: &mut Pass,
    ) -> Result<(), ReconcileError> {
        for env in envs {
            if env.is_app() || env.state != EnvState::Ready {
                continue;
            }
            let Some(vmid) = env.vmid else { continue };
            let Some(guest) = guests.iter().find(|g| g.vmid == vmid) else {
                continue;
            };
            if guest.status != "running" {
                continue;
            }
            let reported = match self.compute.addresses(&guest.node, vmid).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(env = %env.name, error = %e, "could not read the guest's addresses; trying again next pass");
                    continue;
                }
            };
            let Some(first) = reported.first() else {
                continue; // no lease right now: nothing to follow yet
            };
            let current = env.address.as_ref().filter(|a| reported.contains(a));
            let address = match current {
                Some(a) if self.retry_due(env).await? => a.clone(),
                Some(_) => continue,
                None => first.clone(),
            };
            if current.is_none() {
                self.store
                    .set_address(env.id, Some(address.clone()))
                    .await?;
            }
            if env.address.is_some() {
                let from = current
                    .is_none()
                    .then_some(env.address.as_deref())
                    .flatten();
                self.readdress(env, &address, from, pass).await?;
            }
        }
        Ok(())
    }

    /// Whether the environment's last readdress failed, and fewer than
    /// [`READDRESS_ATTEMPTS`] failed in a row.
    async fn retry_due(&self, env: &EnvRecord) -> Result<bool, ReconcileError> {
        let jobs = self
            .store
            .env_jobs(env.id, READDRESS_ATTEMPTS as i64)
            .await?;
        let failed = |j: &&crate::store::jobs::JobRecord| {
            j.kind == JobKind::Readdress && j.state == JobState::Failed
        };
        Ok(jobs.first().is_some_and(|j| failed(&j))
            && jobs.iter().take_while(|j| failed(j)).count() < READDRESS_ATTEMPTS)
    }

    /// Queues the job that moves what is published to `address`, and says so:
    /// as a change from `from`, or (None) as another try after a failure.
    async fn readdress(
        &self,
        env: &EnvRecord,
        address: &str,
        from: Option<&str>,
        pass: &mut Pass,
    ) -> Result<(), ReconcileError> {
        let last = self.store.env_jobs(env.id, 1).await?;
        let job = NewJob {
            kind: JobKind::Readdress,
            idempotency_key: format!(
                "readdress:{}:{address}:{}",
                env.id,
                last.first().map_or(0, |j| j.id)
            ),
            requested_by: "slipway:reconcile".into(),
            reply_to: env.announce_to_or_default(),
            steps: plan(JobKind::Readdress, &CreateOptions::default()),
        };
        const READY: &[EnvState] = &[EnvState::Ready];
        let Enqueued::Queued(job_id) = self.store.enqueue(env.id, READY, None, job).await? else {
            return Ok(()); // another job is on it; the next pass looks again
        };
        tracing::info!(env = %env.name, ?from, to = %address, job = job_id, "readdress queued");
        pass.readdressed.push(env.name.clone());
        self.workers.notify_waiters();
        let text = match from {
            Some(from) => render::address_changed(&env.name, from, address, job_id),
            None => render::readdress_retried(&env.name, address, job_id),
        };
        self.tell(env, text).await;
        Ok(())
    }
}
