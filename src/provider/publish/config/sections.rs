//! The per-section checks behind [`super::validate`]: each turns one raw
//! `[publish.*]` table into its validated form and reports every problem as
//! `publish.key: message` with a hint.

use super::*;
use crate::provider::publish::DnsTarget;

pub(super) struct Problems<'a> {
    pub(super) file: &'a str,
    pub(super) problems: &'a mut Vec<Problem>,
}

impl Problems<'_> {
    pub(super) fn push(&mut self, key: &str, message: impl std::fmt::Display) {
        self.problems
            .push(Problem::new(self.file, format!("{key}: {message}")));
    }

    fn duration(&mut self, key: &str, raw: &str) -> Duration {
        match humantime::parse_duration(raw) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.push(key, format!("'{raw}' must be longer than zero"));
                Duration::from_secs(1)
            }
            Err(e) => {
                self.push(key, format!("'{raw}': {e} (write e.g. 10s or 5m)"));
                Duration::from_secs(1)
            }
        }
    }

    /// Traefik and Caddy object names: letters, digits, '-', '_', '.', and
    /// for middlewares an `@provider` suffix.
    fn object_name(&mut self, key: &str, raw: &str, provider_suffix: bool) {
        let (name, provider) = match raw.split_once('@') {
            Some((n, p)) if provider_suffix => (n, Some(p)),
            _ => (raw, None),
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !ok(name) || provider.is_some_and(|p| !ok(p)) {
            self.push(
                key,
                format!(
                    "{} is not a name of letters, digits, '-', '_' and '.'{}",
                    crate::domain::names::shown(raw),
                    if provider_suffix {
                        " (with an optional @provider)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn zones(raw: &[String], p: &mut Problems) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for z in raw {
        match Domain::check_zone(z) {
            Ok(z) if !out.contains(&z) => out.push(z),
            Ok(z) => p.push("publish.zones", format!("'{z}' is listed twice")),
            Err(e) => p.push("publish.zones", e),
        }
    }
    out
}

pub(super) fn router(raw: &RawPublish, base: &Path, p: &mut Problems) -> Option<RouterConfig> {
    let chosen = raw.router.as_deref().unwrap_or("none");
    let sections = [
        ("traefik", raw.traefik.is_some()),
        ("caddy-api", raw.caddy_api.is_some()),
        ("caddy-git", raw.caddy_git.is_some()),
    ];
    for (name, present) in sections {
        if present && name != chosen {
            p.push(
                &format!("publish.{}", name.replace('-', "_")),
                format!("is configured but publish.router is '{chosen}'; set router = \"{name}\" or remove the section"),
            );
        }
    }
    let missing = |p: &mut Problems, name: &str| {
        p.push(
            "publish.router",
            format!(
                "is '{name}' but [publish.{}] is missing; add it",
                name.replace('-', "_")
            ),
        );
        None
    };
    match chosen {
        "none" => None,
        "traefik" => match &raw.traefik {
            Some(t) => Some(RouterConfig::Traefik(traefik(t, base, p))),
            None => missing(p, chosen),
        },
        "caddy-api" => match &raw.caddy_api {
            Some(c) => Some(RouterConfig::CaddyApi(caddy_api(c, p))),
            None => missing(p, chosen),
        },
        "caddy-git" => match &raw.caddy_git {
            Some(g) => Some(RouterConfig::CaddyGit(caddy_git(g, base, p))),
            None => missing(p, chosen),
        },
        other => {
            p.push(
                "publish.router",
                format!(
                    "{} is not \"traefik\", \"caddy-api\", \"caddy-git\" or \"none\"",
                    crate::domain::names::shown(other)
                ),
            );
            None
        }
    }
}

fn existing_dir(key: &str, raw: &str, base: &Path, p: &mut Problems) -> PathBuf {
    let dir = resolve(base, raw);
    if !dir.is_dir() {
        p.push(
            key,
            format!(
                "{} is not a directory; create it (and give Slipway write access)",
                dir.display()
            ),
        );
    }
    dir
}

fn traefik(t: &RawTraefik, base: &Path, p: &mut Problems) -> TraefikConfig {
    for e in &t.entry_points {
        p.object_name("publish.traefik.entry_points", e, false);
    }
    for m in &t.middlewares {
        p.object_name("publish.traefik.middlewares", m, true);
    }
    if let Some(r) = &t.cert_resolver {
        p.object_name("publish.traefik.cert_resolver", r, false);
    }
    let health_check = t.health_check.as_ref().map(|h| {
        let plain = h
            .path
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '`' | '\\'));
        if !h.path.starts_with('/') || !plain {
            p.push(
                "publish.traefik.health_check.path",
                format!(
                    "{} must be a URL path such as /healthz",
                    crate::domain::names::shown(&h.path)
                ),
            );
        }
        HealthCheck {
            path: h.path.clone(),
            interval: p.duration("publish.traefik.health_check.interval", &h.interval),
            timeout: h
                .timeout
                .as_deref()
                .map(|d| p.duration("publish.traefik.health_check.timeout", d)),
        }
    });
    TraefikConfig {
        dir: existing_dir("publish.traefik.dir", &t.dir, base, p),
        entry_points: t.entry_points.clone(),
        cert_resolver: t.cert_resolver.clone(),
        middlewares: t.middlewares.clone(),
        health_check,
    }
}

fn caddy_api(c: &RawCaddyApi, p: &mut Problems) -> CaddyApiConfig {
    match reqwest::Url::parse(&c.admin_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" => {}
        _ => p.push(
            "publish.caddy_api.admin_url",
            format!(
                "'{}' is not a base URL such as http://127.0.0.1:2019",
                c.admin_url
            ),
        ),
    }
    p.object_name("publish.caddy_api.server", &c.server, false);
    CaddyApiConfig {
        admin_url: c.admin_url.clone(),
        server: c.server.clone(),
        timeout: p.duration("publish.caddy_api.timeout", &c.timeout),
    }
}

/// A directory inside the repository: relative, with plain components only,
/// and not git's own.
pub fn check_repo_dir(raw: &str) -> Result<PathBuf, String> {
    let path = Path::new(raw);
    let plain = !raw.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "{} must be a relative directory inside the repository, without '..' (e.g. services/slipway)",
            crate::domain::names::shown(raw)
        ));
    }
    if path.components().next() == Some(Component::Normal(".git".as_ref())) {
        return Err("must not be inside .git".into());
    }
    Ok(path.to_path_buf())
}

