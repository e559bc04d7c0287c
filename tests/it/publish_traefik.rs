//! Traefik file provider: every file Slipway writes validates against the
//! Traefik v3 file-provider schema and holds exactly one router and one
//! service; publishing is idempotent; the file is gone after teardown and
//! after a rollback; hostile domains never reach the directory.

use crate::publish_support::*;
use serde_json::{json, Value};
use slipway::domain::domain_name::Domain;
use slipway::provider::publish::traefik::Traefik;
use slipway::provider::publish::{Route, Router};
use std::net::Ipv4Addr;
use std::path::Path;

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/specs/traefik-v3-file-provider.schema.json"
);

fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(SCHEMA)
        .unwrap_or_else(|e| panic!("cannot read the Traefik schema at {SCHEMA}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// Reads the environment's file, checks it against the schema and returns it as JSON.
fn read_valid(dir: &Path, env_id: i64) -> Value {
    let path = dir.join(Traefik::file_name(env_id));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()));
    let value: Value = toml::from_str(&text).expect("the file is TOML");
    let validator = schema_validator();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{text}\nschema errors: {errors:#?}");
    value
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn full_config(dir: &Path) -> Box<dyn Router> {
    let toml = format!(
        r#"
        router = "traefik"
        zones = ["{ZONE}"]
        [traefik]
        dir = "{}"
        entry_points = ["websecure"]
        cert_resolver = "letsencrypt"
        middlewares = ["secure-headers@file"]
        health_check = {{ path = "/healthz", interval = "15s", timeout = "3s" }}
        "#,
        dir.display()
    );
    publishers(&toml, dir).router.unwrap()
}

fn minimal_config(dir: &Path) -> Box<dyn Router> {
    let toml = format!(
        "router = \"traefik\"\nzones = [\"{ZONE}\"]\n[traefik]\ndir = \"{}\"\n",
        dir.display()
    );
    publishers(&toml, dir).router.unwrap()
}

fn shop() -> Route {
    route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080)
}

#[test]
fn the_schema_check_catches_a_file_traefik_would_not_accept() {
    let wrong = json!({ "http": { "services": { "s": { "loadBalancer": {
        "servers": [{ "url": "http://10.0.0.1" }], "healtCheck": {}
    } } } } });
    assert!(schema_validator().iter_errors(&wrong).next().is_some());
}

#[tokio::test]
async fn a_published_route_validates_and_holds_exactly_the_expected_router_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let router = full_config(dir.path());

    router.publish(&shop()).await.unwrap();

    assert_eq!(entries(dir.path()), vec!["slipway-env-12.toml"]);
    let expected = json!({
        "http": {
            "routers": {
                "slipway-env-12": {
                    "rule": "Host(`shop.test.example`)",
                    "entryPoints": ["websecure"],
                    "middlewares": ["secure-headers@file"],
                    "service": "slipway-env-12",
                    "tls": { "certResolver": "letsencrypt" }
                }
            },
            "services": {
                "slipway-env-12": {
                    "loadBalancer": {
                        "servers": [{ "url": "http://10.20.0.12:8080" }],
                        "healthCheck": { "path": "/healthz", "interval": "15s", "timeout": "3s" }
                    }
                }
            }
        }
    });
    assert_eq!(read_valid(dir.path(), 12), expected);
}

#[tokio::test]
async fn without_optional_settings_the_router_has_no_tls_middlewares_or_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let router = minimal_config(dir.path());

    router.publish(&shop()).await.unwrap();

    let expected = json!({
        "http": {
            "routers": {
                "slipway-env-12": {
                    "rule": "Host(`shop.test.example`)",
                    "service": "slipway-env-12"
                }
            },
            "services": {
                "slipway-env-12": {
                    "loadBalancer": { "servers": [{ "url": "http://10.20.0.12:8080" }] }
                }
            }
        }
    });
    assert_eq!(read_valid(dir.path(), 12), expected);
}

#[tokio::test]
async fn publishing_twice_leaves_one_file_and_a_new_address_replaces_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let router = full_config(dir.path());

    router.publish(&shop()).await.unwrap();
    router.publish(&shop()).await.unwrap();
    let mut moved = shop();
    moved.address = Ipv4Addr::new(10, 20, 0, 99);
    router.publish(&moved).await.unwrap();

    assert_eq!(entries(dir.path()), vec!["slipway-env-12.toml"]);
    let file = read_valid(dir.path(), 12);
    assert_eq!(
        file["http"]["services"]["slipway-env-12"]["loadBalancer"]["servers"],
        json!([{ "url": "http://10.20.0.99:8080" }])
    );
}

#[tokio::test]
async fn two_environments_get_two_files_and_teardown_removes_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let router = full_config(dir.path());
    let other = route(13, "blog", Ipv4Addr::new(10, 20, 0, 13), 80);

    router.publish(&shop()).await.unwrap();
    router.publish(&other).await.unwrap();
    read_valid(dir.path(), 13);
    router.unpublish(12, &shop().domain).await.unwrap();

    assert_eq!(entries(dir.path()), vec!["slipway-env-13.toml"]);
}

#[tokio::test]
async fn the_file_is_gone_after_teardown_and_a_second_teardown_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let router = full_config(dir.path());
    router.publish(&shop()).await.unwrap();

    router.unpublish(12, &shop().domain).await.unwrap();
    router.unpublish(12, &shop().domain).await.unwrap();

    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn the_file_is_gone_after_a_rollback_of_a_later_failed_step() {
    let dir = tempfile::tempdir().unwrap();
    let router = full_config(dir.path());
    router.publish(&shop()).await.unwrap();

    // A later step failed; the worker compensates from the journal, which
    // holds only the environment's id and domain.
    let (env_id, domain) = (12, shop().domain);
    router.unpublish(env_id, &domain).await.unwrap();

    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn a_publish_that_fails_leaves_no_file_and_no_temporary_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let router = full_config(dir.path());
    // Something that is not a file sits where the route should go.
    let blocker = dir.path().join(Traefik::file_name(12));
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), "x").unwrap();

    let err = router.publish(&shop()).await.unwrap_err();

    assert!(err.to_string().contains("slipway-env-12.toml"), "{err}");
    assert_eq!(entries(dir.path()), vec!["slipway-env-12.toml"]);
    assert!(blocker.is_dir());
}

#[tokio::test]
async fn hostile_domains_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let _router = full_config(dir.path());

    for raw in hostile_domains() {
        let err = Domain::parse(&raw, &zones()).expect_err(&raw);
        assert!(err.0.starts_with("domain: "), "{err}");
    }

    assert!(entries(dir.path()).is_empty());
}
