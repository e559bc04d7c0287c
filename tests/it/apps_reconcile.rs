//! The reconcile loop against a real dockerd: a container with Slipway's
//! labels that no live app accounts for (its app is gone, or it is left over
//! beside the one that serves) is reported, then removed after the grace
//! period; a container without Slipway's labels is never touched; an app
//! whose container was removed or stopped behind Slipway's back is reported
//! as drift in its thread, once, and as matching again once it does.

use crate::apps_support::*;
use crate::common::{job_of, Opts, Running};
use slipway::clock::ManualClock;
use slipway::domain::lifecycle::JobState;
use slipway::provider::docker::{
    DockerHosts, LABEL_APP, LABEL_APP_ID, LABEL_OWNER, LABEL_TEAM, OWNER,
};
use std::sync::Arc;
use std::time::Duration;

fn with_grace() -> Opts {
    Opts {
        extra: "[reconcile]\ninterval = \"1h\"\norphan_grace = \"30m\"\n".into(),
        ..Opts::default()
    }
}

async fn deploy(s: &Running, name: &str) -> String {
    let reply = s
        .say(
            "bob",
            &format!("/app deploy image:slipway-test/web:v1 name:{name} env:GREETING=hi"),
        )
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let id = app_id(s, name).await;
    s.dispatcher
        .store
        .app(id)
        .await
        .unwrap()
        .unwrap()
        .container
        .expect("a serving container")
}

