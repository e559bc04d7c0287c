//! The `[discord]` section of the configuration: raw serde structs first, then
//! [`validate`] into a [`DiscordConfig`] with every problem reported as
//! `file: discord.key: message`. The bot token and the application's public
//! key come from an environment variable or a file, never inline, and are held
//! as [`SecretString`]s that never print.

use crate::catalog::Problem;
use secrecy::SecretString;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscord {
    /// "gateway" (default: works behind NAT) or "http" (an interactions endpoint).
    #[serde(default)]
    mode: Option<String>,
    /// The application (client) id from the Developer Portal.
    application_id: u64,
    /// Environment variable that holds the bot token.
    token_env: Option<String>,
    /// File that holds the bot token.
    token_file: Option<String>,
    /// Environment variable that holds the application's public key (hex).
    public_key_env: Option<String>,
    /// File that holds the application's public key (hex).
    public_key_file: Option<String>,
    /// Where the interactions endpoint listens in http mode, e.g. 127.0.0.1:8443.
    listen: Option<String>,
    /// The guild (server) whose commands `sync-commands` writes by default.
    guild_id: Option<u64>,
    /// Channel where approval cards are posted.
    admin_channel: u64,
    /// Channel under which each environment gets a status thread.
    status_channel: Option<u64>,
    /// How long an approval request waits before it expires.
    #[serde(default = "default_expiry")]
    approval_expiry: String,
    /// Write the slash commands (to guild_id, else globally) when Slipway starts.
    #[serde(default)]
    sync_commands_on_start: bool,
    /// A Discord REST proxy (e.g. twilight-http-proxy) that keeps the rate-limit
    /// buckets; Slipway then sends every REST call there, pacing itself.
    api_proxy: Option<String>,
    /// Messages and edits per channel per second (Discord allows about 5 per 5 s).
    #[serde(default = "default_rate")]
    channel_rate_per_sec: u32,
    /// Messages and edits a channel may take at once before the rate applies.
    #[serde(default = "default_burst")]
    channel_burst: u32,
}

fn default_expiry() -> String {
    "24h".into()
}
fn default_rate() -> u32 {
    1
}
fn default_burst() -> u32 {
    5
}

/// How Discord's interactions reach Slipway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A websocket to Discord's gateway: no inbound port needed.
    Gateway,
    /// Discord POSTs interactions to this address (behind a TLS reverse proxy).
    Http { listen: SocketAddr },
}

/// The validated `[discord]` section.
#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub mode: Mode,
    pub application_id: u64,
    pub token: SecretString,
    /// Needed in http mode only.
    pub public_key: Option<SecretString>,
    pub guild_id: Option<u64>,
    pub admin_channel: u64,
    pub status_channel: Option<u64>,
    pub approval_expiry: Duration,
    pub sync_commands_on_start: bool,
    pub api_proxy: Option<String>,
    pub channel_rate_per_sec: u32,
    pub channel_burst: u32,
}

/// Reads a secret from `key_env` or `key_file`; None (with a problem) if neither works.
fn secret(
    key: &str,
    env: &Option<String>,
    file_name: &Option<String>,
    base: &Path,
    file: &str,
    problems: &mut Vec<Problem>,
) -> Option<SecretString> {
    let value = match crate::config::secret_source("discord", key, env.as_deref(), file_name.as_deref(), base) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(format!(
            "discord: the {key} is missing; set {key}_env (an environment variable's name) or {key}_file"
        )),
        Err(e) => Err(e),
    };
    match value {
        Ok(v) if !v.is_empty() => Some(SecretString::from(v)),
        Ok(_) => {
            problems.push(Problem::new(file, format!("discord: the {key} is empty")));
            None
        }
        Err(msg) => {
            problems.push(Problem::new(file, msg));
            None
        }
    }
}

fn is_hex_key(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The way in; a broken http setting is reported and gateway assumed.
fn mode(raw: &RawDiscord, f: &str, problems: &mut Vec<Problem>) -> Mode {
    match raw.mode.as_deref().unwrap_or("gateway") {
        "gateway" => Mode::Gateway,
        "http" => match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
            Some(Ok(listen)) => Mode::Http { listen },
            Some(Err(_)) => {
                problems.push(Problem::new(
                    f,
                    format!(
                        "discord.listen: '{}' is not an address such as 127.0.0.1:8443",
                        raw.listen.as_deref().unwrap_or_default()
                    ),
                ));
                Mode::Gateway
            }
            None => {
                problems.push(Problem::new(
                    f,
                    "discord.listen: http mode needs the address the interactions endpoint listens on".into(),
                ));
                Mode::Gateway
            }
        },
        other => {
            problems.push(Problem::new(
                f,
                format!("discord.mode: '{other}' is not 'gateway' or 'http'"),
            ));
            Mode::Gateway
        }
    }
}

