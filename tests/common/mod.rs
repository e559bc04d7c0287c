//! The integration-test harness: starts fakepve (a fake Proxmox VE, through
//! `tests/fakepve_driver.py`) on loopback, writes a configuration for it in a
//! temporary directory, and runs Slipway in-process (or as the real binary)
//! with a recording chat sink, so tests assert what a user would see.
#![allow(dead_code)]

use serde_json::{json, Value};
use slipway::app::App;
use slipway::chat::{ChatError, ChatSink, Inbound, MessageRef, Reply, ReplyTo};
use slipway::config::Config;
use slipway::dispatch::Dispatcher;
use slipway::domain::team::{Actor, Platform};
use slipway::store::jobs::JobRecord;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLIPWAY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "fakepve is not installed: run `bash tests/setup.sh` first (or set SLIPWAY_TEST_PYTHON)"
    );
    venv
}

/// A running fakepve with its control API.
pub struct FakePve {
    child: Child,
    pub url: String,
    pub control: String,
    pub ca: PathBuf,
    pub token_id: String,
    pub token_secret: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakePve {
    /// Starts fakepve; `time_scale` is real seconds per PVE second (0: tasks end at once).
    pub fn start(time_scale: f64) -> FakePve {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(repo().join("tests/fakepve_driver.py"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--time-scale")
            .arg(time_scale.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/fakepve_driver.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fakepve driver said {line:?}: {e}"));
        FakePve {
            child,
            url: v["url"].as_str().unwrap().into(),
            control: v["control"].as_str().unwrap().into(),
            ca: v["ca"].as_str().unwrap().into(),
            token_id: v["token_id"].as_str().unwrap().into(),
            token_secret: v["token_secret"].as_str().unwrap().into(),
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "fakepve control {path} {body}: {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Calls a scenario method of fakepve (fail, lose_quorum, …).
    pub async fn call(&self, method: &str, args: Value, kwargs: Value) -> Value {
        self.post(
            "/call",
            json!({"method": method, "args": args, "kwargs": kwargs}),
        )
        .await
    }

    /// Makes requests whose path ends with `suffix` fail (see fakepve's `fail`).
    pub async fn fail(&self, method: &str, suffix: &str, kwargs: Value) {
        self.call("fail", json!([method, suffix]), kwargs).await;
    }

    pub async fn set(&self, attr: &str, value: Value) {
        self.post("/set", json!({"attr": attr, "value": value}))
            .await;
    }

    pub async fn guest_set(&self, vmid: u32, set: Value) {
        self.post("/guest", json!({"vmid": vmid, "set": set})).await;
    }

    pub async fn storage_set(&self, storage: &str, set: Value) {
        self.post("/storage", json!({"storage": storage, "set": set}))
            .await;
    }

    /// Seeds another API token.
    pub async fn token(&self, id: &str, secret: &str) {
        self.post("/token", json!({"id": id, "secret": secret}))
            .await;
    }

    pub async fn guests(&self) -> Vec<Value> {
        self.get("/guests")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn guest(&self, vmid: u32) -> Option<Value> {
        self.guests()
            .await
            .into_iter()
            .find(|g| g["vmid"] == json!(vmid))
    }

    /// Every API request fakepve received (method, path, query, body, …).
    pub async fn requests(&self) -> Vec<Value> {
        self.get("/requests")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn writes(&self) -> Vec<Value> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r["method"] != "GET")
            .collect()
    }

    /// The DELETE requests for container `vmid`.
    pub async fn deletes_of(&self, vmid: u32) -> Vec<Value> {
        let suffix = format!("/lxc/{vmid}");
        self.writes()
            .await
            .into_iter()
            .filter(|r| {
                r["method"] == "DELETE" && r["path"].as_str().unwrap_or("").ends_with(&suffix)
            })
            .collect()
    }

    pub async fn clear_requests(&self) {
        self.post("/requests/clear", json!({})).await;
    }

    pub async fn add_foreign_ct(&self, vmid: u32) {
        self.call(
            "add_ct",
            json!([vmid, format!("foreign{vmid}")]),
            json!({"status": "running"}),
        )
        .await;
    }
}

/// How a test's Slipway is configured.
#[derive(Clone)]
pub struct Opts {
    /// The body of team web's quota table.
    pub quota: String,
    pub over_quota: &'static str,
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
            provision: true,
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

/// Every message the chat sink was asked to post or edit.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(String, String)>>,
    next: AtomicU64,
}

impl Recorder {
    /// ("send"|"edit", message id, text)
    pub fn all(&self) -> Vec<(String, String)> {
        self.events.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ChatSink for Recorder {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    async fn send(&self, to: &ReplyTo, text: &str) -> Result<MessageRef, ChatError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        self.events
            .lock()
            .unwrap()
            .push((format!("send {id}"), text.to_string()));
        Ok(MessageRef {
            platform: Platform::Console,
            channel: to.channel.clone(),
            id,
        })
    }

    async fn edit(&self, msg: &MessageRef, text: &str) -> Result<(), ChatError> {
        self.events
            .lock()
            .unwrap()
            .push((format!("edit {}", msg.id), text.to_string()));
        Ok(())
    }
}

static EVENT: AtomicU64 = AtomicU64::new(1);

/// A running in-process Slipway.
pub struct Running {
    pub app: Option<App>,
    pub dispatcher: Dispatcher,
    pub sink: Arc<Recorder>,
    /// Credentials that must never show up in a message, log or stored row.
    pub secrets: Vec<String>,
}

/// Fails if any secret appears in `text`.
pub fn assert_no_secret(secrets: &[String], text: &str, place: &str) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "a secret leaked into {place}");
    }
}

impl Running {
    pub fn actor(&self, user: &str) -> Actor {
        let roles = self
            .dispatcher
            .config
            .console_users
            .get(user)
            .cloned()
            .unwrap_or_default();
        Actor {
            platform: Platform::Console,
            user_id: user.into(),
            display: user.into(),
            roles,
        }
    }

    pub fn inbound(&self, user: &str, text: &str) -> Inbound {
        Inbound {
            actor: self.actor(user),
            text: text.into(),
            event_id: format!("test:{}", EVENT.fetch_add(1, Ordering::Relaxed)),
            reply_to: ReplyTo {
                platform: Platform::Console,
                channel: "test".into(),
                thread: None,
                interaction: None,
            },
        }
    }

    /// Sends a command as `user` and returns Slipway's reply.
    pub async fn say(&self, user: &str, text: &str) -> Reply {
        self.dispatcher.handle(&self.inbound(user, text)).await
    }

    /// Waits until the job has finished (at most a minute).
    pub async fn finished(&self, job: i64) -> JobRecord {
        let started = Instant::now();
        loop {
            let j = self
                .dispatcher
                .store
                .job(job)
                .await
                .unwrap()
                .expect("job exists");
            if j.state.is_finished() {
                // Let the notifier deliver the final state.
                tokio::time::sleep(Duration::from_millis(400)).await;
                return j;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "job {job} did not finish: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The environment called `name`, whatever its state (newest first).
    pub async fn env(&self, name: &str) -> slipway::store::envs::EnvRecord {
        let name = name.to_string();
        let id: i64 = self
            .dispatcher
            .store
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT id FROM environments WHERE name = ?1 ORDER BY id DESC LIMIT 1",
                    [name],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        self.dispatcher.store.env(id).await.unwrap().unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.dispatcher
            .store
            .call(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    /// Makes the lifetime scheduler look at the clock now.
    pub fn wake_scheduler(&self) {
        self.app.as_ref().unwrap().schedule.notify_one();
    }

    /// Waits until a posted or edited message contains `needle` (at most 10 s).
    pub async fn wait_for_message(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some((_, text)) = self
                .sink
                .all()
                .into_iter()
                .find(|(_, t)| t.contains(needle))
            {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no message contains {needle:?}: {:?}",
                self.sink.all()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many posted or edited messages contain `needle`.
    pub fn messages_with(&self, needle: &str) -> usize {
        self.sink
            .all()
            .iter()
            .filter(|(_, t)| t.contains(needle))
            .count()
    }

    /// The invariants that hold whatever fault happened: no container created
    /// twice for one environment, no orphan after one reconcile pass (run with
    /// `reconcile.orphan_grace = "0s"`), the quota of team web held, exactly one
    /// outcome message per finished job, and a sound database.
    pub async fn assert_invariants(&self, pve: &FakePve, env_limit: u64) {
        use std::collections::HashMap;
        let per_env = |guests: &[Value]| {
            let mut m: HashMap<String, usize> = HashMap::new();
            for g in guests {
                for tag in g["config"]["tags"].as_str().unwrap_or("").split(';') {
                    if tag.starts_with("slipway-env-") {
                        *m.entry(tag.to_string()).or_default() += 1;
                    }
                }
            }
            m
        };
        let before = per_env(&pve.guests().await);
        assert!(
            before.values().all(|n| *n == 1),
            "a container was created twice: {before:?}"
        );
        self.app
            .as_ref()
            .unwrap()
            .reconciler()
            .pass()
            .await
            .expect("a reconcile pass");
        let store = &self.dispatcher.store;
        for (tag, _) in per_env(&pve.guests().await) {
            let id: i64 = tag.trim_start_matches("slipway-env-").parse().unwrap();
            let env = store
                .env(id)
                .await
                .unwrap()
                .expect("the tagged environment exists");
            assert!(
                !env.state.is_ended(),
                "orphan after a reconcile pass: {tag} of a {} environment",
                env.state
            );
        }
        let usage = store.usage("web".into()).await.unwrap();
        assert!(usage.environments <= env_limit, "quota exceeded: {usage:?}");
        let jobs = store.list_jobs(None, 10_000).await.unwrap();
        let messages = self.sink.all();
        for (job, name) in jobs.iter().filter(|(j, _)| j.state.is_finished()) {
            let ok = format!("✅ {} {name}:", job.kind);
            let bad = format!("❌ {} {name} failed", job.kind);
            let n = messages
                .iter()
                .filter(|(_, t)| t.starts_with(&ok) || t.starts_with(&bad))
                .count();
            let same_kind = jobs
                .iter()
                .filter(|(j, n2)| n2 == name && j.kind == job.kind && j.state.is_finished())
                .count();
            assert_eq!(
                n, same_kind,
                "outcome messages for {} {name}: {n}",
                job.kind
            );
        }
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
    }

    /// Scans every chat message and every stored value for the secrets.
    pub async fn assert_no_secrets_anywhere(&self) {
        for (_, text) in self.sink.all() {
            assert_no_secret(&self.secrets, &text, "a chat message");
        }
        let rows: Vec<String> = self
            .dispatcher
            .store
            .call(|c| {
                let tables: Vec<String> = c
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::new();
                for t in tables {
                    let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\""))?;
                    let n = stmt.column_count();
                    let mut rows = stmt.query([])?;
                    while let Some(row) = rows.next()? {
                        for i in 0..n {
                            if let Ok(Some(v)) = row.get::<_, Option<String>>(i) {
                                out.push(format!("{t}: {v}"));
                            }
                        }
                    }
                }
                Ok(out)
            })
            .await
            .unwrap();
        for r in rows {
            assert_no_secret(&self.secrets, &r, "the database");
        }
    }

    pub async fn stop(mut self) {
        self.assert_no_secrets_anywhere().await;
        if let Some(app) = self.app.take() {
            app.shutdown(Duration::from_secs(10)).await;
        }
    }
}

/// The job a reply queued, or a panic with the reply's text.
pub fn job_of(reply: &Reply) -> i64 {
    reply
        .job
        .unwrap_or_else(|| panic!("no job queued; reply: {}", reply.text))
}
