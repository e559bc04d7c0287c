//! The one pipeline from an [`Inbound`] chat event to a decision and a reply,
//! the same for every platform: parse with the catalog → find the actor's team
//! and check the command's permission → per-user rate limit → the command's
//! handler (policy, store transaction) → [`Reply`]. Nothing here knows which
//! chat platform the event came from.

mod admin;
mod app;
mod env;
mod keys;
mod lifetime;

use crate::catalog::command::{CommandSpec, Invocation, Permission};
use crate::catalog::Catalog;
use crate::chat::{Inbound, Reply};
use crate::config::Config;
use crate::domain::team::{teams_of, Actor, Team};
use crate::provider::Compute;
use crate::store::{Store, StoreError};
use governor::{DefaultKeyedRateLimiter, Quota as RateQuota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::Notify;

/// Everything a command handler may use.
pub struct Dispatcher {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    pub store: Store,
    pub compute: Arc<dyn Compute>,
    /// Wakes the workers when a job was queued.
    pub wake: Arc<Notify>,
    /// Wakes the scheduler when an expiry changed.
    pub schedule: Arc<Notify>,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Docker hosts for apps (live state and logs).
    pub docker: Arc<crate::provider::docker::DockerHosts>,
    /// Every decided request, for the adapters to edit their cards.
    pub decisions: crate::chat::DecisionBus,
    limiter: DefaultKeyedRateLimiter<String>,
}

/// A handler's context: who asks, what they typed, where it came from.
pub(crate) struct Call<'a> {
    pub inbound: &'a Inbound,
    pub spec: &'a CommandSpec,
    pub inv: &'a Invocation,
    pub teams: Vec<&'a Team>,
}

impl Call<'_> {
    pub fn actor(&self) -> &Actor {
        &self.inbound.actor
    }

    /// Only an environment's owner or an admin of its team may act on it.
    pub fn may_act_on(&self, env: &crate::store::envs::EnvRecord, what: &str) -> Result<(), Reply> {
        let actor = self.actor();
        let team_admin = self
            .teams
            .iter()
            .any(|t| t.name.0 == env.team && t.is_admin(actor));
        if env.owner == actor.key() || team_admin {
            return Ok(());
        }
        Err(Reply::private(format!(
            "⛔ {} belongs to {}; only its owner or an admin of team {} may {what}",
            env.name, env.owner_display, env.team
        )))
    }
}

