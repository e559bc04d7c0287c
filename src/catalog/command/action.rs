//! The handlers a command may run, as a closed set: `action = "env.create"`
//! in `commands/*.toml` names one [`Action`], and each action declares the
//! options its handler reads ([`Action::options`]). At load time both are
//! checked against the definition files, so an unknown action or a renamed
//! or retyped option is a `slipway check` problem instead of a runtime
//! `None`.
//!
//! The action names below are the only place they are spelled out.

use super::{CommandSpec, OptionKind};
use crate::catalog::Problem;
use std::fmt;
use std::str::FromStr;

/// Declares [`Action`] with its names in one list, so that the enum, its
/// names and [`Action::ALL`] cannot drift apart.
macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// The handler a command runs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $( $(#[$doc])* $variant, )*
        }

        impl Action {
            /// Every action, in the order `slipway check` lists them.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// The name `commands/*.toml` uses, e.g. `env.create`.
            pub fn name(self) -> &'static str {
                match self {
                    $( Action::$variant => $name, )*
                }
            }
        }
    };
}

actions! {
    /// The command list.
    Help = "help",
    /// The workload profiles.
    Profiles = "profiles",
    /// Create an environment from a profile (or show the plan of one).
    EnvCreate = "env.create",
    /// The caller's teams' environments.
    EnvList = "env.list",
    /// One environment with its live state.
    EnvInfo = "env.info",
    EnvStart = "env.start",
    EnvStop = "env.stop",
    EnvRestart = "env.restart",
    EnvDestroy = "env.destroy",
    /// Lengthen an environment's lifetime.
    EnvExtend = "env.extend",
    /// Keep an environment with no expiry.
    EnvKeep = "env.keep",
    /// Push a person's SSH keys into a running environment.
    EnvAccessAdd = "env.access.add",
    /// Take a person's SSH keys out of an environment.
    EnvAccessRemove = "env.access.remove",
    /// A team's quota and use.
    Quota = "quota",
    /// Recent jobs.
    Jobs = "jobs",
    /// One job's steps and log.
    Job = "job",
    /// Grant a pending request.
    ApprovalApprove = "approval.approve",
    /// Refuse a pending request, with a reason.
    ApprovalDeny = "approval.deny",
    /// Run an image as an app on a Docker host.
    AppDeploy = "app.deploy",
    AppList = "app.list",
    AppInfo = "app.info",
    /// The last lines of an app's log.
    AppLogs = "app.logs",
    AppRestart = "app.restart",
    AppStop = "app.stop",
    AppStart = "app.start",
    /// Blue-green update to a new image.
    AppUpdate = "app.update",
    AppRemove = "app.remove",
    /// Add one of the caller's SSH public keys.
    KeysAdd = "keys.add",
    KeysList = "keys.list",
    /// Remove one of the caller's SSH public keys, by fingerprint.
    KeysRemove = "keys.remove",
}

/// An option a handler reads: the name and type the definition file must
/// declare it with, and whether the handler cannot run without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed {
    pub name: &'static str,
    pub kind: OptionKind,
    /// The definition must mark it `required = true`.
    pub required: bool,
}

