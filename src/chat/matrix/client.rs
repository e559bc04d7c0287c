//! Login, session and sync. The first start logs in (access token, or a
//! password once) and keeps the session next to matrix-sdk's SQLite store, so
//! a restart is the same device with the same encryption keys. Before any
//! handler is registered one sync catches up with everything that happened
//! while the bot was away, so commands sent before it started are never run.

use super::config::{Credential, MatrixConfig};
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::{OwnedRoomId, RoomOrAliasId};
use matrix_sdk::{Client, SessionMeta, SessionTokens};
use secrecy::ExposeSecret;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot build the Matrix client for {homeserver}: {source}")]
    Build {
        homeserver: String,
        source: Box<matrix_sdk::ClientBuildError>,
    },
    #[error("the homeserver refused the bot's login: {0}; check matrix.user_id and the access token or password")]
    Login(Box<matrix_sdk::Error>),
    #[error("the homeserver did not accept the access token: {0}; check matrix.access_token_env / access_token_file")]
    WhoAmI(String),
    #[error("the access token belongs to {actual}, not matrix.user_id {configured}")]
    WrongUser { configured: String, actual: String },
    #[error("the homeserver gave no device id for the access token; log in with a password once instead")]
    NoDevice,
    #[error("the first sync with the homeserver failed: {source}; if the bot's session was logged out, remove {store} so that it logs in again (as a new device)")]
    Sync {
        source: Box<matrix_sdk::Error>,
        store: String,
    },
    #[error("cannot keep the session in {path}: {source}")]
    Session {
        path: String,
        source: std::io::Error,
    },
    #[error("matrix.{key}: cannot find room {room}: {reason}")]
    Room {
        key: &'static str,
        room: String,
        reason: String,
    },
}

const SESSION_FILE: &str = "session.json";

/// Builds the client on the SQLite store, restores or creates the session and
/// runs the catch-up sync.
pub async fn connect(cfg: &MatrixConfig) -> Result<Client, ConnectError> {
    crate::store::private::private_dir(&cfg.store_dir).map_err(|source| ConnectError::Session {
        path: cfg.store_dir.display().to_string(),
        source,
    })?;
    let client = Client::builder()
        .homeserver_url(&cfg.homeserver)
        .sqlite_store(cfg.store_dir.join("sdk"), None)
        .build()
        .await
        .map_err(|source| ConnectError::Build {
            homeserver: cfg.homeserver.clone(),
            source: Box::new(source),
        })?;
    let session_path = cfg.store_dir.join(SESSION_FILE);
    match read_session(&session_path) {
        Some(session) if session.meta.user_id.as_str() == cfg.user_id => {
            client
                .restore_session(session)
                .await
                .map_err(|e| ConnectError::Login(Box::new(e)))?;
        }
        _ => {
            let session = new_session(&client, cfg).await?;
            write_session(&session_path, &session)?;
        }
    }
    client
        .sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await
        .map_err(|e| ConnectError::Sync {
            source: Box::new(e),
            store: cfg.store_dir.display().to_string(),
        })?;
    tracing::info!(user = %cfg.user_id, device = ?client.device_id(), "connected to Matrix");
    Ok(client)
}

async fn new_session(client: &Client, cfg: &MatrixConfig) -> Result<MatrixSession, ConnectError> {
    match &cfg.credential {
        Credential::Password(pw) => {
            let response = client
                .matrix_auth()
                .login_username(&cfg.user_id, pw.expose_secret())
                .initial_device_display_name(&cfg.device_name)
                .send()
                .await
                .map_err(|e| ConnectError::Login(Box::new(e)))?;
            Ok(MatrixSession::from(&response))
        }
        Credential::AccessToken(token) => {
            let who = whoami(&cfg.homeserver, token.expose_secret()).await?;
            if who.user_id != cfg.user_id {
                return Err(ConnectError::WrongUser {
                    configured: cfg.user_id.clone(),
                    actual: who.user_id,
                });
            }
            let bad = |e: matrix_sdk::IdParseError| ConnectError::Login(Box::new(e.into()));
            let session = MatrixSession {
                meta: SessionMeta {
                    user_id: who.user_id.as_str().try_into().map_err(bad)?,
                    device_id: who.device_id.ok_or(ConnectError::NoDevice)?.into(),
                },
                tokens: SessionTokens {
                    access_token: token.expose_secret().to_string(),
                    refresh_token: None,
                },
            };
            client
                .restore_session(session.clone())
                .await
                .map_err(|e| ConnectError::Login(Box::new(e)))?;
            Ok(session)
        }
    }
}

#[derive(serde::Deserialize)]
struct WhoAmI {
    user_id: String,
    device_id: Option<String>,
}

/// Who an access token belongs to, and its device: a session needs both.
async fn whoami(homeserver: &str, token: &str) -> Result<WhoAmI, ConnectError> {
    let fail = |e: String| ConnectError::WhoAmI(e);
    let resp = reqwest::Client::new()
        .get(format!("{homeserver}/_matrix/client/v3/account/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(fail(format!("HTTP {status}: {body}")));
    }
    resp.json().await.map_err(|e| fail(e.to_string()))
}

fn read_session(path: &Path) -> Option<MatrixSession> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_session(path: &Path, session: &MatrixSession) -> Result<(), ConnectError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| ConnectError::Session {
        path: path.display().to_string(),
        source,
    };
    let text = serde_json::to_string(session).map_err(|e| err(e.into()))?;
    let tmp = path.with_extension("tmp");
    // The file holds the access token: only its owner may read it.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A configured room id or alias, resolved to a room id.
pub async fn resolve_room(
    client: &Client,
    key: &'static str,
    raw: &str,
) -> Result<OwnedRoomId, ConnectError> {
    let fail = |reason: String| ConnectError::Room {
        key,
        room: raw.to_string(),
        reason,
    };
    let id = <&RoomOrAliasId>::try_from(raw).map_err(|e| fail(e.to_string()))?;
    match OwnedRoomId::try_from(id.to_owned()) {
        Ok(room) => Ok(room),
        Err(alias) => client
            .resolve_room_alias(&alias)
            .await
            .map(|r| r.room_id)
            .map_err(|e| fail(e.to_string())),
    }
}

/// Syncs until cancelled; failures are logged and retried with a growing pause.
pub async fn sync_loop(client: Client, cancel: CancellationToken) {
    let mut pause = Duration::from_secs(1);
    loop {
        let settings = SyncSettings::default().timeout(Duration::from_secs(30));
        tokio::select! {
            result = client.sync_once(settings) => match result {
                Ok(_) => pause = Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "Matrix sync failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = cancel.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(60));
                }
            },
            _ = cancel.cancelled() => return,
        }
    }
}
