//! The reconcile loop against fakepve: drift is marked and reported in the
//! environment's thread; an orphan with Slipway's tag inside its VMID ranges is
//! reported, then removed after the grace period; a container without the tag,
//! or outside the ranges, is never touched.

use crate::common::{job_of, Opts, TestEnv};
use slipway::clock::ManualClock;
use slipway::domain::lifecycle::JobState;
use slipway::provider::proxmox::Proxmox;
use slipway::provider::{Compute, ContainerSpec};
use std::sync::Arc;
use std::time::Duration;

fn spec(vmid: u32, tags: &[&str]) -> ContainerSpec {
    ContainerSpec {
        node: "pve1".into(),
        vmid,
        hostname: format!("ct{vmid}"),
        ostemplate: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
        storage: "local-lvm".into(),
        disk_gb: 4,
        cores: 1,
        memory_mb: 512,
        swap_mb: 0,
        unprivileged: true,
        features: vec![],
        onboot: false,
        net0: "name=eth0,bridge=vmbr0,ip=dhcp".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        description: "made by hand".into(),
        pool: None,
        ssh_public_keys: vec![],
        nameserver: None,
        searchdomain: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_and_orphans_are_removed_only_with_the_tag_in_range() {
    let t = TestEnv::new(Opts {
        provision: false,
        extra: "[reconcile]\ninterval = \"1h\"\norphan_grace = \"30m\"\n".into(),
        ..Opts::default()
    });
    let clock = Arc::new(ManualClock::new(slipway::store::now()));
    let s = t.start_with_clock(clock.clone());
    let a = s
        .say("bob", "/env create profile:generic-service name:alive")
        .await;
    let b = s
        .say("bob", "/env create profile:generic-service name:gone")
        .await;
    assert_eq!(s.finished(job_of(&a)).await.state, JobState::Succeeded);
    assert_eq!(s.finished(job_of(&b)).await.state, JobState::Succeeded);
    let (alive, gone) = (s.env("alive").await, s.env("gone").await);

    // Someone works in the Proxmox UI by hand.
    let pve = Proxmox::new(&t.config().proxmox).unwrap();
    let stop = pve.stop("pve1", alive.vmid.unwrap()).await.unwrap();
    pve.wait(&stop, Duration::from_secs(10)).await.unwrap();
    let stop = pve.stop("pve1", gone.vmid.unwrap()).await.unwrap();
    pve.wait(&stop, Duration::from_secs(10)).await.unwrap();
    let del = pve.destroy("pve1", gone.vmid.unwrap()).await.unwrap();
    pve.wait(&del, Duration::from_secs(10)).await.unwrap();
    for (vmid, tags) in [
        (250, vec!["slipway", "slipway-env-999"]),
        (251, vec!["other"]),
        (5000, vec!["slipway"]),
    ] {
        let task = pve.create(&spec(vmid, &tags)).await.unwrap();
        pve.wait(&task, Duration::from_secs(10)).await.unwrap();
    }

    let reconciler = s.app.as_ref().unwrap().reconciler();
    let first = reconciler.pass().await.unwrap();
    assert_eq!(first.drifted, vec!["alive".to_string(), "gone".to_string()]);
    assert_eq!(first.orphans, vec![250]);
    assert!(
        first.removed.is_empty(),
        "an orphan was removed before its grace period"
    );
    let msg = s.wait_for_message("gone has drifted").await;
    assert!(
        msg.contains(&format!(
            "CT {} is missing from Proxmox",
            gone.vmid.unwrap()
        )),
        "{msg}"
    );
    let msg = s.wait_for_message("alive has drifted").await;
    assert!(
        msg.contains("is stopped, but it should be running"),
        "{msg}"
    );
    assert!(s
        .say("bob", "/env info gone")
        .await
        .text
        .contains("not in Proxmox"));

    // A second pass reports nothing twice.
    let second = reconciler.pass().await.unwrap();
    assert!(second.drifted.is_empty() && second.removed.is_empty());
    assert_eq!(s.messages_with("has drifted"), 2);

    // After the grace period only the tagged container in range goes.
    clock.advance(31 * 60);
    let third = reconciler.pass().await.unwrap();
    assert_eq!(third.removed, vec![250]);
    assert!(t.pve.guest(250).await.is_none());
    assert!(
        t.pve.guest(251).await.is_some(),
        "a container without Slipway's tag was touched"
    );
    assert!(
        t.pve.guest(5000).await.is_some(),
        "a container outside Slipway's ranges was touched"
    );
    assert_eq!(
        t.pve.guest(alive.vmid.unwrap()).await.unwrap()["status"],
        "stopped",
        "drift is reported, not repaired"
    );

    // Starting it again clears the drift.
    let start = pve.start("pve1", alive.vmid.unwrap()).await.unwrap();
    pve.wait(&start, Duration::from_secs(10)).await.unwrap();
    reconciler.pass().await.unwrap();
    s.wait_for_message("alive matches Proxmox again").await;
    assert_eq!(
        s.count(
            "SELECT COUNT(*) FROM audit WHERE action = 'reconcile.orphan' AND outcome = 'removed'"
        )
        .await,
        1
    );
    s.stop().await;
}
