//! A private registry on 127.0.0.1: Debian's `docker-registry` (the CNCF
//! Distribution registry) with htpasswd (bcrypt, `apache2-utils`)
//! authentication, its own storage directory and port. Docker treats
//! registries on 127.0.0.0/8 as insecure, so plain HTTP is fine. Stopped on drop.

use super::Dockerd;
use crate::publish_support::{free_port, program, run, spawn, wait_until, Proc};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Registry {
    _proc: Proc,
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, as image references name it.
    pub server: String,
    pub username: String,
    pub password: String,
}

impl Registry {
    pub async fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let username = "slipway-bot".to_string();
        let password = format!("reg-pw-{}", std::process::id());
        let htpasswd =
            run(Command::new(program("htpasswd", "apache2-utils"))
                .args(["-Bbn", &username, &password]));
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: slipway-test\n    path: {pw}\n",
            root = dir.path().join("data").display(),
            pw = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(program("docker-registry", "docker-registry"));
        cmd.arg("serve").arg(&config_path);
        let mut proc = spawn("docker-registry", cmd, dir.path().join("registry.log"));
        let url = format!("http://127.0.0.1:{port}/v2/");
        wait_until(&mut proc, Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                // Up, and asking for credentials.
                reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 401)
            }
        })
        .await;
        Registry {
            _proc: proc,
            dir,
            server: format!("127.0.0.1:{port}"),
            username,
            password,
        }
    }

    /// Pushes `local` (an image on `dockerd`) as `SERVER/path`, logged in
    /// with the registry's credentials, and removes it from `dockerd` again,
    /// so that using it needs a pull. Returns the pushed reference.
    pub fn push(&self, dockerd: &Dockerd, local: &str, path: &str) -> String {
        let reference = format!("{}/{path}", self.server);
        let cli_config = self.dir.path().join("cli");
        let cli = || {
            let mut c = dockerd.cli();
            c.arg("--config").arg(&cli_config);
            c
        };
        let mut login = cli()
            .args([
                "login",
                &self.server,
                "-u",
                &self.username,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        login
            .stdin
            .take()
            .unwrap()
            .write_all(self.password.as_bytes())
            .unwrap();
        let out = login.wait_with_output().unwrap();
        assert!(out.status.success(), "docker login: {out:?}");
        run(cli().args(["tag", local, &reference]));
        run(cli().args(["push", &reference]));
        run(cli().args(["rmi", &reference]));
        run(cli().args(["logout", &self.server]));
        reference
    }
}
