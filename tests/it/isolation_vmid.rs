//! A VMID that is no longer Slipway's is never written to (issue 18): the
//! environment's container went and someone else's now has its VMID. A stop
//! fails before anything is sent, saying so; a destroy takes the environment's
//! own container as gone and leaves the other one running, untouched.

use crate::common::{job_of, Opts, TestEnv};
use slipway::domain::lifecycle::JobState;

/// Proxmox writes (not reads) aimed at `vmid`.
async fn writes_to(t: &TestEnv, vmid: u32) -> Vec<String> {
    let part = format!("/lxc/{vmid}");
    t.pve
        .writes()
        .await
        .into_iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains(&part)))
        .map(|r| format!("{} {}", r["method"], r["path"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_vmid_is_neither_stopped_nor_destroyed() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:shop")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let vmid = s.env("shop").await.vmid.unwrap();

    // The container went behind Slipway's back, and a foreign one took its VMID.
    t.pve.forget_guests(vmid, vmid).await;
    t.pve.add_foreign_ct(vmid).await;
    t.pve.clear_requests().await;

    let stop = s.say("bob", "/env stop shop").await;
    let stopped = s.finished(job_of(&stop)).await;
    assert_eq!(stopped.state, JobState::Failed);
    let why = stopped.error.unwrap_or_default();
    assert!(
        why.contains(&format!(
            "CT {vmid} on pve1 does not carry this environment's tag"
        )) && why.contains("Nothing was changed"),
        "{why}"
    );
    assert_eq!(writes_to(&t, vmid).await, Vec::<String>::new());

    let destroy = s.say("bob", "/env destroy shop").await;
    let destroyed = s.finished(job_of(&destroy)).await;
    assert_eq!(
        destroyed.state,
        JobState::Succeeded,
        "{:?}",
        destroyed.error
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM environments WHERE name = 'shop' AND state = 'destroyed'")
            .await,
        1
    );
    assert_eq!(
        writes_to(&t, vmid).await,
        Vec::<String>::new(),
        "no shutdown, snapshot delete, HA removal or delete reached the foreign CT"
    );
    let foreign = t
        .pve
        .guest(vmid)
        .await
        .expect("the foreign CT is still there");
    assert_eq!(foreign["status"], "running");
    s.stop().await;
}
