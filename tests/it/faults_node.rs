//! Nodes stay true: a container that HA or a migration moved to another node
//! is found there (one `/cluster/resources` read), stopped and destroyed
//! there, and the record follows; the reconcile loop follows it too. A stop
//! or destroy never reports success for a guest that still runs elsewhere.

use crate::common::{job_of, Opts, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::JobState;

fn env() -> TestEnv {
    TestEnv::new(Opts {
        extra: "[reconcile]\ninterval = \"1h\"\n".into(),
        ..Opts::default()
    })
}

/// Moves CT `vmid` to `node` as HA relocation does: it keeps running there.
async fn relocate(t: &TestEnv, vmid: u32, node: &str) {
    t.pve.call("add_node", json!([node]), json!({})).await;
    t.pve.guest_set(vmid, json!({ "node": node })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_container_is_stopped_and_destroyed_on_its_new_node() {
    let t = env();
    let s = t.start();
    let created = job_of(
        &s.say("bob", "/env create profile:generic-service name:moved")
            .await,
    );
    assert_eq!(s.finished(created).await.state, JobState::Succeeded);
    let vmid = s.env("moved").await.vmid.unwrap();
    relocate(&t, vmid, "pve2").await;

    let stop = job_of(&s.say("bob", "/env stop name:moved").await);
    assert_eq!(s.finished(stop).await.state, JobState::Succeeded);
    let guest = t.pve.guest(vmid).await.unwrap();
    assert_eq!(
        (guest["node"].as_str(), guest["status"].as_str()),
        (Some("pve2"), Some("stopped")),
        "the stop reached the container where it is: {guest}"
    );
    assert_eq!(s.env("moved").await.node, "pve2", "the record follows");
    let log = s.say("bob", &format!("/job {stop}")).await.text;
    assert!(
        log.contains(&format!("CT {vmid} is on node pve2 now, not on pve1")),
        "{log}"
    );

    relocate(&t, vmid, "pve3").await;
    let destroy = job_of(&s.say("bob", "/env destroy name:moved").await);
    assert_eq!(s.finished(destroy).await.state, JobState::Succeeded);
    assert!(
        t.pve.guest(vmid).await.is_none(),
        "the destroy removed the container on pve3"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_loop_records_the_node_a_container_moved_to() {
    let t = env();
    let s = t.start();
    let created = job_of(
        &s.say("bob", "/env create profile:generic-service name:roams")
            .await,
    );
    assert_eq!(s.finished(created).await.state, JobState::Succeeded);
    let vmid = s.env("roams").await.vmid.unwrap();
    relocate(&t, vmid, "pve2").await;

    let pass = s.app.as_ref().unwrap().reconciler().pass().await.unwrap();

    assert_eq!(pass.moved, vec!["roams".to_string()]);
    assert!(
        pass.drifted.is_empty(),
        "a moved container is not drift: {pass:?}"
    );
    assert_eq!(s.env("roams").await.node, "pve2");
    let info = s.say("bob", "/env info name:roams").await.text;
    assert!(info.contains("live: running"), "{info}");
    s.stop().await;
}

/// Issue 17, fault 4: a create that never reached Proxmox (its node is
/// offline) left nothing behind, so its rollback neither tries to delete a
/// container for a minute nor asks for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_never_reached_proxmox_rolls_back_without_alarm() {
    let t = env();
    t.pve
        .call("set_node_offline", json!(["pve1"]), json!({}))
        .await;
    let s = t.start();
    let started = std::time::Instant::now();
    let reply = s
        .say("bob", "/env create profile:generic-service name:unreached")
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Failed);
    let env = s.env("unreached").await;
    let reason = env.reason.unwrap();
    assert!(!reason.contains("needs a person"), "{reason}");
    let text = s.wait_for_message("❌ create unreached failed").await;
    assert!(text.contains("Everything it created was removed"), "{text}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "the rollback did not wait on a container that never existed: {:?}",
        started.elapsed()
    );
    let deletes = t
        .pve
        .writes()
        .await
        .into_iter()
        .filter(|w| w["method"] == "DELETE")
        .count();
    assert_eq!(deletes, 0, "nothing to delete");
    s.stop().await;
}

/// Two configured nodes; `pve2` is added to fakepve's cluster.
async fn two_nodes() -> TestEnv {
    let t = env();
    t.edit_config("nodes = [\"pve1\"]", "nodes = [\"pve1\", \"pve2\"]");
    t.pve.call("add_node", json!(["pve2"]), json!({})).await;
    t
}

/// Issue 17, fault 2: with one of two nodes offline, every create is placed
/// on the node that is online (as `/cluster/resources` says), and the job's
/// log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_skip_an_offline_node() {
    let t = two_nodes().await;
    t.pve
        .call("set_node_offline", json!(["pve1"]), json!({}))
        .await;
    let s = t.start();
    let plan = s
        .say(
            "bob",
            "/env create profile:generic-service name:one dry-run:true",
        )
        .await;
    assert!(
        plan.text.contains("pve2 (pve1 is offline)"),
        "the plan says where and why: {}",
        plan.text
    );
    let started = std::time::Instant::now();
    for name in ["one", "two", "three"] {
        let reply = s
            .say(
                "bob",
                &format!("/env create profile:generic-service name:{name}"),
            )
            .await;
        let job = s.finished(job_of(&reply)).await;
        assert_eq!(job.state, JobState::Succeeded, "{name}: {job:?}");
        assert_eq!(s.env(name).await.node, "pve2", "{name}");
        let vmid = s.env(name).await.vmid.unwrap();
        assert_eq!(t.pve.guest(vmid).await.unwrap()["node"], "pve2");
        if name == "one" {
            let log = crate::guest_provision::job_log(&t, job.id);
            assert!(
                log.contains("placed on pve2 instead of pve1: pve1 is offline"),
                "{log}"
            );
        }
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "no create waited on the offline node: {:?}",
        started.elapsed()
    );
    s.stop().await;
}

/// A node that stops answering (595) after placement: the create had written
/// nothing, so it is placed on the other node instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_node_does_not_answer_is_placed_again() {
    let t = two_nodes().await;
    t.pve
        .fail(
            "POST",
            "/nodes/pve1/lxc",
            json!({"status": 595, "message": "No route to host"}),
        )
        .await;
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:moved-on")
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let env = s.env("moved-on").await;
    assert_eq!(env.node, "pve2");
    assert_eq!(
        t.pve.guest(env.vmid.unwrap()).await.unwrap()["status"],
        "running"
    );
    let log = crate::guest_provision::job_log(&t, job.id);
    assert!(
        log.contains("placed on pve2 instead of pve1: Proxmox answered 595: No route to host"),
        "{log}"
    );
    s.stop().await;
}
