//! What every chat adapter shares: the [`Inbound`] event an adapter builds from
//! a platform's message, the [`Reply`] it gets back, where progress goes
//! ([`ReplyTo`]), and the [`ChatSink`] trait through which the notifier posts
//! and edits messages. Adapters translate; they decide nothing.

pub mod console;
pub mod discord;
pub mod matrix;
pub mod notifier;
pub mod render;

use crate::domain::team::{Actor, Platform};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A chat event that asks Slipway to do something.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub actor: Actor,
    /// The command line as typed (`/env create …`, `!env create …`).
    pub text: String,
    /// The platform's id of the event: a retried event never does the work twice.
    pub event_id: String,
    /// Where replies and progress go.
    pub reply_to: ReplyTo,
}

/// A conversation: where a reply or progress message is posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub platform: Platform,
    pub channel: String,
    #[serde(default)]
    pub thread: Option<String>,
    /// Discord: the slash command this came from. While its token is valid
    /// (kept in memory only, never stored), progress is posted as the
    /// command's follow-up, which does not spend the channel's message budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<String>,
}

impl ReplyTo {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(raw: &str) -> Option<ReplyTo> {
        serde_json::from_str(raw).ok()
    }
}

/// Slipway's answer to an inbound command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub text: String,
    /// Errors and private details: ephemeral where the platform allows it.
    pub private: bool,
    /// A job this command queued (the console waits for it; adapters follow it).
    pub job: Option<i64>,
    /// An approval request that admins must see.
    pub approval: Option<i64>,
}

impl Reply {
    pub fn public(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ..Reply::default()
        }
    }

    pub fn private(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            private: true,
            ..Reply::default()
        }
    }
}

/// A message Slipway owns and edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub platform: Platform,
    pub channel: String,
    pub id: String,
}

/// A chat adapter failed to deliver.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    #[error("rate limited; retry after {0:?}")]
    RateLimited(std::time::Duration),
    #[error("chat platform error: {0}")]
    Platform(String),
}

/// A request decided through some platform (or the console): every adapter
/// edits its own approval card and tells its requester, wherever the
/// decision was made.
#[derive(Debug, Clone)]
pub struct Decision {
    pub approval: i64,
    pub by: Actor,
    /// The public answer of the deciding command.
    pub text: String,
    /// Where the deciding command was typed.
    pub decided_in: ReplyTo,
}

/// The channel decisions travel on.
pub type DecisionBus = tokio::sync::broadcast::Sender<Decision>;

/// Runs `handle` for every decision until `cancel`; decisions a slow
/// receiver missed are logged and skipped.
pub async fn each_decision<F, Fut>(
    mut rx: tokio::sync::broadcast::Receiver<Decision>,
    cancel: tokio_util::sync::CancellationToken,
    mut handle: F,
) where
    F: FnMut(Decision) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let decision = tokio::select! {
            ev = rx.recv() => match ev {
                Ok(d) => d,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "approval cards: decisions were missed");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            _ = cancel.cancelled() => return,
        };
        handle(decision).await;
    }
}

/// The chat sinks of every configured platform.
pub type Sinks = std::sync::Arc<std::collections::HashMap<Platform, std::sync::Arc<dyn ChatSink>>>;

/// What a lifecycle announcement is about, so an adapter can add its own
/// controls (Discord puts Extend / Destroy buttons under a reminder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncementKind {
    /// An environment's lifetime ends soon.
    Reminder,
    /// Anything else: expiry, drift, teardown.
    Notice,
}

/// A message about an environment, posted where its lifecycle events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub text: String,
    pub env_id: i64,
    pub kind: AnnouncementKind,
}

/// Posts an announcement to the conversation `reply_to` (JSON of a [`ReplyTo`])
/// if its platform is connected; delivery problems are logged, never fatal.
pub async fn announce(sinks: &Sinks, reply_to: Option<&str>, a: &Announcement) {
    let Some(to) = reply_to.and_then(ReplyTo::from_json) else {
        return;
    };
    let Some(sink) = sinks.get(&to.platform) else {
        return;
    };
    for attempt in 0..3 {
        match sink.announce(&to, a).await {
            Ok(_) => return,
            Err(ChatError::RateLimited(wait)) if attempt < 2 => tokio::time::sleep(wait).await,
            Err(e) => {
                tracing::warn!(error = %e, "could not post an announcement");
                return;
            }
        }
    }
}

/// Posting and editing messages on one platform.
#[async_trait]
pub trait ChatSink: Send + Sync {
    fn platform(&self) -> Platform;
    async fn send(&self, to: &ReplyTo, text: &str) -> Result<MessageRef, ChatError>;
    async fn edit(&self, msg: &MessageRef, text: &str) -> Result<(), ChatError>;

    /// Posts a lifecycle announcement; by default as plain text.
    async fn announce(&self, to: &ReplyTo, a: &Announcement) -> Result<MessageRef, ChatError> {
        self.send(to, &a.text).await
    }
}
