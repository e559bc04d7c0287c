//! Workload profiles from `profiles/*.toml`: what an environment of each kind is
//! made of (template, resource ranges, network, post-provision steps, lifetime).
//! Raw TOML structs are read first, then validated into a [`Profile`].

use super::Problem;
use crate::domain::quota::Resources;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    default: u32,
    min: u32,
    max: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    cores: RawRange,
    memory_mb: RawRange,
    swap_mb: RawRange,
    disk_gb: RawRange,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    bridge: String,
    vlan: Option<u16>,
    /// "dhcp" or "pool" (a static address from the team's pool).
    #[serde(default = "dhcp")]
    ip: String,
    #[serde(default = "yes")]
    firewall: bool,
    /// DNS servers the guest uses (IP addresses); unset = the host's.
    #[serde(default)]
    nameserver: Vec<String>,
    /// DNS search domains of the guest; unset = the host's.
    #[serde(default)]
    searchdomain: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    /// argv; each element is a template over validated values only.
    command: Vec<String>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTtl {
    default: String,
    max: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpose {
    port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    description: String,
    ostemplate: String,
    storage: Option<String>,
    #[serde(default = "yes")]
    unprivileged: bool,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    onboot: bool,
    resources: RawResources,
    network: RawNetwork,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    post_provision: Vec<RawStep>,
    expose: Option<RawExpose>,
    #[serde(default)]
    monitored: bool,
    ttl: RawTtl,
    #[serde(default)]
    needs_approval: bool,
    #[serde(default)]
    ha: bool,
    #[serde(default)]
    initial_snapshot: bool,
    /// Slipway signs a dockerd server certificate for post-provision steps.
    #[serde(default)]
    docker_tls: bool,
}

fn yes() -> bool {
    true
}

fn dhcp() -> String {
    "dhcp".into()
}

/// An allowed range for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Range {
    pub default: u32,
    pub min: u32,
    pub max: u32,
}

/// How a container gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpMode {
    Dhcp,
    Pool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Network {
    pub bridge: String,
    pub vlan: Option<u16>,
    pub ip: IpMode,
    pub firewall: bool,
    /// PVE's `nameserver`: addresses, space-separated; empty = the host's.
    pub nameserver: Vec<std::net::IpAddr>,
    /// PVE's `searchdomain`: names, space-separated; empty = the host's.
    pub searchdomain: Vec<String>,
}

/// A post-provision step: a local program run with an argv, never a shell string.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PostStep {
    pub name: String,
    pub command: Vec<String>,
    #[serde(skip)]
    pub timeout: Duration,
}

impl PostStep {
    /// Whether the step logs in to the guest: it uses `{{ ssh.* }}`, so
    /// Slipway reaches the guest and learns its host key before it runs.
    pub fn logs_in(&self) -> bool {
        self.uses("ssh")
    }

    /// Whether an argument uses the value `name` (`address`, `ssh`, …).
    pub fn uses(&self, name: &str) -> bool {
        let env = minijinja::Environment::new();
        self.command.iter().any(|arg| {
            env.template_from_str(arg)
                .map(|t| t.undeclared_variables(false).contains(name))
                .unwrap_or(false)
        })
    }
}

/// A validated profile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub ostemplate: String,
    pub storage: Option<String>,
    pub unprivileged: bool,
    pub features: Vec<String>,
    pub onboot: bool,
    pub cores: Range,
    pub memory_mb: Range,
    pub swap_mb: Range,
    pub disk_gb: Range,
    pub network: Network,
    pub packages: Vec<String>,
    pub post_provision: Vec<PostStep>,
    /// The backend port when the profile may be exposed.
    pub expose_port: Option<u16>,
    pub monitored: bool,
    #[serde(skip)]
    pub ttl_default: Duration,
    #[serde(skip)]
    pub ttl_max: Duration,
    pub needs_approval: bool,
    pub ha: bool,
    pub initial_snapshot: bool,
    /// Post-provision steps get `docker_tls.{ca_file,cert_file,key_file}`:
    /// a dockerd server certificate Slipway signed for this environment.
    pub docker_tls: bool,
    pub file: String,
}

