//! How Slipway runs: `[worker]`, `[policy]`, `[http]`, `[provision]`,
//! `[lifetimes]` and `[reconcile]`. The raw tables with their defaults, the
//! validated structs, and the checks between them.

use super::{duration, resolve};
use crate::catalog::Problem;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorker {
    #[serde(default = "four")]
    concurrency: usize,
    #[serde(default = "two")]
    per_node: usize,
    #[serde(default = "default_lease")]
    lease: String,
    /// How long a rollback that could not reach Proxmox waits before it tries again.
    #[serde(default = "default_rollback_retry")]
    rollback_retry: String,
    /// How often it tries before it gives up and asks for a person.
    #[serde(default = "default_rollback_attempts")]
    rollback_attempts: u32,
}

impl Default for RawWorker {
    fn default() -> Self {
        RawWorker {
            concurrency: four(),
            per_node: two(),
            lease: default_lease(),
            rollback_retry: default_rollback_retry(),
            rollback_attempts: default_rollback_attempts(),
        }
    }
}

fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn default_lease() -> String {
    "30s".into()
}
fn default_rollback_retry() -> String {
    "30s".into()
}
fn default_rollback_attempts() -> u32 {
    10
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    allow_self_approval: bool,
    /// Commands per user per minute.
    rate_per_minute: Option<u32>,
    /// Commands a user may send at once before the rate applies.
    rate_burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvision {
    #[serde(default = "yes")]
    enabled: bool,
    /// Working directory of post-provision commands, relative to the config file.
    workdir: Option<String>,
    /// The user post-provisioning logs in as (`{{ ssh.user }}`).
    #[serde(default = "default_ssh_user")]
    ssh_user: String,
    /// How long a new guest may take until its sshd accepts Slipway's key.
    #[serde(default = "default_ssh_wait")]
    ssh_wait: String,
}

impl Default for RawProvision {
    fn default() -> Self {
        RawProvision {
            enabled: true,
            workdir: None,
            ssh_user: default_ssh_user(),
            ssh_wait: default_ssh_wait(),
        }
    }
}

fn default_ssh_user() -> String {
    "root".into()
}

fn default_ssh_wait() -> String {
    "5m".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLifetimes {
    /// How long before expiry reminders are posted.
    #[serde(default = "default_reminders")]
    reminders: Vec<String>,
    /// How long after expiry the teardown starts.
    #[serde(default = "default_grace")]
    grace: String,
}

impl Default for RawLifetimes {
    fn default() -> Self {
        RawLifetimes {
            reminders: default_reminders(),
            grace: default_grace(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReconcile {
    /// How often the database is compared with Proxmox.
    #[serde(default = "default_reconcile_interval")]
    interval: String,
    /// How long an orphan (Slipway's tag, no live environment) is left before removal.
    #[serde(default = "default_orphan_grace")]
    orphan_grace: String,
    /// Remove orphans after the grace period (false: only report them).
    #[serde(default = "yes")]
    remove_orphans: bool,
}

impl Default for RawReconcile {
    fn default() -> Self {
        RawReconcile {
            interval: default_reconcile_interval(),
            orphan_grace: default_orphan_grace(),
            remove_orphans: true,
        }
    }
}

fn default_reconcile_interval() -> String {
    "5m".into()
}
fn default_orphan_grace() -> String {
    "1h".into()
}

fn default_reminders() -> Vec<String> {
    vec!["24h".into(), "1h".into()]
}
fn default_grace() -> String {
    "1h".into()
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub per_node: usize,
    pub lease: Duration,
    pub rollback_retry: Duration,
    pub rollback_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub allow_self_approval: bool,
    pub rate_per_minute: u32,
    pub rate_burst: u32,
}

#[derive(Debug, Clone)]
pub struct ProvisionConfig {
    pub enabled: bool,
    pub workdir: PathBuf,
    pub ssh_user: String,
    pub ssh_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct LifetimeConfig {
    pub reminders: Vec<Duration>,
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub interval: Duration,
    pub orphan_grace: Duration,
    pub remove_orphans: bool,
}

pub(super) fn worker(raw: &RawWorker, f: &str, problems: &mut Vec<Problem>) -> WorkerConfig {
    if raw.concurrency == 0 || raw.per_node == 0 {
        problems.push(Problem::new(
            f,
            "worker: concurrency and per_node must be at least 1".into(),
        ));
    }
    WorkerConfig {
        concurrency: raw.concurrency.max(1),
        per_node: raw.per_node.max(1),
        lease: duration(&raw.lease, "worker.lease", f, problems),
        rollback_retry: duration(&raw.rollback_retry, "worker.rollback_retry", f, problems),
        rollback_attempts: raw.rollback_attempts.max(1),
    }
}

pub(super) fn policy(raw: &RawPolicy) -> PolicyConfig {
    PolicyConfig {
        allow_self_approval: raw.allow_self_approval,
        rate_per_minute: raw.rate_per_minute.unwrap_or(20).max(1),
        rate_burst: raw.rate_burst.unwrap_or(5).max(1),
    }
}

pub(super) fn http_listen(
    raw: Option<&RawHttp>,
    f: &str,
    problems: &mut Vec<Problem>,
) -> Option<SocketAddr> {
    raw.and_then(|h| match h.listen.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(Problem::new(
                f,
                format!(
                    "http.listen: '{}' is not an address such as 127.0.0.1:9090",
                    h.listen
                ),
            ));
            None
        }
    })
}

pub(super) fn provision(
    raw: &RawProvision,
    base: &Path,
    f: &str,
    problems: &mut Vec<Problem>,
) -> ProvisionConfig {
    let user_ok = !raw.ssh_user.is_empty()
        && raw.ssh_user.len() <= 32
        && raw
            .ssh_user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !raw.ssh_user.starts_with('-');
    if !user_ok {
        problems.push(Problem::new(
            f,
            format!(
                "provision.ssh_user: '{}' is not a user name (letters, digits, _ - . and at most 32 of them; e.g. \"root\")",
                raw.ssh_user
            ),
        ));
    }
    ProvisionConfig {
        enabled: raw.enabled,
        workdir: raw
            .workdir
            .as_deref()
            .map(|w| resolve(base, w))
            .unwrap_or_else(|| base.to_path_buf()),
        ssh_user: raw.ssh_user.clone(),
        ssh_wait: duration(&raw.ssh_wait, "provision.ssh_wait", f, problems),
    }
}

pub(super) fn lifetimes(
    raw: &RawLifetimes,
    f: &str,
    problems: &mut Vec<Problem>,
) -> LifetimeConfig {
    LifetimeConfig {
        reminders: raw
            .reminders
            .iter()
            .map(|r| duration(r, "lifetimes.reminders", f, problems))
            .collect(),
        grace: duration(&raw.grace, "lifetimes.grace", f, problems),
    }
}

pub(super) fn reconcile(
    raw: &RawReconcile,
    f: &str,
    problems: &mut Vec<Problem>,
) -> ReconcileConfig {
    ReconcileConfig {
        interval: duration(&raw.interval, "reconcile.interval", f, problems),
        orphan_grace: duration(&raw.orphan_grace, "reconcile.orphan_grace", f, problems),
        remove_orphans: raw.remove_orphans,
    }
}
