//! `/app stop` and `/app start` against a real dockerd and a real Caddy: only
//! the owner or a team admin may use them; a stopped app's container is not
//! running, `/app info` and `/app list` say it is stopped, and the reconcile
//! loop does not call that drift; started again, it runs and Caddy routes its
//! domain to it once more.

use crate::apps_support::*;
use crate::common::{job_of, Opts};
use slipway::domain::lifecycle::{EnvState, JobState};
use slipway::provider::docker::DockerHosts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_app_is_not_running_and_says_so_until_it_is_started_again() {
    let w = World::new(true, Opts::default()).await;
    let s = w.env.start();
    let docker = DockerHosts::new(s.dispatcher.config.docker.clone());
    let reply = s
        .say(
            "alice",
            &format!(
                "/app deploy image:slipway-test/web:v1 name:shop env:GREETING=hi domain:{DOMAIN}"
            ),
        )
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let id = app_id(&s, "shop").await;
    assert_eq!(w.caddy().get(DOMAIN).await, (200, "hi from v1\n".into()));

    // A member who is neither the owner nor an admin may not stop it.
    let refused = s.say("bob", "/app stop shop").await;
    assert!(refused.job.is_none(), "{}", refused.text);
    assert!(
        refused
            .text
            .contains("belongs to alice; only its owner or an admin of team web may"),
        "{}",
        refused.text
    );

    // An admin of the team may.
    let stop = s.say("dave", "/app stop shop").await;
    let job = s.finished(job_of(&stop)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let containers = w.dockerd.app_containers(&docker, id).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(!containers[0].running(), "{:?}", containers[0].state);
    assert_eq!(s.env("shop").await.state, EnvState::Stopped);
    let info = s.say("alice", "/app info shop").await.text;
    assert!(info.contains("📦 shop — stopped — team web"), "{info}");
    assert!(info.contains("live: exited"), "{info}");
    let list = s.say("bob", "/app list").await.text;
    assert!(
        list.contains("shop — stopped — slipway-test/web:v1"),
        "{list}"
    );
    s.wait_for_message("stopped; its quota stays reserved. /app start shop starts it again")
        .await;
    assert_eq!(w.caddy().get(DOMAIN).await.0, 502, "the route stays");
    let quota = s.say("bob", "/quota").await.text;
    assert!(quota.contains("cores 1/"), "{quota}");

    // Stopped on purpose is not drift; stopping twice or restarting is refused.
    let pass = s.app.as_ref().unwrap().reconciler().pass().await.unwrap();
    assert!(pass.apps_drifted.is_empty(), "{pass:?}");
    let again = s.say("alice", "/app stop shop").await;
    assert!(
        again
            .text
            .contains("shop is stopped, so it cannot stop now"),
        "{}",
        again.text
    );
    let restart = s.say("alice", "/app restart shop").await;
    assert!(restart.job.is_none(), "{}", restart.text);

    let start = s.say("alice", "/app start shop").await;
    let job = s.finished(job_of(&start)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let containers = w.dockerd.app_containers(&docker, id).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(containers[0].running(), "{:?}", containers[0].state);
    assert_eq!(s.env("shop").await.state, EnvState::Ready);
    let info = s.say("alice", "/app info shop").await.text;
    assert!(info.contains("📦 shop — ready — team web"), "{info}");
    assert!(info.contains("live: running, up "), "{info}");
    assert_eq!(w.caddy().get(DOMAIN).await, (200, "hi from v1\n".into()));
    let twice = s.say("alice", "/app start shop").await;
    assert!(
        twice.text.contains("shop is ready, so it cannot start now"),
        "{}",
        twice.text
    );
    s.stop().await;
}
