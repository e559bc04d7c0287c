//! Caddy's admin API: one route per environment in the configured HTTP
//! server, tagged `@id = slipway-env-<id>` so it can be found, replaced and
//! deleted through `/id/…` without knowing its position.
//!
//! Caddy quirks this works around (measured on Caddy 2.6): a second POST with
//! the same `@id` is accepted and makes a second route, so publishing looks the
//! id up first and replaces in place; a new route is inserted at the front
//! (`routes/0`) so that a site's catch-all route, which comes last, cannot
//! shadow it; inserting into a server that does not exist fails with a
//! confusing decode error, so the server is looked up first. Caddy refuses an
//! admin request whose Host is not its listen address: address it as 127.0.0.1
//! (or the address it listens on), not by another name.

use super::config::CaddyApiConfig;
use super::{object_name, PublishError, Route, Router};
use crate::domain::domain_name::Domain;
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Bounds the clean-up of duplicate routes a pre-Slipway mistake may have left.
const MAX_DUPLICATES: usize = 16;

/// Publishes routes through Caddy's admin API.
#[derive(Debug)]
pub struct CaddyApi {
    http: reqwest::Client,
    base: String,
    server: String,
    /// Look-up then insert is two requests: one publish at a time, so two
    /// jobs for the same environment cannot both insert.
    lock: tokio::sync::Mutex<()>,
}

impl CaddyApi {
    pub fn new(cfg: &CaddyApiConfig) -> Result<CaddyApi, PublishError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PublishError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(CaddyApi {
            http,
            base: cfg.admin_url.trim_end_matches('/').to_string(),
            server: cfg.server.clone(),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The route object Caddy stores for `route`.
    pub fn route_json(route: &Route) -> Value {
        json!({
            "@id": object_name(route.env_id),
            "match": [{ "host": [route.domain.as_str()] }],
            "handle": [{
                "handler": "reverse_proxy",
                "upstreams": [{ "dial": format!("{}:{}", route.address, route.port) }],
            }],
            "terminal": true,
        })
    }

    /// Sends one request; `Ok(None)` for a 404, the JSON body (or null) otherwise.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, PublishError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| network(&self.base, e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| network(&self.base, e))?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            return Err(PublishError::Caddy {
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        Ok(Some(if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        }))
    }

    async fn insert(&self, body: &Value) -> Result<(), PublishError> {
        let server_path = format!("/config/apps/http/servers/{}", self.server);
        let server = self
            .call(Method::GET, &server_path, None)
            .await?
            .unwrap_or(Value::Null);
        if !server.is_object() {
            return Err(PublishError::Config(format!(
                "publish.caddy_api.server: Caddy has no HTTP server '{}'; name one listed by GET {}/config/apps/http/servers",
                self.server, self.base
            )));
        }
        let (path, value) = match server.get("routes") {
            Some(Value::Array(_)) => (format!("{server_path}/routes/0"), body.clone()),
            _ => (format!("{server_path}/routes"), json!([body])),
        };
        match self.call(Method::PUT, &path, Some(&value)).await? {
            Some(_) => Ok(()),
            None => Err(PublishError::Caddy {
                method: "PUT".into(),
                path,
                status: 404,
                message: "not found".into(),
            }),
        }
    }
}

fn network(base: &str, e: reqwest::Error) -> PublishError {
    PublishError::Network {
        what: format!("Caddy's admin API at {base}"),
        message: e.without_url().to_string(),
    }
}

#[async_trait]
impl Router for CaddyApi {
    fn kind(&self) -> &'static str {
        "caddy-api"
    }

    async fn publish(&self, route: &Route) -> Result<(), PublishError> {
        let _one = self.lock.lock().await;
        let id_path = format!("/id/{}", object_name(route.env_id));
        let body = Self::route_json(route);
        if self.call(Method::GET, &id_path, None).await?.is_some()
            && self
                .call(Method::PATCH, &id_path, Some(&body))
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.insert(&body).await
    }

    async fn unpublish(&self, env_id: i64, _domain: &Domain) -> Result<(), PublishError> {
        let _one = self.lock.lock().await;
        let id_path = format!("/id/{}", object_name(env_id));
        for _ in 0..MAX_DUPLICATES {
            if self.call(Method::DELETE, &id_path, None).await?.is_none() {
                return Ok(());
            }
        }
        Err(PublishError::Config(format!(
            "Caddy still has a route {id_path} after {MAX_DUPLICATES} deletions; inspect GET {}{id_path}",
            self.base
        )))
    }
}
