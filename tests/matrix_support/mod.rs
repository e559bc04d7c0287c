//! Matrix test support: a real Synapse homeserver (PyPI `matrix-synapse`, from
//! the venv `tests/setup.sh` makes) on 127.0.0.1 with SQLite and every rate
//! limit raised, users registered through the shared-secret admin API, people
//! who act with plain client-server API calls, and Slipway with its Matrix
//! adapter running in-process against a [`common::TestEnv`]'s fakepve.
#![allow(dead_code)]

use crate::common::{repo, TestEnv};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use slipway::app::App;
use slipway::chat::matrix::MatrixAdapter;
use slipway::dispatch::Dispatcher;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SECRET: &str = "slipway-test-shared-secret";
pub const SERVER: &str = "localhost";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLIPWAY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "Synapse is not installed: run `bash tests/setup.sh` first (or set SLIPWAY_TEST_PYTHON)"
    );
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Unpadded standard base64, as Synapse's signing key file wants it.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Every `rc_*` limit Synapse has, raised so tests never wait on them.
const RATE_LIMITS: &str = r#"
rc_message: {per_second: 10000, burst_count: 10000}
rc_registration: {per_second: 10000, burst_count: 10000}
rc_registration_token_validity: {per_second: 10000, burst_count: 10000}
rc_login:
  address: {per_second: 10000, burst_count: 10000}
  account: {per_second: 10000, burst_count: 10000}
  failed_attempts: {per_second: 10000, burst_count: 10000}
rc_admin_redaction: {per_second: 10000, burst_count: 10000}
rc_joins:
  local: {per_second: 10000, burst_count: 10000}
  remote: {per_second: 10000, burst_count: 10000}
rc_joins_per_room: {per_second: 10000, burst_count: 10000}
rc_3pid_validation: {per_second: 10000, burst_count: 10000}
rc_invites:
  per_room: {per_second: 10000, burst_count: 10000}
  per_user: {per_second: 10000, burst_count: 10000}
  per_issuer: {per_second: 10000, burst_count: 10000}
rc_third_party_invite: {per_second: 10000, burst_count: 10000}
rc_media_create: {per_second: 10000, burst_count: 10000}
rc_key_requests: {per_second: 10000, burst_count: 10000}
rc_presence:
  per_user: {per_second: 10000, burst_count: 10000}
rc_delayed_event_mgmt: {per_second: 10000, burst_count: 10000}
rc_room_creation: {per_second: 10000, burst_count: 10000}
rc_reports: {per_second: 10000, burst_count: 10000}
rc_user_directory: {per_second: 10000, burst_count: 10000}
rc_profile: {per_second: 10000, burst_count: 10000}
rc_federation: {window_size: 1000, sleep_limit: 10000, sleep_delay: 1, reject_limit: 10000, concurrent: 10000}
"#;

/// How Synapse limits messages.
#[derive(Clone, Copy, PartialEq)]
pub enum Limits {
    /// Every limit raised.
    Raised,
    /// Synapse's production message limit (0.2/s, burst 10); the rest raised.
    ProductionMessages,
}

/// A running Synapse in a temporary directory.
pub struct Synapse {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Synapse {
    pub async fn start() -> Synapse {
        Self::start_with(Limits::Raised).await
    }

    pub async fn start_with(limits: Limits) -> Synapse {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let seed: [u8; 32] = rand::random();
        std::fs::write(
            d.join("signing.key"),
            format!("ed25519 a_test {}\n", base64(&seed)),
        )
        .unwrap();
        let mut rate_limits = RATE_LIMITS.to_string();
        if limits == Limits::ProductionMessages {
            rate_limits = rate_limits.replace(
                "rc_message: {per_second: 10000, burst_count: 10000}",
                "rc_message: {per_second: 0.2, burst_count: 10}",
            );
        }
        let config = format!(
            r#"server_name: {SERVER}
pid_file: {d}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
media_store_path: {d}/media
signing_key_path: {d}/signing.key
trusted_key_servers: []
suppress_key_server_warning: true
report_stats: false
enable_registration: false
registration_shared_secret: "{SECRET}"
presence:
  enabled: false
{rate_limits}"#,
            d = d.display()
        );
        std::fs::write(d.join("homeserver.yaml"), config).unwrap();
        let log = std::fs::File::create(d.join("synapse.log")).unwrap();
        let child = Command::new(python())
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(d.join("homeserver.yaml"))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Synapse");
        let synapse = Synapse {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        };
        synapse.wait_healthy().await;
        synapse
    }