fn caddy_git(g: &RawCaddyGit, base: &Path, p: &mut Problems) -> GitOpsConfig {
    if g.repo.trim().is_empty() || g.repo.starts_with('-') {
        p.push(
            "publish.caddy_git.repo",
            "give the repository's URL or path",
        );
    }
    let branch_ok = !g.branch.is_empty()
        && !g.branch.starts_with(['-', '/', '.'])
        && !g.branch.ends_with(['/', '.'])
        && !g.branch.contains("..")
        && !g.branch.ends_with(".lock")
        && g.branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !branch_ok {
        p.push(
            "publish.caddy_git.branch",
            format!("'{}' is not a plain branch name such as main", g.branch),
        );
    }
    let dir = check_repo_dir(&g.dir).unwrap_or_else(|e| {
        p.push("publish.caddy_git.dir", e);
        PathBuf::from("invalid")
    });
    for (key, value) in [
        ("author_name", &g.author_name),
        ("author_email", &g.author_email),
        ("service_type", &g.service_type),
    ] {
        if value.is_empty()
            || value
                .chars()
                .any(|c| c.is_control() || c == '<' || c == '>')
        {
            p.push(
                &format!("publish.caddy_git.{key}"),
                "must be non-empty, on one line, without '<' or '>'",
            );
        }
    }
    if g.push_attempts == 0 {
        p.push("publish.caddy_git.push_attempts", "must be at least 1");
    }
    GitOpsConfig {
        repo: g.repo.clone(),
        branch: g.branch.clone(),
        dir,
        clone_dir: resolve(base, &g.clone_dir),
        author_name: g.author_name.clone(),
        author_email: g.author_email.clone(),
        service_type: g.service_type.clone(),
        headers: g.headers,
        auth: g.auth,
        push_attempts: g.push_attempts.max(1),
        timeout: p.duration("publish.caddy_git.timeout", &g.timeout),
    }
}

/// The base64 secret from a plain file or from a key file as `tsig-keygen`
/// writes it (`secret "…";`).
fn secret_from_text(text: &str) -> String {
    match text.split_once("secret \"") {
        Some((_, rest)) => rest.split('"').next().unwrap_or("").to_string(),
        None => text.trim().to_string(),
    }
}

