//! Playing Discord for Slipway's Discord adapter: a REST stand-in ([`rest`])
//! checked against Discord's OpenAPI spec ([`spec`]), a gateway stand-in
//! ([`gateway`]), and here the interactions side: payloads as Discord sends
//! them, signed with a test Ed25519 key, plus [`DiscordEnv`], which starts
//! fakepve (through tests/it/common), the stand-ins and Slipway with a
//! `[discord]` section.
#![allow(dead_code)]

pub mod gateway;
pub mod rest;
pub mod spec;

use crate::common::{Opts, TestEnv};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use slipway::app::App;
use slipway::chat::discord::Discord;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const APP: u64 = 5;
pub const GUILD: u64 = 10;
pub const ADMIN_CHANNEL: u64 = 20;
pub const STATUS_CHANNEL: u64 = 30;
pub const GENERAL: u64 = 40;
/// Role ids bound to the teams of tests/it/common's configuration.
pub const WEB_DEV: &str = "101";
pub const WEB_ADMIN: &str = "102";
pub const DATA_DEV: &str = "201";

/// A Discord user as the stand-ins present them.
#[derive(Clone)]
pub struct User {
    pub id: &'static str,
    pub name: &'static str,
    pub roles: Vec<&'static str>,
}

pub fn bob() -> User {
    User {
        id: "1001",
        name: "bob",
        roles: vec![WEB_DEV],
    }
}
pub fn alice() -> User {
    User {
        id: "1002",
        name: "alice",
        roles: vec![WEB_ADMIN],
    }
}
pub fn dave() -> User {
    User {
        id: "1003",
        name: "dave",
        roles: vec![WEB_ADMIN],
    }
}
pub fn carol() -> User {
    User {
        id: "1004",
        name: "carol",
        roles: vec![DATA_DEV],
    }
}

static NEXT: AtomicU64 = AtomicU64::new(700_000_000_000_000_000);

fn next_id() -> String {
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The fields every interaction carries (serenity requires them).
fn base(kind: u8, user: &User, channel: u64) -> Value {
    let id = next_id();
    json!({
        "id": id, "application_id": APP.to_string(), "type": kind, "token": format!("token-{id}"),
        "version": 1, "guild_id": GUILD.to_string(), "channel_id": channel.to_string(),
        "channel": {"id": channel.to_string(), "type": 0},
        "member": {
            "user": {"id": user.id, "username": user.name, "discriminator": "0", "global_name": user.name, "avatar": null},
            "roles": user.roles, "joined_at": "2025-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
            "flags": 0, "pending": false, "nick": null, "permissions": "0",
        },
        "locale": "en-US", "guild_locale": "en-US", "app_permissions": "0", "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD.to_string()}, "context": 0, "attachment_size_limit": 26214400,
    })
}

pub fn ping() -> Value {
    json!({"id": next_id(), "application_id": APP.to_string(), "type": 1, "token": "ping-token", "version": 1,
           "entitlements": [], "authorizing_integration_owners": {}, "attachment_size_limit": 26214400})
}

/// A slash command: `sub` is a subcommand name or "", options are (name, type, value).
pub fn command(user: &User, name: &str, sub: &str, options: &[(&str, u8, Value)]) -> Value {
    let opts: Vec<Value> = options
        .iter()
        .map(|(n, t, v)| json!({"name": n, "type": t, "value": v}))
        .collect();
    let options = if sub.is_empty() {
        opts
    } else {
        vec![json!({"name": sub, "type": 1, "options": opts})]
    };
    let mut v = base(2, user, GENERAL);
    v["data"] = json!({"id": "77", "name": name, "type": 1, "options": options, "guild_id": GUILD.to_string()});
    v
}

/// An autocomplete request with `focused` being typed.
pub fn autocomplete(user: &User, name: &str, sub: &str, focused: &str, typed: &str) -> Value {
    let mut v = command(user, name, sub, &[]);
    v["type"] = json!(4);
    v["data"]["options"][0]["options"] =
        json!([{"name": focused, "type": 3, "value": typed, "focused": true}]);
    v
}

/// A button click on `message` (as the REST stand-in holds it).
pub fn click(user: &User, message: &Value, custom_id: &str) -> Value {
    let channel: u64 = message["channel_id"].as_str().unwrap().parse().unwrap();
    let mut v = base(3, user, channel);
    v["message"] = message.clone();
    v["data"] = json!({"custom_id": custom_id, "component_type": 2});
    v
}

/// A modal submitted with one text input.
pub fn modal(user: &User, channel: u64, custom_id: &str, input: &str, value: &str) -> Value {
    let mut v = base(5, user, channel);
    v["data"] = json!({"custom_id": custom_id, "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": input, "value": value}]}
    ]});
    v
}

/// The test application's key pair.
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Slipway with Discord configured, fakepve and the REST stand-in.
pub struct DiscordEnv {
    pub env: TestEnv,
    pub rest: rest::Rest,
    pub app: Option<App>,
    pub discord: Arc<Discord>,
    /// The interactions endpoint (http mode).
    pub endpoint: Option<String>,
    http: reqwest::Client,
}

