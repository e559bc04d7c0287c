//! Figures taken from the real `slipway run` process: start to ready, resident
//! memory with a loaded database, and the binary's size.

use crate::common::{Opts, Running, TestEnv};
use crate::Figure;
use serde_json::json;
use slipway::app::App;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTS: usize = 5;
const STORED_ENVS: usize = 10_000;
const IN_FLIGHT: usize = 100;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_run(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "--config"])
        .arg(config)
        .env("SLIPWAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn slipway run")
}

/// Ends a child this benchmark started: by its own handle, never by name.
pub(crate) fn end(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn healthz_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Spawn to the first `/healthz` 200, on a fresh database each time (so the
/// migrations run); the worst of several starts is the figure.
pub fn start_to_ready() -> Figure {
    let env = TestEnv::new(Opts::default());
    let mut times = Vec::new();
    for i in 0..STARTS {
        let port = free_port();
        let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
            "database = \"slipway.db\"",
            &format!("database = \"start{i}.db\""),
        );
        let text = format!("{text}\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
        let config = env.dir.path().join(format!("start{i}.toml"));
        std::fs::write(&config, text).unwrap();
        let started = Instant::now();
        let child = spawn_run(&config);
        while !healthz_ok(port) {
            if started.elapsed() > Duration::from_secs(30) {
                end(child);
                panic!("slipway run never answered /healthz");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        times.push(started.elapsed());
        end(child);
    }
    times.sort();
    let worst = *times.last().unwrap();
    Figure::new(
        "start to ready (/healthz 200, fresh db migrated)",
        format!(
            "worst {} ms, median {} ms of {STARTS}",
            worst.as_millis(),
            times[STARTS / 2].as_millis()
        ),
        "<= 300 ms",
        worst <= Duration::from_millis(300),
    )
}

pub(crate) fn vm_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Inserts `n` environment rows of history in one transaction.
fn seed_history(db: &Path, n: usize) {
    let mut c = crate::common::db(db);
    (|| -> rusqlite::Result<()> {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO environments (name, team, owner, owner_display, profile, node, vmid, cores,
                         memory_mb, swap_mb, disk_gb, address, state, request_key, ttl_secs, created_at, updated_at)
                     VALUES (?1, 'data', 'console:carol', 'carol', 'ci-app', 'pve1', ?2, 1, 512, 0, 4,
                             '10.30.0.7', 'destroyed', ?3, 86400, 1700000000, 1700000000)",
                )?;
                for i in 0..n {
                    insert.execute(rusqlite::params![
                        format!("hist{i:05}"),
                        900 + (i % 100) as i64,
                        format!("bench:history:{i}")
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })()
        .expect("seed the stored environments");
}

fn running_jobs(db: &Path) -> usize {
    let Ok(c) = rusqlite::Connection::open(db) else {
        return 0;
    };
    c.query_row(
        "SELECT COUNT(*) FROM jobs WHERE state = 'running'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
    .unwrap_or(0)
}

/// 10,000 stored environments (history rows in state `destroyed`, so the
/// reconciler does not report them as drift) plus 100 create jobs queued
/// through the dispatcher, then `slipway run` with 100 workers against a
/// fakepve whose creates take an hour: VmRSS once all 100 are running.
pub async fn memory_loaded() -> Figure {
    let env = TestEnv::new(Opts {
        quota: "cores = 100000, memory_mb = 100000000, disk_gb = 10000000, environments = 100000"
            .into(),
        vmids: (1000, 1999),
        time_scale: 1.0,
        provision: false,
        ..Opts::default()
    });
    env.edit_config("concurrency = 4", "concurrency = 100");
    env.edit_config("per_node = 4", "per_node = 100");
    env.pve.set("ct_secs", json!({"create": 3600})).await;
    {
        // Queue the jobs with an app that runs no worker: the binary runs them.
        let app = App::build(env.config()).expect("build the app");
        seed_history(&app.config.database, STORED_ENVS);
        let running = Running {
            dispatcher: app.dispatcher(),
            app: None,
            sink: Default::default(),
            secrets: vec![],
        };
        for i in 0..IN_FLIGHT {
            let reply = running
                .say("bob", &format!("/env create profile:ci-app name:mem{i:03}"))
                .await;
            crate::common::job_of(&reply);
        }
        app.shutdown(Duration::from_secs(5)).await;
    }
    let db = env.dir.path().join("slipway.db");
    let child = spawn_run(&env.config_path);
    let started = Instant::now();
    while running_jobs(&db) < IN_FLIGHT {
        if started.elapsed() > Duration::from_secs(120) {
            end(child);
            panic!("only {} of {IN_FLIGHT} jobs ever ran", running_jobs(&db));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let every worker reach its first task poll.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = vm_kb(child.id(), "VmRSS:");
    let hwm = vm_kb(child.id(), "VmHWM:");
    end(child);
    Figure::new(
        "RSS, 10,000 envs stored + 100 jobs in flight",
        format!(
            "{:.1} MB (peak {:.1} MB)",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        "<= 60 MB",
        rss <= 60 * 1024,
    )
}

/// The size of the release binary the benchmark ran (reported, no target).
pub fn binary_size() -> Figure {
    let bin = env!("CARGO_BIN_EXE_slipway");
    let bytes = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    Figure::info(
        "binary size (target/release/slipway)",
        format!("{:.1} MB ({bytes} bytes)", bytes as f64 / 1_048_576.0),
    )
}
