//! A Matrix user acting with plain client-server API calls, and what a user
//! sees: messages with their latest edits applied, waited for by polling.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    pub fn new(user_id: &str, token: &str, password: &str, url: &str) -> Person {
        Person {
            user_id: user_id.to_string(),
            token: token.to_string(),
            password: password.to_string(),
            url: url.to_string(),
            http: reqwest::Client::new(),
        }
    }

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

    /// Sends a text message into the thread of `root`.
    pub async fn say_in_thread(&self, room: &str, root: &str, text: &str) -> String {
        self.send(
            room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": text,
                   "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
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
