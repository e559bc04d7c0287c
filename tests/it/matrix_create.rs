//! The Matrix adapter against a real Synapse: `!help`, and `!env create` from
//! a room → one progress message edited (m.replace) through every step until
//! the environment is ready in fakepve, with replies as m.notice + HTML.

use crate::common::{Opts, TestEnv};
use crate::matrix_support::{bot_joined, wait_message, Bot, Limits, World};
use serde_json::json;
use slipway::domain::lifecycle::EnvState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_the_commands_as_matrix_users_type_them() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts::default());
    w.configure(&t, false);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;

    w.bob.say(&w.room, "!help").await;

    let help = wait_message(&w.bob, &w.room, &w.bot.user_id, "the help reply", |m| {
        m.text.starts_with("Commands:")
    })
    .await;
    assert!(help.text.contains("• !env create"), "{}", help.text);
    assert!(help.text.contains("!approve"), "{}", help.text);
    assert!(!help.text.contains("/env"), "{}", help.text);
    assert_eq!(help.content["msgtype"], "m.notice");
    assert_eq!(help.content["format"], "org.matrix.custom.html");
    assert!(
        help.content["formatted_body"]
            .as_str()
            .unwrap()
            .starts_with("<b>Commands:</b><br>"),
        "{}",
        help.content
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_edits_one_message_through_its_steps_until_ready() {
    let w = World::new(Limits::Raised).await;
    // Tasks take real time, so that progress is edited while the job runs.
    let t = TestEnv::new(Opts {
        provision: false,
        time_scale: 0.1,
        ..Opts::default()
    });
    t.pve.set("ct_secs", json!(5)).await;
    w.configure(&t, false);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;

    w.bob
        .say(&w.room, "!env create profile:web-app name:shop cpu:2")
        .await;

    let reply = wait_message(&w.bob, &w.room, &w.bot.user_id, "the queued reply", |m| {
        m.text.starts_with("🚀 Creating shop")
    })
    .await;
    assert_eq!(reply.content["msgtype"], "m.notice");
    let progress = wait_message(&w.bob, &w.room, &w.bot.user_id, "shop ready", |m| {
        m.text.starts_with("✅ create shop")
    })
    .await;
    assert!(
        progress.edits >= 2,
        "the progress message was edited only {} times",
        progress.edits
    );
    assert!(progress.text.contains("✓ create"), "{}", progress.text);
    let env = bot.env("shop").await.expect("shop exists");
    assert_eq!(env.state, EnvState::Ready);
    let ct = t.pve.guest(env.vmid.unwrap()).await.expect("a container");
    assert_eq!(ct["status"], "running");
    assert_eq!(ct["config"]["cores"], json!(2));

    // The edits replaced the original: intermediate states were shown first.
    let events = w.bob.events(&w.room).await;
    let edits: Vec<&str> = events
        .iter()
        .filter(|e| e["content"]["m.relates_to"]["rel_type"] == "m.replace")
        .filter(|e| e["content"]["m.relates_to"]["event_id"] == progress.event_id.as_str())
        .filter_map(|e| e["content"]["m.new_content"]["body"].as_str())
        .collect();
    assert!(
        edits.iter().any(|b| b.starts_with("⏳ create shop")),
        "{edits:?}"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_in_no_team_is_told_so_and_nothing_is_created() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts::default());
    w.configure(&t, false);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;

    w.eve
        .say(&w.room, "!env create profile:web-app name:nope")
        .await;
    w.eve
        .say(&w.room, "just chatting, !env list is not a command")
        .await;

    let refusal = wait_message(&w.eve, &w.room, &w.bot.user_id, "the refusal", |m| {
        m.text.starts_with("⛔")
    })
    .await;
    assert!(
        refusal.text.contains("is not in any team"),
        "{}",
        refusal.text
    );
    assert!(bot.env("nope").await.is_none());
    assert!(t.pve.guests().await.is_empty());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_with_an_access_token_answers_as_that_device() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts::default());
    w.configure(&t, false);
    std::fs::write(t.dir.path().join("matrix-token"), &w.bot.token).unwrap();
    t.edit_config(
        r#"password_file = "matrix-password""#,
        r#"access_token_file = "matrix-token""#,
    );
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;

    w.bob.say(&w.room, "!help").await;

    wait_message(&w.bob, &w.room, &w.bot.user_id, "the help reply", |m| {
        m.text.starts_with("Commands:")
    })
    .await;
    // No new login: the token's own device is the bot's only one.
    assert_eq!(w.bot.devices().await.len(), 1);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slipway_run_starts_the_matrix_adapter_and_stops_on_sigterm() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts::default());
    w.configure(&t, false);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "--config"])
        .arg(&t.config_path)
        .env(
            "SLIPWAY_LOG",
            std::env::var("SLIPWAY_LOG").unwrap_or_else(|_| "off".into()),
        )
        .spawn()
        .unwrap();
    bot_joined(&w, &w.room).await;

    w.bob.say(&w.room, "!help").await;
    wait_message(&w.bob, &w.room, &w.bot.user_id, "the help reply", |m| {
        m.text.starts_with("Commands:")
    })
    .await;

    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "slipway run exited with {status}");
}
