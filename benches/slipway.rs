//! `cargo bench --bench slipway`: Slipway's performance figures (issue 7),
//! measured on loopback against fakepve, each printed with its target.
//! Exits 1 when a measured figure misses its target; figures this benchmark
//! does not measure are printed as `not measured`, never as passes.
//!
//! Set `SLIPWAY_BENCH_ONLY=queue,startup,...` to run a subset (names: queue,
//! startup, memory, pipeline, interactions, channel, gateway, idle).

#[path = "slipway/channel.rs"]
mod channel;
#[path = "../tests/it/common/mod.rs"]
mod common;
#[path = "../tests/it/discord_support/mod.rs"]
mod discord_support;
#[path = "slipway/gateway.rs"]
mod gateway;
#[path = "slipway/idle.rs"]
mod idle;
#[path = "slipway/interactions.rs"]
mod interactions;
#[path = "../tests/it/matrix_support/mod.rs"]
mod matrix_support;
#[path = "slipway/pipeline.rs"]
mod pipeline;
#[path = "slipway/process.rs"]
mod process;
#[path = "slipway/queue.rs"]
mod queue;

use std::process::ExitCode;

/// One line of the report.
pub struct Figure {
    pub name: &'static str,
    pub measured: String,
    pub target: &'static str,
    pub verdict: Verdict,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Missed,
    NotMeasured,
    /// Reported, with no target to meet.
    Info,
}

impl Figure {
    pub fn new(name: &'static str, measured: String, target: &'static str, ok: bool) -> Figure {
        Figure {
            name,
            measured,
            target,
            verdict: if ok { Verdict::Ok } else { Verdict::Missed },
        }
    }

    // Every figure is measured now; kept so a new one can be listed before it is.
    #[allow(dead_code)]
    pub fn skipped(name: &'static str, target: &'static str, why: &str) -> Figure {
        Figure {
            name,
            measured: format!("not measured ({why})"),
            target,
            verdict: Verdict::NotMeasured,
        }
    }

    pub fn info(name: &'static str, measured: String) -> Figure {
        Figure {
            name,
            measured,
            target: "reported only",
            verdict: Verdict::Info,
        }
    }
}

fn wanted(which: &str) -> bool {
    match std::env::var("SLIPWAY_BENCH_ONLY") {
        Ok(list) => list.split(',').any(|w| w.trim() == which),
        Err(_) => true,
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut figures = Vec::new();
    if wanted("queue") {
        figures.push(rt.block_on(queue::claim_complete_rate()));
    }
    if wanted("startup") {
        figures.push(process::start_to_ready());
    }
    if wanted("memory") {
        figures.push(rt.block_on(process::memory_loaded()));
    }
    if wanted("pipeline") {
        figures.extend(rt.block_on(pipeline::full_pipeline()));
    }
    if wanted("interactions") {
        figures.extend(rt.block_on(interactions::ack_latency()));
    }
    if wanted("channel") {
        figures.push(rt.block_on(channel::fifty_jobs_one_channel()));
    }
    if wanted("gateway") {
        figures.push(rt.block_on(gateway::ack_latency()));
    }
    if wanted("idle") {
        figures.push(rt.block_on(idle::idle_rss()));
    }
    figures.push(process::binary_size());
    for f in &figures {
        eprintln!("measured: {}: {}", f.name, f.measured);
    }

    println!();
    println!("figure | measured | target | ok/MISSED");
    println!("--- | --- | --- | ---");
    let mut missed = 0;
    for f in &figures {
        let verdict = match f.verdict {
            Verdict::Ok => "ok",
            Verdict::Missed => {
                missed += 1;
                "MISSED"
            }
            Verdict::NotMeasured => "not measured",
            Verdict::Info => "-",
        };
        println!("{} | {} | {} | {verdict}", f.name, f.measured, f.target);
    }
    if missed > 0 {
        println!("\n{missed} target(s) missed");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
