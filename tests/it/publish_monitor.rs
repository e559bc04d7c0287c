//! Prometheus file_sd: the target file holds exactly the node exporter's
//! address and the team, env and profile labels; it is replaced in place,
//! removed on teardown, and removing it twice is fine.

use crate::publish_support::*;
use serde_json::{json, Value};
use slipway::provider::publish::{Monitor, Target};
use std::net::Ipv4Addr;
use std::path::Path;

fn monitor(dir: &Path) -> Box<dyn Monitor> {
    let toml = format!(
        "[monitor]\nfile_sd_dir = \"{}\"\nexporter_port = 9101\n",
        dir.display()
    );
    publishers(&toml, dir).monitor.unwrap()
}

fn target() -> Target {
    Target::from(&route(7, "shop", Ipv4Addr::new(10, 20, 0, 7), 8080))
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_target_file_holds_exactly_the_exporter_and_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = monitor(dir.path());

    monitor.add_target(&target()).await.unwrap();

    assert_eq!(entries(dir.path()), vec!["slipway-env-7.json"]);
    let text = std::fs::read_to_string(dir.path().join("slipway-env-7.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        json!([{
            "targets": ["10.20.0.7:9101"],
            "labels": { "team": "web", "env": "shop", "profile": "webapp" }
        }])
    );
}

#[tokio::test]
async fn adding_twice_leaves_one_file_with_the_latest_address() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = monitor(dir.path());
    let mut moved = target();
    moved.address = Ipv4Addr::new(10, 20, 0, 70);

    monitor.add_target(&target()).await.unwrap();
    monitor.add_target(&moved).await.unwrap();

    assert_eq!(entries(dir.path()), vec!["slipway-env-7.json"]);
    let text = std::fs::read_to_string(dir.path().join("slipway-env-7.json")).unwrap();
    assert!(text.contains("\"10.20.0.70:9101\""), "{text}");
}

#[tokio::test]
async fn the_file_is_gone_after_teardown_and_a_second_removal_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = monitor(dir.path());
    monitor.add_target(&target()).await.unwrap();

    monitor.remove_target(7).await.unwrap();
    monitor.remove_target(7).await.unwrap();

    assert!(entries(dir.path()).is_empty());
}
