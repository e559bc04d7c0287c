//! The `[publish]` section of the configuration file: raw serde structs first,
//! then [`validate`] into a [`PublishConfig`] reporting every problem as
//! `file: publish.key: message` with a hint, then [`build`] into the providers.
//! Secrets (the TSIG key) come from an environment variable or a file, never
//! inline, and are held as [`SecretString`]s that do not print.
//!
//! ```toml
//! [publish]
//! router = "traefik"            # or "caddy-api", "caddy-git", "none"
//! zones = ["test.example"]
//! [publish.traefik]
//! dir = "/etc/traefik/dynamic"
//! entry_points = ["websecure"]
//! cert_resolver = "letsencrypt"
//! [publish.dns]
//! server = "10.0.0.53:53"
//! zone = "test.example"
//! key_name = "slipway"
//! key_secret_file = "/etc/slipway/tsig.key"
//! ingress = "10.0.0.80"        # the Traefik host; or its name, for a CNAME
//! [publish.monitor]
//! file_sd_dir = "/etc/prometheus/file_sd/slipway"
//! ```

use super::caddy_api::CaddyApi;
use super::dns::DnsUpdate;
use super::gitops::GitOps;
use super::monitor::FileSd;
use super::traefik::Traefik;
use super::{PublishError, Publishers};
use crate::catalog::Problem;
use crate::domain::domain_name::Domain;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// `[publish]`: how environments are made reachable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    /// "traefik", "caddy-api", "caddy-git" or "none" (the default: no routes).
    #[serde(default)]
    pub router: Option<String>,
    /// Zones users may choose domains under, e.g. ["test.example"].
    #[serde(default)]
    pub zones: Vec<String>,
    /// `[publish.traefik]`, for router = "traefik".
    #[serde(default)]
    pub traefik: Option<RawTraefik>,
    /// `[publish.caddy_api]`, for router = "caddy-api".
    #[serde(default)]
    pub caddy_api: Option<RawCaddyApi>,
    /// `[publish.caddy_git]`, for router = "caddy-git".
    #[serde(default)]
    pub caddy_git: Option<RawCaddyGit>,
    /// `[publish.dns]`: A records by RFC 2136 update; absent = no DNS.
    #[serde(default)]
    pub dns: Option<RawDns>,
    /// `[publish.monitor]`: Prometheus file_sd targets; absent = no monitoring.
    #[serde(default)]
    pub monitor: Option<RawMonitor>,
}

/// `[publish.traefik]`: Traefik's file provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraefik {
    /// The directory Traefik's file provider watches (`providers.file.directory`).
    pub dir: String,
    /// Entry points the routers listen on; empty = all of Traefik's entry points.
    #[serde(default)]
    pub entry_points: Vec<String>,
    /// Certificate resolver for the routers' TLS; absent = plain HTTP routers.
    pub cert_resolver: Option<String>,
    /// Middlewares applied to every router, e.g. ["secure-headers@file"].
    #[serde(default)]
    pub middlewares: Vec<String>,
    /// Health check of the backend; absent = none.
    pub health_check: Option<RawHealthCheck>,
}

/// `[publish.traefik.health_check]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Path requested on the backend, e.g. "/healthz".
    pub path: String,
    /// How often, e.g. "10s".
    #[serde(default = "ten_seconds")]
    pub interval: String,
    /// How long one check may take; absent = Traefik's default.
    pub timeout: Option<String>,
}

/// `[publish.caddy_api]`: Caddy's admin API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaddyApi {
    /// The admin endpoint, addressed by the IP it listens on (Caddy refuses other Host names).
    #[serde(default = "default_admin")]
    pub admin_url: String,
    /// The server in `apps.http.servers` that gets the routes ("srv0" for a Caddyfile).
    #[serde(default = "default_server")]
    pub server: String,
    /// Timeout of one admin request.
    #[serde(default = "ten_seconds")]
    pub timeout: String,
}

