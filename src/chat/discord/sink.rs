//! Discord's REST side: [`Rest`] sends every call the adapter makes (routes and
//! URLs from serenity, so a configured proxy applies), paces messages per
//! channel with a governor limiter and, on a 429, waits the `retry_after`
//! Discord names before it tries again. [`DiscordSink`] is the [`ChatSink`]:
//! a send posts a message and returns its reference; an edit only records the
//! latest text, and one task per channel delivers the latest state of each
//! message at the channel's pace — so 50 jobs reporting into one channel
//! coalesce into a few edits instead of a storm of 429s. The progress of a
//! slash command's job is its follow-up message while the interaction token
//! lasts: edits go through the interaction's webhook, which Discord does not
//! count against the channel's message budget.

use crate::chat::{Announcement, AnnouncementKind, ChatError, ChatSink, MessageRef, ReplyTo};
use crate::domain::team::Platform;
use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use serenity::http::{LightMethod, Request, Route};
use serenity::model::id::{ApplicationId, ChannelId, MessageId};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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

/// How long an interaction's token is used for follow-ups and their edits.
/// Discord honours it for 15 minutes; the margin keeps a slow edit in time.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// Where a queue of edits goes: a channel (bot messages, paced at the
/// channel's budget) or one interaction's webhook (its follow-ups, which
/// Discord does not count against the channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Lane {
    Channel(u64),
    Webhook(String),
}

/// Edits waiting for their lane: the latest body of each message, with the
/// channel the message is in (for the fallback when a token has expired).
#[derive(Default)]
struct Queue {
    bodies: BTreeMap<u64, (u64, Value)>,
    running: bool,
}

/// Interaction tokens, in memory only: a restart forgets them, and progress
/// then goes through the channel. Never logged, never stored.
#[derive(Default)]
struct Tokens {
    /// interaction id → (token, when the interaction arrived)
    live: HashMap<String, (SecretString, Instant)>,
    /// follow-up message id → the interaction it belongs to
    messages: HashMap<u64, String>,
}

impl Tokens {
    fn token(&self, interaction: &str) -> Option<SecretString> {
        self.live
            .get(interaction)
            .filter(|(_, at)| at.elapsed() < TOKEN_LIFETIME)
            .map(|(t, _)| t.clone())
    }

    fn forget_expired(&mut self) {
        self.live.retain(|_, (_, at)| at.elapsed() < TOKEN_LIFETIME);
        let live = &self.live;
        self.messages.retain(|_, i| live.contains_key(i));
    }
}

/// The Discord [`ChatSink`].
pub struct DiscordSink {
    rest: Arc<Rest>,
    queues: Arc<Mutex<HashMap<Lane, Queue>>>,
    tokens: Arc<Mutex<Tokens>>,
    /// The app's tracker: a shutdown waits for queued edits (the final states).
    tracker: TaskTracker,
}

impl DiscordSink {
    pub fn new(rest: Arc<Rest>, tracker: TaskTracker) -> DiscordSink {
        DiscordSink {
            rest,
            queues: Arc::default(),
            tokens: Arc::default(),
            tracker,
        }
    }

    /// Keeps a slash command's token so that the progress of the job it
    /// starts can be posted as its follow-up.
    pub fn remember_interaction(&self, interaction: &str, token: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.forget_expired();
        tokens.live.insert(
            interaction.to_string(),
            (SecretString::from(token.to_string()), Instant::now()),
        );
    }

