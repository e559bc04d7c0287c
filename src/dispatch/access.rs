//! `/env access add|remove name:… user:…`: the owner or a team admin lets a
//! person log in to a running environment with their own SSH keys (the ones
//! they added with `/keys add`), or stops that. The change is a job: the
//! worker pushes the keys over SSH with Slipway's key.

use super::{Call, Dispatcher};
use crate::chat::{render, Reply};
use crate::domain::lifecycle::{EnvState, JobKind};
use crate::domain::step::{person_shown, Step};
use crate::domain::team::Platform;
use crate::store::jobs::{Enqueued, NewJob};
use crate::store::StoreError;

impl Dispatcher {
    pub(super) async fn env_access(&self, call: &Call<'_>, add: bool) -> Result<Reply, StoreError> {
        let env = match self.visible_env(call).await? {
            Ok(e) => e,
            Err(reply) => return Ok(reply),
        };
        if let Err(refusal) = call.may_act_on(&env, "change who logs in to it") {
            return Ok(refusal);
        }
        if env.is_app() {
            return Ok(Reply::private(format!(
                "⚠️ name: {} is an app; apps have no SSH login. /env access is for environments",
                env.name
            )));
        }
        let raw = call.str("user").unwrap_or_default();
        let person = match self.person_key(call.actor().platform, raw) {
            Ok(p) => p,
            Err(e) => return Ok(Reply::private(format!("⚠️ user: {e}. Nothing changed."))),
        };
        let shown = person_shown(&person);
        if add && self.store.ssh_keys(person.clone()).await?.is_empty() {
            return Ok(Reply::private(format!(
                "⚠️ user: {shown} has no SSH keys yet; they add one with /keys add key:\"ssh-ed25519 AAAA… name\", then ask again. Nothing changed."
            )));
        }
        let step = if add {
            Step::GrantAccess(person)
        } else {
            Step::RevokeAccess(person)
        };
        let label = step.label();
        let job = NewJob {
            kind: JobKind::Access,
            idempotency_key: call.inbound.event_id.clone(),
            requested_by: call.actor().key(),
            reply_to: call.inbound.reply_to.to_json(),
            steps: vec![step],
        };
        const READY: &[EnvState] = &[EnvState::Ready];
        Ok(match self.store.enqueue(env.id, READY, None, job).await? {
            Enqueued::Queued(job_id) => {
                self.wake.notify_waiters();
                Reply {
                    text: format!("🔑 {label} to {}: queued as job {job_id}", env.name),
                    job: Some(job_id),
                    ..Reply::default()
                }
            }
            refused => Reply::private(
                render::not_queued(&env.name, "change access to", &refused).unwrap_or_default(),
            ),
        })
    }

    /// The person `raw` names on `platform`, as the key their SSH keys are kept under.
    fn person_key(&self, platform: Platform, raw: &str) -> Result<String, String> {
        let raw = raw.trim();
        let id = match platform {
            Platform::Discord => {
                let id = raw
                    .strip_prefix("<@")
                    .and_then(|r| r.strip_suffix('>'))
                    .map(|r| r.trim_start_matches('!'))
                    .unwrap_or(raw);
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "{} is not a Discord member; mention them (@name) or give their user id",
                        crate::domain::names::shown(raw)
                    ));
                }
                id.to_string()
            }
            Platform::Matrix => {
                let ok = raw.starts_with('@')
                    && raw[1..]
                        .split_once(':')
                        .is_some_and(|(l, s)| !l.is_empty() && !s.is_empty());
                if !ok {
                    return Err(format!(
                        "{} is not a Matrix user id; give it as @name:server",
                        crate::domain::names::shown(raw)
                    ));
                }
                raw.to_string()
            }
            Platform::Console => {
                if !self.config.console_users.contains_key(raw) {
                    let known: Vec<&str> = self
                        .config
                        .console_users
                        .keys()
                        .map(String::as_str)
                        .collect();
                    return Err(format!(
                        "{} is not a console user; one of: {}",
                        crate::domain::names::shown(raw),
                        known.join(", ")
                    ));
                }
                raw.to_string()
            }
        };
        Ok(format!("{}:{id}", platform.as_str()))
    }
}
