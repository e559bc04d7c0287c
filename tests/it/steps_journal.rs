//! Jobs driven one step at a time (`Worker::step_once`), as a worker does them
//! between two claims: after each step the journal and fakepve show exactly
//! that step's effect. And jobs written by the previous release (the journal
//! named steps by their labels) finish after the upgrade.

use crate::common::{console_inbound, job_of, Opts, TestEnv};
use serde_json::json;
use slipway::app::App;
use slipway::chat::Reply;
use slipway::dispatch::Dispatcher;
use slipway::domain::lifecycle::{EnvState, JobState};
use slipway::worker::{Stepped, Worker};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slipway built but not started: nothing runs unless the test steps it.
struct Stepper {
    app: App,
    dispatcher: Dispatcher,
    worker: Arc<Worker>,
}

impl Stepper {
    fn new(t: &TestEnv) -> Stepper {
        let app = App::build(t.config()).expect("build the app");
        let dispatcher = app.dispatcher();
        let worker = app.worker();
        Stepper {
            app,
            dispatcher,
            worker,
        }
    }

    async fn say(&self, user: &str, text: &str) -> Reply {
        let inbound = console_inbound(&self.dispatcher.config, user, text);
        self.dispatcher.handle(&inbound).await
    }

    /// One step; panics if no job was ready.
    async fn step(&self, job: i64) -> JobState {
        match self.worker.step_once().await.unwrap() {
            Stepped::Job { job: j, state } if j == job => state,
            other => panic!("expected a step of job {job}, got {other:?}"),
        }
    }

    /// The journal as `id=state`, in order.
    async fn journal(&self, job: i64) -> Vec<String> {
        self.dispatcher
            .store
            .steps(job)
            .await
            .unwrap()
            .iter()
            .map(|s| format!("{}={}", s.step.id(), s.state))
            .collect()
    }

    async fn stop(self) {
        drop(self.worker);
        self.app.shutdown(Duration::from_secs(5)).await;
    }
}