    async fn wait_healthy(&self) {
        let started = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Synapse did not start; its log:\n{}",
                std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers `@name:localhost` with the shared secret; returns them logged in.
    pub async fn register(&self, name: &str, admin: bool) -> Person {
        let endpoint = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: Value = self
            .http
            .get(&endpoint)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let nonce = nonce["nonce"].as_str().unwrap().to_string();
        let password = format!("{name}-password");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(nonce.as_bytes());
        mac.update(b"\0");
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(password.as_bytes());
        mac.update(b"\0");
        mac.update(if admin { b"admin" } else { b"notadmin" });
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let resp: Value = self
            .http
            .post(&endpoint)
            .json(&json!({"nonce": nonce, "username": name, "password": password, "admin": admin, "mac": hex}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = resp["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("register {name}: {resp}"))
            .to_string();
        Person {
            user_id: resp["user_id"].as_str().unwrap().to_string(),
            token,
            password,
            url: self.url.clone(),
            http: reqwest::Client::new(),
        }
    }
}

static TXN: AtomicU64 = AtomicU64::new(1);

/// A Matrix user acting through the client-server API with plain HTTP calls.
#[derive(Clone)]
pub struct Person {
    pub user_id: String,
    pub token: String,
    pub password: String,
    pub url: String,
    http: reqwest::Client,
}

fn enc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' => c.to_string(),
            c => {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

impl Person {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "{method} {path} {body:?}: {status} {v}"
        );
        v
    }

    /// Creates a room, invites `invite`, and gives `power` their levels.
    pub async fn create_room(
        &self,
        invite: &[&str],
        power: &[(&str, i64)],
        encrypted: bool,
    ) -> String {
        let mut users = serde_json::Map::new();
        users.insert(self.user_id.clone(), json!(100));
        for (u, p) in power {
            users.insert(u.to_string(), json!(p));
        }
        let mut initial_state = vec![];
        if encrypted {
            initial_state.push(json!({"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}));
        }
        let v = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(json!({
                    "preset": "private_chat",
                    "invite": invite,
                    "room_version": "10",
                    "initial_state": initial_state,
                    "power_level_content_override": {"users": users},
                })),
            )
            .await;
        v["room_id"].as_str().unwrap().to_string()
    }

    pub async fn join(&self, room: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(room)),
            Some(json!({})),
        )
        .await;
    }

    pub async fn send(&self, room: &str, event_type: &str, content: Value) -> String {
        let txn = format!(
            "t{}-{}",
            std::process::id(),
            TXN.fetch_add(1, Ordering::Relaxed)
        );
        let v = self
            .call(
                reqwest::Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/{event_type}/{txn}",
                    enc(room)
                ),
                Some(content),
            )
            .await;
        v["event_id"].as_str().unwrap().to_string()
    }

    /// Sends a text message (a command, if it starts with `!`).
    pub async fn say(&self, room: &str, text: &str) -> String {
        self.send(
            room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": text}),
        )
        .await
    }

    pub async fn react(&self, room: &str, event: &str, key: &str) -> String {
        self.send(
            room,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": key}}),
        )
        .await
    }

    /// The room's events, oldest first.
    pub async fn events(&self, room: &str) -> Vec<Value> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
                    enc(room)
                ),
                None,
            )
            .await;
        let mut chunk = v["chunk"].as_array().cloned().unwrap_or_default();
        chunk.reverse();
        chunk
    }

    pub async fn joined_members(&self, room: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)),
                None,
            )
            .await;
        v["joined"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// This user's devices (sessions).
    pub async fn devices(&self) -> Vec<Value> {
        let v = self
            .call(reqwest::Method::GET, "/_matrix/client/v3/devices", None)
            .await;
        v["devices"].as_array().cloned().unwrap_or_default()
    }

    /// Lifts (Synapse admin API) every message rate limit of `user`.
    pub async fn lift_rate_limit(&self, user: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(user)),
            Some(json!({"messages_per_second": 0, "burst_count": 0})),
        )
        .await;
    }
}

/// A message as a user sees it: its event and the text after its latest edit.
#[derive(Debug, Clone)]
pub struct Shown {
    pub event_id: String,
    pub sender: String,
    pub text: String,
    /// How many times it was edited.
    pub edits: usize,
    /// The thread root it belongs to, if any.
    pub thread: Option<String>,
    pub content: Value,
}

