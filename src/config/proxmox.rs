//! `[proxmox]`: how Slipway reaches Proxmox VE. The raw table, the validated
//! [`ProxmoxConfig`], and the checks between them (URL, API token and its
//! secret, timeouts and retries).

use super::{duration, resolve, secret_source};
use crate::catalog::Problem;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxmox {
    url: String,
    token_id: String,
    /// Name of the environment variable that holds the token secret.
    token_secret_env: Option<String>,
    /// File that holds the token secret.
    token_secret_file: Option<String>,
    ca_file: Option<String>,
    fingerprint: Option<String>,
    nodes: Vec<String>,
    storages: Vec<String>,
    bridges: Vec<String>,
    /// A resource pool new containers join; grant Slipway's role on it (see the README).
    pool: Option<String>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_task_timeout")]
    task_timeout: String,
    #[serde(default = "default_shutdown_timeout")]
    shutdown_timeout: String,
    /// How long to wait for a DHCP container to report its address.
    #[serde(default = "default_address_wait")]
    address_wait: String,
    /// How often a write that failed transiently (no quorum, a held lock, a 502) is tried again.
    #[serde(default = "default_write_retries")]
    write_retries: u32,
    /// The first wait between those tries; it doubles each time (at most 8 s).
    #[serde(default = "default_retry_base")]
    retry_base: String,
    /// How long a write waits out a config lock another Proxmox task holds (a
    /// backup, a snapshot), whether the API refused it or its task ended on it.
    #[serde(default = "default_lock_wait")]
    lock_wait: String,
}

fn default_timeout() -> String {
    "30s".into()
}
fn default_task_timeout() -> String {
    "10m".into()
}
fn default_shutdown_timeout() -> String {
    "60s".into()
}
fn default_address_wait() -> String {
    "60s".into()
}
fn default_write_retries() -> u32 {
    6
}
fn default_retry_base() -> String {
    "500ms".into()
}
fn default_lock_wait() -> String {
    "2m".into()
}

/// How Slipway reaches Proxmox VE.
#[derive(Debug, Clone)]
pub struct ProxmoxConfig {
    pub url: String,
    pub token_id: String,
    pub token_secret: SecretString,
    pub ca_file: Option<PathBuf>,
    pub fingerprint: Option<String>,
    pub nodes: Vec<String>,
    pub storages: Vec<String>,
    pub bridges: Vec<String>,
    pub pool: Option<String>,
    pub timeout: Duration,
    pub task_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub address_wait: Duration,
    pub write_retries: u32,
    pub retry_base: Duration,
    pub lock_wait: Duration,
}

fn read_secret(
    raw: &RawProxmox,
    base: &Path,
    file: &str,
    problems: &mut Vec<Problem>,
) -> SecretString {
    let env = raw.token_secret_env.as_deref();
    let value = match secret_source("proxmox", "token_secret", env, raw.token_secret_file.as_deref(), base) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err("proxmox: the token secret is missing; set token_secret_env (an environment variable's name) or token_secret_file".to_string()),
        Err(e) => Err(e),
    };
    match value {
        Ok(v) if !v.is_empty() => SecretString::from(v),
        Ok(_) => {
            problems.push(Problem::new(
                file,
                "proxmox: the token secret is empty".into(),
            ));
            SecretString::from(String::new())
        }
        Err(msg) => {
            problems.push(Problem::new(file, msg));
            SecretString::from(String::new())
        }
    }
}

/// Checks `[proxmox]` and reads its token secret.
pub(super) fn validate(
    px: &RawProxmox,
    base: &Path,
    f: &str,
    problems: &mut Vec<Problem>,
) -> ProxmoxConfig {
    if !px.url.starts_with("https://") {
        problems.push(Problem::new(
            f,
            format!(
                "proxmox.url: '{}' must start with https:// (Proxmox only speaks HTTPS)",
                px.url
            ),
        ));
    }
    if !px.token_id.contains('!') || !px.token_id.contains('@') {
        problems.push(Problem::new(
            f,
            format!(
                "proxmox.token_id: '{}' is not USER@REALM!TOKENNAME",
                px.token_id
            ),
        ));
    }
    for (key, list) in [
        ("nodes", &px.nodes),
        ("storages", &px.storages),
        ("bridges", &px.bridges),
    ] {
        if list.is_empty() {
            problems.push(Problem::new(f, format!("proxmox.{key}: list at least one")));
        }
    }
    let token_secret = read_secret(px, base, f, problems);
    ProxmoxConfig {
        url: px.url.trim_end_matches('/').to_string(),
        token_id: px.token_id.clone(),
        token_secret,
        ca_file: px.ca_file.as_deref().map(|c| resolve(base, c)),
        fingerprint: px.fingerprint.clone(),
        nodes: px.nodes.clone(),
        storages: px.storages.clone(),
        bridges: px.bridges.clone(),
        pool: px.pool.clone(),
        timeout: duration(&px.timeout, "proxmox.timeout", f, problems),
        task_timeout: duration(&px.task_timeout, "proxmox.task_timeout", f, problems),
        shutdown_timeout: duration(
            &px.shutdown_timeout,
            "proxmox.shutdown_timeout",
            f,
            problems,
        ),
        address_wait: duration(&px.address_wait, "proxmox.address_wait", f, problems),
        write_retries: px.write_retries,
        retry_base: duration(&px.retry_base, "proxmox.retry_base", f, problems),
        lock_wait: duration(&px.lock_wait, "proxmox.lock_wait", f, problems),
    }
}
