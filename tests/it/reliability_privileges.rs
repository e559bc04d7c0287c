//! The least-privilege Proxmox role from the README is enough for the whole
//! life of an environment, and without one of its privileges the step that
//! needs it fails with PVE's words and everything is rolled back.

use crate::common::{job_of, Opts, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::{EnvState, JobState};

/// The role exactly as the README's `pveum role add` line gives it.
fn readme_role() -> Vec<String> {
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("pveum role add Slipway -privs"))
        .expect("the README gives the role");
    let privs = line.split('"').nth(1).unwrap();
    privs.split_whitespace().map(str::to_string).collect()
}

/// The README's `acl modify` paths.
fn readme_paths() -> Vec<String> {
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("pveum acl modify "))
        .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
        .collect()
}

async fn restricted(without: Option<&str>) -> TestEnv {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    // As root: make the pool (pveum pool add slipway).
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&t.pve.ca).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let resp = http
        .post(format!("{}/api2/json/pools", t.pve.url))
        .header(
            "Authorization",
            format!("PVEAPIToken={}={}", t.pve.token_id, t.pve.token_secret),
        )
        .form(&[("poolid", "slipway")])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    // The bot's own token, with the role on the README's paths only.
    t.pve.token("slipway@pve!bot", "bot-secret-for-tests").await;
    let privs: Vec<String> = readme_role()
        .into_iter()
        .filter(|p| Some(p.as_str()) != without)
        .collect();
    for path in readme_paths() {
        let mut args = vec![json!("slipway@pve"), json!(path)];
        args.extend(privs.iter().map(|p| json!(p)));
        t.pve.call("grant", json!(args), json!({})).await;
    }
    t.edit_config(
        &format!("token_id = \"{}\"", t.pve.token_id),
        "token_id = \"slipway@pve!bot\"\npool = \"slipway\"",
    );
    std::fs::write(t.dir.path().join("pve-token"), "bot-secret-for-tests").unwrap();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_role_is_enough_for_a_whole_lifecycle() {
    let t = restricted(None).await;
    let s = t.start();
    let reply = s.say("bob", "/env create profile:web-app name:least").await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let vmid = s.env("least").await.vmid.unwrap();
    let ct = t.pve.guest(vmid).await.unwrap();
    assert_eq!(ct["status"], "running");
    for cmd in [
        "/env stop least",
        "/env start least",
        "/env restart least",
        "/env destroy least",
    ] {
        let reply = s.say("bob", cmd).await;
        let job = s.finished(job_of(&reply)).await;
        assert_eq!(job.state, JobState::Succeeded, "{cmd}: {job:?}");
    }
    assert!(t.pve.guest(vmid).await.is_none());
    let auth: Vec<String> = t
        .pve
        .requests()
        .await
        .iter()
        .filter_map(|r| r["auth"].as_str().map(str::to_string))
        .collect();
    assert!(
        auth.iter()
            .all(|a| a == "slipway@pve!bot" || a == "root@pam!slipway"),
        "{auth:?}"
    );
    assert!(auth.iter().any(|a| a == "slipway@pve!bot"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_power_management_the_start_fails_and_is_rolled_back() {
    let t = restricted(Some("VM.PowerMgmt")).await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:nopower")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Failed);
    let env = s.env("nopower").await;
    assert_eq!(env.state, EnvState::Failed);
    let reason = env.reason.unwrap();
    assert!(
        reason.starts_with("start container:") && reason.contains("VM.PowerMgmt"),
        "{reason}"
    );
    assert!(
        t.pve.guest(env.vmid.unwrap()).await.is_none(),
        "the container was left behind"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bridge_the_create_is_refused_by_proxmox() {
    let t = restricted(Some("SDN.Use")).await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:nonet")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Failed);
    let reason = s.env("nonet").await.reason.unwrap();
    assert!(
        reason.starts_with("create container:") && reason.contains("SDN.Use"),
        "{reason}"
    );
    assert_eq!(
        t.pve
            .guests()
            .await
            .iter()
            .filter(|g| g["type"] == "lxc")
            .count(),
        0
    );
    s.stop().await;
}
