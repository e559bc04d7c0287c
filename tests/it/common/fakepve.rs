//! fakepve, a fake Proxmox VE, run from `tests/fakepve_driver.py` in the
//! repository's `.venv`: starting and stopping it, and its control API for
//! scenarios (failures, lost quorum, foreign containers) and for reading back
//! the requests it received.

use super::repo;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds fakepve has used so far (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }
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

    /// How many containers fakepve holds.
    pub async fn lxc_count(&self) -> usize {
        self.guests()
            .await
            .into_iter()
            .filter(|g| g["type"] == "lxc")
            .count()
    }

    /// Makes every delete of container `vmid` fail as a held backup lock
    /// does, `times` times (a destroy's retries included).
    /// Another Proxmox task (a backup, say) takes CT `vmid`'s config lock
    /// and holds it until [`Self::release_lock`]: a write that needs the lock
    /// is refused by the API or ends its task with "can't lock file".
    pub async fn hold_lock(&self, vmid: u32) {
        self.call("hold_config_lock", json!([vmid, null]), json!({}))
            .await;
    }

    pub async fn release_lock(&self, vmid: u32) {
        self.call("release_config_lock", json!([vmid]), json!({}))
            .await;
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

    /// Drops the guests with ids in `from..=to` and every finished task.
    pub async fn forget_guests(&self, from: u32, to: u32) {
        self.post("/guests/forget", json!({"from": from, "to": to}))
            .await;
    }

    /// Connections (TLS handshakes) the API has accepted since it started.
    pub async fn connections(&self) -> u64 {
        self.get("/connections").await["result"]
            .as_u64()
            .expect("a count")
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

/// User + system CPU seconds of the process whose `/proc/…/stat` is `stat`
/// (the kernel keeps the time of threads that have exited).
pub fn cpu_seconds(stat: &str) -> f64 {
    let stat = std::fs::read_to_string(stat).expect("a /proc stat file");
    let after = &stat[stat.rfind(')').expect("a comm field") + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) in clock ticks; Linux reports 100 a second.
    (f[11] + f[12]) as f64 / 100.0
}
