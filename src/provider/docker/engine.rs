//! [`Containers`] over the Docker Engine API with bollard: a unix socket, or
//! TCP with TLS (client certificate; rustls with ring). The API version is
//! negotiated on first use, because hosts run older engines (Debian's 20.10
//! speaks 1.41) than bollard's default.
//!
//! TLS failures are explained, not passed through: bollard reports them as
//! "client error (Connect)", so [`Engine::error`] finds rustls's error in the
//! chain and says which of ca_file, cert_file and key_file to check (by path:
//! file contents are never read into a message).

use super::config::{DockerConfig, HostConfig};
use super::registry::{self, RegistryAuth};
use super::tls_transport;
use super::{AppContainer, ContainerInfo, Containers, DockerError, Networking};
use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig as DockerHostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How to make the client; made (and its version negotiated) on first use,
/// so a host that is down at start does not stop Slipway from starting.
enum Connect {
    Unix(String),
    Tls {
        url: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

pub(super) struct Engine {
    /// For messages: the host's name and URL.
    host: String,
    connect: Connect,
    timeout: Duration,
    pull_timeout: Duration,
    /// Credentials for private registries, sent only with a pull from that registry.
    registries: Vec<RegistryAuth>,
    /// Registries whose credentials this host may not get (a team's docker-host
    /// environment, or a host left out of a registry's `hosts`).
    withheld: Vec<String>,
    docker: OnceCell<Docker>,
}

impl Engine {
    pub(super) fn declared(
        h: &HostConfig,
        cfg: &DockerConfig,
    ) -> Result<Arc<dyn Containers>, DockerError> {
        let connect = match (&h.url, &h.tls) {
            (url, _) if url.starts_with("unix://") => Connect::Unix(url.clone()),
            (url, Some(tls)) => Connect::Tls {
                url: url.clone(),
                ca: tls.ca.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            },
            (url, None) => {
                return Err(DockerError::Config(format!(
                    "docker.hosts.{}: {url} needs TLS (ca_file, cert_file, key_file)",
                    h.name
                )))
            }
        };
        Ok(Arc::new(Engine {
            host: format!("{} ({})", h.name, h.url),
            connect,
            timeout: cfg.timeout,
            pull_timeout: cfg.pull_timeout,
            registries: cfg
                .registries
                .iter()
                .filter(|r| r.allowed_on(&h.name))
                .cloned()
                .collect(),
            withheld: cfg
                .registries
                .iter()
                .filter(|r| !r.allowed_on(&h.name))
                .map(|r| r.server.clone())
                .collect(),
            docker: OnceCell::new(),
        }))
    }

    pub(super) fn env_host(
        url: &str,
        cfg: &DockerConfig,
    ) -> Result<Arc<dyn Containers>, DockerError> {
        let tls = cfg.env_tls.as_ref().ok_or_else(|| {
            DockerError::Config(
                "docker.env_tls is not configured: a docker-host environment's dockerd is reached over TCP with TLS; \
                 give docker.env_tls.ca_file, cert_file and key_file"
                    .into(),
            )
        })?;
        Ok(Arc::new(Engine {
            host: url.to_string(),
            connect: Connect::Tls {
                url: url.to_string(),
                ca: tls.ca.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            },
            timeout: cfg.timeout,
            pull_timeout: cfg.pull_timeout,
            // The team is root on its docker-host: operator credentials stay here.
            registries: Vec::new(),
            withheld: cfg.registries.iter().map(|r| r.server.clone()).collect(),
            docker: OnceCell::new(),
        }))
    }

    async fn docker(&self) -> Result<&Docker, DockerError> {
        self.docker
            .get_or_try_init(|| async {
                let secs = self.timeout.as_secs().max(1);
                let client = match &self.connect {
                    Connect::Unix(path) => {
                        Docker::connect_with_unix(path, secs, bollard::API_DEFAULT_VERSION)
                    }
                    Connect::Tls { url, ca, cert, key } => {
                        let config = tls_transport::client_config(ca, cert, key).map_err(|p| {
                            DockerError::Tls {
                                host: self.host.clone(),
                                message: format!("{} {}: {}", p.file, p.path, p.what),
                            }
                        })?;
                        tls_transport::connect(url, config, secs)
                    }
                }
                .map_err(|e| self.error(e))?;
                client.negotiate_version().await.map_err(|e| self.error(e))
            })
            .await
    }

    /// What to check when the TLS handshake failed with `e`.
    fn explain_tls(&self, e: &rustls::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C};
        let (ca, cert, key) = match &self.connect {
            Connect::Tls { ca, cert, key, .. } => (ca.display(), cert.display(), key.display()),
            Connect::Unix(_) => return format!("TLS: {e}"),
        };
        match e {
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
                "dockerd's certificate is not issued for this address ({e}): its subjectAltName must name the host in url"
            ),
            rustls::Error::InvalidCertificate(
                C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
            ) => format!("dockerd's certificate is expired or not yet valid ({e}): renew it"),
            rustls::Error::InvalidCertificate(_) => format!(
                "Slipway does not trust the certificate dockerd presented ({e}): check that ca_file {ca} holds the CA that signed dockerd's --tlscert"
            ),
            rustls::Error::AlertReceived(
                A::BadCertificate
                | A::CertificateRequired
                | A::UnknownCA
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::AccessDenied
                | A::DecryptError
                | A::HandshakeFailure,
            ) => format!(
                "dockerd refused Slipway's client certificate ({e}): check that cert_file {cert} is signed by the CA dockerd trusts (its --tlscacert), is still valid, and that key_file {key} is its key"
            ),
            other => format!("the TLS handshake failed ({other}): check ca_file {ca}, cert_file {cert} and key_file {key}"),
        }
    }

