//! Figure: acknowledgement latency in Discord gateway mode. Slipway runs
//! in-process with `[discord] mode = "gateway"`: serenity connects to the
//! gateway stand-in (HELLO, IDENTIFY, READY) and answers through the REST
//! stand-in, which checks every request against Discord's OpenAPI spec.
//! `/env list` slash commands are dispatched as INTERACTION_CREATE events
//! open-loop (on schedule, not waiting for answers); an interaction's latency
//! is the time from the bench handing the event to the gateway stand-in to
//! the REST stand-in having received that interaction's callback (`POST
//! /interactions/{id}/{token}/callback`, the body read, before the stand-in
//! checks it). The stand-in's own queueing and websocket write are inside
//! the figure, so it overstates Slipway's part rather than understating it.

use crate::discord_support::gateway::Gateway;
use crate::discord_support::{bob, command, DiscordEnv, Setup};
use crate::Figure;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Interactions per second. A team's guild sends a few per minute, and a
/// busy one a few per second at its peak; 100/s is far above that, to load
/// the path, and it stays within what one shard is sent comfortably.
const RATE: u64 = 100;
const SECS: u64 = 30;
const WARM_UP: usize = 20;
const CALLBACK: &str = "/interactions/{interaction_id}/{interaction_token}/callback";
const REPLY: &str = "/webhooks/{webhook_id}/{webhook_token}/messages/@original";

/// Dispatches `n` `/env list` interactions, one every `gap`; returns each
/// one's callback path and when it was handed to the gateway stand-in.
async fn dispatch(gw: &Gateway, n: usize, gap: Duration) -> Vec<(String, Instant)> {
    let mut sent = Vec::with_capacity(n);
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..n {
        tick.tick().await;
        let body = command(&bob(), "env", "list", &[]);
        let path = format!(
            "/interactions/{}/{}/callback",
            body["id"].as_str().unwrap(),
            body["token"].as_str().unwrap()
        );
        sent.push((path, Instant::now()));
        gw.dispatch("INTERACTION_CREATE", body);
    }
    sent
}

/// Waits until `want` successful requests on `template` were recorded, or
/// `secs` passed.
async fn settle(d: &DiscordEnv, method: &str, template: &str, want: usize, secs: u64) {
    let started = Instant::now();
    while d.rest.count(method, template) < want && started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn ack_latency() -> Figure {
    let gw = Gateway::start().await;
    let mut setup = Setup {
        mode: "gateway",
        gateway: Some(gw.url.clone()),
        ..Setup::default()
    };
    setup.opts.rate_burst = 1_000_000;
    let mut d = DiscordEnv::start(setup).await;
    let started = Instant::now();
    while !gw.ready.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serenity never identified to the gateway stand-in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm the REST connection pool and the adapter.
    dispatch(&gw, WARM_UP, Duration::from_millis(10)).await;
    settle(&d, "POST", CALLBACK, WARM_UP, 10).await;
    settle(&d, "PATCH", REPLY, WARM_UP, 10).await;

    let n = (RATE * SECS) as usize;
    let sent = dispatch(&gw, n, Duration::from_micros(1_000_000 / RATE)).await;
    settle(&d, "POST", CALLBACK, WARM_UP + n, 10).await;
    // Let the deferred replies drain, so the shutdown below is a quiet one.
    settle(&d, "PATCH", REPLY, WARM_UP + n, 10).await;

    let arrived: HashMap<String, Instant> = d
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.template == CALLBACK && r.status < 300)
        .map(|r| (r.path, r.received))
        .collect();
    let mut took: Vec<Duration> = sent
        .iter()
        .filter_map(|(path, at)| arrived.get(path).map(|got| got.duration_since(*at)))
        .collect();
    took.sort();
    let missing = n - took.len();
    let violations = d.rest.violations().len();
    let replies = d.rest.count("PATCH", REPLY).saturating_sub(WARM_UP);
    if let Some(app) = d.app.take() {
        app.shutdown(Duration::from_secs(10)).await;
    }
    if took.is_empty() {
        return Figure::new(
            "ack latency, gateway mode (stand-in gateway and REST)",
            format!("no callback of {n} arrived; {violations} spec violations"),
            "p99 <= 30 ms",
            false,
        );
    }
    let p99 = quantile(&took, 0.99);
    Figure::new(
        "ack latency, gateway mode (stand-in gateway and REST)",
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {n} callbacks ({RATE}/s for {SECS} s, /env list), \
             {replies} replies, {violations} spec violations",
            ms(quantile(&took, 0.5)),
            ms(p99),
            ms(*took.last().unwrap()),
            took.len(),
        ),
        "p99 <= 30 ms",
        missing == 0 && violations == 0 && p99 <= Duration::from_millis(30),
    )
}
