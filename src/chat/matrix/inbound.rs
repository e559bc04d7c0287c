//! A room message → [`Inbound`] → the dispatcher → a notice in reply. Only text
//! messages that start with the prefix are commands; the bot's own events,
//! edits and anything sent before it started are ignored. The actor's roles
//! are what teams bind to: the user id, `room:<room id>` and `power:<level>`.

use super::sink::{notice, MatrixSink};
use super::{approvals, threads, Shared};
use crate::chat::{Inbound, Reply, ReplyTo};
use crate::domain::team::{Actor, Platform};
use matrix_sdk::event_handler::Ctx;
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation,
};
use matrix_sdk::ruma::events::room::power_levels::UserPowerLevel;
use matrix_sdk::ruma::UserId;
use matrix_sdk::{Client, Room, RoomState};
use std::sync::Arc;

/// How often a reply is tried against rate limits before it is given up.
const REPLY_ATTEMPTS: u32 = 5;

pub(crate) async fn on_message(
    ev: OriginalSyncRoomMessageEvent,
    room: Room,
    client: Client,
    Ctx(shared): Ctx<Arc<Shared>>,
) {
    if !shared.is_new(&client, &ev.sender, ev.origin_server_ts) || room.state() != RoomState::Joined
    {
        return;
    }
    let MessageType::Text(text) = &ev.content.msgtype else {
        return;
    };
    // An edited command is not a second command.
    if matches!(ev.content.relates_to, Some(Relation::Replacement(_))) {
        return;
    }
    let Some(line) = command_line(&text.body, &shared.cfg.prefix) else {
        return;
    };
    let thread = match &ev.content.relates_to {
        Some(Relation::Thread(t)) => Some(t.event_id.to_string()),
        _ => None,
    };
    let here = ReplyTo {
        platform: Platform::Matrix,
        channel: room.room_id().to_string(),
        thread,
        interaction: None,
    };
    let actor = actor(&room, &ev.sender).await;
    let sink = shared.sink(&client);
    let routed = threads::route(&shared, &sink, &actor, &line, &here).await;
    let inbound = Inbound {
        actor,
        text: line,
        event_id: ev.event_id.to_string(),
        reply_to: routed.reply_to.clone(),
    };
    let reply = shared.dispatcher.handle(&inbound).await;
    // A thread started in this very room gets the answer; once is enough.
    if !(routed.new_thread && routed.reply_to.channel == here.channel) {
        post(&shared, &sink, &here, &reply.text).await;
    }
    if routed.new_thread {
        threads::after_create(&shared, &sink, &routed.reply_to, &reply).await;
    }
    if let Some(id) = reply.approval {
        approvals::post_card(&shared, &client, id, &inbound.actor, &reply.text).await;
    }
}

/// Posts a reply (in Matrix's wording) where the command was written.
pub(crate) async fn post(shared: &Shared, sink: &MatrixSink, to: &ReplyTo, text: &str) {
    if text.is_empty() {
        return;
    }
    let content = notice(&shared.localize(text), to.thread.as_deref());
    if let Err(e) = sink
        .send_patiently(&to.channel, content, REPLY_ATTEMPTS)
        .await
    {
        tracing::warn!(room = %to.channel, error = %e, "could not post a reply on Matrix");
    }
}

/// The command in a message body, written as the shared parser reads it
/// (`!group …`), or None if the body is not a command.
pub(crate) fn command_line(body: &str, prefix: &str) -> Option<String> {
    // A reply quotes the message it answers as "> …" lines before a blank line.
    let body = if body.starts_with("> ") {
        body.split_once("\n\n").map(|(_, rest)| rest).unwrap_or("")
    } else {
        body
    };
    let rest = body.trim().strip_prefix(prefix)?;
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with(['!', '/']) {
        return None;
    }
    Some(format!("!{rest}"))
}

/// Who sent an event, with the roles teams bind to.
pub(crate) async fn actor(room: &Room, user: &UserId) -> Actor {
    let display = match room.get_member_no_sync(user).await {
        Ok(Some(m)) => m.display_name().map(str::to_string),
        _ => None,
    }
    .unwrap_or_else(|| user.to_string());
    let levels: &[&str] = match room.get_user_power_level(user).await {
        Ok(UserPowerLevel::Int(level)) => &[&level.to_string()],
        // A room creator (room version 12 on) outranks everyone: bound like 100.
        Ok(UserPowerLevel::Infinite) => &["creator", "100"],
        Ok(_) => &[],
        Err(e) => {
            tracing::debug!(error = %e, "no power levels for the sender");
            &[]
        }
    };
    Actor {
        platform: Platform::Matrix,
        user_id: user.to_string(),
        display,
        roles: roles(user.as_str(), room.room_id().as_str(), levels),
    }
}

/// The roles of `user` in `room` with these power levels: the user id,
/// `room:ROOM`, `power:LEVEL`, and `room:ROOM/power:LEVEL` — the scoped form,
/// since anyone can create a room of their own, invite the bot and hold
/// power 100 there.
pub(crate) fn roles(user: &str, room: &str, levels: &[&str]) -> Vec<String> {
    let mut roles = vec![user.to_string(), format!("room:{room}")];
    for level in levels {
        roles.push(format!("power:{level}"));
        roles.push(format!("room:{room}/power:{level}"));
    }
    roles
}

/// A reply that was refused (⛔) or failed, as opposed to one that did something.
pub(crate) fn is_refusal(reply: &Reply) -> bool {
    reply.job.is_none() && reply.approval.is_none() && reply.private
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefixed_message_is_a_command_in_the_shared_syntax() {
        assert_eq!(
            command_line("  !env create profile:web-app name:shop ", "!").as_deref(),
            Some("!env create profile:web-app name:shop")
        );
        assert_eq!(
            command_line("!slipway help", "!slipway").as_deref(),
            Some("!help")
        );
    }

    #[test]
    fn plain_chat_and_bare_prefixes_are_not_commands() {
        assert_eq!(command_line("hello !env list", "!"), None);
        assert_eq!(command_line("!", "!"), None);
        assert_eq!(command_line("!!env list", "!"), None);
    }

    #[test]
    fn power_comes_plain_and_scoped_to_the_room() {
        assert_eq!(
            roles("@a:x", "!r:x", &["50"]),
            vec!["@a:x", "room:!r:x", "power:50", "room:!r:x/power:50"]
        );
    }

    #[test]
    fn a_reply_fallback_is_skipped() {
        assert_eq!(
            command_line("> <@bob:x> earlier\n\n!env list", "!").as_deref(),
            Some("!env list")
        );
    }
}
