//! Progress events: each step of a job reports (step n of m, name, state,
//! elapsed). The worker stores them in the job log and publishes them on the
//! bus; the notifier turns them into message edits.

use crate::domain::lifecycle::{JobKind, StepState};
use tokio::sync::broadcast;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded(String),
    Failed(String),
}

/// One step's state within a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    pub name: String,
    pub state: StepState,
}

/// A job's progress as a chat message shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub job_id: i64,
    pub env_name: String,
    pub kind: JobKind,
    pub steps: Vec<StepView>,
    /// Index of the step being worked on.
    pub current: usize,
    /// What the current step waits for, when it waits ("waiting for a lock
    /// held by another Proxmox task (try 2)").
    pub note: Option<String>,
    pub elapsed_ms: u64,
    pub rolling_back: bool,
    pub outcome: Option<Outcome>,
    /// JSON of the ReplyTo the job reports to.
    pub reply_to: String,
}

/// The channel progress travels on.
pub type Bus = broadcast::Sender<Progress>;

pub fn bus() -> Bus {
    broadcast::channel(1024).0
}
