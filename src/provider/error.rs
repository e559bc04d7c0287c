//! Why a provider call failed, and what that means for the caller.

use std::time::Duration;

/// Why a provider call failed. PVE's own wording is kept; no secret is ever part of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("Proxmox answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("Proxmox task failed: {exit}{}", tail(exit, .log_tail))]
    Task { exit: String, log_tail: Vec<String> },
    /// The request may have reached Proxmox; its answer was lost.
    #[error("could not reach Proxmox: {0}")]
    Network(String),
    /// No connection was made: Proxmox never saw the request.
    #[error("could not reach Proxmox: {0}")]
    Unreachable(String),
    #[error("{0} did not finish within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}")]
    Other(String),
}

/// The task log's last lines, without those that only repeat the exit.
fn tail(exit: &str, lines: &[String]) -> String {
    let lines: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.contains(exit.trim()))
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(" (log: {})", lines.join(" | "))
    }
}

/// What a provider error means for the caller, decided once here from PVE's
/// status and wording, so callers match a kind instead of texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The network, a proxy, a node or the cluster may recover: try again.
    Transient,
    /// A config lock is held by another task (a backup, a snapshot): wait and try again.
    Locked,
    /// The id is taken ("CT 102 already exists on node 'pve1'").
    AlreadyExists,
    /// The guest or resource is not there (any more).
    NotFound,
    /// The token may not do this (403).
    Forbidden,
    /// Anything else: trying again will not help.
    Fatal,
}

impl ProviderError {
    /// The texts PVE's answer and, for a task, its log carry.
    fn texts(&self) -> Vec<&str> {
        match self {
            ProviderError::Api { message, .. } => vec![message],
            ProviderError::Task { exit, log_tail } => std::iter::once(exit.as_str())
                .chain(log_tail.iter().map(String::as_str))
                .collect(),
            ProviderError::Network(m) | ProviderError::Unreachable(m) | ProviderError::Other(m) => {
                vec![m]
            }
            ProviderError::Timeout(what, _) => vec![what],
        }
    }

    pub fn kind(&self) -> ErrorKind {
        let says = |needle: &str| self.texts().iter().any(|t| t.contains(needle));
        match self {
            ProviderError::Network(_)
            | ProviderError::Unreachable(_)
            | ProviderError::Timeout(..) => ErrorKind::Transient,
            ProviderError::Other(_) => ErrorKind::Fatal,
            ProviderError::Api { .. } | ProviderError::Task { .. } if says("already exists") => {
                ErrorKind::AlreadyExists
            }
            ProviderError::Api { .. } | ProviderError::Task { .. }
                if says("can't lock file") || says("got timeout") || says("is locked") =>
            {
                ErrorKind::Locked
            }
            ProviderError::Api {
                status: 502..=504 | 595 | 596,
                ..
            } => ErrorKind::Transient,
            ProviderError::Api { .. } if says("no quorum") => ErrorKind::Transient,
            ProviderError::Api { status: 404, .. } => ErrorKind::NotFound,
            ProviderError::Api { .. }
                if says("does not exist") || says("no such") || says("not found") =>
            {
                ErrorKind::NotFound
            }
            ProviderError::Api { status: 403, .. } => ErrorKind::Forbidden,
            ProviderError::Api { .. } | ProviderError::Task { .. } => ErrorKind::Fatal,
        }
    }

    /// PVE said the VMID is taken ("CT 102 already exists on node 'pve1'").
    pub fn is_already_exists(&self) -> bool {
        self.kind() == ErrorKind::AlreadyExists
    }

    /// Whether Proxmox may have carried the write out although it failed: its
    /// answer was lost on the way, or a proxy in between broke off. False
    /// when no connection was made, when pveproxy could not reach the node
    /// (595), and when PVE itself answered with an error.
    pub fn may_have_acted(&self) -> bool {
        match self {
            ProviderError::Unreachable(_) | ProviderError::Other(_) => false,
            ProviderError::Network(_) | ProviderError::Timeout(..) => true,
            ProviderError::Api { status, .. } => matches!(status, 502 | 504 | 596),
            ProviderError::Task { .. } => true,
        }
    }

