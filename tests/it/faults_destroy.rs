//! Issue 17, fault 1: a failed destroy must not strand the environment. The
//! owner can ask again, `/env list` says the last destroy failed and why, and
//! an expired environment's teardown is tried again by the scheduler.

use crate::common::{job_of, Opts, TestEnv};
use slipway::domain::lifecycle::{EnvState, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_destroy_is_reported_and_can_be_asked_for_again() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:stuck")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let vmid = s.env("stuck").await.vmid.unwrap();
    // A backup holds the container's lock for longer than the lock wait.
    t.pve.hold_lock(vmid).await;
    let first = s.say("bob", "/env destroy name:stuck").await;
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Failed);
    assert_eq!(s.env("stuck").await.state, EnvState::Destroying);
    let list = s.say("bob", "/env list").await;
    assert!(
        list.text.contains("destroy failed") && list.text.contains("can't lock file"),
        "{}",
        list.text
    );

    // The lock is gone now: asking again works.
    t.pve.release_lock(vmid).await;
    let again = s.say("bob", "/env destroy name:stuck").await;
    let job = again
        .job
        .unwrap_or_else(|| panic!("refused: {}", again.text));
    assert_eq!(s.finished(job).await.state, JobState::Succeeded);
    assert_eq!(s.env("stuck").await.state, EnvState::Destroyed);
    assert_eq!(t.pve.lxc_count().await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_environments_failed_teardown_is_tried_again() {
    use slipway::clock::ManualClock;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let t = TestEnv::new(Opts {
        provision: false,
        extra: "[lifetimes]\nreminders = []\ngrace = \"1m\"\n".into(),
        ..Opts::default()
    });
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    let reply = s
        .say(
            "bob",
            "/env create profile:generic-service name:brief ttl:2h",
        )
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let vmid = s.env("brief").await.vmid.unwrap();
    t.pve.hold_lock(vmid).await;
    let started = Instant::now();
    // Past its expiry: the teardown fails once, then the scheduler tries again.
    clock.advance(2 * 3600 + 120);
    loop {
        if s.count("SELECT COUNT(*) FROM jobs WHERE kind = 'destroy' AND state = 'failed'")
            .await
            > 0
        {
            t.pve.release_lock(vmid).await;
        }
        s.wake_scheduler();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.env("brief").await.state == EnvState::Destroyed {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still {:?}: {:?}",
            s.env("brief").await.state,
            s.env("brief").await.reason
        );
    }
    let destroys = s
        .count("SELECT COUNT(*) FROM jobs WHERE kind = 'destroy'")
        .await;
    assert_eq!(destroys, 2, "one failed teardown, one that worked");
    assert_eq!(t.pve.lxc_count().await, 0);
    assert!(
        s.messages_with("trying again") >= 1,
        "the retry was announced: {:?}",
        s.sink.all()
    );
    s.stop().await;
}
