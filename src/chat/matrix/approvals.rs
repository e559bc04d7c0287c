//! Approval cards. A request that waits for an admin gets a card in the
//! approval room; a ✅ or ❌ reaction on it becomes `!approve ID` or
//! `!deny ID reacted with ❌` from the reacting user, through the same
//! dispatcher as a typed command — which refuses non-admins and audits them.
//! A refused reaction is ignored quietly (no reply: anyone may react to
//! anything). Once a request is decided, by reaction or by command, the card
//! is edited to say who decided, and the environment's thread is told.
//!
//! Which card belongs to which request is kept in matrix-sdk's store (custom
//! values), so reactions and edits still work after a restart.

use super::inbound::{actor, post};
use super::sink::{notice, replacement};
use super::Shared;
use crate::chat::{Decision, Inbound, ReplyTo};
use crate::domain::team::{Actor, Platform};
use matrix_sdk::event_handler::Ctx;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::{Client, Room};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The field of a card's content that names its request.
const CARD_FIELD: &str = "org.slipway.approval";

/// A posted card, as kept in the store.
#[derive(Debug, Serialize, Deserialize)]
struct Card {
    room: String,
    event: String,
    text: String,
}

fn card_key(id: i64) -> Vec<u8> {
    format!("slipway.card.{id}").into_bytes()
}

fn event_key(event: &str) -> Vec<u8> {
    format!("slipway.card-event.{event}").into_bytes()
}

/// Posts the card of request `id` and remembers it.
pub(crate) async fn post_card(
    shared: &Shared,
    client: &Client,
    id: i64,
    requester: &Actor,
    reply_text: &str,
) {
    let Some(room) = shared.approval_room.as_ref().map(|r| r.to_string()) else {
        tracing::warn!(
            request = id,
            "request waits for approval, but matrix.admin_room is not set: no card posted"
        );
        return;
    };
    let p = &shared.cfg.prefix;
    let text = format!(
        "🕓 Request #{id} from {} ({})\n{}\nReact ✅ to approve or ❌ to deny, or write {p}approve {id} / {p}deny {id} REASON.",
        requester.display,
        requester.user_id,
        shared.localize(reply_text)
    );
    let mut content = notice(&text, None);
    content[CARD_FIELD] = id.into();
    let sink = shared.sink(client);
    let event = match sink.send_patiently(&room, content, 5).await {
        Ok(e) => e.to_string(),
        Err(e) => {
            tracing::warn!(request = id, error = %e, "could not post an approval card");
            return;
        }
    };
    let card = Card {
        room,
        event: event.clone(),
        text,
    };
    let store = client.state_store();
    let saved = match serde_json::to_vec(&card) {
        Ok(bytes) => {
            store.set_custom_value(&card_key(id), bytes).await.is_ok()
                && store
                    .set_custom_value(&event_key(&event), id.to_string().into_bytes())
                    .await
                    .is_ok()
        }
        Err(_) => false,
    };
    if !saved {
        tracing::warn!(request = id, "could not remember the approval card");
    }
}

async fn state_of(shared: &Shared, id: i64) -> Option<String> {
    let a = shared.dispatcher.store.approval(id).await.ok()??;
    Some(a.state)
}

pub(crate) async fn on_reaction(
    ev: OriginalSyncReactionEvent,
    room: Room,
    client: Client,
    Ctx(shared): Ctx<Arc<Shared>>,
) {
    if !shared.is_new(&client, &ev.sender, ev.origin_server_ts) {
        return;
    }
    let key = ev
        .content
        .relates_to
        .key
        .trim_end_matches('\u{fe0f}')
        .to_string();
    if super::reminders::on_reaction(&shared, &client, &room, &ev, &key).await {
        return;
    }
    let card_event = ev.content.relates_to.event_id.to_string();
    let approve = match key.as_str() {
        "✅" | "✔" | "☑" => true,
        "❌" | "✖" => false,
        _ => return,
    };
    let id = match client
        .state_store()
        .get_custom_value(&event_key(&card_event))
        .await
    {
        Ok(Some(bytes)) => match String::from_utf8_lossy(&bytes).parse::<i64>() {
            Ok(id) => id,
            Err(_) => return,
        },
        _ => return,
    };
    let actor = actor(&room, &ev.sender).await;
    let text = if approve {
        format!("!approve {id}")
    } else {
        format!("!deny {id} reacted with ❌")
    };
    let before = state_of(&shared, id).await;
    let here = ReplyTo {
        platform: Platform::Matrix,
        channel: room.room_id().to_string(),
        thread: None,
        interaction: None,
    };
    let inbound = Inbound {
        actor,
        text,
        event_id: ev.event_id.to_string(),
        reply_to: here.clone(),
    };
    let reply = shared.dispatcher.handle(&inbound).await;
    if state_of(&shared, id).await == before {
        // Not an admin, a self-approval, or already decided: the dispatcher
        // audited it; a reaction gets no answer.
        tracing::info!(request = id, user = %inbound.actor.user_id, reply = %reply.text, "reaction on an approval card ignored");
        return;
    }
    post(&shared, &shared.sink(&client), &here, &reply.text).await;
}

/// Edits the card of every decided request, wherever it was decided (a
/// reaction or command here, a Discord button, the console), and tells the
/// environment's thread.
pub(crate) async fn watch_decisions(
    shared: Arc<Shared>,
    client: Client,
    rx: tokio::sync::broadcast::Receiver<Decision>,
    cancel: tokio_util::sync::CancellationToken,
) {
    crate::chat::each_decision(rx, cancel, |d| {
        let (shared, client) = (shared.clone(), client.clone());
        async move { after_decision(&shared, &client, &d).await }
    })
    .await;
}

/// Once request `id` is decided: edit its card with who decided, and tell the
/// environment's thread.
async fn after_decision(shared: &Shared, client: &Client, d: &Decision) {
    let (id, by) = (d.approval, &d.by);
    let Ok(Some(a)) = shared.dispatcher.store.approval(id).await else {
        return;
    };
    let sink = shared.sink(client);
    if let Ok(Some(bytes)) = client.state_store().get_custom_value(&card_key(id)).await {
        if let Ok(card) = serde_json::from_slice::<Card>(&bytes) {
            let verdict = if a.state == "approved" {
                format!("✅ Approved by {} ({})", by.display, by.user_id)
            } else {
                format!("🚫 Denied by {} ({})", by.display, by.user_id)
            };
            let body = card.text.lines().skip(1).collect::<Vec<_>>();
            let first = card.text.lines().next().unwrap_or_default();
            let mut text = format!("{verdict} — {}", first.trim_start_matches("🕓 "));
            // The card's instructions no longer apply.
            for line in body.iter().take(body.len().saturating_sub(1)) {
                text.push('\n');
                text.push_str(line);
            }
            text.push('\n');
            text.push_str(&shared.localize(&d.text));
            if let Err(e) = sink
                .send_patiently(&card.room, replacement(&card.event, &text), 5)
                .await
            {
                tracing::warn!(request = id, error = %e, "could not edit the approval card");
            }
        }
    }
    // The requester's thread, unless the decision was typed right there.
    if let Some(thread) = ReplyTo::from_json(&a.reply_to)
        .filter(|t| t.platform == Platform::Matrix && t.thread.is_some() && *t != d.decided_in)
    {
        post(shared, &sink, &thread, &d.text).await;
    }
}
