//! What a deploy may reach on its Docker host: mounts (named volumes or host
//! paths), privileged mode, the host's network and devices, checked against
//! who asks and what the host allows.

use super::Invalid;

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
                crate::domain::names::shown(raw)
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
                crate::domain::names::shown(source)
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
        wants.push(format!("the device {}", crate::domain::names::shown(d)));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
