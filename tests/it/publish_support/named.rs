//! A real BIND 9 (Debian `bind9`) on a loopback port, for the tests that
//! update DNS and ask it as an operator would (`dig`).

use super::{free_udp_tcp_port, program, publishers, spawn, stdout, wait_until, Proc, ZONE};
use slipway::provider::publish::Dns;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Named {
    pub proc: Proc,
    pub port: u16,
}

/// Starts named for the zone test.example, updatable with the key `slipway`
/// whose tsig-keygen file is `dir/key.conf`.
pub async fn start_named(dir: &Path) -> Named {
    let named = program("named", "bind9");
    let keygen = program("tsig-keygen", "bind9");
    let key = stdout(Command::new(keygen).args(["-a", "hmac-sha256", "slipway"]));
    std::fs::write(dir.join("key.conf"), &key).unwrap();
    std::fs::write(
        dir.join("test.example.zone"),
        "$TTL 60\n\
         @ IN SOA ns1.test.example. admin.test.example. ( 1 60 60 600 60 )\n\
         @ IN NS ns1.test.example.\n\
         ns1 IN A 127.0.0.1\n",
    )
    .unwrap();
    let port = free_udp_tcp_port();
    let d = dir.display();
    let conf = format!(
        r#"include "{d}/key.conf";
options {{
    directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    recursion no;
    notify no;
}};
controls {{ }};
zone "test.example" {{
    type primary;
    file "{d}/test.example.zone";
    allow-update {{ key "slipway"; }};
}};
"#
    );
    std::fs::write(dir.join("named.conf"), conf).unwrap();
    let mut cmd = Command::new(named);
    cmd.args(["-g", "-u", "root", "-c"])
        .arg(dir.join("named.conf"));
    let mut proc = spawn("named", cmd, dir.join("named.log"));
    let log = dir.join("named.log");
    wait_until(&mut proc, Duration::from_secs(15), || {
        let loaded = std::fs::read_to_string(&log).is_ok_and(|t| t.contains("all zones loaded"));
        async move { loaded }
    })
    .await;
    Named { proc, port }
}

impl Named {
    pub fn dns(&self, dir: &Path, key_file: &str) -> Box<dyn Dns> {
        let toml = format!(
            r#"
            zones = ["{ZONE}"]
            [dns]
            server = "127.0.0.1:{}"
            zone = "{ZONE}"
            key_name = "slipway"
            key_secret_file = "{key_file}"
            ttl = "30s"
            "#,
            self.port
        );
        publishers(&toml, dir).dns.unwrap()
    }

    /// Asks with dig, as an operator would: the status and the A records.
    pub fn dig(&self, name: &str) -> (String, Vec<String>) {
        self.dig_type(name, "A")
    }

    /// The status and the records of `kind` (the last field of each answer line).
    pub fn dig_type(&self, name: &str, kind: &str) -> (String, Vec<String>) {
        let dig = program("dig", "bind9-dnsutils");
        let out = stdout(Command::new(dig).args([
            "@127.0.0.1",
            "-p",
            &self.port.to_string(),
            "+norecurse",
            "+time=2",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
            name,
            kind,
        ]));
        let status = out
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or_else(|| panic!("no status in dig's answer:\n{out}"))
            .to_string();
        let answers = out
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
            .collect();
        (status, answers)
    }
}
