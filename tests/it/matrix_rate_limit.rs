//! Rate limits against a real Synapse with its production message limit for
//! the bot (0.2 messages/s after a burst of 10): progress edits hit
//! M_LIMIT_EXCEEDED, the adapter waits as long as Synapse says and the
//! coalesced final state still arrives. With the bot's limit lifted through
//! the admin API, the same flow never hits the limit.

use crate::common::{Opts, TestEnv};
use crate::matrix_support::{bot_joined, wait_message, Bot, Limits, World};
use serde_json::json;

/// How often Synapse answered the bot with 429 (from its access log).
fn limited(w: &World) -> usize {
    std::fs::read_to_string(w.synapse.dir.path().join("synapse.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("{@slipway:localhost}") && l.contains(" 429 "))
        .count()
}

async fn world() -> (World, TestEnv) {
    let w = World::new(Limits::ProductionMessages).await;
    // The people are not what is tested here.
    for p in [&w.bob.user_id, &w.alice.user_id] {
        w.alice.lift_rate_limit(p).await;
    }
    let t = TestEnv::new(Opts {
        provision: false,
        time_scale: 0.1,
        ..Opts::default()
    });
    t.pve.set("ct_secs", json!(4)).await;
    w.configure(&t, false);
    (w, t)
}

async fn create_two(w: &World) {
    for name in ["a1", "a2"] {
        w.bob
            .say(
                &w.room,
                &format!("!env create profile:generic-service name:{name}"),
            )
            .await;
    }
    for name in ["a1", "a2"] {
        let done = format!("✅ create {name}");
        wait_message(&w.bob, &w.room, &w.bot.user_id, &done, |m| {
            m.text.starts_with(&done)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_bot_waits_and_the_final_state_arrives() {
    let (w, t) = world().await;
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;

    create_two(&w).await;

    assert!(
        limited(&w) > 0,
        "the bot was never rate limited, so this test tested nothing"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_limit_lifted_the_bot_is_never_limited() {
    let (w, t) = world().await;
    w.alice.lift_rate_limit(&w.bot.user_id).await;
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;

    create_two(&w).await;

    assert_eq!(limited(&w), 0);
    bot.stop().await;
}
