//! Creating environments end to end against fakepve: the container exists with
//! the profile's parameters and Slipway's ownership tags, running; the chat
//! message was edited through every step; `/quota` counts it.

use crate::common::{job_of, Opts, TestEnv};
use serde_json::json;
use slipway::domain::lifecycle::{EnvState, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_within_quota_makes_a_running_tagged_container() {
    // Tasks take real time here, so that progress is edited while the job runs.
    let t = TestEnv::new(Opts {
        provision: false,
        time_scale: 0.1,
        ..Opts::default()
    });
    t.pve.set("ct_secs", json!(5)).await;
    let s = t.start();

    let reply = s
        .say("bob", "/env create profile:web-app name:shop cpu:2 ttl:3d")
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");

    // Every step's end is on record, the last one written with the job's end.
    assert_eq!(
        s.count("SELECT COUNT(*) FROM job_steps WHERE state NOT IN ('done', 'skipped')")
            .await,
        0
    );
    assert!(s.count("SELECT COUNT(*) FROM job_steps").await >= 4);

    let env = s.env("shop").await;
    assert_eq!(env.state, EnvState::Ready);
    let vmid = env.vmid.expect("a vmid");
    assert!(
        (200..=299).contains(&vmid),
        "vmid {vmid} is outside team web's range"
    );
    let ct = t
        .pve
        .guest(vmid)
        .await
        .expect("the container exists in fakepve");
    assert_eq!(ct["type"], "lxc");
    assert_eq!(ct["status"], "running");
    let cfg = &ct["config"];
    assert_eq!(cfg["hostname"], "shop");
    assert_eq!(cfg["cores"], json!(2));
    assert_eq!(cfg["memory"], json!(2048));
    assert_eq!(cfg["unprivileged"], json!(1));
    assert_eq!(cfg["features"], "nesting=1");
    assert!(
        cfg["rootfs"].as_str().unwrap().starts_with("local-lvm:"),
        "{cfg}"
    );
    let tags = cfg["tags"].as_str().unwrap();
    assert!(tags.split(';').any(|t| t == "slipway"), "{tags}");
    assert!(
        tags.split(';')
            .any(|t| t == format!("slipway-env-{}", env.id)),
        "{tags}"
    );
    assert!(cfg["description"].as_str().unwrap().contains("Slipway"));
    assert!(cfg["net0"].as_str().unwrap().contains("bridge=vmbr0"));
    // The initial snapshot of the web-app profile was taken.
    assert!(
        ct["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "slipway_initial"),
        "{ct}"
    );
    // Expiry is three days from now.
    let left = env.expires_at.unwrap() - slipway::store::now();
    assert!(
        (3 * 86400 - 120..=3 * 86400).contains(&left),
        "expires in {left}s"
    );

    let quota = s.say("bob", "/quota").await;
    assert!(quota.text.contains("cores 2/64"), "{}", quota.text);
    assert!(quota.text.contains("environments 1/50"), "{}", quota.text);

    // The progress message was posted once and then edited to the final state.
    let events = s.sink.all();
    assert_eq!(
        events.iter().filter(|(k, _)| k.starts_with("send")).count(),
        1,
        "{events:?}"
    );
    assert!(
        events.iter().any(|(k, _)| k.starts_with("edit")),
        "{events:?}"
    );
    let last = &events.last().unwrap().1;
    assert!(last.starts_with("✅ create shop: ready"), "{last}");

    let list = s.say("bob", "/env list").await;
    assert!(
        list.text.contains("shop — ready") && list.text.contains("in 3 days"),
        "{}",
        list.text
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_provision_output_lands_in_the_job_log() {
    let t = TestEnv::new(Opts {
        provision: true,
        ..Opts::default()
    });
    let s = t.start();
    let reply = s.say("bob", "/env create profile:ci-app name:api").await;
    let id = job_of(&reply);
    assert_eq!(s.finished(id).await.state, JobState::Succeeded);
    let vmid = s.env("api").await.vmid.unwrap();
    let log = s.say("bob", &format!("/job {id}")).await.text;
    assert!(
        log.contains(&format!("configuring api (CT {vmid}) with curl")),
        "{log}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_address_comes_from_the_pool_with_ha_and_is_released_on_destroy() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let first = s
        .say("bob", "/env create profile:monitoring-node name:mon1")
        .await;
    let second = s
        .say("bob", "/env create profile:monitoring-node name:mon2")
        .await;
    assert_eq!(s.finished(job_of(&first)).await.state, JobState::Succeeded);
    assert_eq!(s.finished(job_of(&second)).await.state, JobState::Succeeded);
    let (a, b) = (s.env("mon1").await, s.env("mon2").await);
    let (ip_a, ip_b) = (a.address.clone().unwrap(), b.address.clone().unwrap());
    assert_ne!(ip_a, ip_b, "an address was handed out twice");
    for (env, ip) in [(&a, &ip_a), (&b, &ip_b)] {
        assert!(ip.starts_with("10.20.0.5"), "{ip}");
        let ct = t.pve.guest(env.vmid.unwrap()).await.unwrap();
        let net0 = ct["config"]["net0"].as_str().unwrap();
        assert!(
            net0.contains(&format!("ip={ip}/24")) && net0.contains("gw=10.20.0.1"),
            "{net0}"
        );
    }
    let ha: Vec<serde_json::Value> = t
        .pve
        .requests()
        .await
        .into_iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .ends_with("/cluster/ha/resources")
                && r["method"] == "POST"
        })
        .collect();
    assert_eq!(ha.len(), 2, "one HA resource per environment: {ha:?}");

    let destroy = s.say("bob", "/env destroy mon1").await;
    assert_eq!(
        s.finished(job_of(&destroy)).await.state,
        JobState::Succeeded
    );
    assert_eq!(s.count("SELECT COUNT(*) FROM ip_allocations").await, 1);
    // The freed address is handed out again.
    let third = s
        .say("bob", "/env create profile:monitoring-node name:mon3")
        .await;
    assert_eq!(s.finished(job_of(&third)).await.state, JobState::Succeeded);
    assert_eq!(s.env("mon3").await.address.unwrap(), ip_a);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_removes_the_container_and_frees_the_quota() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let reply = s.say("bob", "/env create profile:web-app name:shop").await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let vmid = s.env("shop").await.vmid.unwrap();

    let reply = s.say("bob", "/env destroy shop").await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert!(
        t.pve.guest(vmid).await.is_none(),
        "the container is still in fakepve"
    );
    assert_eq!(s.env("shop").await.state, EnvState::Destroyed);
    let deletes = t.pve.deletes_of(vmid).await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["query"]["purge"], "1", "{:?}", deletes[0]);
    assert!(s
        .say("bob", "/quota")
        .await
        .text
        .contains("environments 0/50"));
    // The name can be used again.
    let again = s.say("bob", "/env create profile:web-app name:shop").await;
    assert_eq!(s.finished(job_of(&again)).await.state, JobState::Succeeded);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_and_restart_change_the_live_state() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:svc")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let vmid = s.env("svc").await.vmid.unwrap();

    let stop = s.say("bob", "/env stop svc").await;
    assert_eq!(s.finished(job_of(&stop)).await.state, JobState::Succeeded);
    assert_eq!(t.pve.guest(vmid).await.unwrap()["status"], "stopped");
    assert_eq!(s.env("svc").await.state, EnvState::Stopped);
    let info = s.say("bob", "/env info svc").await;
    assert!(info.text.contains("live: stopped"), "{}", info.text);

    let start = s.say("bob", "/env start svc").await;
    assert_eq!(s.finished(job_of(&start)).await.state, JobState::Succeeded);
    assert_eq!(t.pve.guest(vmid).await.unwrap()["status"], "running");

    let restart = s.say("bob", "/env restart svc").await;
    assert_eq!(
        s.finished(job_of(&restart)).await.state,
        JobState::Succeeded
    );
    assert_eq!(t.pve.guest(vmid).await.unwrap()["status"], "running");
    let info = s.say("bob", "/env info svc").await;
    assert!(
        info.text.contains("svc — ready") && info.text.contains("live: running"),
        "{}",
        info.text
    );

    // Someone else's environment is not theirs to stop.
    let other = s.say("carol", "/env stop svc").await;
    assert!(
        other.text.contains("no environment 'svc' in your teams"),
        "{}",
        other.text
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profiles_dns_settings_reach_proxmox_and_the_fixed_mac_is_shown() {
    let t = TestEnv::new(Opts::default());
    let profile = std::fs::read_to_string(t.dir.path().join("profiles/ci-app.toml"))
        .unwrap()
        .replace("name = \"ci-app\"", "name = \"ci-dns\"")
        .replace(
            "bridge = \"vmbr0\"",
            "bridge = \"vmbr0\"\nnameserver = [\"10.0.0.53\", \"10.0.1.53\"]\nsearchdomain = [\"lab.example\"]",
        );
    std::fs::write(t.dir.path().join("profiles/ci-dns.toml"), profile).unwrap();
    let s = t.start();
    let reply = s.say("bob", "/env create profile:ci-dns name:named").await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    let vmid = s.env("named").await.vmid.unwrap();
    let ct = t.pve.guest(vmid).await.unwrap();
    assert_eq!(ct["config"]["nameserver"], "10.0.0.53 10.0.1.53", "{ct}");
    assert_eq!(ct["config"]["searchdomain"], "lab.example", "{ct}");
    let net0 = ct["config"]["net0"].as_str().unwrap();
    let mac = net0
        .split(',')
        .find_map(|p| p.strip_prefix("hwaddr="))
        .unwrap();
    let create = t
        .pve
        .writes()
        .await
        .into_iter()
        .find(|r| r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/lxc"))
        .unwrap();
    assert!(
        create["params"]["net0"]
            .as_str()
            .unwrap()
            .contains(&format!("hwaddr={mac}")),
        "Slipway chose the MAC address, not Proxmox: {create}"
    );
    let info = s.say("bob", "/env info name:named").await.text;
    assert!(info.contains(&format!("MAC address: {mac}")), "{info}");
    s.stop().await;
}

#[test]
fn a_bad_nameserver_or_searchdomain_is_named_by_slipway_check() {
    let t = TestEnv::new(Opts::default());
    let profile = std::fs::read_to_string(t.dir.path().join("profiles/ci-app.toml"))
        .unwrap()
        .replace(
            "bridge = \"vmbr0\"",
            "bridge = \"vmbr0\"\nnameserver = [\"ns1\"]\nsearchdomain = [\"bad domain\"]",
        );
    std::fs::write(t.dir.path().join("profiles/ci-app.toml"), profile).unwrap();
    let out = t.slipway(&["check"], "");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!out.status.success());
    assert!(
        text.contains("network.nameserver: 'ns1' is not an IP address"),
        "{text}"
    );
    assert!(
        text.contains("network.searchdomain: 'bad domain'"),
        "{text}"
    );
}
