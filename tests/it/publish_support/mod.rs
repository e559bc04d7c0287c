//! Shared helpers of the `publish_*` integration tests: typed test routes,
//! providers built from a `[publish]` TOML snippet through the same
//! validate-then-build path the app uses, loopback ports, child processes that
//! die with their guard, and a tiny HTTP backend. A missing program makes the
//! test fail with the package to install: CI installs them, so a skip would
//! hide a broken setup.

#![allow(dead_code)]

pub mod caddy;
pub mod named;

use slipway::catalog::Problem;
use slipway::domain::domain_name::Domain;
use slipway::domain::names::EnvName;
use slipway::provider::publish::config::{self, RawPublish};
use slipway::provider::publish::{Publishers, Route};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The zone every test publishes in.
pub const ZONE: &str = "test.example";

pub fn zones() -> Vec<String> {
    vec![ZONE.to_string()]
}

/// A route for environment `env_id` named `name`, published as `name.test.example`.
pub fn route(env_id: i64, name: &str, address: Ipv4Addr, port: u16) -> Route {
    Route {
        env_id,
        env_name: EnvName::parse(name).unwrap(),
        team: "web".into(),
        profile: "webapp".into(),
        domain: Domain::parse(&format!("{name}.{ZONE}"), &zones()).unwrap(),
        address,
        port,
    }
}

/// Validates a `[publish]` section (paths relative to `base`) and builds it;
/// panics listing every problem.
pub fn publishers(toml_text: &str, base: &Path) -> Publishers {
    let raw: RawPublish = toml::from_str(toml_text).expect("the test's [publish] TOML parses");
    let mut problems: Vec<Problem> = Vec::new();
    let cfg = config::validate(raw, base, "test.toml", &mut problems);
    assert!(problems.is_empty(), "configuration problems: {problems:?}");
    config::build(&cfg).expect("providers build")
}

/// Inputs that must never reach a provider.
pub const HOSTILE: &[&str] = &[
    "sh`op.test.example",
    "x`) || Host(`evil.test.example",
    "sh\"op.test.example",
    "sh'op.test.example",
    "my shop.test.example",
    "{{env}}.test.example",
    "$(reboot).test.example",
    "shop\n.test.example",
    "../../etc/passwd.test.example",
    "bücher.test.example",
    "shop.test.example.",
    "shop.other.example",
    "test.example",
];

pub fn hostile_domains() -> Vec<String> {
    let mut all: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    all.push(format!("{}.{ZONE}", "a".repeat(64)));
    all.push(format!("{}.{ZONE}", vec!["a".repeat(60); 4].join(".")));
    all
}

/// A free TCP port on 127.0.0.1, chosen by the OS.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP on 127.0.0.1 (a DNS server needs both).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// Finds `program` on PATH (or in the sbin directories) or fails with the
/// Debian package that provides it.
pub fn program(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{program} is not installed; this test needs the real thing: apt-get install -y {package}"
    );
}

/// Runs a program to completion with an argv; panics with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// A child process that is killed when the guard is dropped, even when the test panics.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
    /// Where its output goes, to show when it misbehaves.
    pub log: PathBuf,
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the log if the process has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with stdout and stderr in `log`.
pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc { child, name, log }
}

/// Polls `ready` every 50 ms until it holds, failing after `limit` with the process log.
pub async fn wait_until<F, Fut>(proc: &mut Proc, limit: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        proc.assert_running();
        if ready().await {
            return;
        }
        if start.elapsed() > limit {
            panic!(
                "{} was not ready within {limit:?}:\n{}",
                proc.name,
                proc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP backend on 127.0.0.1 that answers every request with `body`.
/// Returns its port; it lives until the test's runtime ends.
pub async fn backend(body: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}
