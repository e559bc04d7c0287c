//! The status thread of an environment on Discord: its progress message, an
//! event per lifecycle job with Start / Stop / Destroy buttons, Destroy asking
//! to confirm, and the thread archived after teardown.

use crate::discord_support::*;
use serde_json::{json, Value};
use slipway::domain::lifecycle::EnvState;

fn text(m: &Value) -> String {
    m["content"].as_str().unwrap_or_default().to_string()
}

/// The newest message in `thread` starting with `prefix`, waiting for it.
async fn event(d: &DiscordEnv, thread: u64, prefix: &str) -> Value {
    d.rest
        .wait_for(prefix, 15, |r| {
            r.messages_in(thread)
                .iter()
                .any(|m| text(m).starts_with(prefix))
        })
        .await;
    d.rest
        .messages_in(thread)
        .into_iter()
        .rev()
        .find(|m| text(m).starts_with(prefix))
        .unwrap()
}

fn ids(m: &Value) -> Vec<String> {
    m["components"][0]["components"]
        .as_array()
        .map(|b| {
            b.iter()
                .map(|b| b["custom_id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thread_follows_an_environment_from_request_to_teardown() {
    let d = DiscordEnv::start(Setup::default()).await;
    d.interact(&command(
        &bob(),
        "env",
        "create",
        &[("profile", 3, json!("ci-app")), ("name", 3, json!("shop"))],
    ))
    .await;
    d.rest
        .wait_for("the thread", 10, |r| {
            !r.calls("POST", "/channels/{channel_id}/messages")
                .is_empty()
        })
        .await;
    let thread: u64 = d.rest.calls("POST", "/channels/{channel_id}/messages")[0]
        .path
        .split('/')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let ready = event(&d, thread, "🟢 shop: ready").await;
    let env = d.store().env_by_name("shop".into()).await.unwrap().unwrap();
    assert_eq!(
        ids(&ready),
        vec![
            format!("env:stop:{}", env.id),
            format!("env:destroy:{}", env.id)
        ]
    );

    // /env stop typed in another channel still reports into the thread.
    d.interact(&command(
        &bob(),
        "env",
        "stop",
        &[("name", 3, json!("shop"))],
    ))
    .await;
    let stopped = event(&d, thread, "⏹️ shop: stopped").await;
    // The stop job's progress is in the thread too.
    event(&d, thread, "✅ stop shop").await;
    assert!(
        d.rest.messages_in(GENERAL).is_empty(),
        "{:?}",
        d.rest.messages_in(GENERAL)
    );
    assert_eq!(
        ids(&stopped),
        vec![
            format!("env:start:{}", env.id),
            format!("env:destroy:{}", env.id)
        ]
    );

    // Start from the thread's button.
    let start = click(&bob(), &stopped, &format!("env:start:{}", env.id));
    assert_eq!(d.interact(&start).await, json!({"type": 6}));
    event(&d, thread, "▶️ shop: started").await;
    assert_eq!(
        d.store().env(env.id).await.unwrap().unwrap().state,
        EnvState::Ready
    );

    // Someone from another team may not press them.
    let theirs = click(&carol(), &stopped, &format!("env:stop:{}", env.id));
    d.interact(&theirs).await;
    d.rest
        .wait_for("carol's refusal", 10, |r| {
            r.calls("POST", "/webhooks/{webhook_id}/{webhook_token}")
                .iter()
                .any(|c| c.path.ends_with(theirs["token"].as_str().unwrap()))
        })
        .await;
    let refusal = d
        .rest
        .calls("POST", "/webhooks/{webhook_id}/{webhook_token}")
        .into_iter()
        .find(|c| c.path.ends_with(theirs["token"].as_str().unwrap()))
        .unwrap();
    assert_eq!(refusal.body["flags"], 64);

    // Destroy asks first, privately; only the confirmation destroys.
    let confirm = d
        .interact(&click(&bob(), &stopped, &format!("env:destroy:{}", env.id)))
        .await;
    assert_eq!(confirm["type"], 4);
    assert_eq!(confirm["data"]["flags"], 64);
    let confirm_id = confirm["data"]["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(confirm_id, format!("env:destroy-confirmed:{}", env.id));
    assert_eq!(
        d.store().env(env.id).await.unwrap().unwrap().state,
        EnvState::Ready,
        "nothing happens before the confirmation"
    );
    let mut ephemeral = stopped.clone();
    ephemeral["id"] = json!("42");
    ephemeral["flags"] = json!(64);
    d.interact(&click(&bob(), &ephemeral, &confirm_id)).await;
    let gone = event(&d, thread, "🗑️ shop: destroyed").await;
    assert!(ids(&gone).is_empty(), "no buttons after teardown");
    assert_eq!(
        d.store().env(env.id).await.unwrap().unwrap().state,
        EnvState::Destroyed
    );
    assert!(d.env.pve.guest(env.vmid.unwrap()).await.is_none());

    d.rest
        .wait_for("the thread archived", 10, |r| {
            !r.calls("PATCH", "/channels/{channel_id}").is_empty()
        })
        .await;
    let archive = &d.rest.calls("PATCH", "/channels/{channel_id}")[0];
    assert_eq!(archive.path, format!("/channels/{thread}"));
    assert_eq!(archive.body, json!({"archived": true}));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_in_the_thread_offers_extend_and_destroy_now() {
    let d = DiscordEnv::start(Setup::default()).await;
    // A lifetime just over the 1 h reminder: it falls due a second after ready.
    d.interact(&command(
        &bob(),
        "env",
        "create",
        &[
            ("profile", 3, json!("ci-app")),
            ("name", 3, json!("soon")),
            ("ttl", 3, json!("3601s")),
        ],
    ))
    .await;
    d.rest
        .wait_for("the thread", 10, |r| {
            !r.calls("POST", "/channels/{channel_id}/messages")
                .is_empty()
        })
        .await;
    let thread: u64 = d.rest.calls("POST", "/channels/{channel_id}/messages")[0]
        .path
        .split('/')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let reminder = event(&d, thread, "⏰").await;
    assert!(
        text(&reminder).contains("soon expires in 1 hour"),
        "{reminder}"
    );
    let env = d.store().env_by_name("soon".into()).await.unwrap().unwrap();
    assert_eq!(
        ids(&reminder),
        vec![
            format!("env:extend:{}", env.id),
            format!("env:destroy:{}", env.id)
        ]
    );

    // Extend: by the profile's default lifetime (ci-app: 1d).
    let before = env.expires_at.unwrap();
    d.interact(&click(&bob(), &reminder, &format!("env:extend:{}", env.id)))
        .await;
    let started = std::time::Instant::now();
    loop {
        let now = d
            .store()
            .env(env.id)
            .await
            .unwrap()
            .unwrap()
            .expires_at
            .unwrap();
        if now == before + 86400 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not extended: {now} vs {before}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Destroy now asks to confirm first.
    let answer = d
        .interact(&click(
            &bob(),
            &reminder,
            &format!("env:destroy:{}", env.id),
        ))
        .await;
    let confirm = answer["data"]["components"][0]["components"][0]["custom_id"].clone();
    assert_eq!(
        confirm,
        json!(format!("env:destroy-confirmed:{}", env.id)),
        "{answer}"
    );
    assert_eq!(
        d.store().env(env.id).await.unwrap().unwrap().state,
        EnvState::Ready
    );
    d.stop().await;
}
