//! Credentials for private registries, `[[docker.registries]]`: given to
//! dockerd with a pull of an image from that registry, and to no other.
//!
//! ```toml
//! [[docker.registries]]
//! server = "ghcr.io"                 # as the image reference names it, with any :port
//! username = "acme-bot"
//! password_file = "secrets/ghcr"     # or password_env = "GHCR_TOKEN"
//! hosts = ["docker1"]                # optional: only these [[docker.hosts]]
//! ```
//!
//! The credentials go to the declared Docker hosts the operator runs (all of
//! them, or those in `hosts`), and never to a team's docker-host environment:
//! the team is root there and could read them off its own dockerd.
//!
//! The password is held as a [`SecretString`]: it never prints, and no error
//! or log line carries it.

use crate::catalog::Problem;
use crate::config::secret_source;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub server: String,
    pub username: String,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    /// The `[[docker.hosts]]` these credentials may go to (default: every one).
    pub hosts: Option<Vec<String>>,
}

/// Credentials for one registry.
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    /// `host[:port]`, as image references name it (`docker.io` for Docker Hub).
    pub server: String,
    pub username: String,
    pub password: SecretString,
    /// The declared hosts these may go to; None: every declared host.
    pub hosts: Option<Vec<String>>,
}

impl RegistryAuth {
    /// Whether these credentials may go to the declared Docker host `host`.
    pub fn allowed_on(&self, host: &str) -> bool {
        self.hosts
            .as_ref()
            .is_none_or(|h| h.iter().any(|n| n == host))
    }
}

/// Docker Hub's other names are `docker.io` in an image reference.
fn canonical(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    match s.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "index.docker.io/v1" => "docker.io".into(),
        _ => s,
    }
}

pub fn validate(
    raw: &[RawRegistry],
    base: &Path,
    f: &str,
    problems: &mut Vec<Problem>,
) -> Vec<RegistryAuth> {
    let mut out: Vec<RegistryAuth> = Vec::new();
    for r in raw {
        let server = canonical(&r.server);
        let key = format!("docker.registries.{server}");
        let host_ok = !server.is_empty()
            && !server.contains('/')
            && server
                .split_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_ok());
        if !host_ok {
            problems.push(Problem::new(
                f,
                format!(
                    "docker.registries: server '{}' is not a registry host; write e.g. ghcr.io or registry.example:5000",
                    r.server
                ),
            ));
            continue;
        }
        if out.iter().any(|o| o.server == server) {
            problems.push(Problem::new(
                f,
                format!("{key}: declared twice; give each registry once"),
            ));
            continue;
        }
        if r.username.is_empty() {
            problems.push(Problem::new(f, format!("{key}.username is empty")));
        }
        let password = match secret_source(
            &key,
            "password",
            r.password_env.as_deref(),
            r.password_file.as_deref(),
            base,
        ) {
            Ok(Some(p)) if !p.is_empty() => SecretString::from(p),
            Ok(_) => {
                problems.push(Problem::new(
                    f,
                    format!("{key}: the password is missing or empty; set password_file or password_env"),
                ));
                continue;
            }
            Err(e) => {
                problems.push(Problem::new(f, e));
                continue;
            }
        };
        out.push(RegistryAuth {
            server,
            username: r.username.clone(),
            password,
            hosts: r.hosts.clone(),
        });
    }
    out
}

/// The credentials for the registry `image` is pulled from, if any are configured.
pub fn for_image<'a>(registries: &'a [RegistryAuth], image: &str) -> Option<&'a RegistryAuth> {
    let server = registry_of(image);
    registries.iter().find(|r| r.server == server)
}

/// The registry an image reference pulls from: its first path component when
/// that is a host (has a '.' or a ':', or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            canonical(first)
        }
        _ => "docker.io".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_registry_of_an_image_is_its_host_or_docker_hub() {
        assert_eq!(registry_of("nginx:1.27"), "docker.io");
        assert_eq!(registry_of("acme/shop:v2"), "docker.io");
        assert_eq!(registry_of("ghcr.io/acme/shop:v2"), "ghcr.io");
        assert_eq!(
            registry_of("registry.example:5000/team/app"),
            "registry.example:5000"
        );
        assert_eq!(registry_of("localhost/app@sha256:abc"), "localhost");
        assert_eq!(registry_of("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000");
    }

    fn check(text: &str) -> (Vec<RegistryAuth>, Vec<Problem>) {
        #[derive(Deserialize)]
        struct T {
            registries: Vec<RawRegistry>,
        }
        let t: T = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let out = validate(
            &t.registries,
            Path::new("/nowhere"),
            "s.toml",
            &mut problems,
        );
        (out, problems)
    }

    #[test]
    fn credentials_match_only_their_registry() {
        std::env::set_var("SLIPWAY_TEST_REGISTRY_PW", "s3cr3t-pw");
        let (regs, problems) = check(
            "[[registries]]\nserver = \"https://GHCR.io/\"\nusername = \"bot\"\npassword_env = \"SLIPWAY_TEST_REGISTRY_PW\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let r = for_image(&regs, "ghcr.io/acme/shop:v2").unwrap();
        assert_eq!(r.username, "bot");
        assert_eq!(r.password.expose_secret(), "s3cr3t-pw");
        assert!(for_image(&regs, "acme/shop:v2").is_none());
        assert!(for_image(&regs, "ghcr.io.evil.example/acme/shop").is_none());
        assert!(!format!("{r:?}").contains("s3cr3t-pw"));
    }

    #[test]
    fn a_missing_password_or_a_url_with_a_path_is_a_problem() {
        let (regs, problems) = check(
            "[[registries]]\nserver = \"ghcr.io\"\nusername = \"bot\"\n\
             [[registries]]\nserver = \"registry.example/v2\"\nusername = \"bot\"\npassword_env = \"X\"\n",
        );
        assert!(regs.is_empty());
        let text = format!("{problems:?}");
        assert!(text.contains("password is missing"), "{text}");
        assert!(text.contains("is not a registry host"), "{text}");
    }
}
