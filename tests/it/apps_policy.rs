//! Apps under the team's rules, against a real dockerd: their CPU and memory
//! count against the quota (for apps and environments alike), an app over
//! quota waits for an admin like an environment does, and a request for a
//! host bind mount, privileged mode or the host's network is refused before
//! anything reaches Docker.

use crate::apps_support::*;
use crate::common::{job_of, Opts};
use slipway::domain::lifecycle::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_count_against_the_team_quota() {
    let opts = Opts {
        quota: "cores = 2, memory_mb = 1024, disk_gb = 100, environments = 10".into(),
        over_quota: "refuse",
        ..Opts::default()
    };
    let w = World::new(false, opts).await;
    let s = w.env.start();

    let first = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:one cpu:2 memory:128",
        )
        .await;
    assert!(first.text.contains("cores 0 → 2"), "{}", first.text);
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Succeeded);
    let quota = s.say("bob", "/quota").await.text;
    assert!(quota.contains("cores 2/2, memory 128/1024 MB"), "{quota}");

    let second = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:two cpu:1",
        )
        .await;
    assert!(second.job.is_none(), "{}", second.text);
    assert!(second.text.contains("cores 3 of 2"), "{}", second.text);
    let env = s.say("bob", "/env create profile:ci-app name:box").await;
    assert!(env.job.is_none(), "{}", env.text);
    assert!(env.text.contains("cores 3 of 2"), "{}", env.text);
    assert_eq!(w.dockerd.all_containers().len(), 1);

    let remove = s.say("bob", "/app remove one").await;
    assert_eq!(s.finished(job_of(&remove)).await.state, JobState::Succeeded);
    let quota = s.say("bob", "/quota").await.text;
    assert!(quota.contains("cores 0/2, memory 0/1024 MB"), "{quota}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_over_quota_waits_for_an_admin_and_runs_once_approved() {
    let opts = Opts {
        quota: "cores = 1, memory_mb = 1024, disk_gb = 100, environments = 10".into(),
        ..Opts::default()
    };
    let w = World::new(false, opts).await;
    let s = w.env.start();

    let asked = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:big cpu:2",
        )
        .await;
    let request = asked
        .approval
        .unwrap_or_else(|| panic!("no approval: {}", asked.text));
    assert!(w.dockerd.all_containers().is_empty());

    let approved = s.say("alice", &format!("/approve {request}")).await;
    assert_eq!(
        s.finished(job_of(&approved)).await.state,
        JobState::Succeeded
    );
    assert_eq!(w.dockerd.all_containers().len(), 1);
    assert!(s.say("bob", "/app list").await.text.contains("big — ready"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_paths_privileged_mode_and_the_host_network_are_refused() {
    let w = World::new(false, Opts::default()).await;
    let s = w.env.start();
    let cases = [
        (
            "bob",
            "volume:/etc:/host-etc",
            "bind mount of the host path '/etc'",
        ),
        (
            "bob",
            "volume:./data:/data",
            "bind mount of the host path './data'",
        ),
        ("bob", "privileged:true", "privileged mode"),
        ("bob", "network:host", "the host's network"),
        ("bob", "device:/dev/kvm", "the device '/dev/kvm'"),
        // An admin is refused too where the host does not allow it.
        ("alice", "volume:/:/host", "does not allow it"),
    ];
    for (user, extra, expected) in cases {
        let line = format!("/app deploy image:slipway-test/web:v1 name:evil {extra}");
        let reply = s.say(user, &line).await;
        assert!(reply.job.is_none(), "{line}: {}", reply.text);
        assert!(reply.text.contains("refused"), "{line}: {}", reply.text);
        assert!(reply.text.contains(expected), "{line}: {}", reply.text);
    }
    assert!(w.dockerd.all_containers().is_empty());
    assert_eq!(
        s.count("SELECT COUNT(*) FROM environments WHERE name = 'evil'")
            .await,
        0
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM audit WHERE action = 'app.deploy' AND outcome = 'refused'")
            .await,
        6
    );

    // A named volume is an ordinary request.
    let ok = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:kept volume:data:/data",
        )
        .await;
    assert_eq!(s.finished(job_of(&ok)).await.state, JobState::Succeeded);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_host_environment_is_resolved_as_an_apps_host() {
    // No [[docker.hosts]] here: host:ENV is the only way to a Docker host.
    let t = crate::common::TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let asked = s
        .say("bob", "/env create profile:docker-host name:dock")
        .await;
    let request = asked.approval.expect("docker-host needs approval");
    let approved = s.say("alice", &format!("/approve {request}")).await;
    assert_eq!(
        s.finished(job_of(&approved)).await.state,
        JobState::Succeeded
    );
    let dock = s.env("dock").await;
    // DHCP: fakepve reports no address within address_wait = 0s.
    let early = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:site host:dock",
        )
        .await;
    assert!(
        early.text.contains("dock has no address yet"),
        "{}",
        early.text
    );
    // The address its DHCP lease gave it, as Proxmox would report it later.
    s.dispatcher
        .store
        .set_address(dock.id, Some("10.20.0.77".into()))
        .await
        .unwrap();
    let dock = s.env("dock").await;

    let nowhere = s
        .say("bob", "/app deploy image:slipway-test/web:v1 name:lost")
        .await;
    assert!(
        nowhere.text.contains("team web has no Docker host"),
        "{}",
        nowhere.text
    );
    let wrong = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:lost host:nope",
        )
        .await;
    assert!(
        wrong.text.contains("neither a Docker host"),
        "{}",
        wrong.text
    );

    let reply = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:site host:dock",
        )
        .await;
    assert!(
        reply.text.contains("on dock (docker-host environment)"),
        "{}",
        reply.text
    );
    let app = s.env("site").await;
    assert_eq!(app.node, format!("env:{}", dock.id));
    assert_eq!(app.address, dock.address);
    // Without a client certificate Slipway does not talk to that dockerd at all.
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Failed);
    let reason = s.env("site").await.reason.unwrap_or_default();
    assert!(
        reason.contains("docker.env_tls is not configured"),
        "{reason}"
    );
    s.stop().await;
}

