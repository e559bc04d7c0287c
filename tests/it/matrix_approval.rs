//! Approvals on Matrix against a real Synapse: a request over quota gets a card
//! in the admin room; a member's ✅ is ignored (but audited); an admin's ✅
//! provisions it, ❌ or `!deny` denies it, and the card is edited with who decided.

use crate::common::{Opts, TestEnv};
use crate::matrix_support::{
    bot_joined, eventually, shown, wait_message, Bot, Limits, Shown, World,
};
use slipway::domain::lifecycle::EnvState;

fn one_environment() -> Opts {
    Opts {
        quota: "environments = 1".into(),
        provision: false,
        ..Opts::default()
    }
}

/// Fills the quota with `one`, then asks for `two`; returns the card.
async fn request_over_quota(w: &World, bot: &Bot) -> (i64, Shown) {
    w.bob
        .say(&w.room, "!env create profile:generic-service name:one")
        .await;
    wait_message(&w.bob, &w.room, &w.bot.user_id, "one created", |m| {
        m.text.starts_with("✅ create one")
    })
    .await;
    w.bob
        .say(&w.room, "!env create profile:generic-service name:two")
        .await;
    let pending = wait_message(&w.bob, &w.room, &w.bot.user_id, "the pending reply", |m| {
        m.text.starts_with("🕓 Request #")
    })
    .await;
    assert!(
        pending.text.contains("!approve"),
        "replies use the Matrix prefix: {}",
        pending.text
    );
    let card = wait_message(&w.alice, &w.admin_room, &w.bot.user_id, "the card", |m| {
        m.content.get("org.slipway.approval").is_some()
    })
    .await;
    let id = card.content["org.slipway.approval"].as_i64().unwrap();
    assert!(card.text.contains("from bob"), "{}", card.text);
    assert!(card.text.contains("React ✅ to approve"), "{}", card.text);
    assert_eq!(
        bot.env("two").await.unwrap().state,
        EnvState::PendingApproval
    );
    (id, card)
}

async fn card_now(w: &World, card: &Shown) -> Shown {
    shown(&w.alice.events(&w.admin_room).await)
        .into_iter()
        .find(|m| m.event_id == card.event_id)
        .unwrap()
}

