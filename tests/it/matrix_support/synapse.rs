//! A real Synapse homeserver (PyPI `matrix-synapse`, from the venv
//! `tests/setup.sh` makes) on 127.0.0.1 with SQLite and every rate limit
//! raised (or the production message limit, for the rate-limit tests), and
//! users registered through the shared-secret admin API.

use super::person::Person;
use crate::common::repo;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "slipway-test-shared-secret";
pub const SERVER: &str = "localhost";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLIPWAY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "Synapse is not installed: run `bash tests/setup.sh` first (or set SLIPWAY_TEST_PYTHON)"
    );
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Unpadded standard base64, as Synapse's signing key file wants it.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Every `rc_*` limit Synapse has, raised so tests never wait on them.
const RATE_LIMITS: &str = r#"
rc_message: {per_second: 10000, burst_count: 10000}
rc_registration: {per_second: 10000, burst_count: 10000}
rc_registration_token_validity: {per_second: 10000, burst_count: 10000}
rc_login:
  address: {per_second: 10000, burst_count: 10000}
  account: {per_second: 10000, burst_count: 10000}
  failed_attempts: {per_second: 10000, burst_count: 10000}
rc_admin_redaction: {per_second: 10000, burst_count: 10000}
rc_joins:
  local: {per_second: 10000, burst_count: 10000}
  remote: {per_second: 10000, burst_count: 10000}
rc_joins_per_room: {per_second: 10000, burst_count: 10000}
rc_3pid_validation: {per_second: 10000, burst_count: 10000}
rc_invites:
  per_room: {per_second: 10000, burst_count: 10000}
  per_user: {per_second: 10000, burst_count: 10000}
  per_issuer: {per_second: 10000, burst_count: 10000}
rc_third_party_invite: {per_second: 10000, burst_count: 10000}
rc_media_create: {per_second: 10000, burst_count: 10000}
rc_key_requests: {per_second: 10000, burst_count: 10000}
rc_presence:
  per_user: {per_second: 10000, burst_count: 10000}
rc_delayed_event_mgmt: {per_second: 10000, burst_count: 10000}
rc_room_creation: {per_second: 10000, burst_count: 10000}
rc_reports: {per_second: 10000, burst_count: 10000}
rc_user_directory: {per_second: 10000, burst_count: 10000}
rc_profile: {per_second: 10000, burst_count: 10000}
rc_federation: {window_size: 1000, sleep_limit: 10000, sleep_delay: 1, reject_limit: 10000, concurrent: 10000}
"#;

/// How Synapse limits messages.
#[derive(Clone, Copy, PartialEq)]
pub enum Limits {
    /// Every limit raised.
    Raised,
    /// Synapse's production message limit (0.2/s, burst 10); the rest raised.
    ProductionMessages,
}

/// A running Synapse in a temporary directory.
pub struct Synapse {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Synapse {
    pub async fn start() -> Synapse {
        Self::start_with(Limits::Raised).await
    }

    pub async fn start_with(limits: Limits) -> Synapse {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let seed: [u8; 32] = rand::random();
        std::fs::write(
            d.join("signing.key"),
            format!("ed25519 a_test {}\n", base64(&seed)),
        )
        .unwrap();
        let mut rate_limits = RATE_LIMITS.to_string();
        if limits == Limits::ProductionMessages {
            rate_limits = rate_limits.replace(
                "rc_message: {per_second: 10000, burst_count: 10000}",
                "rc_message: {per_second: 0.2, burst_count: 10}",
            );
        }
        let config = format!(
            r#"server_name: {SERVER}
pid_file: {d}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
media_store_path: {d}/media
signing_key_path: {d}/signing.key
trusted_key_servers: []
suppress_key_server_warning: true
report_stats: false
enable_registration: false
registration_shared_secret: "{SECRET}"
presence:
  enabled: false
{rate_limits}"#,
            d = d.display()
        );
        std::fs::write(d.join("homeserver.yaml"), config).unwrap();
        let log = std::fs::File::create(d.join("synapse.log")).unwrap();
        let child = Command::new(python())
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(d.join("homeserver.yaml"))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Synapse");
        let synapse = Synapse {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        };
        synapse.wait_healthy().await;
        synapse
    }

    async fn wait_healthy(&self) {
        let started = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Synapse did not start; its log:\n{}",
                std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers `@name:localhost` with the shared secret; returns them logged in.
    pub async fn register(&self, name: &str, admin: bool) -> Person {
        let endpoint = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: Value = self
            .http
            .get(&endpoint)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let nonce = nonce["nonce"].as_str().unwrap().to_string();
        let password = format!("{name}-password");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(nonce.as_bytes());
        mac.update(b"\0");
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(password.as_bytes());
        mac.update(b"\0");
        mac.update(if admin { b"admin" } else { b"notadmin" });
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let resp: Value = self
            .http
            .post(&endpoint)
            .json(&json!({"nonce": nonce, "username": name, "password": password, "admin": admin, "mac": hex}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = resp["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("register {name}: {resp}"))
            .to_string();
        Person::new(
            resp["user_id"].as_str().unwrap(),
            &token,
            &password,
            &self.url,
        )
    }
}
