//! The `[matrix]` section of the configuration: loaded raw (unknown keys are
//! errors), then validated into a [`MatrixConfig`]. The bot's access token or
//! password comes from an environment variable or a file, never from the TOML
//! itself, and is held as a [`SecretString`] that does not print.

use crate::catalog::Problem;
use crate::config::resolve;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatrix {
    /// Base URL of the homeserver's client-server API.
    homeserver: String,
    /// The bot's full user id, `@slipway:example.org`.
    user_id: String,
    access_token_env: Option<String>,
    access_token_file: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    /// Session, sync token and encryption keys; relative to the config file.
    #[serde(default = "default_store")]
    store_dir: String,
    /// What starts a command.
    #[serde(default = "default_prefix")]
    prefix: String,
    /// Where admins decide: approval cards go here unless `approval_room` is set.
    admin_room: Option<String>,
    /// Where each environment gets its thread; the command's room if unset.
    status_room: Option<String>,
    /// Where approval cards are posted; `admin_room` if unset.
    approval_room: Option<String>,
    /// Join rooms the bot is invited to.
    #[serde(default = "yes")]
    auto_join: bool,
    /// The device name shown in clients' session lists.
    #[serde(default = "default_device")]
    device_name: String,
}

fn default_store() -> String {
    "matrix-store".into()
}
fn default_prefix() -> String {
    "!".into()
}
fn default_device() -> String {
    "Slipway".into()
}
fn yes() -> bool {
    true
}

/// How the bot proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An access token (its device id is asked of the homeserver).
    AccessToken(SecretString),
    /// A password, used once: the session it yields is kept in the store directory.
    Password(SecretString),
}

/// The validated section.
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    pub homeserver: String,
    pub user_id: String,
    pub credential: Credential,
    pub store_dir: PathBuf,
    pub prefix: String,
    /// Room id or alias.
    pub admin_room: Option<String>,
    /// Room id or alias.
    pub status_room: Option<String>,
    /// Room id or alias; defaults to the admin room.
    pub approval_room: Option<String>,
    pub auto_join: bool,
    pub device_name: String,
}

fn secret_from(
    kind: &str,
    env: &Option<String>,
    file: &Option<String>,
    base: &Path,
) -> Option<Result<String, String>> {
    crate::config::secret_source("matrix", kind, env.as_deref(), file.as_deref(), base).transpose()
}

fn credential(raw: &RawMatrix, base: &Path) -> Result<Credential, String> {
    let token = secret_from(
        "access_token",
        &raw.access_token_env,
        &raw.access_token_file,
        base,
    );
    let password = secret_from("password", &raw.password_env, &raw.password_file, base);
    let (value, make): (String, fn(SecretString) -> Credential) = match (token, password) {
        (Some(_), Some(_)) => {
            return Err("matrix: give an access token or a password, not both".into())
        }
        (Some(t), None) => (t?, Credential::AccessToken),
        (None, Some(p)) => (p?, Credential::Password),
        (None, None) => return Err("matrix: the bot's credential is missing; set access_token_env or access_token_file (or password_env / password_file)".into()),
    };
    if value.is_empty() {
        return Err("matrix: the bot's access token or password is empty".into());
    }
    Ok(make(SecretString::from(value)))
}

fn room(key: &str, value: &Option<String>, file: &str, problems: &mut Vec<Problem>) {
    // The same parser the client joins with: every room id form (room
    // version 12's `!opaque` has no server part) and aliases.
    if let Some(r) = value {
        if <&matrix_sdk::ruma::RoomOrAliasId>::try_from(r.as_str()).is_err() {
            problems.push(Problem::new(
                file,
                format!(
                    "matrix.{key}: '{r}' is not a room id (!id or !id:server) or alias (#name:server); copy it from the room's settings"
                ),
            ));
        }
    }
}

