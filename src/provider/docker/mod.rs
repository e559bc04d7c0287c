//! Docker hosts for apps: the [`Containers`] trait the worker's app steps call,
//! its implementation over the Docker Engine API with bollard ([`engine`]),
//! and [`DockerHosts`], which finds the host an app lives on — one declared in
//! `[[docker.hosts]]` (a local socket, or TCP with TLS) or a docker-host
//! environment Slipway created (its address, Docker's TLS port from config).
//! Never a shell: every call is an Engine API request.
//!
//! Every container Slipway creates carries [`LABEL_OWNER`] and the app's id,
//! team and request, so it can be found again after a crash and nothing
//! without those labels is ever removed.

pub mod config;
mod engine;
pub mod registry;
pub mod server_cert;
mod tls_transport;

use async_trait::async_trait;
pub use config::{DockerConfig, HostConfig, HostNetwork};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Marks every container Slipway owns (with the value [`OWNER`]).
pub const LABEL_OWNER: &str = "io.slipway.owner";
/// The value of [`LABEL_OWNER`] on Slipway's containers.
pub const OWNER: &str = "slipway";
/// The app's id (its environment row).
pub const LABEL_APP_ID: &str = "io.slipway.app-id";
pub const LABEL_APP: &str = "io.slipway.app";
pub const LABEL_TEAM: &str = "io.slipway.team";
/// The chat request that asked for the container.
pub const LABEL_REQUEST: &str = "io.slipway.request";
/// The job that created it.
pub const LABEL_JOB: &str = "io.slipway.job";

/// How a container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networking {
    /// Shares the host's network and listens on `port` (given to it as $PORT).
    Host { port: u16 },
    /// Docker's default bridge; `port` is published on `bind` at a port Docker picks.
    Bridge { port: u16, bind: Ipv4Addr },
}

/// A container to create for an app.
#[derive(Debug, Clone)]
pub struct AppContainer {
    pub name: String,
    pub image: String,
    /// `KEY=VALUE`; may hold secrets: never logged.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub cores: u32,
    pub memory_mb: u32,
    pub networking: Networking,
    pub binds: Vec<String>,
    pub privileged: bool,
    pub devices: Vec<String>,
}

/// A container as Docker reports it.
#[derive(Debug, Clone, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The image as asked for (Config.Image).
    pub image: String,
    /// created, running, exited, …
    pub state: String,
    pub exit_code: Option<i64>,
    /// RFC 3339, as Docker writes it.
    pub started_at: Option<String>,
    pub labels: HashMap<String, String>,
    /// `KEY=VALUE`, secrets included: never show these unredacted.
    pub env: Vec<String>,
    pub nano_cpus: i64,
    pub memory: i64,
    pub restart_policy: String,
    pub network_mode: String,
    /// Where a bridge container's port is published on the host.
    pub published_port: Option<u16>,
}

impl ContainerInfo {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// Why a Docker call failed. Docker's own wording is kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DockerError {
    #[error("Docker on {host} answered {status}: {message}")]
    Api {
        host: String,
        status: u16,
        message: String,
    },
    #[error("could not reach Docker on {host}: {message}")]
    Network { host: String, message: String },
    /// The TLS files are unusable or the handshake failed: retrying will not help.
    #[error("TLS with Docker on {host} failed: {message}")]
    Tls { host: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl DockerError {
    /// Worth trying again: the connection may come back.
    pub fn is_transient(&self) -> bool {
        match self {
            DockerError::Network { .. } => true,
            DockerError::Api { status, .. } => *status >= 500 && *status != 501,
            DockerError::Config(_) | DockerError::Tls { .. } => false,
        }
    }
}

/// One Docker Engine, as the worker sees it.
#[async_trait]
pub trait Containers: Send + Sync {
    /// Whether the image is on the host already.
    async fn image_present(&self, image: &str) -> Result<bool, DockerError>;
    /// Pulls the image from its registry.
    async fn pull(&self, image: &str) -> Result<(), DockerError>;
    /// Creates (does not start) the container; returns its id.
    async fn create(&self, spec: &AppContainer) -> Result<String, DockerError>;
    /// The container by name or id; None if there is none.
    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, DockerError>;
    /// Starts it; Ok if it is running already.
    async fn start(&self, name: &str) -> Result<(), DockerError>;
    async fn restart(&self, name: &str, timeout: Duration) -> Result<(), DockerError>;
    /// Stops it (SIGTERM, then SIGKILL after `timeout`); Ok if it is stopped already.
    /// With restart policy `unless-stopped` it stays stopped until started.
    async fn stop(&self, name: &str, timeout: Duration) -> Result<(), DockerError>;
    /// Stops and removes it (SIGTERM, then SIGKILL after `timeout`); Ok if it is not there.
    async fn remove(&self, name: &str, timeout: Duration) -> Result<(), DockerError>;
    /// Every container (running or not) carrying all of these labels.
    async fn list(&self, labels: &[(&str, String)]) -> Result<Vec<ContainerInfo>, DockerError>;
    /// The last `lines` lines of its stdout and stderr.
    async fn logs(&self, name: &str, lines: u32) -> Result<Vec<String>, DockerError>;
}

/// A host resolved for one app: how to reach Docker there, and how its apps are networked.
#[derive(Clone)]
pub struct Host {
    /// `NAME` of a declared host, or `env:ID` of a docker-host environment.
    pub key: String,
    pub containers: Arc<dyn Containers>,
    /// Where routes and health checks reach the app's published port.
    pub address: Ipv4Addr,
    pub network: HostNetwork,
    pub allow_host_access: bool,
}

/// The Docker hosts Slipway may deploy to; clients are made on first use and kept.
pub struct DockerHosts {
    pub config: DockerConfig,
    clients: Mutex<HashMap<String, Arc<dyn Containers>>>,
}

impl std::fmt::Debug for DockerHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerHosts")
            .field("hosts", &self.config.hosts.len())
            .finish()
    }
}

