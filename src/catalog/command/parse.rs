//! The one parser from a chat line to an [`Invocation`]: quote-aware word
//! splitting (never a shell), the command and subcommand lookup, named and
//! positional options, and typed values checked against their spec.

use super::{
    ArgValue, ChoiceSource, ChoiceValues, CommandGroup, CommandSpec, Invocation, OptionKind,
    OptionSpec,
};
use std::collections::BTreeMap;

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
        let mut names: Vec<&str> = group.leaves.iter().map(|l| l.path[1].as_str()).collect();
        names.dedup();
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
        if spec.path.len() == 3 {
            return in_subgroup(group, choices, sub, &words[2..]);
        }
        (spec, &words[2..])
    };
    let args = parse_args(spec, choices, rest)?;
    Ok((
        spec.clone(),
        Invocation {
            command: spec.path.join(" "),
            action: spec.action,
            args,
        },
    ))
}

/// `/env access add …`: the leaf of subcommand group `sub` named by the first of `words`.
fn in_subgroup(
    group: &CommandGroup,
    choices: &ChoiceValues,
    sub: &str,
    words: &[String],
) -> Result<(CommandSpec, Invocation), ParseError> {
    let inner: Vec<&CommandSpec> = group.leaves.iter().filter(|l| l.path[1] == sub).collect();
    let names: Vec<&str> = inner.iter().map(|l| l.path[2].as_str()).collect();
    let Some(word) = words.first() else {
        return Err(ParseError(format!(
            "/{} {sub} needs a subcommand: {}",
            group.name,
            names.join(", ")
        )));
    };
    let Some(spec) = inner.iter().find(|l| l.path[2] == *word) else {
        return Err(ParseError(format!(
            "/{} {sub} has no subcommand {}; try one of: {}",
            group.name,
            crate::domain::names::shown(word),
            names.join(", ")
        )));
    };
    let args = parse_args(spec, choices, &words[1..])?;
    Ok((
        (*spec).clone(),
        Invocation {
            command: spec.path.join(" "),
            action: spec.action,
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
    // Options named anywhere on the line: positional words fill the others.
    let named: Vec<&str> = words
        .iter()
        .filter_map(|w| w.split_once(':').map(|(k, _)| k))
        .filter(|k| spec.options.iter().any(|o| o.name == *k))
        .collect();
    for (i, word) in words.iter().enumerate() {
        let slot = spec.options.iter().find(|o| {
            !o.repeat && !raw.contains_key(o.name.as_str()) && !named.contains(&o.name.as_str())
        });
        misnamed(spec, word, slot)?;
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
        let Some(opt) = slot else {
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
                    opt.kind.name(),
                    opt.description,
                    spec.usage()
                )))
            }
            None => {}
        }
    }
    Ok(out)
}

/// An option the command does not have (`dryrun:true`, `colour:red`) or a
/// flag without its value (a bare `dry-run`), instead of being taken as the
/// value of the next positional option. `slot` is where a positional word
/// would go: a text option there keeps words like `nginx:1.25` as values,
/// unless the key is close to one of the command's options.
fn misnamed(spec: &CommandSpec, word: &str, slot: Option<&OptionSpec>) -> Result<(), ParseError> {
    let names: Vec<&str> = spec.options.iter().map(|o| o.name.as_str()).collect();
    let listed = || {
        if names.is_empty() {
            "It takes no options.".to_string()
        } else {
            format!("Its options: {}.", names.join(", "))
        }
    };
    if let Some(flag) = spec
        .options
        .iter()
        .find(|o| o.kind == OptionKind::Boolean && o.name == word)
    {
        return Err(ParseError(format!(
            "{}: give {} a value: {}:true; usage: {}",
            spec.display_path(),
            flag.name,
            flag.name,
            spec.usage()
        )));
    }
    let Some((key, _)) = word.split_once(':') else {
        return Ok(());
    };
    let option_like = !key.is_empty()
        && key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !option_like || names.contains(&key) {
        return Ok(());
    }
    let near = names.iter().copied().find(|n| similar(n, key));
    let takes_text = slot.is_some_and(|o| o.kind == OptionKind::String);
    if takes_text && near.is_none() {
        return Ok(());
    }
    let hint = near
        .map(|n| format!("; did you mean {n}?"))
        .unwrap_or_else(|| ".".into());
    Err(ParseError(format!(
        "unknown option {key} for {}{hint} {}",
        spec.display_path(),
        listed()
    )))
}

