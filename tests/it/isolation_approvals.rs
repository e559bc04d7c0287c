//! Approvals cannot be bent (issue 18): the terms of a pending request are
//! frozen — asking again for more is a new request, and approving the first
//! grants only what it said — and an admin who asks for something on someone
//! else's environment is its requester, so they cannot approve it themselves.

use crate::common::{count, job_of, Opts, TestEnv};
use slipway::clock::ManualClock;
use slipway::domain::lifecycle::JobState;
use std::sync::Arc;

const D: i64 = 86400;

fn opts() -> Opts {
    Opts {
        provision: false,
        max_ttl: "7d",
        ..Opts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_extension_keeps_the_terms_the_admin_sees() {
    let t = TestEnv::new(opts());
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    let reply = s
        .say(
            "bob",
            "/env create profile:generic-service name:long ttl:3d",
        )
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let expires = s.env("long").await.expires_at.unwrap();

    let first = s.say("bob", "/env extend long 5d").await;
    let first_id = first.approval.unwrap_or_else(|| panic!("{}", first.text));
    let second = s.say("bob", "/env extend long 36500d").await;
    let second_id = second.approval.unwrap_or_else(|| panic!("{}", second.text));
    assert_ne!(first_id, second_id, "a different ask is a new request");
    assert!(second.text.contains("36500d"), "{}", second.text);

    let approved = s.say("alice", &format!("/approve {first_id}")).await;
    assert!(
        approved.text.contains("now expires in 8 days"),
        "{}",
        approved.text
    );
    assert_eq!(
        s.env("long").await.expires_at.unwrap(),
        expires + 5 * D,
        "the approved request grants what it said when the admin saw it"
    );
    let again = s.say("bob", "/env extend long 5d").await;
    let again_id = again.approval.unwrap_or_else(|| panic!("{}", again.text));
    let repeat = s.say("bob", "/env extend long 5d").await;
    assert_eq!(
        repeat.approval,
        Some(again_id),
        "the same ask is the same request"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_approve_what_they_asked_for_on_someone_elses_environment() {
    let t = TestEnv::new(opts());
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:pet ttl:2h")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);

    let asked = s.say("alice", "/env keep pet").await;
    let id = asked.approval.unwrap_or_else(|| panic!("{}", asked.text));
    let own = s.say("alice", &format!("/approve {id}")).await;
    assert!(
        own.text.contains("you cannot approve your own request"),
        "{}",
        own.text
    );
    assert!(s.env("pet").await.expires_at.is_some(), "still expires");
    let db = t.dir.path().join("slipway.db");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit WHERE actor = 'console:alice' AND action = 'env.keep'"
        ),
        1,
        "the audit names who asked"
    );
    let other = s.say("dave", &format!("/approve {id}")).await;
    assert!(other.text.contains("kept with no expiry"), "{}", other.text);
    assert_eq!(s.env("pet").await.expires_at, None);
    s.stop().await;
}
