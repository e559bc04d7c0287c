//! Figure: the full create pipeline. 200 environments through the dispatcher
//! of an in-process Slipway (16 workers) against fakepve with instant tasks,
//! and a minimal client making the same Proxmox calls with the same parameters
//! (create, poll, start, poll, status, interfaces; 16 at a time) in the same
//! run, for the wall-time comparison. Six rounds, the two sides alternating
//! which goes first; every phase meets the same cluster (fakepve forgets the
//! earlier phases' containers and tasks, whose bookkeeping it scans on each
//! request) and the same store (the earlier rounds' environments destroyed).
//! The ratio is the median of the rounds' ratios; fakepve's own CPU time is
//! reported beside it, since fakepve (one Python thread) sets the pace.
//! The requester has added [`KEYS`] SSH keys, so every create request carries
//! them and Slipway's own key in `ssh-public-keys` (the client sends the same).

use crate::common::{Opts, TestEnv};
use crate::Figure;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ENVS: usize = 200;
const AT_ONCE: usize = 16;
const ROUNDS: usize = 6;
/// SSH keys bob has added (`/keys add`).
const KEYS: usize = 3;

/// User + system CPU seconds of this whole process so far.
fn process_cpu() -> f64 {
    crate::common::fakepve::cpu_seconds("/proc/self/stat")
}

/// One phase's figures.
#[derive(Clone, Copy)]
struct Phase {
    wall: Duration,
    /// CPU seconds of this process (Slipway's phase only).
    cpu: f64,
    /// CPU seconds of fakepve.
    pve_cpu: f64,
    /// Connections fakepve accepted (each a TLS handshake).
    connections: u64,
    requests: usize,
    failed: i64,
}

/// Slipway's phase.
async fn slipway_phase(env: &TestEnv, round: usize) -> Phase {
    let running = env.start();
    env.pve.forget_guests(1000, 9999).await;
    env.pve.clear_requests().await;
    let cpu = process_cpu();
    let pve_cpu = env.pve.cpu_seconds();
    let connections = env.pve.connections().await;
    let started = Instant::now();
    let started_ms = slipway::store::now_ms();
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = process_cpu() - cpu;
    let pve_cpu = env.pve.cpu_seconds() - pve_cpu;
    let connections = env.pve.connections().await - connections;
    // The wall time ends with the last job's end as Slipway logged it, so
    // this loop's polling neither adds to it nor needs to be fine-grained.
    let db = crate::common::db(&running.dispatcher.config.database);
    let last_ms: i64 = db
        .query_row(
            "SELECT MAX(at_ms) FROM job_log WHERE line LIKE 'done:%' AND at_ms >= ?1",
            [started_ms],
            |r| r.get(0),
        )
        .expect("the round's last job end");
    let wall = Duration::from_millis((last_ms - started_ms).max(0) as u64);
    let failed = running
        .count("SELECT COUNT(*) FROM jobs WHERE state = 'failed'")
        .await;
    let all = env.pve.requests().await;
    if round == 0 {
        let create = all
            .iter()
            .find(|r| {
                r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/lxc"))
            })
            .expect("a create request");
        let keys = create["params"]["ssh-public-keys"]
            .as_str()
            .map_or(0, |k| k.lines().count());
        assert_eq!(keys, KEYS + 1, "a create carries bob's keys and Slipway's");
        eprintln!("Slipway's Proxmox requests per environment, by call:");
        for (call, n) in by_call(&all) {
            eprintln!("  {:.2}  {call}", n as f64 / ENVS as f64);
        }
    }
    // This round's environments end destroyed (as `/env destroy` leaves
    // them); the next phase starts by making fakepve forget their containers.
    db.execute_batch(
        "UPDATE environments SET state = 'destroyed', expires_at = NULL WHERE state != 'destroyed';
         UPDATE reminders SET state = 'skipped' WHERE state = 'scheduled';",
    )
    .expect("reset the store between rounds");
    if let Some(app) = running.app {
        app.shutdown(Duration::from_secs(10)).await;
    }
    Phase {
        wall,
        cpu,
        pve_cpu,
        connections,
        requests: all.len(),
        failed,
    }
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
    /// The `ssh-public-keys` Slipway sends: bob's keys and its own.
    keys: String,
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
            // The same parameters Slipway sends (fakepve's cost depends on them).
            (
                "net0",
                format!(
                    "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:{:02X}:{:02X}:{:02X},ip=dhcp",
                    vmid >> 16 & 0xff,
                    vmid >> 8 & 0xff,
                    vmid & 0xff
                ),
            ),
            ("ssh-public-keys", self.keys.clone()),
            ("tags", format!("slipway;slipway-env-{vmid};slipway-team-web")),
            (
                "description",
                format!("Managed by Slipway: environment min{vmid} (id {vmid}), team web, profile ci-app. Do not edit by hand."),
            ),
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

/// Adds [`KEYS`] new ed25519 keys for bob through `/keys add`; returns what a
/// create request then carries in `ssh-public-keys`.
async fn add_keys(env: &TestEnv) -> String {
    let running = env.start();
    let mut lines = Vec::new();
    for i in 0..KEYS {
        let path = env.dir.path().join(format!("bob_key{i}"));
        let made = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &format!("bob@laptop{i}"),
                "-f",
            ])
            .arg(&path)
            .status()
            .expect("ssh-keygen (Debian: openssh-client)");
        assert!(made.success(), "ssh-keygen failed");
        let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let line = line.trim().to_string();
        let reply = running
            .say("bob", &format!("/keys add key:\"{line}\""))
            .await;
        assert!(reply.text.contains("Added"), "{}", reply.text);
        lines.push(line);
    }
    if let Some(app) = running.app {
        app.shutdown(Duration::from_secs(10)).await;
    }
    let own = std::fs::read_to_string(env.dir.path().join("slipway_ed25519.pub"))
        .expect("Slipway's public key beside its database");
    lines.push(own.trim().to_string());
    lines.join("\n")
}

