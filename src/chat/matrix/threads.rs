//! One `m.thread` per environment. When an environment is requested, a root
//! message "📦 NAME — requested by …" is posted in the status room (or the
//! command's room) and the request's [`ReplyTo`] points into that thread, so
//! the job's progress, the approval's outcome, reminders and the teardown
//! (which the store and scheduler send to the environment's `announce_to`)
//! all land there. Later lifecycle commands for the environment report there too.

use super::inbound::{is_refusal, post};
use super::sink::{notice, replacement, MatrixSink};
use super::Shared;
use crate::chat::{Reply, ReplyTo};
use crate::domain::team::{teams_of, Actor, Platform};

/// Where a command's job reports, and whether a thread was started for it.
pub(crate) struct Routed {
    pub reply_to: ReplyTo,
    pub new_thread: bool,
}

/// Chooses the [`ReplyTo`] of a command before it is dispatched.
pub(crate) async fn route(
    shared: &Shared,
    sink: &MatrixSink,
    actor: &Actor,
    line: &str,
    here: &ReplyTo,
) -> Routed {
    let stay = || Routed {
        reply_to: here.clone(),
        new_thread: false,
    };
    let Ok((spec, inv)) = shared.dispatcher.catalog.parse(line) else {
        return stay();
    };
    use crate::catalog::command::Action::*;
    // Required by each action below, so given once the line parsed.
    let name = || inv.str("name").unwrap_or_default();
    match spec.action {
        // Someone in no team is refused: no thread for that.
        EnvCreate
            if !inv.flag("dry-run")
                && !teams_of(&shared.dispatcher.config.teams, actor).is_empty() =>
        {
            let name = name();
            let room = shared
                .status_room
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| here.channel.clone());
            let text = format!(
                "📦 {name} — requested by {} ({})",
                actor.display, actor.user_id
            );
            match sink.send_patiently(&room, notice(&text, None), 5).await {
                Ok(root) => Routed {
                    reply_to: ReplyTo {
                        platform: Platform::Matrix,
                        channel: room,
                        thread: Some(root.to_string()),
                        interaction: None,
                    },
                    new_thread: true,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "could not start an environment thread");
                    stay()
                }
            }
        }
        EnvStart | EnvStop | EnvRestart | EnvDestroy | EnvExtend | EnvKeep => {
            match thread_of(shared, name()).await {
                Some(to) => Routed {
                    reply_to: to,
                    new_thread: false,
                },
                None => stay(),
            }
        }
        _ => stay(),
    }
}

/// The Matrix thread of a live environment, if it has one.
pub(crate) async fn thread_of(shared: &Shared, name: &str) -> Option<ReplyTo> {
    let env = shared
        .dispatcher
        .store
        .env_by_name(name.to_string())
        .await
        .ok()
        .flatten()?;
    env.announce_to
        .as_deref()
        .and_then(ReplyTo::from_json)
        .filter(|to| to.platform == Platform::Matrix && to.thread.is_some())
}

/// After a create was dispatched: the answer goes into the new thread too; if
/// nothing was created, the root says so.
pub(crate) async fn after_create(
    shared: &Shared,
    sink: &MatrixSink,
    thread: &ReplyTo,
    reply: &Reply,
) {
    let Some(root) = thread.thread.as_deref() else {
        return;
    };
    post(shared, sink, thread, &reply.text).await;
    if is_refusal(reply) {
        let first = reply.text.lines().next().unwrap_or_default();
        let text = format!("📦 not created — {}", shared.localize(first));
        if let Err(e) = sink
            .send_patiently(&thread.channel, replacement(root, &text), 5)
            .await
        {
            tracing::warn!(error = %e, "could not mark the environment thread");
        }
    }
}
