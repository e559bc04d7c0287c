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
        // The guest's DHCP address changed: its route, record and target follow.
        Readdress => "readdress",
        // A person's SSH keys go into or out of a running guest (`/env access`).
        Access => "access",
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

pub use super::step::Step;

/// What a create plan depends on in the profile.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub static_ip: bool,
    pub ha: bool,
    pub post_provision: Vec<String>,
    /// A post-provision step logs in to the guest (`{{ ssh.* }}`).
    pub reach_ssh: bool,
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
            if create.reach_ssh {
                steps.push(Step::ReachSsh);
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
        // Each step replaces what it published before, and skips what is not configured.
        JobKind::Readdress => vec![Step::PublishRoute, Step::RegisterDns, Step::AddMonitoring],
        // Whose keys, and in or out, is the request's: see `dispatch::access`.
        JobKind::Access => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_id_parses_back() {
        let all = plan(
            JobKind::Create,
            &CreateOptions {
                static_ip: true,
                ha: true,
                post_provision: vec!["install packages".into()],
                reach_ssh: true,
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
            assert_eq!(Step::from_id(&step.id()).as_ref(), Some(step));
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
