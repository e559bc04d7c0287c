//! `slipway check` holds each command in `commands/*.toml` to its handler:
//! a renamed option, or an action no handler has, is a problem naming the
//! file, the command and what is expected, and the check fails.

use crate::common::{repo, Opts, TestEnv};
use slipway::catalog::command::Action;

/// The shipped commands copied into the test's directory, which the
/// configuration then uses.
fn own_commands(t: &TestEnv) -> std::path::PathBuf {
    let dir = t.dir.path().join("commands");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(repo().join("commands")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    t.edit_config(
        &format!("commands_dir = \"{}\"", repo().join("commands").display()),
        "commands_dir = \"commands\"",
    );
    dir
}

fn edit(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} is not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn check_names_a_renamed_option_and_an_unknown_action() {
    let t = TestEnv::new(Opts::default());
    let dir = own_commands(&t);
    let ok = t.slipway(&["check"], "");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let env = dir.join("env.toml");
    edit(
        &env,
        "{ name = \"ttl\", type = \"duration\"",
        "{ name = \"lifetime\", type = \"duration\"",
    );
    let quota = dir.join("quota.toml");
    let action = format!("action = \"{}\"", Action::Quota);
    edit(&quota, &action, "action = \"quotas\"");

    let out = t.slipway(&["check"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let (env, quota) = (env.display(), quota.display());
    let create = Action::EnvCreate;
    for expected in [
        format!(
            "{env}: env create: option 'ttl' is missing, and action {create} reads it as a duration; \
             declare it ({{ name = \"ttl\", type = \"duration\", description = \"…\" }}), or give a \
             renamed option its old name back"
        ),
        format!("{env}: env create: option 'lifetime' is not read by action {create}"),
        format!("{quota}: quota: action 'quotas' is unknown; known: help, profiles, {create}"),
    ] {
        assert!(err.contains(&expected), "{expected}\nnot in:\n{err}");
    }
}
