//! What each step keeps in the journal, typed. The journal holds one JSON
//! object per step; each struct here is a typed view of some of its fields, so
//! a step and its compensation (which may run after a restart, in a later
//! release) read the same names. Every field is optional or defaulted: a step
//! that has not got as far as writing it reads it back as absent. The field
//! names are stored: never rename one (an earlier release's jobs use them).

use crate::provider::TaskRef;
use serde::{Deserialize, Serialize};

/// `allocate_ip`: the address reserved from the team's pool.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct AllocateIpData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `create_guest`: the VMID tried and the create task, saved right after the POST.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CreateGuestData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
    /// Whether a create request for `vmid` may have made the container: set
    /// before the request goes out, cleared when every request certainly did
    /// nothing (none reached Proxmox, or PVE refused it). Absent in a job
    /// from an earlier release: then it may have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<bool>,
}

/// `start_guest`, `start_stopped_guest` and `initial_snapshot`: the task they sent.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TaskData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
}

/// `shutdown_guest` (and the undo of a create or start): the shutdown task.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ShutdownData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_task: Option<TaskRef>,
}

/// `delete_guest` (and the undo of a create): the delete task.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct DeleteGuestData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_task: Option<TaskRef>,
}

/// A step's data that holds the one task it sent, in the field `FIELD`.
pub(crate) trait SavedTask: Serialize + serde::de::DeserializeOwned {
    const FIELD: &'static str;
    fn task(self) -> Option<TaskRef>;
    fn with(task: TaskRef) -> Self;
}

impl SavedTask for TaskData {
    const FIELD: &'static str = "task";
    fn task(self) -> Option<TaskRef> {
        self.task
    }
    fn with(task: TaskRef) -> Self {
        TaskData { task: Some(task) }
    }
}

impl SavedTask for ShutdownData {
    const FIELD: &'static str = "stop_task";
    fn task(self) -> Option<TaskRef> {
        self.stop_task
    }
    fn with(task: TaskRef) -> Self {
        ShutdownData {
            stop_task: Some(task),
        }
    }
}

impl SavedTask for DeleteGuestData {
    const FIELD: &'static str = "delete_task";
    fn task(self) -> Option<TaskRef> {
        self.delete_task
    }
    fn with(task: TaskRef) -> Self {
        DeleteGuestData {
            delete_task: Some(task),
        }
    }
}

/// Any step being undone: how often its undo failed so far.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct UndoData {
    pub undo_attempts: u32,
}

/// `pull_image`: the image was on the host already.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct PullImageData {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
}

/// `create_app_container`: the container's name, its host port (host
/// networking) and Docker's id for it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct AppContainerData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `start_app_container`: the port the new container is reached on.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct StartAppData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<u16>,
}

/// `switch_route`: what served before the switch, so an undo can move back.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SwitchRouteData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Serving>,
}

/// An app's serving container as it was.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Serving {
    pub container: Option<String>,
    pub port: Option<u16>,
    pub image: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shapes an earlier release wrote (untyped JSON) read back.
    #[test]
    fn an_earlier_releases_data_reads_back() {
        let create: CreateGuestData = serde_json::from_value(
            json!({"vmid": 2000, "task": {"node": "pve1", "upid": "UPID:x"}, "undo_attempts": 2}),
        )
        .unwrap();
        assert_eq!(create.vmid, Some(2000));
        assert_eq!(create.task.unwrap().upid, "UPID:x");
        let undo: UndoData =
            serde_json::from_value(json!({"vmid": 2000, "undo_attempts": 2})).unwrap();
        assert_eq!(undo.undo_attempts, 2);
        let switch: SwitchRouteData = serde_json::from_value(
            json!({"previous": {"container": "slipway-app-1-2", "port": 8080, "image": "x:1"}}),
        )
        .unwrap();
        let previous = switch.previous.unwrap();
        assert_eq!(previous.container.as_deref(), Some("slipway-app-1-2"));
        assert_eq!(previous.port, Some(8080));
        let empty: ShutdownData = serde_json::from_value(json!({})).unwrap();
        assert!(empty.stop_task.is_none());
    }

    #[test]
    fn a_wrong_type_is_an_error_not_a_default() {
        assert!(
            serde_json::from_value::<CreateGuestData>(json!({"vmid": "two thousand"})).is_err()
        );
    }
}
