//! The HTTP interactions endpoint (http mode): Discord POSTs each interaction
//! here. The Ed25519 signature over timestamp + raw body is checked before
//! anything else — Discord probes with bad signatures on purpose and expects
//! 401 — and only then is the body parsed and handed to [`Discord::handle`],
//! whose answer is the HTTP response (PING → PONG).

use super::Discord;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serenity::interactions_endpoint::Verifier;
use serenity::model::application::Interaction;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The endpoint's state: the handler and the application's public key.
#[derive(Clone)]
pub struct Endpoint {
    discord: Arc<Discord>,
    verifier: Arc<Verifier>,
}

fn parse_key(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Endpoint {
    pub fn new(discord: Arc<Discord>) -> anyhow::Result<Endpoint> {
        let key = discord
            .config
            .public_key
            .as_ref()
            .and_then(|k| parse_key(k.expose_secret()))
            .ok_or_else(|| anyhow::anyhow!("discord.public_key: not 64 hex digits"))?;
        let verifier = Verifier::try_new(key)
            .map_err(|e| anyhow::anyhow!("discord.public_key: not a valid Ed25519 key: {e}"))?;
        Ok(Endpoint {
            discord,
            verifier: Arc::new(verifier),
        })
    }

    /// The router: POST `/interactions` (and `/`, for a bare URL).
    pub fn router(self) -> Router {
        Router::new()
            .route("/interactions", post(interaction))
            .route("/", post(interaction))
            .with_state(self)
    }

    /// Serves until `cancel`.
    pub async fn serve(self, listener: tokio::net::TcpListener, cancel: CancellationToken) {
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the Discord interactions endpoint stopped");
        }
    }
}

/// How far a signed request's timestamp may be from now: Discord signs each
/// request as it sends it, so an older one is a replay of a captured request.
const MAX_SKEW_SECS: i64 = 300;

/// The signature timestamp (Unix seconds) is within [`MAX_SKEW_SECS`] of `now`.
fn fresh(timestamp: &str, now: i64) -> bool {
    timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() <= MAX_SKEW_SECS)
}

async fn interaction(State(ep): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
    ) else {
        return (StatusCode::UNAUTHORIZED, "missing request signature").into_response();
    };
    if ep.verifier.verify(signature, timestamp, &body).is_err() {
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    if !fresh(timestamp, crate::store::now()) {
        tracing::warn!(
            timestamp,
            "a signed interaction outside the accepted window (a replay, or this host's clock is off)"
        );
        return (StatusCode::UNAUTHORIZED, "stale request signature").into_response();
    }
    let interaction: Interaction = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "an interaction Slipway cannot read");
            return (StatusCode::BAD_REQUEST, "unreadable interaction").into_response();
        }
    };
    match ep.discord.handle(interaction).await {
        Some(answer) => Json(answer).into_response(),
        None => (StatusCode::BAD_REQUEST, "unsupported interaction type").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_timestamp_near_now_is_fresh() {
        let now = 1_800_000_000;
        assert!(fresh(&now.to_string(), now));
        assert!(fresh(&(now - 300).to_string(), now));
        assert!(fresh(&(now + 60).to_string(), now));
        assert!(!fresh(&(now - 301).to_string(), now));
        assert!(!fresh(&(now + 3600).to_string(), now));
        assert!(!fresh("yesterday", now));
    }

    #[test]
    fn a_public_key_must_be_64_hex_digits() {
        assert!(parse_key(&"0a".repeat(32)).is_some());
        assert!(parse_key("0a").is_none());
        assert!(parse_key(&"zz".repeat(32)).is_none());
    }
}
