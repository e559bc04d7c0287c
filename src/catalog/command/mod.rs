//! Command definitions from `commands/*.toml` and the one parser that turns a
//! text line (`/env create profile:web-app name:shop ttl:3d`) into a typed
//! [`Invocation`]. Discord's slash-command definitions are generated from the
//! same [`CommandSpec`]s, so every platform accepts exactly the same commands.
//!
//! This module holds the validated specs and the parsed values; `load` reads
//! and checks the definition files, `parse` reads a line.

mod action;
mod load;
mod parse;

pub(super) use action::check_options;
pub use action::{Action, Needed, UnknownAction};
pub(super) use load::load_file;
pub use parse::{parse, ParseError};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    #[default]
    Member,
    Admin,
    /// Anyone, even without a team (help, profiles).
    Anyone,
}

/// The type of an option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    String,
    Integer,
    Boolean,
    Duration,
    Choice,
}

impl OptionKind {
    /// The name definition files use for it (`type = "integer"`).
    pub fn name(self) -> &'static str {
        match self {
            OptionKind::String => "string",
            OptionKind::Integer => "integer",
            OptionKind::Boolean => "boolean",
            OptionKind::Duration => "duration",
            OptionKind::Choice => "choice",
        }
    }
}

/// Where a choice option's allowed values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceSource {
    Profiles,
    Teams,
    /// The caller's environments: checked by the command's handler.
    Environments,
}

/// One option of a command, validated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OptionSpec {
    pub name: String,
    pub description: String,
    pub kind: OptionKind,
    pub required: bool,
    pub min: Option<i64>,
    pub max: Option<i64>,
    #[serde(skip)]
    pub regex: Option<regex::Regex>,
    pub max_length: Option<usize>,
    pub choices: Vec<String>,
    pub choices_from: Option<ChoiceSource>,
    pub rest: bool,
    /// May be given several times; never filled from a positional word.
    pub repeat: bool,
}

/// A runnable command: a top-level command without subcommands, or one subcommand.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandSpec {
    /// ["env", "create"] or ["quota"].
    pub path: Vec<String>,
    pub description: String,
    pub permission: Permission,
    /// The handler it runs.
    pub action: Action,
    /// Its reply is for the caller only (Discord defers it ephemerally).
    pub private: bool,
    pub options: Vec<OptionSpec>,
    /// Reply templates by outcome (minijinja).
    pub replies: BTreeMap<String, String>,
}

impl CommandSpec {
    pub fn display_path(&self) -> String {
        format!("/{}", self.path.join(" "))
    }

    /// A one-line usage: `/env create profile:<choice> name:<string> [ttl:<duration>]`.
    pub fn usage(&self) -> String {
        let mut out = self.display_path();
        for o in &self.options {
            let kind = match o.kind {
                OptionKind::String => "text",
                OptionKind::Integer => "number",
                OptionKind::Boolean => "true|false",
                OptionKind::Duration => "duration",
                OptionKind::Choice => "choice",
            };
            if o.repeat {
                out.push_str(&format!(" [{}:<{kind}> …]", o.name));
            } else if o.required {
                out.push_str(&format!(" {}:<{kind}>", o.name));
            } else {
                out.push_str(&format!(" [{}:<{kind}>]", o.name));
            }
        }
        out
    }
}

/// A top-level command with its description (for help and Discord groups).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandGroup {
    pub name: String,
    pub description: String,
    /// Runnable commands under it; one with path [name] if it has no subcommands.
    /// A leaf of a subcommand group has a path of three: [name, group, leaf].
    pub leaves: Vec<CommandSpec>,
    /// Subcommand groups (`/env access …`): name and description.
    pub subgroups: Vec<(String, String)>,
    pub file: String,
}

/// A typed option value.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Duration(Duration),
    /// Every value of a repeatable option, in the order given.
    Many(Vec<String>),
}

/// A parsed command: what to run with which values. The actor is added by the adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub command: String,
    pub action: Action,
    pub args: BTreeMap<String, ArgValue>,
}

impl Invocation {
    /// Handlers read only the options their action declares in
    /// [`Action::options`], as that is what the load-time check holds the
    /// definition files to: in debug builds, a handler reading anything else
    /// (or as another type) is a bug caught here. (Adapters and tests read
    /// the accessors below directly, and may ask any command for any name.)
    pub(crate) fn declared(&self, name: &str, kinds: &[OptionKind]) -> &Self {
        debug_assert!(
            self.action
                .option(name)
                .is_some_and(|o| kinds.contains(&o.kind)),
            "action {} reads option '{name}' as {kinds:?}, which Action::options does not declare",
            self.action
        );
        self
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.args.get(name) {
            Some(ArgValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.args.get(name) {
            Some(ArgValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// Every value of a repeatable option (none if it was not given).
    pub fn strs(&self, name: &str) -> Vec<&str> {
        match self.args.get(name) {
            Some(ArgValue::Many(v)) => v.iter().map(String::as_str).collect(),
            Some(ArgValue::Str(s)) => vec![s.as_str()],
            _ => Vec::new(),
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.args.get(name), Some(ArgValue::Bool(true)))
    }

    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.args.get(name) {
            Some(ArgValue::Duration(d)) => Some(*d),
            _ => None,
        }
    }
}

/// Values that choice options drawn from configuration may take.
#[derive(Debug, Clone, Default)]
pub struct ChoiceValues {
    pub profiles: Vec<String>,
    pub teams: Vec<String>,
}
