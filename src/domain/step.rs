//! The steps a job is made of. Each step has a stable id, which the journal
//! stores and which never changes, and a label, which people read and which may
//! be reworded freely. Each knows how to undo itself (see `worker::steps`).

use std::fmt;

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    AllocateIp,
    CreateContainer,
    StartContainer,
    AwaitAddress,
    AddHa,
    /// Logs in with Slipway's key and records the guest's host key (first use).
    ReachSsh,
    PostProvision(String),
    InitialSnapshot,
    MarkReady,
    RemoveHa,
    Shutdown,
    DeleteSnapshots,
    DeleteContainer,
    ReleaseAllocations,
    Stop,
    Start,
    PublishRoute,
    RegisterDns,
    AddMonitoring,
    UnpublishRoute,
    RemoveDns,
    RemoveMonitoring,
    // App steps (see `domain::app`).
    PullImage,
    CreateAppContainer,
    StartAppContainer,
    CheckHealth,
    SwitchRoute,
    RemoveOldContainer,
    RestartApp,
    StopApp,
    StartApp,
    RemoveAppContainers,
    /// Puts a person's SSH keys (by their person key, e.g. `console:carol`)
    /// into the guest's authorized_keys (`/env access add`).
    GrantAccess(String),
    /// Takes a person's keys out again (`/env access remove`).
    RevokeAccess(String),
}

/// The prefix of a post-provision step's id; the profile's step name follows.
const POST_PROVISION: &str = "post_provision:";
/// The prefixes of access steps' ids; the person key follows.
const GRANT_ACCESS: &str = "grant_access:";
const REVOKE_ACCESS: &str = "revoke_access:";

/// A person key as people read it: a Discord mention, else the id itself.
pub fn person_shown(key: &str) -> String {
    match key.split_once(':') {
        Some(("discord", id)) => format!("<@{id}>"),
        Some((_, id)) => id.to_string(),
        None => key.to_string(),
    }
}

/// Every step without a parameter, with its id and its label. The ids are
/// stored in the journal: never change one (add a migration if one must go).
const FIXED: &[(Step, &str, &str)] = &[
    (Step::AllocateIp, "allocate_ip", "allocate address"),
    (Step::CreateContainer, "create_guest", "create container"),
    (Step::StartContainer, "start_guest", "start container"),
    (Step::AwaitAddress, "await_address", "wait for network"),
    (Step::AddHa, "add_ha", "add HA resource"),
    (Step::ReachSsh, "reach_ssh", "wait for SSH"),
    (
        Step::InitialSnapshot,
        "initial_snapshot",
        "initial snapshot",
    ),
    (Step::MarkReady, "mark_ready", "mark ready"),
    (Step::RemoveHa, "remove_ha", "remove HA resource"),
    (Step::Shutdown, "shutdown_guest", "shut down"),
    (
        Step::DeleteSnapshots,
        "delete_snapshots",
        "delete snapshots",
    ),
    (Step::DeleteContainer, "delete_guest", "delete container"),
    (
        Step::ReleaseAllocations,
        "release_allocations",
        "release allocations",
    ),
    (Step::Stop, "stop_guest", "stop"),
    (Step::Start, "start_stopped_guest", "start"),
    (Step::PublishRoute, "publish_route", "publish route"),
    (Step::RegisterDns, "register_dns", "register DNS"),
    (Step::AddMonitoring, "add_monitoring", "add monitoring"),
    (Step::UnpublishRoute, "unpublish_route", "remove route"),
    (Step::RemoveDns, "remove_dns", "remove DNS record"),
    (
        Step::RemoveMonitoring,
        "remove_monitoring",
        "remove monitoring",
    ),
    (Step::PullImage, "pull_image", "pull image"),
    (
        Step::CreateAppContainer,
        "create_app_container",
        "create app container",
    ),
    (
        Step::StartAppContainer,
        "start_app_container",
        "start app container",
    ),
    (Step::CheckHealth, "check_health", "check health"),
    (Step::SwitchRoute, "switch_route", "switch route"),
    (
        Step::RemoveOldContainer,
        "remove_old_container",
        "remove old container",
    ),
    (Step::RestartApp, "restart_app", "restart app"),
    (Step::StopApp, "stop_app", "stop app"),
    (Step::StartApp, "start_app", "start app"),
    (
        Step::RemoveAppContainers,
        "remove_app_containers",
        "remove app containers",
    ),
];

