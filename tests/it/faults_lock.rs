//! Issue 17, fault 3: a config lock another Proxmox task holds (a backup, a
//! snapshot) is waited out whether the API refuses the write or the write's
//! task ends `TASK ERROR: can't lock file … got timeout`, within one bounded
//! budget (`proxmox.lock_wait`, 3 s in tests), and the job's message says so.

use crate::common::{job_of, Opts, Running, TestEnv};
use crate::guest_provision::job_log;
use serde_json::json;
use slipway::domain::lifecycle::{EnvState, JobState};
use std::time::Duration;

fn env() -> TestEnv {
    TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    })
}

async fn created(s: &Running, name: &str) -> u32 {
    let reply = s
        .say(
            "bob",
            &format!("/env create profile:generic-service name:{name}"),
        )
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    s.env(name).await.vmid.unwrap()
}

/// Waits until job `job`'s log says it waits for the lock.
async fn waits_for_lock(t: &TestEnv, job: i64) -> String {
    for _ in 0..100 {
        let log = job_log(t, job);
        if log.contains("waiting for a lock held by another Proxmox task (try 1)") {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job} never waited for the lock: {}", job_log(t, job));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_and_a_destroy_wait_until_the_lock_is_released() {
    let t = env();
    let s = t.start();
    let vmid = created(&s, "backedup").await;

    t.pve.hold_lock(vmid).await;
    let stop = job_of(&s.say("bob", "/env stop name:backedup").await);
    let log = waits_for_lock(&t, stop).await;
    assert!(log.contains("can't lock file"), "{log}");
    s.wait_for_message("waiting for a lock held by another Proxmox task (try")
        .await;
    t.pve.release_lock(vmid).await;
    assert_eq!(s.finished(stop).await.state, JobState::Succeeded);
    assert_eq!(t.pve.guest(vmid).await.unwrap()["status"], "stopped");

    t.pve.hold_lock(vmid).await;
    let destroy = job_of(&s.say("bob", "/env destroy name:backedup").await);
    waits_for_lock(&t, destroy).await;
    t.pve.release_lock(vmid).await;
    assert_eq!(s.finished(destroy).await.state, JobState::Succeeded);
    assert!(t.pve.guest(vmid).await.is_none(), "the container is gone");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_start_task_ends_on_a_lock_tries_again() {
    let t = env();
    // The start task ends "TASK ERROR: CT is locked (backup)" twice.
    t.pve
        .fail(
            "POST",
            "/status/start",
            json!({"error": "locked", "times": 2}),
        )
        .await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:late")
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let log = job_log(&t, job.id);
    assert!(
        log.contains("waiting for a lock held by another Proxmox task (try 2)"),
        "{log}"
    );
    let vmid = s.env("late").await.vmid.unwrap();
    assert_eq!(t.pve.guest(vmid).await.unwrap()["status"], "running");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_outlasts_the_budget_fails_the_job_and_says_it_once() {
    let t = env();
    let s = t.start();
    let vmid = created(&s, "held").await;
    t.pve.hold_lock(vmid).await;
    let started = std::time::Instant::now();
    let stop = job_of(&s.say("bob", "/env stop name:held").await);
    let job = s.finished(stop).await;
    assert_eq!(job.state, JobState::Failed);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the wait is bounded: {:?}",
        started.elapsed()
    );
    let failed = s.wait_for_message("❌ stop held failed").await;
    assert_eq!(
        failed.matches("can't lock file").count(),
        1,
        "the lock error is said once: {failed}"
    );
    assert_eq!(s.env("held").await.state, EnvState::Ready);
    t.pve.release_lock(vmid).await;
    s.stop().await;
}
