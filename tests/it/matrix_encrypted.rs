//! An end-to-end encrypted room against a real Synapse: bob, on a matrix-sdk
//! client of his own, sends `!env create` encrypted; the bot decrypts it,
//! answers and edits its progress encrypted, and bob reads the edits through
//! to ready. On the wire every message of the bot is `m.room.encrypted`.

// matrix-sdk's sync future is deep: proving it Send needs more than the default 128.

use crate::common::{Opts, TestEnv};
use crate::matrix_support::{bot_joined, eventually, Bot, Limits, World};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
};
use matrix_sdk::ruma::RoomId;
use matrix_sdk::Client;
use serde_json::json;
use slipway::domain::lifecycle::EnvState;
use std::sync::{Arc, Mutex};

/// A message bob's client decrypted: (event id, sender, replaced event, body).
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, String)>>>;

async fn bobs_client(w: &World) -> (Client, Seen) {
    let client = Client::builder()
        .homeserver_url(&w.synapse.url)
        .build()
        .await
        .unwrap();
    client
        .matrix_auth()
        .login_username("bob", &w.bob.password)
        .initial_device_display_name("bob's test client")
        .send()
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let into = seen.clone();
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let into = into.clone();
        async move {
            let (replaces, body) = match &ev.content.relates_to {
                Some(Relation::Replacement(r)) => (
                    Some(r.event_id.to_string()),
                    r.new_content.msgtype.body().to_string(),
                ),
                _ => (None, ev.content.msgtype.body().to_string()),
            };
            into.lock().unwrap().push((
                ev.event_id.to_string(),
                ev.sender.to_string(),
                replaces,
                body,
            ));
        }
    });
    (client, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_in_an_encrypted_room_is_decrypted_answered_and_edited_encrypted() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts {
        provision: false,
        time_scale: 0.1,
        ..Opts::default()
    });
    t.pve.set("ct_secs", json!(4)).await;
    w.configure(&t, false);
    let room = w
        .alice
        .create_room(&[&w.bot.user_id, &w.bob.user_id], &[], true)
        .await;
    w.bob.join(&room).await;
    let bot = Bot::start(&t).await;
    bot_joined(&w, &room).await;

    let (client, seen) = bobs_client(&w).await;
    let syncing = {
        let c = client.clone();
        tokio::spawn(async move { c.sync(SyncSettings::default()).await })
    };
    let room_id = <&RoomId>::try_from(room.as_str()).unwrap().to_owned();
    let joined = eventually(30, "bob's client seeing the encrypted room", || async {
        match client.get_room(&room_id) {
            Some(r)
                if r.latest_encryption_state()
                    .await
                    .map(|s| s.is_encrypted())
                    .unwrap_or(false) =>
            {
                Ok(r)
            }
            _ => Err("not yet".to_string()),
        }
    })
    .await;

    joined
        .send(RoomMessageEventContent::text_plain(
            "!env create profile:web-app name:vault",
        ))
        .await
        .unwrap();

    let bot_id = w.bot.user_id.clone();
    let (ready_original, edits) =
        eventually(90, "vault ready, as bob's client shows it", || async {
            let seen = seen.lock().unwrap().clone();
            let ready = seen
                .iter()
                .find(|(_, from, replaces, body)| {
                    *from == bot_id && replaces.is_some() && body.starts_with("✅ create vault")
                })
                .and_then(|(_, _, replaces, _)| replaces.clone());
            match ready {
                Some(original) => {
                    let edits = seen
                        .iter()
                        .filter(|(_, _, r, _)| r.as_deref() == Some(original.as_str()))
                        .count();
                    Ok((original, edits))
                }
                None => Err(format!("{seen:#?}")),
            }
        })
        .await;
    assert!(edits >= 2, "{edits} edits of {ready_original}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, from, _, body)| *from == w.bot.user_id
                && body.starts_with("🚀 Creating vault")),
        "the bot answered the decrypted command"
    );
    let env = bot.env("vault").await.expect("vault exists");
    assert_eq!(env.state, EnvState::Ready);
    assert_eq!(
        t.pve.guest(env.vmid.unwrap()).await.unwrap()["status"],
        "running"
    );

    // What the homeserver saw of the bot: only ciphertext.
    let on_the_wire: Vec<String> = w
        .bob
        .events(&room)
        .await
        .into_iter()
        .filter(|e| e["sender"] == w.bot.user_id.as_str() && e.get("state_key").is_none())
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(on_the_wire.len() >= 4, "{on_the_wire:?}");
    assert!(
        on_the_wire.iter().all(|t| t == "m.room.encrypted"),
        "{on_the_wire:?}"
    );
    syncing.abort();
    bot.stop().await;
}
