//! Apps: containers on a Docker host, deployed from an image reference. Pure:
//! the parsed image reference, environment variables with the secret-looking
//! ones redacted wherever they are shown, the safety check of what a container
//! may reach on its host, and the steps of an app's jobs.
//!
//! An app is stored as an environment of kind `app` (so it holds quota, waits
//! for approval, and runs jobs exactly as environments do); what only an app
//! has lives beside it in the `apps` table.
//!
//! The image reference is in `image`, environment variables and their
//! redaction in `env_vars`, the host-access check in `access`; this file has
//! what ties them to jobs.

mod access;
mod env_vars;
mod image;

pub use access::{check_access, AccessRules, HostAccess, Mount};
pub use env_vars::{is_secret, shown_value, EnvVars, REDACTED, RESERVED_KEYS};
pub use image::ImageRef;

use super::lifecycle::{JobKind, Step};

/// The `kind` of an environment row that is an app.
pub const APP_KIND: &str = "app";

/// The profile name an app's environment row carries (apps have no profile).
pub const APP_PROFILE: &str = "app";

/// Why a value was refused, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// What an app's deploy job does besides running the container.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppOptions {
    /// An HTTP route to a domain.
    pub route: bool,
    /// An A record for that domain.
    pub dns: bool,
}

impl AppOptions {
    /// What an app's jobs publish, for an app with or without a domain.
    pub fn for_app(
        has_domain: bool,
        publish: &crate::provider::publish::config::PublishConfig,
    ) -> AppOptions {
        AppOptions {
            route: has_domain && publish.router.is_some(),
            dns: has_domain && publish.dns.is_some(),
        }
    }
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
        // Apps follow their host's address through the host environment.
        JobKind::Readdress | JobKind::Access => {}
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
    fn every_app_step_name_parses_back() {
        let opts = AppOptions {
            route: true,
            dns: true,
        };
        for kind in JobKind::ALL.iter().copied() {
            let steps = plan(kind, opts);
            if matches!(kind, JobKind::Readdress | JobKind::Access) {
                assert!(steps.is_empty(), "apps follow their host, not a lease");
                continue;
            }
            assert!(!steps.is_empty(), "an app's {kind} job has no steps");
            for step in steps {
                assert_eq!(Step::from_id(&step.id()), Some(step));
            }
        }
    }
}
