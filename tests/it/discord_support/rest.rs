//! A stand-in for Discord's REST API on 127.0.0.1, which serenity's routes are
//! pointed at through `discord.api_proxy`. It records every request, checks
//! each against the OpenAPI spec (a path and method that exist, a body that
//! validates) and keeps every violation for [`Rest::assert_clean`]; it answers
//! as Discord does and can answer 429 with a `retry_after`.

use super::spec::spec;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path without `/api/v10`.
    pub path: String,
    /// The spec's template, e.g. `/channels/{channel_id}/messages`.
    pub template: String,
    pub body: Value,
    /// When the request had arrived (its body read), before any checking.
    pub received: Instant,
    /// When it was answered.
    pub at: Instant,
    /// The status answered.
    pub status: u16,
}

/// 429s to answer: (method, template, how many left, retry_after seconds).
type Limits = Vec<(String, String, usize, f64)>;

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    violations: Vec<String>,
    /// message id → the message as last written.
    messages: HashMap<u64, Value>,
    limits: Limits,
    gateway_url: String,
    /// Discord's per-channel message budget, if enforced: at most `.0` message
    /// creates and edits per channel within any `.1`.
    channel_window: Option<(usize, Duration)>,
    /// channel id → times of its message creates and edits.
    channel_hits: HashMap<String, Vec<Instant>>,
    /// interaction token → the channel the interaction came from.
    interactions: HashMap<String, String>,
    /// Answer every interaction webhook call as Discord does once a token
    /// has expired (401, code 50027).
    tokens_expired: bool,
}

#[derive(Clone)]
pub struct Rest {
    inner: Arc<Mutex<Inner>>,
    next_id: Arc<AtomicU64>,
    pub url: String,
}

impl Rest {
    pub async fn start() -> Rest {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rest = Rest {
            inner,
            next_id: Arc::new(AtomicU64::new(900_000_000_000_000_000)),
            url,
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(rest.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        rest
    }

    pub fn set_gateway_url(&self, url: &str) {
        self.inner.lock().unwrap().gateway_url = url.into();
    }

    /// The next `times` requests of `method` on `template` get a 429.
    pub fn rate_limit(&self, method: &str, template: &str, times: usize, retry_after: f64) {
        self.inner.lock().unwrap().limits.push((
            method.into(),
            template.into(),
            times,
            retry_after,
        ));
    }

    /// Enforces a per-channel budget the way Discord does: a 429 (with the
    /// time until the budget frees) for the call that would exceed it.
    pub fn channel_budget(&self, limit: usize, window: Duration) {
        self.inner.lock().unwrap().channel_window = Some((limit, window));
    }

    /// Tells the stand-in which channel an interaction (by its token) came
    /// from, as Discord knows: its follow-ups are messages in that channel.
    pub fn interaction(&self, token: &str, channel: &str) {
        self.inner
            .lock()
            .unwrap()
            .interactions
            .insert(token.into(), channel.into());
    }

    /// From now on every interaction token is expired.
    pub fn expire_tokens(&self) {
        self.inner.lock().unwrap().tokens_expired = true;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests of `method` on `template` that were answered with a success.
    pub fn calls(&self, method: &str, template: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.template == template && r.status < 300)
            .collect()
    }

    /// The message as last created or edited.
    pub fn message(&self, id: u64) -> Option<Value> {
        self.inner.lock().unwrap().messages.get(&id).cloned()
    }

    /// Messages created in `channel`, oldest first.
    pub fn messages_in(&self, channel: u64) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        let mut list: Vec<Value> = inner
            .messages
            .values()
            // Ephemeral follow-ups are seen by one person, not in the channel.
            .filter(|m| m["channel_id"] == json!(channel.to_string()))
            .filter(|m| m["flags"].as_u64().unwrap_or(0) & 64 == 0)
            .cloned()
            .collect();
        list.sort_by_key(|m| m["id"].as_str().unwrap().parse::<u64>().unwrap());
        list
    }

    /// How many requests of `method` on `template` were answered with a
    /// success; counted in place, so polling it stays cheap while thousands
    /// of requests are recorded.
    pub fn count(&self, method: &str, template: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.method == method && r.template == template && r.status < 300)
            .count()
    }

