//! A docker-host environment as an apps host, end to end: Slipway creates
//! the environment in fakepve, signs dockerd's server certificate for its
//! address with the CA of `docker.env_tls` and hands the files to the
//! profile's post-provision step, which installs them (here: copies them
//! where this test's dockerd reads them, as the shipped playbook copies them
//! into /etc/docker/tls). A real dockerd then listens on the environment's
//! address in a network namespace of its own, with `--tlsverify`, Docker's
//! bridge and published ports — and `/app deploy host:ENV` runs, serves and
//! is removed over that TLS connection. Without the CA's key the step fails
//! and says what to configure.

use crate::apps_support::netns::Netns;
use crate::apps_support::tls::Pki;
use crate::apps_support::{Dockerd, TlsFiles};
use crate::common::{job_of, Opts, TestEnv};
use slipway::domain::lifecycle::{EnvState, JobState};
use std::path::Path;
use std::time::Duration;

/// Adds the test's docker-host profile to `t`; returns the directory its
/// post-provision step copies dockerd's certificate files into.
fn install_profile(t: &TestEnv) -> std::path::PathBuf {
    let installed = t.dir.path().join("installed");
    std::fs::create_dir_all(&installed).unwrap();
    write_profile(&t.dir.path().join("profiles"), &installed);
    installed
}

/// A docker-host profile whose post-provision step installs dockerd's
/// certificate files into `install_to`, and then echoes where they came from.
fn write_profile(profiles: &Path, install_to: &Path) {
    let text = format!(
        r#"
name = "ci-docker-host"
description = "Test profile: dockerd's certificate files installed by cp"
ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
features = ["nesting=1", "keyctl=1"]
docker_tls = true
[resources]
cores = {{ default = 1, min = 1, max = 4 }}
memory_mb = {{ default = 512, min = 256, max = 4096 }}
swap_mb = {{ default = 0, min = 0, max = 512 }}
disk_gb = {{ default = 4, min = 2, max = 20 }}
[network]
bridge = "vmbr0"
ip = "pool"
[ttl]
default = "1d"
max = "7d"
[[post_provision]]
name = "install dockerd certificate"
command = ["cp", "{{{{ docker_tls.ca_file }}}}", "{{{{ docker_tls.cert_file }}}}", "{{{{ docker_tls.key_file }}}}", "{dir}/"]
[[post_provision]]
name = "say where"
command = ["echo", "key was {{{{ docker_tls.key_file }}}}"]
"#,
        dir = install_to.display()
    );
    std::fs::write(profiles.join("ci-docker-host.toml"), text).unwrap();
}

