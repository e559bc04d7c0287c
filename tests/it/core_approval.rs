//! Quotas and approvals: over quota a request waits for a team admin; only an
//! admin may decide, exactly once; a denial creates nothing; concurrent requests
//! can never overshoot the quota.

use crate::common::{job_of, Opts, TestEnv};
use slipway::domain::lifecycle::{EnvState, JobState};

fn small_quota() -> Opts {
    Opts {
        quota: "environments = 1".into(),
        provision: false,
        ..Opts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_waits_and_only_an_admin_approves_it() {
    let t = TestEnv::new(small_quota());
    let s = t.start();
    let first = s
        .say("bob", "/env create profile:generic-service name:one")
        .await;
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Succeeded);

    let second = s
        .say("bob", "/env create profile:generic-service name:two")
        .await;
    let request = second
        .approval
        .unwrap_or_else(|| panic!("not pending: {}", second.text));
    assert!(second.job.is_none());
    assert!(
        second
            .text
            .contains("over the team's quota: environments 2 of 1 (1 over)"),
        "{}",
        second.text
    );
    assert_eq!(s.env("two").await.state, EnvState::PendingApproval);
    let guests_before = t.pve.guests().await.len();

    // A member may not approve, nor someone outside the team.
    let refused = s.say("bob", &format!("/approve {request}")).await;
    assert!(
        refused.text.contains("for team admins only"),
        "{}",
        refused.text
    );
    let outsider = s.say("carol", &format!("/approve {request}")).await;
    assert!(outsider.text.starts_with('⛔'), "{}", outsider.text);
    assert_eq!(t.pve.guests().await.len(), guests_before);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM audit WHERE outcome = 'refused'")
            .await,
        2
    );

    let approved = s.say("alice", &format!("/approve {request}")).await;
    let job = s.finished(job_of(&approved)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let env = s.env("two").await;
    assert_eq!(env.state, EnvState::Ready);
    assert_eq!(
        t.pve.guest(env.vmid.unwrap()).await.unwrap()["status"],
        "running"
    );

    // A second approval changes nothing.
    let again = s.say("dave", &format!("/approve {request}")).await;
    assert!(
        again.text.contains("already approved by console:alice"),
        "{}",
        again.text
    );
    assert!(again.job.is_none());
    assert_eq!(
        s.count("SELECT COUNT(*) FROM jobs WHERE kind = 'create'")
            .await,
        2
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_request_creates_nothing_and_says_why() {
    let t = TestEnv::new(small_quota());
    let s = t.start();
    let first = s
        .say("bob", "/env create profile:generic-service name:one")
        .await;
    s.finished(job_of(&first)).await;
    t.pve.clear_requests().await;

    let second = s
        .say("bob", "/env create profile:generic-service name:two")
        .await;
    let request = second.approval.unwrap();
    let denied = s
        .say(
            "alice",
            &format!("/deny {request} use the staging cluster instead"),
        )
        .await;
    assert!(
        denied
            .text
            .contains("denied by alice: use the staging cluster instead"),
        "{}",
        denied.text
    );
    let env = s.env("two").await;
    assert_eq!(env.state, EnvState::Denied);
    assert_eq!(
        env.reason.as_deref(),
        Some("use the staging cluster instead")
    );
    assert!(
        t.pve.writes().await.is_empty(),
        "a denied request reached Proxmox"
    );
    // Approving after a denial does nothing.
    let late = s.say("dave", &format!("/approve {request}")).await;
    assert!(late.text.contains("already denied"), "{}", late.text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_approve_their_own_request() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    // docker-host always needs approval.
    let reply = s
        .say("alice", "/env create profile:docker-host name:dock")
        .await;
    let request = reply.approval.unwrap_or_else(|| panic!("{}", reply.text));
    assert!(
        reply.text.contains("always needs an admin's approval"),
        "{}",
        reply.text
    );
    let own = s.say("alice", &format!("/approve {request}")).await;
    assert!(
        own.text.contains("cannot approve your own request"),
        "{}",
        own.text
    );
    let other = s.say("dave", &format!("/approve {request}")).await;
    assert_eq!(s.finished(job_of(&other)).await.state, JobState::Succeeded);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_creates_against_a_quota_of_two_accept_exactly_two() {
    let t = TestEnv::new(Opts {
        quota: "environments = 2".into(),
        over_quota: "refuse",
        provision: false,
        ..Opts::default()
    });
    let s = std::sync::Arc::new(t.start());
    let mut handles = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.say(
                "bob",
                &format!("/env create profile:generic-service name:c{i}"),
            )
            .await
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for h in handles {
        let reply = h.await.unwrap();
        match reply.job {
            Some(job) => accepted.push(job),
            None => {
                assert!(
                    reply.text.contains("would exceed the team's quota"),
                    "{}",
                    reply.text
                );
                refused += 1;
            }
        }
    }
    assert_eq!(accepted.len(), 2, "accepted {accepted:?}");
    assert_eq!(refused, 18);
    for job in accepted {
        assert_eq!(s.finished(job).await.state, JobState::Succeeded);
    }
    let lxc = t
        .pve
        .guests()
        .await
        .into_iter()
        .filter(|g| g["type"] == "lxc")
        .count();
    assert_eq!(lxc, 2, "fakepve holds {lxc} containers");
    assert_eq!(s.count("SELECT COUNT(*) FROM environments").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_quota_all_wait_for_approval() {
    let t = TestEnv::new(Opts {
        quota: "environments = 2".into(),
        provision: false,
        ..Opts::default()
    });
    let s = std::sync::Arc::new(t.start());
    let mut handles = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.say(
                "bob",
                &format!("/env create profile:generic-service name:p{i}"),
            )
            .await
        }));
    }
    let replies: Vec<_> = futures_join(handles).await;
    assert_eq!(replies.iter().filter(|r| r.job.is_some()).count(), 2);
    assert_eq!(replies.iter().filter(|r| r.approval.is_some()).count(), 8);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM environments WHERE state = 'pending_approval'")
            .await,
        8
    );
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<slipway::chat::Reply>>,
) -> Vec<slipway::chat::Reply> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_chat_event_twice_makes_one_environment() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let inbound = s.inbound("bob", "/env create profile:generic-service name:once");
    let first = s.dispatcher.handle(&inbound).await;
    let retry = s.dispatcher.handle(&inbound).await;
    assert!(retry.text.contains("already received"), "{}", retry.text);
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Succeeded);
    assert_eq!(s.count("SELECT COUNT(*) FROM environments").await, 1);
    let creates = t
        .pve
        .writes()
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/lxc"))
        .count();
    assert_eq!(creates, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_needs_a_reason_that_says_something() {
    let t = TestEnv::new(small_quota());
    let s = t.start();
    let first = s
        .say("bob", "/env create profile:generic-service name:one")
        .await;
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Succeeded);
    let second = s
        .say("bob", "/env create profile:generic-service name:two")
        .await;
    let request = second.approval.expect("pending");

    let blank = s.say("alice", &format!("/deny {request} \"   \"")).await;
    assert!(
        blank.text.contains("reason: give the requester a reason"),
        "{}",
        blank.text
    );
    assert_eq!(s.env("two").await.state, EnvState::PendingApproval);
    let denied = s.say("alice", &format!("/deny {request} not now")).await;
    assert!(
        denied.text.contains("denied by alice: not now"),
        "{}",
        denied.text
    );
    s.stop().await;
}

/// Issue 17, fault 6: approvals can take a team past its quota (each request
/// was over it when asked); every approval reply and `/quota` say so plainly,
/// and by how much, counting what was approved before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_past_the_quota_say_how_far_over_it_the_team_is() {
    let t = TestEnv::new(small_quota());
    let s = t.start();
    let first = s
        .say("bob", "/env create profile:generic-service name:one")
        .await;
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Succeeded);
    let mut requests = Vec::new();
    for name in ["two", "three", "four"] {
        let r = s
            .say(
                "bob",
                &format!("/env create profile:generic-service name:{name}"),
            )
            .await;
        requests.push(r.approval.unwrap_or_else(|| panic!("{}", r.text)));
    }
    for (n, request) in requests.iter().enumerate() {
        let approved = s.say("alice", &format!("/approve {request}")).await;
        let after = n + 2;
        assert!(
            approved.text.contains(&format!(
                "over the team's quota: environments {after} of 1 ({} over)",
                after - 1
            )),
            "{}",
            approved.text
        );
        assert_eq!(
            s.finished(job_of(&approved)).await.state,
            JobState::Succeeded
        );
    }
    let quota = s.say("bob", "/quota").await;
    assert!(
        quota.text.contains("environments 4/1")
            && quota
                .text
                .contains("over the team's quota: environments 4 of 1 (3 over)"),
        "{}",
        quota.text
    );
    s.stop().await;
}
