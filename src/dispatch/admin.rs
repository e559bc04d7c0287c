//! Handlers of `/approve`, `/deny`, `/quota`, `/jobs` and `/job`.

use super::{Call, Dispatcher};
use crate::catalog::command::Action;
use crate::chat::{render, Reply};
use crate::domain::lifecycle::JobKind;
use crate::domain::policy;
use crate::store::envs::Decided;
use crate::store::jobs::NewJob;
use crate::store::StoreError;
use serde_json::json;

impl Dispatcher {
    pub(super) async fn quota(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let teams: Vec<_> = match call.str("team") {
            Some(t) => match call.teams.iter().find(|team| team.name.0 == t) {
                Some(team) => vec![*team],
                None => {
                    return Ok(Reply::private(format!(
                        "⛔ team: you are not a member of team {t}"
                    )))
                }
            },
            None => call.teams.clone(),
        };
        let mut lines = Vec::new();
        for t in teams {
            let usage = self.store.usage(t.name.0.clone()).await?;
            lines.push(render::quota(&t.name.0, &t.quota, &usage));
        }
        Ok(Reply::private(lines.join("\n")))
    }

    pub(super) async fn jobs(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let mut all = Vec::new();
        for t in &call.teams {
            all.extend(self.store.list_jobs(Some(t.name.0.clone()), 20).await?);
        }
        all.sort_by_key(|(j, _)| std::cmp::Reverse(j.id));
        all.truncate(20);
        Ok(Reply::private(render::jobs(&all)))
    }

    pub(super) async fn job(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let id = call.int("id").unwrap_or_default();
        let not_found = || {
            Reply::private(format!(
                "⚠️ id: there is no job {id} in your teams; /jobs lists them"
            ))
        };
        let Some(job) = self.store.job(id).await? else {
            return Ok(not_found());
        };
        let Some(env) = self.store.env(job.env_id).await? else {
            return Ok(not_found());
        };
        if !call.teams.iter().any(|t| t.name.0 == env.team) {
            return Ok(not_found());
        }
        let steps = self.store.steps(id).await?;
        let log = self.store.job_log(id).await?;
        Ok(Reply::private(render::job(&job, &env.name, &steps, &log)))
    }

    /// Asked before a Deny button opens its modal, so that nobody types a
    /// reason only to be refused: Some(why) when `actor` may not decide
    /// request `id` (audited as a refused deny), None when they may.
    pub async fn refusal_to_deny(
        &self,
        actor: &crate::domain::team::Actor,
        id: i64,
    ) -> Result<Option<String>, StoreError> {
        let Some(a) = self.store.approval(id).await? else {
            return Ok(Some(format!(
                "there is no request #{id}; pending requests are listed on their cards"
            )));
        };
        let is_admin = self.config.team(&a.team).is_some_and(|t| t.is_admin(actor));
        let Err(why) = policy::may_decide(
            is_admin,
            &actor.key(),
            &a.requester,
            self.config.policy.allow_self_approval,
        ) else {
            return Ok(None);
        };
        self.store
            .audit(
                actor.key(),
                Action::ApprovalDeny.name().into(),
                format!("request {id}"),
                "refused".into(),
                why.clone(),
            )
            .await?;
        Ok(Some(why))
    }

    /// Loads the approval and checks the caller may decide it; Err is the refusal.
    async fn decidable(
        &self,
        call: &Call<'_>,
    ) -> Result<Result<crate::store::envs::ApprovalRecord, Reply>, StoreError> {
        let id = call.int("id").unwrap_or_default();
        let actor = call.actor();
        let Some(a) = self.store.approval(id).await? else {
            return Ok(Err(Reply::private(format!(
                "⚠️ id: there is no request #{id}; pending requests are listed on their cards"
            ))));
        };
        let is_admin = self.config.team(&a.team).is_some_and(|t| t.is_admin(actor));
        if let Err(why) = policy::may_decide(
            is_admin,
            &actor.key(),
            &a.requester,
            self.config.policy.allow_self_approval,
        ) {
            self.store
                .audit(
                    actor.key(),
                    call.spec.action.name().into(),
                    format!("request {id}"),
                    "refused".into(),
                    why.clone(),
                )
                .await?;
            return Ok(Err(Reply::private(format!("⛔ {why}"))));
        }
        Ok(Ok(a))
    }

