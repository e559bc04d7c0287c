//! The whole path a member takes, on real components: bob adds his key and
//! creates `web-app` with a domain; the shipped playbook runs over SSH on a
//! real guest; bob's own key logs in; the page the guest serves is reached
//! through a real Caddy at the domain; and a real BIND answers the domain with
//! the proxy's address, not the guest's. The destroy takes all of it away.
//!
//! Subnet: 10.231.15.0/30 (see guest_support).

use crate::common::{job_of, TestEnv};
use crate::guest_provision::{add_key, guest_env, guest_for_create, job_log};
use crate::publish_support::caddy::Caddy;
use crate::publish_support::named::{start_named, Named};
use slipway::domain::lifecycle::JobState;
use std::time::Duration;

const DOMAIN: &str = "shop.test.example";

/// Routes through `caddy` (its admin API), names in `named`, and the ingress
/// (where Caddy listens) as the target of routed names.
fn publish_through(t: &TestEnv, caddy: &Caddy, named: &Named, key: &std::path::Path) {
    let mut text = std::fs::read_to_string(&t.config_path).unwrap();
    text.push_str(&format!(
        r#"
[publish]
router = "caddy-api"
zones = ["test.example"]
[publish.caddy_api]
admin_url = "{admin}"
server = "slipway"
[publish.dns]
server = "127.0.0.1:{dns}"
zone = "test.example"
key_name = "slipway"
key_secret_file = "{key}"
ingress = "127.0.0.1"
"#,
        admin = caddy.admin,
        dns = named.port,
        key = key.display(),
    ));
    std::fs::write(&t.config_path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_web_app_is_provisioned_logged_in_to_and_served_at_its_domain() {
    let t = guest_env(15);
    let (caddy_dir, named_dir) = (t.dir.path().join("caddy"), t.dir.path().join("named"));
    std::fs::create_dir_all(&caddy_dir).unwrap();
    std::fs::create_dir_all(&named_dir).unwrap();
    let caddy = Caddy::start(&caddy_dir).await;
    let named = start_named(&named_dir).await;
    publish_through(&t, &caddy, &named, &named_dir.join("key.conf"));
    let s = t.start();
    let bob = add_key(&s, &t, "bob").await;

    let reply = s
        .say(
            "bob",
            &format!("/env create profile:web-app name:shop domain:{DOMAIN}"),
        )
        .await;
    let job = job_of(&reply);
    let guest = guest_for_create(&t, 15).await;
    let done = s.finished_within(job, Duration::from_secs(600)).await;
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "{:?}\n{}",
        done.error,
        job_log(&t, job)
    );
    assert!(job_log(&t, job).contains("PLAY RECAP"));

    // bob logs in with his own key and the host key Slipway shows him.
    let known_hosts = t.dir.path().join("bob_known_hosts");
    guest.write_known_hosts(&known_hosts);
    let out = guest.ssh(
        &bob.private,
        &known_hosts,
        "echo 'hello from shop' > /var/www/html/index.html && nginx",
    );
    // The guest has no init system to start what the playbook installed:
    // bob starts nginx himself, as systemd would.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, body) = caddy.get(DOMAIN).await;
    assert_eq!(
        (status, body.trim()),
        (200, "hello from shop"),
        "Caddy forwards the domain to the guest's nginx"
    );
    assert_eq!(
        named.dig(DOMAIN),
        ("NOERROR".to_string(), vec!["127.0.0.1".to_string()]),
        "the name points at the proxy, not at the guest (10.231.15.2)"
    );
    let info = s.say("bob", "/env info name:shop").await.text;
    assert!(
        info.contains(&format!("DNS: {DOMAIN} A 127.0.0.1 (the proxy")),
        "{info}"
    );
    assert!(info.contains("ssh root@10.231.15.2"), "{info}");

    let destroy = job_of(&s.say("bob", "/env destroy name:shop").await);
    assert_eq!(s.finished(destroy).await.state, JobState::Succeeded);
    assert_eq!(caddy.get(DOMAIN).await.0, 404, "the route is gone");
    assert_eq!(named.dig(DOMAIN).0, "NXDOMAIN", "the name is gone");
    s.stop().await;
}
