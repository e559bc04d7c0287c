//! Blue-green updates against a real dockerd and a real Caddy: a healthy new
//! image takes the route and the old container goes; an unhealthy one is
//! removed, the old container keeps serving throughout, and the user is told why.

use crate::apps_support::*;
use crate::common::{job_of, Opts, Running};
use slipway::domain::lifecycle::{EnvState, JobState};
use slipway::provider::docker::DockerHosts;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

async fn deploy_v1(s: &Running, w: &World) -> i64 {
    let reply = s
        .say(
            "bob",
            &format!(
                "/app deploy image:slipway-test/web:v1 name:shop env:GREETING=hi domain:{DOMAIN}"
            ),
        )
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(w.caddy().get(DOMAIN).await, (200, "hi from v1\n".into()));
    app_id(s, "shop").await
}

/// Requests the domain over and over until stopped; counts answers that were not 200.
fn keep_asking(
    caddy_port: u16,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<usize>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let (st, fl) = (stop.clone(), failures.clone());
    let handle = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut asked = 0;
        // Bounded: at most 2000 requests, 20 ms apart.
        while !st.load(Ordering::Relaxed) && asked < 2000 {
            asked += 1;
            let ask = || {
                http.get(format!("http://127.0.0.1:{caddy_port}/"))
                    .header(reqwest::header::HOST, DOMAIN)
                    .send()
            };
            // A pooled keep-alive connection that Caddy closed as it applied
            // the new route fails before any answer; a browser sends such a
            // GET again on a new connection, and so does this. An answer that
            // is not a success is a failure at once.
            let answer = match ask().await {
                Err(e) if e.is_request() || e.is_connect() => ask().await,
                other => other,
            };
            let ok = answer.is_ok_and(|r| r.status().is_success());
            if !ok {
                fl.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        asked
    });
    (stop, failures, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_update_moves_traffic_to_the_new_container_and_removes_the_old_one() {
    let w = World::new(true, Opts::default()).await;
    let s = w.env.start();
    let docker = DockerHosts::new(s.dispatcher.config.docker.clone());
    let id = deploy_v1(&s, &w).await;
    let old = w.dockerd.app_containers(&docker, id).await[0].name.clone();
    let (stop, failures, asking) = keep_asking(w.caddy().http_port);

    let reply = s
        .say("bob", "/app update shop image:slipway-test/web:v2")
        .await;
    let job = s.finished(job_of(&reply)).await;

    stop.store(true, Ordering::Relaxed);
    let asked = asking.await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(w.caddy().get(DOMAIN).await, (200, "hi from v2\n".into()));
    let containers = w.dockerd.app_containers(&docker, id).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_ne!(containers[0].name, old);
    assert_eq!(containers[0].image, "slipway-test/web:v2");
    assert!(containers[0].env.contains(&"GREETING=hi".to_string()));
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "some of {asked} requests failed during the switch"
    );
    let info = s.say("bob", "/app info shop").await.text;
    assert!(info.contains("image slipway-test/web:v2"), "{info}");
    let last = s.sink.all().last().unwrap().1.clone();
    assert!(last.contains("now running slipway-test/web:v2"), "{last}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_update_is_removed_and_the_old_container_keeps_serving() {
    let w = World::new(true, Opts::default()).await;
    let s = w.env.start();
    let docker = DockerHosts::new(s.dispatcher.config.docker.clone());
    let id = deploy_v1(&s, &w).await;
    let old = w.dockerd.app_containers(&docker, id).await[0].name.clone();
    let (stop, failures, asking) = keep_asking(w.caddy().http_port);

    let reply = s
        .say("bob", "/app update shop image:slipway-test/web:broken")
        .await;
    let job = s.finished(job_of(&reply)).await;

    stop.store(true, Ordering::Relaxed);
    let asked = asking.await.unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_eq!(w.caddy().get(DOMAIN).await, (200, "hi from v1\n".into()));
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {asked} requests");
    let containers = w.dockerd.app_containers(&docker, id).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].name, old);
    assert!(containers[0].running());
    let told = s.sink.all().last().unwrap().1.clone();
    assert!(
        told.contains("check health: GET / on the new container answered 404"),
        "{told}"
    );
    assert!(told.contains("keeps serving slipway-test/web:v1"), "{told}");
    assert_eq!(s.env("shop").await.state, EnvState::Ready);
    let info = s.say("bob", "/app info shop").await.text;
    assert!(info.contains("image slipway-test/web:v1"), "{info}");
    assert!(!info.contains("updating to"), "{info}");

    // The app can still be updated afterwards.
    let again = s
        .say("bob", "/app update shop image:slipway-test/web:v2")
        .await;
    assert_eq!(s.finished(job_of(&again)).await.state, JobState::Succeeded);
    assert_eq!(w.caddy().get(DOMAIN).await, (200, "hi from v2\n".into()));
    s.stop().await;
}
