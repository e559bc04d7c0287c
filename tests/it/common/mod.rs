//! The integration-test harness: starts fakepve (a fake Proxmox VE, through
//! `tests/fakepve_driver.py`) on loopback, writes a configuration for it in a
//! temporary directory, and runs Slipway in-process (or as the real binary)
//! with a recording chat sink, so tests assert what a user would see.
//!
//! This file writes the configuration ([`Opts`], [`TestEnv`]); fakepve is
//! driven from `fakepve`, and the running Slipway with its recording sink is
//! in `running`. Benches include this file too (by `#[path]`), so the child
//! modules sit beside it in `tests/it/common/`.
#![allow(dead_code)]

pub mod fakepve;
mod running;

pub use fakepve::FakePve;
#[allow(unused_imports)] // not every test binary uses every helper
pub use running::{assert_no_secret, console_inbound, Recorder, Running};

use slipway::app::App;
use slipway::chat::{ChatSink, Reply};
use slipway::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How a test's Slipway is configured.
#[derive(Clone)]
pub struct Opts {
    /// The body of team web's quota table.
    pub quota: String,
    pub over_quota: &'static str,
    /// Whether post-provisioning runs. Off by default: the shipped profiles log
    /// in over SSH, and only the tests that start a real guest have one to reach.
    pub provision: bool,
    pub time_scale: f64,
    pub vmids: (u32, u32),
    pub max_ttl: &'static str,
    pub rate_burst: u32,
    /// Extra TOML appended to the configuration.
    pub extra: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            quota: "cores = 64, memory_mb = 262144, disk_gb = 4000, environments = 50".into(),
            over_quota: "approval",
            provision: false,
            time_scale: 0.0,
            vmids: (200, 299),
            max_ttl: "30d",
            rate_burst: 10000,
            extra: String::new(),
        }
    }
}

/// A fakepve, a temporary directory and a configuration file for Slipway.
pub struct TestEnv {
    pub pve: FakePve,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

fn copy_profiles(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for dir in [repo().join("profiles"), repo().join("tests/profiles")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
            }
        }
    }
}

impl TestEnv {
    pub fn new(opts: Opts) -> TestEnv {
        let pve = FakePve::start(opts.time_scale);
        let dir = tempfile::tempdir().unwrap();
        let profiles = dir.path().join("profiles");
        copy_profiles(&profiles);
        std::fs::write(dir.path().join("pve-token"), &pve.token_secret).unwrap();
        let config = format!(
            r#"
database = "slipway.db"
commands_dir = "{commands}"
profiles_dir = "profiles"

[proxmox]
url = "{url}"
token_id = "{token_id}"
token_secret_file = "pve-token"
ca_file = "{ca}"
nodes = ["pve1"]
storages = ["local-lvm"]
bridges = ["vmbr0"]
timeout = "10s"
task_timeout = "60s"
shutdown_timeout = "5s"
address_wait = "0s"
write_retries = 3
retry_base = "100ms"
lock_wait = "3s"

[worker]
concurrency = 4
per_node = 4
lease = "6s"
rollback_retry = "1s"
rollback_attempts = 3

[policy]
rate_per_minute = 60
rate_burst = {rate_burst}

[provision]
enabled = {provision}

[[teams]]
name = "web"
members = {{ console = ["web-dev"] }}
admins = {{ console = ["web-admin"] }}
over_quota = "{over_quota}"
quota = {{ {quota}, max_ttl = "{max_ttl}" }}
vmids = {{ first = {first}, last = {last} }}
ip_pool = {{ range = "10.20.0.50-10.20.0.59", network = "10.20.0.0/24", gateway = "10.20.0.1" }}

[[teams]]
name = "data"
members = {{ console = ["data-dev"] }}
admins = {{ console = ["data-admin"] }}
vmids = {{ first = 900, last = 999 }}

[console]
users = {{ alice = ["web-admin"], dave = ["web-admin"], bob = ["web-dev"], carol = ["data-dev"], eve = [] }}
default_user = "bob"
{extra}
"#,
            commands = repo().join("commands").display(),
            url = pve.url,
            token_id = pve.token_id,
            ca = pve.ca.display(),
            provision = opts.provision,
            over_quota = opts.over_quota,
            quota = opts.quota,
            max_ttl = opts.max_ttl,
            first = opts.vmids.0,
            last = opts.vmids.1,
            rate_burst = opts.rate_burst,
            extra = opts.extra,
        );
        let config_path = dir.path().join("slipway.toml");
        std::fs::write(&config_path, config).unwrap();
        TestEnv {
            pve,
            dir,
            config_path,
        }
    }

    /// Replaces `from` with `to` in the configuration file.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        assert!(
            text.contains(from),
            "{from} is not in the test configuration"
        );
        std::fs::write(&self.config_path, text.replace(from, to)).unwrap();
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).unwrap_or_else(|p| panic!("test config: {p:?}"))
    }

    /// Slipway in-process, started, with a recording chat sink.
    pub fn start(&self) -> Running {
        self.start_with_clock(Arc::new(slipway::clock::SystemClock))
    }

    /// Like `start`, with a clock the test controls.
    pub fn start_with_clock(&self, clock: Arc<dyn slipway::clock::Clock>) -> Running {
        let app = App::build_with_clock(self.config(), clock).expect("build the app");
        let sink = Arc::new(Recorder::default());
        app.start(vec![sink.clone() as Arc<dyn ChatSink>]);
        let dispatcher = app.dispatcher();
        Running {
            app: Some(app),
            dispatcher,
            sink,
            secrets: vec![self.pve.token_secret.clone()],
        }
    }

    /// Runs the real binary: `slipway ARGS --config CONFIG` with `stdin`.
    /// Debug logging is on, and neither output may hold a secret.
    pub fn slipway(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("SLIPWAY_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let secrets = [self.pve.token_secret.clone()];
        assert_no_secret(
            &secrets,
            &String::from_utf8_lossy(&out.stdout),
            "slipway's output",
        );
        assert_no_secret(
            &secrets,
            &String::from_utf8_lossy(&out.stderr),
            "slipway's log",
        );
        out
    }
}

/// A connection of the test's own to Slipway's database, to look at (or, in
/// the benchmarks, reset) rows directly: Slipway's store is closed to callers.
pub fn db(path: &Path) -> rusqlite::Connection {
    let c =
        rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

/// `SELECT COUNT(*) …` (or any one number) on Slipway's database.
pub fn count(path: &Path, sql: &str) -> i64 {
    db(path).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The job a reply queued, or a panic with the reply's text.
pub fn job_of(reply: &Reply) -> i64 {
    reply
        .job
        .unwrap_or_else(|| panic!("no job queued; reply: {}", reply.text))
}
