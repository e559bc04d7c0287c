//! Logging in to what one created: the keys that go into a new container.
//! Slipway's own provisioning key (made at first start, private, 0600) and
//! the team's configured keys are in the create request fakepve received.

mod common;

use common::{job_of, Opts, TestEnv};
use slipway::domain::lifecycle::JobState;
use std::os::unix::fs::PermissionsExt;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(common::repo().join("tests/data/ssh").join(name))
        .unwrap()
        .trim()
        .to_string()
}

/// The `ssh-public-keys` of every create request fakepve received.
async fn sent_keys(t: &TestEnv) -> Vec<String> {
    t.pve
        .writes()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/nodes/pve1/lxc")
        })
        .map(|r| {
            r["params"]["ssh-public-keys"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_container_trusts_slipways_key_and_the_teams_keys() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let team_key = fixture("k_ed25519.pub");
    t.edit_config(
        "name = \"web\"\n",
        &format!("name = \"web\"\nssh_keys = [\"{team_key}\"]\n"),
    );
    let s = t.start();
    let private = t.dir.path().join("slipway_ed25519");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the provisioning key is private");
    let slipway_key = std::fs::read_to_string(t.dir.path().join("slipway_ed25519.pub"))
        .unwrap()
        .trim()
        .to_string();

    let reply = s
        .say("bob", "/env create profile:generic-service name:keyed")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let sent = sent_keys(&t).await;
    assert_eq!(sent.len(), 1);
    let lines: Vec<&str> = sent[0].lines().collect();
    assert_eq!(lines, [team_key.as_str(), slipway_key.as_str()]);
    // The private key is in no log and no message.
    let secret = std::fs::read_to_string(&private).unwrap();
    let body: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
    for (_, text) in s.sink.all() {
        assert!(
            !text.contains(&body[..40]),
            "the private key was posted: {text}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_team_key_is_a_configuration_problem_naming_it() {
    let t = TestEnv::new(Opts::default());
    let short = fixture("k_rsab2048.pub");
    t.edit_config(
        "name = \"web\"\n",
        &format!("name = \"web\"\nssh_keys = [\"{short}\"]\n"),
    );
    let out = t.slipway(&["check"], "");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("teams[0].ssh_keys[0]") || text.contains("ssh_keys[0]"),
        "the problem names the key: {text}"
    );
    assert!(text.contains("2048 bits"), "{text}");
}
