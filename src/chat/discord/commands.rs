//! Slash commands, generated from the catalog (`commands/*.toml`): the JSON
//! Discord's bulk-overwrite endpoint takes, the reverse direction (an
//! interaction's typed options back to the one command line every platform
//! shares), and the choices autocomplete offers.

use super::sink::Rest;
use crate::catalog::command::{ChoiceSource, CommandGroup, CommandSpec, OptionKind, Permission};
use crate::catalog::Catalog;
use crate::chat::ChatError;
use serde_json::{json, Value};
use serenity::http::{LightMethod, Route};
use serenity::model::application::{CommandData, CommandDataOption, CommandDataOptionValue};
use serenity::model::id::{ApplicationId, GuildId};

/// Discord's option types.
const SUB_COMMAND: u8 = 1;
const SUB_COMMAND_GROUP: u8 = 2;
const STRING: u8 = 3;
const INTEGER: u8 = 4;
const BOOLEAN: u8 = 5;
/// InteractionContextType GUILD: roles, and so teams, exist only in a guild.
const GUILD: u8 = 0;
/// Discord shows at most 25 choices.
const MAX_CHOICES: usize = 25;

fn option(o: &crate::catalog::command::OptionSpec, teams: &[String]) -> Value {
    let mut v = json!({
        "name": o.name,
        "description": super::sink::clip(&o.description, 100),
        "required": o.required,
    });
    match o.kind {
        OptionKind::String => {
            v["type"] = json!(STRING);
            if let Some(max) = o.max_length {
                v["max_length"] = json!(max.clamp(1, 6000));
            }
        }
        OptionKind::Duration => v["type"] = json!(STRING),
        OptionKind::Integer => {
            v["type"] = json!(INTEGER);
            if let Some(min) = o.min {
                v["min_value"] = json!(min);
            }
            if let Some(max) = o.max {
                v["max_value"] = json!(max);
            }
        }
        OptionKind::Boolean => v["type"] = json!(BOOLEAN),
        OptionKind::Choice => {
            v["type"] = json!(STRING);
            let fixed: Option<&[String]> = match o.choices_from {
                None => Some(&o.choices),
                Some(ChoiceSource::Teams) if teams.len() <= MAX_CHOICES => Some(teams),
                _ => None,
            };
            match fixed.filter(|c| c.len() <= MAX_CHOICES) {
                Some(list) => {
                    v["choices"] = list
                        .iter()
                        .map(|c| json!({"name": c, "value": c}))
                        .collect();
                }
                // Profiles, environments, or too many to list: ask as the user types.
                None => v["autocomplete"] = json!(true),
            }
        }
    }
    v
}

fn options(spec: &CommandSpec, teams: &[String]) -> Value {
    spec.options.iter().map(|o| option(o, teams)).collect()
}

fn group(g: &CommandGroup, teams: &[String]) -> Value {
    let mut v = json!({
        "name": g.name,
        "type": 1,
        "description": super::sink::clip(&g.description, 100),
        "contexts": [GUILD],
    });
    if g.leaves.len() == 1 && g.leaves[0].path.len() == 1 {
        v["options"] = options(&g.leaves[0], teams);
    } else {
        v["options"] = Value::Array(subcommands(g, teams));
    }
    // Discord sets permissions per top-level command: hide a command from
    // everyone but server admins when all its parts are for team admins; a
    // server admin can grant it to the team-admin roles (Integrations). The
    // dispatcher checks the team either way.
    if g.leaves.iter().all(|l| l.permission == Permission::Admin) {
        v["default_member_permissions"] = json!(0);
    }
    v
}

fn subcommand(leaf: &CommandSpec, teams: &[String]) -> Value {
    json!({
        "type": SUB_COMMAND,
        "name": leaf.path.last(),
        "description": super::sink::clip(&leaf.description, 100),
        "options": options(leaf, teams),
    })
}

/// A command's subcommands, with those of a group (`/env access add`) inside
/// a SUB_COMMAND_GROUP where the group's first leaf stands.
fn subcommands(g: &CommandGroup, teams: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for leaf in &g.leaves {
        if leaf.path.len() == 2 {
            out.push(subcommand(leaf, teams));
            continue;
        }
        let name = &leaf.path[1];
        if out.iter().any(|o| o["name"] == json!(name)) {
            continue;
        }
        let description = g
            .subgroups
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, d)| d.as_str());
        let inner: Vec<Value> = g
            .leaves
            .iter()
            .filter(|l| l.path.len() == 3 && l.path[1] == *name)
            .map(|l| subcommand(l, teams))
            .collect();
        out.push(json!({
            "type": SUB_COMMAND_GROUP,
            "name": name,
            "description": super::sink::clip(description, 100),
            "options": inner,
        }));
    }
    out
}