    /// The cluster could not reach the node the request was for (PVE's 595
    /// "No route to host" from pveproxy): the node is down or cut off.
    pub fn node_unreachable(&self) -> bool {
        matches!(self, ProviderError::Api { status: 595, .. })
    }

    /// The guest is not there (any more).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Worth trying again at once: the network, a proxy, a node or the
    /// cluster may recover. A held lock is not: it is waited out for its own
    /// budget (see `worker::backoff`).
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// A lock that another Proxmox task holds and will release when it ends
    /// (a backup, a snapshot, a migration, a config write). A `create` or
    /// `mounted` lock outlives the task that took it (a crash, a manual
    /// mount): waiting does not help, a person runs `pct unlock`.
    pub fn lock_may_be_released(&self) -> bool {
        self.kind() == ErrorKind::Locked
            && !self
                .texts()
                .iter()
                .any(|t| t.contains("locked (create)") || t.contains("locked (mounted)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str) -> ProviderError {
        ProviderError::Api {
            status,
            message: message.into(),
        }
    }

    #[test]
    fn pves_answers_classify_themselves() {
        let cases = [
            (
                api(500, "CT 102 already exists on node 'pve1'"),
                ErrorKind::AlreadyExists,
            ),
            (
                api(
                    500,
                    "can't lock file '/run/lock/lxc/pve-config-110.lock' - got timeout",
                ),
                ErrorKind::Locked,
            ),
            (api(500, "CT is locked (backup)"), ErrorKind::Locked),
            (api(596, "Connection timed out"), ErrorKind::Transient),
            (
                api(500, "cluster not ready - no quorum?"),
                ErrorKind::Transient,
            ),
            (api(404, "no such VM"), ErrorKind::NotFound),
            (
                api(
                    500,
                    "Configuration file 'nodes/pve1/lxc/7.conf' does not exist",
                ),
                ErrorKind::NotFound,
            ),
            (
                api(403, "Permission check failed (/vms/7, VM.Allocate)"),
                ErrorKind::Forbidden,
            ),
            (api(400, "parameter verification failed"), ErrorKind::Fatal),
            (
                ProviderError::Network("connection refused".into()),
                ErrorKind::Transient,
            ),
            (
                ProviderError::Task {
                    exit: "can't lock file '/run/lock/lxc/pve-config-110.lock' - got timeout"
                        .into(),
                    log_tail: vec![],
                },
                ErrorKind::Locked,
            ),
            (
                ProviderError::Task {
                    exit: "unable to create CT 102".into(),
                    log_tail: vec!["TASK ERROR: CT 102 already exists".into()],
                },
                ErrorKind::AlreadyExists,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }

    #[test]
    fn a_lock_is_waited_for_only_when_its_task_will_release_it() {
        let task = |exit: &str| ProviderError::Task {
            exit: exit.into(),
            log_tail: vec![],
        };
        assert!(api(500, "CT is locked (snapshot)").lock_may_be_released());
        assert!(
            task("can't lock file '/run/lock/lxc/pve-config-7.lock' - got timeout")
                .lock_may_be_released()
        );
        assert!(!task("CT is locked (create)").lock_may_be_released());
        assert!(!api(500, "CT is locked (snapshot)").is_transient());
    }

    #[test]
    fn a_write_that_never_reached_proxmox_did_nothing() {
        assert!(!ProviderError::Unreachable("connection refused".into()).may_have_acted());
        assert!(!api(595, "No route to host").may_have_acted());
        assert!(!api(400, "parameter verification failed").may_have_acted());
        assert!(ProviderError::Network("connection reset".into()).may_have_acted());
        assert!(api(504, "Gateway Timeout").may_have_acted());
    }

    #[test]
    fn a_task_error_is_said_once() {
        let e = ProviderError::Task {
            exit: "can't lock file '/run/lock/lxc/pve-config-7.lock' - got timeout".into(),
            log_tail: vec![
                "trying to acquire lock...".into(),
                "TASK ERROR: can't lock file '/run/lock/lxc/pve-config-7.lock' - got timeout"
                    .into(),
            ],
        };
        let text = e.to_string();
        assert_eq!(text.matches("can't lock file").count(), 1, "{text}");
        assert!(text.contains("trying to acquire lock"), "{text}");
    }
}
