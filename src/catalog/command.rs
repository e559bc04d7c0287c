//! Command definitions from `commands/*.toml` and the one parser that turns a
//! text line (`/env create profile:web-app name:shop ttl:3d`) into a typed
//! [`Invocation`]. Discord's slash-command definitions are generated from the
//! same [`CommandSpec`]s, so every platform accepts exactly the same commands.

use super::Problem;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
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

/// Where a choice option's allowed values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceSource {
    Profiles,
    Teams,
    /// The caller's environments: checked by the command's handler.
    Environments,
}

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
    #[serde(default)]
    options: Vec<RawOption>,
    #[serde(default)]
    subcommands: Vec<RawLeaf>,
    #[serde(default)]
    replies: BTreeMap<String, String>,
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
    /// The handler's name, e.g. `env.create`.
    pub action: String,
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
    pub leaves: Vec<CommandSpec>,
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
    pub action: String,
    pub args: BTreeMap<String, ArgValue>,
}

impl Invocation {
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

pub(super) fn load_file(path: &Path, problems: &mut Vec<Problem>) -> Option<CommandGroup> {
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
    if raw.subcommands.is_empty() {
        if let Some(spec) = leaf(&file, vec![raw.name.clone()], &raw, problems) {
            leaves.push(spec);
        }
    } else {
        if !raw.options.is_empty() || raw.action.is_some() {
            problems.push(Problem::new(
                &file,
                format!(
                    "command {}: has subcommands, so options and action belong to them",
                    raw.name
                ),
            ));
        }
        for sub in &raw.subcommands {
            if !sub.subcommands.is_empty() {
                problems.push(Problem::new(
                    &file,
                    format!("{} {}: subcommands nest one level only", raw.name, sub.name),
                ));
            }
            let path = vec![raw.name.clone(), sub.name.clone()];
            if let Some(spec) = leaf(&file, path, sub, problems) {
                leaves.push(spec);
            }
        }
    }
    check_name(&file, &raw.name, problems);
    (problems.len() == before).then(|| CommandGroup {
        name: raw.name,
        description: raw.description,
        leaves,
        file,
    })
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
    let Some(action) = raw.action.clone() else {
        problems.push(Problem::new(
            file,
            format!("{where_}: missing `action` (the handler to run)"),
        ));
        return None;
    };
    if raw.description.is_empty() || raw.description.chars().count() > 100 {
        problems.push(Problem::new(
            file,
            format!("{where_}: description must be 1-100 characters"),
        ));
    }
    let mut options = Vec::new();
    let mut seen_optional = false;
    for (i, o) in raw.options.iter().enumerate() {
        check_name(file, &o.name, problems);
        let regex = match o.regex.as_deref().map(regex::Regex::new) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                problems.push(Problem::new(
                    file,
                    format!("{where_}: option {}: bad regex: {e}", o.name),
                ));
                None
            }
            None => None,
        };
        if o.kind == OptionKind::Choice && o.choices.is_empty() && o.choices_from.is_none() {
            problems.push(Problem::new(
                file,
                format!(
                    "{where_}: option {}: a choice needs `choices` or `choices_from`",
                    o.name
                ),
            ));
        }
        if o.rest && (i + 1 != raw.options.len() || o.kind != OptionKind::String) {
            problems.push(Problem::new(
                file,
                format!(
                    "{where_}: option {}: only the last option, a string, may take the rest of the line",
                    o.name
                ),
            ));
        }
        if o.repeat && (o.kind != OptionKind::String || o.required || o.rest) {
            problems.push(Problem::new(
                file,
                format!(
                    "{where_}: option {}: only an optional string option may repeat",
                    o.name
                ),
            ));
        }
        if o.required && seen_optional {
            problems.push(Problem::new(
                file,
                format!(
                    "{where_}: option {}: required options come before optional ones",
                    o.name
                ),
            ));
        }
        seen_optional |= !o.required;
        options.push(OptionSpec {
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
        });
    }
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
        options,
        replies: raw.replies.clone(),
    })
}

/// Why a line did not parse, for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Splits a line into words, honouring quotes; never runs anything.
fn words(line: &str) -> Result<Vec<String>, ParseError> {
    shell_words::split(line).map_err(|_| {
        ParseError("a quote is not closed: close it, or leave quotes out of the value".into())
    })
}

