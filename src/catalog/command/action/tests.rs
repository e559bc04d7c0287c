use super::*;
use crate::catalog::{Catalog, Problem};
use std::path::{Path, PathBuf};

fn repo(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

/// The shipped commands in a temporary directory, `file` edited by `edit`.
fn commands_with(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo("commands")).unwrap() {
        let p = e.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        if p.file_name().unwrap() == file {
            let edited = edit(&text);
            assert_ne!(edited, text, "the edit of {file} changed nothing");
            text = edited;
        }
        std::fs::write(dir.path().join(p.file_name().unwrap()), text).unwrap();
    }
    dir
}

fn problems(commands: &Path) -> Vec<String> {
    match Catalog::load(commands, &repo("profiles"), &[]) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(Problem::to_string).collect(),
    }
}

fn line(name: &str, text: &str) -> String {
    format!("action = \"{name}\"{text}")
}

#[test]
fn the_shipped_commands_load_clean_and_bind_every_action() {
    let catalog = Catalog::load(&repo("commands"), &repo("profiles"), &[])
        .unwrap_or_else(|p| panic!("{p:?}"));
    for a in Action::ALL {
        assert!(catalog.by_action(*a).is_some(), "no command runs {a}");
    }
}

#[test]
fn the_private_commands_are_those_discord_answered_ephemerally() {
    use Action::*;
    let catalog = Catalog::load(&repo("commands"), &repo("profiles"), &[]).unwrap();
    let private: Vec<Action> = catalog
        .commands()
        .filter(|c| c.private)
        .map(|c| c.action)
        .collect();
    let mut expected = vec![
        Help, Profiles, EnvList, EnvInfo, Quota, Jobs, Job, KeysAdd, KeysList, KeysRemove,
    ];
    let mut got = private.clone();
    expected.sort_by_key(|a| a.name());
    got.sort_by_key(|a| a.name());
    assert_eq!(got, expected);
}

#[test]
fn names_round_trip_and_are_unique() {
    for a in Action::ALL {
        assert_eq!(a.name().parse::<Action>(), Ok(*a));
    }
    let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), Action::ALL.len());
}

#[test]
fn an_unknown_action_names_the_file_the_command_and_the_known_ones() {
    let create = Action::EnvCreate.name();
    let dir = commands_with("env.toml", |t| {
        t.replace(&line(create, "\n"), &line("env.creat", "\n"))
    });
    let file = dir.path().join("env.toml").display().to_string();
    let all = problems(dir.path());
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0].starts_with(&format!(
            "{file}: env create: action 'env.creat' is unknown; known: help, profiles, {create}"
        )),
        "{}",
        all[0]
    );
    assert!(all[0].contains(Action::KeysRemove.name()), "{}", all[0]);
}

#[test]
fn a_renamed_option_is_a_problem_naming_the_option_and_what_is_expected() {
    let dir = commands_with("env.toml", |t| {
        t.replace("{ name = \"dry-run\"", "{ name = \"dryrun\"")
    });
    let file = dir.path().join("env.toml").display().to_string();
    let all = problems(dir.path());
    let create = Action::EnvCreate;
    assert_eq!(
        all,
        vec![
            format!(
                "{file}: env create: option 'dry-run' is missing, and action {create} reads it as a \
                 boolean; declare it ({{ name = \"dry-run\", type = \"boolean\", description = \"…\" }}), \
                 or give a renamed option its old name back"
            ),
            format!(
                "{file}: env create: option 'dryrun' is not read by action {create}, so it would be \
                 ignored; remove it, or rename it to one the action reads (profile, name, cpu, memory, \
                 disk, ttl, team, domain, dry-run)"
            ),
        ]
    );
}

#[test]
fn a_renamed_required_option_says_it_must_be_required() {
    let dir = commands_with("job.toml", |t| {
        t.replace("{ name = \"id\"", "{ name = \"number\"")
    });
    let all = problems(dir.path());
    assert!(
        all.iter().any(|p| p.contains(
            "job: option 'id' is missing, and action job reads it as an integer; declare it \
             ({ name = \"id\", type = \"integer\", required = true"
        )),
        "{all:#?}"
    );
}

#[test]
fn an_option_of_another_type_is_a_problem() {
    let dir = commands_with("env.toml", |t| {
        t.replace(
            "{ name = \"cpu\", type = \"integer\"",
            "{ name = \"cpu\", type = \"string\"",
        )
    });
    let file = dir.path().join("env.toml").display().to_string();
    assert_eq!(
        problems(dir.path()),
        vec![format!(
            "{file}: env create: option 'cpu' is declared as a string, but action env.create \
             reads it as an integer; set type = \"integer\""
        )]
    );
}

#[test]
fn an_option_the_handler_needs_may_not_be_optional() {
    let dir = commands_with("env.toml", |t| {
        t.replacen(
            "{ name = \"by\", type = \"duration\", required = true",
            "{ name = \"by\", type = \"duration\"",
            1,
        )
    });
    let file = dir.path().join("env.toml").display().to_string();
    assert_eq!(
        problems(dir.path()),
        vec![format!(
            "{file}: env extend: option 'by' is optional, but action env.extend cannot run \
             without it; set required = true"
        )]
    );
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "reads option 'nme'")]
fn a_handler_reading_an_undeclared_option_is_caught_in_debug_builds() {
    let inv = crate::catalog::command::Invocation {
        command: "env info".into(),
        action: Action::EnvInfo,
        args: Default::default(),
    };
    // What env.info declares passes; a misspelt name does not.
    let _ = inv.declared("name", &[OptionKind::Choice]);
    let _ = inv.declared("nme", &[OptionKind::String]);
}

#[test]
fn private_belongs_to_a_subcommand_not_its_group() {
    let dir = commands_with("env.toml", |t| {
        t.replacen("\n[[subcommands]]", "private = true\n\n[[subcommands]]", 1)
    });
    let file = dir.path().join("env.toml").display().to_string();
    assert_eq!(
        problems(dir.path()),
        vec![format!(
            "{file}: command env: has subcommands, so options, action and private belong to them"
        )]
    );
}
