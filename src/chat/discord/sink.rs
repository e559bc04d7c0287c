//! Discord's REST side: [`Rest`] sends every call the adapter makes (routes and
//! URLs from serenity, so a configured proxy applies), paces messages per
//! channel with a governor limiter and, on a 429, waits the `retry_after`
//! Discord names before it tries again. [`DiscordSink`] is the [`ChatSink`]:
//! a send posts a message and returns its reference; an edit only records the
//! latest text, and one task per channel delivers the latest state of each
//! message at the channel's pace — so 50 jobs reporting into one channel
//! coalesce into a few edits instead of a storm of 429s.

use crate::chat::{Announcement, AnnouncementKind, ChatError, ChatSink, MessageRef, ReplyTo};
use crate::domain::team::Platform;
use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use serenity::http::{LightMethod, Request, Route};
use serenity::model::id::{ChannelId, MessageId};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// How often one call is tried again after a 429 before giving up.
const RATE_LIMIT_RETRIES: usize = 5;
/// Discord's limit on a message's content.
const MAX_CONTENT: usize = 2000;

/// Sends Discord REST calls; cheap to share.
pub struct Rest {
    client: reqwest::Client,
    /// `Bot <token>`: the Authorization header.
    auth: SecretString,
    proxy: Option<String>,
    pub application_id: u64,
    channels: DefaultKeyedRateLimiter<u64>,
}

impl Rest {
    pub fn new(
        token: &SecretString,
        proxy: Option<String>,
        application_id: u64,
        per_sec: u32,
        burst: u32,
    ) -> Result<Rest, ChatError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| ChatError::Platform(format!("cannot build the HTTP client: {e}")))?;
        let quota = Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Ok(Rest {
            client,
            auth: SecretString::from(format!("Bot {}", token.expose_secret())),
            proxy,
            application_id,
            channels: RateLimiter::keyed(quota),
        })
    }

    /// Sends one call. `channel` names the channel whose message budget the
    /// call spends (message creates and edits). `what` names the call in
    /// errors and logs; URLs are never logged, as they may hold interaction
    /// tokens. Ok(None) for an empty answer (204).
    pub async fn call(
        &self,
        what: &str,
        method: LightMethod,
        route: Route<'_>,
        body: Option<&Value>,
        channel: Option<u64>,
    ) -> Result<Option<Value>, ChatError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let mut waited = Duration::ZERO;
        for _ in 0..=RATE_LIMIT_RETRIES {
            if let Some(ch) = channel {
                self.channels.until_key_ready(&ch).await;
            }
            let request = Request::new(route, method)
                .body(bytes.clone())
                .build(
                    &self.client,
                    self.auth.expose_secret(),
                    self.proxy.as_deref(),
                )
                .map_err(|e| ChatError::Platform(format!("{what}: {e}")))?;
            let resp = request
                .send()
                .await
                .map_err(|e| ChatError::Platform(format!("{what}: {}", e.without_url())))?;
            let status = resp.status();
            if status.as_u16() == 429 {
                let header = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok());
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let secs = body["retry_after"].as_f64().or(header).unwrap_or(1.0);
                let wait = Duration::from_secs_f64(secs.clamp(0.0, 60.0));
                tracing::warn!(call = what, retry_after = ?wait, global = %body["global"], "Discord rate limit; waiting");
                tokio::time::sleep(wait).await;
                waited += wait;
                continue;
            }
            if status.as_u16() == 204 {
                return Ok(None);
            }
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                return Err(ChatError::Platform(format!(
                    "{what}: HTTP {status}: {message}"
                )));
            }
            return Ok(serde_json::from_str(&text).ok());
        }
        Err(ChatError::RateLimited(waited))
    }

    /// Posts a message (body: content, embeds, components) and returns its id.
    pub async fn post_message(&self, channel: u64, body: &Value) -> Result<u64, ChatError> {
        let answer = self
            .call(
                "create message",
                LightMethod::Post,
                Route::ChannelMessages {
                    channel_id: ChannelId::new(channel.max(1)),
                },
                Some(body),
                Some(channel),
            )
            .await?;
        snowflake(answer.as_ref().map(|v| &v["id"]))
            .ok_or_else(|| ChatError::Platform("create message: no id in the answer".into()))
    }

    pub async fn edit_message(&self, channel: u64, id: u64, body: &Value) -> Result<(), ChatError> {
        self.call(
            "edit message",
            LightMethod::Patch,
            Route::ChannelMessage {
                channel_id: ChannelId::new(channel.max(1)),
                message_id: MessageId::new(id.max(1)),
            },
            Some(body),
            Some(channel),
        )
        .await
        .map(|_| ())
    }
}