    fn error(&self, e: bollard::errors::Error) -> DockerError {
        use bollard::errors::Error as E;
        // bollard's own message is "client error (Connect)": the cause is further down.
        let mut causes = Vec::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = next {
            if let Some(tls) = rustls_error(err) {
                return DockerError::Tls {
                    host: self.host.clone(),
                    message: self.explain_tls(tls),
                };
            }
            let text = err.to_string();
            if !causes.iter().any(|c: &String| c.contains(&text)) {
                causes.push(text);
            }
            next = err.source();
        }
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Api {
                host: self.host.clone(),
                status: status_code,
                message,
            },
            E::SocketNotFoundError(path) => DockerError::Network {
                host: self.host.clone(),
                message: format!("no socket at {path}; is dockerd running?"),
            },
            _ => DockerError::Network {
                host: self.host.clone(),
                message: causes.join(": "),
            },
        }
    }

    fn not_found(e: &bollard::errors::Error) -> bool {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    }
}

/// The rustls error in `err`, which may be wrapped in io::Errors (hyper-rustls
/// wraps tokio-rustls's): io::Error's `source` skips what it wraps.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut e = err;
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

fn body(spec: &AppContainer) -> ContainerCreateBody {
    let mut env = spec.env.clone();
    let (network_mode, port_bindings, exposed) = match &spec.networking {
        Networking::Host { port } => {
            env.push(format!("PORT={port}"));
            ("host".to_string(), None, None)
        }
        Networking::Bridge { port, bind } => {
            env.push(format!("PORT={port}"));
            let key = format!("{port}/tcp");
            let binding = PortBinding {
                host_ip: Some(bind.to_string()),
                // Empty: Docker picks a free port; the worker reads it back.
                host_port: Some(String::new()),
            };
            (
                "bridge".to_string(),
                Some(HashMap::from([(key.clone(), Some(vec![binding]))])),
                Some(vec![key]),
            )
        }
    };
    let devices = spec
        .devices
        .iter()
        .map(|d| DeviceMapping {
            path_on_host: Some(d.clone()),
            path_in_container: Some(d.clone()),
            cgroup_permissions: Some("rwm".into()),
        })
        .collect::<Vec<_>>();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(env),
        labels: Some(spec.labels.clone().into_iter().collect()),
        exposed_ports: exposed,
        host_config: Some(DockerHostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            nano_cpus: Some(i64::from(spec.cores) * 1_000_000_000),
            memory: Some(i64::from(spec.memory_mb) * 1024 * 1024),
            // No swap beyond the memory limit.
            memory_swap: Some(i64::from(spec.memory_mb) * 1024 * 1024),
            network_mode: Some(network_mode),
            port_bindings,
            // A tiny init as PID 1, so the app gets SIGTERM and zombies are reaped.
            init: Some(true),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            privileged: Some(spec.privileged),
            devices: (!devices.is_empty()).then_some(devices),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn info(r: bollard::models::ContainerInspectResponse) -> ContainerInfo {
    let state = r.state.unwrap_or_default();
    let config = r.config.unwrap_or_default();
    let host = r.host_config.unwrap_or_default();
    let published_port = r.network_settings.and_then(|n| n.ports).and_then(|ports| {
        ports
            .into_values()
            .flatten()
            .flatten()
            .find_map(|b| b.host_port.and_then(|p| p.parse().ok()))
    });
    ContainerInfo {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        exit_code: state.exit_code,
        started_at: state.started_at,
        labels: config.labels.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        nano_cpus: host.nano_cpus.unwrap_or_default(),
        memory: host.memory.unwrap_or_default(),
        restart_policy: host
            .restart_policy
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .unwrap_or_default(),
        network_mode: host.network_mode.unwrap_or_default(),
        published_port,
    }
}

#[async_trait]
impl Containers for Engine {
    async fn image_present(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker().await?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if Self::not_found(&e) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn pull(&self, image: &str) -> Result<(), DockerError> {
        let docker = self.docker().await?;
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let auth = registry::for_image(&self.registries, image);
        let credentials = auth.map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.expose_secret().to_string()),
            serveraddress: Some(a.server.clone()),
            ..Default::default()
        });
        let pull = async {
            let mut stream = docker.create_image(Some(options), None, credentials);
            while let Some(item) = stream.next().await {
                let failed = match item {
                    Ok(i) => i.error_detail.map(|d| (500, d.message.unwrap_or_default())),
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code,
                        message,
                    }) => Some((status_code, message)),
                    Err(e) => return Err(self.error(e)),
                };
                if let Some((status, message)) = failed {
                    return Err(DockerError::Api {
                        host: self.host.clone(),
                        status,
                        message: pull_hint(image, &message, auth, &self.withheld, &self.host),
                    });
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.pull_timeout, pull)
            .await
            .map_err(|_| DockerError::Network {
                host: self.host.clone(),
                message: format!(
                    "pulling {image} took longer than {:?} (docker.pull_timeout)",
                    self.pull_timeout
                ),
            })?
    }

    async fn create(&self, spec: &AppContainer) -> Result<String, DockerError> {
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .docker()
            .await?
            .create_container(Some(options), body(spec))
            .await
            .map_err(|e| self.error(e))?;
        Ok(created.id)
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, DockerError> {
        match self
            .docker()
            .await?
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(r) => Ok(Some(info(r))),
            Err(e) if Self::not_found(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn start(&self, name: &str) -> Result<(), DockerError> {
        match self
            .docker()
            .await?
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            // 304: already started.
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn restart(&self, name: &str, timeout: Duration) -> Result<(), DockerError> {
        let options = RestartContainerOptions {
            t: Some(timeout.as_secs() as i32),
            ..Default::default()
        };
        self.docker()
            .await?
            .restart_container(name, Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    async fn stop(&self, name: &str, timeout: Duration) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(timeout.as_secs() as i32),
            ..Default::default()
        };
        match self
            .docker()
            .await?
            .stop_container(name, Some(options))
            .await
        {
            // 304: already stopped.
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn remove(&self, name: &str, timeout: Duration) -> Result<(), DockerError> {
        let docker = self.docker().await?;
        let stop = StopContainerOptions {
            t: Some(timeout.as_secs() as i32),
            ..Default::default()
        };
        match docker.stop_container(name, Some(stop)).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => {}
            Err(e) => return Err(self.error(e)),
        }
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if Self::not_found(&e) => Ok(()),
            // "removal of container … is already in progress"
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn list(&self, labels: &[(&str, String)]) -> Result<Vec<ContainerInfo>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let docker = self.docker().await?;
        let found = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for c in found {
            if let Some(id) = c.id {
                out.extend(self.inspect(&id).await?);
            }
        }
        Ok(out)
    }

    async fn logs(&self, name: &str, lines: u32) -> Result<Vec<String>, DockerError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let docker = self.docker().await?;
        let mut stream = docker.logs(name, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&chunk.map_err(|e| self.error(e))?.to_string());
        }
        Ok(text.lines().map(str::to_string).collect())
    }
}

/// Docker's message for a failed pull, with what to do when the registry
/// refused access: configure its credentials, or check the configured ones.
fn pull_hint(
    image: &str,
    message: &str,
    auth: Option<&RegistryAuth>,
    withheld: &[String],
    host: &str,
) -> String {
    let server = registry::registry_of(image);
    if withheld.contains(&server) {
        return format!(
            "{message} — Slipway's credentials for {server} are not given to {host}: a team's \
             docker-host environment (the team is root there) or a host left out of the registry's \
             hosts in [[docker.registries]]. Use a public image here, or run the app on a declared Docker host"
        );
    }
    let lower = message.to_ascii_lowercase();
    let refused = [
        "unauthorized",
        "denied",
        "authentication required",
        "no basic auth",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if !refused {
        return message.to_string();
    }
    match auth {
        Some(a) => format!(
            "{message} — the registry {server} refused the credentials of [[docker.registries]] \
             server = \"{server}\" (username {}): check its username and password",
            a.username
        ),
        None => format!(
            "{message} — if {image} is private, give Slipway credentials for {server} in \
             [[docker.registries]] (server = \"{server}\", username, password_file)"
        ),
    }
}