/// The key an app records for a docker-host environment.
pub fn env_host_key(env_id: i64) -> String {
    format!("env:{env_id}")
}

/// The environment id in an `env:ID` key.
pub fn env_host_id(key: &str) -> Option<i64> {
    key.strip_prefix("env:")?.parse().ok()
}

/// Where a docker-host environment's dockerd listens (TCP with TLS).
pub fn env_host_url(address: Ipv4Addr, port: u16) -> String {
    format!("tcp://{address}:{port}")
}

impl DockerHosts {
    pub fn new(config: DockerConfig) -> DockerHosts {
        DockerHosts {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The declared host `name`.
    pub fn declared(&self, name: &str) -> Option<&HostConfig> {
        self.config.hosts.iter().find(|h| h.name == name)
    }

    /// Declared hosts team `team` may use, in configuration order.
    pub fn for_team<'a>(&'a self, team: &'a str) -> impl Iterator<Item = &'a HostConfig> + 'a {
        self.config
            .hosts
            .iter()
            .filter(move |h| h.teams.is_empty() || h.teams.iter().any(|t| t == team))
    }

    fn client(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<Arc<dyn Containers>, DockerError>,
    ) -> Result<Arc<dyn Containers>, DockerError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(key) {
            return Ok(c.clone());
        }
        let c = make()?;
        clients.insert(key.to_string(), c.clone());
        Ok(c)
    }

    /// Connects to the host an app recorded: a declared one by name, or a
    /// docker-host environment (`env:ID`) at `env_address`.
    pub fn host(&self, key: &str, env_address: Option<Ipv4Addr>) -> Result<Host, DockerError> {
        if let Some(h) = self.declared(key) {
            let containers = self.client(key, || engine::Engine::declared(h, &self.config))?;
            return Ok(Host {
                key: key.to_string(),
                containers,
                address: h.address,
                network: h.network.clone(),
                allow_host_access: h.allow_host_access,
            });
        }
        if env_host_id(key).is_some() {
            let address = env_address.ok_or_else(|| {
                DockerError::Config(format!(
                    "the docker-host environment behind {key} has no address; /env info shows it"
                ))
            })?;
            let url = env_host_url(address, self.config.env_port);
            let cache_key = format!("{key}@{url}");
            let containers =
                self.client(&cache_key, || engine::Engine::env_host(&url, &self.config))?;
            return Ok(Host {
                key: key.to_string(),
                containers,
                address,
                network: HostNetwork::Bridge,
                allow_host_access: false,
            });
        }
        Err(DockerError::Config(format!(
            "Docker host {key} is no longer configured; restore it in [[docker.hosts]]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_host_environment_is_reached_on_its_address_and_the_configured_port() {
        assert_eq!(
            env_host_url(Ipv4Addr::new(10, 20, 0, 51), 2376),
            "tcp://10.20.0.51:2376"
        );
        assert_eq!(env_host_id(&env_host_key(42)), Some(42));
        assert_eq!(env_host_id("local"), None);
    }
}
