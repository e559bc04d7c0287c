//! The `[docker]` section: Docker hosts apps may run on, and how apps are
//! deployed and health-checked. Raw serde structs first, then [`validate`]
//! reporting every problem as `file: docker.key: message`.
//!
//! ```toml
//! [docker]
//! health_retries = 10        # health checks of a new container before giving up
//! health_interval = "1s"
//! grace = "10s"              # old container keeps running after the switch
//! env_port = 2376            # dockerd's TLS port on docker-host environments
//! env_tls = { ca_file = "docker/ca.pem", cert_file = "docker/cert.pem", key_file = "docker/key.pem",
//!             ca_key_file = "docker/ca-key.pem" }  # signs dockerd's certificate on docker-host environments
//! [[docker.hosts]]
//! name = "apps1"
//! url = "unix:///run/docker.sock"   # or "tcp://10.0.0.5:2376" with ca_file/cert_file/key_file
//! address = "127.0.0.1"             # where the router reaches published ports
//! network = "bridge"                # or "host" with ports = "20000-20999"
//! teams = ["web"]                   # empty: every team
//! ```

use crate::catalog::Problem;
use crate::config::resolve;
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    /// Declared Docker hosts.
    #[serde(default)]
    pub hosts: Vec<RawHost>,
    /// Path requested on a new container before traffic moves to it.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// How many health checks a new container gets.
    #[serde(default = "default_retries")]
    pub health_retries: u32,
    /// Time between health checks.
    #[serde(default = "one_second")]
    pub health_interval: String,
    /// How long the old container keeps running after traffic moved away from it.
    #[serde(default = "ten_seconds")]
    pub grace: String,
    /// SIGTERM-to-SIGKILL time when a container is stopped.
    #[serde(default = "ten_seconds")]
    pub stop_timeout: String,
    /// Timeout of one Engine API request.
    #[serde(default = "thirty_seconds")]
    pub timeout: String,
    /// How long an image pull may take.
    #[serde(default = "ten_minutes")]
    pub pull_timeout: String,
    /// CPU cores an app gets when it does not say.
    #[serde(default = "one")]
    pub default_cpu: u32,
    /// Memory (MB) an app gets when it does not say.
    #[serde(default = "default_memory")]
    pub default_memory_mb: u32,
    /// The port an app listens on when it does not say.
    #[serde(default = "default_port")]
    pub default_port: u16,
    /// dockerd's TLS port on docker-host environments.
    #[serde(default = "default_env_port")]
    pub env_port: u16,
    /// Client certificate for docker-host environments.
    #[serde(default)]
    pub env_tls: Option<RawTls>,
    /// Credentials for private registries.
    #[serde(default)]
    pub registries: Vec<super::registry::RawRegistry>,
}

impl Default for RawDocker {
    fn default() -> Self {
        toml::from_str("").expect("every [docker] key has a default")
    }
}

/// `[[docker.hosts]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: String,
    /// `unix:///path/docker.sock` or `tcp://HOST:PORT` (TLS required).
    pub url: String,
    /// Where the router and health checks reach the host's published ports.
    #[serde(default = "default_address")]
    pub address: String,
    /// "bridge" (Docker publishes the app's port) or "host" (apps share the host's network).
    #[serde(default = "default_network")]
    pub network: String,
    /// For network = "host": ports Slipway hands to app containers, "A-B".
    pub ports: Option<String>,
    /// Teams that may deploy here; empty: every team.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Team admins may ask for host paths, privileged mode, devices and the host's network.
    #[serde(default)]
    pub allow_host_access: bool,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// A TLS client identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    /// For `env_tls` only: the CA's private key, to sign each docker-host
    /// environment's dockerd certificate.
    pub ca_key_file: Option<String>,
}

fn default_health_path() -> String {
    "/".into()
}
fn default_retries() -> u32 {
    10
}
fn one_second() -> String {
    "1s".into()
}
fn ten_seconds() -> String {
    "10s".into()
}
fn thirty_seconds() -> String {
    "30s".into()
}
fn ten_minutes() -> String {
    "10m".into()
}
fn one() -> u32 {
    1
}
fn default_memory() -> u32 {
    256
}
fn default_port() -> u16 {
    8080
}
fn default_env_port() -> u16 {
    2376
}
fn default_address() -> String {
    "127.0.0.1".into()
}
fn default_network() -> String {
    "bridge".into()
}

/// How a host's apps are networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostNetwork {
    /// Docker's bridge; each app's port is published on `address` at a port Docker picks.
    Bridge,
    /// The host's network; each container gets a port of this range as $PORT.
    Host { first: u16, last: u16 },
}

/// TLS client files, resolved against the config file's directory.
#[derive(Debug, Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A declared Docker host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub name: String,
    pub url: String,
    pub address: Ipv4Addr,
    pub network: HostNetwork,
    pub teams: Vec<String>,
    pub allow_host_access: bool,
    pub tls: Option<Tls>,
}

