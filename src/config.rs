//! The configuration file (TOML), loaded raw and then validated into the types
//! the rest of Slipway uses. Every problem is reported as `file: key: message`.
//! Secrets are read from environment variables or files, never required inline,
//! and held as [`SecretString`]s that do not print.

use crate::catalog::Problem;
use crate::domain::names::TeamName;
use crate::domain::quota::Quota;
use crate::domain::team::{IpPool, OverQuota, Platform, Team};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// SQLite database file, relative to the config file.
    #[serde(default = "default_db")]
    database: String,
    #[serde(default = "default_commands")]
    commands_dir: String,
    #[serde(default = "default_profiles")]
    profiles_dir: String,
    proxmox: RawProxmox,
    #[serde(default)]
    worker: RawWorker,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default)]
    provision: RawProvision,
    #[serde(default)]
    lifetimes: RawLifetimes,
    #[serde(default)]
    reconcile: RawReconcile,
    #[serde(default)]
    publish: crate::provider::publish::config::RawPublish,
    /// `[docker]`: Docker hosts for apps.
    #[serde(default)]
    docker: crate::provider::docker::config::RawDocker,
    #[serde(default)]
    teams: Vec<RawTeam>,
    #[serde(default)]
    console: RawConsole,
    /// The Discord adapter; absent: Slipway does not speak on Discord.
    #[serde(default)]
    discord: Option<crate::chat::discord::config::RawDiscord>,
    /// The Matrix adapter (see `chat::matrix::config`).
    #[serde(default)]
    matrix: Option<crate::chat::matrix::config::RawMatrix>,
}

