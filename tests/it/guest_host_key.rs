//! Trust on first use, and only then: a guest that presents another host key
//! than the one recorded at first contact is not logged in to, and the user
//! is told why, in words, instead of Slipway re-trusting it.
//!
//! Subnet: 10.231.14.0/30 (see guest_support).

use crate::common::{job_of, TestEnv};
use crate::guest_provision::{create_keys, guest_env, guest_for_create, job_log};
use crate::guest_support::Guest;
use slipway::domain::lifecycle::JobState;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A profile whose first step waits for `flag` (so the test can swap the
/// guest between first contact and the step that logs in) and whose second
/// step logs in with what Slipway gives it.
fn rekey_profile(t: &TestEnv, flag: &std::path::Path) {
    let profile = format!(
        r#"name = "ci-rekey"
description = "Test profile: waits for a flag, then logs in"
ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
[resources]
cores = {{ default = 1, min = 1, max = 2 }}
memory_mb = {{ default = 512, min = 256, max = 1024 }}
swap_mb = {{ default = 0, min = 0, max = 512 }}
disk_gb = {{ default = 4, min = 2, max = 8 }}
[network]
bridge = "vmbr0"
ip = "pool"
[ttl]
default = "1d"
max = "7d"
[[post_provision]]
name = "wait for the test"
command = ["sh", "-c", "while [ ! -e '{flag}' ]; do sleep 0.2; done"]
timeout = "2m"
[[post_provision]]
name = "log in"
command = ["ssh", "-F", "/dev/null", "-i", "{{{{ ssh.key_file }}}}", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile={{{{ ssh.known_hosts }}}}", "-o", "StrictHostKeyChecking=yes", "{{{{ ssh.user }}}}@{{{{ address }}}}", "touch /root/logged-in"]
timeout = "1m"
"#,
        flag = flag.display()
    );
    std::fs::write(t.dir.path().join("profiles/ci-rekey.toml"), profile).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_stops_post_provisioning_with_a_clear_message() {
    let t = guest_env(14);
    let flag = t.dir.path().join("swapped");
    rekey_profile(&t, &flag);
    let s = t.start();
    let job = job_of(
        &s.say("bob", "/env create profile:ci-rekey name:rekey")
            .await,
    );
    let first = guest_for_create(&t, 14).await;
    let first_key = first.host_key_fingerprint();
    let started = Instant::now();
    while !job_log(&t, job).contains("recorded at first contact") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the host key is never recorded: {}",
            job_log(&t, job)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same address now answers with another guest: fresh host keys.
    let keys = create_keys(&t).await;
    drop(first);
    let second = tokio::task::spawn_blocking(move || {
        Guest::start(
            Ipv4Addr::new(10, 231, 14, 2),
            Ipv4Addr::new(10, 231, 14, 1),
            30,
            &keys,
        )
    })
    .await
    .unwrap();
    assert_ne!(second.host_key_fingerprint(), first_key);
    std::fs::write(&flag, "").unwrap();

    let done = s.finished_within(job, Duration::from_secs(180)).await;
    assert_eq!(done.state, JobState::Failed, "{}", job_log(&t, job));
    let error = done.error.unwrap_or_default();
    assert!(
        error.contains("the SSH host key of 10.231.14.2 is not the one recorded")
            && error.contains(&first_key)
            && error.contains("Nothing was run"),
        "{error}"
    );
    let out = second.exec("test -e /root/logged-in && echo yes");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "the step logged in to a guest with another host key"
    );
    s.stop().await;
}
