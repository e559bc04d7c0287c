//! Failures roll back what was created, in reverse order: nothing is left in
//! Proxmox, the environment ends `failed` with PVE's own message, and its quota
//! is free again.

use crate::common::{job_of, Opts, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::{EnvState, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_task_leaves_nothing_and_frees_the_quota() {
    let t = TestEnv::new(Opts {
        quota: "environments = 1".into(),
        provision: false,
        ..Opts::default()
    });
    t.pve
        .fail(
            "POST",
            "/nodes/pve1/lxc",
            json!({"error": "found_lock_trying_remove_lock", "times": 1}),
        )
        .await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:broken")
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Failed);
    let env = s.env("broken").await;
    assert_eq!(env.state, EnvState::Failed);
    let reason = env.reason.unwrap();
    assert!(
        reason.contains("found lock 'backup' trying to remove 'backup' lock"),
        "{reason}"
    );
    assert_eq!(t.pve.lxc_count().await, 0);
    let last = s.sink.all().last().unwrap().1.clone();
    assert!(
        last.starts_with("❌ create broken failed") && last.contains("quota released"),
        "{last}"
    );
    // The quota is free: the next request is accepted at once.
    let next = s
        .say("bob", "/env create profile:generic-service name:fixed")
        .await;
    assert_eq!(s.finished(job_of(&next)).await.state, JobState::Succeeded);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_destroys_the_container_again() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    t.pve
        .fail(
            "POST",
            "/status/start",
            json!({"error": "mtu_size_bigger_than_bridge"}),
        )
        .await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:nostart")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Failed);
    let env = s.env("nostart").await;
    assert_eq!(env.state, EnvState::Failed);
    assert!(
        env.reason
            .as_deref()
            .unwrap()
            .starts_with("start container:"),
        "{:?}",
        env.reason
    );
    assert_eq!(
        t.pve.lxc_count().await,
        0,
        "the container was not destroyed"
    );
    let vmid = env.vmid.unwrap();
    let deletes = t.pve.deletes_of(vmid).await.len();
    assert_eq!(deletes, 1);
    let steps = s.dispatcher.store.steps(job_of(&reply)).await.unwrap();
    let states: Vec<String> = steps
        .iter()
        .map(|s| format!("{}={}", s.step.label(), s.state))
        .collect();
    assert_eq!(
        states[..2],
        [
            "create container=compensated".to_string(),
            "start container=compensated".to_string()
        ],
        "{states:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_post_provision_step_rolls_back_with_its_output() {
    let t = TestEnv::new(Opts {
        provision: true,
        ..Opts::default()
    });
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:ci-broken-step name:step")
        .await;
    let id = job_of(&reply);
    assert_eq!(s.finished(id).await.state, JobState::Failed);
    let env = s.env("step").await;
    let reason = env.reason.unwrap();
    assert!(
        reason.contains("post-provision: configure") && reason.contains("exit status: 2"),
        "{reason}"
    );
    assert!(
        reason.contains("playbook failed: no route to host"),
        "{reason}"
    );
    assert_eq!(t.pve.lxc_count().await, 0);
    let log = s.say("bob", &format!("/job {id}")).await.text;
    assert!(
        log.contains("[out] starting") && log.contains("rolling back"),
        "{log}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_container_on_the_next_vmid_is_skipped_and_left_alone() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    t.pve.add_foreign_ct(200).await;
    let s = t.start();
    let a = s
        .say("bob", "/env create profile:generic-service name:a")
        .await;
    let b = s
        .say("bob", "/env create profile:generic-service name:b")
        .await;
    assert_eq!(s.finished(job_of(&a)).await.state, JobState::Succeeded);
    assert_eq!(s.finished(job_of(&b)).await.state, JobState::Succeeded);
    let (va, vb) = (
        s.env("a").await.vmid.unwrap(),
        s.env("b").await.vmid.unwrap(),
    );
    assert_ne!(va, vb);
    assert!(va != 200 && vb != 200);
    let foreign = t.pve.guest(200).await.unwrap();
    assert_eq!(foreign["status"], "running");
    assert_eq!(foreign["name"], "foreign200");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_appears_on_the_reserved_vmid_makes_create_move_on() {
    let t = TestEnv::new(Opts {
        provision: false,
        vmids: (300, 310),
        ..Opts::default()
    });
    // The create POST for 300 answers "already exists" (as if someone took it meanwhile).
    t.pve
        .fail(
            "POST",
            "/nodes/pve1/lxc",
            json!({"status": 500, "message": "CT 300 already exists on node 'pve1'", "times": 1}),
        )
        .await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:race")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    assert_eq!(s.env("race").await.vmid, Some(301));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_errors_keep_pves_wording() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    t.pve.call("lose_quorum", json!([]), json!({})).await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:noquorum")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Failed);
    let reason = s.env("noquorum").await.reason.unwrap();
    assert!(
        reason.contains("cluster not ready - no quorum?"),
        "{reason}"
    );
    assert!(
        !reason.contains(&t.pve.token_secret),
        "the token leaked into an error"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_skips_an_address_a_foreign_guest_is_configured_with() {
    let t = TestEnv::new(Opts::default());
    // Someone made CT 150 by hand with the pool's first address.
    t.pve
        .call(
            "add_ct",
            json!([150, "by-hand"]),
            json!({"status": "running", "config": {
                "net0": "name=eth0,bridge=vmbr0,ip=10.20.0.50/24,gw=10.20.0.1"
            }}),
        )
        .await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:monitoring-node name:mon")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    assert_eq!(
        s.env("mon").await.address.as_deref(),
        Some("10.20.0.51"),
        "10.20.0.50 is CT 150's"
    );
    s.stop().await;
}
