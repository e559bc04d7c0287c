//! The catalog: command definitions (`commands/*.toml`) and workload profiles
//! (`profiles/*.toml`), loaded raw and validated, with every problem reported
//! against its file.

pub mod command;
pub mod profile;

use command::{Action, ChoiceValues, CommandGroup, CommandSpec, Invocation, ParseError};
use profile::Profile;
use std::fmt;
use std::path::Path;

/// One problem found while loading, with the file it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: &str, message: String) -> Self {
        Problem {
            file: file.to_string(),
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// Every command and profile Slipway knows.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub groups: Vec<CommandGroup>,
    pub profiles: Vec<Profile>,
    pub choices: ChoiceValues,
}

fn toml_files(dir: &Path, problems: &mut Vec<Problem>) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            problems.push(Problem::new(
                &dir.display().to_string(),
                format!("cannot read the directory: {e}"),
            ));
            Vec::new()
        }
    };
    files.sort();
    files
}

impl Catalog {
    /// Loads both directories; returns every problem found rather than the first.
    pub fn load(
        commands_dir: &Path,
        profiles_dir: &Path,
        teams: &[String],
    ) -> Result<Catalog, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut groups: Vec<CommandGroup> = Vec::new();
        for path in toml_files(commands_dir, &mut problems) {
            if let Some(g) = command::load_file(&path, &mut problems) {
                for leaf in &g.leaves {
                    command::check_options(&g.file, leaf, &mut problems);
                }
                if let Some(other) = groups.iter().find(|o| o.name == g.name) {
                    problems.push(Problem::new(
                        &g.file,
                        format!("command /{} is also defined in {}", g.name, other.file),
                    ));
                }
                groups.push(g);
            }
        }
        let mut profiles: Vec<Profile> = Vec::new();
        for path in toml_files(profiles_dir, &mut problems) {
            if let Some(p) = profile::load_file(&path, &mut problems) {
                profiles.push(p);
            }
        }
        if groups.is_empty() && problems.is_empty() {
            problems.push(Problem::new(
                &commands_dir.display().to_string(),
                "no command definitions (*.toml) found".into(),
            ));
        }
        if profiles.is_empty() && problems.is_empty() {
            problems.push(Problem::new(
                &profiles_dir.display().to_string(),
                "no profiles (*.toml) found".into(),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let choices = ChoiceValues {
            profiles: profiles.iter().map(|p| p.name.clone()).collect(),
            teams: teams.to_vec(),
        };
        Ok(Catalog {
            groups,
            profiles,
            choices,
        })
    }

    pub fn parse(&self, line: &str) -> Result<(CommandSpec, Invocation), ParseError> {
        command::parse(&self.groups, &self.choices, line)
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Every runnable command, in file order.
    pub fn commands(&self) -> impl Iterator<Item = &CommandSpec> {
        self.groups.iter().flat_map(|g| g.leaves.iter())
    }

    /// The spec that runs `action`, for its reply templates.
    pub fn by_action(&self, action: Action) -> Option<&CommandSpec> {
        self.commands().find(|c| c.action == action)
    }
}
