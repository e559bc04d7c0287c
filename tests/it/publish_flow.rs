//! Publishing through the whole pipeline: `/env create … domain:` writes the
//! Traefik route and the Prometheus target after the container has its
//! address; the final message and `/env info` show the URL; teardown and a
//! rollback remove both; bad or taken domains are refused before anything is written.

use crate::common::{job_of, Opts, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::{EnvState, JobState};

fn publishing() -> Opts {
    Opts {
        provision: false,
        extra: r#"
[publish]
router = "traefik"
zones = ["test.example"]
[publish.traefik]
dir = "traefik"
entry_points = ["websecure"]
cert_resolver = "le"
[publish.monitor]
file_sd_dir = "file_sd"
"#
        .into(),
        ..Opts::default()
    }
}

fn setup() -> TestEnv {
    let t = TestEnv::new(publishing());
    std::fs::create_dir_all(t.dir.path().join("traefik")).unwrap();
    std::fs::create_dir_all(t.dir.path().join("file_sd")).unwrap();
    t
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_environment_gets_a_route_and_a_target_until_teardown() {
    let t = setup();
    let s = t.start();
    let reply = s
        .say(
            "bob",
            "/env create profile:ci-web name:shop domain:shop.test.example",
        )
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let env = s.env("shop").await;
    let addr = env.address.clone().unwrap();

    let route_file = t
        .dir
        .path()
        .join(format!("traefik/slipway-env-{}.toml", env.id));
    let route = std::fs::read_to_string(&route_file).expect("the Traefik file exists");
    let route: toml::Value = toml::from_str(&route).unwrap();
    let router = &route["http"]["routers"][format!("slipway-env-{}", env.id).as_str()];
    assert_eq!(router["rule"].as_str(), Some("Host(`shop.test.example`)"));
    assert_eq!(router["tls"]["certResolver"].as_str(), Some("le"));
    let service = &route["http"]["services"][router["service"].as_str().unwrap()];
    assert_eq!(
        service["loadBalancer"]["servers"][0]["url"].as_str(),
        Some(format!("http://{addr}:8080").as_str())
    );

    let target: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            t.dir
                .path()
                .join(format!("file_sd/slipway-env-{}.json", env.id)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(target[0]["targets"][0], json!(format!("{addr}:9100")));
    assert_eq!(target[0]["labels"]["team"], "web");
    assert_eq!(target[0]["labels"]["profile"], "ci-web");

    let last = s.sink.all().last().unwrap().1.clone();
    assert!(last.contains("https://shop.test.example"), "{last}");
    assert!(s
        .say("bob", "/env info shop")
        .await
        .text
        .contains("https://shop.test.example"));

    let destroy = s.say("bob", "/env destroy shop").await;
    assert_eq!(
        s.finished(job_of(&destroy)).await.state,
        JobState::Succeeded
    );
    assert!(
        files(&t.dir.path().join("traefik")).is_empty(),
        "the route survived teardown"
    );
    assert!(
        files(&t.dir.path().join("file_sd")).is_empty(),
        "the target survived teardown"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_publishing_removes_the_route_again() {
    let t = setup();
    t.pve
        .fail(
            "POST",
            "/snapshot",
            json!({"error": "snapshot_feature_not_available"}),
        )
        .await;
    let s = t.start();
    let reply = s
        .say(
            "bob",
            "/env create profile:ci-web name:shop domain:shop.test.example",
        )
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Failed);
    let env = s.env("shop").await;
    assert_eq!(env.state, EnvState::Failed);
    assert!(
        env.reason
            .as_deref()
            .unwrap()
            .starts_with("initial snapshot:"),
        "{:?}",
        env.reason
    );
    assert!(
        files(&t.dir.path().join("traefik")).is_empty(),
        "the route survived the rollback"
    );
    assert!(
        files(&t.dir.path().join("file_sd")).is_empty(),
        "the target survived the rollback"
    );
    let steps = s.dispatcher.store.steps(job_of(&reply)).await.unwrap();
    let publish = steps
        .iter()
        .find(|s| s.step.label() == "publish route")
        .unwrap();
    assert_eq!(publish.state.as_str(), "compensated");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_taken_domains_are_refused_before_anything_is_written() {
    let t = setup();
    let s = t.start();
    let first = s
        .say(
            "bob",
            "/env create profile:ci-web name:one domain:shop.test.example",
        )
        .await;
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Succeeded);
    t.pve.clear_requests().await;
    let long = "a".repeat(64);
    let cases = [
        (
            "/env create profile:ci-web name:two domain:shop.test.example".to_string(),
            "already published for environment one",
        ),
        (
            "/env create profile:ci-web name:two domain:sh`op.test.example".to_string(),
            "domain",
        ),
        (
            "/env create profile:ci-web name:two \"domain:my shop.test.example\"".to_string(),
            "domain",
        ),
        (
            "/env create profile:ci-web name:two \"domain:it's.test.example\"".to_string(),
            "domain",
        ),
        (
            format!("/env create profile:ci-web name:two domain:{long}.test.example"),
            "domain",
        ),
        (
            "/env create profile:ci-web name:two domain:shop.evil.example".to_string(),
            "domain",
        ),
        (
            "/env create profile:generic-service name:two domain:svc.test.example".to_string(),
            "may not be exposed",
        ),
    ];
    for (line, expected) in cases {
        let reply = s.say("bob", &line).await;
        assert!(reply.job.is_none(), "{line}: {}", reply.text);
        assert!(reply.text.contains(expected), "{line}: {}", reply.text);
    }
    assert!(t.pve.writes().await.is_empty());
    assert_eq!(files(&t.dir.path().join("traefik")).len(), 1);
    s.stop().await;
}