/// The validated `[docker]` section.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub hosts: Vec<HostConfig>,
    pub health_path: String,
    pub health_retries: u32,
    pub health_interval: Duration,
    pub grace: Duration,
    pub stop_timeout: Duration,
    pub timeout: Duration,
    pub pull_timeout: Duration,
    pub default_cpu: u32,
    pub default_memory_mb: u32,
    pub default_port: u16,
    pub env_port: u16,
    pub env_tls: Option<Tls>,
    /// `env_tls.ca_key_file`: signs dockerd's certificate on docker-host environments.
    pub env_ca_key: Option<PathBuf>,
    /// Credentials for private registries, by registry host.
    pub registries: Vec<super::registry::RegistryAuth>,
}

fn duration(raw: &str, key: &str, f: &str, problems: &mut Vec<Problem>) -> Duration {
    humantime::parse_duration(raw).unwrap_or_else(|e| {
        problems.push(Problem::new(
            f,
            format!("docker.{key}: '{raw}': {e} (write e.g. 1s or 10m)"),
        ));
        Duration::ZERO
    })
}

fn tls(raw: &RawTls, base: &Path) -> Tls {
    Tls {
        ca: resolve(base, &raw.ca_file),
        cert: resolve(base, &raw.cert_file),
        key: resolve(base, &raw.key_file),
    }
}

fn host(
    h: &RawHost,
    base: &Path,
    f: &str,
    teams: &[String],
    problems: &mut Vec<Problem>,
) -> Option<HostConfig> {
    let key = format!("docker.hosts.{}", h.name);
    let before = problems.len();
    for t in h.teams.iter().filter(|t| !teams.contains(t)) {
        problems.push(Problem::new(
            f,
            format!("{key}.teams: '{t}' is not a configured team"),
        ));
    }
    let name_ok = !h.name.is_empty()
        && !h.name.contains(':')
        && h.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        problems.push(Problem::new(
            f,
            format!("{key}: name: use letters, digits, '-' and '_'"),
        ));
    }
    let address = h.address.parse::<Ipv4Addr>().unwrap_or_else(|_| {
        problems.push(Problem::new(
            f,
            format!("{key}.address: '{}' is not an IPv4 address", h.address),
        ));
        Ipv4Addr::LOCALHOST
    });
    let tls = match (&h.ca_file, &h.cert_file, &h.key_file) {
        (Some(ca), Some(cert), Some(k)) => Some(Tls {
            ca: resolve(base, ca),
            cert: resolve(base, cert),
            key: resolve(base, k),
        }),
        (None, None, None) => None,
        _ => {
            problems.push(Problem::new(
                f,
                format!("{key}: give all of ca_file, cert_file and key_file, or none"),
            ));
            None
        }
    };
    if h.url.starts_with("tcp://") || h.url.starts_with("https://") {
        if tls.is_none() {
            problems.push(Problem::new(
                f,
                format!("{key}.url: {} is TCP: Docker's API there must be TLS-protected; give ca_file, cert_file and key_file", h.url),
            ));
        }
    } else if !h.url.starts_with("unix:///") {
        problems.push(Problem::new(
            f,
            format!(
                "{key}.url: '{}' is not unix:///path/docker.sock or tcp://HOST:PORT",
                h.url
            ),
        ));
    }
    let network = match (h.network.as_str(), &h.ports) {
        ("bridge", None) => HostNetwork::Bridge,
        ("host", Some(range)) => match range
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        {
            Some((first, last)) if first >= 1024 && first <= last => {
                HostNetwork::Host { first, last }
            }
            _ => {
                problems.push(Problem::new(
                    f,
                    format!("{key}.ports: '{range}' is not a range A-B of ports from 1024"),
                ));
                HostNetwork::Bridge
            }
        },
        ("host", None) => {
            problems.push(Problem::new(
                f,
                format!("{key}.ports: network = \"host\" needs ports = \"A-B\" to hand to apps"),
            ));
            HostNetwork::Bridge
        }
        ("bridge", Some(_)) => {
            problems.push(Problem::new(
                f,
                format!("{key}.ports: only for network = \"host\"; Docker picks bridge ports"),
            ));
            HostNetwork::Bridge
        }
        (other, _) => {
            problems.push(Problem::new(
                f,
                format!("{key}.network: '{other}' is not \"bridge\" or \"host\""),
            ));
            HostNetwork::Bridge
        }
    };
    (problems.len() == before).then(|| HostConfig {
        name: h.name.clone(),
        url: h.url.clone(),
        address,
        network,
        teams: h.teams.clone(),
        allow_host_access: h.allow_host_access,
        tls,
    })
}