    /// The requests that broke the spec so far, as [`Rest::assert_clean`]
    /// would list them.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Fails the test if any request broke the spec.
    pub fn assert_clean(&self) {
        let inner = self.inner.lock().unwrap();
        assert!(
            inner.violations.is_empty(),
            "requests that break the Discord spec:\n{}",
            inner.violations.join("\n")
        );
    }

    /// Waits until `check` holds over the recorded requests (at most `secs`).
    pub async fn wait_for(&self, what: &str, secs: u64, check: impl Fn(&Rest) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; requests:\n{}",
                self.requests()
                    .iter()
                    .map(|r| format!("{} {} {} {}", r.status, r.method, r.path, r.body))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn user(id: &str) -> Value {
    json!({"id": id, "username": "slipway", "discriminator": "0", "global_name": null, "avatar": null, "bot": true})
}

async fn answer(State(rest): State<Rest>, method: Method, uri: Uri, body: Bytes) -> Response {
    let received = Instant::now();
    let path = uri
        .path()
        .strip_prefix("/api/v10")
        .unwrap_or(uri.path())
        .to_string();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(json!("<not JSON>"))
    };
    let m = method.as_str().to_string();
    let mut problems = Vec::new();
    if !uri.path().starts_with("/api/v10/") {
        problems.push(format!("{m} {}: not under /api/v10", uri.path()));
    }
    let template = match spec().operation(&m, &path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(e);
            String::new()
        }
    };
    if !template.is_empty() {
        if let Err(e) = spec().check_body(&m, &template, &body) {
            problems.push(e);
        }
    }
    let limited = {
        let mut inner = rest.inner.lock().unwrap();
        inner.violations.extend(problems.iter().cloned());
        let scripted = inner
            .limits
            .iter_mut()
            .find(|(lm, lt, n, _)| *lm == m && *lt == template && *n > 0)
            .map(|l| {
                l.2 -= 1;
                l.3
            });
        scripted.or_else(|| channel_budget(&mut inner, &template, &path))
    };
    let (status, reply) = if !problems.is_empty() {
        (
            StatusCode::BAD_REQUEST,
            json!({"code": 50035, "message": "Invalid Form Body", "errors": problems}),
        )
    } else if let Some(retry_after) = limited {
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false, "code": 0}),
        )
    } else {
        respond(&rest, &m, &path, &template, &body)
    };
    rest.inner.lock().unwrap().requests.push(Recorded {
        method: m,
        path,
        template,
        body,
        received,
        at: Instant::now(),
        status: status.as_u16(),
    });
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    let mut resp = (status, Json(reply)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert("x-ratelimit-scope", "user".parse().unwrap());
    }
    resp
}

/// The seconds to wait if this message call would exceed its channel's budget.
fn channel_budget(inner: &mut Inner, template: &str, path: &str) -> Option<f64> {
    let (limit, window) = inner.channel_window?;
    if !template.starts_with("/channels/{channel_id}/messages") {
        return None;
    }
    let now = Instant::now();
    let hits = inner.channel_hits.entry(segment(path, 2)).or_default();
    hits.retain(|t| now.duration_since(*t) < window);
    if hits.len() >= limit {
        return Some((window - now.duration_since(hits[0])).as_secs_f64());
    }
    hits.push(now);
    None
}

fn segment(path: &str, n: usize) -> String {
    path.split('/').nth(n).unwrap_or_default().to_string()
}

fn message(id: u64, channel: &str, body: &Value) -> Value {
    json!({
        "id": id.to_string(), "channel_id": channel, "type": 0,
        "content": body["content"].as_str().unwrap_or(""),
        "embeds": body.get("embeds").cloned().unwrap_or(json!([])),
        "components": body.get("components").cloned().unwrap_or(json!([])),
        "author": user("1"), "attachments": [], "mentions": [], "mention_roles": [],
        "pinned": false, "mention_everyone": false, "tts": false,
        "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": null, "flags": body["flags"].as_u64().unwrap_or(0),
    })
}