async fn audited(s: &Running, outcome: &'static str) -> i64 {
    match outcome {
        "reported" => s.count("SELECT COUNT(*) FROM audit WHERE action = 'reconcile.app_orphan' AND outcome = 'reported'").await,
        _ => s.count("SELECT COUNT(*) FROM audit WHERE action = 'reconcile.app_orphan' AND outcome = 'removed'").await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_orphans_are_reported_then_removed_after_grace_and_unlabelled_containers_never_touched(
) {
    let w = World::new(false, with_grace()).await;
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = w.env.start_with_clock(clock.clone());
    let docker = DockerHosts::new(s.dispatcher.config.docker.clone());
    let serving = deploy(&s, "shop").await;
    let shop = app_id(&s, "shop").await.to_string();

    // Someone works on the Docker host by hand.
    let ghost = w
        .dockerd
        .run_by_hand(
            &docker,
            "slipway-app-999-1",
            &[
                (LABEL_OWNER, OWNER),
                (LABEL_APP_ID, "999"),
                (LABEL_APP, "ghost"),
                (LABEL_TEAM, "web"),
            ],
        )
        .await;
    let leftover = w
        .dockerd
        .run_by_hand(
            &docker,
            "slipway-app-shop-leftover",
            &[
                (LABEL_OWNER, OWNER),
                (LABEL_APP_ID, &shop),
                (LABEL_APP, "shop"),
                (LABEL_TEAM, "web"),
            ],
        )
        .await;
    let mine = w
        .dockerd
        .run_by_hand(&docker, "not-slipway", &[("maintainer", "ops")])
        .await;
    let copycat = w
        .dockerd
        .run_by_hand(
            &docker,
            "copycat",
            &[
                (LABEL_OWNER, OWNER),
                (LABEL_APP_ID, "998"),
                (LABEL_TEAM, "a-team-slipway-does-not-have"),
            ],
        )
        .await;

    let reconciler = s.app.as_ref().unwrap().reconciler();
    let first = reconciler.pass().await.unwrap();
    let mut orphans = first.app_orphans.clone();
    orphans.sort();
    assert_eq!(
        orphans,
        vec![format!("local/{ghost}"), format!("local/{leftover}")],
        "{first:?}"
    );
    assert!(
        first.apps_removed.is_empty(),
        "removed before the grace period"
    );
    assert!(first.apps_drifted.is_empty(), "{first:?}");
    assert_eq!(audited(&s, "reported").await, 2);

    // A second pass within the grace period reports nothing twice and removes nothing.
    clock.advance(29 * 60);
    let second = reconciler.pass().await.unwrap();
    assert!(second.apps_removed.is_empty(), "{second:?}");
    assert_eq!(audited(&s, "reported").await, 2);
    assert_eq!(w.dockerd.all_containers().len(), 5);

    clock.advance(2 * 60);
    let third = reconciler.pass().await.unwrap();
    let mut removed = third.apps_removed.clone();
    removed.sort();
    assert_eq!(
        removed,
        vec![format!("local/{ghost}"), format!("local/{leftover}")]
    );
    assert!(w.dockerd.inspect(&docker, &ghost).await.is_none());
    assert!(w.dockerd.inspect(&docker, &leftover).await.is_none());
    for untouched in [&mine, &copycat, &serving] {
        let c = w.dockerd.inspect(&docker, untouched).await;
        assert!(
            c.is_some_and(|c| c.running()),
            "{untouched} was touched by the reconcile loop"
        );
    }
    assert_eq!(audited(&s, "removed").await, 2);

    // Nothing is left to report, and the app still serves.
    let fourth = reconciler.pass().await.unwrap();
    assert!(fourth.app_orphans.is_empty() && fourth.apps_removed.is_empty());
    assert!(s
        .say("bob", "/app info shop")
        .await
        .text
        .contains("live: running"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_whose_container_was_removed_or_stopped_behind_slipways_back_has_drifted() {
    let w = World::new(false, with_grace()).await;
    let s = w.env.start();
    let docker = DockerHosts::new(s.dispatcher.config.docker.clone());
    let shop = deploy(&s, "shop").await;
    let cart = deploy(&s, "cart").await;
    let local = docker.host("local", None).unwrap().containers;

    local.remove(&shop, Duration::from_secs(2)).await.unwrap();
    local.stop(&cart, Duration::from_secs(2)).await.unwrap();
    let reconciler = s.app.as_ref().unwrap().reconciler();
    let first = reconciler.pass().await.unwrap();

    assert_eq!(
        first.apps_drifted,
        vec!["shop".to_string(), "cart".to_string()]
    );
    assert!(first.app_orphans.is_empty(), "{first:?}");
    let msg = s.wait_for_message("shop has drifted").await;
    assert!(
        msg.contains(&format!(
            "its container {shop} is missing from Docker host local"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("/app update shop image:slipway-test/web:v1 deploys it again"),
        "{msg}"
    );
    let msg = s.wait_for_message("cart has drifted").await;
    assert!(
        msg.contains(&format!(
            "its container {cart} is exited, but it should be running"
        )),
        "{msg}"
    );
    let info = s.say("bob", "/app info shop").await.text;
    assert!(info.contains("drift: its container"), "{info}");
    assert!(info.contains("is missing on the host"), "{info}");

    // Reported once; nothing is repaired behind the owner's back.
    let second = reconciler.pass().await.unwrap();
    assert!(second.apps_drifted.is_empty(), "{second:?}");
    assert_eq!(s.messages_with("has drifted"), 2);
    assert!(!w.dockerd.inspect(&docker, &cart).await.unwrap().running());

    // The owner acts on the advice: both match again.
    let restart = s.say("bob", "/app restart cart").await;
    assert_eq!(
        s.finished(job_of(&restart)).await.state,
        JobState::Succeeded
    );
    let update = s
        .say("bob", "/app update shop image:slipway-test/web:v2")
        .await;
    assert_eq!(s.finished(job_of(&update)).await.state, JobState::Succeeded);
    reconciler.pass().await.unwrap();
    s.wait_for_message("cart matches Docker again").await;
    s.wait_for_message("shop matches Docker again").await;
    let info = s.say("bob", "/app info shop").await.text;
    assert!(!info.contains("drift"), "{info}");
    assert!(info.contains("live: running"), "{info}");
    s.stop().await;
}