/// The application-command definitions for the whole catalog.
pub fn definitions(catalog: &Catalog) -> Value {
    catalog
        .groups
        .iter()
        .map(|g| group(g, &catalog.choices.teams))
        .collect()
}

/// Overwrites the commands of `guild` (or the global ones) with `defs`;
/// returns how many Discord now has.
pub async fn sync(rest: &Rest, guild: Option<u64>, defs: &Value) -> Result<usize, ChatError> {
    let application_id = ApplicationId::new(rest.application_id.max(1));
    let route = match guild {
        Some(g) => Route::GuildCommands {
            application_id,
            guild_id: GuildId::new(g.max(1)),
        },
        None => Route::Commands { application_id },
    };
    let answer = rest
        .call("sync commands", LightMethod::Put, route, Some(defs), None)
        .await?;
    Ok(answer
        .as_ref()
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0))
}

fn value_text(v: &CommandDataOptionValue) -> Option<String> {
    match v {
        CommandDataOptionValue::String(s) => Some(s.clone()),
        CommandDataOptionValue::Integer(i) => Some(i.to_string()),
        CommandDataOptionValue::Boolean(b) => Some(b.to_string()),
        CommandDataOptionValue::Number(n) => Some(n.to_string()),
        CommandDataOptionValue::Autocomplete { value, .. } => Some(value.clone()),
        _ => None,
    }
}

fn push_options(line: &mut String, opts: &[CommandDataOption]) {
    for o in opts {
        match &o.value {
            CommandDataOptionValue::SubCommand(inner)
            | CommandDataOptionValue::SubCommandGroup(inner) => {
                line.push(' ');
                line.push_str(&o.name);
                push_options(line, inner);
            }
            v => {
                if let Some(text) = value_text(v) {
                    // One quoted word per option: spaces and quotes in values survive.
                    line.push(' ');
                    line.push_str(&shell_words::quote(&format!("{}:{text}", o.name)));
                }
            }
        }
    }
}

/// The command line a slash command stands for, e.g.
/// `/env create profile:web-app name:shop`: the dispatcher parses and types it
/// exactly as it does a line typed on another platform.
pub fn command_line(data: &CommandData) -> String {
    let mut line = format!("/{}", data.name);
    push_options(&mut line, &data.options);
    line
}

/// Where the focused option of an autocomplete draws its values from.
pub fn choice_source(catalog: &Catalog, data: &CommandData, option: &str) -> Option<ChoiceSource> {
    let mut path = vec![data.name.as_str()];
    let mut level = &data.options;
    while let Some((name, inner)) = level.iter().find_map(|o| match &o.value {
        CommandDataOptionValue::SubCommand(inner)
        | CommandDataOptionValue::SubCommandGroup(inner) => Some((o.name.as_str(), inner)),
        _ => None,
    }) {
        path.push(name);
        level = inner;
    }
    let spec = catalog.commands().find(|c| c.path == path)?;
    spec.options
        .iter()
        .find(|o| o.name == option)
        .and_then(|o| o.choices_from)
}

/// The autocomplete answer: names containing what was typed, at most 25.
pub fn choices(names: impl IntoIterator<Item = String>, typed: &str) -> Value {
    let typed = typed.to_lowercase();
    let list: Vec<Value> = names
        .into_iter()
        .filter(|n| n.to_lowercase().contains(&typed))
        .take(MAX_CHOICES)
        .map(|n| json!({"name": n, "value": n}))
        .collect();
    json!({ "type": 8, "data": { "choices": list } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(v: Value) -> CommandData {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_subcommand_with_typed_options_becomes_one_command_line() {
        let d = data(json!({
            "id": "1", "name": "env", "type": 1,
            "options": [{"name": "create", "type": 1, "options": [
                {"name": "profile", "type": 3, "value": "web-app"},
                {"name": "name", "type": 3, "value": "my shop"},
                {"name": "cpu", "type": 4, "value": 2},
                {"name": "dry-run", "type": 5, "value": true},
            ]}],
        }));
        assert_eq!(
            command_line(&d),
            "/env create profile:web-app 'name:my shop' cpu:2 dry-run:true"
        );
    }

    #[test]
    fn a_value_with_a_quote_survives_the_round_trip() {
        let d = data(json!({
            "id": "1", "name": "deny", "type": 1,
            "options": [
                {"name": "id", "type": 4, "value": 3},
                {"name": "reason", "type": 3, "value": "it's too big"},
            ],
        }));
        let line = command_line(&d);
        assert_eq!(
            shell_words::split(&line).unwrap(),
            vec!["/deny", "id:3", "reason:it's too big"]
        );
    }

    #[test]
    fn autocomplete_offers_matching_names_only() {
        let v = choices(vec!["shop".into(), "blog".into(), "shop-2".into()], "SHO");
        let names: Vec<&str> = v["data"]["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["shop", "shop-2"]);
    }
}