/// Validates `[docker]`; paths are relative to `base`, problems go to `problems`.
pub fn validate(
    raw: RawDocker,
    base: &Path,
    f: &str,
    teams: &[String],
    problems: &mut Vec<Problem>,
) -> DockerConfig {
    let hosts: Vec<HostConfig> = raw
        .hosts
        .iter()
        .filter_map(|h| host(h, base, f, teams, problems))
        .collect();
    for (i, a) in hosts.iter().enumerate() {
        if hosts[i + 1..].iter().any(|b| b.name == a.name) {
            problems.push(Problem::new(
                f,
                format!("docker.hosts: '{}' is declared twice", a.name),
            ));
        }
        for t in a.teams.iter().filter(|t| !teams.contains(t)) {
            problems.push(Problem::new(
                f,
                format!(
                    "docker.hosts.{}.teams: '{t}' is not a configured team",
                    a.name
                ),
            ));
        }
    }
    if !raw.health_path.starts_with('/') || raw.health_path.contains(char::is_whitespace) {
        problems.push(Problem::new(
            f,
            format!(
                "docker.health_path: '{}' must be a path starting with /",
                raw.health_path
            ),
        ));
    }
    if raw.health_retries == 0 || raw.default_cpu == 0 || raw.default_memory_mb < 6 {
        problems.push(Problem::new(
            f,
            "docker: health_retries and default_cpu must be at least 1, default_memory_mb at least 6 (Docker's minimum)".into(),
        ));
    }
    let registries = super::registry::validate(&raw.registries, base, f, problems);
    for r in &registries {
        for name in r.hosts.iter().flatten() {
            if !hosts.iter().any(|h| h.name == *name) {
                problems.push(Problem::new(
                    f,
                    format!(
                        "docker.registries.{}: hosts names '{name}', which is not one of [[docker.hosts]]",
                        r.server
                    ),
                ));
            }
        }
    }
    DockerConfig {
        registries,
        hosts,
        health_path: raw.health_path,
        health_retries: raw.health_retries.max(1),
        health_interval: duration(&raw.health_interval, "health_interval", f, problems),
        grace: duration(&raw.grace, "grace", f, problems),
        stop_timeout: duration(&raw.stop_timeout, "stop_timeout", f, problems),
        timeout: duration(&raw.timeout, "timeout", f, problems),
        pull_timeout: duration(&raw.pull_timeout, "pull_timeout", f, problems),
        default_cpu: raw.default_cpu.max(1),
        default_memory_mb: raw.default_memory_mb,
        default_port: raw.default_port,
        env_port: raw.env_port,
        env_tls: raw.env_tls.as_ref().map(|t| tls(t, base)),
        env_ca_key: raw
            .env_tls
            .as_ref()
            .and_then(|t| t.ca_key_file.as_ref())
            .map(|k| resolve(base, k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (DockerConfig, Vec<Problem>) {
        let raw: RawDocker = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let cfg = validate(
            raw,
            Path::new("/etc/slipway"),
            "s.toml",
            &["web".into()],
            &mut problems,
        );
        (cfg, problems)
    }

    #[test]
    fn a_local_socket_host_with_host_networking_validates() {
        let (cfg, problems) = check(
            "[[hosts]]\nname = \"local\"\nurl = \"unix:///run/docker.sock\"\nnetwork = \"host\"\nports = \"20000-20099\"\nteams = [\"web\"]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            cfg.hosts[0].network,
            HostNetwork::Host {
                first: 20000,
                last: 20099
            }
        );
    }

    #[test]
    fn tcp_without_tls_is_refused() {
        let (_, problems) = check("[[hosts]]\nname = \"far\"\nurl = \"tcp://10.0.0.5:2375\"\n");
        assert!(problems[0].message.contains("TLS"), "{problems:?}");
    }

    #[test]
    fn host_networking_needs_a_port_range_and_teams_must_exist() {
        let (_, problems) = check(
            "[[hosts]]\nname = \"x\"\nurl = \"unix:///s\"\nnetwork = \"host\"\nteams = [\"nope\"]\n",
        );
        let all = format!("{problems:?}");
        assert!(all.contains("needs ports"), "{all}");
        assert!(all.contains("'nope' is not a configured team"), "{all}");
    }

    #[test]
    fn tls_files_are_resolved_against_the_config_directory() {
        let (cfg, problems) = check(
            "[[hosts]]\nname = \"far\"\nurl = \"tcp://10.0.0.5:2376\"\nca_file = \"d/ca.pem\"\ncert_file = \"d/cert.pem\"\nkey_file = \"/k.pem\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let tls = cfg.hosts[0].tls.as_ref().unwrap();
        assert_eq!(tls.ca, PathBuf::from("/etc/slipway/d/ca.pem"));
        assert_eq!(tls.key, PathBuf::from("/k.pem"));
    }
}