    /// Queues `body` as the latest state of message `id` in `channel`; the
    /// lane's task sends the queue (a channel's at the channel's pace).
    fn queue_edit(&self, channel: u64, id: u64, body: Value) {
        let lane = {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            match tokens.messages.get(&id) {
                Some(i) if tokens.token(i).is_some() => Lane::Webhook(i.clone()),
                _ => Lane::Channel(channel),
            }
        };
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let q = queues.entry(lane.clone()).or_default();
            q.bodies.insert(id, (channel, body));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let (rest, queues, tokens) =
                (self.rest.clone(), self.queues.clone(), self.tokens.clone());
            self.tracker.spawn(drain(rest, queues, tokens, lane));
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

    /// Posts `body` as a follow-up of `interaction` while its token is
    /// valid: Some(message id, channel), or None to post in the channel.
    async fn follow_up(&self, interaction: &str, body: &Value) -> Option<(u64, Option<u64>)> {
        let token = {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            tokens.token(interaction)?
        };
        let answer = self
            .rest
            .call(
                "progress follow-up",
                LightMethod::Post,
                Route::WebhookFollowupMessages {
                    application_id: ApplicationId::new(self.rest.application_id.max(1)),
                    token: token.expose_secret(),
                },
                Some(body),
                None,
            )
            .await;
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            Ok(Some(msg)) => {
                let id = snowflake(Some(&msg["id"]))?;
                tokens.messages.insert(id, interaction.to_string());
                Some((id, snowflake(Some(&msg["channel_id"]))))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::info!(error = %e, "a command's follow-up failed; progress goes to its channel");
                tokens.live.remove(interaction);
                None
            }
        }
    }
}

/// Edits one follow-up through its interaction's webhook. Err(false): the
/// token is gone (expired or refused), try the channel instead.
async fn edit_follow_up(
    rest: &Rest,
    tokens: &Mutex<Tokens>,
    interaction: &str,
    id: u64,
    body: &Value,
) -> Result<(), ChatError> {
    let token = {
        let tokens = tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.token(interaction)
    };
    let Some(token) = token else {
        return Err(ChatError::Platform("the interaction token expired".into()));
    };
    let edited = rest
        .call(
            "edit progress follow-up",
            LightMethod::Patch,
            Route::WebhookFollowupMessage {
                application_id: ApplicationId::new(rest.application_id.max(1)),
                token: token.expose_secret(),
                message_id: MessageId::new(id.max(1)),
            },
            Some(body),
            None,
        )
        .await;
    if let Err(ChatError::Platform(_)) = &edited {
        let mut tokens = tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.live.remove(interaction);
    }
    edited.map(|_| ())
}

async fn drain(
    rest: Arc<Rest>,
    queues: Arc<Mutex<HashMap<Lane, Queue>>>,
    tokens: Arc<Mutex<Tokens>>,
    lane: Lane,
) {
    loop {
        let next = {
            let mut all = queues.lock().unwrap_or_else(|p| p.into_inner());
            let q = all.entry(lane.clone()).or_default();
            match q.bodies.pop_first() {
                Some(item) => item,
                None => {
                    q.running = false;
                    return;
                }
            }
        };
        let (id, (channel, body)) = next;
        let sent = match &lane {
            Lane::Webhook(interaction) => {
                match edit_follow_up(&rest, &tokens, interaction, id, &body).await {
                    // The token expired or was refused: the follow-up is the
                    // bot's own message, editable in its channel.
                    Err(ChatError::Platform(_)) => rest.edit_message(channel, id, &body).await,
                    other => other,
                }
            }
            Lane::Channel(channel) => rest.edit_message(*channel, id, &body).await,
        };
        match sent {
            Ok(()) => {}
            // Still limited after every retry: keep the state unless a newer
            // one arrived meanwhile, so the final state is not lost.
            Err(ChatError::RateLimited(_)) => {
                let mut all = queues.lock().unwrap_or_else(|p| p.into_inner());
                all.entry(lane.clone())
                    .or_default()
                    .bodies
                    .entry(id)
                    .or_insert((channel, body));
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

    /// Progress of a slash command's job without a thread of its own goes
    /// out as the command's follow-up while its token lasts; otherwise (a
    /// thread, a restart since, an expired token) as a bot message.
    async fn send(&self, to: &ReplyTo, text: &str) -> Result<MessageRef, ChatError> {
        // A thread is a channel of its own on Discord.
        let channel = parse_id(to.thread.as_deref().unwrap_or(&to.channel))?;
        let body = content(text);
        if let (None, Some(interaction)) = (&to.thread, &to.interaction) {
            if let Some((id, at)) = self.follow_up(interaction, &body).await {
                return Ok(MessageRef {
                    platform: Platform::Discord,
                    channel: at.unwrap_or(channel).to_string(),
                    id: id.to_string(),
                });
            }
        }
        let id = self.rest.post_message(channel, &body).await?;
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