/// Finds the command a line names and parses its options.
pub fn parse(
    groups: &[CommandGroup],
    choices: &ChoiceValues,
    line: &str,
) -> Result<(CommandSpec, Invocation), ParseError> {
    let line = line.trim();
    let body = line
        .strip_prefix('/')
        .or_else(|| line.strip_prefix('!'))
        .unwrap_or(line);
    let words = words(body)?;
    let Some(first) = words.first() else {
        return Err(ParseError("type a command, e.g. /help".into()));
    };
    let Some(group) = groups.iter().find(|g| g.name == *first) else {
        return Err(ParseError(format!(
            "unknown command {}; /help lists the commands",
            crate::domain::names::shown(&format!("/{first}"))
        )));
    };
    let (spec, rest) = if group.leaves.len() == 1 && group.leaves[0].path.len() == 1 {
        (&group.leaves[0], &words[1..])
    } else {
        let names: Vec<&str> = group.leaves.iter().map(|l| l.path[1].as_str()).collect();
        let Some(sub) = words.get(1) else {
            return Err(ParseError(format!(
                "/{} needs a subcommand: {}",
                group.name,
                names.join(", ")
            )));
        };
        let Some(spec) = group.leaves.iter().find(|l| l.path[1] == *sub) else {
            return Err(ParseError(format!(
                "/{} has no subcommand {}; try one of: {}",
                group.name,
                crate::domain::names::shown(sub),
                names.join(", ")
            )));
        };
        (spec, &words[2..])
    };
    let args = parse_args(spec, choices, rest)?;
    Ok((
        spec.clone(),
        Invocation {
            command: spec.path.join(" "),
            action: spec.action.clone(),
            args,
        },
    ))
}

fn parse_args(
    spec: &CommandSpec,
    choices: &ChoiceValues,
    words: &[String],
) -> Result<BTreeMap<String, ArgValue>, ParseError> {
    let mut raw: BTreeMap<&str, String> = BTreeMap::new();
    let mut many: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, word) in words.iter().enumerate() {
        if let Some((key, value)) = word.split_once(':') {
            if let Some(opt) = spec.options.iter().find(|o| o.name == key) {
                if opt.repeat {
                    many.entry(opt.name.as_str())
                        .or_default()
                        .push(value.to_string());
                    continue;
                }
                if raw.insert(opt.name.as_str(), value.to_string()).is_some() {
                    return Err(ParseError(format!("{key}: given twice; give it once")));
                }
                continue;
            }
        }
        let Some(opt) = spec
            .options
            .iter()
            .find(|o| !o.repeat && !raw.contains_key(o.name.as_str()))
        else {
            return Err(ParseError(format!(
                "{}: unexpected {}; usage: {}",
                spec.display_path(),
                crate::domain::names::shown(word),
                spec.usage()
            )));
        };
        if opt.rest {
            raw.insert(opt.name.as_str(), words[i..].join(" "));
            break;
        }
        raw.insert(opt.name.as_str(), word.clone());
    }
    let mut out = BTreeMap::new();
    for opt in &spec.options {
        if let Some(values) = many.remove(opt.name.as_str()) {
            for v in &values {
                typed(opt, choices, v)?;
            }
            out.insert(opt.name.clone(), ArgValue::Many(values));
            continue;
        }
        match raw.get(opt.name.as_str()) {
            Some(value) => {
                out.insert(opt.name.clone(), typed(opt, choices, value)?);
            }
            None if opt.required => {
                return Err(ParseError(format!(
                    "{}: missing {}:<{}> ({}); usage: {}",
                    spec.display_path(),
                    opt.name,
                    format!("{:?}", opt.kind).to_lowercase(),
                    opt.description,
                    spec.usage()
                )))
            }
            None => {}
        }
    }
    Ok(out)
}