/// A snowflake from a JSON string (Discord sends ids as strings).
pub fn snowflake(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A message body with plain content: no mentions are pinged from user data.
pub fn content(text: &str) -> Value {
    json!({ "content": clip(text, MAX_CONTENT), "allowed_mentions": { "parse": [] } })
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Edits waiting for their channel: the latest body of each message.
#[derive(Default)]
struct Queue {
    bodies: BTreeMap<u64, Value>,
    running: bool,
}

/// The Discord [`ChatSink`].
pub struct DiscordSink {
    rest: Arc<Rest>,
    queues: Arc<Mutex<HashMap<u64, Queue>>>,
    /// The app's tracker: a shutdown waits for queued edits (the final states).
    tracker: TaskTracker,
}

impl DiscordSink {
    pub fn new(rest: Arc<Rest>, tracker: TaskTracker) -> DiscordSink {
        DiscordSink {
            rest,
            queues: Arc::default(),
            tracker,
        }
    }

    /// Queues `body` as the latest state of message `id`; a channel's task
    /// sends the queue at the channel's pace.
    pub fn queue_edit(&self, channel: u64, id: u64, body: Value) {
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let q = queues.entry(channel).or_default();
            q.bodies.insert(id, body);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let (rest, queues) = (self.rest.clone(), self.queues.clone());
            self.tracker.spawn(drain(rest, queues, channel));
        }
    }

    /// Waits until every queued edit was sent (or given up on).
    pub async fn flushed(&self) {
        loop {
            let idle = {
                let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                queues.values().all(|q| !q.running)
            };
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn drain(rest: Arc<Rest>, queues: Arc<Mutex<HashMap<u64, Queue>>>, channel: u64) {
    loop {
        let next = {
            let mut all = queues.lock().unwrap_or_else(|p| p.into_inner());
            let q = all.entry(channel).or_default();
            match q.bodies.pop_first() {
                Some(item) => item,
                None => {
                    q.running = false;
                    return;
                }
            }
        };
        let (id, body) = next;
        match rest.edit_message(channel, id, &body).await {
            Ok(()) => {}
            // Still limited after every retry: keep the state unless a newer
            // one arrived meanwhile, so the final state is not lost.
            Err(ChatError::RateLimited(_)) => {
                let mut all = queues.lock().unwrap_or_else(|p| p.into_inner());
                all.entry(channel)
                    .or_default()
                    .bodies
                    .entry(id)
                    .or_insert(body);
            }
            Err(e) => {
                tracing::warn!(channel, message = id, error = %e, "could not edit a Discord message")
            }
        }
    }
}

fn parse_id(raw: &str) -> Result<u64, ChatError> {
    raw.parse()
        .map_err(|_| ChatError::Platform(format!("'{raw}' is not a Discord id")))
}

#[async_trait]
impl ChatSink for DiscordSink {
    fn platform(&self) -> Platform {
        Platform::Discord
    }

    async fn send(&self, to: &ReplyTo, text: &str) -> Result<MessageRef, ChatError> {
        // A thread is a channel of its own on Discord.
        let channel = parse_id(to.thread.as_deref().unwrap_or(&to.channel))?;
        let id = self.rest.post_message(channel, &content(text)).await?;
        Ok(MessageRef {
            platform: Platform::Discord,
            channel: channel.to_string(),
            id: id.to_string(),
        })
    }

    async fn edit(&self, msg: &MessageRef, text: &str) -> Result<(), ChatError> {
        let channel = parse_id(&msg.channel)?;
        let id = parse_id(&msg.id)?;
        self.queue_edit(channel, id, content(text));
        Ok(())
    }

    /// A reminder carries Extend (by the profile's default lifetime) and
    /// Destroy now (which asks to confirm) buttons.
    async fn announce(&self, to: &ReplyTo, a: &Announcement) -> Result<MessageRef, ChatError> {
        let channel = parse_id(to.thread.as_deref().unwrap_or(&to.channel))?;
        let mut body = content(&a.text);
        if a.kind == AnnouncementKind::Reminder {
            body["components"] = super::cards::reminder_buttons(a.env_id);
        }
        let id = self.rest.post_message(channel, &body).await?;
        Ok(MessageRef {
            platform: Platform::Discord,
            channel: channel.to_string(),
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_content_is_clipped_to_discords_limit() {
        let text = "x".repeat(2500);
        let body = content(&text);
        assert_eq!(body["content"].as_str().unwrap().chars().count(), 2000);
    }

    #[test]
    fn ids_are_read_from_strings_as_discord_sends_them() {
        assert_eq!(snowflake(Some(&json!("123"))), Some(123));
        assert_eq!(snowflake(Some(&json!(null))), None);
    }
}