/// The minimal client's phase.
async fn client_phase(env: &TestEnv, round: usize, keys: &str) -> Phase {
    let pem = std::fs::read(&env.pve.ca).unwrap();
    let client = Client {
        http: reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap(),
        base: env.pve.url.clone(),
        auth: format!("PVEAPIToken={}={}", env.pve.token_id, env.pve.token_secret),
        keys: keys.to_string(),
    };
    env.pve.forget_guests(1000, 9999).await;
    env.pve.clear_requests().await;
    let pve_cpu = env.pve.cpu_seconds();
    let connections = env.pve.connections().await;
    let started = Instant::now();
    futures::stream::iter(0..ENVS as u32)
        .map(|i| client.create(3000 + (round * ENVS) as u32 + i))
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<()>>()
        .await;
    let wall = started.elapsed();
    let pve_cpu = env.pve.cpu_seconds() - pve_cpu;
    let connections = env.pve.connections().await - connections;
    Phase {
        wall,
        cpu: 0.0,
        pve_cpu,
        connections,
        requests: env.pve.requests().await.len(),
        failed: 0,
    }
}

/// Sets the CPU affinity of every thread of `pid` (util-linux `taskset`).
fn pin(pid: u32, cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

pub async fn full_pipeline() -> Vec<Figure> {
    let env = TestEnv::new(Opts {
        quota: "cores = 100000, memory_mb = 100000000, disk_gb = 10000000, environments = 100000"
            .into(),
        vmids: (1000, 2999),
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
    // fakepve stands in for a Proxmox host, which is another machine: it gets
    // one core, Slipway and the minimal client (this process) the other, so
    // neither side's CPU time slows the stand-in both are measured against.
    let keys = add_keys(&env).await;
    let pinned = pin(std::process::id(), "0") && pin(env.pve.pid(), "1");
    // Rounds alternate which side goes first; each round's two phases run
    // back to back, so the machine's load moves both alike.
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let (s, c) = if round % 2 == 0 {
            let c = client_phase(&env, round, &keys).await;
            (slipway_phase(&env, round).await, c)
        } else {
            let s = slipway_phase(&env, round).await;
            (s, client_phase(&env, round, &keys).await)
        };
        rounds.push((s, c));
    }
    if pinned {
        pin(std::process::id(), "0-1023");
    }
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|(s, c)| s.wall.as_secs_f64() / c.wall.as_secs_f64())
        .collect();
    let ratio = median(ratios.clone());
    let slipway_wall = median(rounds.iter().map(|(s, _)| s.wall.as_secs_f64()).collect());
    let client_wall = median(rounds.iter().map(|(_, c)| c.wall.as_secs_f64()).collect());
    let pve_slipway = median(rounds.iter().map(|(s, _)| s.pve_cpu).collect());
    let pve_client = median(rounds.iter().map(|(_, c)| c.pve_cpu).collect());
    let conn_slipway = median(rounds.iter().map(|(s, _)| s.connections as f64).collect());
    let conn_client = median(rounds.iter().map(|(_, c)| c.connections as f64).collect());
    let cpu = median(rounds.iter().map(|(s, _)| s.cpu).collect());
    // The count covers every round's jobs.
    let failed = rounds.last().map(|(s, _)| s.failed).unwrap_or(0);
    let requests = rounds.iter().map(|(s, _)| s.requests).sum::<usize>();
    let client_requests = rounds.iter().map(|(_, c)| c.requests).sum::<usize>();
    let per_env_ms = cpu * 1000.0 / ENVS as f64;
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    vec![
        Figure::new(
            "full pipeline: Slipway CPU per environment",
            format!(
                "{per_env_ms:.2} ms ({cpu:.2} s CPU of the bench process over {ENVS} creates, median of {ROUNDS} rounds, {failed} failed)"
            ),
            "<= 5 ms",
            per_env_ms <= 5.0 && failed == 0,
        ),
        Figure::new(
            "full pipeline: wall time vs minimal client",
            format!(
                "{ratio:.2}x, median of {ROUNDS} paired rounds ({}){}; medians {slipway_wall:.2} s vs {client_wall:.2} s; fakepve CPU {pve_slipway:.2} s vs {pve_client:.2} s; {conn_slipway:.0} vs {conn_client:.0} connections (TLS handshakes); {:.1} vs {:.1} Proxmox requests per env",
                each.join(", "),
                if pinned {
                    ", fakepve on core 1, Slipway and client on core 0"
                } else {
                    ", unpinned (taskset failed)"
                },
                requests as f64 / (ENVS * ROUNDS) as f64,
                client_requests as f64 / (ENVS * ROUNDS) as f64,
            ),
            "<= 1.2x",
            ratio <= 1.2 && failed == 0,
        ),
    ]
}