/// Access granted once is checked again when it would be used again: an
/// admin's app with a host path gets no new container from an update once they are
/// no longer an admin, and the host's network is refused (not silently
/// dropped) on a host whose apps run on Docker's bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevated_access_is_checked_again_on_update() {
    let w = World::new(false, Opts::default()).await;
    w.env.edit_config(
        "teams = [\"web\"]\n",
        "teams = [\"web\"]\nallow_host_access = true\n",
    );
    let mut text = std::fs::read_to_string(&w.env.config_path).unwrap();
    text.push_str(
        "\n[[docker.hosts]]\nname = \"bridged\"\nurl = \"unix:///nonexistent/docker.sock\"\naddress = \"127.0.0.1\"\nteams = [\"web\"]\nallow_host_access = true\n",
    );
    std::fs::write(&w.env.config_path, text).unwrap();
    let s = w.env.start();
    let bridged = s
        .say(
            "alice",
            "/app deploy image:slipway-test/web:v1 name:net host:bridged network:host",
        )
        .await;
    assert!(bridged.job.is_none(), "{}", bridged.text);
    assert!(
        bridged.text.contains("runs apps on Docker's bridge"),
        "{}",
        bridged.text
    );

    let shared = w.env.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let granted = s
        .say(
            "alice",
            &format!(
                "/app deploy image:slipway-test/web:v1 name:root volume:{}:/data host:local",
                shared.display()
            ),
        )
        .await;
    let job = s.finished(job_of(&granted)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    s.stop().await;

    // alice is an admin no more.
    w.env
        .edit_config("alice = [\"web-admin\"]", "alice = [\"web-dev\"]");
    let s = w.env.start();
    let update = s
        .say("alice", "/app update root image:slipway-test/web:v2")
        .await;
    assert!(update.job.is_none(), "{}", update.text);
    assert!(
        update.text.contains("bind mount of the host path")
            && update.text.contains("only a team admin"),
        "{}",
        update.text
    );
    assert_eq!(w.dockerd.all_containers().len(), 1, "no new container");
    s.stop().await;
}
