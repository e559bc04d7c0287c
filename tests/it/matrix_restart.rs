//! Sync from now on, against a real Synapse: a command sent before the bot
//! first started, or while it was stopped, is never handled; a restarted bot
//! keeps its session (same device) and does not handle old commands again.

use crate::common::{Opts, TestEnv};
use crate::matrix_support::{bot_joined, shown, wait_message, Bot, Limits, World};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_while_the_bot_was_away_are_never_handled() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    w.configure(&t, false);

    // Before the bot ever ran (it was invited, not yet joined).
    w.bob
        .say(&w.room, "!env create profile:generic-service name:zero")
        .await;
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;
    w.bob
        .say(&w.room, "!env create profile:generic-service name:one")
        .await;
    wait_message(&w.bob, &w.room, &w.bot.user_id, "one created", |m| {
        m.text.starts_with("✅ create one")
    })
    .await;
    bot.stop().await;

    // While it is stopped.
    w.bob
        .say(&w.room, "!env create profile:generic-service name:two")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bot = Bot::start(&t).await;
    w.bob
        .say(&w.room, "!env create profile:generic-service name:three")
        .await;
    wait_message(&w.bob, &w.room, &w.bot.user_id, "three created", |m| {
        m.text.starts_with("✅ create three")
    })
    .await;
    // Give a wrongly handled old command time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let said: Vec<String> = shown(&w.bob.events(&w.room).await)
        .into_iter()
        .filter(|m| m.sender == w.bot.user_id)
        .map(|m| m.text)
        .collect();
    for name in ["zero", "two"] {
        assert!(
            !said
                .iter()
                .any(|s| s.contains(&format!(" {name} ")) || s.contains(&format!(" {name}:"))),
            "{name} was handled: {said:#?}"
        );
        assert!(bot.env(name).await.is_none(), "{name} exists");
    }
    let one = said
        .iter()
        .filter(|s| s.starts_with("🚀 Creating one"))
        .count();
    assert_eq!(one, 1, "one was handled again after the restart: {said:#?}");
    assert_eq!(
        bot.count("SELECT COUNT(*) FROM environments").await,
        2,
        "only one and three"
    );

    // The session was kept: one Slipway device, not one per start.
    let devices = w.bot.devices().await;
    let slipway: Vec<_> = devices
        .iter()
        .filter(|d| d["display_name"] == "Slipway")
        .collect();
    assert_eq!(slipway.len(), 1, "{devices:#?}");
    bot.stop().await;
}