/// The card once the bot has edited it (at most 30 s).
async fn card_edited(w: &World, card: &Shown) -> Shown {
    eventually(30, "the card edited", || async {
        let c = card_now(w, card).await;
        if c.edits > 0 {
            Ok(c)
        } else {
            Err(c.text)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_reaction_is_ignored_and_an_admins_approves() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(one_environment());
    w.configure(&t, false);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.admin_room).await;
    let (_, card) = request_over_quota(&w, &bot).await;
    let guests = t.pve.guests().await.len();

    // bob is a member, not an admin: his ✅ changes nothing and gets no answer.
    w.bob.react(&w.admin_room, &card.event_id, "✅").await;
    eventually(30, "the refusal audited", || async {
        match bot
            .count("SELECT COUNT(*) FROM audit WHERE outcome = 'refused' AND actor = 'matrix:@bob:localhost'")
            .await
        {
            1 => Ok(()),
            n => Err(format!("{n} refused rows")),
        }
    })
    .await;
    // A reply would follow the audit at once; give it time to show up.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let from_bot = shown(&w.alice.events(&w.admin_room).await)
        .into_iter()
        .filter(|m| m.sender == w.bot.user_id)
        .count();
    assert_eq!(from_bot, 1, "only the card, no answer to bob's reaction");
    assert_eq!(card_now(&w, &card).await.edits, 0);
    assert_eq!(
        bot.env("two").await.unwrap().state,
        EnvState::PendingApproval
    );
    assert_eq!(t.pve.guests().await.len(), guests);

    w.alice.react(&w.admin_room, &card.event_id, "✅️").await;

    let edited = card_edited(&w, &card).await;
    assert!(
        edited
            .text
            .starts_with("✅ Approved by alice (@alice:localhost)"),
        "{}",
        edited.text
    );
    wait_message(&w.bob, &w.room, &w.bot.user_id, "two created", |m| {
        m.text.starts_with("✅ create two")
    })
    .await;
    let env = bot.env("two").await.unwrap();
    assert_eq!(env.state, EnvState::Ready);
    assert_eq!(
        t.pve.guest(env.vmid.unwrap()).await.unwrap()["status"],
        "running"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_cross_denies_and_the_card_says_who() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(one_environment());
    w.configure(&t, false);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.admin_room).await;
    let (_, card) = request_over_quota(&w, &bot).await;
    let guests = t.pve.guests().await.len();

    w.alice.react(&w.admin_room, &card.event_id, "❌").await;

    let edited = card_edited(&w, &card).await;
    assert!(
        edited.text.starts_with("🚫 Denied by alice"),
        "{}",
        edited.text
    );
    assert!(edited.text.contains("reacted with ❌"), "{}", edited.text);
    assert!(bot.env("two").await.is_none());
    assert_eq!(
        bot.count("SELECT COUNT(*) FROM environments WHERE name = 'two' AND state = 'denied'")
            .await,
        1
    );
    assert_eq!(t.pve.guests().await.len(), guests);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_deny_with_a_reason_edits_the_card_too() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(one_environment());
    w.configure(&t, false);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.admin_room).await;
    let (id, card) = request_over_quota(&w, &bot).await;

    w.alice
        .say(&w.admin_room, &format!("!deny {id} budget is spent"))
        .await;

    let reply = wait_message(
        &w.alice,
        &w.admin_room,
        &w.bot.user_id,
        "the deny reply",
        |m| m.text.starts_with("🚫 Request"),
    )
    .await;
    assert!(reply.text.contains("budget is spent"), "{}", reply.text);
    let edited = card_edited(&w, &card).await;
    assert!(
        edited.text.starts_with("🚫 Denied by alice"),
        "{}",
        edited.text
    );
    assert!(edited.text.contains("budget is spent"), "{}", edited.text);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_on_another_platform_edits_the_matrix_card() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(one_environment());
    w.configure(&t, false);
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.admin_room).await;
    let (id, card) = request_over_quota(&w, &bot).await;

    // alice denies it from the console, not from Matrix.
    let console = crate::common::console_inbound(
        &bot.dispatcher.config,
        "alice",
        &format!("/deny id:{id} \"reason:decided at the console\""),
    );
    let reply = bot.dispatcher.handle(&console).await;
    assert!(reply.text.starts_with("🚫 Request"), "{}", reply.text);

    let edited = card_edited(&w, &card).await;
    assert!(
        edited.text.starts_with("🚫 Denied by alice (alice)"),
        "{}",
        edited.text
    );
    assert!(
        edited.text.contains("decided at the console"),
        "{}",
        edited.text
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_level_binding_counts_only_in_its_room() {
    let w = World::new(Limits::Raised).await;
    let t = TestEnv::new(one_environment());
    w.configure(&t, false);
    // alice is an admin by her power level in the admin room, not by her id.
    t.edit_config(
        &format!(r#"matrix = ["{}"] }}"#, w.alice.user_id),
        &format!(r#"matrix = ["room:{}/power:100"] }}"#, w.admin_room),
    );
    let bot = Bot::start(&t).await;
    bot_joined(&w, &w.room).await;
    bot_joined(&w, &w.admin_room).await;
    let (id, card) = request_over_quota(&w, &bot).await;

    // She has power 100 in the request's room too, but that room is not bound.
    w.alice.say(&w.room, &format!("!approve {id}")).await;
    let refused = wait_message(&w.alice, &w.room, &w.bot.user_id, "the refusal", |m| {
        m.text.starts_with("⛔")
    })
    .await;
    assert!(
        refused.text.contains("for team admins only"),
        "{}",
        refused.text
    );

    w.alice.react(&w.admin_room, &card.event_id, "✅").await;
    wait_message(&w.bob, &w.room, &w.bot.user_id, "two created", |m| {
        m.text.starts_with("✅ create two")
    })
    .await;
    bot.stop().await;
}