impl Step {
    fn fixed(&self) -> Option<&'static (Step, &'static str, &'static str)> {
        FIXED.iter().find(|(s, _, _)| s == self)
    }

    /// The id stored in the journal.
    pub fn id(&self) -> String {
        match self {
            Step::PostProvision(name) => format!("{POST_PROVISION}{name}"),
            Step::GrantAccess(who) => format!("{GRANT_ACCESS}{who}"),
            Step::RevokeAccess(who) => format!("{REVOKE_ACCESS}{who}"),
            other => other
                .fixed()
                .map(|(_, id, _)| (*id).to_string())
                .unwrap_or_else(|| unreachable!("{other:?} has no entry in FIXED")),
        }
    }

    /// The name people read in progress messages and job logs.
    pub fn label(&self) -> String {
        match self {
            Step::PostProvision(name) => format!("post-provision: {name}"),
            Step::GrantAccess(who) => format!("give {} access", person_shown(who)),
            Step::RevokeAccess(who) => format!("take {}'s access away", person_shown(who)),
            other => other
                .fixed()
                .map(|(_, _, label)| (*label).to_string())
                .unwrap_or_else(|| unreachable!("{other:?} has no entry in FIXED")),
        }
    }

    /// The step a stored id names.
    pub fn from_id(id: &str) -> Option<Step> {
        if let Some(name) = id.strip_prefix(POST_PROVISION) {
            return (!name.is_empty()).then(|| Step::PostProvision(name.to_string()));
        }
        if let Some(who) = id.strip_prefix(GRANT_ACCESS) {
            return (!who.is_empty()).then(|| Step::GrantAccess(who.to_string()));
        }
        if let Some(who) = id.strip_prefix(REVOKE_ACCESS) {
            return (!who.is_empty()).then(|| Step::RevokeAccess(who.to_string()));
        }
        FIXED
            .iter()
            .find(|(_, i, _)| *i == id)
            .map(|(s, _, _)| s.clone())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl serde::Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id())
    }
}

impl<'de> serde::Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        Step::from_id(&id)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown step id '{id}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, so that a new one must be added to `FIXED` (and here).
    fn every_step() -> Vec<Step> {
        let mut all: Vec<Step> = FIXED.iter().map(|(s, _, _)| s.clone()).collect();
        all.push(Step::PostProvision("install packages".into()));
        all.push(Step::GrantAccess("console:carol".into()));
        all.push(Step::RevokeAccess("discord:720000000000000002".into()));
        for s in &all {
            // Exhaustive on purpose: a new variant is a compile error here.
            match s {
                Step::AllocateIp
                | Step::CreateContainer
                | Step::StartContainer
                | Step::AwaitAddress
                | Step::AddHa
                | Step::ReachSsh
                | Step::PostProvision(_)
                | Step::GrantAccess(_)
                | Step::RevokeAccess(_)
                | Step::InitialSnapshot
                | Step::MarkReady
                | Step::RemoveHa
                | Step::Shutdown
                | Step::DeleteSnapshots
                | Step::DeleteContainer
                | Step::ReleaseAllocations
                | Step::Stop
                | Step::Start
                | Step::PublishRoute
                | Step::RegisterDns
                | Step::AddMonitoring
                | Step::UnpublishRoute
                | Step::RemoveDns
                | Step::RemoveMonitoring
                | Step::PullImage
                | Step::CreateAppContainer
                | Step::StartAppContainer
                | Step::CheckHealth
                | Step::SwitchRoute
                | Step::RemoveOldContainer
                | Step::RestartApp
                | Step::StopApp
                | Step::StartApp
                | Step::RemoveAppContainers => {}
            }
        }
        all
    }

    #[test]
    fn ids_and_labels_are_unique_and_ids_parse_back() {
        let all = every_step();
        assert_eq!(all.len(), 34, "a step was added: give it an id and a label");
        let mut ids = std::collections::HashSet::new();
        let mut labels = std::collections::HashSet::new();
        for s in &all {
            assert!(ids.insert(s.id()), "duplicate id {}", s.id());
            assert!(labels.insert(s.label()), "duplicate label {}", s.label());
            assert_eq!(Step::from_id(&s.id()).as_ref(), Some(s));
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(&serde_json::from_str::<Step>(&json).unwrap(), s);
        }
    }

    #[test]
    fn a_label_is_not_an_id() {
        assert_eq!(Step::from_id("create container"), None);
        assert_eq!(Step::from_id("post_provision:"), None);
        assert_eq!(Step::from_id("grant_access:"), None);
        assert!(serde_json::from_str::<Step>("\"reboot\"").is_err());
    }
}
