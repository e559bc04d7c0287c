//! The states an environment and a job move through, and the steps a job is made
//! of. The worker persists each step's state before and after its provider call,
//! so that after a crash the next action follows from the stored record alone.

use std::fmt;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where an environment is in its life.
    EnvState {
        PendingApproval => "pending_approval",
        Queued => "queued",
        Provisioning => "provisioning",
        Ready => "ready",
        Stopped => "stopped",
        Destroying => "destroying",
        Destroyed => "destroyed",
        Failed => "failed",
        Denied => "denied",
    }
}

impl EnvState {
    /// States whose resources count against the team's quota.
    pub const HOLDING: &'static [EnvState] = &[
        EnvState::Queued,
        EnvState::Provisioning,
        EnvState::Ready,
        EnvState::Stopped,
        EnvState::Destroying,
    ];

    /// States that end an environment's life: its name may be used again.
    pub const ENDED: &'static [EnvState] =
        &[EnvState::Destroyed, EnvState::Failed, EnvState::Denied];

    pub fn is_ended(self) -> bool {
        Self::ENDED.contains(&self)
    }
}

string_enum! {
    /// What a job does.
    JobKind {
        Create => "create",
        Destroy => "destroy",
        Start => "start",
        Stop => "stop",
        Restart => "restart",
        // Apps only: a blue-green image update.
        Update => "update",
    }
}

string_enum! {
    /// A job's progress through its steps.
    JobState {
        Queued => "queued",
        Running => "running",
        RollingBack => "rolling_back",
        Succeeded => "succeeded",
        Failed => "failed",
    }
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

string_enum! {
    /// A step's state in the journal.
    StepState {
        Pending => "pending",
        Running => "running",
        Done => "done",
        Failed => "failed",
        Compensated => "compensated",
        Skipped => "skipped",
    }
}

/// One step of a job. Each knows how to undo itself (see the worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    AllocateIp,
    CreateContainer,
    StartContainer,
    AwaitAddress,
    AddHa,
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
}

impl Step {
    /// The name stored in the journal and shown to users.
    pub fn name(&self) -> String {
        match self {
            Step::AllocateIp => "allocate address".into(),
            Step::CreateContainer => "create container".into(),
            Step::StartContainer => "start container".into(),
            Step::AwaitAddress => "wait for network".into(),
            Step::AddHa => "add HA resource".into(),
            Step::PostProvision(name) => format!("post-provision: {name}"),
            Step::InitialSnapshot => "initial snapshot".into(),
            Step::MarkReady => "mark ready".into(),
            Step::RemoveHa => "remove HA resource".into(),
            Step::Shutdown => "shut down".into(),
            Step::DeleteSnapshots => "delete snapshots".into(),
            Step::DeleteContainer => "delete container".into(),
            Step::ReleaseAllocations => "release allocations".into(),
            Step::Stop => "stop".into(),
            Step::Start => "start".into(),
            Step::PublishRoute => "publish route".into(),
            Step::RegisterDns => "register DNS".into(),
            Step::AddMonitoring => "add monitoring".into(),
            Step::UnpublishRoute => "remove route".into(),
            Step::RemoveDns => "remove DNS record".into(),
            Step::RemoveMonitoring => "remove monitoring".into(),
            Step::PullImage => "pull image".into(),
            Step::CreateAppContainer => "create app container".into(),
            Step::StartAppContainer => "start app container".into(),
            Step::CheckHealth => "check health".into(),
            Step::SwitchRoute => "switch route".into(),
            Step::RemoveOldContainer => "remove old container".into(),
            Step::RestartApp => "restart app".into(),
            Step::StopApp => "stop app".into(),
            Step::StartApp => "start app".into(),
            Step::RemoveAppContainers => "remove app containers".into(),
        }
    }