pub(super) fn dns(
    d: &RawDns,
    zones: &[String],
    base: &Path,
    p: &mut Problems,
) -> Option<DnsConfig> {
    let before = p.problems.len();
    let server = d.server.parse::<SocketAddr>().map_err(|_| {
        p.push(
            "publish.dns.server",
            format!("'{}' is not IP:port, e.g. 10.0.0.53:53", d.server),
        )
    });
    let zone = Domain::check_zone(&d.zone).unwrap_or_else(|e| {
        p.push("publish.dns.zone", e);
        String::new()
    });
    for z in zones {
        if !zone.is_empty() && z != &zone && !z.ends_with(&format!(".{zone}")) {
            p.push(
                "publish.zones",
                format!("'{z}' is not inside publish.dns.zone '{zone}'; DNS can only update names in its zone"),
            );
        }
    }
    if let Err(e) = Domain::check_zone(&d.key_name) {
        p.push("publish.dns.key_name", e);
    }
    if !matches!(
        d.key_algorithm.as_str(),
        "hmac-sha256" | "hmac-sha384" | "hmac-sha512"
    ) {
        p.push(
            "publish.dns.key_algorithm",
            format!(
                "'{}' is not hmac-sha256, hmac-sha384 or hmac-sha512",
                d.key_algorithm
            ),
        );
    }
    let secret = match (&d.key_secret_env, &d.key_secret_file) {
        (Some(var), None) => std::env::var(var).map_err(|_| {
            format!("publish.dns.key_secret_env: the environment variable {var} is not set; export it with the TSIG key's base64 secret")
        }),
        (None, Some(f)) => std::fs::read_to_string(resolve(base, f))
            .map(|t| secret_from_text(&t))
            .map_err(|e| format!("publish.dns.key_secret_file: cannot read {f}: {e}")),
        (Some(_), Some(_)) => Err("publish.dns: give key_secret_env or key_secret_file, not both".into()),
        (None, None) => Err("publish.dns: the TSIG secret is missing; set key_secret_env (an environment variable's name) or key_secret_file (e.g. the file tsig-keygen wrote)".into()),
    };
    let secret = match secret {
        Ok(s)
            if base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .is_ok_and(|b| !b.is_empty()) =>
        {
            SecretString::from(s)
        }
        Ok(_) => {
            p.problems.push(Problem::new(
                p.file,
                "publish.dns: the TSIG secret is not base64 (as tsig-keygen writes it)".into(),
            ));
            SecretString::from(String::new())
        }
        Err(msg) => {
            p.problems.push(Problem::new(p.file, msg));
            SecretString::from(String::new())
        }
    };
    let ttl = p.duration("publish.dns.ttl", &d.ttl).as_secs();
    let ttl = u32::try_from(ttl)
        .ok()
        .filter(|t| *t <= i32::MAX as u32)
        .unwrap_or_else(|| {
            p.push("publish.dns.ttl", "is longer than DNS allows");
            300
        });
    let timeout = p.duration("publish.dns.timeout", &d.timeout);
    let ingress = d.ingress.as_deref().and_then(|raw| {
        ingress(raw)
            .map_err(|e| p.push("publish.dns.ingress", e))
            .ok()
    });
    match server {
        Ok(server) if p.problems.len() == before => Some(DnsConfig {
            server,
            zone,
            key_name: d.key_name.trim_end_matches('.').to_string(),
            algorithm: d.key_algorithm.clone(),
            secret,
            ttl,
            timeout,
            ingress,
        }),
        _ => None,
    }
}

/// `publish.dns.ingress`: an IPv4 address, or a DNS name for a CNAME.
fn ingress(raw: &str) -> Result<DnsTarget, String> {
    let raw = raw.trim();
    if let Ok(address) = raw.parse::<std::net::Ipv4Addr>() {
        return Ok(DnsTarget::Address(address));
    }
    if raw.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "'{raw}' is an IPv6 address; Slipway writes A records, so give the proxy's IPv4 \
             address or its DNS name"
        ));
    }
    Domain::check_zone(&raw.to_ascii_lowercase())
        .map(DnsTarget::Alias)
        .map_err(|e| {
            format!("'{raw}' is neither an IPv4 address nor a DNS name ({e}); give the Traefik/Caddy host's address or name")
        })
}

pub(super) fn monitor(m: &RawMonitor, base: &Path, p: &mut Problems) -> MonitorConfig {
    if m.exporter_port == 0 {
        p.push(
            "publish.monitor.exporter_port",
            "must not be 0 (the node exporter listens on 9100 by default)",
        );
    }
    MonitorConfig {
        file_sd_dir: existing_dir("publish.monitor.file_sd_dir", &m.file_sd_dir, base, p),
        exporter_port: m.exporter_port,
    }
}