fn respond(rest: &Rest, m: &str, path: &str, template: &str, body: &Value) -> (StatusCode, Value) {
    let mut inner = rest.inner.lock().unwrap();
    match (m, template) {
        ("GET", "/gateway") => (StatusCode::OK, json!({"url": inner.gateway_url})),
        ("GET", "/gateway/bot") => (
            StatusCode::OK,
            json!({
                "url": inner.gateway_url, "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            }),
        ),
        ("GET", "/users/@me") => (StatusCode::OK, user("1")),
        ("POST", "/channels/{channel_id}/messages") => {
            let id = rest.id();
            let msg = message(id, &segment(path, 2), body);
            inner.messages.insert(id, msg.clone());
            (StatusCode::OK, msg)
        }
        ("PATCH", "/channels/{channel_id}/messages/{message_id}") => {
            let id: u64 = segment(path, 4).parse().unwrap_or_default();
            let Some(old) = inner.messages.get(&id).cloned() else {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"code": 10008, "message": "Unknown Message"}),
                );
            };
            let mut merged = old;
            for (k, v) in body.as_object().into_iter().flatten() {
                merged[k] = v.clone();
            }
            inner.messages.insert(id, merged.clone());
            (StatusCode::OK, merged)
        }
        ("POST", "/channels/{channel_id}/threads") => {
            let id = rest.id();
            (
                StatusCode::CREATED,
                json!({
                    "id": id.to_string(), "type": 11, "parent_id": segment(path, 2), "guild_id": "10",
                    "name": body["name"], "owner_id": "1", "message_count": 0, "member_count": 1,
                    "thread_metadata": {"archived": false, "auto_archive_duration": 10080, "locked": false,
                        "archive_timestamp": "2026-01-01T00:00:00.000000+00:00"},
                }),
            )
        }
        ("PATCH", "/channels/{channel_id}") | ("DELETE", "/channels/{channel_id}") => (
            StatusCode::OK,
            json!({
                "id": segment(path, 2), "type": 11, "name": "thread", "guild_id": "10",
                "thread_metadata": {"archived": body["archived"].as_bool().unwrap_or(false), "auto_archive_duration": 10080, "locked": false,
                    "archive_timestamp": "2026-01-01T00:00:00.000000+00:00"},
            }),
        ),
        ("POST", "/interactions/{interaction_id}/{interaction_token}/callback") => {
            (StatusCode::NO_CONTENT, Value::Null)
        }
        ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original") => {
            let id = rest.id();
            (StatusCode::OK, message(id, "0", body))
        }
        ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/@original") => {
            (StatusCode::NO_CONTENT, Value::Null)
        }
        ("POST", "/webhooks/{webhook_id}/{webhook_token}")
        | ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")
            if inner.tokens_expired =>
        {
            (
                StatusCode::UNAUTHORIZED,
                json!({"code": 50027, "message": "Invalid Webhook Token"}),
            )
        }
        ("POST", "/webhooks/{webhook_id}/{webhook_token}") => {
            let id = rest.id();
            let channel = inner
                .interactions
                .get(&segment(path, 3))
                .cloned()
                .unwrap_or_else(|| "0".into());
            let msg = message(id, &channel, body);
            inner.messages.insert(id, msg.clone());
            (StatusCode::OK, msg)
        }
        ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}") => {
            let id: u64 = segment(path, 5).parse().unwrap_or_default();
            let channel = inner.interactions.get(&segment(path, 3)).cloned();
            let Some(old) = inner
                .messages
                .get(&id)
                .filter(|m| channel.is_some_and(|c| m["channel_id"] == json!(c)))
                .cloned()
            else {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"code": 10008, "message": "Unknown Message"}),
                );
            };
            let mut merged = old;
            for (k, v) in body.as_object().into_iter().flatten() {
                merged[k] = v.clone();
            }
            inner.messages.insert(id, merged.clone());
            (StatusCode::OK, merged)
        }
        ("PUT", "/applications/{application_id}/commands")
        | ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands") => {
            let list: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c["id"] = json!(rest.id().to_string());
                    c["application_id"] = json!(segment(path, 2));
                    c["version"] = json!("1");
                    c
                })
                .collect();
            (StatusCode::OK, Value::Array(list))
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"code": 0, "message": format!("the stand-in does not serve {m} {template}")}),
        ),
    }
}
