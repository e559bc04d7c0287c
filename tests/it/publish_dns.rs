//! DNS against a real BIND 9 (Debian `bind9`) started here on a loopback
//! port with a TSIG key made by `tsig-keygen`: after an upsert, `dig` gets the
//! A record; after a delete, NXDOMAIN. Upserts replace rather than add (a
//! CNAME replaces an A record and back), a repeated delete is fine, and a
//! wrong key is refused with a hint.

use crate::publish_support::named::start_named;
use crate::publish_support::*;
use slipway::domain::domain_name::Domain;
use slipway::provider::publish::{DnsTarget, PublishError};
use std::net::Ipv4Addr;

fn shop() -> Domain {
    Domain::parse("shop.test.example", &zones()).unwrap()
}

#[tokio::test]
async fn an_upserted_record_is_answered_and_nxdomain_after_delete() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    let dns = named.dns(dir.path(), "key.conf");
    assert_eq!(named.dig("shop.test.example").0, "NXDOMAIN");

    dns.upsert(&shop(), &DnsTarget::Address(Ipv4Addr::new(10, 20, 0, 12)))
        .await
        .unwrap();

    assert_eq!(
        named.dig("shop.test.example"),
        ("NOERROR".to_string(), vec!["10.20.0.12".to_string()])
    );

    dns.delete(&shop()).await.unwrap();

    assert_eq!(
        named.dig("shop.test.example"),
        ("NXDOMAIN".to_string(), vec![])
    );
    drop(named.proc);
}

#[tokio::test]
async fn an_upsert_replaces_the_address_instead_of_adding_one() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    let dns = named.dns(dir.path(), "key.conf");

    dns.upsert(&shop(), &DnsTarget::Address(Ipv4Addr::new(10, 20, 0, 12)))
        .await
        .unwrap();
    dns.upsert(&shop(), &DnsTarget::Address(Ipv4Addr::new(10, 20, 0, 12)))
        .await
        .unwrap();
    dns.upsert(&shop(), &DnsTarget::Address(Ipv4Addr::new(10, 20, 0, 99)))
        .await
        .unwrap();

    assert_eq!(
        named.dig("shop.test.example").1,
        vec!["10.20.0.99".to_string()]
    );
}

#[tokio::test]
async fn deleting_a_record_that_is_not_there_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    let dns = named.dns(dir.path(), "key.conf");

    dns.delete(&shop()).await.unwrap();
    dns.delete(&shop()).await.unwrap();

    assert_eq!(named.dig("shop.test.example").0, "NXDOMAIN");
}

#[tokio::test]
async fn an_update_signed_with_the_wrong_secret_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    std::fs::write(
        dir.path().join("wrong.key"),
        "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA==\n",
    )
    .unwrap();
    let dns = named.dns(dir.path(), "wrong.key");

    let err = dns
        .upsert(&shop(), &DnsTarget::Address(Ipv4Addr::new(10, 20, 0, 12)))
        .await
        .unwrap_err();

    assert!(matches!(err, PublishError::Dns { .. }), "{err}");
    assert!(err.to_string().contains("TSIG key 'slipway'"), "{err}");
    assert!(err.to_string().contains("BADSIG"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(named.dig("shop.test.example").0, "NXDOMAIN");
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_a_transient_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "c2VjcmV0LWtleS1ieXRlcw==\n").unwrap();
    let toml = format!(
        "zones = [\"{ZONE}\"]\n[dns]\nserver = \"127.0.0.1:{}\"\nzone = \"{ZONE}\"\nkey_name = \"slipway\"\nkey_secret_file = \"key\"\n",
        free_port()
    );
    let dns = publishers(&toml, dir.path()).dns.unwrap();

    let err = dns.delete(&shop()).await.unwrap_err();

    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn a_cname_to_the_ingress_replaces_the_a_record_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let named = start_named(dir.path()).await;
    let dns = named.dns(dir.path(), "key.conf");
    dns.upsert(&shop(), &DnsTarget::Address(Ipv4Addr::new(10, 20, 0, 12)))
        .await
        .unwrap();

    dns.upsert(&shop(), &DnsTarget::Alias("proxy.test.example".into()))
        .await
        .unwrap();

    assert_eq!(
        named.dig_type("shop.test.example", "CNAME"),
        (
            "NOERROR".to_string(),
            vec!["proxy.test.example.".to_string()]
        )
    );
    dns.upsert(&shop(), &DnsTarget::Address(Ipv4Addr::new(10, 20, 0, 13)))
        .await
        .unwrap();
    assert_eq!(
        named.dig_type("shop.test.example", "CNAME").1,
        Vec::<String>::new()
    );
    assert_eq!(
        named.dig("shop.test.example").1,
        vec!["10.20.0.13".to_string()]
    );
    dns.delete(&shop()).await.unwrap();
    assert_eq!(named.dig("shop.test.example").0, "NXDOMAIN");
}