impl Dispatcher {
    pub fn new(
        config: Arc<Config>,
        catalog: Arc<Catalog>,
        store: Store,
        compute: Arc<dyn Compute>,
        wake: Arc<Notify>,
        schedule: Arc<Notify>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Self {
        let per_minute = NonZeroU32::new(config.policy.rate_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.policy.rate_burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(RateQuota::per_minute(per_minute).allow_burst(burst));
        let docker = Arc::new(crate::provider::docker::DockerHosts::new(
            config.docker.clone(),
        ));
        Dispatcher {
            docker,
            decisions: tokio::sync::broadcast::channel(256).0,
            config,
            catalog,
            store,
            compute,
            wake,
            schedule,
            clock,
            limiter,
        }
    }

    /// Handles one chat command and returns the reply. Never panics on user input;
    /// an internal failure is logged in full and answered with a short apology.
    pub async fn handle(&self, inbound: &Inbound) -> Reply {
        let (spec, inv) = match self.catalog.parse(&inbound.text) {
            Ok(parsed) => parsed,
            Err(e) => return Reply::private(format!("⚠️ {e}")),
        };
        let teams = teams_of(&self.config.teams, &inbound.actor);
        if let Err(refusal) = self.permitted(&spec, &inbound.actor, &teams) {
            let _ = self
                .store
                .audit(
                    inbound.actor.key(),
                    spec.action.clone(),
                    spec.display_path(),
                    "refused".into(),
                    refusal.clone(),
                )
                .await;
            return Reply::private(format!("⛔ {refusal}"));
        }
        if spec.permission != Permission::Anyone {
            if let Err(not_until) = self.limiter.check_key(&inbound.actor.key()) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                return Reply::private(format!(
                    "🐢 Slow down: you may send {} commands a minute. Try again in {}s.",
                    self.config.policy.rate_per_minute,
                    wait.as_secs().max(1)
                ));
            }
        }
        let call = Call {
            inbound,
            spec: &spec,
            inv: &inv,
            teams,
        };
        match self.route(&call).await {
            Ok(reply) => {
                self.publish_decision(&call, &reply).await;
                reply
            }
            Err(e) => {
                tracing::error!(error = %e, command = %spec.display_path(), "command failed");
                Reply::private("💥 Slipway could not complete that because of an internal error; the operator's log has the details. Nothing was changed by the failed part; try again.")
            }
        }
    }

    /// After `/approve` or `/deny`: if this call decided the request (it is
    /// no longer pending, and decided by this actor, and the answer is
    /// public), tells the adapters. A second click gets a private "already
    /// decided" and publishes nothing.
    async fn publish_decision(&self, call: &Call<'_>, reply: &Reply) {
        if !matches!(
            call.spec.action.as_str(),
            "approval.approve" | "approval.deny"
        ) || (reply.private && reply.job.is_none())
        {
            return;
        }
        let Some(id) = call.inv.int("id") else {
            return;
        };
        let actor = call.actor();
        let decided_here = matches!(
            self.store.approval(id).await,
            Ok(Some(a)) if a.state != "pending" && a.decided_by.as_deref() == Some(actor.key().as_str())
        );
        if decided_here {
            // Err: no adapter is listening (the console alone).
            let _ = self.decisions.send(crate::chat::Decision {
                approval: id,
                by: actor.clone(),
                text: reply.text.clone(),
                decided_in: call.inbound.reply_to.clone(),
            });
        }
    }

    fn permitted(&self, spec: &CommandSpec, actor: &Actor, teams: &[&Team]) -> Result<(), String> {
        match spec.permission {
            Permission::Anyone => Ok(()),
            Permission::Member if !teams.is_empty() => Ok(()),
            Permission::Admin if teams.iter().any(|t| t.is_admin(actor)) => Ok(()),
            Permission::Member => Err(format!(
                "{} is not in any team, so {} is not available; ask an admin to bind one of your {} roles to a team",
                actor.display,
                spec.display_path(),
                actor.platform
            )),
            Permission::Admin => Err(format!("{} is for team admins only", spec.display_path())),
        }
    }

    async fn route(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        match call.spec.action.as_str() {
            "help" => Ok(Reply::private(crate::chat::render::help(&self.catalog))),
            "profiles" => Ok(Reply::private(crate::chat::render::profiles(&self.catalog.profiles))),
            "env.create" => self.env_create(call).await,
            "env.list" => self.env_list(call).await,
            "env.info" => self.env_info(call).await,
            "env.start" | "env.stop" | "env.restart" | "env.destroy" => self.env_lifecycle(call).await,
            "env.extend" => self.env_extend(call).await,
            "env.keep" => self.env_keep(call).await,
            "app.deploy" => self.app_deploy(call).await,
            "app.list" => self.app_list(call).await,
            "app.info" => self.app_info(call).await,
            "app.logs" => self.app_logs(call).await,
            "app.restart" | "app.stop" | "app.start" | "app.update" | "app.remove" => {
                self.app_job(call).await
            }
            "quota" => self.quota(call).await,
            "jobs" => self.jobs(call).await,
            "job" => self.job(call).await,
            "approval.approve" => self.approve(call).await,
            "approval.deny" => self.deny(call).await,
            "keys.add" => self.keys_add(call).await,
            "keys.list" => self.keys_list(call).await,
            "keys.remove" => self.keys_remove(call).await,
            other => Ok(Reply::private(format!(
                "⚠️ {} is defined in {} with action '{other}', which this Slipway does not know; fix the command file",
                call.spec.display_path(),
                self.catalog.groups.iter().find(|g| g.name == call.spec.path[0]).map(|g| g.file.as_str()).unwrap_or("commands/")
            ))),
        }
    }
}