fn typed(opt: &OptionSpec, choices: &ChoiceValues, value: &str) -> Result<ArgValue, ParseError> {
    let name = &opt.name;
    let shown = crate::domain::names::shown(value);
    match opt.kind {
        OptionKind::String => {
            if let Some(max) = opt.max_length {
                if value.chars().count() > max {
                    return Err(ParseError(format!(
                        "{name}: {} characters is more than the {max} allowed",
                        value.chars().count()
                    )));
                }
            }
            if value.chars().any(char::is_control) {
                return Err(ParseError(format!(
                    "{name}: {shown} contains control characters"
                )));
            }
            if let Some(re) = &opt.regex {
                if !re.is_match(value) {
                    return Err(ParseError(format!(
                        "{name}: {shown} does not have the expected form ({})",
                        opt.description
                    )));
                }
            }
            Ok(ArgValue::Str(value.to_string()))
        }
        OptionKind::Integer => {
            let n: i64 = value
                .parse()
                .map_err(|_| ParseError(format!("{name}: {shown} is not a whole number")))?;
            if let Some(min) = opt.min.filter(|min| n < *min) {
                return Err(ParseError(format!(
                    "{name}: {n} is below the minimum of {min}"
                )));
            }
            if let Some(max) = opt.max.filter(|max| n > *max) {
                return Err(ParseError(format!(
                    "{name}: {n} is above the maximum of {max}"
                )));
            }
            Ok(ArgValue::Int(n))
        }
        OptionKind::Boolean => match value {
            "true" | "yes" | "on" | "1" => Ok(ArgValue::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(ArgValue::Bool(false)),
            _ => Err(ParseError(format!("{name}: {shown} is not true or false"))),
        },
        OptionKind::Duration => humantime::parse_duration(value)
            .map(ArgValue::Duration)
            .map_err(|_| {
                ParseError(format!(
                    "{name}: {shown} is not a duration; write e.g. 3d, 12h or 1w"
                ))
            }),
        OptionKind::Choice => {
            let allowed: &[String] = match opt.choices_from {
                Some(ChoiceSource::Profiles) => &choices.profiles,
                Some(ChoiceSource::Teams) => &choices.teams,
                Some(ChoiceSource::Environments) => return Ok(ArgValue::Str(value.to_string())),
                None => &opt.choices,
            };
            if allowed.iter().any(|c| c == value) {
                Ok(ArgValue::Str(value.to_string()))
            } else {
                Err(ParseError(format!(
                    "{name}: {shown} is not one of: {}",
                    allowed.join(", ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<CommandGroup> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("env.toml"),
            r#"
name = "env"
description = "Environments"
[[subcommands]]
name = "create"
description = "Create one"
action = "env.create"
options = [
  { name = "profile", description = "profile", type = "choice", choices_from = "profiles", required = true },
  { name = "name", description = "hostname", type = "string", required = true, max_length = 63 },
  { name = "cpu", description = "cores", type = "integer", min = 1, max = 64 },
  { name = "ttl", description = "lifetime", type = "duration" },
  { name = "dry-run", description = "plan only", type = "boolean" },
  { name = "env", description = "KEY=VALUE", type = "string", repeat = true, max_length = 20 },
]
"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("deny.toml"),
            r#"
name = "deny"
description = "Deny a request"
action = "approval.deny"
permission = "admin"
options = [
  { name = "id", description = "request id", type = "integer", required = true },
  { name = "reason", description = "why", type = "string", required = true, rest = true },
]
"#,
        )
        .unwrap();
        let mut problems = Vec::new();
        let mut out = Vec::new();
        for f in ["env.toml", "deny.toml"] {
            out.push(load_file(&dir.path().join(f), &mut problems).unwrap());
        }
        assert!(problems.is_empty(), "{problems:?}");
        out
    }

    fn choices() -> ChoiceValues {
        ChoiceValues {
            profiles: vec!["web-app".into()],
            teams: vec![],
        }
    }

    #[test]
    fn named_options_are_typed() {
        let (_, inv) = parse(
            &groups(),
            &choices(),
            "/env create profile:web-app name:shop cpu:2 ttl:3d",
        )
        .unwrap();
        assert_eq!(inv.action, "env.create");
        assert_eq!(inv.int("cpu"), Some(2));
        assert_eq!(inv.duration("ttl"), Some(Duration::from_secs(3 * 86400)));
    }

    #[test]
    fn a_repeatable_option_keeps_every_value_in_order() {
        let (_, inv) = parse(
            &groups(),
            &choices(),
            "/env create web-app shop env:A=1 env:B=x:y \"env:C=two words\"",
        )
        .unwrap();
        assert_eq!(inv.strs("env"), vec!["A=1", "B=x:y", "C=two words"]);
        assert_eq!(inv.str("name"), Some("shop"));
    }

    #[test]
    fn each_value_of_a_repeatable_option_is_checked() {
        let err = parse(
            &groups(),
            &choices(),
            &format!("/env create web-app shop env:A=1 env:B={}", "x".repeat(30)),
        )
        .unwrap_err();
        assert!(err.0.contains("more than the 20 allowed"), "{err}");
    }

    #[test]
    fn the_matrix_prefix_and_positional_values_work() {
        let (_, inv) = parse(&groups(), &choices(), "!env create web-app shop").unwrap();
        assert_eq!(inv.str("name"), Some("shop"));
    }

    #[test]
    fn a_rest_option_takes_the_rest_of_the_line() {
        let (_, inv) = parse(&groups(), &choices(), "/deny 12 not needed: use staging").unwrap();
        assert_eq!(inv.int("id"), Some(12));
        assert_eq!(inv.str("reason"), Some("not needed: use staging"));
    }

    #[test]
    fn quoted_values_keep_their_spaces() {
        let (_, inv) = parse(&groups(), &choices(), r#"/deny id:3 reason:"too big""#).unwrap();
        assert_eq!(inv.str("reason"), Some("too big"));
    }

    #[test]
    fn an_unknown_profile_lists_the_known_ones() {
        let err = parse(&groups(), &choices(), "/env create profile:nope name:x").unwrap_err();
        assert_eq!(err.0, "profile: 'nope' is not one of: web-app");
    }

    #[test]
    fn an_integer_above_the_maximum_says_so() {
        let err = parse(&groups(), &choices(), "/env create web-app x cpu:65").unwrap_err();
        assert_eq!(err.0, "cpu: 65 is above the maximum of 64");
    }

    #[test]
    fn a_missing_required_option_shows_usage() {
        let err = parse(&groups(), &choices(), "/env create profile:web-app").unwrap_err();
        assert!(err.0.contains("missing name:<string>"), "{err}");
    }

    #[test]
    fn an_unknown_command_points_to_help() {
        let err = parse(&groups(), &choices(), "/rm -rf").unwrap_err();
        assert!(err.0.contains("/help"), "{err}");
    }

    #[test]
    fn an_unclosed_quote_is_an_error_not_a_panic() {
        assert!(parse(&groups(), &choices(), "/deny 1 \"oops").is_err());
    }

    #[test]
    fn a_bad_duration_suggests_the_form() {
        let err = parse(&groups(), &choices(), "/env create web-app x ttl:forever").unwrap_err();
        assert!(err.0.contains("3d"), "{err}");
    }
}
