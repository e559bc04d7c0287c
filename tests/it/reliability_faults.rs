//! The fault matrix against fakepve. Each row injects what a real cluster does
//! and checks the expected outcome, then the invariants: no container created
//! twice, no orphan after one reconcile pass, quotas held, exactly one outcome
//! message per request, and `PRAGMA integrity_check` ok.

use crate::common::{job_of, Opts, Running, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::{EnvState, JobState};
use std::time::Duration;

fn opts() -> Opts {
    Opts {
        provision: false,
        quota: "environments = 200".into(),
        vmids: (200, 499),
        extra: "[reconcile]\ninterval = \"1h\"\norphan_grace = \"0s\"\n".into(),
        ..Opts::default()
    }
}

async fn create(s: &Running, name: &str) -> (i64, JobState) {
    let reply = s
        .say(
            "bob",
            &format!("/env create profile:generic-service name:{name}"),
        )
        .await;
    let id = job_of(&reply);
    (id, s.finished(id).await.state)
}

async fn lxc(t: &TestEnv) -> usize {
    t.pve
        .guests()
        .await
        .into_iter()
        .filter(|g| g["type"] == "lxc")
        .count()
}

async fn posts_ending(t: &TestEnv, suffix: &str) -> usize {
    t.pve
        .writes()
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with(suffix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_task_error_rolls_back() {
    let t = TestEnv::new(opts());
    t.pve
        .fail(
            "POST",
            "/nodes/pve1/lxc",
            json!({"error": "found_lock_trying_remove_lock"}),
        )
        .await;
    let s = t.start();
    assert_eq!(create(&s, "a").await.1, JobState::Failed);
    assert_eq!(lxc(&t).await, 0);
    s.assert_invariants(&t.pve, 200).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_config_lock_is_waited_for_a_bounded_time_then_rolled_back() {
    let t = TestEnv::new(opts());
    t.pve
        .fail(
            "POST",
            "/status/start",
            json!({"error": "config_lock_timeout"}),
        )
        .await;
    let s = t.start();
    let started = std::time::Instant::now();
    assert_eq!(create(&s, "locked").await.1, JobState::Failed);
    let reason = s.env("locked").await.reason.unwrap();
    assert!(reason.contains("got timeout"), "{reason}");
    let tries = posts_ending(&t, "/status/start").await;
    assert!(
        (3..=20).contains(&tries),
        "{tries} tries within lock_wait = 3s"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(lxc(&t).await, 0);
    s.assert_invariants(&t.pve, 200).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_create_lock_is_reported_not_retried_forever() {
    let t = TestEnv::new(opts());
    let s = t.start();
    assert_eq!(create(&s, "stale").await.1, JobState::Succeeded);
    let vmid = s.env("stale").await.vmid.unwrap();
    t.pve
        .call("snapshot_lock", json!([vmid]), json!({"lock": "create"}))
        .await;
    let reply = s.say("bob", "/env stop stale").await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.error.as_deref().unwrap().contains("locked (create)"),
        "{job:?}"
    );
    let tries = posts_ending(&t, "/status/shutdown").await + posts_ending(&t, "/status/stop").await;
    assert!(tries <= 2, "{tries} tries on a stale lock");
    s.wait_for_message("❌ stop stale failed").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_quorum_is_waited_out_when_it_comes_back() {
    let t = TestEnv::new(opts());
    t.edit_config("write_retries = 3", "write_retries = 7");
    t.pve.call("lose_quorum", json!([]), json!({})).await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:quorum")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    t.pve.call("regain_quorum", json!([]), json!({})).await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    assert!(
        posts_ending(&t, "/nodes/pve1/lxc").await >= 2,
        "the create was not retried"
    );
    assert_eq!(lxc(&t).await, 1);
    s.assert_invariants(&t.pve, 200).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_that_never_returns_rolls_back() {
    let t = TestEnv::new(opts());
    t.pve.call("lose_quorum", json!([]), json!({})).await;
    let s = t.start();
    assert_eq!(create(&s, "noquorum").await.1, JobState::Failed);
    assert!(s
        .env("noquorum")
        .await
        .reason
        .unwrap()
        .contains("no quorum"));
    t.pve.call("regain_quorum", json!([]), json!({})).await;
    s.assert_invariants(&t.pve, 200).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_fails_the_job_and_leaves_nothing() {
    let t = TestEnv::new(opts());
    t.pve
        .call("set_node_offline", json!(["pve1"]), json!({}))
        .await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:offline")
        .await;
    let id = job_of(&reply);
    // The create fails after its retries; the rollback cannot reach the node either.
    let started = std::time::Instant::now();
    loop {
        let j = s.dispatcher.store.job(id).await.unwrap().unwrap();
        if j.state == JobState::RollingBack || j.state.is_finished() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.pve
        .call(
            "set_node_offline",
            json!(["pve1"]),
            json!({"offline": false}),
        )
        .await;
    assert_eq!(s.finished(id).await.state, JobState::Failed);
    let reason = s.env("offline").await.reason.unwrap();
    assert!(
        reason.contains("595") || reason.contains("No route to host"),
        "{reason}"
    );
    assert_eq!(lxc(&t).await, 0);
    s.assert_invariants(&t.pve, 200).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_502_from_a_proxy_is_retried() {
    let t = TestEnv::new(opts());
    t.pve
        .fail("POST", "/nodes/pve1/lxc", json!({"status": 502, "message": "<html><body><h1>502 Bad Gateway</h1></body></html>", "html": true, "times": 2}))
        .await;
    let s = t.start();
    assert_eq!(create(&s, "proxied").await.1, JobState::Succeeded);
    assert_eq!(posts_ending(&t, "/nodes/pve1/lxc").await, 3);
    assert_eq!(lxc(&t).await, 1);
    s.assert_invariants(&t.pve, 200).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_or_full_storage_and_a_missing_template_fail_with_pves_words() {
    let t = TestEnv::new(opts());
    t.pve.storage_set("local-lvm", json!({"active": 0})).await;
    let s = t.start();
    assert_eq!(create(&s, "nostorage").await.1, JobState::Failed);
    let reason = s.env("nostorage").await.reason.unwrap();
    assert!(
        reason.contains("storage 'local-lvm' is not online"),
        "{reason}"
    );
    t.pve.storage_set("local-lvm", json!({"active": 1})).await;

    // A full thin pool: fakepve has no model of free space for containers, so
    // its failure is injected with PVE's own wording.
    let full = "unable to create CT 200 - lvcreate 'pve/vm-200-disk-0' error:   Volume group \"pve\" has insufficient free space (0 extents): 1024 required.";
    t.pve
        .fail(
            "POST",
            "/nodes/pve1/lxc",
            json!({"status": 500, "message": full, "times": 1}),
        )
        .await;
    assert_eq!(create(&s, "full").await.1, JobState::Failed);
    let reason = s.env("full").await.reason.unwrap();
    assert!(reason.contains("insufficient free space"), "{reason}");

    // Once any template is registered, an unknown one fails inside the create task.
    t.pve
        .call(
            "store_file",
            json!(["local", "other-template.tar.zst", 1]),
            json!({"content": "vztmpl"}),
        )
        .await;
    assert_eq!(create(&s, "notemplate").await.1, JobState::Failed);
    let reason = s.env("notemplate").await.reason.unwrap();
    assert!(reason.contains("does not exist"), "{reason}");
    assert_eq!(lxc(&t).await, 0);
    s.assert_invariants(&t.pve, 200).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_network_over_a_hundred_runs_keeps_every_invariant() {
    let t = TestEnv::new(opts());
    t.edit_config("timeout = \"10s\"", "timeout = \"2s\"");
    t.pve
        .call(
            "flaky_network",
            json!([]),
            json!({"drop_rate": 0.05, "hang_rate": 0.01, "hang_secs": 3, "seed": 7}),
        )
        .await;
    let s = std::sync::Arc::new(t.start());
    let mut outcomes = Vec::new();
    for batch in 0..5 {
        let mut handles = Vec::new();
        for i in 0..20 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                let reply = s
                    .say(
                        "bob",
                        &format!("/env create profile:generic-service name:f{batch}x{i}"),
                    )
                    .await;
                reply.job
            }));
        }
        for h in handles {
            outcomes.push(h.await.unwrap().expect("every request is queued"));
        }
    }
    let mut ready = 0;
    for id in &outcomes {
        let state = long_wait(&s, *id).await;
        if state == JobState::Succeeded {
            ready += 1;
        }
    }
    t.pve
        .call(
            "flaky_network",
            json!([]),
            json!({"drop_rate": 0.0, "hang_rate": 0.0}),
        )
        .await;
    eprintln!("flaky network: {ready} of 100 ready, the rest rolled back");
    assert!(ready > 50, "only {ready} of 100 got through a 5% drop rate");
    let live = s
        .count("SELECT COUNT(*) FROM environments WHERE state = 'ready'")
        .await;
    assert_eq!(live, ready);
    for env in s.dispatcher.store.list_envs(None).await.unwrap() {
        assert_eq!(env.state, EnvState::Ready, "{env:?}");
    }
    s.assert_invariants(&t.pve, 200).await;
}

/// Like `finished`, with room for retries behind hanging requests.
async fn long_wait(s: &Running, job: i64) -> JobState {
    let started = std::time::Instant::now();
    loop {
        let j = s.dispatcher.store.job(job).await.unwrap().unwrap();
        if j.state.is_finished() {
            return j.state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "job {job} is stuck: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
