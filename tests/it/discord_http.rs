//! The Discord adapter in http mode, with Discord played by stand-ins: signed
//! interactions posted to the endpoint, every REST call checked against
//! Discord's OpenAPI spec, fakepve behind.

use crate::discord_support::*;
use serde_json::{json, Value};
use slipway::domain::lifecycle::{EnvState, JobState};

fn content(m: &Value) -> String {
    m["content"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_spec_check_refuses_what_discord_would() {
    let spec = crate::discord_support::spec::spec();
    assert!(spec.operation("POST", "/channels/1/messages").is_ok());
    assert!(spec.operation("POST", "/channels/1/nonsense").is_err());
    assert!(spec.operation("PUT", "/channels/1/messages").is_err());
    let t = "/channels/{channel_id}/messages/{message_id}";
    assert!(spec
        .check_body("PATCH", t, &json!({"content": "ok"}))
        .is_ok());
    assert!(spec.check_body("PATCH", t, &json!({"content": 5})).is_err());
    assert!(spec
        .check_body("PATCH", t, &json!({"content": "x".repeat(4001)}))
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_pong_and_a_bad_signature_gets_401() {
    let d = DiscordEnv::start(Setup::default()).await;

    let pong = d.interact(&ping()).await;
    assert_eq!(pong, json!({"type": 1}));

    // Signed with another key: refused before anything is read.
    let forged = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let create = command(
        &bob(),
        "env",
        "create",
        &[("profile", 3, json!("ci-app")), ("name", 3, json!("shop"))],
    );
    let (status, _, _) = d.post_signed(&create, &forged).await;
    assert_eq!(status, 401);
    // A body changed after signing is refused too.
    let (status, _, _) = d.post_signed(&json!({"type": 1}), &forged).await;
    assert_eq!(status, 401);
    // Correctly signed, but an hour ago: a captured request replayed.
    let an_hour_ago = slipway::store::now() - 3600;
    let (status, answer, _) = d.post_signed_at(&create, &signing_key(), an_hour_ago).await;
    assert_eq!(status, 401, "{answer}");

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(d.rest.requests().is_empty(), "{:?}", d.rest.requests());
    assert_eq!(d.count("SELECT COUNT(*) FROM environments").await, 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_within_quota_defers_then_edits_progress_in_a_new_thread() {
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

    let create = command(
        &bob(),
        "env",
        "create",
        &[("profile", 3, json!("ci-app")), ("name", 3, json!("shop"))],
    );
    let ack = d.interact(&create).await;
    assert_eq!(ack["type"], 5, "a deferred response: {ack}");
    assert_eq!(ack["data"]["flags"], 0, "a create is public: {ack}");

    // The deferred response is replaced by the reply.
    d.rest
        .wait_for("the reply", 10, |r| {
            !r.calls(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            )
            .is_empty()
        })
        .await;
    let reply = &d.rest.calls(
        "PATCH",
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
    )[0];
    assert!(
        reply.path.contains(&format!("/webhooks/{APP}/token-")),
        "{}",
        reply.path
    );
    assert!(
        content(&reply.body).starts_with("🚀 Creating shop"),
        "{}",
        reply.body
    );

    // A status thread was opened in the status channel, named after the environment.
    let threads = d.rest.calls("POST", "/channels/{channel_id}/threads");
    assert_eq!(threads.len(), 1);
    assert_eq!(
        threads[0].path,
        format!("/channels/{STATUS_CHANNEL}/threads")
    );
    assert_eq!(threads[0].body["name"], "shop");

    let job = d.store().list_jobs(None, 10).await.unwrap()[0].0.id;
    let job = d.finished(job).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let env = d.store().env_by_name("shop".into()).await.unwrap().unwrap();
    assert_eq!(env.state, EnvState::Ready);
    assert!(
        d.env.pve.guest(env.vmid.unwrap()).await.is_some(),
        "the container exists in fakepve"
    );

    // The progress message lives in the thread: posted once, edited in place, final state last.
    d.rest
        .wait_for("the ready event", 10, |r| {
            r.calls("POST", "/channels/{channel_id}/messages").len() >= 2
        })
        .await;
    let posts = d.rest.calls("POST", "/channels/{channel_id}/messages");
    let thread_id: u64 = posts[0].path.split('/').nth(2).unwrap().parse().unwrap();
    assert_ne!(
        thread_id, STATUS_CHANNEL,
        "progress goes into the thread, not the channel"
    );
    assert!(
        posts
            .iter()
            .all(|p| p.path == format!("/channels/{thread_id}/messages")),
        "{posts:?}"
    );
    d.rest
        .wait_for("the final state", 10, |r| {
            content(&r.messages_in(thread_id)[0]).starts_with("✅ create shop: ready")
        })
        .await;
    let msgs = d.rest.messages_in(thread_id);
    let progress = &msgs[0];
    let edits: Vec<_> = d
        .rest
        .calls("PATCH", "/channels/{channel_id}/messages/{message_id}")
        .into_iter()
        .filter(|r| r.path.ends_with(progress["id"].as_str().unwrap()))
        .collect();
    assert!(!edits.is_empty(), "the progress message was edited");
    let first = content(&posts[0].body);
    assert!(first.starts_with("⏳ create shop ["), "{first}");
    assert!(first.contains(" step "), "{first}");
    let last = content(progress);
    assert!(last.starts_with("✅ create shop: ready"), "{last}");
    assert!(
        last.contains("✓ create container"),
        "steps are listed as done: {last}"
    );

    // Then the lifecycle event, with Stop / Destroy buttons for this environment.
    let event = &msgs[1];
    assert!(content(event).starts_with("🟢 shop: ready"), "{event}");
    let ids: Vec<&str> = event["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            format!("env:stop:{}", env.id),
            format!("env:destroy:{}", env.id)
        ]
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_commands_writes_the_catalog_as_valid_guild_commands() {
    let d = DiscordEnv::start(Setup::default()).await;

    let out = tokio::task::block_in_place(|| d.env.slipway(&["discord", "sync-commands"], ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&format!("commands written to guild {GUILD}")));

    let puts = d.rest.calls(
        "PUT",
        "/applications/{application_id}/guilds/{guild_id}/commands",
    );
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].path,
        format!("/applications/{APP}/guilds/{GUILD}/commands")
    );
    let cmds = puts[0].body.as_array().unwrap();
    let names: Vec<&str> = cmds.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in [
        "approve", "deny", "env", "help", "job", "jobs", "profiles", "quota",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let by = |n: &str| cmds.iter().find(|c| c["name"] == n).unwrap().clone();
    let env = by("env");
    let create = env["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "create")
        .unwrap()
        .clone();
    assert_eq!(create["type"], 1, "a subcommand");
    let opt = |n: &str| {
        create["options"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(opt("profile")["autocomplete"], true);
    assert_eq!(opt("profile")["required"], true);
    assert_eq!(opt("cpu")["type"], 4);
    assert_eq!(
        (
            opt("cpu")["min_value"].clone(),
            opt("cpu")["max_value"].clone()
        ),
        (json!(1), json!(64))
    );
    assert_eq!(opt("name")["max_length"], 63);
    assert_eq!(opt("dry-run")["type"], 5);
    assert_eq!(
        opt("team")["choices"],
        json!([{"name": "web", "value": "web"}, {"name": "data", "value": "data"}])
    );
    let info = env["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "info")
        .unwrap()
        .clone();
    assert_eq!(
        info["options"][0]["autocomplete"], true,
        "environments are autocompleted"
    );
    // Admin commands are hidden from everyone but server admins by default.
    assert_eq!(by("approve")["default_member_permissions"], 0);
    assert_eq!(by("deny")["default_member_permissions"], 0);
    assert!(by("env").get("default_member_permissions").is_none());

    // --guild overrides the configured guild.
    let out = tokio::task::block_in_place(|| {
        d.env
            .slipway(&["discord", "sync-commands", "--guild", "99"], "")
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        d.rest.calls(
            "PUT",
            "/applications/{application_id}/guilds/{guild_id}/commands"
        )[1]
        .path,
        format!("/applications/{APP}/guilds/99/commands")
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocomplete_offers_profiles_and_only_the_callers_environments() {
    let d = DiscordEnv::start(Setup::default()).await;

    let answer = d
        .interact(&autocomplete(&bob(), "env", "create", "profile", "ci"))
        .await;
    assert_eq!(answer["type"], 8);
    let values: Vec<&str> = answer["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert!(
        values.contains(&"ci-app") && values.contains(&"ci-broken-step"),
        "{values:?}"
    );
    assert!(!values.contains(&"web-app"), "{values:?}");

    // bob (team web) creates shop; carol (team data) creates lab.
    for (user, name) in [(bob(), "shop"), (carol(), "lab")] {
        d.interact(&command(
            &user,
            "env",
            "create",
            &[("profile", 3, json!("ci-app")), ("name", 3, json!(name))],
        ))
        .await;
    }
    d.rest
        .wait_for("both replies", 10, |r| {
            r.calls(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            )
            .len()
                == 2
        })
        .await;

    let answer = d
        .interact(&autocomplete(&bob(), "env", "stop", "name", ""))
        .await;
    assert_eq!(
        answer["data"]["choices"],
        json!([{"name": "shop", "value": "shop"}])
    );
    let answer = d
        .interact(&autocomplete(&carol(), "env", "info", "name", "la"))
        .await;
    assert_eq!(
        answer["data"]["choices"],
        json!([{"name": "lab", "value": "lab"}])
    );
    // In a subcommand group (/env access add) the options sit one level deeper.
    let mut grouped = autocomplete(&bob(), "env", "access", "name", "");
    let focused = grouped["data"]["options"][0]["options"].clone();
    grouped["data"]["options"][0]["type"] = json!(2);
    grouped["data"]["options"][0]["options"] =
        json!([{"name": "add", "type": 1, "options": focused}]);
    let answer = d.interact(&grouped).await;
    assert_eq!(
        answer["data"]["choices"],
        json!([{"name": "shop", "value": "shop"}])
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_private_answers_are_ephemeral_and_leave_no_thread() {
    let d = DiscordEnv::start(Setup::default()).await;

    // A create is deferred publicly; its error is moved to an ephemeral follow-up.
    let bad = command(
        &bob(),
        "env",
        "create",
        &[
            ("profile", 3, json!("ci-app")),
            ("name", 3, json!("Bad_Name")),
        ],
    );
    assert_eq!(d.interact(&bad).await["data"]["flags"], 0);
    let token = bad["token"].as_str().unwrap().to_string();
    d.rest
        .wait_for("the ephemeral error", 10, |r| {
            r.calls("POST", "/webhooks/{webhook_id}/{webhook_token}")
                .iter()
                .any(|c| c.path.ends_with(&token))
        })
        .await;
    let deleted = d.rest.calls(
        "DELETE",
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
    );
    assert_eq!(deleted.len(), 1, "the public placeholder is removed");
    let error = d
        .rest
        .calls("POST", "/webhooks/{webhook_id}/{webhook_token}")
        .remove(0);
    assert_eq!(error.body["flags"], 64);
    assert!(content(&error.body).starts_with("⚠️"), "{}", error.body);
    // The thread opened for the request is deleted again.
    d.rest
        .wait_for("the thread deleted", 10, |r| {
            !r.calls("DELETE", "/channels/{channel_id}").is_empty()
        })
        .await;
    let created = d.rest.calls("POST", "/channels/{channel_id}/threads");
    assert_eq!(created.len(), 1);
    assert_eq!(d.count("SELECT COUNT(*) FROM environments").await, 0);

    // A private command is deferred ephemerally and answered in place.
    let quota = command(&bob(), "quota", "", &[]);
    assert_eq!(
        d.interact(&quota).await,
        json!({"type": 5, "data": {"flags": 64}})
    );
    let token = quota["token"].as_str().unwrap().to_string();
    d.rest
        .wait_for("the quota", 10, |r| {
            r.calls(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            )
            .iter()
            .any(|c| c.path.contains(&token))
        })
        .await;
    let answer = d
        .rest
        .calls(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        )
        .remove(0);
    assert!(
        content(&answer.body).contains("cores 0/64"),
        "{}",
        answer.body
    );

    // Someone in no team is told so, privately.
    let stranger = User {
        id: "1999",
        name: "eve",
        roles: vec!["555"],
    };
    let list = command(&stranger, "env", "list", &[]);
    d.interact(&list).await;
    let token = list["token"].as_str().unwrap().to_string();
    d.rest
        .wait_for("the refusal", 10, |r| {
            r.calls(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            )
            .iter()
            .any(|c| c.path.contains(&token))
        })
        .await;
    let refusal = d
        .rest
        .calls(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        )
        .into_iter()
        .find(|c| c.path.contains(&token))
        .unwrap();
    assert!(
        content(&refusal.body).starts_with("⛔ eve is not in any team"),
        "{}",
        refusal.body
    );
    d.stop().await;
}