fn default_db() -> String {
    "slipway.db".into()
}
fn default_commands() -> String {
    "commands".into()
}
fn default_profiles() -> String {
    "profiles".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxmox {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
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
struct RawPolicy {
    #[serde(default)]
    allow_self_approval: bool,
    /// Commands per user per minute.
    rate_per_minute: Option<u32>,
    /// Commands a user may send at once before the rate applies.
    rate_burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvision {
    #[serde(default = "yes")]
    enabled: bool,
    /// Working directory of post-provision commands, relative to the config file.
    workdir: Option<String>,
}

impl Default for RawProvision {
    fn default() -> Self {
        RawProvision {
            enabled: true,
            workdir: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifetimes {
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
struct RawReconcile {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    name: String,
    #[serde(default)]
    members: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    admins: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    quota: RawQuota,
    /// "approval" (default) or "refuse".
    #[serde(default)]
    over_quota: Option<String>,
    vmids: RawVmids,
    ip_pool: Option<RawPool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    cores: Option<u32>,
    memory_mb: Option<u32>,
    disk_gb: Option<u32>,
    environments: Option<u32>,
    max_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVmids {
    first: u32,
    last: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    /// "10.20.0.10-10.20.0.50"
    range: String,
    /// "10.20.0.0/24": the network the range lies in.
    network: String,
    gateway: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    /// user → roles, so policies can be exercised locally.
    #[serde(default)]
    users: BTreeMap<String, Vec<String>>,
    default_user: Option<String>,
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub database: PathBuf,
    pub commands_dir: PathBuf,
    pub profiles_dir: PathBuf,
    pub proxmox: ProxmoxConfig,
    pub worker: WorkerConfig,
    pub policy: PolicyConfig,
    pub http_listen: Option<SocketAddr>,
    pub provision: ProvisionConfig,
    pub lifetimes: LifetimeConfig,
    pub reconcile: ReconcileConfig,
    pub publish: crate::provider::publish::config::PublishConfig,
    pub docker: crate::provider::docker::DockerConfig,
    pub teams: Vec<Team>,
    pub console_users: BTreeMap<String, Vec<String>>,
    pub console_default_user: Option<String>,
    pub discord: Option<crate::chat::discord::config::DiscordConfig>,
    /// The Matrix adapter runs when this is set.
    pub matrix: Option<crate::chat::matrix::config::MatrixConfig>,
}

impl Config {
    /// Reads and validates the file; every problem found is returned at once.
    pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem::new(
                &file,
                format!("cannot read the configuration: {e}"),
            )]
        })?;
        let raw: RawConfig = toml::from_str(&text)
            .map_err(|e| vec![Problem::new(&file, e.to_string().trim_end().to_string())])?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut problems = Vec::new();
        let cfg = validate(raw, &base, path, &mut problems);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.name.0 == name)
    }
}

/// A path from the configuration, relative to the configuration file's directory.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads the secret `{section}.{key}` from the environment variable named by
/// `{key}_env` or the file named by `{key}_file` (trimmed). Ok(None): neither is
/// set. The error names the key and says what to do; it never holds the value.
pub fn secret_source(
    section: &str,
    key: &str,
    env: Option<&str>,
    file: Option<&str>,
    base: &Path,
) -> Result<Option<String>, String> {
    match (env, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!("{section}: give {key}_env or {key}_file, not both")),
        (Some(var), None) => std::env::var(var).map(Some).map_err(|_| {
            format!("{section}.{key}_env: the environment variable {var} is not set; export it with the {key}")
        }),
        (None, Some(f)) => std::fs::read_to_string(resolve(base, f))
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("{section}.{key}_file: cannot read {f}: {e}")),
    }
}

fn duration(raw: &str, key: &str, file: &str, problems: &mut Vec<Problem>) -> Duration {
    humantime::parse_duration(raw).unwrap_or_else(|e| {
        problems.push(Problem::new(
            file,
            format!("{key}: '{raw}': {e} (write e.g. 30s, 10m or 3d)"),
        ));
        Duration::ZERO
    })
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

fn validate(raw: RawConfig, base: &Path, path: &Path, problems: &mut Vec<Problem>) -> Config {
    let file = path.display().to_string();
    let f = file.as_str();
    let px = &raw.proxmox;
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
    let proxmox = ProxmoxConfig {
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
    };
    if raw.worker.concurrency == 0 || raw.worker.per_node == 0 {
        problems.push(Problem::new(
            f,
            "worker: concurrency and per_node must be at least 1".into(),
        ));
    }
    let worker = WorkerConfig {
        concurrency: raw.worker.concurrency.max(1),
        per_node: raw.worker.per_node.max(1),
        lease: duration(&raw.worker.lease, "worker.lease", f, problems),
        rollback_retry: duration(
            &raw.worker.rollback_retry,
            "worker.rollback_retry",
            f,
            problems,
        ),
        rollback_attempts: raw.worker.rollback_attempts.max(1),
    };
    let policy = PolicyConfig {
        allow_self_approval: raw.policy.allow_self_approval,
        rate_per_minute: raw.policy.rate_per_minute.unwrap_or(20).max(1),
        rate_burst: raw.policy.rate_burst.unwrap_or(5).max(1),
    };
    let http_listen = raw.http.as_ref().and_then(|h| match h.listen.parse() {
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
    });
    let provision = ProvisionConfig {
        enabled: raw.provision.enabled,
        workdir: raw
            .provision
            .workdir
            .as_deref()
            .map(|w| resolve(base, w))
            .unwrap_or_else(|| base.to_path_buf()),
    };
    let lifetimes = LifetimeConfig {
        reminders: raw
            .lifetimes
            .reminders
            .iter()
            .map(|r| duration(r, "lifetimes.reminders", f, problems))
            .collect(),
        grace: duration(&raw.lifetimes.grace, "lifetimes.grace", f, problems),
    };
    let reconcile = ReconcileConfig {
        interval: duration(&raw.reconcile.interval, "reconcile.interval", f, problems),
        orphan_grace: duration(
            &raw.reconcile.orphan_grace,
            "reconcile.orphan_grace",
            f,
            problems,
        ),
        remove_orphans: raw.reconcile.remove_orphans,
    };
    let publish = crate::provider::publish::config::validate(raw.publish, base, f, problems);
    let teams = raw
        .teams
        .iter()
        .filter_map(|t| team(t, f, problems))
        .collect::<Vec<_>>();
    if teams.is_empty() {
        problems.push(Problem::new(
            f,
            "teams: configure at least one [[teams]]".into(),
        ));
    }
    check_overlaps(&teams, f, problems);
    let discord = raw
        .discord
        .map(|d| crate::chat::discord::config::validate(d, base, f, problems));
    let team_names: Vec<String> = raw.teams.iter().map(|t| t.name.clone()).collect();
    let docker =
        crate::provider::docker::config::validate(raw.docker, base, f, &team_names, problems);
    let matrix = raw
        .matrix
        .map(|m| crate::chat::matrix::config::validate(m, base, f, problems));
    Config {
        file: path.to_path_buf(),
        database: resolve(base, &raw.database),
        commands_dir: resolve(base, &raw.commands_dir),
        profiles_dir: resolve(base, &raw.profiles_dir),
        proxmox,
        worker,
        policy,
        http_listen,
        provision,
        lifetimes,
        reconcile,
        publish,
        docker,
        teams,
        console_users: raw.console.users,
        console_default_user: raw.console.default_user,
        discord,
        matrix,
    }
}

fn bindings(
    raw: &BTreeMap<String, Vec<String>>,
    key: &str,
    f: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<Platform, Vec<String>> {
    let mut out = BTreeMap::new();
    for (platform, roles) in raw {
        match Platform::parse(platform) {
            Some(p) => {
                out.insert(p, roles.clone());
            }
            None => problems.push(Problem::new(
                f,
                format!("{key}: '{platform}' is not a platform (console, discord or matrix)"),
            )),
        }
    }
    out
}

fn team(t: &RawTeam, f: &str, problems: &mut Vec<Problem>) -> Option<Team> {
    let key = format!("teams.{}", t.name);
    let before = problems.len();
    let over_quota = match t.over_quota.as_deref() {
        None | Some("approval") => OverQuota::Approval,
        Some("refuse") => OverQuota::Refuse,
        Some(other) => {
            problems.push(Problem::new(
                f,
                format!("{key}.over_quota: '{other}' is not 'approval' or 'refuse'"),
            ));
            OverQuota::Approval
        }
    };
    if t.vmids.first < 100 || t.vmids.first > t.vmids.last || t.vmids.last > 999_999_999 {
        problems.push(Problem::new(
            f,
            format!(
                "{key}.vmids: {}-{} is not a range within 100-999999999",
                t.vmids.first, t.vmids.last
            ),
        ));
    }
    let max_ttl = t
        .quota
        .max_ttl
        .as_deref()
        .map(|d| duration(d, &format!("{key}.quota.max_ttl"), f, problems));
    let ip_pool = t.ip_pool.as_ref().and_then(|p| pool(p, &key, f, problems));
    let members = bindings(&t.members, &format!("{key}.members"), f, problems);
    let admins = bindings(&t.admins, &format!("{key}.admins"), f, problems);
    (problems.len() == before).then(|| Team {
        name: TeamName(t.name.clone()),
        members,
        admins,
        quota: Quota {
            cores: t.quota.cores,
            memory_mb: t.quota.memory_mb,
            disk_gb: t.quota.disk_gb,
            environments: t.quota.environments,
            max_ttl,
        },
        over_quota,
        vmids: (t.vmids.first, t.vmids.last),
        ip_pool,
    })
}

fn pool(p: &RawPool, key: &str, f: &str, problems: &mut Vec<Problem>) -> Option<IpPool> {
    let net: Option<ipnet::Ipv4Net> = p.network.parse().ok();
    let range: Option<(Ipv4Addr, Ipv4Addr)> = p
        .range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    let gateway: Option<Ipv4Addr> = p.gateway.parse().ok();
    match (net, range, gateway) {
        (Some(net), Some((first, last)), Some(gateway))
            if first <= last
                && net.contains(&first)
                && net.contains(&last)
                && net.contains(&gateway) =>
        {
            Some(IpPool {
                first,
                last,
                prefix_len: net.prefix_len(),
                gateway,
            })
        }
        _ => {
            problems.push(Problem::new(
                f,
                format!(
                    "{key}.ip_pool: expected range = \"A-B\" and a gateway inside network = \"CIDR\" (got range '{}', network '{}', gateway '{}')",
                    p.range, p.network, p.gateway
                ),
            ));
            None
        }
    }
}

fn check_overlaps(teams: &[Team], f: &str, problems: &mut Vec<Problem>) {
    for (i, a) in teams.iter().enumerate() {
        for b in &teams[i + 1..] {
            if a.name == b.name {
                problems.push(Problem::new(
                    f,
                    format!("teams: '{}' is defined twice", a.name),
                ));
            }
            if a.vmids.0 <= b.vmids.1 && b.vmids.0 <= a.vmids.1 {
                problems.push(Problem::new(
                    f,
                    format!(
                        "teams.{}.vmids overlaps teams.{}.vmids: give each team its own range",
                        a.name, b.name
                    ),
                ));
            }
        }
    }
}
