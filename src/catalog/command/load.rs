//! Loading `commands/*.toml`: the raw TOML shapes and their validation into
//! [`CommandGroup`]s, with every problem reported against its file.

use super::{Action, ChoiceSource, CommandGroup, CommandSpec, OptionKind, OptionSpec, Permission};
use crate::catalog::Problem;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    name: String,
    description: String,
    #[serde(rename = "type")]
    kind: OptionKind,
    #[serde(default)]
    required: bool,
    min: Option<i64>,
    max: Option<i64>,
    regex: Option<String>,
    max_length: Option<usize>,
    #[serde(default)]
    choices: Vec<String>,
    choices_from: Option<ChoiceSource>,
    /// The last positional option may take the rest of the line (a reason).
    #[serde(default)]
    rest: bool,
    /// A string option that may be given several times (`env:A=1 env:B=2`).
    #[serde(default)]
    repeat: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeaf {
    name: String,
    description: String,
    #[serde(default)]
    permission: Permission,
    action: Option<String>,
    /// The reply is for the caller only (Discord: an ephemeral answer).
    #[serde(default)]
    private: bool,
    #[serde(default)]
    options: Vec<RawOption>,
    #[serde(default)]
    subcommands: Vec<RawLeaf>,
    #[serde(default)]
    replies: BTreeMap<String, String>,
}

pub(in crate::catalog) fn load_file(
    path: &Path,
    problems: &mut Vec<Problem>,
) -> Option<CommandGroup> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::new(&file, format!("cannot read: {e}")));
            return None;
        }
    };
    let raw: RawLeaf = match toml::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            problems.push(Problem::new(&file, e.to_string().trim_end().to_string()));
            return None;
        }
    };
    let before = problems.len();
    let mut leaves = Vec::new();
    let mut subgroups = Vec::new();
    if raw.subcommands.is_empty() {
        if let Some(spec) = leaf(&file, vec![raw.name.clone()], &raw, problems) {
            leaves.push(spec);
        }
    } else {
        if !raw.options.is_empty() || raw.action.is_some() || raw.private {
            problems.push(Problem::new(
                &file,
                format!(
                    "command {}: has subcommands, so options, action and private belong to them",
                    raw.name
                ),
            ));
        }
        for sub in &raw.subcommands {
            if sub.subcommands.is_empty() {
                let path = vec![raw.name.clone(), sub.name.clone()];
                leaves.extend(leaf(&file, path, sub, problems));
            } else {
                subgroups.push(subgroup(&file, &raw.name, sub, &mut leaves, problems));
            }
        }
    }
    check_name(&file, &raw.name, problems);
    (problems.len() == before).then(|| CommandGroup {
        name: raw.name,
        description: raw.description,
        leaves,
        subgroups,
        file,
    })
}

/// A subcommand with subcommands of its own (Discord's subcommand group, e.g.
/// `/env access add`): its leaves go to `leaves`; returns its name and description.
fn subgroup(
    file: &str,
    command: &str,
    sub: &RawLeaf,
    leaves: &mut Vec<CommandSpec>,
    problems: &mut Vec<Problem>,
) -> (String, String) {
    check_name(file, &sub.name, problems);
    if !sub.options.is_empty() || sub.action.is_some() || sub.private {
        problems.push(Problem::new(
            file,
            format!(
                "{command} {}: has subcommands, so options, action and private belong to them",
                sub.name
            ),
        ));
    }
    for inner in &sub.subcommands {
        if !inner.subcommands.is_empty() {
            problems.push(Problem::new(
                file,
                format!(
                    "{command} {} {}: subcommands nest two levels only",
                    sub.name, inner.name
                ),
            ));
        }
        let path = vec![command.to_string(), sub.name.clone(), inner.name.clone()];
        leaves.extend(leaf(file, path, inner, problems));
    }
    (sub.name.clone(), sub.description.clone())
}

fn check_name(file: &str, name: &str, problems: &mut Vec<Problem>) {
    // Discord's rule for command and option names, which the other platforms share.
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        problems.push(Problem::new(
            file,
            format!("name '{name}': use 1-32 lower-case letters, digits, '-' or '_'"),
        ));
    }
}

fn leaf(
    file: &str,
    path: Vec<String>,
    raw: &RawLeaf,
    problems: &mut Vec<Problem>,
) -> Option<CommandSpec> {
    let where_ = path.join(" ");
    check_name(file, &raw.name, problems);
    let Some(value) = raw.action.as_deref() else {
        problems.push(Problem::new(
            file,
            format!("{where_}: missing `action` (the handler to run)"),
        ));
        return None;
    };
    let action = match value.parse::<Action>() {
        Ok(a) => a,
        Err(e) => {
            problems.push(Problem::new(file, format!("{where_}: {e}")));
            return None;
        }
    };
    if raw.description.is_empty() || raw.description.chars().count() > 100 {
        problems.push(Problem::new(
            file,
            format!("{where_}: description must be 1-100 characters"),
        ));
    }
    let mut seen_optional = false;
    let options = raw
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let last = i + 1 == raw.options.len();
            let spec = option(file, &where_, o, last, seen_optional, problems);
            seen_optional |= !o.required;
            spec
        })
        .collect();
    let mut env = minijinja::Environment::new();
    for (key, template) in &raw.replies {
        if let Err(e) = env.add_template_owned(key.clone(), template.clone()) {
            problems.push(Problem::new(
                file,
                format!("{where_}: reply {key}: template error: {e}"),
            ));
        }
    }
    Some(CommandSpec {
        path,
        description: raw.description.clone(),
        permission: raw.permission,
        action,
        private: raw.private,
        options,
        replies: raw.replies.clone(),
    })
}

/// Validates one option of the command at `where_`; `last`: it is the last
/// option, `after_optional`: an optional one comes before it.
fn option(
    file: &str,
    where_: &str,
    o: &RawOption,
    last: bool,
    after_optional: bool,
    problems: &mut Vec<Problem>,
) -> OptionSpec {
    check_name(file, &o.name, problems);
    let mut refuse = |why: &str| {
        problems.push(Problem::new(
            file,
            format!("{where_}: option {}: {why}", o.name),
        ))
    };
    let regex = match o.regex.as_deref().map(regex::Regex::new) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            refuse(&format!("bad regex: {e}"));
            None
        }
        None => None,
    };
    if o.kind == OptionKind::Choice && o.choices.is_empty() && o.choices_from.is_none() {
        refuse("a choice needs `choices` or `choices_from`");
    }
    if o.rest && (!last || o.kind != OptionKind::String) {
        refuse("only the last option, a string, may take the rest of the line");
    }
    if o.repeat && (o.kind != OptionKind::String || o.required || o.rest) {
        refuse("only an optional string option may repeat");
    }
    if o.required && after_optional {
        refuse("required options come before optional ones");
    }
    OptionSpec {
        name: o.name.clone(),
        description: o.description.clone(),
        kind: o.kind,
        required: o.required,
        min: o.min,
        max: o.max,
        regex,
        max_length: o.max_length,
        choices: o.choices.clone(),
        choices_from: o.choices_from,
        rest: o.rest,
        repeat: o.repeat,
    }
}