/// `[docker]` for docker-host environments: dockerd's port, Slipway's
/// client identity and, unless `without_ca_key`, the CA's key.
fn docker_section(pki: &Pki, port: u16, without_ca_key: bool) -> String {
    let ca_key = if without_ca_key {
        String::new()
    } else {
        format!(", ca_key_file = \"{}\"", pki.ca_key.display())
    };
    format!(
        r#"
[docker]
health_retries = 20
health_interval = "250ms"
grace = "300ms"
stop_timeout = "2s"
default_memory_mb = 64
env_port = {port}
env_tls = {{ ca_file = "{ca}", cert_file = "{cert}", key_file = "{key}"{ca_key} }}
"#,
        ca = pki.client.ca.display(),
        cert = pki.client.cert.display(),
        key = pki.client.key.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_runs_on_a_docker_host_environment_over_the_tls_slipway_provisioned() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let ns = Netns::new("dh");
    let port = 2376;
    let t = TestEnv::new(Opts {
        extra: docker_section(&pki, port, false),
        provision: true,
        ..Opts::default()
    });
    // The team's pool hands out the namespace's address, as DHCP or a pool would.
    t.edit_config(
        r#"ip_pool = { range = "10.20.0.50-10.20.0.59", network = "10.20.0.0/24", gateway = "10.20.0.1" }"#,
        &format!(
            r#"ip_pool = {{ range = "{a}-{a}", network = "{n}", gateway = "{g}" }}"#,
            a = ns.address(),
            n = ns.network(),
            g = ns.host_address()
        ),
    );
    let installed = install_profile(&t);
    // Operator credentials for a registry: they must never reach the team's dockerd.
    std::fs::write(t.dir.path().join("registry-password"), "operator-secret\n").unwrap();
    let mut text = std::fs::read_to_string(&t.config_path).unwrap();
    text.push_str(
        "\n[[docker.registries]]\nserver = \"127.0.0.1:5999\"\nusername = \"operator\"\npassword_file = \"registry-password\"\n",
    );
    std::fs::write(&t.config_path, text).unwrap();
    let s = t.start();

    let created = s
        .say("bob", "/env create profile:ci-docker-host name:dock")
        .await;
    let job = s.finished(job_of(&created)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let dock = s.env("dock").await;
    assert_eq!(dock.state, EnvState::Ready);
    assert_eq!(dock.address.as_deref(), Some(&*ns.address().to_string()));

    // The step had the files; Slipway kept none of them afterwards.
    let key = installed.join("key.pem");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "dockerd's key is private: {mode:o}");
    let log: Vec<String> = s
        .dispatcher
        .store
        .job_log(job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    let step_key = log
        .iter()
        .find_map(|l| l.strip_prefix("key was "))
        .unwrap_or_else(|| panic!("the step said where its key was: {log:?}"));
    assert!(!Path::new(step_key).exists(), "{step_key} was left behind");
    assert_eq!(
        std::fs::read(installed.join("ca.pem")).unwrap(),
        std::fs::read(&pki.ca).unwrap(),
        "dockerd trusts clients with the CA of docker.env_tls"
    );

    // dockerd as the docker-host environment runs it: on its address, with
    // the certificate Slipway signed, requiring client certificates.
    let listen = format!("{}:{port}", ns.address());
    let dockerd = Dockerd::start_in(
        &ns,
        &listen,
        TlsFiles {
            ca: installed.join("ca.pem"),
            cert: installed.join("cert.pem"),
            key,
        },
    )
    .await;
    dockerd.build_images();

    let reply = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:site host:dock env:GREETING=hello port:8080",
        )
        .await;
    assert!(
        reply.text.contains("on dock (docker-host environment)"),
        "{}",
        reply.text
    );
    let deployed = s.finished(job_of(&reply)).await;
    assert_eq!(deployed.state, JobState::Succeeded, "{deployed:?}");
    let site = s.env("site").await;
    assert_eq!(site.state, EnvState::Ready);
    let containers = dockerd.all_containers();
    assert_eq!(containers.len(), 1, "{containers:?}");

    // Docker published the app's port on the environment's address.
    let info = s.say("bob", "/app info site").await.text;
    assert!(info.contains("live: running, up "), "{info}");
    let url = info
        .split_whitespace()
        .find(|w| w.starts_with(&format!("http://{}:", ns.address())))
        .unwrap_or_else(|| panic!("/app info names where it answers: {info}"))
        .to_string();
    let body = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.trim(), "hello from v1");

    // A private image on the team's own dockerd: the operator's credentials
    // for its registry are not sent there (the team is root on that host).
    let private = s
        .say(
            "bob",
            "/app deploy image:127.0.0.1:5999/team/web:v1 name:priv host:dock port:8080",
        )
        .await;
    let pulled = s.finished(job_of(&private)).await;
    assert_eq!(pulled.state, JobState::Failed, "{pulled:?}");
    let why = pulled.error.unwrap_or_default();
    assert!(
        why.contains("Slipway's credentials for 127.0.0.1:5999 are not given to"),
        "{why}"
    );
    assert!(!why.contains("operator-secret"), "{why}");

    // The host is not destroyed from under its apps.
    let refused = s.say("bob", "/env destroy dock").await;
    assert!(refused.job.is_none(), "{}", refused.text);
    assert!(
        refused.text.contains("dock runs the apps site")
            && refused.text.contains("/app remove site"),
        "{}",
        refused.text
    );
    assert_eq!(s.env("dock").await.state, EnvState::Ready);

    // At its expiry the host's apps go first, then the host.
    let db = crate::common::db(&t.dir.path().join("slipway.db"));
    db.execute(
        "UPDATE environments SET expires_at = ?1 WHERE name = 'dock'",
        [slipway::store::now() - 86400],
    )
    .unwrap();
    s.wake_scheduler();
    s.wait_for_message("dock expired; the app site on it is removed first")
        .await;
    let started = std::time::Instant::now();
    while s.env("dock").await.state != EnvState::Destroyed {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "dock is {:?}",
            s.env("dock").await.state
        );
        s.wake_scheduler();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(dockerd.all_containers().is_empty(), "the app went first");
    s.stop().await;
    drop(dockerd);
    drop(ns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cas_key_the_environment_is_rolled_back_and_the_user_is_told_what_to_configure()
{
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let t = TestEnv::new(Opts {
        extra: docker_section(&pki, 2376, true),
        provision: true,
        ..Opts::default()
    });
    let installed = install_profile(&t);
    let s = t.start();

    let created = s
        .say("bob", "/env create profile:ci-docker-host name:dock")
        .await;
    let job = s.finished(job_of(&created)).await;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let dock = s.env("dock").await;
    let reason = dock.reason.unwrap_or_default();
    assert!(reason.contains("ca_key_file"), "{reason}");
    assert!(std::fs::read_dir(&installed).unwrap().next().is_none());
    // Rolled back: the container is gone from fakepve.
    let guests = t.pve.guests().await;
    assert!(guests.is_empty(), "{guests:?}");
    s.stop().await;
}
