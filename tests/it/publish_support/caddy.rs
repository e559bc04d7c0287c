//! A real Caddy (Debian `caddy`) on loopback ports, for the tests that
//! publish routes through its admin API and send traffic through it.

use super::{free_port, program, spawn, wait_until, Proc};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A real Caddy whose server `slipway` answers 404 "no route" unless a route matches.
pub struct Caddy {
    pub proc: Proc,
    pub admin: String,
    pub http_port: u16,
}

impl Caddy {
    pub async fn start(dir: &Path) -> Caddy {
        let caddy = program("caddy", "caddy");
        let (admin_port, http_port) = (free_port(), free_port());
        let config = json!({
            "admin": { "listen": format!("127.0.0.1:{admin_port}") },
            "apps": { "http": { "servers": { "slipway": {
                "listen": [format!("127.0.0.1:{http_port}")],
                "automatic_https": { "disable": true },
                "routes": [{
                    "@id": "catch-all",
                    "handle": [{ "handler": "static_response", "status_code": 404, "body": "no route" }]
                }]
            } } } }
        });
        let file = dir.join("caddy.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let mut cmd = Command::new(caddy);
        cmd.arg("run")
            .arg("--config")
            .arg(&file)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("HOME", dir);
        let mut proc = spawn("caddy", cmd, dir.join("caddy.log"));
        let admin = format!("http://127.0.0.1:{admin_port}");
        let probe = format!("{admin}/config/");
        wait_until(&mut proc, Duration::from_secs(10), || {
            let probe = probe.clone();
            async move {
                reqwest::get(&probe)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        Caddy {
            proc,
            admin,
            http_port,
        }
    }
}
