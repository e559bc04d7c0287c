//! Logging in to what one created: the keys that go into a new container.
//! Slipway's own provisioning key (made at first start, private, 0600) and
//! the team's configured keys are in the create request fakepve received.

use crate::common::{job_of, Opts, TestEnv};
use slipway::domain::lifecycle::JobState;
use std::os::unix::fs::PermissionsExt;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(crate::common::repo().join("tests/data/ssh").join(name))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_key_is_added_listed_used_at_create_and_removed() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let key = fixture("k_ed25519.pub");
    let fingerprint = fixture("k_ed25519.fingerprint");

    // Without a key, the create's answer says how to add one.
    let first = s
        .say("bob", "/env create profile:generic-service name:nokey")
        .await;
    assert!(first.text.contains("/keys add"), "{}", first.text);
    s.finished(job_of(&first)).await;

    let added = s.say("bob", &format!("/keys add key:\"{key}\"")).await;
    assert!(added.private, "the answer is for bob only");
    assert!(
        added.text.contains(&fingerprint) && added.text.contains("ed25519"),
        "{}",
        added.text
    );
    let again = s.say("bob", &format!("/keys add key:\"{key}\"")).await;
    assert!(again.text.contains("already"), "{}", again.text);
    let list = s.say("bob", "/keys list").await;
    assert!(list.text.contains(&fingerprint), "{}", list.text);
    assert!(list.text.contains("(1)"), "one key, not two: {}", list.text);
    let carols = s.say("carol", "/keys list").await;
    assert!(carols.text.contains("no SSH key"), "{}", carols.text);

    let second = s
        .say("bob", "/env create profile:generic-service name:withkey")
        .await;
    assert!(!second.text.contains("/keys add"), "{}", second.text);
    assert_eq!(s.finished(job_of(&second)).await.state, JobState::Succeeded);
    let sent = sent_keys(&t).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].lines().count(),
        1,
        "only Slipway's key: {}",
        sent[0]
    );
    assert_eq!(
        sent[1].lines().next(),
        Some(key.as_str()),
        "bob's key first"
    );

    let removed = s
        .say("bob", &format!("/keys remove key:{fingerprint}"))
        .await;
    assert!(removed.text.contains("Removed"), "{}", removed.text);
    let gone = s.say("bob", "/keys list").await;
    assert!(gone.text.contains("no SSH key"), "{}", gone.text);
    let twice = s
        .say("bob", &format!("/keys remove key:{fingerprint}"))
        .await;
    assert!(twice.text.contains("you have no key"), "{}", twice.text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_are_refused_with_a_reason_and_nothing_is_stored() {
    let t = TestEnv::new(Opts::default());
    let s = t.start();
    let ed = fixture("k_ed25519.pub");
    let ec = fixture("k_ecdsab256.pub");
    let cases = [
        (fixture("k_dsa.pub"), "DSA"),
        (fixture("k_rsab2048.pub"), "2048 bits"),
        (format!("command=\\\"/bin/sh\\\" {ed}"), "options"),
        (format!("{ed} {ec}"), "2 keys"),
        ("not a key at all".to_string(), "not an OpenSSH public key"),
    ];
    for (key, reason) in cases {
        let reply = s.say("bob", &format!("/keys add key:\"{key}\"")).await;
        assert!(reply.private);
        assert!(reply.text.contains(reason), "{key}: {}", reply.text);
    }
    // A private key pasted by mistake: not stored, called exposed, not quoted back.
    let private = "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB -----END OPENSSH PRIVATE KEY-----";
    let reply = s.say("bob", &format!("/keys add key:\"{private}\"")).await;
    assert!(reply.text.contains("exposed"), "{}", reply.text);
    assert!(!reply.text.contains("b3BlbnNz"), "{}", reply.text);
    let stored = s.count("SELECT COUNT(*) FROM ssh_keys").await;
    assert_eq!(stored, 0, "nothing was stored");
    let audit = s
        .count(
            "SELECT COUNT(*) FROM audit WHERE detail LIKE '%b3BlbnNz%' OR target LIKE '%b3BlbnNz%'",
        )
        .await;
    assert_eq!(audit, 0, "the private key is not in the audit log");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slipway_keys_show_and_rotate_print_the_public_key() {
    let t = TestEnv::new(Opts::default());
    let shown = t.slipway(&["keys", "show"], "");
    assert!(shown.status.success());
    let first = String::from_utf8_lossy(&shown.stdout).trim().to_string();
    assert!(first.starts_with("ssh-ed25519 "), "{first}");
    let again = t.slipway(&["keys", "show"], "");
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), first, "kept");
    let rotated = t.slipway(&["keys", "rotate"], "");
    assert!(rotated.status.success());
    let second = String::from_utf8_lossy(&rotated.stdout).trim().to_string();
    assert!(second.starts_with("ssh-ed25519 ") && second != first);
    let private = std::fs::read_to_string(t.dir.path().join("slipway_ed25519")).unwrap();
    for out in [&shown, &again, &rotated] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(private.lines().nth(1).unwrap()), "{all}");
    }
}
