//! Operations: `/healthz` and Prometheus `/metrics`, the per-user rate limit,
//! and trusting Proxmox by certificate fingerprint instead of a CA file.

use crate::common::{job_of, Opts, TestEnv};
use sha2::{Digest, Sha256};
use slipway::domain::lifecycle::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_answer() {
    let t = TestEnv::new(Opts {
        provision: false,
        extra: "[http]\nlisten = \"127.0.0.1:0\"\n".into(),
        ..Opts::default()
    });
    let s = t.start();
    let addr = s
        .app
        .as_ref()
        .unwrap()
        .serve_http()
        .await
        .unwrap()
        .expect("http.listen is set");
    let reply = s
        .say("bob", "/env create profile:generic-service name:m1")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    s.say("bob", "/env create profile:docker-host name:m2")
        .await; // pending approval

    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("slipway_jobs{state=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("slipway_pending_approvals 1"), "{metrics}");
    assert!(
        metrics.contains("slipway_step_duration_seconds_count{step=\"create container\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("slipway_proxmox_errors_total"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_sends_too_fast_is_asked_to_slow_down() {
    let t = TestEnv::new(Opts {
        rate_burst: 3,
        ..Opts::default()
    });
    let s = t.start();
    for _ in 0..3 {
        assert!(!s.say("bob", "/quota").await.text.contains("Slow down"));
    }
    let limited = s.say("bob", "/quota").await;
    assert!(limited.private);
    assert!(
        limited
            .text
            .contains("Slow down: at most 3 commands at once, then 60 a minute. Try again in 1s"),
        "{}",
        limited.text
    );
    // Another user is not affected.
    assert!(s.say("alice", "/quota").await.text.contains("Team web"));
    s.stop().await;
}

fn der_fingerprint(pem_path: &std::path::Path) -> String {
    let pem = std::fs::read_to_string(pem_path).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&b64);
    Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn base64_decode(s: &str) -> Vec<u8> {
    let table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.chars().filter(|c| *c != '=') {
        buf = (buf << 6) | table.find(c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_can_be_trusted_by_certificate_fingerprint() {
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let ca_line = format!("ca_file = \"{}\"", t.pve.ca.display());
    t.edit_config(
        &ca_line,
        &format!("fingerprint = \"{}\"", der_fingerprint(&t.pve.ca)),
    );
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:pinned")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Succeeded);
    s.stop().await;

    // A wrong fingerprint is refused: nothing reaches fakepve's API.
    let t = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let ca_line = format!("ca_file = \"{}\"", t.pve.ca.display());
    t.edit_config(
        &ca_line,
        &format!("fingerprint = \"{}\"", ["AB"; 32].join(":")),
    );
    let s = t.start();
    let reply = s
        .say("bob", "/env create profile:generic-service name:wrongpin")
        .await;
    assert_eq!(s.finished(job_of(&reply)).await.state, JobState::Failed);
    let reason = s.env("wrongpin").await.reason.unwrap();
    assert!(
        reason.contains("could not reach Proxmox") && reason.contains("fingerprint"),
        "{reason}"
    );
    assert!(t.pve.requests().await.is_empty());
    s.stop().await;
}