/// Checks the section; every problem goes to `problems` as `file: key: message`.
pub fn validate(
    raw: RawMatrix,
    base: &Path,
    file: &str,
    problems: &mut Vec<Problem>,
) -> MatrixConfig {
    if !(raw.homeserver.starts_with("https://") || raw.homeserver.starts_with("http://")) {
        problems.push(Problem::new(
            file,
            format!(
                "matrix.homeserver: '{}' must be an http(s):// URL such as https://matrix.example.org",
                raw.homeserver
            ),
        ));
    }
    let user_ok = raw.user_id.starts_with('@')
        && raw
            .user_id
            .split_once(':')
            .is_some_and(|(l, s)| l.len() > 1 && !s.is_empty());
    if !user_ok {
        problems.push(Problem::new(
            file,
            format!(
                "matrix.user_id: '{}' is not a full Matrix user id such as @slipway:example.org",
                raw.user_id
            ),
        ));
    }
    if raw.prefix.trim().is_empty() {
        problems.push(Problem::new(
            file,
            "matrix.prefix: must not be empty (the default is \"!\")".into(),
        ));
    }
    room("admin_room", &raw.admin_room, file, problems);
    room("status_room", &raw.status_room, file, problems);
    room("approval_room", &raw.approval_room, file, problems);
    let credential = credential(&raw, base).unwrap_or_else(|msg| {
        problems.push(Problem::new(file, msg));
        Credential::AccessToken(SecretString::from(String::new()))
    });
    MatrixConfig {
        homeserver: raw.homeserver.trim_end_matches('/').to_string(),
        user_id: raw.user_id,
        credential,
        store_dir: resolve(base, &raw.store_dir),
        prefix: raw.prefix,
        approval_room: raw.approval_room.or_else(|| raw.admin_room.clone()),
        admin_room: raw.admin_room,
        status_room: raw.status_room,
        auto_join: raw.auto_join,
        device_name: raw.device_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_for(r: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        room(
            "admin_room",
            &Some(r.to_string()),
            "slipway.toml",
            &mut problems,
        );
        problems
    }

    #[test]
    fn every_room_id_form_and_aliases_are_accepted() {
        // Room version 12 (Synapse's default) ids have no server part.
        for ok in [
            "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM",
            "!abc:localhost",
            "#ops:example.org",
        ] {
            assert!(problems_for(ok).is_empty(), "{ok}: {:?}", problems_for(ok));
        }
    }

    #[test]
    fn a_name_that_is_no_room_is_refused_with_what_to_do() {
        for bad in ["ops", "#ops", ""] {
            let p = problems_for(bad);
            assert_eq!(p.len(), 1, "{bad}");
            assert!(format!("{:?}", p[0]).contains("copy it from the room's settings"));
        }
    }

    fn load(toml_text: &str) -> (MatrixConfig, Vec<Problem>) {
        let raw: RawMatrix = toml::from_str(toml_text).unwrap();
        let mut problems = Vec::new();
        let cfg = validate(
            raw,
            Path::new("/etc/slipway"),
            "slipway.toml",
            &mut problems,
        );
        (cfg, problems)
    }

    #[test]
    fn a_token_file_and_defaults_make_a_valid_section() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "syt_abc\n").unwrap();
        let (cfg, problems) = load(&format!(
            "homeserver = \"http://127.0.0.1:8008/\"\nuser_id = \"@bot:localhost\"\naccess_token_file = \"{}\"\nadmin_room = \"#admins:localhost\"",
            dir.path().join("token").display()
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cfg.homeserver, "http://127.0.0.1:8008");
        assert_eq!(cfg.prefix, "!");
        assert_eq!(cfg.approval_room.as_deref(), Some("#admins:localhost"));
        assert_eq!(cfg.store_dir, Path::new("/etc/slipway/matrix-store"));
        assert!(matches!(cfg.credential, Credential::AccessToken(_)));
    }

    #[test]
    fn a_missing_credential_and_a_bad_user_id_are_both_reported() {
        let (_, problems) = load("homeserver = \"matrix.org\"\nuser_id = \"bot\"");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(text.iter().any(|t| t.contains("matrix.homeserver")));
        assert!(text.iter().any(|t| t.contains("matrix.user_id")));
        assert!(text.iter().any(|t| t.contains("credential is missing")));
    }

    #[test]
    fn an_inline_token_is_an_unknown_key() {
        let err = toml::from_str::<RawMatrix>(
            "homeserver = \"http://x\"\nuser_id = \"@b:x\"\naccess_token = \"syt_secret\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn the_secret_does_not_print() {
        std::env::set_var("SLIPWAY_TEST_MATRIX_PW", "hunter2");
        let (cfg, problems) =
            load("homeserver = \"http://x\"\nuser_id = \"@b:x\"\npassword_env = \"SLIPWAY_TEST_MATRIX_PW\"");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
