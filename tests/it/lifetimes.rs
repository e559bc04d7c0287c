//! Lifetimes with a controlled clock: reminders at the right times, extending
//! pushes expiry and reminders, extensions beyond the maximum and `/env keep` go
//! to approval, and a restart that spans the expiry tears the environment down
//! at once with one catch-up message and no duplicate reminders.

use crate::common::{job_of, Opts, Running, TestEnv};
use slipway::clock::ManualClock;
use slipway::domain::lifecycle::{EnvState, JobState};
use std::sync::Arc;
use std::time::Duration;

const H: i64 = 3600;
const D: i64 = 86400;

fn opts() -> Opts {
    Opts {
        provision: false,
        max_ttl: "7d",
        extra: "[lifetimes]\nreminders = [\"24h\", \"1h\"]\ngrace = \"10m\"\n".into(),
        ..Opts::default()
    }
}

async fn create(s: &Running, line: &str) {
    let reply = s.say("bob", line).await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
}

/// Moves the clock, lets the scheduler look, and gives it a moment.
async fn advance(s: &Running, clock: &ManualClock, secs: i64) {
    clock.advance(secs);
    s.wake_scheduler();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_come_before_expiry_and_extending_reschedules_them() {
    let t = TestEnv::new(opts());
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    create(&s, "/env create profile:generic-service name:shop ttl:3d").await;
    let expires = s.env("shop").await.expires_at.unwrap();

    advance(&s, &clock, D).await;
    assert_eq!(s.messages_with("⏰"), 0, "a reminder came too early");
    advance(&s, &clock, D + 60).await;
    let first = s.wait_for_message("⏰").await;
    assert!(first.contains("@bob shop expires in 24 hours"), "{first}");
    assert!(
        first.contains("/env extend shop") && first.contains("/env destroy shop"),
        "{first}"
    );
    advance(&s, &clock, 60).await;
    assert_eq!(s.messages_with("⏰"), 1, "a reminder was sent twice");

    // Extend by a day: expiry moves, and the 24 h reminder comes again a day later.
    let reply = s.say("bob", "/env extend shop 1d").await;
    assert!(
        reply.text.contains("shop now expires in 2 days"),
        "{}",
        reply.text
    );
    assert_eq!(s.env("shop").await.expires_at.unwrap(), expires + D);
    advance(&s, &clock, D - 2 * 60 - H + 60).await; // 1 h before the old expiry
    assert_eq!(
        s.messages_with("expires in 1 hour"),
        0,
        "the old 1 h reminder survived the extension"
    );
    advance(&s, &clock, H).await;
    let again = s.wait_for_message("shop expires in 24 hours").await;
    assert!(again.starts_with("⏰"), "{again}");
    assert_eq!(s.messages_with("⏰"), 2);
    advance(&s, &clock, D - H - 60).await;
    s.wait_for_message("shop expires in 1 hour").await;

    // "Destroy now" from the reminder.
    let destroy = s.say("bob", "/env destroy shop").await;
    assert_eq!(
        s.finished(job_of(&destroy)).await.state,
        JobState::Succeeded
    );
    assert_eq!(s.env("shop").await.state, EnvState::Destroyed);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_beyond_the_team_maximum_needs_an_admin() {
    let t = TestEnv::new(opts());
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    create(&s, "/env create profile:generic-service name:long ttl:3d").await;
    let expires = s.env("long").await.expires_at.unwrap();

    let reply = s.say("bob", "/env extend long 5d").await;
    let request = reply.approval.unwrap_or_else(|| panic!("{}", reply.text));
    assert!(
        reply.text.contains("more than the maximum of 7d"),
        "{}",
        reply.text
    );
    assert_eq!(
        s.env("long").await.expires_at.unwrap(),
        expires,
        "extended before approval"
    );
    let refused = s.say("bob", &format!("/approve {request}")).await;
    assert!(refused.text.starts_with('⛔'), "{}", refused.text);

    let approved = s.say("alice", &format!("/approve {request}")).await;
    assert!(
        approved.text.contains("long now expires in 8 days"),
        "{}",
        approved.text
    );
    assert_eq!(s.env("long").await.expires_at.unwrap(), expires + 5 * D);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_an_environment_needs_approval_and_then_it_never_expires() {
    let t = TestEnv::new(opts());
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    create(&s, "/env create profile:generic-service name:pet ttl:2h").await;
    let reply = s.say("bob", "/env keep pet").await;
    let request = reply.approval.unwrap_or_else(|| panic!("{}", reply.text));
    assert!(s.env("pet").await.expires_at.is_some());
    let denied = s
        .say("alice", &format!("/deny {request} pets are not allowed"))
        .await;
    assert!(
        denied
            .text
            .contains("denied by alice: pets are not allowed"),
        "{}",
        denied.text
    );
    assert!(s.env("pet").await.expires_at.is_some());

    let reply = s.say("bob", "/env keep pet").await;
    let request = reply.approval.unwrap();
    s.say("alice", &format!("/approve {request}")).await;
    assert_eq!(s.env("pet").await.expires_at, None);
    assert!(s
        .say("bob", "/env list")
        .await
        .text
        .contains("expires never"));
    advance(&s, &clock, 30 * D).await;
    assert_eq!(s.env("pet").await.state, EnvState::Ready);
    assert_eq!(s.messages_with("⏰") + s.messages_with("⌛"), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_spans_the_expiry_tears_down_at_once_with_one_message() {
    let t = TestEnv::new(opts());
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    create(&s, "/env create profile:generic-service name:brief ttl:2h").await;
    let vmid = s.env("brief").await.vmid.unwrap();
    s.stop().await;

    // Slipway is down while the 1 h reminder, the expiry and the grace pass.
    clock.advance(3 * H);
    let s = t.start_with_clock(clock.clone());
    let started = std::time::Instant::now();
    while s.env("brief").await.state != EnvState::Destroyed {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not torn down: {:?}",
            s.env("brief").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        t.pve.guest(vmid).await.is_none(),
        "the container is still in fakepve"
    );
    let notice = s.wait_for_message("⌛").await;
    assert!(
        notice.contains("@bob brief expired 1 hour ago; tearing it down now"),
        "{notice}"
    );
    assert_eq!(s.messages_with("⌛"), 1);
    assert_eq!(
        s.messages_with("⏰"),
        0,
        "a stale reminder was sent after the expiry"
    );
    assert_eq!(
        s.dispatcher
            .store
            .sent_reminders(s.env("brief").await.id)
            .await
            .unwrap(),
        0
    );
    // Looking again changes nothing.
    advance(&s, &clock, H).await;
    assert_eq!(s.messages_with("⌛"), 1);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM jobs WHERE kind = 'destroy'")
            .await,
        1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_only_one_catch_up_reminder_is_sent() {
    let t = TestEnv::new(opts());
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    create(&s, "/env create profile:generic-service name:nap ttl:3d").await;
    s.stop().await;
    // Down past both the 24 h and the 1 h reminder, but not past the expiry.
    clock.advance(3 * D - 30 * 60);
    let s = t.start_with_clock(clock.clone());
    let text = s.wait_for_message("⏰").await;
    assert!(text.contains("nap expires in 30 minutes"), "{text}");
    advance(&s, &clock, 60).await;
    assert_eq!(s.messages_with("⏰"), 1);
    s.stop().await;
}

/// Issue 17, fault 12: a profile whose default lifetime is above the team's
/// maximum is usable without `ttl:`; the lifetime is the team's maximum, and
/// the reply says so instead of blaming a ttl nobody typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_lifetime_above_the_teams_maximum_is_capped_and_said() {
    let t = TestEnv::new(Opts {
        max_ttl: "2d",
        ..opts()
    });
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    let reply = s
        .say("bob", "/env create profile:generic-service name:capped")
        .await;
    assert!(
        reply.text.contains(
            "Lifetime 2d: team web's maximum, shorter than profile generic-service's default of 3d"
        ),
        "{}",
        reply.text
    );
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let env = s.env("capped").await;
    assert_eq!(env.ttl_secs, Some(2 * D));
    let typed = s
        .say(
            "bob",
            "/env create profile:generic-service name:typed ttl:3d",
        )
        .await;
    assert!(
        typed
            .text
            .contains("ttl: 3d is longer than team web's maximum of 2d"),
        "{}",
        typed.text
    );
    s.stop().await;
}
