//! Publishing: making an environment reachable under its own domain, and
//! undoing it. Three roles, each a small trait the worker calls from its own
//! step with its own compensation:
//!
//! - [`Router`]: an HTTP route from the domain to the container —
//!   [`traefik`] (file provider), [`caddy_api`] (Caddy's admin API) or
//!   [`gitops`] (a Caddy service YAML committed to a Git repository);
//! - [`Dns`]: an A record through RFC 2136 dynamic update signed with TSIG ([`dns`]);
//! - [`Monitor`]: a Prometheus `file_sd` target ([`monitor`]).
//!
//! Every operation is idempotent, because the worker repeats a step after a
//! crash and runs compensation after a failure: publishing twice leaves one
//! route, removing what is not there is `Ok`. Everything an operation touches
//! is named after the environment's id or its domain, so it can be found again
//! from the step journal alone. Values arrive typed ([`Domain`], [`EnvName`],
//! [`Ipv4Addr`]) and are written through serializers, never pasted into text.
//! [`config`] reads the `[publish]` section and builds the providers.

pub mod caddy_api;
pub mod config;
pub mod dns;
mod files;
pub mod gitops;
pub mod monitor;
pub mod traefik;

use crate::domain::domain_name::Domain;
use crate::domain::names::EnvName;
use async_trait::async_trait;
use std::net::Ipv4Addr;
use std::time::Duration;

/// An environment to route to: everything a router needs, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The environment's id in the store; names every object a router creates.
    pub env_id: i64,
    pub env_name: EnvName,
    pub team: String,
    pub profile: String,
    pub domain: Domain,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The backend port inside the container, from the profile.
    pub port: u16,
}

/// An environment to scrape: the node exporter on the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub env_id: i64,
    pub env_name: EnvName,
    pub team: String,
    pub profile: String,
    pub address: Ipv4Addr,
}

impl From<&Route> for Target {
    fn from(r: &Route) -> Self {
        Target {
            env_id: r.env_id,
            env_name: r.env_name.clone(),
            team: r.team.clone(),
            profile: r.profile.clone(),
            address: r.address,
        }
    }
}

/// The name of every object Slipway creates for an environment (Traefik
/// router and service, Caddy route `@id`, file names): `slipway-env-<id>`.
pub fn object_name(env_id: i64) -> String {
    format!("slipway-env-{env_id}")
}

/// An HTTP route from a domain to an environment.
#[async_trait]
pub trait Router: Send + Sync {
    /// Which router this is, for logs and progress ("traefik", "caddy-api", "caddy-git").
    fn kind(&self) -> &'static str;
    /// Publishes the route, replacing the environment's earlier one if any.
    async fn publish(&self, route: &Route) -> Result<(), PublishError>;
    /// Removes the environment's route; `Ok` if there is none.
    async fn unpublish(&self, env_id: i64, domain: &Domain) -> Result<(), PublishError>;
}

/// Where an environment's name points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsTarget {
    /// An A record: the guest's own address (unrouted), or the ingress's.
    Address(Ipv4Addr),
    /// A CNAME to the ingress's name (canonical: lower case, no final dot).
    Alias(String),
}

impl std::fmt::Display for DnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsTarget::Address(a) => write!(f, "{a}"),
            DnsTarget::Alias(name) => write!(f, "{name}"),
        }
    }
}

/// One record per exposed environment: an A record or a CNAME.
#[async_trait]
pub trait Dns: Send + Sync {
    /// Makes `target` the only A or CNAME record of `domain` (the other kind
    /// is removed in the same update).
    async fn upsert(&self, domain: &Domain, target: &DnsTarget) -> Result<(), PublishError>;
    /// Removes every A and CNAME record of `domain`; `Ok` if there is none.
    async fn delete(&self, domain: &Domain) -> Result<(), PublishError>;
}

/// A monitoring target per monitored environment.
#[async_trait]
pub trait Monitor: Send + Sync {
    /// Adds the target, replacing the environment's earlier one if any.
    async fn add_target(&self, target: &Target) -> Result<(), PublishError>;
    /// Removes the environment's target; `Ok` if there is none.
    async fn remove_target(&self, env_id: i64) -> Result<(), PublishError>;
}

/// The providers the configuration asks for; `None` where a role is off.
#[derive(Default)]
pub struct Publishers {
    pub router: Option<Box<dyn Router>>,
    pub dns: Option<Box<dyn Dns>>,
    pub monitor: Option<Box<dyn Monitor>>,
}

impl std::fmt::Debug for Publishers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publishers")
            .field("router", &self.router.as_ref().map(|r| r.kind()))
            .field("dns", &self.dns.is_some())
            .field("monitor", &self.monitor.is_some())
            .finish()
    }
}

/// Why a publishing call failed. Messages name the value and the system
/// involved and, where there is one, the fix; no secret is ever part of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A value was refused before anything was written.
    #[error("{0}")]
    Refused(String),
    /// The domain is already published by someone else (`owner` says who).
    #[error("{domain} is already published by {owner}; unpublish it there first or choose another domain")]
    Conflict { domain: String, owner: String },
    /// A local file could not be written, read or removed.
    #[error("cannot {action} {path}: {message}")]
    File {
        action: &'static str,
        path: String,
        message: String,
    },
    /// Caddy's admin API answered with an error.
    #[error("Caddy's admin API answered {status} to {method} {path}: {message}")]
    Caddy {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    /// A server could not be reached or the connection broke.
    #[error("could not reach {what}: {message}")]
    Network { what: String, message: String },
    /// A git command failed.
    #[error("`git {args}` failed ({status}): {stderr}")]
    Git {
        args: String,
        status: String,
        stderr: String,
    },
    /// The DNS server answered an update with an error.
    #[error("the DNS server {server} refused the update of {name}: {rcode}{hint}")]
    Dns {
        server: String,
        name: String,
        rcode: String,
        hint: String,
    },
    /// Something did not answer in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    /// The configuration cannot work (found when building or first using a provider).
    #[error("{0}")]
    Config(String),
}

impl PublishError {
    /// Worth trying again later: the other side may recover by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Network { .. } | PublishError::Timeout { .. } => true,
            PublishError::Caddy { status, .. } => *status >= 500,
            PublishError::Dns { rcode, .. } => rcode == "SERVFAIL",
            _ => false,
        }
    }

    pub(crate) fn file(action: &'static str, path: &std::path::Path, e: std::io::Error) -> Self {
        PublishError::File {
            action,
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
