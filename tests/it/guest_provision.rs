//! Post-provisioning that really runs: the shipped profiles' playbooks, over
//! SSH with Slipway's own key, on a real guest (a Debian userland with sshd in
//! a network namespace; see `guest_support`) that trusts exactly the keys the
//! create request carried. The guest's host key is learned at first contact
//! and checked from then on; the member's own key logs in afterwards.
//!
//! Subnets: 10.231.10.0/30 … 10.231.19.0/30 (see guest_support). Needs root,
//! ansible-playbook, ssh and the apt proxy's tinyproxy (see `.ci/run`).

use crate::common::{job_of, repo, Opts, Running, TestEnv};
use crate::guest_support::{keygen, Guest, KeyPair};
use slipway::domain::lifecycle::JobState;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long a create with a real playbook may take (apt through the proxy).
pub const PROVISION_LIMIT: Duration = Duration::from_secs(600);

/// A Slipway whose team web hands out the one address `10.231.N.2` (gateway
/// `.1`), whose profiles take their address from that pool, and whose
/// post-provision steps run from the repository (its `playbooks/`).
pub fn guest_env(n: u8) -> TestEnv {
    let t = TestEnv::new(Opts {
        provision: true,
        ..Opts::default()
    });
    t.edit_config(
        "ip_pool = { range = \"10.20.0.50-10.20.0.59\", network = \"10.20.0.0/24\", gateway = \"10.20.0.1\" }",
        &format!(
            "ip_pool = {{ range = \"10.231.{n}.2-10.231.{n}.2\", network = \"10.231.{n}.0/30\", gateway = \"10.231.{n}.1\" }}"
        ),
    );
    t.edit_config(
        "[provision]\nenabled = true\n",
        &format!(
            "[provision]\nenabled = true\nworkdir = \"{}\"\nssh_wait = \"2m\"\n",
            repo().display()
        ),
    );
    for entry in std::fs::read_dir(t.dir.path().join("profiles")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("ip = \"dhcp\"", "ip = \"pool\"")).unwrap();
    }
    t
}

/// Waits for the create request fakepve received and starts the real guest
/// for it: at `10.231.N.2`, trusting exactly the request's `ssh-public-keys`,
/// with apt reaching the Debian mirror through the gateway's proxy.
pub async fn guest_for_create(t: &TestEnv, n: u8) -> Guest {
    let keys = create_keys(t).await;
    tokio::task::spawn_blocking(move || {
        Guest::start(
            Ipv4Addr::new(10, 231, n, 2),
            Ipv4Addr::new(10, 231, n, 1),
            30,
            &keys,
        )
        .with_apt_proxy()
    })
    .await
    .unwrap()
}

/// The `ssh-public-keys` of the first create request fakepve received,
/// waiting up to a minute for it.
pub async fn create_keys(t: &TestEnv) -> Vec<String> {
    let started = Instant::now();
    loop {
        let sent =
            t.pve.writes().await.into_iter().find(|r| {
                r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/lxc")
            });
        if let Some(r) = sent {
            return r["params"]["ssh-public-keys"]
                .as_str()
                .expect("the create request carries ssh-public-keys")
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "fakepve got no create request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds a new key for `user` and returns the pair.
pub async fn add_key(s: &Running, t: &TestEnv, user: &str) -> KeyPair {
    let pair = keygen(t.dir.path(), &format!("{user}_key"));
    let reply = s
        .say(user, &format!("/keys add key:\"{}\"", pair.public))
        .await;
    assert!(reply.text.contains("SHA256:"), "{}", reply.text);
    pair
}

/// The job log of `job`, one line a row.
pub fn job_log(t: &TestEnv, job: i64) -> String {
    let db = crate::common::db(&t.dir.path().join("slipway.db"));
    let mut q = db
        .prepare("SELECT line FROM job_log WHERE job_id = ?1 ORDER BY id")
        .unwrap();
    let lines: Vec<String> = q
        .query_map([job], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    lines.join("\n")
}

/// Creates `profile` as bob (with a key of his own), runs its shipped
/// post-provisioning on a real guest, and checks that bob's key logs in and
/// `/env info` shows the login and the host key the guest really has.
async fn provisions_on_a_real_guest(profile: &str, n: u8) -> (TestEnv, Guest, KeyPair) {
    let t = guest_env(n);
    let s = t.start();
    let bob = add_key(&s, &t, "bob").await;
    let reply = s
        .say(
            "bob",
            &format!("/env create profile:{profile} name:real{n}"),
        )
        .await;
    let job = job_of(&reply);
    let guest = guest_for_create(&t, n).await;
    let done = s.finished_within(job, PROVISION_LIMIT).await;
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "{profile}: {:?}\n{}\nsshd: {}\nproxy: {}",
        done.error,
        job_log(&t, job),
        guest.sshd_log(),
        guest.proxy_log()
    );
    let log = job_log(&t, job);
    assert!(log.contains("PLAY RECAP"), "the playbook ran: {log}");
    assert!(
        log.contains(&guest.host_key_fingerprint()),
        "the host key learned at first contact is logged: {log}"
    );

    let known_hosts = t.dir.path().join("bob_known_hosts");
    guest.write_known_hosts(&known_hosts);
    let out = guest.ssh(&bob.private, &known_hosts, "true");
    assert_eq!(
        out.status.code(),
        Some(0),
        "bob's own key logs in: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let info = s.say("bob", &format!("/env info name:real{n}")).await;
    assert!(
        info.text.contains(&format!("ssh root@10.231.{n}.2")),
        "{}",
        info.text
    );
    assert!(
        info.text.contains(&guest.host_key_fingerprint()),
        "{}",
        info.text
    );
    s.stop().await;
    (t, guest, bob)
}

/// What dpkg says about `package` in the guest ("ii" when installed).
fn installed(guest: &Guest, package: &str) -> bool {
    let out = guest.exec(&format!(
        "dpkg-query -W -f='${{db:Status-Abbrev}}' {package}"
    ));
    String::from_utf8_lossy(&out.stdout).starts_with("ii")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_app_installs_its_packages_and_its_owner_logs_in() {
    let (_t, guest, _bob) = provisions_on_a_real_guest("web-app", 10).await;
    for p in ["nginx", "curl", "ca-certificates"] {
        assert!(installed(&guest, p), "{p} is installed in the guest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_website_gets_nginx_and_its_document_root() {
    let (_t, guest, _bob) = provisions_on_a_real_guest("static-website", 11).await;
    assert!(installed(&guest, "nginx"));
    let out = guest.exec("test -d /var/www/real11 && echo yes");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_service_gets_its_base_utilities() {
    let (t, guest, _bob) = provisions_on_a_real_guest("generic-service", 12).await;
    let profile =
        std::fs::read_to_string(t.dir.path().join("profiles/generic-service.toml")).unwrap();
    let packages: toml::Value = toml::from_str(&profile).unwrap();
    for p in packages["packages"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        assert!(installed(&guest, p), "{p} is installed in the guest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_node_gets_node_exporter() {
    let (_t, guest, _bob) = provisions_on_a_real_guest("monitoring-node", 13).await;
    for p in ["prometheus-node-exporter", "curl", "git"] {
        assert!(installed(&guest, p), "{p} is installed in the guest");
    }
}
