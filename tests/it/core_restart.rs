//! Durability: a process killed (SIGKILL) while Proxmox's create task runs
//! loses nothing. After a restart the job completes from its journal, with no
//! second create request and no orphan. Also drives the real `slipway console`.

use crate::common::{Opts, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::JobState;
use slipway::store::Store;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_during_the_create_task_completes_after_a_restart() {
    let t = TestEnv::new(Opts {
        provision: false,
        time_scale: 0.1,
        ..Opts::default()
    });
    // The create task takes 4 real seconds.
    t.pve.set("ct_secs", json!({"create": 40})).await;
    let mut console = console_with(&t, "/env create profile:generic-service name:durable\n");
    let store = Store::open(&t.dir.path().join("slipway.db")).unwrap();
    // Wait until the create request was sent and its task id journaled.
    wait_until("the create task id in the journal", || {
        let store = store.clone();
        async move {
            let Ok(steps) = store.steps(1).await else {
                return false;
            };
            steps.first().is_some_and(|s| s.data.get("task").is_some())
        }
    })
    .await;
    console.kill().unwrap(); // SIGKILL
    console.wait().unwrap();
    let job = store.job(1).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Running,
        "the kill came too late to prove anything"
    );

    // Restart: `slipway run` resumes the job at once.
    let mut run = run_bot(&t);
    wait_until("the resumed job to finish", || {
        let store = store.clone();
        async move { store.job(1).await.unwrap().unwrap().state.is_finished() }
    })
    .await;
    sigterm(run.id());
    let status = run.wait().unwrap();
    assert!(status.success(), "slipway run exited with {status}");

    assert_eq!(
        store.job(1).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    let creates = t
        .pve
        .writes()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/nodes/pve1/lxc")
        })
        .count();
    assert_eq!(creates, 1, "the container was created twice");
    let lxc: Vec<_> = t
        .pve
        .guests()
        .await
        .into_iter()
        .filter(|g| g["type"] == "lxc")
        .collect();
    assert_eq!(lxc.len(), 1, "{lxc:?}");
    assert_eq!(lxc[0]["status"], "running");
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

/// `slipway console` with one command line on stdin (kept open: no EOF yet).
fn console_with(t: &TestEnv, line: &str) -> std::process::Child {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["console", "--config"])
        .arg(&t.config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    child
}

/// `slipway run`, quiet.
fn run_bot(t: &TestEnv) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "--config"])
        .arg(&t.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_console_exits_zero_when_every_job_succeeded_and_one_otherwise() {
    let t = TestEnv::new(Opts {
        provision: true,
        ..Opts::default()
    });
    let out = t.slipway(
        &["console", "--as", "bob"],
        "/env create profile:ci-app name:ok1\n/env list\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("🚀 Creating ok1"), "{stdout}");
    assert!(stdout.contains("✅ create ok1: ready"), "{stdout}");

    let out = t.slipway(
        &["console", "--as", "bob"],
        "/env create profile:ci-broken-step name:bad1\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("❌ create bad1 failed"), "{stdout}");

    let out = t.slipway(&["console", "--as", "nobody"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("console user 'nobody' is not in console.users"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_step_finish_and_the_next_start_resumes() {
    let t = TestEnv::new(Opts {
        provision: false,
        time_scale: 0.1,
        ..Opts::default()
    });
    t.pve.set("ct_secs", json!({"create": 30})).await;
    // Queue the job without running it: a console killed right after it stored the request.
    let mut console = console_with(&t, "/env create profile:generic-service name:graceful\n");
    let store = loop {
        if let Ok(s) = Store::open(&t.dir.path().join("slipway.db")) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    wait_until("the create task to start", || {
        let store = store.clone();
        async move {
            let Ok(steps) = store.steps(1).await else {
                return false;
            };
            steps.first().is_some_and(|s| s.data.get("task").is_some())
        }
    })
    .await;
    console.kill().unwrap();
    console.wait().unwrap();

    // `slipway run` resumes it; SIGTERM arrives while the create task still runs.
    let mut run = run_bot(&t);
    tokio::time::sleep(Duration::from_millis(800)).await;
    sigterm(run.id());
    let started = Instant::now();
    let status = run.wait().unwrap();
    assert!(status.success(), "slipway run exited with {status}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "shutdown took {:?}",
        started.elapsed()
    );
    let steps = store.steps(1).await.unwrap();
    assert_eq!(
        steps[0].state.as_str(),
        "done",
        "the running step was not finished: {steps:?}"
    );
    let job = store.job(1).await.unwrap().unwrap();
    assert!(!job.state.is_finished(), "{job:?}");
    let log = store.job_log(1).await.unwrap();
    assert!(
        log.iter().any(|l| l.line.contains("paused for shutdown")),
        "{log:?}"
    );

    // The next start finishes it, without creating anything twice.
    let mut run = run_bot(&t);
    wait_until("the resumed job", || {
        let store = store.clone();
        async move { store.job(1).await.unwrap().unwrap().state.is_finished() }
    })
    .await;
    sigterm(run.id());
    assert!(run.wait().unwrap().success());
    assert_eq!(
        store.job(1).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    let creates = t
        .pve
        .writes()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/nodes/pve1/lxc")
        })
        .count();
    assert_eq!(creates, 1);
}