/// The messages of `events` (oldest first) with their edits applied.
pub fn shown(events: &[Value]) -> Vec<Shown> {
    let mut out: Vec<Shown> = Vec::new();
    for e in events {
        if e["type"] != "m.room.message" {
            continue;
        }
        let rel = &e["content"]["m.relates_to"];
        if rel["rel_type"] == "m.replace" {
            if let Some(m) = out
                .iter_mut()
                .find(|m| rel["event_id"] == m.event_id.as_str())
            {
                m.text = e["content"]["m.new_content"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                m.edits += 1;
            }
            continue;
        }
        out.push(Shown {
            event_id: e["event_id"].as_str().unwrap_or_default().to_string(),
            sender: e["sender"].as_str().unwrap_or_default().to_string(),
            text: e["content"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            edits: 0,
            thread: (rel["rel_type"] == "m.thread")
                .then(|| rel["event_id"].as_str().unwrap_or_default().to_string()),
            content: e["content"].clone(),
        });
    }
    out
}

/// Polls `check` until it gives Some (at most `secs` seconds).
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    started.elapsed() < Duration::from_secs(secs),
                    "{what} did not happen within {secs}s; last seen: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a message in `room` from `from` satisfies `pred`.
pub async fn wait_message(
    person: &Person,
    room: &str,
    from: &str,
    what: &str,
    pred: impl Fn(&Shown) -> bool,
) -> Shown {
    eventually(60, what, || async {
        let all = shown(&person.events(room).await);
        all.iter()
            .find(|m| m.sender == from && pred(m))
            .cloned()
            .ok_or_else(|| format!("{:#?}", all.iter().map(|m| &m.text).collect::<Vec<_>>()))
    })
    .await
}

/// The users and rooms of a Matrix test world.
pub struct World {
    pub synapse: Synapse,
    pub bot: Person,
    /// A team web admin.
    pub alice: Person,
    /// A team web member.
    pub bob: Person,
    /// In no team.
    pub eve: Person,
    /// Created by alice; bob and the bot are in it.
    pub room: String,
    /// Created by alice; approval cards go here.
    pub admin_room: String,
    /// Created by alice; environment threads go here when configured.
    pub status_room: String,
}

impl World {
    pub async fn new(limits: Limits) -> World {
        let synapse = Synapse::start_with(limits).await;
        let bot = synapse.register("slipway", false).await;
        let alice = synapse.register("alice", true).await;
        let bob = synapse.register("bob", false).await;
        let eve = synapse.register("eve", false).await;
        let room = alice
            .create_room(&[&bot.user_id, &bob.user_id, &eve.user_id], &[], false)
            .await;
        bob.join(&room).await;
        eve.join(&room).await;
        let admin_room = alice
            .create_room(&[&bot.user_id, &bob.user_id, &eve.user_id], &[], false)
            .await;
        bob.join(&admin_room).await;
        eve.join(&admin_room).await;
        let status_room = alice
            .create_room(&[&bot.user_id, &bob.user_id], &[], false)
            .await;
        bob.join(&status_room).await;
        World {
            synapse,
            bot,
            alice,
            bob,
            eve,
            room,
            admin_room,
            status_room,
        }
    }

    /// Binds team web's members and admins to Matrix users and writes the
    /// `[matrix]` section (the bot logs in with its password, from a file).
    pub fn configure(&self, t: &TestEnv, with_status_room: bool) {
        t.edit_config(
            r#"members = { console = ["web-dev"] }"#,
            &format!(
                r#"members = {{ console = ["web-dev"], matrix = ["{}"] }}"#,
                self.bob.user_id
            ),
        );
        t.edit_config(
            r#"admins = { console = ["web-admin"] }"#,
            &format!(
                r#"admins = {{ console = ["web-admin"], matrix = ["{}"] }}"#,
                self.alice.user_id
            ),
        );
        std::fs::write(t.dir.path().join("matrix-password"), &self.bot.password).unwrap();
        let mut text = std::fs::read_to_string(&t.config_path).unwrap();
        text.push_str(&format!(
            "\n[matrix]\nhomeserver = \"{}\"\nuser_id = \"{}\"\npassword_file = \"matrix-password\"\nstore_dir = \"matrix-store\"\nadmin_room = \"{}\"\n",
            self.synapse.url, self.bot.user_id, self.admin_room
        ));
        if with_status_room {
            text.push_str(&format!("status_room = \"{}\"\n", self.status_room));
        }
        std::fs::write(&t.config_path, text).unwrap();
    }
}

/// Slipway in-process with its Matrix adapter.
pub struct Bot {
    pub app: Option<App>,
    pub dispatcher: Dispatcher,
}

impl Bot {
    pub async fn start(t: &TestEnv) -> Bot {
        Self::start_with_clock(t, Arc::new(slipway::clock::SystemClock)).await
    }

    /// Like `start`, with a clock the test controls.
    pub async fn start_with_clock(t: &TestEnv, clock: Arc<dyn slipway::clock::Clock>) -> Bot {
        let config = t.config();
        let matrix = config.matrix.clone().expect("a [matrix] section");
        let app = App::build_with_clock(config, clock).expect("build the app");
        let adapter = MatrixAdapter::connect(matrix, &app.catalog)
            .await
            .unwrap_or_else(|e| panic!("the bot cannot connect: {e}"));
        app.start(vec![adapter.sink()]);
        adapter.spawn(app.dispatcher(), &app.tracker, app.cancel.clone());
        let dispatcher = app.dispatcher();
        Bot {
            app: Some(app),
            dispatcher,
        }
    }

    /// Makes the lifetime scheduler look at the clock now.
    pub fn wake_scheduler(&self) {
        self.app.as_ref().unwrap().schedule.notify_one();
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown(Duration::from_secs(10)).await;
        }
    }

    /// The environment called `name`, if live.
    pub async fn env(&self, name: &str) -> Option<slipway::store::envs::EnvRecord> {
        self.dispatcher
            .store
            .env_by_name(name.to_string())
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.dispatcher
            .store
            .call(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }
}

/// Waits until the bot has joined `room`.
pub async fn bot_joined(w: &World, room: &str) {
    eventually(30, "the bot joining the room", || async {
        let members = w.alice.joined_members(room).await;
        if members.contains(&w.bot.user_id) {
            Ok(())
        } else {
            Err(format!("{members:?}"))
        }
    })
    .await
}
