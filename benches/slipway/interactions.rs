//! Figures: acknowledgement latency of the Discord interactions endpoint (http
//! mode), in-process, with Discord's REST side played by the tests' stand-in
//! and every request signed with the tests' Ed25519 key. Open loop: requests
//! are sent on schedule whether or not earlier ones were answered.

use crate::discord_support::{bob, command, DiscordEnv, Setup};
use crate::Figure;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: u64 = 200;
const SECS: u64 = 60;
const BURST: usize = 500;

fn list() -> Value {
    command(&bob(), "env", "list", &[])
}

/// Sends `n` interactions, one every `gap` (all at once when zero); returns
/// each one's latency, or None for an answer other than 200.
async fn send(d: &Arc<DiscordEnv>, n: usize, gap: Duration) -> Vec<Option<Duration>> {
    let mut tasks = Vec::with_capacity(n);
    let mut tick = tokio::time::interval(gap.max(Duration::from_micros(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..n {
        if !gap.is_zero() {
            tick.tick().await;
        }
        let d = d.clone();
        let body = list();
        tasks.push(tokio::spawn(async move {
            let (status, _, took) = d
                .post_signed(&body, &crate::discord_support::signing_key())
                .await;
            (status == 200).then_some(took)
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap_or(None));
    }
    out
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub async fn ack_latency() -> Vec<Figure> {
    let mut setup = Setup::default();
    setup.opts.rate_burst = 1_000_000;
    let d = Arc::new(DiscordEnv::start(setup).await);
    // Warm the connection pool and the adapter.
    send(&d, 20, Duration::from_millis(5)).await;

    let sustained = send(
        &d,
        (RATE * SECS) as usize,
        Duration::from_micros(1_000_000 / RATE),
    )
    .await;
    let failed = sustained.iter().filter(|t| t.is_none()).count();
    let mut ok: Vec<Duration> = sustained.into_iter().flatten().collect();
    ok.sort();
    let p99 = quantile(&ok, 0.99);
    let max = ok.last().copied().unwrap_or_default();
    let first = Figure::new(
        "ack latency, HTTP endpoint, 200/s for 60 s (/env list)",
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {failed} not 200 of {}",
            quantile(&ok, 0.5).as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            RATE * SECS
        ),
        "p99 <= 20 ms, none > 1 s",
        failed == 0 && p99 <= Duration::from_millis(20) && max <= Duration::from_secs(1),
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let burst = send(&d, BURST, Duration::ZERO).await;
    let whole = started.elapsed();
    let failed = burst.iter().filter(|t| t.is_none()).count();
    let max = burst.iter().flatten().max().copied().unwrap_or_default();
    let second = Figure::new(
        "burst of 500 concurrent interactions (/env list)",
        format!(
            "{} of {BURST} acked, max {:.0} ms, all in {:.0} ms",
            BURST - failed,
            max.as_secs_f64() * 1e3,
            whole.as_secs_f64() * 1e3
        ),
        "all acked, max <= 1 s",
        failed == 0 && max <= Duration::from_secs(1),
    );
    if let Ok(mut d) = Arc::try_unwrap(d) {
        if let Some(app) = d.app.take() {
            app.shutdown(Duration::from_secs(10)).await;
        }
    }
    vec![first, second]
}
