//! Addresses stay true: fakepve's DHCP server gives a ready environment's
//! guest another lease; the next reconcile pass records the new address and
//! queues a readdress job, which moves the Traefik route and the Prometheus
//! target, while the name in a real BIND keeps pointing at the ingress (the
//! proxy), not at either guest address; the thread is told. A pass that finds
//! nothing changed queues nothing.

use crate::common::{job_of, Opts, TestEnv};
use crate::publish_support::named::start_named;
use serde_json::json;
use slipway::domain::lifecycle::{EnvState, JobKind, JobState};

const LEASE: &str = "10.77.0.200";
/// Routes through Traefik's file provider in `traefik/`.
const TRAEFIK: &str = r#"
[publish]
router = "traefik"
zones = ["test.example"]
[publish.traefik]
dir = "traefik"
entry_points = ["websecure"]
"#;
/// Where Traefik listens.
const INGRESS: &str = "10.20.0.2";

/// A TestEnv whose ci-web profile takes its address from DHCP, with a DHCP
/// server on fakepve's bridge.
async fn dhcp_env(extra: String) -> TestEnv {
    let t = TestEnv::new(Opts {
        provision: false,
        extra,
        ..Opts::default()
    });
    let profile = t.dir.path().join("profiles/ci-web.toml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, text.replace("ip = \"pool\"", "ip = \"dhcp\"")).unwrap();
    t.edit_config("address_wait = \"0s\"", "address_wait = \"5s\"");
    t.pve.set("dhcp", json!({"subnet": "10.77.0.0/24"})).await;
    t
}

fn read(t: &TestEnv, rel: &str) -> String {
    std::fs::read_to_string(t.dir.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// bob creates ci-web `shop` at shop.test.example; it ends ready.
async fn create_shop(s: &crate::common::Running) -> slipway::store::envs::EnvRecord {
    let reply = s
        .say(
            "bob",
            "/env create profile:ci-web name:shop domain:shop.test.example",
        )
        .await;
    let job = s.finished(job_of(&reply)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    s.env("shop").await
}

/// Gives the guest a new lease, runs one pass and waits for its readdress job.
async fn renew_lease(t: &TestEnv, s: &crate::common::Running, vmid: u32, env_id: i64) {
    t.pve
        .guest_set(vmid, json!({"dhcp_lease": format!("{LEASE}/24")}))
        .await;
    let app = s.app.as_ref().unwrap();
    let pass = app.reconciler().pass().await.unwrap();
    assert_eq!(pass.readdressed, vec!["shop".to_string()], "{pass:?}");
    let job = app.store.env_jobs(env_id, 1).await.unwrap().remove(0);
    assert_eq!(job.kind, JobKind::Readdress);
    assert_eq!(s.finished(job.id).await.state, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_dhcp_lease_moves_the_route_and_the_monitoring_target() {
    let named_dir = tempfile::tempdir().unwrap();
    let named = start_named(named_dir.path()).await;
    let t = dhcp_env(format!(
        r#"{TRAEFIK}
[publish.monitor]
file_sd_dir = "file_sd"
[publish.dns]
server = "127.0.0.1:{port}"
zone = "test.example"
key_name = "slipway"
key_secret_file = "{key}"
ingress = "{INGRESS}"
"#,
        port = named.port,
        key = named_dir.path().join("key.conf").display(),
    ))
    .await;
    std::fs::create_dir_all(t.dir.path().join("traefik")).unwrap();
    std::fs::create_dir_all(t.dir.path().join("file_sd")).unwrap();
    let s = t.start();
    let env = create_shop(&s).await;
    let first = env.address.clone().expect("the first lease");
    assert!(first.starts_with("10.77.0."), "{first}");
    let route = format!("traefik/slipway-env-{}.toml", env.id);
    let target = format!("file_sd/slipway-env-{}.json", env.id);
    assert!(read(&t, &route).contains(&format!("http://{first}:8080")));
    assert!(read(&t, &target).contains(&format!("{first}:9100")));
    assert_eq!(named.dig("shop.test.example").1, vec![INGRESS.to_string()]);

    renew_lease(&t, &s, env.vmid.unwrap(), env.id).await;

    let after = s.env("shop").await;
    assert_eq!(after.address.as_deref(), Some(LEASE));
    assert_eq!(after.state, EnvState::Ready);
    let route_text = read(&t, &route);
    assert!(
        route_text.contains(&format!("http://{LEASE}:8080")),
        "{route_text}"
    );
    assert!(!route_text.contains(&first), "{route_text}");
    let target_text = read(&t, &target);
    assert!(
        target_text.contains(&format!("{LEASE}:9100")),
        "{target_text}"
    );
    assert!(!target_text.contains(&first), "{target_text}");
    let told = s
        .wait_for_message(&format!("address changed from {first} to {LEASE}"))
        .await;
    assert!(told.contains("shop"), "{told}");
    let info = s.say("bob", "/env info shop").await.text;
    assert!(info.contains(LEASE), "{info}");

    assert_eq!(
        named.dig("shop.test.example"),
        ("NOERROR".to_string(), vec![INGRESS.to_string()]),
        "the name still goes through the proxy"
    );

    let again = s.app.as_ref().unwrap().reconciler().pass().await.unwrap();
    assert!(again.readdressed.is_empty(), "nothing changed: {again:?}");
    s.stop().await;
    drop(named.proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_readdress_is_tried_again_on_the_next_pass() {
    let t = dhcp_env(TRAEFIK.into()).await;
    let traefik = t.dir.path().join("traefik");
    std::fs::create_dir_all(&traefik).unwrap();
    let s = t.start();
    let env = create_shop(&s).await;
    let app = s.app.as_ref().unwrap();

    // The route directory is gone: the readdress cannot write the route.
    std::fs::remove_dir_all(&traefik).unwrap();
    t.pve
        .guest_set(
            env.vmid.unwrap(),
            json!({"dhcp_lease": format!("{LEASE}/24")}),
        )
        .await;
    assert_eq!(app.reconciler().pass().await.unwrap().readdressed, ["shop"]);
    let failed = app.store.env_jobs(env.id, 1).await.unwrap().remove(0);
    assert_eq!(s.finished(failed.id).await.state, JobState::Failed);
    assert_eq!(s.env("shop").await.state, EnvState::Ready);

    std::fs::create_dir_all(&traefik).unwrap();
    assert_eq!(app.reconciler().pass().await.unwrap().readdressed, ["shop"]);
    let retry = app.store.env_jobs(env.id, 1).await.unwrap().remove(0);
    assert_ne!(retry.id, failed.id);
    assert_eq!(s.finished(retry.id).await.state, JobState::Succeeded);
    s.wait_for_message("once more").await;
    let route = read(&t, &format!("traefik/slipway-env-{}.toml", env.id));
    assert!(route.contains(&format!("http://{LEASE}:8080")), "{route}");
    assert!(app
        .reconciler()
        .pass()
        .await
        .unwrap()
        .readdressed
        .is_empty());
    s.stop().await;
}
