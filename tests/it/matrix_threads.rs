//! One m.thread per environment in the status room, against a real Synapse:
//! the request, its progress, a later command from another room, the
//! reminder, the approval's outcome and the teardown at expiry all land there.

use crate::common::{Opts, TestEnv};
use crate::matrix_support::{bot_joined, wait_message, Bot, Limits, Shown, World};
use slipway::clock::ManualClock;
use slipway::domain::lifecycle::EnvState;
use std::sync::Arc;

const D: i64 = 86400;

/// Waits for a message of the bot's in the thread of `root` starting with `start`.
async fn in_thread(w: &World, root: &Shown, start: &str) -> Shown {
    wait_message(&w.bob, &w.status_room, &w.bot.user_id, start, |m| {
        m.thread.as_deref() == Some(root.event_id.as_str()) && m.text.starts_with(start)
    })
    .await
}

async fn root_of(w: &World, name: &str) -> Shown {
    let prefix = format!("📦 {name} — requested by bob (@bob:localhost)");
    let root = wait_message(
        &w.bob,
        &w.status_room,
        &w.bot.user_id,
        "the thread root",
        |m| m.text.starts_with(&prefix),
    )
    .await;
    assert_eq!(root.thread, None);
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_thread_receives_its_lifecycle_events() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts {
        provision: false,
        max_ttl: "7d",
        extra: "[lifetimes]\nreminders = [\"24h\"]\ngrace = \"10m\"\n".into(),
        ..Opts::default()
    });
    w.configure(&t, true);
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let bot = Bot::start_with_clock(&t, clock.clone()).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.status_room).await;

    w.bob
        .say(
            &w.room,
            "!env create profile:generic-service name:shop ttl:3d",
        )
        .await;

    let reply = wait_message(&w.bob, &w.room, &w.bot.user_id, "the reply", |m| {
        m.text.starts_with("🚀 Creating shop")
    })
    .await;
    assert_eq!(reply.thread, None, "the reply stays where bob asked");
    let root = root_of(&w, "shop").await;
    in_thread(&w, &root, "🚀 Creating shop").await;
    in_thread(&w, &root, "✅ create shop").await;

    // A later command from another room reports in the thread.
    w.bob.say(&w.room, "!env stop shop").await;
    in_thread(&w, &root, "✅ stop shop").await;

    // A command written in the thread is answered there.
    w.bob
        .say_in_thread(&w.status_room, &root.event_id, "!env info shop")
        .await;
    let info = in_thread(&w, &root, "shop — stopped").await;
    assert!(info.text.contains("owner bob"), "{}", info.text);

    // The reminder, a day before expiry.
    clock.advance(2 * D + 60);
    bot.wake_scheduler();
    let reminder = in_thread(&w, &root, "⏰ @bob shop expires in 24 hours").await;
    assert!(
        reminder.text.contains("!env extend shop 1d"),
        "{}",
        reminder.text
    );

    // The teardown, after expiry and grace.
    clock.advance(D + 11 * 60);
    bot.wake_scheduler();
    in_thread(&w, &root, "⌛ @bob shop expired").await;
    in_thread(&w, &root, "✅ destroy shop").await;
    assert!(bot.env("shop").await.is_none());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_and_its_outcome_land_in_the_thread() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts {
        quota: "environments = 1".into(),
        provision: false,
        ..Opts::default()
    });
    w.configure(&t, true);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.status_room).await;
    bot_joined(&w, &w.admin_room).await;
    w.bob
        .say(&w.room, "!env create profile:generic-service name:one")
        .await;
    in_thread(&w, &root_of(&w, "one").await, "✅ create one").await;

    w.bob
        .say(&w.room, "!env create profile:generic-service name:two")
        .await;
    let root = root_of(&w, "two").await;
    in_thread(&w, &root, "🕓 Request #").await;
    let card = wait_message(&w.alice, &w.admin_room, &w.bot.user_id, "the card", |m| {
        m.content.get("org.slipway.approval").is_some()
    })
    .await;
    w.alice.react(&w.admin_room, &card.event_id, "✅").await;

    let approved = in_thread(&w, &root, "✅ Request #").await;
    assert!(
        approved.text.contains("approved by alice"),
        "{}",
        approved.text
    );
    in_thread(&w, &root, "✅ create two").await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reacting_to_a_reminder_extends_or_destroys_the_environment() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(Opts {
        provision: false,
        max_ttl: "7d",
        extra: "[lifetimes]\nreminders = [\"24h\"]\ngrace = \"10m\"\n".into(),
        ..Opts::default()
    });
    w.configure(&t, true);
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let bot = Bot::start_with_clock(&t, clock.clone()).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.status_room).await;
    w.bob
        .say(
            &w.room,
            "!env create profile:generic-service name:pet ttl:3d",
        )
        .await;
    let root = root_of(&w, "pet").await;
    in_thread(&w, &root, "✅ create pet").await;
    let before = bot.env("pet").await.unwrap().expires_at.unwrap();

    clock.advance(2 * D + 60);
    bot.wake_scheduler();
    let reminder = in_thread(&w, &root, "⏰ @bob pet expires in 24 hours").await;
    assert!(
        reminder.text.contains("React ⏳ to extend it"),
        "{}",
        reminder.text
    );

    // ⏳ extends by the profile's default lifetime (generic-service: 3d).
    w.bob.react(&w.status_room, &reminder.event_id, "⏳").await;
    in_thread(&w, &root, "⏳ pet now expires in").await;
    assert_eq!(
        bot.env("pet").await.unwrap().expires_at.unwrap(),
        before + 3 * D
    );

    // 🗑️ asks first; a 🗑️ on the question destroys it.
    w.bob.react(&w.status_room, &reminder.event_id, "🗑️").await;
    let ask = in_thread(&w, &root, "⚠️ Destroy pet (CT ").await;
    assert!(
        ask.text.contains("React 🗑️ on this message to confirm"),
        "{}",
        ask.text
    );
    assert!(
        bot.env("pet").await.is_some(),
        "nothing is destroyed before the answer"
    );
    w.bob.react(&w.status_room, &ask.event_id, "🗑️").await;
    in_thread(&w, &root, "✅ destroy pet").await;
    assert!(bot.env("pet").await.is_none());

    // The old reminder never reaches another environment that took the name.
    w.bob
        .say(
            &w.room,
            "!env create profile:generic-service name:pet ttl:3d",
        )
        .await;
    let second = bot_wait_ready(&bot, "pet").await;
    let second_expiry = bot.env("pet").await.unwrap().expires_at;
    // ⌛: Matrix refuses the same reaction twice from one person.
    w.bob.react(&w.status_room, &reminder.event_id, "⌛").await;
    wait_message(&w.bob, &w.status_room, &w.bot.user_id, "the note", |m| {
        m.text
            .starts_with("ℹ️ That reminder was about an environment pet that is destroyed")
    })
    .await;
    let again = bot.env("pet").await.expect("the new pet is still there");
    assert_eq!(again.id, second);
    assert_eq!(again.state, EnvState::Ready);
    assert_eq!(again.expires_at, second_expiry, "not extended either");
    bot.stop().await;
}

/// Waits until `name` is ready; its id.
async fn bot_wait_ready(bot: &Bot, name: &str) -> i64 {
    for _ in 0..200 {
        if let Some(e) = bot.env(name).await.filter(|e| e.state == EnvState::Ready) {
            return e.id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{name} did not become ready");
}
