//! Shared helpers of the `apps_*` integration tests: a real dockerd (Debian
//! `docker.io`) started per test with its own socket, data root and exec root,
//! touching nothing of the machine's network (`--iptables=false
//! --ip-forward=false --bridge=none`; apps use the host's network on
//! 127.0.0.1), test images built `FROM scratch` with busybox-static so no
//! registry is needed, a real Caddy with a catch-all 404, and a Slipway
//! configured for both. Everything is stopped and cleaned up on drop.
//! [`Dockerd::start_with_tls`] also has dockerd listen on TCP with
//! `--tlsverify` and certificates of a throwaway CA ([`tls`]).

#![allow(dead_code)]

pub mod netns;
pub mod registry;
pub mod tls;

use crate::common::{Opts, Running, TestEnv};
use crate::publish_support::{free_port, program, run, spawn, wait_until, Proc};
use slipway::provider::docker::{
    AppContainer, ContainerInfo, DockerHosts, Networking, LABEL_APP_ID,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The domain apps are published under in these tests.
pub const DOMAIN: &str = "app.test.example";

/// A dockerd of our own, stopped and unmounted on drop.
pub struct Dockerd {
    proc: Option<Proc>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    /// With [`Dockerd::start_with_tls`]: the TCP listener and its certificates.
    pub tls: Option<TlsListener>,
}

/// dockerd's server identity and the CA it trusts clients with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A short path: a unix socket's path is limited to 108 bytes.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("slw-dk")
        .tempdir_in("/tmp")
        .unwrap()
}

/// dockerd's `tcp://127.0.0.1:PORT` listener, with `--tlsverify`.
pub struct TlsListener {
    pub port: u16,
    pub pki: tls::Pki,
}

impl Dockerd {
    /// dockerd on its own unix socket only.
    pub async fn start() -> Dockerd {
        Dockerd::launch(false).await
    }

    /// dockerd on its unix socket and on `tcp://127.0.0.1:PORT`, where it
    /// requires TLS and a client certificate of [`tls::Pki::ca`].
    pub async fn start_with_tls() -> Dockerd {
        Dockerd::launch(true).await
    }

    async fn launch(with_tls: bool) -> Dockerd {
        let dir = tempdir();
        let tls = with_tls.then(|| TlsListener {
            port: free_port(),
            pki: tls::Pki::new(&dir.path().join("pki")),
        });
        let listen = tls.as_ref().map(|t| {
            let files = TlsFiles {
                ca: t.pki.ca.clone(),
                cert: t.pki.server_cert.clone(),
                key: t.pki.server_key.clone(),
            };
            (format!("127.0.0.1:{}", t.port), files)
        });
        let mut d = Dockerd::spawn(dir, None, listen).await;
        d.tls = tls;
        d
    }

