//! Figure: the full create pipeline. 200 environments through the dispatcher
//! of an in-process Slipway (16 workers) against fakepve with instant tasks,
//! and a minimal client making the same Proxmox calls (create, poll, start,
//! poll, status, interfaces; 16 at a time) in the same run, for the wall-time
//! comparison: three alternating rounds, the best of each side.

use crate::common::{Opts, TestEnv};
use crate::Figure;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ENVS: usize = 200;
const AT_ONCE: usize = 16;
const ROUNDS: usize = 3;

/// User + system CPU seconds of this whole process so far (from
/// /proc/self/stat, which keeps the time of threads that have exited).
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after = &stat[stat.rfind(')').expect("a comm field") + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) in clock ticks; Linux reports 100 a second.
    (f[11] + f[12]) as f64 / 100.0
}

/// Slipway's phase: (wall, CPU seconds, failed jobs so far, Proxmox requests).
async fn slipway_phase(env: &TestEnv, round: usize) -> (Duration, f64, i64, usize) {
    let running = env.start();
    env.pve.clear_requests().await;
    let cpu = process_cpu();
    let started = Instant::now();
    let lines: Vec<String> = (0..ENVS)
        .map(|i| format!("/env create profile:ci-app name:pipe{round}-{i:03}"))
        .collect();
    let replies = futures::future::join_all(lines.iter().map(|l| running.say("bob", l))).await;
    for r in &replies {
        crate::common::job_of(r);
    }
    loop {
        let done = running
            .count("SELECT COUNT(*) FROM jobs WHERE state IN ('succeeded', 'failed')")
            .await;
        if done as usize >= ENVS * (round + 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{done} of {ENVS} jobs finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed();
    let cpu = process_cpu() - cpu;
    let failed = running
        .count("SELECT COUNT(*) FROM jobs WHERE state = 'failed'")
        .await;
    let all = env.pve.requests().await;
    if round == 0 {
        eprintln!("Slipway's Proxmox requests per environment, by call:");
        for (call, n) in by_call(&all) {
            eprintln!("  {:.2}  {call}", n as f64 / ENVS as f64);
        }
    }
    let requests = all.len();
    if let Some(app) = running.app {
        app.shutdown(Duration::from_secs(10)).await;
    }
    (wall, cpu, failed, requests)
}

/// Requests counted by method and path, ids replaced by `{id}`.
fn by_call(requests: &[Value]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for r in requests {
        let path: Vec<&str> = r["path"].as_str().unwrap_or_default().split('/').collect();
        let path: Vec<&str> = path
            .iter()
            .map(|s| {
                if s.starts_with("UPID:") || s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty()
                {
                    "{id}"
                } else {
                    s
                }
            })
            .collect();
        let call = format!("{} {}", r["method"].as_str().unwrap_or("?"), path.join("/"));
        *counts.entry(call).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, form: &[(&str, String)]) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/api2/json/{path}", self.base))
            .header("Authorization", &self.auth);
        if !form.is_empty() {
            req = req.form(form);
        }
        let resp = req.send().await.expect("fakepve answers");
        let status = resp.status();
        let body: Value = resp.json().await.expect("JSON from fakepve");
        assert!(status.is_success(), "{path}: {status} {body}");
        body["data"].clone()
    }

    /// Polls a task as Slipway does: at once, then every 100 ms.
    async fn wait(&self, upid: &str) {
        loop {
            let st = self
                .call(
                    reqwest::Method::GET,
                    &format!("nodes/pve1/tasks/{upid}/status"),
                    &[],
                )
                .await;
            if st["status"] == "stopped" {
                assert_eq!(st["exitstatus"], "OK", "task {upid}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create(&self, vmid: u32) {
        let form = [
            ("vmid", vmid.to_string()),
            (
                "ostemplate",
                "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
            ),
            ("hostname", format!("min{vmid}")),
            ("storage", "local-lvm".into()),
            ("rootfs", "local-lvm:4".into()),
            ("cores", "1".into()),
            ("memory", "512".into()),
            ("swap", "0".into()),
            ("unprivileged", "1".into()),
            ("onboot", "0".into()),
            ("net0", "name=eth0,bridge=vmbr0,ip=dhcp".into()),
            ("tags", "bench".into()),
            ("features", "nesting=1".into()),
        ];
        let upid = self
            .call(reqwest::Method::POST, "nodes/pve1/lxc", &form)
            .await;
        self.wait(upid.as_str().expect("a UPID")).await;
        let upid = self
            .call(
                reqwest::Method::POST,
                &format!("nodes/pve1/lxc/{vmid}/status/start"),
                &[],
            )
            .await;
        self.wait(upid.as_str().expect("a UPID")).await;
        let st = self
            .call(
                reqwest::Method::GET,
                &format!("nodes/pve1/lxc/{vmid}/status/current"),
                &[],
            )
            .await;
        assert_eq!(st["status"], "running", "CT {vmid}");
        // Slipway reads the address the container got, once.
        self.call(
            reqwest::Method::GET,
            &format!("nodes/pve1/lxc/{vmid}/interfaces"),
            &[],
        )
        .await;
    }
}

/// The minimal client's phase: (wall, Proxmox requests).
async fn client_phase(env: &TestEnv, round: usize) -> (Duration, usize) {
    let pem = std::fs::read(&env.pve.ca).unwrap();
    let client = Client {
        http: reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap(),
        base: env.pve.url.clone(),
        auth: format!("PVEAPIToken={}={}", env.pve.token_id, env.pve.token_secret),
    };
    env.pve.clear_requests().await;
    let started = Instant::now();
    futures::stream::iter(0..ENVS as u32)
        .map(|i| client.create(3000 + (round * ENVS) as u32 + i))
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<()>>()
        .await;
    (started.elapsed(), env.pve.requests().await.len())
}

pub async fn full_pipeline() -> Vec<Figure> {
    let env = TestEnv::new(Opts {
        quota: "cores = 100000, memory_mb = 100000000, disk_gb = 10000000, environments = 100000"
            .into(),
        vmids: (1000, 1999),
        provision: false,
        ..Opts::default()
    });
    env.edit_config("concurrency = 4", "concurrency = 16");
    env.edit_config("per_node = 4", "per_node = 16");
    env.pve
        .storage_set(
            "local-lvm",
            json!({"avail": 1u64 << 50, "total": 1u64 << 51}),
        )
        .await;
    // Alternating rounds, best of each: the machine's load moves both alike.
    let mut slipway = Vec::new();
    let mut client = Vec::new();
    for round in 0..ROUNDS {
        client.push(client_phase(&env, round).await);
        slipway.push(slipway_phase(&env, round).await);
    }
    let (wall, _, _, requests) = slipway
        .iter()
        .copied()
        .min_by_key(|s| s.0)
        .expect("a round");
    let cpu = slipway.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    // The count covers every round's jobs.
    let failed = slipway.last().map(|s| s.2).unwrap_or(0);
    let (client_wall, client_requests) =
        client.iter().copied().min_by_key(|c| c.0).expect("a round");
    let per_env_ms = cpu * 1000.0 / ENVS as f64;
    let ratio = wall.as_secs_f64() / client_wall.as_secs_f64();
    vec![
        Figure::new(
            "full pipeline: Slipway CPU per environment",
            format!(
                "{per_env_ms:.2} ms ({cpu:.2} s CPU of the bench process over {ENVS} creates, best of {ROUNDS} rounds, {failed} failed)"
            ),
            "<= 5 ms",
            per_env_ms <= 5.0 && failed == 0,
        ),
        Figure::new(
            "full pipeline: wall time vs minimal client",
            format!(
                "{:.2} s vs {:.2} s = {ratio:.2}x, best of {ROUNDS} alternating rounds ({:.1} vs {:.1} Proxmox requests per env)",
                wall.as_secs_f64(),
                client_wall.as_secs_f64(),
                requests as f64 / ENVS as f64,
                client_requests as f64 / ENVS as f64,
            ),
            "<= 1.2x",
            ratio <= 1.2 && failed == 0,
        ),
    ]
}
