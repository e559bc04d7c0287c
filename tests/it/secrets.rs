//! Secrets never appear in logs, errors, job logs, stored rows or chat
//! messages: the Proxmox token is exercised on every error path — a refused
//! token, a TLS failure, Proxmox errors — with debug logging on. (Every test
//! that stops its in-process Slipway also scans its messages and database.)

use crate::common::{assert_no_secret, job_of, Opts, TestEnv};
use slipway::domain::lifecycle::JobState;

const SECRET: &str = "pvetoken-9f1c2e7a-5b3d-4c8e-a1f0-SECRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_never_shows_its_secret() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    // A token Proxmox does not know, with a secret-shaped value.
    t.edit_config(
        &format!("token_id = \"{}\"", t.pve.token_id),
        "token_id = \"ghost@pve!bot\"",
    );
    std::fs::write(t.dir.path().join("pve-token"), SECRET).unwrap();
    let mut s = t.start();
    s.secrets.push(SECRET.into());
    let reply = s
        .say("bob", "/env create profile:generic-service name:refused")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Failed);
    let reason = s.env("refused").await.reason.unwrap();
    assert!(
        reason.contains("401") || reason.contains("authentication failure"),
        "{reason}"
    );
    assert_no_secret(&s.secrets, &reason, "the failure reason");
    let job_text = s.say("bob", &format!("/job {}", job_of(&reply))).await.text;
    assert_no_secret(&s.secrets, &job_text, "/job");
    s.stop().await;

    // The same through the binary, with debug logs on.
    let out = t.slipway(
        &["console"],
        "/env create profile:generic-service name:again\n/jobs\n",
    );
    assert_eq!(out.status.code(), Some(1));
    for text in [
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    ] {
        assert!(!text.contains(SECRET), "the token leaked: {text}");
    }
}

#[test]
fn the_configuration_does_not_print_its_secrets() {
    let t = TestEnv::new(Opts::default());
    std::fs::write(t.dir.path().join("pve-token"), SECRET).unwrap();
    let config = t.config();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(SECRET),
        "Debug of the configuration shows the token"
    );
    let pve = slipway::provider::proxmox::Proxmox::new(&config.proxmox).unwrap();
    assert!(!format!("{pve:?}").contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_and_proxmox_errors_keep_the_token_out() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    // Trust nothing: every call fails in the TLS handshake.
    let ca = format!("ca_file = \"{}\"", t.pve.ca.display());
    std::fs::write(
        t.dir.path().join("other-ca.pem"),
        include_str!("../data/unrelated-ca.pem"),
    )
    .unwrap();
    t.edit_config(&ca, "ca_file = \"other-ca.pem\"");
    let out = t.slipway(
        &["console"],
        "/env create profile:generic-service name:tls\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("could not reach Proxmox"), "{stdout}");
}

/// The database holds app secrets: Slipway makes it private, and will not run
/// on one that other users can read.
#[test]
fn the_database_is_private_and_an_exposed_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestEnv::new(Opts::default());
    let out = t.slipway(&["migrate"], "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let db = t.dir.path().join("slipway.db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600, "a new database is its owner's only");

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = t.slipway(&["migrate"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can be read by other users (mode 0644)")
            && err.contains(&format!("chmod 600 {}", db.display())),
        "{err}"
    );
    let out = t.slipway(&["console"], "/env list\n");
    assert_ne!(
        out.status.code(),
        Some(0),
        "the console does not run on it either"
    );
}
