//! SIGKILL at every step boundary and inside steps, for create and destroy:
//! after a restart every job ends ready (or destroyed) or rolled back, no
//! container is created twice, nothing is orphaned, and the database is sound.

use crate::common::{Opts, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::{JobState, StepState};
use slipway::store::Store;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(t: &TestEnv, args: &[&str], stdin: Option<&str>) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .arg("--config")
        .arg(&t.config_path)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child
}

async fn wait_job_end(store: &Store, job: i64) -> JobState {
    let started = Instant::now();
    loop {
        if let Ok(Some(j)) = store.job(job).await {
            if j.state.is_finished() {
                return j.state;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "job {job} did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where to kill: when step `step` of job `job` reaches `state` (or the job moved past it).
async fn kill_at(
    store: &Store,
    child: &mut Child,
    job: i64,
    step: usize,
    state: StepState,
) -> String {
    let started = Instant::now();
    loop {
        if let Ok(steps) = store.steps(job).await {
            if let Some(s) = steps.get(step) {
                let reached = match state {
                    StepState::Running => s.state != StepState::Pending,
                    _ => matches!(
                        s.state,
                        StepState::Done
                            | StepState::Skipped
                            | StepState::Failed
                            | StepState::Compensated
                    ),
                };
                if reached {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    return format!("{} {}", s.step.label(), s.state);
                }
            }
        }
        if let Ok(Some(j)) = store.job(job).await {
            if j.state.is_finished() {
                child.kill().unwrap();
                child.wait().unwrap();
                return "after the end".into();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "step {step} of job {job} never reached {state}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn tagged(t: &TestEnv, env_id: i64) -> usize {
    let tag = format!("slipway-env-{env_id}");
    t.pve
        .guests()
        .await
        .iter()
        .filter(|g| {
            g["config"]["tags"]
                .as_str()
                .unwrap_or("")
                .split(';')
                .any(|x| x == tag)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_step_then_restart_ends_every_job_cleanly() {
    let mut points = 0;
    // Create: all 5 steps; destroy: the 4 that touch Proxmox or the store (the
    // publishing and HA removals before them are skipped without a domain).
    let plan: Vec<(&str, usize)> = (0..5)
        .map(|s| ("create", s))
        .chain((4..8).map(|s| ("destroy", s)))
        .collect();
    for (kind, step) in plan {
        {
            for state in [StepState::Running, StepState::Done] {
                let t = TestEnv::new(Opts {
                    time_scale: 0.05,
                    ..Opts::default()
                });
                t.pve.set("ct_secs", json!(8)).await;
                let db = t.dir.path().join("slipway.db");
                let (job, mut child) = if kind == "create" {
                    let child = spawn(
                        &t,
                        &["console"],
                        Some("/env create profile:ci-app name:victim\n"),
                    );
                    (1, child)
                } else {
                    let out = t.slipway(&["console"], "/env create profile:ci-app name:victim\n");
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stdout)
                    );
                    let child = spawn(&t, &["console"], Some("/env destroy victim\n"));
                    (2, child)
                };
                let store = loop {
                    if let Ok(s) = Store::open(&db) {
                        break s;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                let at = kill_at(&store, &mut child, job, step, state).await;
                points += 1;
                // Restart: `slipway run` resumes whatever was left.
                let mut run = spawn(&t, &["run"], None);
                let end = wait_job_end(&store, job).await;
                run.kill().unwrap();
                run.wait().unwrap();

                let env = store.env(1).await.unwrap().unwrap();
                let on_pve = tagged(&t, 1).await;
                let creates = t
                    .pve
                    .writes()
                    .await
                    .into_iter()
                    .filter(|r| {
                        r["method"] == "POST"
                            && r["path"].as_str().unwrap().ends_with("/nodes/pve1/lxc")
                    })
                    .count();
                assert!(
                    creates <= 1,
                    "{kind} killed at {at}: {creates} create requests"
                );
                match (kind, end) {
                    ("create", JobState::Succeeded) => assert_eq!(
                        on_pve, 1,
                        "{kind} killed at {at}: ready without a container"
                    ),
                    ("create", _) => assert_eq!(
                        on_pve, 0,
                        "{kind} killed at {at}: rolled back but left a container ({:?})",
                        env.state
                    ),
                    ("destroy", JobState::Succeeded) => assert_eq!(
                        on_pve, 0,
                        "{kind} killed at {at}: destroyed but still there"
                    ),
                    _ => panic!(
                        "{kind} killed at {at} ended {end}: {:?}; job: {:?}; log: {:?}",
                        env,
                        store.job(job).await.unwrap(),
                        store
                            .job_log(job)
                            .await
                            .unwrap()
                            .iter()
                            .map(|l| l.line.clone())
                            .collect::<Vec<_>>()
                    ),
                }
                assert!(on_pve <= 1);
                assert_eq!(store.integrity_check().await.unwrap(), "ok");
                eprintln!("{kind}: killed at {at} → {end}, env {}", env.state);
            }
        }
    }
    // And at seeded random moments inside a create, wherever they fall.
    for seed in 0..4u64 {
        let t = TestEnv::new(Opts {
            time_scale: 0.05,
            ..Opts::default()
        });
        t.pve.set("ct_secs", json!(8)).await;
        let mut child = spawn(
            &t,
            &["console"],
            Some("/env create profile:ci-app name:victim\n"),
        );
        let delay = 150 + (seed * 7919 % 1000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        points += 1;
        let store = Store::open(&t.dir.path().join("slipway.db")).unwrap();
        if store.job(1).await.unwrap().is_none() {
            continue; // killed before the request was stored: nothing to resume
        }
        let mut run = spawn(&t, &["run"], None);
        let end = wait_job_end(&store, 1).await;
        run.kill().unwrap();
        run.wait().unwrap();
        let on_pve = tagged(&t, 1).await;
        assert_eq!(
            on_pve,
            usize::from(end == JobState::Succeeded),
            "killed after {delay} ms: {end}, {on_pve} containers"
        );
        eprintln!("create: killed after {delay} ms → {end}");
    }
    assert!(points >= 20, "only {points} kill points");
}

/// Issue 17, fault 13: a piped console that resumes a crashed session's job
/// waits for that job to finish before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piped_console_waits_for_the_job_it_resumed() {
    let t = TestEnv::new(Opts {
        time_scale: 0.05,
        ..Opts::default()
    });
    t.pve.set("ct_secs", json!(8)).await;
    let db = t.dir.path().join("slipway.db");
    let mut child = spawn(
        &t,
        &["console"],
        Some("/env create profile:ci-app name:resumed\n"),
    );
    let store = loop {
        if let Ok(s) = Store::open(&db) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    kill_at(&store, &mut child, 1, 1, StepState::Running).await;

    // A console with nothing to say: it resumes job 1, and waits for it.
    let out = t.slipway(&["console"], "");
    let job = store.job(1).await.unwrap().unwrap();
    assert!(
        job.state.is_finished(),
        "the console exited with job 1 {}: {}",
        job.state,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(job.state, JobState::Succeeded);
    assert!(out.status.success());
}
