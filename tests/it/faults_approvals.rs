//! Issue 17, fault 5: an approval outlives what it approves. Approving (or
//! denying) a request whose environment was destroyed or failed meanwhile
//! says the request is void and changes nothing.

use crate::common::{job_of, Opts, TestEnv};
use slipway::domain::lifecycle::{EnvState, JobState};

fn opts() -> Opts {
    Opts {
        provision: false,
        max_ttl: "7d",
        ..Opts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_an_extension_of_a_destroyed_environment_is_void() {
    let t = TestEnv::new(opts());
    let s = t.start();
    let reply = s
        .say(
            "bob",
            "/env create profile:generic-service name:gone ttl:3d",
        )
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let asked = s.say("bob", "/env extend gone 6d").await;
    let request = asked.approval.unwrap_or_else(|| panic!("{}", asked.text));
    let keep = s.say("bob", "/env keep gone").await;
    let keep = keep.approval.unwrap_or_else(|| panic!("{}", keep.text));

    let destroy = s.say("bob", "/env destroy name:gone").await;
    assert_eq!(
        s.finished(job_of(&destroy)).await.state,
        JobState::Succeeded
    );
    let before = s.env("gone").await;
    assert_eq!(before.state, EnvState::Destroyed);

    let approved = s.say("alice", &format!("/approve {request}")).await;
    assert!(
        approved
            .text
            .contains(&format!("Request #{request} is void"))
            && approved.text.contains("gone was destroyed"),
        "{}",
        approved.text
    );
    assert!(!approved.text.contains("expires"), "{}", approved.text);
    let denied = s.say("alice", &format!("/deny {keep} no pets")).await;
    assert!(
        denied.text.contains(&format!("Request #{keep} is void")),
        "{}",
        denied.text
    );
    let after = s.env("gone").await;
    assert_eq!(after.expires_at, before.expires_at, "the row is untouched");
    assert_eq!(after.state, EnvState::Destroyed);
    let again = s.say("alice", &format!("/approve {request}")).await;
    assert!(again.text.contains("void"), "{}", again.text);
    s.stop().await;
}