/// Slipway's containers in fakepve: (vmid, status).
async fn containers(t: &TestEnv) -> Vec<(u64, String)> {
    t.pve
        .guests()
        .await
        .into_iter()
        .filter(|g| g["type"] == "lxc")
        .map(|g| {
            (
                g["vmid"].as_u64().unwrap(),
                g["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn opts() -> Opts {
    Opts {
        provision: false,
        ..Opts::default()
    }
}

/// Every start fails, as with an MTU that the bridge does not allow.
async fn fail_every_start(t: &TestEnv) {
    t.pve
        .fail(
            "POST",
            "/status/start",
            json!({"error": "mtu_size_bigger_than_bridge"}),
        )
        .await;
}

const CREATE: &str = "/env create profile:generic-service name:stepped";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_and_a_destroy_run_one_step_at_a_time() {
    let t = TestEnv::new(opts());
    let s = Stepper::new(&t);
    let job = job_of(&s.say("bob", CREATE).await);
    assert_eq!(
        s.journal(job).await,
        [
            "create_guest=pending",
            "start_guest=pending",
            "await_address=pending",
            "reach_ssh=pending",
            "post_provision:install base utilities=pending",
            "mark_ready=pending"
        ]
    );
    assert!(containers(&t).await.is_empty());

    assert_eq!(s.step(job).await, JobState::Running);
    assert_eq!(
        s.journal(job).await[..2],
        ["create_guest=done", "start_guest=pending"]
    );
    let created = containers(&t).await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].1, "stopped", "only the create ran");

    assert_eq!(s.step(job).await, JobState::Running);
    assert_eq!(s.journal(job).await[1], "start_guest=done");
    assert_eq!(containers(&t).await[0].1, "running");

    assert_eq!(s.step(job).await, JobState::Running);
    // provision.enabled is false here: SSH is not waited for and the
    // post-provision step is skipped.
    assert_eq!(s.step(job).await, JobState::Running);
    assert_eq!(s.journal(job).await[3], "reach_ssh=skipped");
    assert_eq!(s.step(job).await, JobState::Running);
    assert_eq!(
        s.journal(job).await[4],
        "post_provision:install base utilities=skipped"
    );
    assert_eq!(s.step(job).await, JobState::Succeeded);
    assert_eq!(s.journal(job).await[5], "mark_ready=done");
    assert_eq!(s.worker.step_once().await.unwrap(), Stepped::Idle);
    let env = s.dispatcher.store.env(1).await.unwrap().unwrap();
    assert_eq!(env.state, EnvState::Ready);

    // The destroy, step by step: the container is stopped before it is deleted.
    let destroy = job_of(&s.say("bob", "/env destroy name:stepped").await);
    let mut states = Vec::new();
    loop {
        let state = s.step(destroy).await;
        states.push(containers(&t).await);
        if state.is_finished() {
            assert_eq!(state, JobState::Succeeded, "{:?}", s.journal(destroy).await);
            break;
        }
    }
    let journal = s.journal(destroy).await;
    assert_eq!(
        states.len(),
        journal.len(),
        "one call per step: {journal:?}"
    );
    let shutdown = journal
        .iter()
        .position(|l| l.starts_with("shutdown_guest"))
        .unwrap();
    let delete = journal
        .iter()
        .position(|l| l.starts_with("delete_guest"))
        .unwrap();
    assert_eq!(states[shutdown][0].1, "stopped", "stopped by its own step");
    assert_eq!(states[delete - 1].len(), 1, "still there before the delete");
    assert!(states[delete].is_empty(), "deleted by its own step");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_is_undone_one_step_at_a_time() {
    let t = TestEnv::new(opts());
    fail_every_start(&t).await;
    let s = Stepper::new(&t);
    let job = job_of(&s.say("bob", CREATE).await);
    assert_eq!(s.step(job).await, JobState::Running);
    // The start fails: the job turns to rolling back, and nothing is undone yet.
    assert_eq!(s.step(job).await, JobState::RollingBack);
    assert_eq!(
        s.journal(job).await[..2],
        ["create_guest=done", "start_guest=failed"]
    );
    assert_eq!(containers(&t).await.len(), 1);
    // The start's undo (nothing was running), then the create's.
    assert_eq!(s.step(job).await, JobState::RollingBack);
    assert_eq!(s.journal(job).await[1], "start_guest=compensated");
    assert_eq!(
        containers(&t).await.len(),
        1,
        "the create is undone on its own step"
    );
    // The create's undo is the last: the same call ends the job failed.
    assert_eq!(s.step(job).await, JobState::Failed);
    assert_eq!(s.journal(job).await[0], "create_guest=compensated");
    assert!(containers(&t).await.is_empty());
    assert_eq!(s.worker.step_once().await.unwrap(), Stepped::Idle);
    let env = s.dispatcher.store.env(1).await.unwrap().unwrap();
    assert_eq!(env.state, EnvState::Failed);
    s.stop().await;
}

/// The labels the previous release stored in place of step ids.
const PREVIOUS_LABELS: &[(&str, &str)] = &[
    ("create_guest", "create container"),
    ("start_guest", "start container"),
    ("await_address", "wait for network"),
    ("mark_ready", "mark ready"),
    (
        "post_provision:install base utilities",
        "post-provision: install base utilities",
    ),
];

/// Rewrites the database as the previous release left it: steps named by
/// their labels, schema version 8 (before the step-id migration).
fn as_previous_release(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    // The previous release did not wait for SSH: its plans had no such step.
    c.execute("DELETE FROM job_steps WHERE name = 'reach_ssh'", [])
        .unwrap();
    for (id, label) in PREVIOUS_LABELS {
        c.execute(
            "UPDATE job_steps SET name = ?2 WHERE name = ?1",
            [id, label],
        )
        .unwrap();
    }
    let left: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM job_steps WHERE name LIKE '%\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        left, 0,
        "a step id is left that the previous release did not know"
    );
    // What migrations after 8 added, the previous release did not have.
    c.execute_batch("DROP TABLE IF EXISTS host_keys; DROP TABLE IF EXISTS ssh_keys;")
        .unwrap();
    c.pragma_update(None, "user_version", 8).unwrap();
}

/// Starts Slipway (the new release) over that database and waits for `job`.
async fn upgrade_and_finish(t: &TestEnv, job: i64) -> (JobState, EnvState) {
    let s = t.start();
    let started = Instant::now();
    loop {
        let j = s.dispatcher.store.job(job).await.unwrap().unwrap();
        if j.state.is_finished() {
            let env = s.dispatcher.store.env(j.env_id).await.unwrap().unwrap();
            s.stop().await;
            return (j.state, env.state);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{j:?} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_stopped_by_the_previous_release_finishes_after_the_upgrade() {
    let t = TestEnv::new(opts());
    let s = Stepper::new(&t);
    let job = job_of(&s.say("bob", CREATE).await);
    // Stopped mid-create: the container exists, nothing else was done.
    assert_eq!(s.step(job).await, JobState::Running);
    s.stop().await;
    as_previous_release(&t.dir.path().join("slipway.db"));

    assert_eq!(
        upgrade_and_finish(&t, job).await,
        (JobState::Succeeded, EnvState::Ready)
    );
    let after = containers(&t).await;
    assert_eq!(after.len(), 1, "exactly one container: {after:?}");
    assert_eq!(after[0].1, "running");
    let creates = t
        .pve
        .writes()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/nodes/pve1/lxc")
        })
        .count();
    assert_eq!(creates, 1, "the create was not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_stopped_by_the_previous_release_finishes_after_the_upgrade() {
    let t = TestEnv::new(opts());
    fail_every_start(&t).await;
    let s = Stepper::new(&t);
    let job = job_of(&s.say("bob", CREATE).await);
    assert_eq!(s.step(job).await, JobState::Running);
    assert_eq!(s.step(job).await, JobState::RollingBack);
    // Stopped mid-rollback: the start is undone, the container is still there.
    assert_eq!(s.step(job).await, JobState::RollingBack);
    assert_eq!(s.journal(job).await[1], "start_guest=compensated");
    s.stop().await;
    assert_eq!(containers(&t).await.len(), 1);
    as_previous_release(&t.dir.path().join("slipway.db"));

    assert_eq!(
        upgrade_and_finish(&t, job).await,
        (JobState::Failed, EnvState::Failed)
    );
    assert!(containers(&t).await.is_empty(), "no container is left");
}
