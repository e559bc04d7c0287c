//! DNS against a real BIND 9 (Debian `bind9`) started here on a loopback
//! port with a TSIG key made by `tsig-keygen`: after an upsert, `dig` gets the
//! A record; after a delete, NXDOMAIN. Upserts replace rather than add, a
//! repeated delete is fine, and a wrong key is refused with a hint.

use crate::publish_support::*;
use slipway::domain::domain_name::Domain;
use slipway::provider::publish::{Dns, PublishError};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

struct Named {
    proc: Proc,
    port: u16,
}

/// Starts named for the zone test.example, updatable with the key `slipway`
/// whose tsig-keygen file is `dir/key.conf`.
async fn start_named(dir: &Path) -> Named {
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
    fn dns(&self, dir: &Path, key_file: &str) -> Box<dyn Dns> {
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
    fn dig(&self, name: &str) -> (String, Vec<String>) {
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
            "A",
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

fn shop() -> Domain {
    Domain::parse("shop.test.example", &zones()).unwrap()
}

#[tokio::test]
async fn an_upserted_record_is_answered_and_nxdomain_after_delete() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    let dns = named.dns(dir.path(), "key.conf");
    assert_eq!(named.dig("shop.test.example").0, "NXDOMAIN");

    dns.upsert_a(&shop(), Ipv4Addr::new(10, 20, 0, 12))
        .await
        .unwrap();

    assert_eq!(
        named.dig("shop.test.example"),
        ("NOERROR".to_string(), vec!["10.20.0.12".to_string()])
    );

    dns.delete_a(&shop()).await.unwrap();

    assert_eq!(
        named.dig("shop.test.example"),
        ("NXDOMAIN".to_string(), vec![])
    );
    drop(named.proc);
}

#[tokio::test]
async fn an_upsert_replaces_the_address_instead_of_adding_one() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    let dns = named.dns(dir.path(), "key.conf");

    dns.upsert_a(&shop(), Ipv4Addr::new(10, 20, 0, 12))
        .await
        .unwrap();
    dns.upsert_a(&shop(), Ipv4Addr::new(10, 20, 0, 12))
        .await
        .unwrap();
    dns.upsert_a(&shop(), Ipv4Addr::new(10, 20, 0, 99))
        .await
        .unwrap();

    assert_eq!(
        named.dig("shop.test.example").1,
        vec!["10.20.0.99".to_string()]
    );
}

#[tokio::test]
async fn deleting_a_record_that_is_not_there_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    let dns = named.dns(dir.path(), "key.conf");

    dns.delete_a(&shop()).await.unwrap();
    dns.delete_a(&shop()).await.unwrap();

    assert_eq!(named.dig("shop.test.example").0, "NXDOMAIN");
}

#[tokio::test]
async fn an_update_signed_with_the_wrong_secret_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    std::fs::write(
        dir.path().join("wrong.key"),
        "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA==\n",
    )
    .unwrap();
    let dns = named.dns(dir.path(), "wrong.key");

    let err = dns
        .upsert_a(&shop(), Ipv4Addr::new(10, 20, 0, 12))
        .await
        .unwrap_err();

    assert!(matches!(err, PublishError::Dns { .. }), "{err}");
    assert!(err.to_string().contains("TSIG key 'slipway'"), "{err}");
    assert!(err.to_string().contains("BADSIG"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(named.dig("shop.test.example").0, "NXDOMAIN");
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_a_transient_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "c2VjcmV0LWtleS1ieXRlcw==\n").unwrap();
    let toml = format!(
        "zones = [\"{ZONE}\"]\n[dns]\nserver = \"127.0.0.1:{}\"\nzone = \"{ZONE}\"\nkey_name = \"slipway\"\nkey_secret_file = \"key\"\n",
        free_port()
    );
    let dns = publishers(&toml, dir.path()).dns.unwrap();

    let err = dns.delete_a(&shop()).await.unwrap_err();

    assert!(err.is_transient(), "{err}");
}
