//! The real-guest harness itself (`tests/guest_support`): a Debian guest in a
//! network namespace that root logs into with its own key and no other, whose
//! host key is what the harness says it is, kept apart from other guests, and
//! whose apt reaches the Debian mirror through the gateway's proxy.
//!
//! Needs root; without it (or without network namespaces) these tests fail,
//! saying so. Subnets: 10.231.0.0/30 … 10.231.4.0/30 (see guest_support).

use crate::guest_support::{keygen, Guest};
use std::net::Ipv4Addr;
use std::path::Path;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn root_logs_in_with_its_key_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let mine = keygen(dir.path(), "mine");
    let other = keygen(dir.path(), "other");
    let guest = Guest::start(
        Ipv4Addr::new(10, 231, 0, 2),
        Ipv4Addr::new(10, 231, 0, 1),
        30,
        std::slice::from_ref(&mine.public),
    );
    let known_hosts = dir.path().join("known_hosts");
    guest.write_known_hosts(&known_hosts);

    let out = guest.ssh(&mine.private, &known_hosts, "true");
    assert_eq!(out.status.code(), Some(0), "ssh -i mine: {}", stderr(&out));

    let out = guest.ssh(
        &mine.private,
        &known_hosts,
        "id -u; hostname; cat /etc/debian_version; python3 --version; ls /usr/sbin/nginx /usr/bin/sudo",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0", "{text}");
    assert_eq!(lines[1], "guest-10-231-0-2", "{text}");
    assert!(lines[2].starts_with("12."), "not bookworm: {text}");
    assert!(lines[3].starts_with("Python 3.11"), "{text}");

    let out = guest.ssh(&other.private, &known_hosts, "true");
    assert_eq!(
        out.status.code(),
        Some(255),
        "another key got in: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("Permission denied (publickey"),
        "{}",
        stderr(&out)
    );

    // The host key is the one the harness names: a known_hosts naming another key fails.
    let fingerprint = guest.host_key_fingerprint();
    assert!(
        fingerprint.starts_with("SHA256:") && fingerprint.len() == 7 + 43,
        "{fingerprint}"
    );
    let scanned = std::process::Command::new("ssh-keygen")
        .args(["-E", "sha256", "-lf"])
        .arg(&known_hosts)
        .output()
        .unwrap();
    assert!(
        stdout(&scanned).contains(&fingerprint),
        "{}",
        stdout(&scanned)
    );
    let wrong = dir.path().join("wrong_known_hosts");
    let other_blob = other.public.split_whitespace().nth(1).unwrap();
    std::fs::write(
        &wrong,
        format!("{} ssh-ed25519 {other_blob}\n", guest.address()),
    )
    .unwrap();
    let out = guest.ssh(&mine.private, &wrong, "true");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    assert_authorized_keys_modes(&guest);
}

/// sshd's StrictModes would refuse the key otherwise; check what the harness wrote.
fn assert_authorized_keys_modes(guest: &Guest) {
    let out = guest.exec("stat -c '%a %U %n' /root/.ssh /root/.ssh/authorized_keys");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "700 root /root/.ssh\n600 root /root/.ssh/authorized_keys\n"
    );
}

#[test]
fn guests_are_apart() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "key");
    let keys = std::slice::from_ref(&key.public);
    let a = Guest::start(
        Ipv4Addr::new(10, 231, 1, 2),
        Ipv4Addr::new(10, 231, 1, 1),
        30,
        keys,
    );
    let b = Guest::start(
        Ipv4Addr::new(10, 231, 2, 2),
        Ipv4Addr::new(10, 231, 2, 1),
        30,
        keys,
    );
    assert_ne!(a.host_key_fingerprint(), b.host_key_fingerprint());
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{}{}", a.known_hosts(), b.known_hosts()),
    )
    .unwrap();

    let out = a.ssh(&key.private, &known_hosts, "echo a > /root/mark");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = b.ssh(
        &key.private,
        &known_hosts,
        "test ! -e /root/mark && ps -e -o pid= | wc -l",
    );
    assert!(out.status.success(), "b sees a's file: {}", stderr(&out));
    // b's PID namespace: sshd, its session, the shell, ps, wc; nothing of a's or the machine's.
    let count: u32 = stdout(&out).trim().parse().unwrap();
    assert!(count < 10, "b sees {count} processes");

    // A live guest's subnet counts as taken: Guest::start refuses any overlapping one.
    let subnet = Ipv4Addr::new(10, 231, 1, 0);
    let taken = crate::guest_support::net::overlapping_routes(subnet, 24);
    assert!(
        taken.iter().any(|r| r.starts_with("10.231.1.0/30 ")),
        "{taken:?}"
    );

    let netns = a.netns().to_string();
    drop(a);
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!stdout(&listed).contains(&netns), "{netns} is still there");
    let taken = crate::guest_support::net::overlapping_routes(subnet, 24);
    assert!(taken.is_empty(), "a's subnet is still routed: {taken:?}");
    let out = b.ssh(&key.private, &known_hosts, "true");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn apt_reaches_the_mirror_through_the_gateway_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "key");
    let guest = Guest::start(
        Ipv4Addr::new(10, 231, 3, 2),
        Ipv4Addr::new(10, 231, 3, 1),
        30,
        std::slice::from_ref(&key.public),
    )
    .with_apt_proxy();
    let known_hosts = dir.path().join("known_hosts");
    guest.write_known_hosts(&known_hosts);
    let ssh = |cmd: &str| guest.ssh(&key.private, &known_hosts, cmd);

    let out = ssh("apt-get -q update");
    assert!(
        out.status.success(),
        "apt-get update: {}{}\nproxy log:\n{}",
        stdout(&out),
        stderr(&out),
        guest.proxy_log()
    );
    assert!(stdout(&out).contains("bookworm"), "{}", stdout(&out));

    // The proxy forwards to the mirror only: another host gets 403 from the proxy itself.
    let probe = format!(
        "python3 -c \"import urllib.request as u; o = u.build_opener(u.ProxyHandler({{'http': '{}'}})); \
         print(o.open('http://not-the-mirror.example/').status)\" 2>&1",
        guest.proxy_url().unwrap()
    );
    let out = ssh(&probe);
    assert!(stdout(&out).contains("403"), "{}", stdout(&out));

    // Without the proxy there is no way out at all: no default route.
    let out = ssh("ip route show default | wc -l");
    assert_eq!(stdout(&out).trim(), "0");
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let left = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let guest = Guest::start(
            Ipv4Addr::new(10, 231, 4, 2),
            Ipv4Addr::new(10, 231, 4, 1),
            30,
            &[],
        );
        *left.lock().unwrap() = Some((guest.netns().to_string(), guest.init_pid().unwrap()));
        panic!("on purpose: this test checks the cleanup after a panic");
    });
    assert!(result.is_err());
    let (netns, init) = left.lock().unwrap().take().unwrap();
    assert!(
        !Path::new(&format!("/proc/{init}")).exists(),
        "sshd {init} still runs"
    );
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!stdout(&listed).contains(&netns), "{netns} is still there");
    let taken = crate::guest_support::net::overlapping_routes(Ipv4Addr::new(10, 231, 4, 0), 30);
    assert!(taken.is_empty(), "still routed: {taken:?}");
}
