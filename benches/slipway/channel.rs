//! Figure: 50 jobs reporting progress into one Discord channel while the REST
//! stand-in enforces 5 message writes per 5 s per channel (answering 429
//! beyond that). Counted: 429 answers on channel message calls, and for each
//! job the time from when its job row was seen finished (polled every 50 ms)
//! to the first successful write carrying its final state.

use crate::discord_support::{bob, command, DiscordEnv, Setup};
use crate::Figure;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const JOBS: usize = 50;

pub async fn fifty_jobs_one_channel() -> Figure {
    let mut setup = Setup {
        threads: false,
        ..Setup::default()
    };
    setup.opts.time_scale = 0.05;
    setup.opts.quota =
        "cores = 1000, memory_mb = 1000000, disk_gb = 100000, environments = 1000".into();
    let d = DiscordEnv::start(setup).await;
    d.env.pve.set("ct_secs", json!(4)).await;
    d.rest.channel_budget(5, Duration::from_secs(5));

    let bodies: Vec<_> = (0..JOBS)
        .map(|i| {
            command(
                &bob(),
                "env",
                "create",
                &[
                    ("profile", 3, json!("ci-app")),
                    ("name", 3, json!(format!("chan{i}"))),
                ],
            )
        })
        .collect();
    futures::future::join_all(bodies.iter().map(|b| d.interact(b))).await;

    // name -> when its job was first seen finished
    let mut ended: HashMap<String, Instant> = HashMap::new();
    let started = Instant::now();
    while ended.len() < JOBS && started.elapsed() < Duration::from_secs(180) {
        for (job, name) in d.store().list_jobs(None, 1000).await.unwrap() {
            if job.state.is_finished() {
                ended.entry(name).or_insert_with(Instant::now);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_end = ended.values().max().copied().unwrap_or_else(Instant::now);
    while Instant::now() < last_end + Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let requests = d.rest.requests();
    let limited = requests
        .iter()
        .filter(|r| r.template.starts_with("/channels/{channel_id}/messages") && r.status == 429)
        .count();
    let mut delays = Vec::new();
    for (name, end) in &ended {
        let ok = format!("✅ create {name}:");
        let bad = format!("❌ create {name} failed");
        let delivered = requests.iter().find(|r| {
            let text = r.body["content"].as_str().unwrap_or_default();
            r.status < 300 && (text.starts_with(&ok) || text.starts_with(&bad))
        });
        delays.push(delivered.map(|r| r.at.saturating_duration_since(*end)));
    }
    let delivered = delays.iter().flatten().count();
    let worst = delays.iter().flatten().max().copied().unwrap_or_default();
    if let Some(app) = d.app {
        app.shutdown(Duration::from_secs(10)).await;
    }
    Figure::new(
        "50 jobs into one Discord channel, 5 writes/5 s",
        format!(
            "{limited} x 429; {delivered} of {} final states delivered ({} jobs ended), worst {:.1} s after job end",
            ended.len(),
            JOBS,
            worst.as_secs_f64()
        ),
        "0 x 429, every final state <= 10 s after its job",
        limited == 0 && ended.len() == JOBS && delivered == JOBS && worst <= Duration::from_secs(10),
    )
}
