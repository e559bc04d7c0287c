//! An app's environment variables: `KEY=VALUE` items parsed and checked, and
//! the redaction that keeps secret-looking values out of every reply and log.

use super::Invalid;
use std::collections::BTreeMap;

/// Environment variables of an app, by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvVars(pub BTreeMap<String, String>);

/// Keys Slipway sets itself; a user may not override them.
pub const RESERVED_KEYS: &[&str] = &["PORT"];

impl EnvVars {
    /// Parses `KEY=VALUE` items. Keys are `[A-Za-z_][A-Za-z0-9_]*`; a key may
    /// appear once; values may be empty but hold no control characters.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<EnvVars, Invalid> {
        let mut out = BTreeMap::new();
        for item in items {
            let Some((key, value)) = item.split_once('=') else {
                return Err(Invalid(format!(
                    "env: {} is not KEY=VALUE",
                    crate::domain::names::shown(&redact_item(item))
                )));
            };
            let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.len() <= 128
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(Invalid(format!(
                    "env: {} is not a variable name (letters, digits and '_', not starting with a digit)",
                    crate::domain::names::shown(key)
                )));
            }
            if RESERVED_KEYS.contains(&key) {
                return Err(Invalid(format!(
                    "env: {key} is set by Slipway (the port the app listens on); leave it out"
                )));
            }
            if value.chars().any(char::is_control) || value.len() > 4096 {
                return Err(Invalid(format!(
                    "env: the value of {key} has control characters or is longer than 4096 bytes"
                )));
            }
            if out.insert(key.to_string(), value.to_string()).is_some() {
                return Err(Invalid(format!("env: {key} is given twice; give it once")));
            }
        }
        Ok(EnvVars(out))
    }

    /// `KEY=VALUE` strings for the Docker API (the only place values leave Slipway).
    pub fn to_docker(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// `KEY=VALUE, SECRET=•••` for replies and logs: secret-looking values never show.
    pub fn shown(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={}", shown_value(k, v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The redaction mark.
pub const REDACTED: &str = "•••";

/// A value as it may be shown: redacted if its key or the value itself looks secret.
pub fn shown_value(key: &str, value: &str) -> String {
    if is_secret(key, value) {
        REDACTED.into()
    } else {
        value.to_string()
    }
}

/// Whether a variable looks like it holds a secret: its key names one
/// (PASSWORD, SECRET, TOKEN, KEY, CREDENTIAL, …), or the value looks like a
/// credential (a known token prefix, a URL with a password, or a long random string).
pub fn is_secret(key: &str, value: &str) -> bool {
    let k = key.to_ascii_uppercase();
    const KEY_WORDS: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "PASS",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
        "DSN",
        "COOKIE",
        "SESSION",
    ];
    if KEY_WORDS.iter().any(|w| k.contains(w)) {
        return true;
    }
    const PREFIXES: &[&str] = &[
        "ghp_",
        "gho_",
        "ghs_",
        "github_pat_",
        "glpat-",
        "sk-",
        "xox",
        "AKIA",
        "eyJ",
        "-----BEGIN",
    ];
    if PREFIXES.iter().any(|p| value.starts_with(p)) {
        return true;
    }
    // scheme://user:password@host
    if let Some((_, rest)) = value.split_once("://") {
        if let Some((userinfo, _)) = rest.split_once('@') {
            if userinfo.contains(':') {
                return true;
            }
        }
    }
    looks_random(value)
}

/// A long run of letters and digits mixed, with no spaces: an API key or hash.
fn looks_random(value: &str) -> bool {
    if value.len() < 24 || value.contains(char::is_whitespace) {
        return false;
    }
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let upper = value.chars().filter(char::is_ascii_uppercase).count();
    let lower = value.chars().filter(char::is_ascii_lowercase).count();
    let classes = [digits, upper, lower].iter().filter(|n| **n > 0).count();
    classes >= 2 && digits * 8 >= value.len() && !value.contains('/')
}

/// An `env:` item shown in an error: the part after `=` is never echoed.
fn redact_item(item: &str) -> String {
    match item.split_once('=') {
        Some((k, _)) => format!("{k}={REDACTED}"),
        None if item.len() > 32 => format!("{}…", &item[..item.floor_char_boundary(16)]),
        None => item.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_items_parse_and_secret_values_are_redacted_when_shown() {
        let env = EnvVars::parse(["GREETING=hello", "DB_PASSWORD=hunter2", "EMPTY="]).unwrap();
        assert_eq!(env.0["GREETING"], "hello");
        let shown = env.shown();
        assert_eq!(shown, "DB_PASSWORD=•••, EMPTY=, GREETING=hello");
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn values_that_look_like_credentials_are_secret_whatever_the_key() {
        assert!(is_secret(
            "GITHUB",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
        ));
        assert!(is_secret(
            "DATABASE_URL",
            "postgres://app:hunter2@db:5432/app"
        ));
        assert!(is_secret("X", "a8f5f167f44f4964e6c998dee827110c"));
        assert!(!is_secret("DATABASE_URL", "postgres://db:5432/app"));
        assert!(!is_secret("GREETING", "hello world, how are you today?"));
        assert!(!is_secret("LOG_LEVEL", "debug"));
    }

    #[test]
    fn a_bad_env_item_is_refused_without_echoing_its_value() {
        let err = EnvVars::parse(["1BAD=hunter2"]).unwrap_err();
        assert!(!err.0.contains("hunter2"), "{}", err.0);
        let err = EnvVars::parse(["A=1", "A=2"]).unwrap_err();
        assert!(err.0.contains("twice"), "{}", err.0);
        assert!(EnvVars::parse(["PORT=80"]).is_err());
        assert!(EnvVars::parse(["A=line\nbreak"]).is_err());
    }
}
