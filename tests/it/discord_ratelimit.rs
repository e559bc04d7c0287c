//! Pacing on Discord: a 429 on an edit is waited out (retry_after) and the
//! final state still arrives; fifty jobs reporting into one channel stay
//! within the channel's budget, edits coalesced to the latest state; while a
//! command's token lasts its job's progress is its follow-up, which spends no
//! channel budget at all.

use crate::discord_support::*;
use serde_json::{json, Value};
use slipway::domain::lifecycle::JobState;
use std::time::Duration;

const EDIT: &str = "/channels/{channel_id}/messages/{message_id}";

/// One `/env create profile:ci-app name:NAME` interaction by bob per name.
fn creates(names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|name| {
            command(
                &bob(),
                "env",
                "create",
                &[("profile", 3, json!("ci-app")), ("name", 3, json!(name))],
            )
        })
        .collect()
}

fn text(m: &Value) -> String {
    m["content"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_edits_is_waited_out_and_the_final_state_arrives() {
    let d = DiscordEnv::start(Setup {
        opts: crate::common::Opts {
            provision: false,
            time_scale: 0.05,
            ..crate::common::Opts::default()
        },
        ..Setup::default()
    })
    .await;
    d.env.pve.set("ct_secs", json!(4)).await;
    d.rest.rate_limit("PATCH", EDIT, 3, 0.4);

    d.interact(&command(
        &bob(),
        "env",
        "create",
        &[("profile", 3, json!("ci-app")), ("name", 3, json!("shop"))],
    ))
    .await;
    d.rest
        .wait_for("a job", 10, |r| {
            !r.calls("POST", "/channels/{channel_id}/messages")
                .is_empty()
        })
        .await;
    let job = d.store().list_jobs(None, 10).await.unwrap()[0].0.id;
    assert_eq!(d.finished(job).await.state, JobState::Succeeded);

    let first = &d.rest.calls("POST", "/channels/{channel_id}/messages")[0];
    let thread: u64 = first.path.split('/').nth(2).unwrap().parse().unwrap();
    d.rest
        .wait_for("the final state", 15, |r| {
            r.messages_in(thread)
                .first()
                .is_some_and(|m| text(m).starts_with("✅ create shop: ready"))
        })
        .await;

    // Every 429 was followed by a wait of at least retry_after before the next edit.
    let edits: Vec<_> = d
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.template == EDIT)
        .collect();
    let limited: Vec<usize> = (0..edits.len())
        .filter(|i| edits[*i].status == 429)
        .collect();
    assert_eq!(limited.len(), 3, "{edits:?}");
    for i in limited {
        let next = edits.get(i + 1).expect("an edit after the 429");
        let gap = next.at.duration_since(edits[i].at);
        assert!(gap >= Duration::from_millis(390), "retried after {gap:?}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_jobs_in_one_channel_cause_no_429() {
    // Discord's budget here: 20 message calls per channel in any second.
    // Slipway paces at 6/s with a burst of 6, so no second sees more than 12.
    // (Unpaced, this run draws dozens of 429s and loses final states.)
    let d = DiscordEnv::start(Setup {
        threads: false,
        extra: "channel_rate_per_sec = 6\nchannel_burst = 6".into(),
        ..Setup::default()
    })
    .await;
    d.rest.channel_budget(20, Duration::from_secs(1));
    // Interaction tokens no longer work (as after 15 minutes or a restart):
    // progress goes to the channel as bot messages, which spend its budget.
    d.rest.expire_tokens();

    let names: Vec<String> = (0..50).map(|i| format!("app{i}")).collect();
    let bodies = creates(&names);
    let acks: Vec<_> = bodies.iter().map(|b| d.interact(b)).collect();
    for ack in futures::future::join_all(acks).await {
        assert_eq!(ack["type"], 5);
    }
    d.rest
        .wait_for("50 jobs queued", 30, |r| {
            r.calls(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            )
            .len()
                == 50
        })
        .await;
    for (job, _) in d.store().list_jobs(None, 100).await.unwrap() {
        assert_eq!(d.finished(job.id).await.state, JobState::Succeeded);
    }
    d.rest
        .wait_for("50 final states", 60, |r| {
            let msgs = r.messages_in(GENERAL);
            msgs.len() == 50 && msgs.iter().all(|m| text(m).starts_with("✅ create"))
        })
        .await;

    let calls: Vec<_> = d
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.template.starts_with("/channels/{channel_id}/messages"))
        .collect();
    assert!(
        calls.iter().all(|r| r.status != 429),
        "{} calls were rate limited",
        calls.iter().filter(|r| r.status == 429).count()
    );
    // Coalesced: far fewer edits than progress events (about ten per job).
    let edits = calls.iter().filter(|r| r.method == "PATCH").count();
    assert!(edits < 50 * 10, "{edits} edits");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_the_commands_follow_up_and_spends_no_channel_budget() {
    // Discord's real per-channel budget: 5 message calls in any 5 seconds.
    // Tasks take real time (4 PVE seconds are 0.4 s), so each follow-up is
    // edited while its job runs: with instant tasks a busy machine may post
    // it only once the job has finished, and then there is nothing to edit.
    let d = DiscordEnv::start(Setup {
        threads: false,
        opts: crate::common::Opts {
            provision: false,
            time_scale: 0.1,
            ..crate::common::Opts::default()
        },
        ..Setup::default()
    })
    .await;
    d.rest.channel_budget(5, Duration::from_secs(5));
    d.env.pve.set("ct_secs", json!(4)).await;
    let names: Vec<String> = (0..20).map(|i| format!("web{i}")).collect();
    let bodies = creates(&names);
    futures::future::join_all(bodies.iter().map(|b| d.interact(b))).await;
    d.rest
        .wait_for("20 final states", 60, |r| {
            let msgs = r.messages_in(GENERAL);
            msgs.len() == 20 && msgs.iter().all(|m| text(m).starts_with("✅ create"))
        })
        .await;
    for name in &names {
        let msgs = d.rest.messages_in(GENERAL);
        assert!(
            msgs.iter()
                .any(|m| text(m).starts_with(&format!("✅ create {name}: ready"))),
            "no final state for {name}"
        );
    }
    let requests = d.rest.requests();
    let channel_calls = requests
        .iter()
        .filter(|r| r.template.starts_with("/channels/{channel_id}/messages"))
        .count();
    assert_eq!(channel_calls, 0, "progress spent the channel's budget");
    assert!(requests.iter().all(|r| r.status != 429));
    // Posted once per job as a follow-up, then edited through the webhook.
    assert_eq!(
        d.rest
            .calls("POST", "/webhooks/{webhook_id}/{webhook_token}")
            .len(),
        20
    );
    assert!(!d
        .rest
        .calls(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
        )
        .is_empty());
    d.stop().await;
}