/// Requested resources that are not all within the profile's ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutOfRange(pub String);

impl Profile {
    /// The resources for a request: the profile's defaults where nothing was asked,
    /// each checked against the profile's range.
    pub fn resources(
        &self,
        cores: Option<i64>,
        memory_mb: Option<i64>,
        disk_gb: Option<i64>,
    ) -> Result<Resources, OutOfRange> {
        let pick = |what: &str, asked: Option<i64>, range: Range| -> Result<u32, OutOfRange> {
            let Some(v) = asked else {
                return Ok(range.default);
            };
            if v < i64::from(range.min) {
                return Err(OutOfRange(format!(
                    "{what}: {v} is below the minimum of {} for profile {}",
                    range.min, self.name
                )));
            }
            if v > i64::from(range.max) {
                return Err(OutOfRange(format!(
                    "{what}: {v} is above the maximum of {} for profile {}",
                    range.max, self.name
                )));
            }
            Ok(v as u32)
        };
        Ok(Resources {
            cores: pick("cpu", cores, self.cores)?,
            memory_mb: pick("memory", memory_mb, self.memory_mb)?,
            swap_mb: self.swap_mb.default,
            disk_gb: pick("disk", disk_gb, self.disk_gb)?,
        })
    }
}

const FEATURES: &[&str] = &["nesting", "keyctl", "fuse", "mknod", "force_rw_sys"];

