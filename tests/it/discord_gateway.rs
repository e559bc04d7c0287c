//! Gateway mode: serenity connects to a gateway stand-in (HELLO, IDENTIFY,
//! READY, heartbeats), receives INTERACTION_CREATE, and answers through the
//! interaction callback on the REST stand-in; one full create flow.

use crate::discord_support::gateway::Gateway;
use crate::discord_support::*;
use serde_json::json;
use slipway::domain::lifecycle::JobState;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_over_the_gateway_is_acknowledged_and_provisioned() {
    let gw = Gateway::start().await;
    let d = DiscordEnv::start(Setup {
        mode: "gateway",
        gateway: Some(gw.url.clone()),
        extra: "sync_commands_on_start = true".into(),
        ..Setup::default()
    })
    .await;
    assert!(d.endpoint.is_none(), "no inbound port in gateway mode");
    // Commands were written at start.
    assert_eq!(
        d.rest
            .calls(
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands"
            )
            .len(),
        1
    );

    let start = Instant::now();
    while !gw.ready.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no IDENTIFY; gateway saw {:?}",
            gw.received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let identify = gw
        .received
        .lock()
        .unwrap()
        .iter()
        .find(|f| f["op"] == 2)
        .cloned()
        .unwrap();
    assert_eq!(identify["d"]["token"], "Bot test-bot-token");

    let create = command(
        &bob(),
        "env",
        "create",
        &[
            ("profile", 3, json!("ci-app")),
            ("name", 3, json!("gw-shop")),
        ],
    );
    gw.dispatch("INTERACTION_CREATE", create.clone());

    let callback = format!(
        "/interactions/{}/{}/callback",
        create["id"].as_str().unwrap(),
        create["token"].as_str().unwrap()
    );
    d.rest
        .wait_for("the interaction callback", 10, |r| {
            r.requests().iter().any(|q| q.path == callback)
        })
        .await;
    let ack = d
        .rest
        .requests()
        .into_iter()
        .find(|q| q.path == callback)
        .unwrap();
    assert_eq!(ack.method, "POST");
    assert_eq!(ack.body, json!({"type": 5, "data": {"flags": 0}}));

    d.rest
        .wait_for("the reply", 10, |r| {
            !r.calls(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            )
            .is_empty()
        })
        .await;
    let job = d.store().list_jobs(None, 10).await.unwrap()[0].0.id;
    assert_eq!(d.finished(job).await.state, JobState::Succeeded);
    let env = d
        .store()
        .env_by_name("gw-shop".into())
        .await
        .unwrap()
        .unwrap();
    assert!(d.env.pve.guest(env.vmid.unwrap()).await.is_some());
    d.rest
        .wait_for("the ready event", 10, |r| {
            r.requests().iter().any(|q| {
                q.body["content"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("🟢 gw-shop: ready")
            })
        })
        .await;
    d.stop().await;
}