    /// dockerd inside network namespace `ns`, with Docker's default bridge
    /// (inside the namespace; still `--iptables=false`), listening on its unix
    /// socket and on `listen` with `--tlsverify` and `files`: a Docker host as
    /// a docker-host environment is one.
    pub async fn start_in(ns: &netns::Netns, listen: &str, files: TlsFiles) -> Dockerd {
        Dockerd::spawn(tempdir(), Some(ns), Some((listen.to_string(), files))).await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        ns: Option<&netns::Netns>,
        listen: Option<(String, TlsFiles)>,
    ) -> Dockerd {
        let dockerd = program("dockerd", "docker.io");
        let socket = dir.path().join("d.sock");
        let mut cmd = match ns {
            // nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroups dockerd needs.
            Some(ns) => {
                let mut c = Command::new(program("nsenter", "util-linux"));
                c.arg(format!("--net={}", ns.path().display())).arg(dockerd);
                c
            }
            None => Command::new(dockerd),
        };
        cmd.arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("d.pid"))
            .args([
                "--iptables=false",
                "--ip-forward=false",
                "--shutdown-timeout=2",
            ]);
        if ns.is_none() {
            cmd.arg("--bridge=none");
        }
        if let Some((addr, files)) = &listen {
            cmd.arg("-H")
                .arg(format!("tcp://{addr}"))
                .arg("--tlsverify")
                .arg("--tlscacert")
                .arg(&files.ca)
                .arg("--tlscert")
                .arg(&files.cert)
                .arg("--tlskey")
                .arg(&files.key);
        }
        let mut proc = spawn("dockerd", cmd, dir.path().join("dockerd.log"));
        let sock = socket.clone();
        let tcp = listen.as_ref().map(|(a, _)| a.clone());
        wait_until(&mut proc, Duration::from_secs(30), || {
            let sock = sock.clone();
            let tcp = tcp.clone();
            async move {
                let tcp_up = match tcp {
                    Some(a) => tokio::net::TcpStream::connect(a).await.is_ok(),
                    None => true,
                };
                tcp_up && ping(&sock).await
            }
        })
        .await;
        Dockerd {
            proc: Some(proc),
            dir,
            socket,
            tls: None,
        }
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(program("docker", "docker.io"));
        cmd.arg("-H").arg(self.url()).env("DOCKER_BUILDKIT", "0");
        cmd
    }

    /// Builds the test images: `slipway-test/web:v1` and `:v2` serve
    /// "$GREETING from vN" on $PORT (and log every request), `:broken` starts
    /// but answers 404 to everything, so its health check fails.
    pub fn build_images(&self) {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("busybox is not installed: apt-get install -y busybox-static")
            });
        let ctx = self.dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(&busybox, ctx.join("busybox")).unwrap();
        let serve = |version: &str| {
            format!(
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                 RUN mkdir -p /www /empty /tmp\n\
                 CMD [\"/bin/sh\", \"-c\", \"echo \\\"$GREETING from {version}\\\" > /www/index.html; exec httpd -f -v -p $PORT -h /www\"]\n"
            )
        };
        let broken = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                      RUN mkdir -p /empty\n\
                      CMD [\"/bin/sh\", \"-c\", \"exec httpd -f -v -p $PORT -h /empty\"]\n";
        for (tag, dockerfile) in [
            ("v1", serve("v1")),
            ("v2", serve("v2")),
            ("broken", broken.to_string()),
        ] {
            let file = ctx.join(format!("Dockerfile.{tag}"));
            std::fs::write(&file, dockerfile).unwrap();
            run(self
                .cli()
                .args(["build", "--network", "none", "-q", "-t"])
                .arg(format!("slipway-test/web:{tag}"))
                .arg("-f")
                .arg(&file)
                .arg(&ctx));
        }
    }

    /// Every container carrying the app's id label, running or not.
    pub async fn app_containers(&self, docker: &DockerHosts, app_id: i64) -> Vec<ContainerInfo> {
        docker
            .host("local", None)
            .unwrap()
            .containers
            .list(&[(LABEL_APP_ID, app_id.to_string())])
            .await
            .unwrap()
    }

    /// Runs `slipway-test/web:v1` as `name` with `labels`, as someone working on
    /// the host by hand would (host network, a free port); returns its name.
    pub async fn run_by_hand(
        &self,
        docker: &DockerHosts,
        name: &str,
        labels: &[(&str, &str)],
    ) -> String {
        let containers = docker.host("local", None).unwrap().containers;
        let spec = AppContainer {
            name: name.into(),
            image: "slipway-test/web:v1".into(),
            env: vec!["GREETING=by hand".into()],
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cores: 1,
            memory_mb: 32,
            networking: Networking::Host {
                port: crate::publish_support::free_port(),
            },
            binds: vec![],
            privileged: false,
            devices: vec![],
        };
        containers.create(&spec).await.unwrap();
        containers.start(name).await.unwrap();
        name.to_string()
    }

    /// The container called `name` as Docker reports it, if it is there.
    pub async fn inspect(&self, docker: &DockerHosts, name: &str) -> Option<ContainerInfo> {
        let containers = docker.host("local", None).unwrap().containers;
        containers.inspect(name).await.unwrap()
    }

    /// Every container on this dockerd.
    pub fn all_containers(&self) -> Vec<String> {
        let out = run(self.cli().args(["ps", "-a", "--format", "{{.Names}}"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            // SIGTERM: dockerd stops its containers and containerd before it exits.
            let _ = Command::new("kill")
                .args(["-TERM", &proc.child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = proc.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            drop(proc);
        }
        let netns = self.dir.path().join("exec/netns/default");
        let _ = Command::new("umount").arg(&netns).output();
    }
}

/// Docker's `GET /_ping` over the socket answers OK.
async fn ping(socket: &Path) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::UnixStream::connect(socket).await else {
        return false;
    };
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    buf.contains("200 OK")
}

pub use crate::publish_support::caddy::Caddy;

impl Caddy {
    /// GETs / with the given Host; status and body.
    pub async fn get(&self, host: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/", self.http_port))
            .header(reqwest::header::HOST, host)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

/// `n` consecutive ports that are free on 127.0.0.1 now.
pub fn free_range(n: u16) -> (u16, u16) {
    for _ in 0..200 {
        let first = free_port();
        if first > u16::MAX - n {
            continue;
        }
        let all_free =
            (first..first + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return (first, first + n - 1);
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1");
}

/// Everything an apps test runs against.
pub struct World {
    pub dockerd: Dockerd,
    pub caddy: Option<Caddy>,
    pub env: TestEnv,
}

/// The `[docker]` section for `dockerd`'s socket, fast health checks and grace.
pub fn docker_section(dockerd: &Dockerd) -> String {
    docker_section_for("local", &format!("url = \"{}\"", dockerd.url()))
}

/// The `[docker]` section with one host `name` for team web, reached as
/// `connection` says (its `url` and any TLS files).
pub fn docker_section_for(name: &str, connection: &str) -> String {
    let (first, last) = free_range(8);
    format!(
        r#"
[docker]
health_retries = 6
health_interval = "250ms"
grace = "300ms"
stop_timeout = "2s"
default_memory_mb = 64

[[docker.hosts]]
name = "{name}"
{connection}
address = "127.0.0.1"
network = "host"
ports = "{first}-{last}"
teams = ["web"]
"#
    )
}

impl World {
    /// dockerd with the test images, optionally Caddy, and a configured Slipway.
    pub async fn new(with_caddy: bool, opts: Opts) -> World {
        let dockerd = Dockerd::start().await;
        let section = docker_section(&dockerd);
        World::around(dockerd, section, with_caddy, opts).await
    }

    /// Like [`World::new`] without Caddy, with dockerd also on TCP with TLS and
    /// Slipway's one host, `tls1`, declared as `tcp://127.0.0.1:PORT` with
    /// the client identity [`tls::Pki::client`].
    pub async fn with_tls(opts: Opts) -> World {
        let dockerd = Dockerd::start_with_tls().await;
        let section = docker_section_for(tls::TLS_HOST, &dockerd.tls_connection());
        World::around(dockerd, section, false, opts).await
    }

    async fn around(dockerd: Dockerd, section: String, with_caddy: bool, mut opts: Opts) -> World {
        dockerd.build_images();
        let caddy = if with_caddy {
            Some(Caddy::start(dockerd.dir.path()).await)
        } else {
            None
        };
        let mut extra = section;
        if let Some(c) = &caddy {
            extra.push_str(&format!(
                "\n[publish]\nrouter = \"caddy-api\"\nzones = [\"test.example\"]\n[publish.caddy_api]\nadmin_url = \"{}\"\nserver = \"slipway\"\n",
                c.admin
            ));
        }
        opts.provision = false;
        opts.extra.push_str(&extra);
        let env = TestEnv::new(opts);
        World {
            dockerd,
            caddy,
            env,
        }
    }

    pub fn caddy(&self) -> &Caddy {
        self.caddy.as_ref().expect("this test started Caddy")
    }
}

/// The id of the app (its environment row) called `name`.
pub async fn app_id(s: &Running, name: &str) -> i64 {
    s.env(name).await.id
}

/// Every text the chat sink saw, joined.
pub fn everything_said(s: &Running) -> String {
    s.sink
        .all()
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `check` holds (at most 10 s), polling every 100 ms.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