const fn req(name: &'static str, kind: OptionKind) -> Needed {
    Needed {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: OptionKind) -> Needed {
    Needed {
        name,
        kind,
        required: false,
    }
}

use OptionKind::{Boolean, Choice, Duration, Integer, String as Text};

/// An existing environment or app, picked by name.
const NAME: Needed = req("name", Choice);
const TEAM: Needed = opt("team", Choice);
const KEY: Needed = req("key", Text);

const ENV_CREATE: [Needed; 9] = [
    req("profile", Choice),
    req("name", Text),
    opt("cpu", Integer),
    opt("memory", Integer),
    opt("disk", Integer),
    opt("ttl", Duration),
    TEAM,
    opt("domain", Text),
    opt("dry-run", Boolean),
];

const APP_DEPLOY: [Needed; 14] = [
    req("image", Text),
    req("name", Text),
    opt("env", Text),
    opt("port", Integer),
    opt("host", Text),
    opt("domain", Text),
    opt("cpu", Integer),
    opt("memory", Integer),
    opt("health", Text),
    TEAM,
    opt("volume", Text),
    opt("device", Text),
    opt("privileged", Boolean),
    opt("network", Choice),
];

impl Action {
    /// The options this action's handler reads. The definition file must
    /// declare exactly these, with these types.
    pub fn options(self) -> &'static [Needed] {
        use Action::*;
        const NONE: &[Needed] = &[];
        match self {
            Help | Profiles | EnvList | Jobs | AppList | KeysList => NONE,
            EnvCreate => &ENV_CREATE,
            EnvInfo | EnvStart | EnvStop | EnvRestart | EnvDestroy | EnvKeep => &[NAME],
            EnvExtend => const { &[NAME, req("by", Duration)] },
            Quota => &[TEAM],
            Job => const { &[req("id", Integer)] },
            ApprovalApprove => const { &[req("id", Integer), opt("override", Boolean)] },
            ApprovalDeny => const { &[req("id", Integer), opt("reason", Text)] },
            AppDeploy => &APP_DEPLOY,
            AppInfo | AppRestart | AppStop | AppStart | AppRemove => &[NAME],
            AppLogs => const { &[NAME, opt("lines", Integer)] },
            AppUpdate => const { &[NAME, req("image", Text)] },
            KeysAdd | KeysRemove => &[KEY],
            EnvAccessAdd | EnvAccessRemove => const { &[NAME, req("user", Text)] },
        }
    }

    /// The option `name` of this action, if its handler reads one.
    pub fn option(self, name: &str) -> Option<&'static Needed> {
        self.options().iter().find(|o| o.name == name)
    }

    /// Acts on environments (`/env …`): Discord answers these in an
    /// environment's status thread where it has one.
    pub fn on_environments(self) -> bool {
        use Action::*;
        matches!(
            self,
            EnvCreate
                | EnvList
                | EnvInfo
                | EnvStart
                | EnvStop
                | EnvRestart
                | EnvDestroy
                | EnvExtend
                | EnvKeep
                | EnvAccessAdd
                | EnvAccessRemove
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An `action` value no handler has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action '{}' is unknown; known: {}", .0, known())]
pub struct UnknownAction(pub String);

fn known() -> String {
    let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    names.join(", ")
}

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAction(s.to_string()))
    }
}

/// Checks a command's declared options against what its action's handler
/// reads: each read option declared, with its type, required where the
/// handler needs it; nothing declared that the handler would ignore.
pub(in crate::catalog) fn check_options(
    file: &str,
    spec: &CommandSpec,
    problems: &mut Vec<Problem>,
) {
    let where_ = spec.path.join(" ");
    let action = spec.action;
    let mut add =
        |message: String| problems.push(Problem::new(file, format!("{where_}: {message}")));
    for need in action.options() {
        let (kind, a_kind) = (need.kind.name(), a(need.kind));
        let Some(o) = spec.options.iter().find(|o| o.name == need.name) else {
            let required = if need.required {
                ", required = true"
            } else {
                ""
            };
            add(format!(
                "option '{}' is missing, and action {action} reads it as {a_kind}; declare it \
                 ({{ name = \"{}\", type = \"{kind}\"{required}, description = \"…\" }}), \
                 or give a renamed option its old name back",
                need.name, need.name
            ));
            continue;
        };
        if o.kind != need.kind {
            add(format!(
                "option '{}' is declared as {}, but action {action} reads it as {a_kind}; \
                 set type = \"{kind}\"",
                o.name,
                a(o.kind)
            ));
        }
        if need.required && !o.required {
            add(format!(
                "option '{}' is optional, but action {action} cannot run without it; \
                 set required = true",
                o.name
            ));
        }
    }
    for o in spec
        .options
        .iter()
        .filter(|o| action.option(&o.name).is_none())
    {
        let reads: Vec<&str> = action.options().iter().map(|n| n.name).collect();
        let reads = if reads.is_empty() {
            "none".to_string()
        } else {
            reads.join(", ")
        };
        add(format!(
            "option '{}' is not read by action {action}, so it would be ignored; remove it, \
             or rename it to one the action reads ({reads})",
            o.name
        ));
    }
}

/// "an integer", "a string": a type in a sentence.
fn a(kind: OptionKind) -> String {
    match kind {
        Integer => format!("an {}", kind.name()),
        _ => format!("a {}", kind.name()),
    }
}

#[cfg(test)]
mod tests;
