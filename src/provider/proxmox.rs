//! The Proxmox VE API client: API-token auth over rustls, typed calls, task
//! polling with backoff, and PVE's own error text kept. Reads are retried on
//! transient failures with jittered backoff; writes are never blindly repeated
//! (the worker looks first whether a write already happened).

use super::{
    Compute, ContainerConfig, ContainerSpec, ContainerStatus, Guest, ProviderError, TaskRef,
};
use crate::config::ProxmoxConfig;
use async_trait::async_trait;
use rand::Rng;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::time::{Duration, Instant};

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
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::Network(describe(&e)))?;
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

fn bool01(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

#[async_trait]
impl Compute for Proxmox {
    async fn guests(&self) -> Result<Vec<Guest>, ProviderError> {
        let data = self
            .get(&["cluster", "resources"], &[("type", "vm".into())])
            .await?;
        Ok(data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| {
                        Some(Guest {
                            vmid: g.get("vmid")?.as_u64()? as u32,
                            node: g.get("node")?.as_str()?.to_string(),
                            status: g
                                .get("status")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            tags: split_tags(g.get("tags").and_then(Value::as_str).unwrap_or("")),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn config(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<ContainerConfig>, ProviderError> {
        match self
            .get(&["nodes", node, "lxc", &vmid.to_string(), "config"], &[])
            .await
        {
            Ok(cfg) => Ok(Some(ContainerConfig {
                tags: split_tags(cfg.get("tags").and_then(Value::as_str).unwrap_or("")),
                description: cfg
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                lock: cfg.get("lock").and_then(Value::as_str).map(str::to_string),
            })),
            Err(e)
                if e.is_not_found()
                    || matches!(&e, ProviderError::Api { status: 500, .. } if is_missing_config(&e)) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn create(&self, s: &ContainerSpec) -> Result<TaskRef, ProviderError> {
        let mut form = vec![
            ("vmid", s.vmid.to_string()),
            ("ostemplate", s.ostemplate.clone()),
            ("hostname", s.hostname.clone()),
            ("storage", s.storage.clone()),
            ("rootfs", format!("{}:{}", s.storage, s.disk_gb)),
            ("cores", s.cores.to_string()),
            ("memory", s.memory_mb.to_string()),
            ("swap", s.swap_mb.to_string()),
            ("unprivileged", bool01(s.unprivileged)),
            ("onboot", bool01(s.onboot)),
            ("net0", s.net0.clone()),
            ("tags", s.tags.join(";")),
            ("description", s.description.clone()),
        ];
        if let Some(pool) = &s.pool {
            form.push(("pool", pool.clone()));
        }
        if !s.features.is_empty() {
            form.push(("features", s.features.join(",")));
        }
        self.task(Method::POST, &s.node, &["nodes", &s.node, "lxc"], &form)
            .await
    }

    async fn wait(&self, task: &TaskRef, timeout: Duration) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let st = self
                .get(&["nodes", &task.node, "tasks", &task.upid, "status"], &[])
                .await?;
            if st.get("status").and_then(Value::as_str) == Some("stopped") {
                let exit = st
                    .get("exitstatus")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                if exit == "OK" {
                    return Ok(());
                }
                let log_tail = self.task_log_tail(task).await;
                return Err(ProviderError::Task { exit, log_tail });
            }
            if started.elapsed() >= timeout {
                return Err(ProviderError::Timeout(
                    format!("task {}", task.upid),
                    timeout,
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
        }
    }

    async fn start(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError> {
        self.task(
            Method::POST,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "status", "start"],
            &[],
        )
        .await
    }

    async fn shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout: Duration,
    ) -> Result<TaskRef, ProviderError> {
        let form = [
            ("timeout", timeout.as_secs().max(1).to_string()),
            ("forceStop", "1".to_string()),
        ];
        self.task(
            Method::POST,
            node,
            &[
                "nodes",
                node,
                "lxc",
                &vmid.to_string(),
                "status",
                "shutdown",
            ],
            &form,
        )
        .await
    }

    async fn stop(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError> {
        self.task(
            Method::POST,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "status", "stop"],
            &[],
        )
        .await
    }

    async fn status(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<ContainerStatus>, ProviderError> {
        match self
            .get(
                &["nodes", node, "lxc", &vmid.to_string(), "status", "current"],
                &[],
            )
            .await
        {
            Ok(s) => Ok(Some(ContainerStatus {
                status: s
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                cpu: s.get("cpu").and_then(Value::as_f64).unwrap_or(0.0),
                cpus: s.get("cpus").and_then(Value::as_f64).unwrap_or(0.0),
                mem: s.get("mem").and_then(Value::as_u64).unwrap_or(0),
                maxmem: s.get("maxmem").and_then(Value::as_u64).unwrap_or(0),
                uptime: s.get("uptime").and_then(Value::as_u64).unwrap_or(0),
                ha_managed: s
                    .get("ha")
                    .and_then(|h| h.get("managed"))
                    .and_then(Value::as_u64)
                    .is_some_and(|m| m == 1),
            })),
            Err(e) if e.is_not_found() || is_missing_config(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn addresses(&self, node: &str, vmid: u32) -> Result<Vec<String>, ProviderError> {
        let data = self
            .get(
                &["nodes", node, "lxc", &vmid.to_string(), "interfaces"],
                &[],
            )
            .await?;
        let mut out = Vec::new();
        for iface in data.as_array().into_iter().flatten() {
            if iface.get("name").and_then(Value::as_str) == Some("lo") {
                continue;
            }
            if let Some(inet) = iface.get("inet").and_then(Value::as_str) {
                out.push(inet.split('/').next().unwrap_or(inet).to_string());
            }
            for a in iface
                .get("ip-addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if a.get("ip-address-type").and_then(Value::as_str) == Some("inet") {
                    if let Some(ip) = a.get("ip-address").and_then(Value::as_str) {
                        if !out.iter().any(|o| o == ip) {
                            out.push(ip.to_string());
                        }
                    }
                }
            }
        }
        out.retain(|a| !a.starts_with("127."));
        Ok(out)
    }

    async fn snapshot(&self, node: &str, vmid: u32, name: &str) -> Result<TaskRef, ProviderError> {
        let form = [
            ("snapname", name.to_string()),
            (
                "description",
                "taken by Slipway after provisioning".to_string(),
            ),
        ];
        self.task(
            Method::POST,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "snapshot"],
            &form,
        )
        .await
    }

    async fn snapshots(&self, node: &str, vmid: u32) -> Result<Vec<String>, ProviderError> {
        let data = self
            .get(&["nodes", node, "lxc", &vmid.to_string(), "snapshot"], &[])
            .await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .filter(|n| *n != "current")
            .map(str::to_string)
            .collect())
    }

    async fn delete_snapshot(
        &self,
        node: &str,
        vmid: u32,
        name: &str,
    ) -> Result<TaskRef, ProviderError> {
        self.task(
            Method::DELETE,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "snapshot", name],
            &[],
        )
        .await
    }

    async fn destroy(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError> {
        let q = [
            ("purge", "1".to_string()),
            ("destroy-unreferenced-disks", "1".to_string()),
        ];
        self.task(
            Method::DELETE,
            node,
            &["nodes", node, "lxc", &vmid.to_string()],
            &q,
        )
        .await
    }

    async fn ha_add(&self, vmid: u32) -> Result<(), ProviderError> {
        let form = [
            ("sid", format!("ct:{vmid}")),
            ("state", "started".to_string()),
            ("comment", "managed by Slipway".to_string()),
        ];
        match self
            .once(Method::POST, &["cluster", "ha", "resources"], &form)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already defined") || e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn ha_remove(&self, vmid: u32) -> Result<(), ProviderError> {
        match self
            .once(
                Method::DELETE,
                &["cluster", "ha", "resources", &format!("ct:{vmid}")],
                &[],
            )
            .await
        {
            Ok(_) => Ok(()),
            // "cannot delete service 'ct:200', not HA managed!" — nothing to remove.
            Err(e)
                if e.is_not_found()
                    || e.to_string().contains("no such resource")
                    || e.to_string().contains("not HA managed") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// PVE answers 500 "Configuration file 'nodes/pve1/lxc/123.conf' does not exist".
fn is_missing_config(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Api { message, .. } if message.contains("does not exist"))
}

/// PVE stores tags separated by ';' (older versions: ',' or spaces).
pub fn split_tags(raw: &str) -> Vec<String> {
    raw.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
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

    #[test]
    fn tags_split_on_every_separator_pve_used() {
        assert_eq!(
            split_tags("slipway;env-1,team-web x"),
            vec!["slipway", "env-1", "team-web", "x"]
        );
    }

    #[test]
    fn already_exists_is_recognised() {
        let e = ProviderError::Api {
            status: 500,
            message: "CT 102 already exists on node 'pve1'".into(),
        };
        assert!(e.is_already_exists());
    }
}