pub(super) fn load_file(path: &Path, problems: &mut Vec<Problem>) -> Option<Profile> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::new(&file, format!("cannot read: {e}")));
            return None;
        }
    };
    let raw: RawProfile = match toml::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            problems.push(Problem::new(&file, e.to_string().trim_end().to_string()));
            return None;
        }
    };
    let before = problems.len();
    let mut bad = |msg: String| problems.push(Problem::new(&file, msg));
    if crate::domain::names::check_label(&raw.name, "name").is_err() {
        bad(format!(
            "name '{}': use lower-case letters, digits and '-'",
            raw.name
        ));
    }
    let expected_stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if raw.name != expected_stem {
        bad(format!(
            "name '{}' differs from the file name '{expected_stem}'; make them the same",
            raw.name
        ));
    }
    if !raw.ostemplate.contains(":vztmpl/") {
        bad(format!(
            "ostemplate '{}': expected STORAGE:vztmpl/FILE, e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            raw.ostemplate
        ));
    }
    for f in &raw.features {
        let key = f.split('=').next().unwrap_or("");
        if !FEATURES.contains(&key) || !f.ends_with("=1") && !f.ends_with("=0") {
            bad(format!(
                "features: '{f}' is not KEY=0|1 with KEY one of {}",
                FEATURES.join(", ")
            ));
        }
    }
    let pkg = regex::Regex::new(r"^[a-z0-9][a-z0-9+.-]{0,63}$").expect("static regex");
    for p in &raw.packages {
        if !pkg.is_match(p) {
            bad(format!("packages: '{p}' is not a Debian package name"));
        }
    }
    let ranges = [
        ("resources.cores", &raw.resources.cores),
        ("resources.memory_mb", &raw.resources.memory_mb),
        ("resources.swap_mb", &raw.resources.swap_mb),
        ("resources.disk_gb", &raw.resources.disk_gb),
    ];
    for (what, r) in ranges {
        if !(r.min <= r.default && r.default <= r.max) {
            bad(format!(
                "{what}: needs min <= default <= max (got {} <= {} <= {})",
                r.min, r.default, r.max
            ));
        }
    }
    if raw.resources.cores.min == 0 || raw.resources.disk_gb.min == 0 {
        bad("resources: cores and disk_gb need a minimum of at least 1".into());
    }
    let ip = match raw.network.ip.as_str() {
        "dhcp" => IpMode::Dhcp,
        "pool" => IpMode::Pool,
        other => {
            bad(format!("network.ip: '{other}' is not 'dhcp' or 'pool'"));
            IpMode::Dhcp
        }
    };
    if let Some(vlan) = raw.network.vlan.filter(|v| !(1..=4094).contains(v)) {
        bad(format!("network.vlan: {vlan} is outside 1-4094"));
    }
    let mut nameserver = Vec::new();
    for raw_ns in &raw.network.nameserver {
        match raw_ns.trim().parse::<std::net::IpAddr>() {
            Ok(a) => nameserver.push(a),
            Err(_) => bad(format!(
                "network.nameserver: '{raw_ns}' is not an IP address, e.g. \"10.0.0.53\""
            )),
        }
    }
    let mut searchdomain = Vec::new();
    for raw_sd in &raw.network.searchdomain {
        match crate::domain::domain_name::Domain::check_zone(raw_sd.trim()) {
            Ok(d) => searchdomain.push(d),
            Err(e) => bad(format!("network.searchdomain: '{raw_sd}': {e}")),
        }
    }
    let mut duration = |what: &str, raw: &str| match humantime::parse_duration(raw) {
        Ok(d) => d,
        Err(e) => {
            bad(format!("{what}: '{raw}': {e} (write e.g. 3d or 12h)"));
            Duration::ZERO
        }
    };
    let ttl_default = duration("ttl.default", &raw.ttl.default);
    let ttl_max = duration("ttl.max", &raw.ttl.max);
    let mut steps = Vec::new();
    for s in &raw.post_provision {
        let timeout = duration(
            &format!("post_provision '{}': timeout", s.name),
            s.timeout.as_deref().unwrap_or("15m"),
        );
        steps.push(PostStep {
            name: s.name.clone(),
            command: s.command.clone(),
            timeout,
        });
    }
    if ttl_default > ttl_max {
        problems.push(Problem::new(
            &file,
            "ttl: default is longer than max".into(),
        ));
    }
    for s in &steps {
        if s.command.is_empty() {
            problems.push(Problem::new(
                &file,
                format!("post_provision '{}': command is empty", s.name),
            ));
        }
        if !raw.docker_tls && s.command.iter().any(|a| a.contains("docker_tls")) {
            problems.push(Problem::new(
                &file,
                format!(
                    "post_provision '{}': uses docker_tls, which only profiles with docker_tls = true have",
                    s.name
                ),
            ));
        }
        let env = minijinja::Environment::new();
        for arg in &s.command {
            if let Err(e) = env.template_from_str(arg) {
                problems.push(Problem::new(
                    &file,
                    format!("post_provision '{}': argument '{arg}': {e}", s.name),
                ));
            }
        }
    }
    if problems.len() != before {
        return None;
    }
    let range = |r: &RawRange| Range {
        default: r.default,
        min: r.min,
        max: r.max,
    };
    Some(Profile {
        name: raw.name,
        description: raw.description,
        ostemplate: raw.ostemplate,
        storage: raw.storage,
        unprivileged: raw.unprivileged,
        features: raw.features,
        onboot: raw.onboot,
        cores: range(&raw.resources.cores),
        memory_mb: range(&raw.resources.memory_mb),
        swap_mb: range(&raw.resources.swap_mb),
        disk_gb: range(&raw.resources.disk_gb),
        network: Network {
            bridge: raw.network.bridge,
            vlan: raw.network.vlan,
            ip,
            firewall: raw.network.firewall,
            nameserver,
            searchdomain,
        },
        packages: raw.packages,
        post_provision: steps,
        expose_port: raw.expose.map(|e| e.port),
        monitored: raw.monitored,
        ttl_default,
        ttl_max,
        needs_approval: raw.needs_approval,
        ha: raw.ha,
        initial_snapshot: raw.initial_snapshot,
        docker_tls: raw.docker_tls,
        file,
    })
}
