//! `/env access`, on a real guest: bob lets dave (his teammate) log in to the
//! environment bob created, with dave's own key, and takes it away again;
//! bob's own login is untouched throughout. Whom the request names is
//! checked before anything is queued.
//!
//! Subnet: 10.231.16.0/30 (see guest_support).

use crate::common::job_of;
use crate::guest_provision::{add_key, guest_env, guest_for_create, job_log, PROVISION_LIMIT};
use slipway::domain::lifecycle::JobState;

const N: u8 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_gives_a_teammate_access_and_takes_it_away() {
    let t = guest_env(N);
    let s = t.start();
    let bob = add_key(&s, &t, "bob").await;
    let dave = add_key(&s, &t, "dave").await;
    let reply = s
        .say("bob", "/env create profile:generic-service name:shared")
        .await;
    let job = job_of(&reply);
    let guest = guest_for_create(&t, N).await;
    let done = s.finished_within(job, PROVISION_LIMIT).await;
    assert_eq!(done.state, JobState::Succeeded, "{}", job_log(&t, job));
    let known = t.dir.path().join("known_hosts");
    guest.write_known_hosts(&known);
    let logs_in = |key: &std::path::Path| guest.ssh(key, &known, "true").status.success();
    assert!(logs_in(&bob.private));
    assert!(!logs_in(&dave.private), "dave's key was not in the create");

    // Whom the request names is checked first; nothing is queued.
    let nobody = s.say("bob", "/env access add name:shared user:zed").await;
    assert!(nobody.job.is_none());
    assert!(
        nobody.text.contains("'zed' is not a console user"),
        "{}",
        nobody.text
    );
    let keyless = s.say("bob", "/env access add name:shared user:carol").await;
    assert!(keyless.job.is_none());
    assert!(
        keyless.text.contains("carol has no SSH keys"),
        "{}",
        keyless.text
    );
    let outsider = s.say("eve", "/env access add name:shared user:eve").await;
    assert!(outsider.job.is_none(), "{}", outsider.text);

    let add = s.say("bob", "/env access add name:shared user:dave").await;
    let added = s.finished(job_of(&add)).await;
    assert_eq!(added.state, JobState::Succeeded, "{:?}", added.error);
    assert!(logs_in(&dave.private), "dave logs in with his own key");
    assert!(logs_in(&bob.private));
    s.wait_for_message("dave logs in with their own keys now (ssh root@10.231.16.2)")
        .await;

    let remove = s
        .say("bob", "/env access remove name:shared user:dave")
        .await;
    let removed = s.finished(job_of(&remove)).await;
    assert_eq!(removed.state, JobState::Succeeded, "{:?}", removed.error);
    assert!(!logs_in(&dave.private), "dave's key no longer logs in");
    assert!(logs_in(&bob.private), "bob's own key stays");
    s.stop().await;
}