    pub fn parse(name: &str) -> Option<Step> {
        if let Some(rest) = name.strip_prefix("post-provision: ") {
            return Some(Step::PostProvision(rest.to_string()));
        }
        [
            Step::AllocateIp,
            Step::CreateContainer,
            Step::StartContainer,
            Step::AwaitAddress,
            Step::AddHa,
            Step::InitialSnapshot,
            Step::MarkReady,
            Step::RemoveHa,
            Step::Shutdown,
            Step::DeleteSnapshots,
            Step::DeleteContainer,
            Step::ReleaseAllocations,
            Step::Stop,
            Step::Start,
            Step::PublishRoute,
            Step::RegisterDns,
            Step::AddMonitoring,
            Step::UnpublishRoute,
            Step::RemoveDns,
            Step::RemoveMonitoring,
            Step::PullImage,
            Step::CreateAppContainer,
            Step::StartAppContainer,
            Step::CheckHealth,
            Step::SwitchRoute,
            Step::RemoveOldContainer,
            Step::RestartApp,
            Step::StopApp,
            Step::StartApp,
            Step::RemoveAppContainers,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// What a create plan depends on in the profile.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub static_ip: bool,
    pub ha: bool,
    pub post_provision: Vec<String>,
    pub initial_snapshot: bool,
    /// An HTTP route to a domain.
    pub route: bool,
    /// An A record for that domain.
    pub dns: bool,
    /// A Prometheus target.
    pub monitor: bool,
}

/// The steps of a job, in order.
pub fn plan(kind: JobKind, create: &CreateOptions) -> Vec<Step> {
    match kind {
        JobKind::Create => {
            let mut steps = Vec::new();
            if create.static_ip {
                steps.push(Step::AllocateIp);
            }
            steps.extend([
                Step::CreateContainer,
                Step::StartContainer,
                Step::AwaitAddress,
            ]);
            if create.ha {
                steps.push(Step::AddHa);
            }
            steps.extend(
                create
                    .post_provision
                    .iter()
                    .cloned()
                    .map(Step::PostProvision),
            );
            if create.route {
                steps.push(Step::PublishRoute);
            }
            if create.dns {
                steps.push(Step::RegisterDns);
            }
            if create.monitor {
                steps.push(Step::AddMonitoring);
            }
            if create.initial_snapshot {
                steps.push(Step::InitialSnapshot);
            }
            steps.push(Step::MarkReady);
            steps
        }
        JobKind::Destroy => vec![
            Step::RemoveMonitoring,
            Step::RemoveDns,
            Step::UnpublishRoute,
            Step::RemoveHa,
            Step::Shutdown,
            Step::DeleteSnapshots,
            Step::DeleteContainer,
            Step::ReleaseAllocations,
        ],
        JobKind::Start => vec![Step::Start],
        JobKind::Stop => vec![Step::Shutdown],
        JobKind::Restart => vec![Step::Shutdown, Step::Start],
        // Environments are not updated in place; apps plan their own (`domain::app::plan`).
        JobKind::Update => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_name_parses_back() {
        let all = plan(
            JobKind::Create,
            &CreateOptions {
                static_ip: true,
                ha: true,
                post_provision: vec!["install packages".into()],
                initial_snapshot: true,
                route: true,
                dns: true,
                monitor: true,
            },
        );
        for step in all
            .iter()
            .chain(plan(JobKind::Destroy, &CreateOptions::default()).iter())
        {
            assert_eq!(Step::parse(&step.name()).as_ref(), Some(step));
        }
    }

    #[test]
    fn a_plain_create_has_no_optional_steps() {
        let steps = plan(JobKind::Create, &CreateOptions::default());
        assert_eq!(
            steps,
            vec![
                Step::CreateContainer,
                Step::StartContainer,
                Step::AwaitAddress,
                Step::MarkReady
            ]
        );
    }

    #[test]
    fn ended_states_do_not_hold_quota() {
        for s in EnvState::ENDED {
            assert!(!EnvState::HOLDING.contains(s));
        }
        assert!(!EnvState::HOLDING.contains(&EnvState::PendingApproval));
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in EnvState::ALL {
            assert_eq!(EnvState::parse(s.as_str()), Some(*s));
        }
    }
}
