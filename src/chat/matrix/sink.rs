//! Posting and editing on Matrix: every message is an `m.notice` (bots do not
//! answer notices, so two bots cannot loop) with a plain and an HTML body; an
//! edit is an `m.replace` of the original event; a [`ReplyTo`] with a thread
//! posts into that `m.thread`. `M_LIMIT_EXCEEDED` is not retried inside
//! matrix-sdk: it becomes [`ChatError::RateLimited`] with the homeserver's
//! Retry-After, so the notifier waits and sends only the newest state.

use super::format::{self, Words};
use crate::chat::{Announcement, AnnouncementKind, ChatError, ChatSink, MessageRef, ReplyTo};
use crate::domain::team::Platform;
use async_trait::async_trait;
use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::api::error::{ErrorKind, RetryAfter};
use matrix_sdk::ruma::{OwnedEventId, RoomId};
use matrix_sdk::{Client, Room};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// When the homeserver says "too fast" without saying for how long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The Matrix [`ChatSink`].
#[derive(Clone)]
pub struct MatrixSink {
    client: Client,
    words: Arc<Words>,
}

impl MatrixSink {
    pub fn new(client: Client, words: Arc<Words>) -> Self {
        MatrixSink { client, words }
    }

    fn room(&self, id: &str) -> Result<Room, ChatError> {
        let room_id = <&RoomId>::try_from(id)
            .map_err(|e| ChatError::Platform(format!("'{id}' is not a room id: {e}")))?;
        self.client.get_room(room_id).ok_or_else(|| {
            ChatError::Platform(format!(
                "the bot is not in room {id}; invite it (it joins by itself)"
            ))
        })
    }

    /// Sends raw `m.room.message` content; returns the new event's id.
    pub async fn send_content(
        &self,
        room: &str,
        content: Value,
    ) -> Result<OwnedEventId, ChatError> {
        let room = self.room(room)?;
        room.send_raw("m.room.message", content)
            // One attempt: a rate limit comes back to the caller with its wait.
            .with_request_config(RequestConfig::default().retry_limit(1))
            .await
            .map(|r| r.response.event_id)
            .map_err(to_chat_error)
    }

    /// Sends content, waiting out rate limits (at most `attempts` tries).
    pub async fn send_patiently(
        &self,
        room: &str,
        content: Value,
        attempts: u32,
    ) -> Result<OwnedEventId, ChatError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.send_content(room, content.clone()).await {
                Err(ChatError::RateLimited(wait)) if tries < attempts => {
                    tokio::time::sleep(wait).await
                }
                other => return other,
            }
        }
    }
}

/// A notice with `text` as its plain and HTML body, in `thread` if given.
pub fn notice(text: &str, thread: Option<&str>) -> Value {
    let mut content = json!({
        "msgtype": "m.notice",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": format::html(text),
    });
    if let Some(root) = thread {
        // is_falling_back: clients without threads show it as a reply to the root.
        content["m.relates_to"] = json!({
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": true,
            "m.in_reply_to": { "event_id": root },
        });
    }
    content
}

/// The replacement of event `original` by a notice with `text`.
pub fn replacement(original: &str, text: &str) -> Value {
    let new = notice(text, None);
    let mut content = notice(&format!("* {text}"), None);
    content["m.new_content"] = new;
    content["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": original });
    content
}

fn to_chat_error(e: matrix_sdk::Error) -> ChatError {
    if let Some(ErrorKind::LimitExceeded(data)) = e.client_api_error_kind() {
        let wait = match data.retry_after {
            Some(RetryAfter::Delay(d)) => d,
            Some(RetryAfter::DateTime(at)) => at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            None => DEFAULT_RETRY_AFTER,
        };
        return ChatError::RateLimited(wait);
    }
    ChatError::Platform(e.to_string())
}

#[async_trait]
impl ChatSink for MatrixSink {
    fn platform(&self) -> Platform {
        Platform::Matrix
    }

    async fn send(&self, to: &ReplyTo, text: &str) -> Result<MessageRef, ChatError> {
        let id = self
            .send_content(
                &to.channel,
                notice(&self.words.localize(text), to.thread.as_deref()),
            )
            .await?;
        Ok(MessageRef {
            platform: Platform::Matrix,
            channel: to.channel.clone(),
            id: id.to_string(),
        })
    }

    async fn edit(&self, msg: &MessageRef, text: &str) -> Result<(), ChatError> {
        self.send_content(
            &msg.channel,
            replacement(&msg.id, &self.words.localize(text)),
        )
        .await
        .map(|_| ())
    }

    /// A reminder invites reactions: ⏳ extends by the profile's default
    /// lifetime, 🗑️ destroys now. The event is remembered for the reaction.
    async fn announce(&self, to: &ReplyTo, a: &Announcement) -> Result<MessageRef, ChatError> {
        let mut text = a.text.clone();
        if a.kind == AnnouncementKind::Reminder {
            text.push_str("\nReact ⏳ to extend it, or 🗑️ to destroy it now.");
        }
        let msg = self.send(to, &text).await?;
        if a.kind == AnnouncementKind::Reminder {
            let store = self.client.state_store();
            let key = super::reminders::reminder_key(&msg.id);
            if let Err(e) = store
                .set_custom_value(&key, a.env_id.to_string().into_bytes())
                .await
            {
                tracing::warn!(error = %e, "could not remember a reminder for its reactions");
            }
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_replaces_the_original_and_carries_the_new_content() {
        let c = replacement("$orig", "✅ done");
        assert_eq!(c["m.relates_to"]["rel_type"], "m.replace");
        assert_eq!(c["m.relates_to"]["event_id"], "$orig");
        assert_eq!(c["m.new_content"]["body"], "✅ done");
        assert_eq!(c["m.new_content"]["msgtype"], "m.notice");
        assert_eq!(c["body"], "* ✅ done");
    }

    #[test]
    fn a_threaded_notice_relates_to_its_root() {
        let c = notice("hello", Some("$root"));
        assert_eq!(c["m.relates_to"]["rel_type"], "m.thread");
        assert_eq!(c["m.relates_to"]["event_id"], "$root");
        assert_eq!(c["msgtype"], "m.notice");
    }
}
