//! Traefik's file provider: one dynamic configuration file per environment,
//! `slipway-env-<id>.toml` in the watched directory, holding exactly one
//! router (a `Host()` rule for the domain, the configured entry points,
//! middlewares and certificate resolver) and one load-balancer service to the
//! container. The file is serialized from typed structs and replaced
//! atomically; removing it removes the route.

use super::config::TraefikConfig;
use super::{files, object_name, PublishError, Route, Router};
use crate::domain::domain_name::Domain;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Publishes routes as Traefik dynamic configuration files.
#[derive(Debug, Clone)]
pub struct Traefik {
    cfg: TraefikConfig,
}

impl Traefik {
    pub fn new(cfg: &TraefikConfig) -> Traefik {
        Traefik { cfg: cfg.clone() }
    }

    /// The file an environment's route lives in.
    pub fn file_name(env_id: i64) -> String {
        format!("{}.toml", object_name(env_id))
    }

    /// The file's whole content for `route`.
    pub fn render(&self, route: &Route) -> Result<String, PublishError> {
        let name = object_name(route.env_id);
        let router = HttpRouter {
            // Domain allows only [a-z0-9.-], so it cannot close the backticks.
            rule: format!("Host(`{}`)", route.domain),
            entry_points: self.cfg.entry_points.clone(),
            middlewares: self.cfg.middlewares.clone(),
            service: name.clone(),
            tls: self
                .cfg
                .cert_resolver
                .clone()
                .map(|r| Tls { cert_resolver: r }),
        };
        let service = HttpService {
            load_balancer: LoadBalancer {
                servers: vec![Server {
                    url: format!("http://{}:{}", route.address, route.port),
                }],
                health_check: self.cfg.health_check.as_ref().map(|h| HealthCheck {
                    path: h.path.clone(),
                    interval: go_duration(h.interval),
                    timeout: h.timeout.map(go_duration),
                }),
            },
        };
        let dynamic = Dynamic {
            http: Http {
                routers: BTreeMap::from([(name.clone(), router)]),
                services: BTreeMap::from([(name, service)]),
            },
        };
        let body = toml::to_string(&dynamic).map_err(|e| {
            PublishError::Config(format!("cannot serialize the Traefik configuration: {e}"))
        })?;
        Ok(format!(
            "# Written by Slipway for environment {} ({}, team {}); removed on teardown. Do not edit.\n{body}",
            route.env_id,
            route.env_name,
            toml_comment(&route.team),
        ))
    }
}

#[async_trait]
impl Router for Traefik {
    fn kind(&self) -> &'static str {
        "traefik"
    }

    async fn publish(&self, route: &Route) -> Result<(), PublishError> {
        let text = self.render(route)?;
        files::write_atomic(
            self.cfg.dir.clone(),
            Self::file_name(route.env_id),
            text.into_bytes(),
        )
        .await
    }

    async fn unpublish(&self, env_id: i64, _domain: &Domain) -> Result<(), PublishError> {
        files::remove(self.cfg.dir.clone(), Self::file_name(env_id)).await
    }
}

/// A team name is configuration, not user input, but a comment must still
/// stay on its line.
fn toml_comment(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A duration as Go's `time.ParseDuration` reads it ("10s", "1500ms").
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[derive(Serialize)]
struct Dynamic {
    http: Http,
}

#[derive(Serialize)]
struct Http {
    routers: BTreeMap<String, HttpRouter>,
    services: BTreeMap<String, HttpService>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpRouter {
    rule: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry_points: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    middlewares: Vec<String>,
    service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tls {
    cert_resolver: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpService {
    load_balancer: LoadBalancer,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancer {
    servers: Vec<Server>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
}

#[derive(Serialize)]
struct Server {
    url: String,
}

#[derive(Serialize)]
struct HealthCheck {
    path: String,
    interval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_go_reads_them() {
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn a_comment_cannot_be_broken_onto_a_new_line() {
        assert_eq!(toml_comment("web\n[http]"), "web[http]");
    }
}
