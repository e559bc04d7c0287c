//! The configuration file (TOML), loaded raw and then validated into the types
//! the rest of Slipway uses. Every problem is reported as `file: key: message`.
//! Secrets are read from environment variables or files, never required inline,
//! and held as [`SecretString`](secrecy::SecretString)s that do not print.

mod proxmox;
mod runtime;
mod secrets;
mod teams;

pub use proxmox::ProxmoxConfig;
pub use runtime::{LifetimeConfig, PolicyConfig, ProvisionConfig, ReconcileConfig, WorkerConfig};
pub use secrets::{resolve, secret_source};

use crate::catalog::Problem;
use crate::domain::team::Team;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
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
    proxmox: proxmox::RawProxmox,
    #[serde(default)]
    worker: runtime::RawWorker,
    #[serde(default)]
    policy: runtime::RawPolicy,
    #[serde(default)]
    http: Option<runtime::RawHttp>,
    #[serde(default)]
    provision: runtime::RawProvision,
    #[serde(default)]
    lifetimes: runtime::RawLifetimes,
    #[serde(default)]
    reconcile: runtime::RawReconcile,
    #[serde(default)]
    publish: crate::provider::publish::config::RawPublish,
    /// `[docker]`: Docker hosts for apps.
    #[serde(default)]
    docker: crate::provider::docker::config::RawDocker,
    #[serde(default)]
    teams: Vec<teams::RawTeam>,
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    /// user → roles, so policies can be exercised locally.
    #[serde(default)]
    users: BTreeMap<String, Vec<String>>,
    default_user: Option<String>,
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

fn duration(raw: &str, key: &str, file: &str, problems: &mut Vec<Problem>) -> Duration {
    humantime::parse_duration(raw).unwrap_or_else(|e| {
        problems.push(Problem::new(
            file,
            format!("{key}: '{raw}': {e} (write e.g. 30s, 10m or 3d)"),
        ));
        Duration::ZERO
    })
}

fn validate(raw: RawConfig, base: &Path, path: &Path, problems: &mut Vec<Problem>) -> Config {
    let file = path.display().to_string();
    let f = file.as_str();
    let proxmox = proxmox::validate(&raw.proxmox, base, f, problems);
    let worker = runtime::worker(&raw.worker, f, problems);
    let policy = runtime::policy(&raw.policy);
    let http_listen = runtime::http_listen(raw.http.as_ref(), f, problems);
    let provision = runtime::provision(&raw.provision, base, f, problems);
    let lifetimes = runtime::lifetimes(&raw.lifetimes, f, problems);
    let reconcile = runtime::reconcile(&raw.reconcile, f, problems);
    let publish = crate::provider::publish::config::validate(raw.publish, base, f, problems);
    let teams = teams::validate(&raw.teams, base, f, problems);
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
