//! Caddy's admin API against a real Caddy (Debian `caddy`) started here on
//! loopback ports: after publish, `Host: shop.test.example` reaches a backend
//! on 127.0.0.1; after unpublish it gets the catch-all 404 again. Publishing
//! twice leaves one route; a new address replaces the old one in place.

use crate::publish_support::caddy::Caddy;
use crate::publish_support::*;
use serde_json::Value;
use slipway::provider::publish::Router;
use std::net::Ipv4Addr;
use std::path::Path;

impl Caddy {
    fn router(&self, dir: &Path) -> Box<dyn Router> {
        let toml = format!(
            "router = \"caddy-api\"\nzones = [\"{ZONE}\"]\n[caddy_api]\nadmin_url = \"{}\"\nserver = \"slipway\"\n",
            self.admin
        );
        publishers(&toml, dir).router.unwrap()
    }

    async fn routes(&self) -> Vec<Value> {
        let url = format!("{}/config/apps/http/servers/slipway/routes", self.admin);
        let value: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        value.as_array().cloned().unwrap_or_default()
    }

    async fn ids(&self) -> Vec<String> {
        self.routes()
            .await
            .iter()
            .map(|r| r["@id"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

#[tokio::test]
async fn a_published_domain_routes_to_the_backend_and_stops_after_unpublish() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start(dir.path()).await;
    let backend_port = backend("hello from shop").await;
    let router = caddy.router(dir.path());
    let shop = route(12, "shop", Ipv4Addr::LOCALHOST, backend_port);
    assert_eq!(caddy.get("shop.test.example").await.0, 404);

    router.publish(&shop).await.unwrap();

    assert_eq!(
        caddy.get("shop.test.example").await,
        (200, "hello from shop".to_string())
    );
    assert_eq!(caddy.get("other.test.example").await.0, 404);

    router.unpublish(12, &shop.domain).await.unwrap();

    assert_eq!(
        caddy.get("shop.test.example").await,
        (404, "no route".to_string())
    );
    assert_eq!(caddy.ids().await, vec!["catch-all"]);
    drop(caddy.proc);
}

#[tokio::test]
async fn publishing_twice_leaves_one_route_and_a_new_address_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start(dir.path()).await;
    let (old_port, new_port) = (backend("old").await, backend("new").await);
    let router = caddy.router(dir.path());
    let mut shop = route(12, "shop", Ipv4Addr::LOCALHOST, old_port);

    router.publish(&shop).await.unwrap();
    router.publish(&shop).await.unwrap();
    shop.port = new_port;
    router.publish(&shop).await.unwrap();

    assert_eq!(caddy.ids().await, vec!["slipway-env-12", "catch-all"]);
    assert_eq!(
        caddy.get("shop.test.example").await,
        (200, "new".to_string())
    );
}

#[tokio::test]
async fn concurrent_publishes_of_one_environment_make_one_route() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start(dir.path()).await;
    let port = backend("shop").await;
    let router = caddy.router(dir.path());
    let shop = route(12, "shop", Ipv4Addr::LOCALHOST, port);

    let (a, b) = tokio::join!(router.publish(&shop), router.publish(&shop));
    a.unwrap();
    b.unwrap();

    assert_eq!(caddy.ids().await, vec!["slipway-env-12", "catch-all"]);
}

#[tokio::test]
async fn unpublishing_a_route_that_is_not_there_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start(dir.path()).await;
    let router = caddy.router(dir.path());
    let shop = route(12, "shop", Ipv4Addr::LOCALHOST, 1);

    router.unpublish(12, &shop.domain).await.unwrap();

    assert_eq!(caddy.ids().await, vec!["catch-all"]);
}

#[tokio::test]
async fn duplicate_routes_left_by_someone_else_are_all_removed() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start(dir.path()).await;
    let router = caddy.router(dir.path());
    let shop = route(12, "shop", Ipv4Addr::LOCALHOST, 1);
    let body = slipway::provider::publish::caddy_api::CaddyApi::route_json(&shop);
    let url = format!("{}/config/apps/http/servers/slipway/routes", caddy.admin);
    for _ in 0..2 {
        let resp = reqwest::Client::new()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    assert_eq!(caddy.ids().await.len(), 3);

    router.unpublish(12, &shop.domain).await.unwrap();

    assert_eq!(caddy.ids().await, vec!["catch-all"]);
}

#[tokio::test]
async fn a_server_name_caddy_does_not_have_is_reported_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start(dir.path()).await;
    let toml = format!(
        "router = \"caddy-api\"\nzones = [\"{ZONE}\"]\n[caddy_api]\nadmin_url = \"{}\"\nserver = \"srv9\"\n",
        caddy.admin
    );
    let router = publishers(&toml, dir.path()).router.unwrap();

    let err = router
        .publish(&route(12, "shop", Ipv4Addr::LOCALHOST, 1))
        .await
        .unwrap_err();

    assert!(
        err.to_string().contains("Caddy has no HTTP server 'srv9'"),
        "{err}"
    );
    assert_eq!(caddy.ids().await, vec!["catch-all"]);
}

#[tokio::test]
async fn an_unreachable_admin_api_is_a_transient_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "router = \"caddy-api\"\nzones = [\"{ZONE}\"]\n[caddy_api]\nadmin_url = \"http://127.0.0.1:{}\"\nserver = \"slipway\"\n",
        free_port()
    );
    let router = publishers(&toml, dir.path()).router.unwrap();

    let err = router
        .publish(&route(12, "shop", Ipv4Addr::LOCALHOST, 1))
        .await
        .unwrap_err();

    assert!(err.is_transient(), "{err}");
}
