//! Approvals on Discord: the card in the admin channel, its buttons, the deny
//! modal, the edit after a decision, and expiry — with Discord played by the
//! stand-ins and every REST call checked against the spec.

use crate::discord_support::*;
use serde_json::{json, Value};
use slipway::domain::lifecycle::{EnvState, JobState};

const FOLLOW_UP: &str = "/webhooks/{webhook_id}/{webhook_token}";
const ORIGINAL: &str = "/webhooks/{webhook_id}/{webhook_token}/messages/@original";

fn over_quota() -> Setup {
    Setup {
        opts: crate::common::Opts {
            provision: false,
            quota: "cores = 1, memory_mb = 262144, disk_gb = 4000, environments = 50".into(),
            ..crate::common::Opts::default()
        },
        ..Setup::default()
    }
}

fn text(m: &Value) -> String {
    m["content"].as_str().unwrap_or_default().to_string()
}

fn field(card: &Value, name: &str) -> String {
    card["embeds"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .map(|f| f["value"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn buttons(card: &Value) -> Vec<(String, bool)> {
    card["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["custom_id"].as_str().unwrap().to_string(),
                b["disabled"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// bob asks for shop with 2 cores over a 1-core quota; returns the card.
async fn request(d: &DiscordEnv) -> Value {
    let ack = d
        .interact(&command(
            &bob(),
            "env",
            "create",
            &[
                ("profile", 3, json!("ci-app")),
                ("name", 3, json!("shop")),
                ("cpu", 4, json!(2)),
            ],
        ))
        .await;
    assert_eq!(ack["type"], 5);
    d.rest
        .wait_for("the card and the reply", 10, |r| {
            !r.messages_in(ADMIN_CHANNEL).is_empty() && !r.calls("PATCH", ORIGINAL).is_empty()
        })
        .await;
    let reply = &d.rest.calls("PATCH", ORIGINAL)[0];
    assert!(
        text(&reply.body).starts_with("🕓 Request #"),
        "{}",
        reply.body
    );
    d.rest.messages_in(ADMIN_CHANNEL).remove(0)
}

/// The follow-ups sent with interaction `token`.
fn follow_ups(d: &DiscordEnv, interaction: &Value) -> Vec<Value> {
    let token = interaction["token"].as_str().unwrap();
    d.rest
        .calls("POST", FOLLOW_UP)
        .into_iter()
        .filter(|r| r.path.ends_with(token))
        .map(|r| r.body)
        .collect()
}

async fn follow_up(d: &DiscordEnv, interaction: &Value) -> Value {
    d.rest
        .wait_for("a follow-up", 10, |_| {
            !follow_ups(d, interaction).is_empty()
        })
        .await;
    follow_ups(d, interaction).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_card_refuses_others_then_one_admin_click_provisions() {
    let d = DiscordEnv::start(over_quota()).await;
    let card = request(&d).await;

    // The card says who wants what, what it does to the quota, and why it waits.
    let id = d.count("SELECT id FROM approvals").await;
    assert_eq!(card["embeds"][0]["title"], format!("Request #{id}: shop"));
    assert!(field(&card, "Requester").contains("<@1001>"), "{card}");
    assert_eq!(field(&card, "Team"), "web");
    assert_eq!(field(&card, "Profile"), "ci-app");
    assert!(field(&card, "Resources").starts_with("2 cores"), "{card}");
    assert!(
        field(&card, "Quota use (before → after)").contains("cores 0 → 2"),
        "{card}"
    );
    assert!(
        field(&card, "Why approval is needed").contains("over the team's quota"),
        "{card}"
    );
    assert_eq!(
        buttons(&card),
        vec![
            (format!("approve:{id}"), false),
            (format!("deny:{id}"), false)
        ]
    );
    // The requester waits in the environment's thread, which says so.
    assert!(d
        .rest
        .requests()
        .iter()
        .any(|r| r.template == "/channels/{channel_id}/messages"
            && text(&r.body).starts_with("🕓 Request #")));

    // A team member who is no admin, and a member of another team, are refused privately; both are audited.
    for user in [bob(), carol()] {
        let click_ = click(&user, &card, &format!("approve:{id}"));
        assert_eq!(d.interact(&click_).await, json!({"type": 6}));
        let answer = follow_up(&d, &click_).await;
        assert_eq!(answer["flags"], 64, "{answer}");
        assert!(text(&answer).starts_with("⛔"), "{answer}");
    }
    assert_eq!(
        d.count(
            "SELECT COUNT(*) FROM audit WHERE action = 'approval.approve' AND outcome = 'refused'"
        )
        .await,
        2
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM jobs").await, 0);

    // Two admins click at once (and one of them twice): exactly one decision.
    let clicks = [
        click(&alice(), &card, &format!("approve:{id}")),
        click(&dave(), &card, &format!("approve:{id}")),
        click(&alice(), &card, &format!("approve:{id}")),
    ];
    let (a, b, c) = tokio::join!(
        d.interact(&clicks[0]),
        d.interact(&clicks[1]),
        d.interact(&clicks[2])
    );
    assert!([a, b, c].iter().all(|x| *x == json!({"type": 6})));
    let mut answers = Vec::new();
    for c in &clicks {
        answers.push(follow_up(&d, c).await);
    }
    let public: Vec<&Value> = answers
        .iter()
        .filter(|a| a.get("flags").is_none())
        .collect();
    assert_eq!(public.len(), 1, "one decision: {answers:?}");
    assert!(
        text(public[0]).starts_with(&format!("✅ Request #{id} approved by")),
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| text(a).contains("was already approved"))
            .count(),
        2,
        "{answers:?}"
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM jobs").await, 1);
    assert_eq!(
        d.count(
            "SELECT COUNT(*) FROM audit WHERE action = 'approval.approve' AND outcome = 'approved'"
        )
        .await,
        1
    );

    // The card now shows the decision, with its buttons disabled.
    let card_id: u64 = card["id"].as_str().unwrap().parse().unwrap();
    d.rest
        .wait_for("the card edit", 10, |r| {
            buttons(&r.message(card_id).unwrap())
                .iter()
                .all(|(_, off)| *off)
        })
        .await;
    let decided = d.rest.message(card_id).unwrap();
    let decision = field(&decided, "Decision");
    assert!(
        decision.contains("approved by alice") || decision.contains("approved by dave"),
        "{decision}"
    );
    assert!(decision.contains("<t:"), "when: {decision}");
    // Fault 7: the decided card shows the use now, the request counted once.
    let now = field(&decided, "Quota use now");
    assert!(
        now.contains("cores 2/1") && now.contains("cores 2 of 1 (1 over)"),
        "{decided}"
    );
    assert!(!now.contains("→"), "{now}");

    // The requester is told in the environment's thread, and the environment is provisioned.
    let job = d.store().list_jobs(None, 10).await.unwrap()[0].0.id;
    assert_eq!(d.finished(job).await.state, JobState::Succeeded);
    let env = d.store().env_by_name("shop".into()).await.unwrap().unwrap();
    assert_eq!(env.state, EnvState::Ready);
    assert!(d.env.pve.guest(env.vmid.unwrap()).await.is_some());
    let thread: u64 = d
        .rest
        .requests()
        .iter()
        .find(|r| {
            r.template == "/channels/{channel_id}/messages"
                && text(&r.body).starts_with("<@1001> ✅")
        })
        .map(|r| r.path.split('/').nth(2).unwrap().parse().unwrap())
        .expect("the requester was told");
    assert_ne!(thread, ADMIN_CHANNEL);
    assert_ne!(thread, GENERAL);
    d.rest
        .wait_for("the final progress", 10, |r| {
            r.messages_in(thread)
                .iter()
                .any(|m| text(m).starts_with("✅ create shop: ready"))
        })
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_asks_for_a_reason_in_a_modal_and_tells_the_requester() {
    let d = DiscordEnv::start(over_quota()).await;
    let card = request(&d).await;
    let id = d.count("SELECT id FROM approvals").await;

    let modal_ = d
        .interact(&click(&alice(), &card, &format!("deny:{id}")))
        .await;
    assert_eq!(modal_["type"], 9, "a modal: {modal_}");
    assert_eq!(modal_["data"]["custom_id"], format!("deny:{id}"));
    assert_eq!(
        modal_["data"]["components"][0]["components"][0]["custom_id"],
        "reason"
    );
    assert_eq!(
        d.count("SELECT COUNT(*) FROM approvals WHERE state = 'pending'")
            .await,
        1,
        "nothing is decided before the reason"
    );

    let submit = modal(
        &alice(),
        ADMIN_CHANNEL,
        &format!("deny:{id}"),
        "reason",
        "use the staging cluster",
    );
    assert_eq!(d.interact(&submit).await, json!({"type": 6}));
    let answer = follow_up(&d, &submit).await;
    assert_eq!(
        text(&answer),
        format!("🚫 Request #{id} for shop denied by alice: use the staging cluster")
    );

    let card_id: u64 = card["id"].as_str().unwrap().parse().unwrap();
    d.rest
        .wait_for("the card edit", 10, |r| {
            buttons(&r.message(card_id).unwrap())
                .iter()
                .all(|(_, off)| *off)
        })
        .await;
    assert!(
        field(&d.rest.message(card_id).unwrap(), "Decision").contains("use the staging cluster")
    );
    let env = d.store().env_by_name("shop".into()).await.unwrap();
    assert!(env.is_none(), "a denied request holds no name");
    assert_eq!(
        d.count("SELECT COUNT(*) FROM environments WHERE state = 'denied'")
            .await,
        1
    );

    // The requester learns why in the thread, which is then archived.
    d.rest
        .wait_for("the thread archived", 10, |r| {
            !r.calls("PATCH", "/channels/{channel_id}").is_empty()
        })
        .await;
    let told = d
        .rest
        .requests()
        .into_iter()
        .find(|r| text(&r.body).starts_with("<@1001> 🚫"))
        .expect("the requester was told");
    assert!(text(&told.body).contains("use the staging cluster"));
    assert_eq!(told.body["allowed_mentions"]["users"], json!(["1001"]));
    let archived = &d.rest.calls("PATCH", "/channels/{channel_id}")[0];
    assert_eq!(archived.body, json!({"archived": true}));
    assert_eq!(archived.path, told.path.trim_end_matches("/messages"));

    // A second deny after the decision changes nothing.
    let again = modal(
        &dave(),
        ADMIN_CHANNEL,
        &format!("deny:{id}"),
        "reason",
        "me too",
    );
    d.interact(&again).await;
    let answer = follow_up(&d, &again).await;
    assert_eq!(answer["flags"], 64);
    assert!(text(&answer).contains("was already denied"), "{answer}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_is_refused_at_the_click_to_whoever_may_not_decide_and_no_modal_opens() {
    let d = DiscordEnv::start(over_quota()).await;
    let card = request(&d).await;
    let id = d.count("SELECT id FROM approvals").await;

    // carol is in another team; bob made the request and is no admin.
    for (who, why) in [(carol(), "admin"), (bob(), "admin")] {
        let answer = d.interact(&click(&who, &card, &format!("deny:{id}"))).await;
        assert_eq!(answer["type"], 4, "an answer, not a modal: {answer}");
        assert_eq!(answer["data"]["flags"], 64, "only they see it: {answer}");
        let said = answer["data"]["content"].as_str().unwrap_or_default();
        assert!(said.starts_with("⛔") && said.contains(why), "{said}");
    }
    assert_eq!(
        d.count("SELECT COUNT(*) FROM approvals WHERE state = 'pending'")
            .await,
        1,
        "still pending"
    );
    assert_eq!(
        d.count(
            "SELECT COUNT(*) FROM audit WHERE action = 'approval.deny' AND outcome = 'refused'"
        )
        .await,
        2
    );
    // An admin still gets the modal.
    let modal_ = d
        .interact(&click(&alice(), &card, &format!("deny:{id}")))
        .await;
    assert_eq!(modal_["type"], 9, "{modal_}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_elsewhere_edits_the_discord_card_and_tells_the_requester() {
    let d = DiscordEnv::start(over_quota()).await;
    let card = request(&d).await;
    let id = d.count("SELECT id FROM approvals").await;

    // alice denies it from the console, not from Discord.
    let dispatcher = d.app.as_ref().unwrap().dispatcher();
    let console = crate::common::console_inbound(
        &dispatcher.config,
        "alice",
        &format!("/deny id:{id} \"reason:decided at the console\""),
    );
    let reply = dispatcher.handle(&console).await;
    assert!(reply.text.starts_with("🚫 Request"), "{}", reply.text);

    let card_id: u64 = card["id"].as_str().unwrap().parse().unwrap();
    d.rest
        .wait_for("the card edit", 10, |r| {
            buttons(&r.message(card_id).unwrap())
                .iter()
                .all(|(_, off)| *off)
        })
        .await;
    assert!(field(&d.rest.message(card_id).unwrap(), "Decision").contains("decided at the console"));
    d.rest
        .wait_for("the requester told", 10, |r| {
            r.requests()
                .iter()
                .any(|q| text(&q.body).starts_with("<@1001> 🚫"))
        })
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_decides_expires() {
    let mut setup = over_quota();
    setup.extra = "approval_expiry = \"1s\"".into();
    let d = DiscordEnv::start(setup).await;
    let card = request(&d).await;
    let card_id: u64 = card["id"].as_str().unwrap().parse().unwrap();

    d.rest
        .wait_for("the card to expire", 10, |r| {
            field(&r.message(card_id).unwrap(), "Decision").contains("expired")
        })
        .await;
    assert!(buttons(&d.rest.message(card_id).unwrap())
        .iter()
        .all(|(_, off)| *off));
    assert_eq!(
        d.count("SELECT COUNT(*) FROM approvals WHERE state = 'expired'")
            .await,
        1
    );
    assert_eq!(
        d.count("SELECT COUNT(*) FROM environments WHERE state = 'denied'")
            .await,
        1
    );
    d.rest
        .wait_for("the requester told", 10, |r| {
            r.requests()
                .iter()
                .any(|q| text(&q.body).starts_with("<@1001> ⌛"))
        })
        .await;
    d.stop().await;
}