/// `[publish.caddy_git]`: Caddy service definitions committed to Git.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaddyGit {
    /// The repository to push to (URL or path); credentials come from git's own setup.
    pub repo: String,
    /// The branch the deployment pipeline reads.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Directory inside the repository for service files; Slipway writes nowhere else.
    pub dir: String,
    /// Slipway's own working copy, relative to the config file; nobody else may use it.
    #[serde(default = "default_clone_dir")]
    pub clone_dir: String,
    /// Commit author name.
    #[serde(default = "default_author")]
    pub author_name: String,
    /// Commit author e-mail.
    #[serde(default = "default_email")]
    pub author_email: String,
    /// The `type` field of every service file.
    #[serde(default = "default_type")]
    pub service_type: String,
    /// The `headers` field of every service file.
    #[serde(default = "yes")]
    pub headers: bool,
    /// The `auth` field of every service file.
    #[serde(default)]
    pub auth: bool,
    /// Pushes to try when another writer got there first.
    #[serde(default = "five")]
    pub push_attempts: u32,
    /// Timeout of one git command.
    #[serde(default = "default_git_timeout")]
    pub timeout: String,
}

/// `[publish.dns]`: RFC 2136 dynamic update with TSIG.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// The zone's primary server, IP:port.
    pub server: String,
    /// The zone updated; every zone in publish.zones must lie in it.
    pub zone: String,
    /// The TSIG key's name, as the server knows it.
    pub key_name: String,
    /// "hmac-sha256" (default), "hmac-sha384" or "hmac-sha512".
    #[serde(default = "default_algorithm")]
    pub key_algorithm: String,
    /// Environment variable holding the key's base64 secret.
    pub key_secret_env: Option<String>,
    /// File holding the base64 secret, or a key file as tsig-keygen writes it.
    pub key_secret_file: Option<String>,
    /// Where the names of routed environments point: the Traefik/Caddy host's
    /// IPv4 address (an A record) or its DNS name (a CNAME). Required with a
    /// router; unrouted environments' names point at the guest itself.
    #[serde(default)]
    pub ingress: Option<String>,
    /// TTL of the records.
    #[serde(default = "default_ttl")]
    pub ttl: String,
    /// Timeout of one update.
    #[serde(default = "five_seconds")]
    pub timeout: String,
}

/// `[publish.monitor]`: Prometheus file_sd.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    /// Directory Prometheus reads (`file_sd_configs: files: [DIR/*.json]`).
    pub file_sd_dir: String,
    /// The node exporter's port in the containers.
    #[serde(default = "default_exporter_port")]
    pub exporter_port: u16,
}

fn ten_seconds() -> String {
    "10s".into()
}
fn five_seconds() -> String {
    "5s".into()
}
fn default_admin() -> String {
    "http://127.0.0.1:2019".into()
}
fn default_server() -> String {
    "srv0".into()
}
fn default_branch() -> String {
    "main".into()
}
fn default_clone_dir() -> String {
    "caddy-git".into()
}
fn default_author() -> String {
    "Slipway".into()
}
fn default_email() -> String {
    "slipway@localhost".into()
}
fn default_type() -> String {
    "proxy".into()
}
fn yes() -> bool {
    true
}
fn five() -> u32 {
    5
}
fn default_git_timeout() -> String {
    "60s".into()
}
fn default_algorithm() -> String {
    "hmac-sha256".into()
}
fn default_ttl() -> String {
    "5m".into()
}
fn default_exporter_port() -> u16 {
    9100
}

/// The validated `[publish]` section.
#[derive(Debug, Clone, Default)]
pub struct PublishConfig {
    /// Canonical zone names (lower case, no final dot), for [`Domain::parse`].
    pub zones: Vec<String>,
    pub router: Option<RouterConfig>,
    pub dns: Option<DnsConfig>,
    pub monitor: Option<MonitorConfig>,
}

impl PublishConfig {
    /// Where an exposed environment's name points: the ingress when a router
    /// forwards the name (the guest is behind it), else the guest's `address`.
    /// `None` without DNS, or unrouted without an address.
    pub fn dns_target(&self, address: Option<std::net::Ipv4Addr>) -> Option<super::DnsTarget> {
        let dns = self.dns.as_ref()?;
        if self.router.is_some() {
            dns.ingress.clone()
        } else {
            address.map(super::DnsTarget::Address)
        }
    }
}