/// The same name but for '-'/'_', case or a typo of at most two letters.
fn similar(known: &str, typed: &str) -> bool {
    let plain = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let (a, b) = (plain(known), plain(typed));
    a == b || (a.len().min(b.len()) > 3 && edit_distance(&a, &b) <= 2)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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
    use super::super::load::load_file;
    use super::super::Action;
    use super::*;
    use std::time::Duration;

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
action = "ENV_CREATE"
options = [
  { name = "profile", description = "profile", type = "choice", choices_from = "profiles", required = true },
  { name = "name", description = "hostname", type = "string", required = true, max_length = 63 },
  { name = "cpu", description = "cores", type = "integer", min = 1, max = 64 },
  { name = "ttl", description = "lifetime", type = "duration" },
  { name = "dry-run", description = "plan only", type = "boolean" },
]
"#
            .replace("ENV_CREATE", Action::EnvCreate.name()),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("app.toml"),
            r#"
name = "app"
description = "Apps"
[[subcommands]]
name = "deploy"
description = "Deploy one"
action = "APP_DEPLOY"
options = [
  { name = "image", description = "image", type = "string", required = true },
  { name = "name", description = "app name", type = "string", required = true },
  { name = "env", description = "KEY=VALUE", type = "string", repeat = true, max_length = 20 },
]
"#
            .replace("APP_DEPLOY", Action::AppDeploy.name()),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("deny.toml"),
            r#"
name = "deny"
description = "Deny a request"
action = "APPROVAL_DENY"
permission = "admin"
options = [
  { name = "id", description = "request id", type = "integer", required = true },
  { name = "reason", description = "why", type = "string", required = true, rest = true },
]
"#
            .replace("APPROVAL_DENY", Action::ApprovalDeny.name()),
        )
        .unwrap();
        let mut problems = Vec::new();
        let mut out = Vec::new();
        for f in ["env.toml", "app.toml", "deny.toml"] {
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

    fn error(line: &str) -> String {
        parse(&groups(), &choices(), line).unwrap_err().0
    }

    #[test]
    fn an_unknown_option_is_named_with_the_one_meant() {
        let e = error("/env create profile:web-app name:shop dryrun:true");
        assert_eq!(
            e,
            "unknown option dryrun for /env create; did you mean dry-run? Its options: profile, name, cpu, ttl, dry-run."
        );
        let e = error("/env create profile:web-app name:shop colour:red");
        assert!(
            e.starts_with("unknown option colour for /env create. Its options: profile"),
            "{e}"
        );
        // Before the positional words it would otherwise have taken.
        let e = error("/env create colour:red web-app shop");
        assert!(e.starts_with("unknown option colour"), "{e}");
    }

    #[test]
    fn a_bare_flag_asks_for_its_value() {
        let e = error("/env create profile:web-app name:shop dry-run");
        assert!(
            e.starts_with("/env create: give dry-run a value: dry-run:true"),
            "{e}"
        );
    }

    #[test]
    fn values_with_a_colon_still_fill_text_options() {
        let (_, inv) = parse(&groups(), &choices(), "/app deploy nginx:1.25 shop").unwrap();
        assert_eq!(inv.str("image"), Some("nginx:1.25"));
        let (_, inv) = parse(&groups(), &choices(), "/deny 3 note: not now").unwrap();
        assert_eq!(inv.str("reason"), Some("note: not now"));
    }

    #[test]
    fn a_positional_word_fills_an_option_not_named_later() {
        let (_, inv) = parse(&groups(), &choices(), "/env create shop profile:web-app").unwrap();
        assert_eq!(inv.str("name"), Some("shop"));
    }

    #[test]
    fn named_options_are_typed() {
        let (_, inv) = parse(
            &groups(),
            &choices(),
            "/env create profile:web-app name:shop cpu:2 ttl:3d",
        )
        .unwrap();
        assert_eq!(inv.action, Action::EnvCreate);
        assert_eq!(inv.int("cpu"), Some(2));
        assert_eq!(inv.duration("ttl"), Some(Duration::from_secs(3 * 86400)));
    }

    #[test]
    fn a_repeatable_option_keeps_every_value_in_order() {
        let (_, inv) = parse(
            &groups(),
            &choices(),
            "/app deploy nginx shop env:A=1 env:B=x:y \"env:C=two words\"",
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
            &format!("/app deploy nginx shop env:A=1 env:B={}", "x".repeat(30)),
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