    pub(super) async fn approve(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let a = match self.decidable(call).await? {
            Ok(a) => a,
            Err(reply) => return Ok(reply),
        };
        if a.kind != "create" {
            return self.approve_lifetime(call, &a).await;
        }
        let Some(env) = self.store.env(a.env_id).await? else {
            return Err(StoreError::Corrupt(format!(
                "request {} has no environment",
                a.id
            )));
        };
        let quota = self
            .config
            .team(&a.team)
            .map(|t| t.quota.clone())
            .unwrap_or_default();
        let profile = self.catalog.profile(&env.profile);
        let steps = if env.is_app() {
            super::app::app_plan(
                JobKind::Create,
                crate::domain::app::AppOptions::for_app(env.domain.is_some(), &self.config.publish),
            )
        } else {
            crate::domain::lifecycle::plan(
                JobKind::Create,
                &profile
                    .map(|p| {
                        super::env::create_options(p, env.domain.is_some(), &self.config.publish)
                    })
                    .unwrap_or_default(),
            )
        };
        let job = NewJob {
            kind: JobKind::Create,
            idempotency_key: format!("approval:{}", a.id),
            requested_by: a.requester.clone(),
            reply_to: a.reply_to.clone(),
            steps,
        };
        let actor = call.actor();
        let decided = self
            .store
            .approve(a.id, actor.key(), quota, call.flag("override"), job)
            .await?;
        Ok(match decided {
            Decided::Approved { job_id, check } => {
                self.wake.notify_waiters();
                let ctx = json!({"request": a.id, "name": env.name, "job": job_id, "by": actor.display, "quota": render::quota_change(&check)});
                let text =
                    render::template(Some(call.spec), "approved", &ctx).unwrap_or_else(|| {
                        format!(
                            "✅ Request #{} approved by {}: creating {} as job {job_id}.",
                            a.id, actor.display, env.name
                        )
                    });
                Reply {
                    text,
                    job: Some(job_id),
                    ..Reply::default()
                }
            }
            Decided::AlreadyDecided { state, by } => Reply::private(format!(
                "Request #{} was already {state}{}.",
                a.id,
                by.map(|b| format!(" by {b}")).unwrap_or_default()
            )),
            Decided::Refused(why) => Reply::private(format!("⛔ {why}")),
            Decided::Denied => Reply::private("Request denied."),
        })
    }

    pub(super) async fn deny(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let a = match self.decidable(call).await? {
            Ok(a) => a,
            Err(reply) => return Ok(reply),
        };
        let reason = call
            .str("reason")
            .unwrap_or("no reason given")
            .trim()
            .to_string();
        if reason.is_empty() {
            return Ok(Reply::private(
                "⚠️ reason: give the requester a reason (they are shown it); nothing was decided",
            ));
        }
        if a.kind != "create" {
            return self.deny_lifetime(call, &a, reason).await;
        }
        let actor = call.actor();
        let env = self.store.env(a.env_id).await?;
        let name = env.map(|e| e.name).unwrap_or_default();
        Ok(
            match self.store.deny(a.id, actor.key(), reason.clone()).await? {
                Decided::Denied => {
                    let ctx = json!({"request": a.id, "name": name, "by": actor.display, "reason": reason});
                    let text =
                        render::template(Some(call.spec), "denied", &ctx).unwrap_or_else(|| {
                            format!(
                                "🚫 Request #{} for {name} denied by {}: {reason}",
                                a.id, actor.display
                            )
                        });
                    Reply::public(text)
                }
                Decided::AlreadyDecided { state, by } => Reply::private(format!(
                    "Request #{} was already {state}{}.",
                    a.id,
                    by.map(|b| format!(" by {b}")).unwrap_or_default()
                )),
                Decided::Refused(why) => Reply::private(format!("⛔ {why}")),
                Decided::Approved { .. } => Reply::private("Request approved."),
            },
        )
    }
}
