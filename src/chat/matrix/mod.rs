//! The Matrix adapter, on matrix-sdk (sync, rate limits, end-to-end
//! encryption with its SQLite store). It translates and decides nothing: a
//! command message or a reaction on an approval card becomes an
//! [`Inbound`](crate::chat::Inbound) for the same [`Dispatcher`] every
//! platform uses, and the reply is posted as an `m.notice`.
//!
//! - [`config`]: the `[matrix]` section.
//! - [`client`]: login, the kept session, the catch-up sync and the sync loop.
//! - [`inbound`]: a room message → actor (user, room, power level) → dispatch → reply.
//! - [`threads`]: one `m.thread` per environment for its lifecycle events.
//! - [`approvals`]: cards in the approval room, ✅ / ❌ reactions, the card's edit.
//! - [`sink`]: the [`ChatSink`]: notices, `m.replace` edits, rate limits.
//! - [`format`]: HTML bodies and the command prefix in replies.

pub mod approvals;
pub mod client;
pub mod config;
pub mod format;
pub mod inbound;
pub mod reminders;
pub mod sink;
pub mod threads;

use crate::catalog::Catalog;
use crate::chat::ChatSink;
use crate::dispatch::Dispatcher;
use client::ConnectError;
use config::MatrixConfig;
use matrix_sdk::ruma::events::room::member::StrippedRoomMemberEvent;
use matrix_sdk::ruma::{MilliSecondsSinceUnixEpoch, OwnedRoomId, UserId};
use matrix_sdk::{Client, Room};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A connected Matrix bot, not yet handling events.
pub struct MatrixAdapter {
    client: Client,
    cfg: MatrixConfig,
    started: MilliSecondsSinceUnixEpoch,
    approval_room: Option<OwnedRoomId>,
    status_room: Option<OwnedRoomId>,
    words: Arc<format::Words>,
}

/// What the event handlers share. It holds no [`Client`]: handlers get theirs
/// as an argument, so the client and its handlers do not keep each other alive.
pub(crate) struct Shared {
    pub cfg: MatrixConfig,
    pub dispatcher: Dispatcher,
    /// Events older than this were sent before the bot started: never handled.
    pub started: MilliSecondsSinceUnixEpoch,
    pub approval_room: Option<OwnedRoomId>,
    pub status_room: Option<OwnedRoomId>,
    /// For writing `/env` as `!env` in replies.
    pub words: Arc<format::Words>,
}

impl Shared {
    /// An event this bot should look at: someone else's, sent after it started.
    pub fn is_new(&self, client: &Client, sender: &UserId, at: MilliSecondsSinceUnixEpoch) -> bool {
        client.user_id() != Some(sender) && at >= self.started
    }

    /// Shared wording with commands in this adapter's prefix.
    pub fn localize(&self, text: &str) -> String {
        self.words.localize(text)
    }

    /// A sink on `client` that writes commands as this adapter's users type them.
    pub fn sink(&self, client: &Client) -> sink::MatrixSink {
        sink::MatrixSink::new(client.clone(), self.words.clone())
    }
}

impl MatrixAdapter {
    /// Logs in (or restores the session), catches up without handling
    /// anything, resolves the configured rooms and joins pending invites.
    pub async fn connect(
        cfg: MatrixConfig,
        catalog: &Catalog,
    ) -> Result<MatrixAdapter, ConnectError> {
        let words = Arc::new(format::Words {
            prefix: cfg.prefix.clone(),
            groups: catalog.groups.iter().map(|g| g.name.clone()).collect(),
        });
        let started = MilliSecondsSinceUnixEpoch::now();
        let client = client::connect(&cfg).await?;
        let approval_room = match &cfg.approval_room {
            Some(r) => Some(client::resolve_room(&client, "approval_room", r).await?),
            None => None,
        };
        let status_room = match &cfg.status_room {
            Some(r) => Some(client::resolve_room(&client, "status_room", r).await?),
            None => None,
        };
        if cfg.auto_join {
            for room in client.invited_rooms() {
                join(room).await;
            }
        }
        Ok(MatrixAdapter {
            client,
            cfg,
            started,
            approval_room,
            status_room,
            words,
        })
    }

    /// The sink the notifier and scheduler post through.
    pub fn sink(&self) -> Arc<dyn ChatSink> {
        Arc::new(sink::MatrixSink::new(
            self.client.clone(),
            self.words.clone(),
        ))
    }

    /// Registers the event handlers and runs the sync loop until `cancel`.
    pub fn spawn(self, dispatcher: Dispatcher, tracker: &TaskTracker, cancel: CancellationToken) {
        let auto_join = self.cfg.auto_join;
        let decisions = dispatcher.decisions.subscribe();
        let shared = Arc::new(Shared {
            cfg: self.cfg,
            dispatcher,
            started: self.started,
            approval_room: self.approval_room,
            status_room: self.status_room,
            words: self.words,
        });
        self.client.add_event_handler_context(shared.clone());
        tracker.spawn(approvals::watch_decisions(
            shared,
            self.client.clone(),
            decisions,
            cancel.clone(),
        ));
        self.client.add_event_handler(inbound::on_message);
        self.client.add_event_handler(approvals::on_reaction);
        if auto_join {
            self.client.add_event_handler(
                |ev: StrippedRoomMemberEvent, room: Room, client: Client| async move {
                    if client.user_id() == Some(ev.state_key.as_ref()) {
                        tokio::spawn(join(room));
                    }
                },
            );
        }
        tracker.spawn(client::sync_loop(self.client, cancel));
    }
}

/// Joins an invited room; Synapse may refuse a join right after the invite,
/// so it tries a few times.
async fn join(room: Room) {
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=6 {
        match room.join().await {
            Ok(()) => {
                tracing::info!(room = %room.room_id(), "joined a room the bot was invited to");
                return;
            }
            Err(e) if attempt == 6 => {
                tracing::warn!(room = %room.room_id(), error = %e, "could not join after an invite")
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}
