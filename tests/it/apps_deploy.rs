//! Apps against a real dockerd and a real Caddy: `/app deploy` runs the image
//! with its variables, limits, restart policy and ownership labels, and Caddy
//! routes the domain to it; secrets never show; info, logs and restart work;
//! `/app remove` takes the container and the route away and frees the quota.

use crate::apps_support::*;
use crate::common::{job_of, Opts};
use slipway::domain::lifecycle::{EnvState, JobState};
use slipway::provider::docker::{
    DockerHosts, LABEL_APP, LABEL_APP_ID, LABEL_JOB, LABEL_OWNER, LABEL_REQUEST, LABEL_TEAM,
};

const SECRET: &str = "hunter2-hunter2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_app_runs_as_asked_and_caddy_routes_its_domain_until_it_is_removed() {
    let w = World::new(true, Opts::default()).await;
    let s = w.env.start();
    let docker = DockerHosts::new(s.dispatcher.config.docker.clone());

    let reply = s
        .say(
            "bob",
            &format!(
                "/app deploy image:slipway-test/web:v1 name:shop env:GREETING=hello env:DB_PASSWORD={SECRET} cpu:1 memory:64 domain:{DOMAIN}"
            ),
        )
        .await;
    assert!(reply.text.contains("DB_PASSWORD=•••"), "{}", reply.text);
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");

    let id = app_id(&s, "shop").await;
    let containers = w.dockerd.app_containers(&docker, id).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    let c = &containers[0];
    assert!(c.running(), "{c:?}");
    assert_eq!(c.image, "slipway-test/web:v1");
    assert!(c.env.contains(&"GREETING=hello".to_string()), "{:?}", c.env);
    assert!(c.env.contains(&format!("DB_PASSWORD={SECRET}")));
    assert!(c.env.iter().any(|e| e.starts_with("PORT=")), "{:?}", c.env);
    assert_eq!(c.nano_cpus, 1_000_000_000);
    assert_eq!(c.memory, 64 * 1024 * 1024);
    assert_eq!(c.restart_policy, "unless-stopped");
    assert_eq!(c.labels[LABEL_OWNER], "slipway");
    assert_eq!(c.labels[LABEL_APP_ID], id.to_string());
    assert_eq!(c.labels[LABEL_APP], "shop");
    assert_eq!(c.labels[LABEL_TEAM], "web");
    assert_eq!(c.labels[LABEL_REQUEST], "console:bob");
    assert_eq!(c.labels[LABEL_JOB], job.id.to_string());

    assert_eq!(
        w.caddy().get(DOMAIN).await,
        (200, "hello from v1\n".to_string())
    );
    let last = s.sink.all().last().unwrap().1.clone();
    assert!(last.contains(&format!("https://{DOMAIN}")), "{last}");

    let info = s.say("bob", "/app info shop").await.text;
    assert!(info.contains("slipway-test/web:v1"), "{info}");
    assert!(info.contains("live: running, up "), "{info}");
    assert!(info.contains(&format!("https://{DOMAIN}")), "{info}");
    assert!(
        info.contains("DB_PASSWORD=•••") && info.contains("GREETING=hello"),
        "{info}"
    );
    let list = s.say("bob", "/app list").await.text;
    assert!(
        list.contains("shop — ready — slipway-test/web:v1"),
        "{list}"
    );
    let logs = s.say("bob", "/app logs shop lines:5").await;
    assert!(logs.private);
    assert!(logs.text.contains("response:200"), "{}", logs.text);

    let restart = s.say("bob", "/app restart shop").await;
    assert_eq!(
        s.finished(job_of(&restart)).await.state,
        JobState::Succeeded
    );
    eventually("the restarted app answering", || async {
        w.caddy().get(DOMAIN).await.0 == 200
    })
    .await;

    let said = everything_said(&s);
    assert!(!said.contains(SECRET), "a secret reached the chat: {said}");
    let log = s.dispatcher.store.job_log(job.id).await.unwrap();
    assert!(log.iter().all(|l| !l.line.contains(SECRET)));
    let usage = s.say("bob", "/quota").await.text;
    assert!(usage.contains("cores 1/"), "{usage}");

    let remove = s.say("bob", "/app remove shop").await;
    assert_eq!(s.finished(job_of(&remove)).await.state, JobState::Succeeded);
    assert!(w.dockerd.app_containers(&docker, id).await.is_empty());
    assert!(w.dockerd.all_containers().is_empty());
    assert_eq!(w.caddy().get(DOMAIN).await, (404, "no route".to_string()));
    assert_eq!(s.env("shop").await.state, EnvState::Destroyed);
    let usage = s.say("bob", "/quota").await.text;
    assert!(usage.contains("cores 0/"), "{usage}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_deploy_and_frees_everything() {
    let w = World::new(false, Opts::default()).await;
    let s = w.env.start();

    // A registry on a closed loopback port: the pull fails without leaving the machine.
    let image = format!(
        "127.0.0.1:{}/slipway-test/missing:v9",
        crate::publish_support::free_port()
    );
    let reply = s
        .say("bob", &format!("/app deploy image:{image} name:ghost"))
        .await;
    let job = s.finished(job_of(&reply)).await;

    assert_eq!(job.state, JobState::Failed);
    let env = s.env("ghost").await;
    assert_eq!(env.state, EnvState::Failed);
    assert!(
        env.reason
            .as_deref()
            .unwrap_or("")
            .starts_with(&format!("pull image: could not pull {image}")),
        "{:?}",
        env.reason
    );
    assert!(w.dockerd.all_containers().is_empty());
    assert!(s.say("bob", "/app list").await.text.contains("No apps yet"));
    s.stop().await;
}
