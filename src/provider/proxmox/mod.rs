//! The Proxmox VE API client: API-token auth over rustls, typed calls, task
//! polling with backoff, and PVE's own error text kept. Reads are retried on
//! transient failures with jittered backoff; writes are never blindly repeated
//! (the worker looks first whether a write already happened).
//!
//! This file is the client and its transport; [`Compute`](super::Compute) is
//! implemented over it in `compute`.

mod compute;

pub use compute::split_tags;

use super::{ProviderError, TaskRef};
use crate::config::ProxmoxConfig;
use rand::Rng;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::time::Duration;

/// A client for one Proxmox VE cluster.
pub struct Proxmox {
    http: reqwest::Client,
    base: reqwest::Url,
    /// "PVEAPIToken=user@realm!name=secret"; never logged.
    auth: secrecy::SecretString,
    read_retries: u32,
    errors: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for Proxmox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxmox")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Proxmox {
    pub fn new(cfg: &ProxmoxConfig) -> Result<Proxmox, ProviderError> {
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                ProviderError::Other(format!(
                    "proxmox.ca_file: cannot read {}: {e}",
                    ca.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ProviderError::Other(format!(
                    "proxmox.ca_file: {} is not a PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some(fp) = &cfg.fingerprint {
            builder = builder.use_preconfigured_tls(super::pin::pinned_tls(fp)?);
        }
        let http = builder
            .build()
            .map_err(|e| ProviderError::Other(format!("cannot build the HTTPS client: {e}")))?;
        let base = reqwest::Url::parse(&format!("{}/api2/json/", cfg.url))
            .map_err(|e| ProviderError::Other(format!("proxmox.url: '{}': {e}", cfg.url)))?;
        Ok(Proxmox {
            http,
            base,
            auth: format!(
                "PVEAPIToken={}={}",
                cfg.token_id,
                cfg.token_secret.expose_secret()
            )
            .into(),
            read_retries: 3,
            errors: Default::default(),
        })
    }

    /// Counts every failed call on `counter` (shared with the metrics registry).
    pub fn with_error_counter(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.errors = counter;
        self
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("https URL has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    async fn once(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        let result = self.once_uncounted(method, segments, form).await;
        if result.is_err() {
            self.errors.inc();
        }
        result
    }

    async fn once_uncounted(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        let mut req = self
            .http
            .request(method.clone(), self.url(segments))
            .header(reqwest::header::AUTHORIZATION, self.auth.expose_secret());
        if !form.is_empty() {
            req = if method == Method::GET || method == Method::DELETE {
                req.query(form)
            } else {
                req.form(form)
            };
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                ProviderError::Unreachable(describe(&e))
            } else {
                ProviderError::Network(describe(&e))
            }
        })?;
        let status = resp.status();
        let reason = status.canonical_reason().unwrap_or("").to_string();
        let text = resp
            .text()
            .await
            .map_err(|e| ProviderError::Network(describe(&e)))?;
        if status.is_success() {
            let body: Value = serde_json::from_str(&text).map_err(|_| ProviderError::Api {
                status: status.as_u16(),
                message: format!("an answer that is not JSON: {}", snippet(&text)),
            })?;
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
        Err(ProviderError::Api {
            status: status.as_u16(),
            message: error_message(status, &reason, &text),
        })
    }

    /// A read, retried on transient failures with jittered exponential backoff.
    async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        let mut attempt = 0;
        loop {
            match self.once(Method::GET, segments, query).await {
                Err(e) if e.is_transient() && attempt < self.read_retries => {
                    attempt += 1;
                    let base = 200u64 << attempt;
                    let jitter = rand::rng().random_range(0..base);
                    tracing::debug!(error = %e, attempt, "retrying a Proxmox read");
                    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                }
                other => return other,
            }
        }
    }

    async fn task(
        &self,
        method: Method,
        node: &str,
        segments: &[&str],
        form: &[(&str, String)],
    ) -> Result<TaskRef, ProviderError> {
        let data = self.once(method, segments, form).await?;
        match data.as_str() {
            Some(upid) if upid.starts_with("UPID:") => Ok(TaskRef {
                node: node.to_string(),
                upid: upid.to_string(),
            }),
            _ => Err(ProviderError::Api {
                status: 200,
                message: format!("expected a task id, got {}", snippet(&data.to_string())),
            }),
        }
    }

    async fn task_log_tail(&self, task: &TaskRef) -> Vec<String> {
        let Ok(log) = self
            .get(
                &["nodes", &task.node, "tasks", &task.upid, "log"],
                &[("limit", "500".into())],
            )
            .await
        else {
            return Vec::new();
        };
        let lines: Vec<String> = log
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("t").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let skip = lines.len().saturating_sub(5);
        lines
            .into_iter()
            .skip(skip)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

fn describe(e: &reqwest::Error) -> String {
    // reqwest's Display includes the URL, which holds no secret (the token is a header).
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(120).collect();
    t.replace('\n', " ")
}

/// PVE puts its message in the status line and, for parameter errors, per-field
/// texts in `errors`. A proxy in front may answer with HTML.
fn error_message(status: StatusCode, reason: &str, body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let mut msg = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(reason)
            .trim()
            .to_string();
        if let Some(errors) = v.get("errors").and_then(Value::as_object) {
            let fields: Vec<String> = errors
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or(&v.to_string()).trim()))
                .collect();
            if !fields.is_empty() {
                msg = format!("{msg} ({})", fields.join("; "));
            }
        }
        if msg.is_empty() {
            msg = reason.to_string();
        }
        return msg;
    }
    if body.trim_start().starts_with('<') {
        return format!(
            "{} {reason} from a proxy or load balancer (an HTML page, not Proxmox's API)",
            status.as_u16()
        );
    }
    if body.trim().is_empty() {
        reason.to_string()
    } else {
        snippet(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pve_parameter_error_names_each_field() {
        let body = r#"{"data":null,"errors":{"hostname":"invalid format"},"message":"Parameter verification failed.\n"}"#;
        let msg = error_message(
            StatusCode::BAD_REQUEST,
            "Parameter verification failed.",
            body,
        );
        assert_eq!(
            msg,
            "Parameter verification failed. (hostname: invalid format)"
        );
    }

    #[test]
    fn an_html_page_from_a_proxy_is_named_as_such() {
        let msg = error_message(
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            "<html><body>502</body></html>",
        );
        assert!(msg.contains("proxy"), "{msg}");
    }
}