/// The application's public key (http mode): 64 hex digits.
fn public_key(
    raw: &RawDiscord,
    base: &Path,
    f: &str,
    problems: &mut Vec<Problem>,
) -> Option<SecretString> {
    use secrecy::ExposeSecret;
    let key = secret(
        "public_key",
        &raw.public_key_env,
        &raw.public_key_file,
        base,
        f,
        problems,
    )?;
    if !is_hex_key(key.expose_secret()) {
        problems.push(Problem::new(
            f,
            "discord.public_key: expected the 64 hex digits shown as PUBLIC KEY in the Developer Portal".into(),
        ));
    }
    Some(key)
}

/// Validates the raw section; every problem is pushed, none is fatal here.
pub fn validate(
    raw: RawDiscord,
    base: &Path,
    file: &str,
    problems: &mut Vec<Problem>,
) -> DiscordConfig {
    let f = file;
    let wants_http = raw.mode.as_deref() == Some("http");
    let mode = mode(&raw, f, problems);
    let token = secret("token", &raw.token_env, &raw.token_file, base, f, problems)
        .unwrap_or_else(|| SecretString::from(String::new()));
    let public_key = wants_http
        .then(|| public_key(&raw, base, f, problems))
        .flatten();
    if let Some(p) = raw
        .api_proxy
        .as_deref()
        .filter(|p| !p.starts_with("http://") && !p.starts_with("https://"))
    {
        problems.push(Problem::new(
            f,
            format!("discord.api_proxy: '{p}' must start with http:// or https://"),
        ));
    }
    let approval_expiry = match humantime::parse_duration(&raw.approval_expiry) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            problems.push(Problem::new(
                f,
                format!(
                    "discord.approval_expiry: '{}' is not a duration such as 24h or 3d",
                    raw.approval_expiry
                ),
            ));
            Duration::from_secs(86400)
        }
    };
    if raw.channel_rate_per_sec == 0 || raw.channel_burst == 0 {
        problems.push(Problem::new(
            f,
            "discord: channel_rate_per_sec and channel_burst must be at least 1".into(),
        ));
    }
    DiscordConfig {
        mode,
        application_id: raw.application_id,
        token,
        public_key,
        guild_id: raw.guild_id,
        admin_channel: raw.admin_channel,
        status_channel: raw.status_channel,
        approval_expiry,
        sync_commands_on_start: raw.sync_commands_on_start,
        api_proxy: raw.api_proxy,
        channel_rate_per_sec: raw.channel_rate_per_sec.max(1),
        channel_burst: raw.channel_burst.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Option<DiscordConfig>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "bot-token\n").unwrap();
        std::fs::write(dir.path().join("key"), "ab".repeat(32)).unwrap();
        let raw: RawDiscord = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let cfg = validate(raw, dir.path(), "slipway.toml", &mut problems);
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        (list.is_empty().then_some(cfg), list)
    }

    #[test]
    fn gateway_mode_needs_no_public_key() {
        let (cfg, problems) =
            load("application_id = 1\ntoken_file = \"token\"\nadmin_channel = 2\n");
        assert!(problems.is_empty(), "{problems:?}");
        let cfg = cfg.unwrap();
        assert_eq!(cfg.mode, Mode::Gateway);
        use secrecy::ExposeSecret;
        assert_eq!(cfg.token.expose_secret(), "bot-token");
    }

    #[test]
    fn http_mode_without_listen_or_key_lists_both() {
        let (_, problems) = load(
            "mode = \"http\"\napplication_id = 1\ntoken_file = \"token\"\nadmin_channel = 2\n",
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("discord.listen"));
        assert!(problems[1].contains("public_key"));
    }

    #[test]
    fn the_token_never_prints() {
        let (cfg, _) = load("application_id = 1\ntoken_file = \"token\"\nadmin_channel = 2\n");
        assert!(!format!("{:?}", cfg.unwrap()).contains("bot-token"));
    }

    #[test]
    fn an_unknown_key_is_refused() {
        assert!(toml::from_str::<RawDiscord>(
            "application_id = 1\nadmin_channel = 2\ntoken = \"inline\"\n"
        )
        .is_err());
    }
}