/// Extra `[discord]` settings and the mode for [`DiscordEnv::start`].
pub struct Setup {
    pub opts: Opts,
    pub mode: &'static str,
    pub extra: String,
    /// A gateway stand-in's URL for gateway mode.
    pub gateway: Option<String>,
    /// A status channel, so each environment gets a thread.
    pub threads: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            opts: Opts {
                provision: false,
                ..Opts::default()
            },
            mode: "http",
            extra: String::new(),
            gateway: None,
            threads: true,
        }
    }
}

/// Writes tests/it/common's configuration with Discord roles bound to the teams
/// and a `[discord]` section pointed at the stand-ins.
pub fn configure(env: &TestEnv, rest: &rest::Rest, setup: &Setup) {
    let dir = env.dir.path();
    std::fs::write(dir.join("discord-token"), "test-bot-token").unwrap();
    std::fs::write(
        dir.join("discord-key"),
        hex(signing_key().verifying_key().as_bytes()),
    )
    .unwrap();
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text
        .replace(
            r#"members = { console = ["web-dev"] }"#,
            &format!(r#"members = {{ console = ["web-dev"], discord = ["{WEB_DEV}"] }}"#),
        )
        .replace(
            r#"admins = { console = ["web-admin"] }"#,
            &format!(r#"admins = {{ console = ["web-admin"], discord = ["{WEB_ADMIN}"] }}"#),
        )
        .replace(
            r#"members = { console = ["data-dev"] }"#,
            &format!(r#"members = {{ console = ["data-dev"], discord = ["{DATA_DEV}"] }}"#),
        );
    let section = format!(
        r#"
[discord]
mode = "{mode}"
application_id = {APP}
token_file = "discord-token"
public_key_file = "discord-key"
listen = "127.0.0.1:0"
guild_id = {GUILD}
admin_channel = {ADMIN_CHANNEL}
{status}
api_proxy = "{proxy}"
{extra}
"#,
        mode = setup.mode,
        status = if setup.threads {
            format!("status_channel = {STATUS_CHANNEL}")
        } else {
            String::new()
        },
        proxy = rest.url,
        extra = setup.extra,
    );
    std::fs::write(&env.config_path, format!("{text}{section}")).unwrap();
}

impl DiscordEnv {
    pub async fn start(setup: Setup) -> DiscordEnv {
        let env = TestEnv::new(setup.opts.clone());
        let rest = rest::Rest::start().await;
        if let Some(url) = &setup.gateway {
            rest.set_gateway_url(url);
        }
        configure(&env, &rest, &setup);
        let app = App::build(env.config()).expect("build the app");
        let discord = Discord::new(&app)
            .unwrap()
            .expect("[discord] is configured");
        app.start(vec![discord.sink()]);
        let endpoint = discord
            .start(&app)
            .await
            .expect("start the Discord adapter");
        DiscordEnv {
            env,
            rest,
            app: Some(app),
            discord,
            endpoint: endpoint.map(|a| format!("http://{a}/interactions")),
            http: reqwest::Client::new(),
        }
    }

    /// Posts `body` to the interactions endpoint signed with `key`; returns
    /// the status, the answer and how long the answer took.
    pub async fn post_signed(&self, body: &Value, key: &SigningKey) -> (u16, Value, Duration) {
        self.post_signed_at(body, key, slipway::store::now()).await
    }

    /// Like [`Self::post_signed`], signed with the timestamp `at` (Unix seconds).
    pub async fn post_signed_at(
        &self,
        body: &Value,
        key: &SigningKey,
        at: i64,
    ) -> (u16, Value, Duration) {
        let raw = serde_json::to_vec(body).unwrap();
        let ts = at.to_string();
        let sig = key.sign(&[ts.as_bytes(), &raw].concat());
        let started = Instant::now();
        let resp = self
            .http
            .post(self.endpoint.as_deref().expect("http mode"))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", hex(&sig.to_bytes()))
            .header("x-signature-timestamp", ts)
            .body(raw)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            started.elapsed(),
        )
    }

    /// Posts a correctly signed interaction; asserts the answer came within 3 s.
    pub async fn interact(&self, body: &Value) -> Value {
        if let (Some(token), Some(channel)) = (body["token"].as_str(), body["channel_id"].as_str())
        {
            self.rest.interaction(token, channel);
        }
        let (status, answer, took) = self.post_signed(body, &signing_key()).await;
        assert_eq!(status, 200, "{answer}");
        assert!(took < Duration::from_secs(3), "acknowledged after {took:?}");
        answer
    }

    pub fn store(&self) -> &slipway::store::Store {
        &self.app.as_ref().unwrap().store
    }

    /// Waits until job `id` has finished.
    pub async fn finished(&self, id: i64) -> slipway::store::jobs::JobRecord {
        let start = Instant::now();
        loop {
            let j = self.store().job(id).await.unwrap().expect("job exists");
            if j.state.is_finished() {
                return j;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job {id} did not finish: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        crate::common::count(&self.app.as_ref().unwrap().config.database, sql)
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown(Duration::from_secs(10)).await;
        }
        self.rest.assert_clean();
    }
}
