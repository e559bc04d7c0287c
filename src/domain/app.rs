//! Apps: containers on a Docker host, deployed from an image reference. Pure:
//! the parsed image reference, environment variables with the secret-looking
//! ones redacted wherever they are shown, the safety check of what a container
//! may reach on its host, and the steps of an app's jobs.
//!
//! An app is stored as an environment of kind `app` (so it holds quota, waits
//! for approval, and runs jobs exactly as environments do); what only an app
//! has lives beside it in the `apps` table.

use super::lifecycle::{JobKind, Step};
use std::collections::BTreeMap;
use std::fmt;

/// The `kind` of an environment row that is an app.
pub const APP_KIND: &str = "app";

/// The profile name an app's environment row carries (apps have no profile).
pub const APP_PROFILE: &str = "app";

/// Why a value was refused, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// A Docker image reference: `[registry[:port]/]path[:tag][@sha256:digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef(String);

impl ImageRef {
    /// Accepts what `docker pull` accepts, in Docker's reference grammar:
    /// lower-case path components separated by `/`, an optional tag of
    /// `[A-Za-z0-9_.-]` (at most 128), an optional sha256 digest.
    pub fn parse(raw: &str) -> Result<ImageRef, Invalid> {
        let bad = |why: &str| {
            Invalid(format!(
                "image: {} is not an image reference ({why}); write e.g. nginx:1.27 or registry.example:5000/team/app:v2",
                super::names::shown(raw)
            ))
        };
        if raw.is_empty() || raw.len() > 255 {
            return Err(bad("it must be 1-255 characters"));
        }
        let (name_tag, digest) = match raw.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (raw, None),
        };
        if let Some(d) = digest {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("a digest starts with sha256:"))?;
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("a sha256 digest has 64 hex digits"));
            }
        }
        // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(bad("a tag is letters, digits, '_', '.' or '-'"));
            }
        }
        let mut parts = name.split('/').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            // The first of several components may be a registry host[:port].
            let registry = first
                && parts.peek().is_some()
                && (part.contains('.') || part.contains(':') || part == "localhost");
            first = false;
            let ok = if registry {
                let (host, port) = part.split_once(':').unwrap_or((part, "0"));
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                    && port.parse::<u16>().is_ok()
            } else {
                component(part)
            };
            if !ok {
                return Err(bad(
                    "path components are lower-case letters and digits, separated by '.', '_', '__' or '-'",
                ));
            }
        }
        Ok(ImageRef(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reference with `:latest` made explicit, as Docker stores it.
    pub fn normalized(&self) -> String {
        let last_slash = self.0.rfind('/').map(|i| i + 1).unwrap_or(0);
        if self.0.contains('@') || self.0[last_slash..].contains(':') {
            self.0.clone()
        } else {
            format!("{}:latest", self.0)
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn component(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if part.is_empty() || !part.starts_with(alnum) || !part.ends_with(alnum) {
        return false;
    }
    let mut run = 0;
    for c in part.chars() {
        if alnum(c) {
            run = 0;
        } else if matches!(c, '.' | '_' | '-') {
            run += 1;
            if run > 2 {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

/// Environment variables of an app, by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvVars(pub BTreeMap<String, String>);

/// Keys Slipway sets itself; a user may not override them.
pub const RESERVED_KEYS: &[&str] = &["PORT"];

impl EnvVars {
    /// Parses `KEY=VALUE` items. Keys are `[A-Za-z_][A-Za-z0-9_]*`; a key may
    /// appear once; values may be empty but hold no control characters.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<EnvVars, Invalid> {
        let mut out = BTreeMap::new();
        for item in items {
            let Some((key, value)) = item.split_once('=') else {
                return Err(Invalid(format!(
                    "env: {} is not KEY=VALUE",
                    super::names::shown(&redact_item(item))
                )));
            };
            let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.len() <= 128
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(Invalid(format!(
                    "env: {} is not a variable name (letters, digits and '_', not starting with a digit)",
                    super::names::shown(key)
                )));
            }
            if RESERVED_KEYS.contains(&key) {
                return Err(Invalid(format!(
                    "env: {key} is set by Slipway (the port the app listens on); leave it out"
                )));
            }
            if value.chars().any(char::is_control) || value.len() > 4096 {
                return Err(Invalid(format!(
                    "env: the value of {key} has control characters or is longer than 4096 bytes"
                )));
            }
            if out.insert(key.to_string(), value.to_string()).is_some() {
                return Err(Invalid(format!("env: {key} is given twice; give it once")));
            }
        }
        Ok(EnvVars(out))
    }

    /// `KEY=VALUE` strings for the Docker API (the only place values leave Slipway).
    pub fn to_docker(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// `KEY=VALUE, SECRET=•••` for replies and logs: secret-looking values never show.
    pub fn shown(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={}", shown_value(k, v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The redaction mark.
pub const REDACTED: &str = "•••";

/// A value as it may be shown: redacted if its key or the value itself looks secret.
pub fn shown_value(key: &str, value: &str) -> String {
    if is_secret(key, value) {
        REDACTED.into()
    } else {
        value.to_string()
    }
}

/// Whether a variable looks like it holds a secret: its key names one
/// (PASSWORD, SECRET, TOKEN, KEY, CREDENTIAL, …), or the value looks like a
/// credential (a known token prefix, a URL with a password, or a long random string).
pub fn is_secret(key: &str, value: &str) -> bool {
    let k = key.to_ascii_uppercase();
    const KEY_WORDS: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "PASS",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
        "DSN",
        "COOKIE",
        "SESSION",
    ];
    if KEY_WORDS.iter().any(|w| k.contains(w)) {
        return true;
    }
    const PREFIXES: &[&str] = &[
        "ghp_",
        "gho_",
        "ghs_",
        "github_pat_",
        "glpat-",
        "sk-",
        "xox",
        "AKIA",
        "eyJ",
        "-----BEGIN",
    ];
    if PREFIXES.iter().any(|p| value.starts_with(p)) {
        return true;
    }
    // scheme://user:password@host
    if let Some((_, rest)) = value.split_once("://") {
        if let Some((userinfo, _)) = rest.split_once('@') {
            if userinfo.contains(':') {
                return true;
            }
        }
    }
    looks_random(value)
}

/// A long run of letters and digits mixed, with no spaces: an API key or hash.
fn looks_random(value: &str) -> bool {
    if value.len() < 24 || value.contains(char::is_whitespace) {
        return false;
    }
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let upper = value.chars().filter(char::is_ascii_uppercase).count();
    let lower = value.chars().filter(char::is_ascii_lowercase).count();
    let classes = [digits, upper, lower].iter().filter(|n| **n > 0).count();
    classes >= 2 && digits * 8 >= value.len() && !value.contains('/')
}

/// An `env:` item shown in an error: the part after `=` is never echoed.
fn redact_item(item: &str) -> String {
    match item.split_once('=') {
        Some((k, _)) => format!("{k}={REDACTED}"),
        None if item.len() > 32 => format!("{}…", &item[..item.floor_char_boundary(16)]),
        None => item.to_string(),
    }
}

/// What a deploy asks of the host beyond an ordinary container. Each is
/// refused unless the host allows it and the requester is an admin, because
/// any of them lets the container (and so the team) take over the Docker host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAccess {
    /// `SRC:DST[:ro]` mounts; SRC is a named volume or a host path.
    pub volumes: Vec<String>,
    pub privileged: bool,
    pub host_network: bool,
    pub devices: Vec<String>,
}

/// Who asks, and what the host permits.
#[derive(Debug, Clone, Copy)]
pub struct AccessRules {
    pub requester_is_admin: bool,
    /// `allow_host_access` of the Docker host.
    pub host_allows: bool,
}

/// One mount, checked: a named volume (always allowed) or a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    HostPath {
        source: String,
        target: String,
        read_only: bool,
    },
}

impl Mount {
    pub fn parse(raw: &str) -> Result<Mount, Invalid> {
        let bad = || {
            Invalid(format!(
                "volume: {} is not NAME:/path[:ro] (a named volume and where to mount it)",
                super::names::shown(raw)
            ))
        };
        let mut parts = raw.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
            return Err(bad());
        };
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() || !target.starts_with('/') || target.contains("..") {
            return Err(bad());
        }
        let (source, target) = (source.to_string(), target.to_string());
        // Docker treats a source with a '/' (or '.' / '~' start) as a host path.
        if source.contains('/') || source.starts_with(['.', '~']) {
            return Ok(Mount::HostPath {
                source,
                target,
                read_only,
            });
        }
        let named = !source.is_empty()
            && source.starts_with(|c: char| c.is_ascii_alphanumeric())
            && source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !named {
            return Err(bad());
        }
        Ok(Mount::Volume {
            name: source,
            target,
            read_only,
        })
    }

    /// The `Binds` entry for Docker.
    pub fn bind(&self) -> String {
        let (s, t, ro) = match self {
            Mount::Volume {
                name,
                target,
                read_only,
            } => (name, target, read_only),
            Mount::HostPath {
                source,
                target,
                read_only,
            } => (source, target, read_only),
        };
        format!("{s}:{t}{}", if *ro { ":ro" } else { "" })
    }
}

/// Checks what the deploy asks for; the first refusal says what and why.
pub fn check_access(access: &HostAccess, rules: AccessRules) -> Result<Vec<Mount>, Invalid> {
    let mounts = access
        .volumes
        .iter()
        .map(|v| Mount::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut wants = Vec::new();
    for m in &mounts {
        if let Mount::HostPath { source, .. } = m {
            wants.push(format!(
                "a bind mount of the host path {}",
                super::names::shown(source)
            ));
        }
    }
    if access.privileged {
        wants.push("privileged mode".into());
    }
    if access.host_network {
        wants.push("the host's network".into());
    }
    for d in &access.devices {
        wants.push(format!("the device {}", super::names::shown(d)));
    }
    if wants.is_empty() || (rules.requester_is_admin && rules.host_allows) {
        return Ok(mounts);
    }
    let why = if rules.host_allows {
        "only a team admin may ask for that on this host"
    } else {
        "this Docker host does not allow it (allow_host_access), because it would let the container take over the host"
    };
    Err(Invalid(format!(
        "refused: {} — {why}. Use a named volume (volume:data:/var/lib/app) instead of a host path",
        wants.join(", ")
    )))
}

/// What an app's deploy job does besides running the container.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppOptions {
    /// An HTTP route to a domain.
    pub route: bool,
    /// An A record for that domain.
    pub dns: bool,
}

/// The steps of an app job, in order. A deploy is a `Create` job, a remove a
/// `Destroy`, `/app stop` and `/app start` are `Stop` and `Start`, so quota,
/// approval, state changes and rollback work as for environments.
pub fn plan(kind: JobKind, opts: AppOptions) -> Vec<Step> {
    let mut steps = Vec::new();
    match kind {
        JobKind::Create => {
            steps.extend([
                Step::PullImage,
                Step::CreateAppContainer,
                Step::StartAppContainer,
                Step::CheckHealth,
            ]);
            if opts.route {
                steps.push(Step::PublishRoute);
            }
            if opts.dns {
                steps.push(Step::RegisterDns);
            }
            steps.push(Step::MarkReady);
        }
        JobKind::Update => steps.extend([
            Step::PullImage,
            Step::CreateAppContainer,
            Step::StartAppContainer,
            Step::CheckHealth,
            Step::SwitchRoute,
            Step::RemoveOldContainer,
        ]),
        JobKind::Restart => steps.push(Step::RestartApp),
        JobKind::Stop => steps.push(Step::StopApp),
        JobKind::Start => steps.push(Step::StartApp),
        JobKind::Destroy => {
            if opts.dns {
                steps.push(Step::RemoveDns);
            }
            if opts.route {
                steps.push(Step::UnpublishRoute);
            }
            steps.push(Step::RemoveAppContainers);
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_image_references_parse() {
        for ok in [
            "nginx",
            "nginx:1.27",
            "library/nginx:latest",
            "ghcr.io/acme/shop:v2.1",
            "registry.example:5000/team/app",
            "localhost/slipway-test:v1",
            "busybox@sha256:1111111111111111111111111111111111111111111111111111111111111111",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_image_references_are_refused() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx::1",
            "ngi nx",
            "nginx;reboot",
            "-nginx",
            "a//b",
            "nginx@md5:00",
            "$(reboot)",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untagged_image_is_latest() {
        assert_eq!(
            ImageRef::parse("registry:5000/app").unwrap().normalized(),
            "registry:5000/app:latest"
        );
        assert_eq!(ImageRef::parse("app:v1").unwrap().normalized(), "app:v1");
    }

    #[test]
    fn env_items_parse_and_secret_values_are_redacted_when_shown() {
        let env = EnvVars::parse(["GREETING=hello", "DB_PASSWORD=hunter2", "EMPTY="]).unwrap();
        assert_eq!(env.0["GREETING"], "hello");
        let shown = env.shown();
        assert_eq!(shown, "DB_PASSWORD=•••, EMPTY=, GREETING=hello");
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn values_that_look_like_credentials_are_secret_whatever_the_key() {
        assert!(is_secret(
            "GITHUB",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
        ));
        assert!(is_secret(
            "DATABASE_URL",
            "postgres://app:hunter2@db:5432/app"
        ));
        assert!(is_secret("X", "a8f5f167f44f4964e6c998dee827110c"));
        assert!(!is_secret("DATABASE_URL", "postgres://db:5432/app"));
        assert!(!is_secret("GREETING", "hello world, how are you today?"));
        assert!(!is_secret("LOG_LEVEL", "debug"));
    }

    #[test]
    fn a_bad_env_item_is_refused_without_echoing_its_value() {
        let err = EnvVars::parse(["1BAD=hunter2"]).unwrap_err();
        assert!(!err.0.contains("hunter2"), "{}", err.0);
        let err = EnvVars::parse(["A=1", "A=2"]).unwrap_err();
        assert!(err.0.contains("twice"), "{}", err.0);
        assert!(EnvVars::parse(["PORT=80"]).is_err());
        assert!(EnvVars::parse(["A=line\nbreak"]).is_err());
    }

    fn member() -> AccessRules {
        AccessRules {
            requester_is_admin: false,
            host_allows: true,
        }
    }

    #[test]
    fn a_host_bind_mount_is_refused_for_a_member() {
        let access = HostAccess {
            volumes: vec!["/etc:/host-etc".into()],
            ..HostAccess::default()
        };
        let err = check_access(&access, member()).unwrap_err();
        assert!(
            err.0.contains("bind mount of the host path '/etc'"),
            "{}",
            err.0
        );
    }

    #[test]
    fn relative_and_home_paths_count_as_host_paths() {
        for v in ["./data:/data", "~/x:/x", "../up:/up"] {
            assert!(matches!(Mount::parse(v), Ok(Mount::HostPath { .. })), "{v}");
        }
    }

    #[test]
    fn a_named_volume_is_allowed_for_anyone() {
        let access = HostAccess {
            volumes: vec!["data:/var/lib/app:ro".into()],
            ..HostAccess::default()
        };
        let mounts = check_access(&access, member()).unwrap();
        assert_eq!(mounts[0].bind(), "data:/var/lib/app:ro");
    }

    #[test]
    fn privileged_host_network_and_devices_need_an_admin_and_a_host_that_allows_them() {
        let access = HostAccess {
            privileged: true,
            host_network: true,
            devices: vec!["/dev/kvm".into()],
            ..HostAccess::default()
        };
        let err = check_access(&access, member()).unwrap_err();
        assert!(err.0.contains("privileged mode"), "{}", err.0);
        assert!(err.0.contains("host's network"), "{}", err.0);
        assert!(err.0.contains("/dev/kvm"), "{}", err.0);
        let admin_on_strict_host = AccessRules {
            requester_is_admin: true,
            host_allows: false,
        };
        assert!(check_access(&access, admin_on_strict_host).is_err());
        let admin = AccessRules {
            requester_is_admin: true,
            host_allows: true,
        };
        assert!(check_access(&access, admin).is_ok());
    }

    #[test]
    fn every_app_step_name_parses_back() {
        let opts = AppOptions {
            route: true,
            dns: true,
        };
        for kind in JobKind::ALL.iter().copied() {
            let steps = plan(kind, opts);
            assert!(!steps.is_empty(), "an app's {kind} job has no steps");
            for step in steps {
                assert_eq!(Step::parse(&step.name()), Some(step));
            }
        }
    }
}
