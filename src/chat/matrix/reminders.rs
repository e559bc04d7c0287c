//! Reactions on a reminder: ⏳ extends the environment by its profile's
//! default lifetime; 🗑️ asks first — the bot answers with a question, and a
//! 🗑️ on that question destroys it. Both act on the environment the reminder
//! was about (kept by id in matrix-sdk's store), never on another one that
//! took its name since: a reminder of an environment that has gone is answered
//! with a note and nothing else.

use super::inbound::{actor, post};
use super::sink::MatrixSink;
use super::Shared;
use crate::chat::{Inbound, ReplyTo};
use crate::domain::team::Platform;
use crate::store::envs::EnvRecord;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::{Client, Room};

/// The store key under which a reminder's event remembers its environment.
pub(crate) fn reminder_key(event: &str) -> Vec<u8> {
    format!("slipway.reminder-event.{event}").into_bytes()
}

/// The store key of a "destroy it?" question, naming its environment.
fn confirm_key(event: &str) -> Vec<u8> {
    format!("slipway.confirm-destroy.{event}").into_bytes()
}

/// The environment a stored key names, if it is still the live one by its name.
async fn live_env(
    shared: &Shared,
    client: &Client,
    key: &[u8],
) -> Option<Result<EnvRecord, EnvRecord>> {
    let bytes = client.state_store().get_custom_value(key).await.ok()??;
    let env_id: i64 = String::from_utf8_lossy(&bytes).parse().ok()?;
    let store = &shared.dispatcher.store;
    let env = store.env(env_id).await.ok()??;
    let live = store.env_by_name(env.name.clone()).await.ok()?;
    Some(match live {
        Some(l) if l.id == env.id => Ok(env),
        _ => Err(env),
    })
}

/// Handles a reaction if it is on a reminder or on a destroy question;
/// false if it is on neither (then it may be on an approval card).
pub(crate) async fn on_reaction(
    shared: &Shared,
    client: &Client,
    room: &Room,
    ev: &OriginalSyncReactionEvent,
    key: &str,
) -> bool {
    let target = ev.content.relates_to.event_id.to_string();
    let here = ReplyTo {
        platform: Platform::Matrix,
        channel: room.room_id().to_string(),
        thread: None,
        interaction: None,
    };
    let sink = shared.sink(client);
    if let Some(found) = live_env(shared, client, &confirm_key(&target)).await {
        match (found, key) {
            (Ok(env), "🗑") => {
                let _ = client
                    .state_store()
                    .remove_custom_value(&confirm_key(&target))
                    .await;
                run(
                    shared,
                    &sink,
                    room,
                    ev,
                    format!("/env destroy {}", env.name),
                    &here,
                )
                .await;
            }
            (Err(gone), _) => post(shared, &sink, &here, &gone_note(&gone)).await,
            _ => {}
        }
        return true;
    }
    let Some(found) = live_env(shared, client, &reminder_key(&target)).await else {
        return false;
    };
    let env = match found {
        Ok(env) => env,
        Err(gone) => {
            if matches!(key, "⏳" | "⌛" | "🗑") {
                post(shared, &sink, &here, &gone_note(&gone)).await;
            }
            return true;
        }
    };
    match key {
        "⏳" | "⌛" => {
            let Some(profile) = shared.dispatcher.catalog.profile(&env.profile) else {
                return true;
            };
            let by = crate::chat::render::duration(profile.ttl_default).replace(' ', "");
            let line = format!("/env extend {} by:{by}", env.name);
            run(shared, &sink, room, ev, line, &here).await;
        }
        "🗑" => ask(shared, client, &sink, room, ev, &env, &here).await,
        _ => {}
    }
    true
}

fn gone_note(env: &EnvRecord) -> String {
    format!(
        "ℹ️ That reminder was about an environment {} that is {} now; nothing was done.",
        env.name, env.state
    )
}

/// Posts the "destroy it?" question in the environment's thread and remembers it.
async fn ask(
    shared: &Shared,
    client: &Client,
    sink: &MatrixSink,
    room: &Room,
    ev: &OriginalSyncReactionEvent,
    env: &EnvRecord,
    here: &ReplyTo,
) {
    let who = actor(room, &ev.sender).await;
    let line = format!("/env destroy {}", env.name);
    let routed = super::threads::route(shared, sink, &who, &line, here).await;
    let text = crate::chat::render::confirm_destroy(env);
    let content = super::sink::notice(&shared.localize(&text), routed.reply_to.thread.as_deref());
    match sink
        .send_patiently(&routed.reply_to.channel, content, 5)
        .await
    {
        Ok(event) => {
            let key = confirm_key(event.as_ref());
            let value = env.id.to_string().into_bytes();
            if let Err(e) = client.state_store().set_custom_value(&key, value).await {
                tracing::warn!(error = %e, "could not remember a destroy question for its reaction");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not ask before a destroy by reaction"),
    }
}

/// Runs `line` as the reacting user typed it, answered in the environment's thread.
async fn run(
    shared: &Shared,
    sink: &MatrixSink,
    room: &Room,
    ev: &OriginalSyncReactionEvent,
    line: String,
    here: &ReplyTo,
) {
    let who = actor(room, &ev.sender).await;
    let routed = super::threads::route(shared, sink, &who, &line, here).await;
    let inbound = Inbound {
        actor: who,
        text: line,
        event_id: ev.event_id.to_string(),
        reply_to: routed.reply_to.clone(),
    };
    let reply = shared.dispatcher.handle(&inbound).await;
    post(shared, sink, &routed.reply_to, &reply.text).await;
}
