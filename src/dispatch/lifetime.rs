//! Handlers of `/env extend` and `/env keep`, and the approval of lifetime
//! requests. Extensions within the limits are granted at once; beyond them, and
//! `keep` always, they go through the usual approval flow.

use super::{Call, Dispatcher};
use crate::chat::{render, Reply};
use crate::domain::lifetime::{self, Extension};
use crate::store::envs::{ApprovalRecord, EnvRecord};
use crate::store::lifetimes::{LifetimeDecided, LifetimeDecision};
use crate::store::StoreError;
use std::time::Duration;

impl Dispatcher {
    /// The tighter of the profile's and the team's longest lifetime.
    fn max_lifetime(&self, env: &EnvRecord) -> Duration {
        let profile = self
            .catalog
            .profile(&env.profile)
            .map(|p| p.ttl_max)
            .unwrap_or(Duration::MAX);
        let team = self
            .config
            .team(&env.team)
            .and_then(|t| t.quota.max_ttl)
            .unwrap_or(Duration::MAX);
        profile.min(team)
    }

    /// Sets a new expiry and reschedules the reminders.
    async fn set_lifetime(
        &self,
        env: &EnvRecord,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.store.set_expiry(env.id, expires_at).await?;
        self.schedule_lifetime(env, expires_at).await
    }

    /// Reminders for the expiry an environment now has (none: it never expires).
    async fn schedule_lifetime(
        &self,
        env: &EnvRecord,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        match expires_at {
            Some(at) => {
                let now = self.clock.now();
                let schedule =
                    lifetime::reminder_schedule(at, &self.config.lifetimes.reminders, now);
                self.store.schedule_reminders(env.id, schedule).await?;
            }
            None => self.store.skip_env_reminders(env.id).await?,
        }
        self.schedule.notify_one();
        Ok(())
    }

    async fn owned_live_env(
        &self,
        call: &Call<'_>,
    ) -> Result<Result<EnvRecord, Reply>, StoreError> {
        let env = match self.visible_env(call).await? {
            Ok(e) => e,
            Err(reply) => return Ok(Err(reply)),
        };
        if let Err(refusal) = call.may_act_on(&env, "change its lifetime") {
            return Ok(Err(refusal));
        }
        if !matches!(
            env.state,
            crate::domain::lifecycle::EnvState::Ready | crate::domain::lifecycle::EnvState::Stopped
        ) {
            return Ok(Err(Reply::private(format!(
                "⚠️ {} is {}, so its lifetime cannot change now",
                env.name, env.state
            ))));
        }
        Ok(Ok(env))
    }

    pub(super) async fn env_extend(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let env = match self.owned_live_env(call).await? {
            Ok(e) => e,
            Err(reply) => return Ok(reply),
        };
        let by = call.duration("by").unwrap_or_default();
        if by.is_zero() {
            return Ok(Reply::private("⚠️ by: must be longer than zero"));
        }
        let now = self.clock.now();
        let Some(expires_at) = env.expires_at else {
            return Ok(Reply::private(format!(
                "{} has no expiry; there is nothing to extend",
                env.name
            )));
        };
        match lifetime::extend(now, expires_at, by, self.max_lifetime(&env)) {
            Extension::Granted(at) => {
                self.set_lifetime(&env, Some(at)).await?;
                self.store
                    .audit(
                        call.actor().key(),
                        call.spec.action.name().into(),
                        env.name.clone(),
                        "extended".into(),
                        format!("by {}", render::duration(by)),
                    )
                    .await?;
                Ok(Reply::public(format!(
                    "⏳ {} now expires {}.",
                    env.name,
                    render::relative(Some(at), now)
                )))
            }
            Extension::NeedsApproval { new_expiry, limit } => {
                let why = format!(
                    "extending {} by {} would leave {} of lifetime, more than the maximum of {}",
                    env.name,
                    render::duration(by),
                    render::duration(Duration::from_secs((new_expiry - now).max(0) as u64)),
                    render::duration(limit)
                );
                let id = self
                    .store
                    .request_lifetime(
                        &env,
                        call.actor().key(),
                        "extend",
                        Some(by.as_secs() as i64),
                        why.clone(),
                        call.inbound.reply_to.to_json(),
                    )
                    .await?;
                Ok(Reply {
                    text: format!("🕓 Request #{id}: {why}. A team admin decides with /approve {id} or /deny {id} <reason>."),
                    approval: Some(id),
                    ..Reply::default()
                })
            }
        }
    }

    pub(super) async fn env_keep(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let env = match self.owned_live_env(call).await? {
            Ok(e) => e,
            Err(reply) => return Ok(reply),
        };
        let why = format!("keep {} with no expiry", env.name);
        let id = self
            .store
            .request_lifetime(
                &env,
                call.actor().key(),
                "keep",
                None,
                why.clone(),
                call.inbound.reply_to.to_json(),
            )
            .await?;
        Ok(Reply {
            text: format!(
                "🕓 Request #{id}: {why} needs a team admin: /approve {id} or /deny {id} <reason>."
            ),
            approval: Some(id),
            ..Reply::default()
        })
    }

    /// Approves an extension or a keep; Ok(None) if it was decided already.
    pub(super) async fn approve_lifetime(
        &self,
        call: &Call<'_>,
        a: &ApprovalRecord,
    ) -> Result<Reply, StoreError> {
        let now = self.clock.now();
        let decision = if a.kind == "keep" {
            LifetimeDecision::Keep
        } else {
            LifetimeDecision::Extend { now }
        };
        self.decide_lifetime(call, a, decision).await
    }

    pub(super) async fn deny_lifetime(
        &self,
        call: &Call<'_>,
        a: &ApprovalRecord,
        reason: String,
    ) -> Result<Reply, StoreError> {
        self.decide_lifetime(call, a, LifetimeDecision::Deny(reason))
            .await
    }

    async fn decide_lifetime(
        &self,
        call: &Call<'_>,
        a: &ApprovalRecord,
        decision: LifetimeDecision,
    ) -> Result<Reply, StoreError> {
        let actor = call.actor();
        let reason = match &decision {
            LifetimeDecision::Deny(r) => r.clone(),
            _ => String::new(),
        };
        let decided = self
            .store
            .decide_lifetime(a.id, actor.key(), decision)
            .await?;
        let env = self.store.env(a.env_id).await?;
        let name = env.as_ref().map(|e| e.name.clone()).unwrap_or_default();
        Ok(match decided {
            LifetimeDecided::Void { name, env_state } => {
                Reply::private(render::void_request(a.id, &name, &env_state))
            }
            LifetimeDecided::AlreadyDecided => {
                Reply::private(format!("Request #{} was already decided.", a.id))
            }
            LifetimeDecided::Denied => Reply::public(format!(
                "🚫 Request #{} denied by {}: {reason}",
                a.id, actor.display
            )),
            LifetimeDecided::Approved { expires_at } => {
                if let Some(env) = &env {
                    self.schedule_lifetime(env, expires_at).await?;
                }
                let now = self.clock.now();
                Reply::public(match expires_at {
                    None => format!(
                        "✅ Request #{} approved by {}: {name} is kept with no expiry.",
                        a.id, actor.display
                    ),
                    Some(at) => format!(
                        "✅ Request #{} approved by {}: {name} now expires {}.",
                        a.id,
                        actor.display,
                        render::relative(Some(at), now)
                    ),
                })
            }
        })
    }
}