#[derive(Debug, Clone)]
pub enum RouterConfig {
    Traefik(TraefikConfig),
    CaddyApi(CaddyApiConfig),
    CaddyGit(GitOpsConfig),
}

#[derive(Debug, Clone)]
pub struct TraefikConfig {
    pub dir: PathBuf,
    pub entry_points: Vec<String>,
    pub cert_resolver: Option<String>,
    pub middlewares: Vec<String>,
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct CaddyApiConfig {
    pub admin_url: String,
    pub server: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct GitOpsConfig {
    pub repo: String,
    pub branch: String,
    /// Relative, plain components only (checked).
    pub dir: PathBuf,
    pub clone_dir: PathBuf,
    pub author_name: String,
    pub author_email: String,
    pub service_type: String,
    pub headers: bool,
    pub auth: bool,
    pub push_attempts: u32,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub server: SocketAddr,
    pub zone: String,
    pub key_name: String,
    pub algorithm: String,
    /// The base64 secret.
    pub secret: SecretString,
    pub ttl: u32,
    pub timeout: Duration,
    /// Where routed environments' names point.
    pub ingress: Option<super::DnsTarget>,
}

impl DnsConfig {
    /// The decoded key.
    pub fn secret_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(self.secret.expose_secret().trim())
    }
}

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub file_sd_dir: PathBuf,
    pub exporter_port: u16,
}

/// Builds the providers the configuration asks for.
pub fn build(cfg: &PublishConfig) -> Result<Publishers, PublishError> {
    let router: Option<Box<dyn super::Router>> = match &cfg.router {
        None => None,
        Some(RouterConfig::Traefik(t)) => Some(Box::new(Traefik::new(t))),
        Some(RouterConfig::CaddyApi(c)) => Some(Box::new(CaddyApi::new(c)?)),
        Some(RouterConfig::CaddyGit(g)) => Some(Box::new(GitOps::new(g))),
    };
    let dns: Option<Box<dyn super::Dns>> = match &cfg.dns {
        Some(d) => Some(Box::new(DnsUpdate::new(d)?)),
        None => None,
    };
    let monitor: Option<Box<dyn super::Monitor>> = cfg
        .monitor
        .as_ref()
        .map(|m| Box::new(FileSd::new(m)) as Box<dyn super::Monitor>);
    Ok(Publishers {
        router,
        dns,
        monitor,
    })
}

/// Validates the raw section; paths are resolved against `base_dir` (the
/// config file's directory) and problems are reported against `file`.
pub fn validate(
    raw: RawPublish,
    base_dir: &Path,
    file: &str,
    problems: &mut Vec<Problem>,
) -> PublishConfig {
    let mut p = Problems { file, problems };
    let zones = zones(&raw.zones, &mut p);
    let router = router(&raw, base_dir, &mut p);
    let dns = raw
        .dns
        .as_ref()
        .and_then(|d| dns(d, &zones, base_dir, &mut p));
    let monitor = raw.monitor.as_ref().map(|m| monitor(m, base_dir, &mut p));
    if router.is_some() && dns.as_ref().is_some_and(|d| d.ingress.is_none()) {
        p.push(
            "publish.dns.ingress",
            "is required with a router: a routed environment's name must point at the proxy, \
             not at the guest (which the proxy forwards to); set it to the Traefik/Caddy host's \
             IPv4 address, e.g. \"10.0.0.80\", or its DNS name for a CNAME",
        );
    }
    if zones.is_empty() && (router.is_some() || dns.is_some()) {
        p.push(
            "publish.zones",
            "list at least one zone users may choose domains under, e.g. [\"apps.example.com\"]",
        );
    }
    PublishConfig {
        zones,
        router,
        dns,
        monitor,
    }
}

mod sections;

pub use sections::check_repo_dir;
use sections::{dns, monitor, router, zones, Problems};

#[cfg(test)]
mod tests;
