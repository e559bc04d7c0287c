//! The one pipeline from an [`Inbound`] chat event to a decision and a reply,
//! the same for every platform: parse with the catalog → find the actor's team
//! and check the command's permission → per-user rate limit → the command's
//! handler (policy, store transaction) → [`Reply`]. Nothing here knows which
//! chat platform the event came from.

mod access;
mod admin;
mod app;
mod env;
mod keys;
mod lifetime;

use crate::catalog::command::{Action, CommandSpec, Invocation, OptionKind as Kind, Permission};
use crate::catalog::Catalog;
use crate::chat::{Inbound, Reply};
use crate::config::Config;
use crate::domain::lifecycle::JobKind;
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

/// A handler's reads of its options: only those its action declares (in
/// debug builds a read of any other is caught; see [`Invocation::declared`]).
impl<'a> Call<'a> {
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.inv
            .declared(name, &[Kind::String, Kind::Choice])
            .str(name)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.inv.declared(name, &[Kind::Integer]).int(name)
    }

    pub fn strs(&self, name: &str) -> Vec<&'a str> {
        self.inv.declared(name, &[Kind::String]).strs(name)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.inv.declared(name, &[Kind::Boolean]).flag(name)
    }

    pub fn duration(&self, name: &str) -> Option<std::time::Duration> {
        self.inv.declared(name, &[Kind::Duration]).duration(name)
    }
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
        // Everything anyone can send is limited, before any parse or write.
        if let Err(not_until) = self.limiter.check_key(&inbound.actor.key()) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return Reply::private(crate::chat::render::slow_down(
                self.config.policy.rate_burst,
                self.config.policy.rate_per_minute,
                wait,
            ));
        }
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
                    spec.action.name().into(),
                    spec.display_path(),
                    "refused".into(),
                    refusal.clone(),
                )
                .await;
            return Reply::private(format!("⛔ {refusal}"));
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
            call.spec.action,
            Action::ApprovalApprove | Action::ApprovalDeny
        ) || (reply.private && reply.job.is_none())
        {
            return;
        }
        let Some(id) = call.int("id") else {
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

    /// Runs the action's handler. Exhaustive, with no fallback: a new
    /// [`Action`] does not compile until it has a handler here.
    async fn route(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        use Action::*;
        match call.spec.action {
            Help => Ok(Reply::private(crate::chat::render::help(&self.catalog))),
            Profiles => Ok(Reply::private(crate::chat::render::profiles(
                &self.catalog.profiles,
            ))),
            EnvCreate => self.env_create(call).await,
            EnvList => self.env_list(call).await,
            EnvInfo => self.env_info(call).await,
            EnvStart => self.env_lifecycle(call, JobKind::Start).await,
            EnvStop => self.env_lifecycle(call, JobKind::Stop).await,
            EnvRestart => self.env_lifecycle(call, JobKind::Restart).await,
            EnvDestroy => self.env_lifecycle(call, JobKind::Destroy).await,
            EnvExtend => self.env_extend(call).await,
            EnvKeep => self.env_keep(call).await,
            AppDeploy => self.app_deploy(call).await,
            AppList => self.app_list(call).await,
            AppInfo => self.app_info(call).await,
            AppLogs => self.app_logs(call).await,
            AppRestart => self.app_job(call, JobKind::Restart).await,
            AppStop => self.app_job(call, JobKind::Stop).await,
            AppStart => self.app_job(call, JobKind::Start).await,
            AppUpdate => self.app_job(call, JobKind::Update).await,
            AppRemove => self.app_job(call, JobKind::Destroy).await,
            Quota => self.quota(call).await,
            Jobs => self.jobs(call).await,
            Job => self.job(call).await,
            ApprovalApprove => self.approve(call).await,
            ApprovalDeny => self.deny(call).await,
            KeysAdd => self.keys_add(call).await,
            KeysList => self.keys_list(call).await,
            KeysRemove => self.keys_remove(call).await,
            EnvAccessAdd => self.env_access(call, true).await,
            EnvAccessRemove => self.env_access(call, false).await,
        }
    }
}
