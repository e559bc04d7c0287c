//! Figure: the durable job queue, claim + complete per second, against an
//! on-disk SQLite file opened by `Store::open` (the shipped settings: WAL,
//! synchronous=NORMAL, foreign keys on).

use crate::Figure;
use slipway::domain::lifecycle::{JobKind, JobState, Step};
use slipway::domain::policy::Decision;
use slipway::domain::quota::{Quota, Resources};
use slipway::store::envs::NewEnv;
use slipway::store::jobs::NewJob;
use slipway::store::Store;
use std::time::Instant;

const JOBS: usize = 5_000;
const TARGET: f64 = 2_000.0;

async fn seed(store: &Store) {
    for i in 0..JOBS {
        let env = NewEnv {
            name: format!("q{i}"),
            team: "web".into(),
            owner: "console:bob".into(),
            owner_display: "bob".into(),
            profile: "ci-app".into(),
            node: "pve1".into(),
            resources: Resources {
                cores: 1,
                memory_mb: 512,
                swap_mb: 0,
                disk_gb: 4,
            },
            request_key: format!("bench:queue:{i}"),
            ttl_secs: None,
            announce_to: r#"{"platform":"console","channel":"bench"}"#.into(),
            domain: None,
        };
        let job = NewJob {
            kind: JobKind::Create,
            idempotency_key: format!("bench:queue:{i}"),
            requested_by: "console:bob".into(),
            reply_to: r#"{"platform":"console","channel":"bench"}"#.into(),
            steps: vec![Step::CreateContainer, Step::Start],
        };
        store
            .submit_create(env, Quota::default(), |_| Decision::Enqueue, job)
            .await
            .expect("seed a job");
    }
}

/// Claims and completes every seeded job, one after another, through the
/// store API a worker uses (`claim`, then `set_job_state` to succeeded).
pub async fn claim_complete_rate() -> Figure {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("queue.db")).expect("open the store");
    seed(&store).await;
    let started = Instant::now();
    let mut done = 0usize;
    while let Some(job) = store
        .claim("bench".into(), 60, usize::MAX >> 1)
        .await
        .expect("claim")
    {
        let ok = store
            .set_job_state(job.id, JobState::Running, JobState::Succeeded, None)
            .await
            .expect("complete");
        assert!(ok, "job {} was not running", job.id);
        done += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done, JOBS, "every seeded job is claimed once");
    let rate = done as f64 / secs;
    Figure::new(
        "job queue: claim + complete (WAL, synchronous=NORMAL)",
        format!("{rate:.0}/s ({done} jobs in {secs:.2} s, one claimer)"),
        ">= 2000/s",
        rate >= TARGET,
    )
}
