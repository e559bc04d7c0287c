//! Unit tests of the `[publish]` section's validation: every problem is
//! reported as `file: publish.key: message`, and valid sections build.

use super::*;

fn parse(text: &str) -> RawPublish {
    toml::from_str(text).expect("valid TOML for RawPublish")
}

fn check(text: &str, base: &Path) -> (PublishConfig, Vec<String>) {
    let mut problems = Vec::new();
    let cfg = validate(parse(text), base, "slipway.toml", &mut problems);
    (cfg, problems.iter().map(|p| p.to_string()).collect())
}

fn has(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[test]
fn an_empty_section_publishes_nothing_and_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, problems) = check("", dir.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert!(cfg.router.is_none() && cfg.dns.is_none() && cfg.monitor.is_none());
    let built = build(&cfg).unwrap();
    assert!(built.router.is_none() && built.dns.is_none() && built.monitor.is_none());
}

#[test]
fn a_traefik_section_with_defaults_validates_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dynamic")).unwrap();
    let (cfg, problems) = check(
        r#"
        router = "traefik"
        zones = ["Test.Example.", "apps.example"]
        [traefik]
        dir = "dynamic"
        entry_points = ["websecure"]
        cert_resolver = "letsencrypt"
        middlewares = ["secure-headers@file"]
        health_check = { path = "/healthz" }
        "#,
        dir.path(),
    );
    assert!(has(
        &problems,
        "publish.zones: zone: 'Test.Example' contains capital letters"
    ));
    assert_eq!(cfg.zones, vec!["apps.example".to_string()]);
    let Some(RouterConfig::Traefik(t)) = &cfg.router else {
        panic!("traefik expected: {cfg:?}")
    };
    assert_eq!(t.dir, dir.path().join("dynamic"));
    assert_eq!(
        t.health_check.as_ref().unwrap().interval,
        Duration::from_secs(10)
    );
    assert_eq!(build(&cfg).unwrap().router.unwrap().kind(), "traefik");
}

#[test]
fn unknown_keys_are_refused_by_the_parser() {
    let err =
        toml::from_str::<RawPublish>("[traefik]\ndir = \"x\"\nentrypoints = []\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `entrypoints`"),
        "{err}"
    );
}

#[test]
fn problems_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, problems) = check(
        r#"
        router = "nginx"
        zones = ["test.example"]
        "#,
        dir.path(),
    );
    assert_eq!(
        problems,
        vec!["slipway.toml: publish.router: 'nginx' is not \"traefik\", \"caddy-api\", \"caddy-git\" or \"none\"".to_string()]
    );
}

#[test]
fn a_router_without_zones_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, problems) = check("router = \"caddy-api\"\n[caddy_api]\n", dir.path());
    assert!(
        has(&problems, "publish.zones: list at least one zone"),
        "{problems:?}"
    );
}

#[test]
fn a_section_for_another_router_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, problems) = check(
        "router = \"caddy-api\"\nzones = [\"test.example\"]\n[caddy_api]\n[traefik]\ndir = \".\"\n",
        dir.path(),
    );
    assert!(
        has(
            &problems,
            "publish.traefik: is configured but publish.router is 'caddy-api'"
        ),
        "{problems:?}"
    );
}

#[test]
fn a_missing_router_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, problems) = check(
        "router = \"caddy-git\"\nzones = [\"test.example\"]\n",
        dir.path(),
    );
    assert!(
        has(
            &problems,
            "publish.router: is 'caddy-git' but [publish.caddy_git] is missing"
        ),
        "{problems:?}"
    );
}

#[test]
fn a_missing_traefik_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, problems) = check(
        "router = \"traefik\"\nzones = [\"test.example\"]\n[traefik]\ndir = \"nope\"\n",
        dir.path(),
    );
    assert!(
        has(&problems, "publish.traefik.dir:") && has(&problems, "is not a directory"),
        "{problems:?}"
    );
}

#[test]
fn traefik_names_with_quotes_or_spaces_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, problems) = check(
        "router = \"traefik\"\nzones = [\"test.example\"]\n[traefik]\ndir = \".\"\nentry_points = [\"web secure\"]\nmiddlewares = [\"a\\\"b@file\"]\ncert_resolver = \"le`x\"\nhealth_check = { path = \"health\" }\n",
        dir.path(),
    );
    for key in [
        "publish.traefik.entry_points",
        "publish.traefik.middlewares",
        "publish.traefik.cert_resolver",
        "publish.traefik.health_check.path",
    ] {
        assert!(has(&problems, key), "{key}: {problems:?}");
    }
}

#[test]
fn a_repository_directory_that_escapes_is_refused() {
    for bad in ["../outside", "/etc", "services/../../x", ".git/hooks", ""] {
        assert!(check_repo_dir(bad).is_err(), "{bad}");
    }
    assert_eq!(
        check_repo_dir("services/slipway").unwrap(),
        PathBuf::from("services/slipway")
    );
}

#[test]
fn a_git_section_with_an_escaping_dir_and_a_bad_branch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, problems) = check(
        "router = \"caddy-git\"\nzones = [\"test.example\"]\n[caddy_git]\nrepo = \"/srv/caddy.git\"\nbranch = \"-f\"\ndir = \"../x\"\n",
        dir.path(),
    );
    assert!(
        has(
            &problems,
            "publish.caddy_git.dir: '../x' must be a relative directory"
        ),
        "{problems:?}"
    );
    assert!(has(&problems, "publish.caddy_git.branch"), "{problems:?}");
}

#[test]
fn a_tsig_secret_is_read_from_a_tsig_keygen_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tsig.key"),
        "key \"slipway\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LWtleS1ieXRlcw==\";\n};\n",
    )
    .unwrap();
    let (cfg, problems) = check(
        r#"
        zones = ["apps.test.example"]
        [dns]
        server = "127.0.0.1:5353"
        zone = "test.example"
        key_name = "slipway"
        key_secret_file = "tsig.key"
        ttl = "1m"
        "#,
        dir.path(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let dns = cfg.dns.as_ref().unwrap();
    assert_eq!(dns.secret_bytes().unwrap(), b"secret-key-bytes");
    assert_eq!(dns.ttl, 60);
    assert!(
        !format!("{dns:?}").contains("c2VjcmV0"),
        "the secret never prints"
    );
    assert!(build(&cfg).unwrap().dns.is_some());
}

#[test]
fn dns_problems_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, problems) = check(
        r#"
        zones = ["other.example"]
        [dns]
        server = "ns1:53"
        zone = "test.example"
        key_name = "slipway"
        key_algorithm = "hmac-md5"
        "#,
        dir.path(),
    );
    assert!(cfg.dns.is_none());
    for needle in [
        "publish.dns.server: 'ns1:53' is not IP:port",
        "publish.zones: 'other.example' is not inside publish.dns.zone 'test.example'",
        "publish.dns.key_algorithm: 'hmac-md5'",
        "publish.dns: the TSIG secret is missing",
    ] {
        assert!(has(&problems, needle), "{needle}: {problems:?}");
    }
}

#[test]
fn a_monitor_section_needs_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, problems) = check("[monitor]\nfile_sd_dir = \".\"\n", dir.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(cfg.monitor.as_ref().unwrap().exporter_port, 9100);
    let (_, problems) = check(
        "[monitor]\nfile_sd_dir = \"missing\"\nexporter_port = 0\n",
        dir.path(),
    );
    assert!(
        has(&problems, "publish.monitor.file_sd_dir"),
        "{problems:?}"
    );
    assert!(
        has(&problems, "publish.monitor.exporter_port"),
        "{problems:?}"
    );
}

fn with_router_and_dns(ingress: &str) -> (PublishConfig, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dynamic")).unwrap();
    std::fs::write(dir.path().join("tsig.key"), "c2VjcmV0LWtleS1ieXRlcw==\n").unwrap();
    check(
        &format!(
            r#"
            router = "traefik"
            zones = ["test.example"]
            [traefik]
            dir = "dynamic"
            [dns]
            server = "127.0.0.1:53"
            zone = "test.example"
            key_name = "slipway"
            key_secret_file = "tsig.key"
            {ingress}
            "#
        ),
        dir.path(),
    )
}

#[test]
fn with_a_router_dns_needs_the_ingress_and_points_names_at_it() {
    use crate::provider::publish::DnsTarget;
    let (_, problems) = with_router_and_dns("");
    assert!(
        has(&problems, "publish.dns.ingress: is required with a router"),
        "{problems:?}"
    );
    let (cfg, problems) = with_router_and_dns("ingress = \"10.0.0.80\"");
    assert!(problems.is_empty(), "{problems:?}");
    let guest = "10.20.0.12".parse().ok();
    assert_eq!(
        cfg.dns_target(guest),
        Some(DnsTarget::Address("10.0.0.80".parse().unwrap()))
    );
    let (cfg, problems) = with_router_and_dns("ingress = \"Proxy.Test.Example.\"");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        cfg.dns_target(guest),
        Some(DnsTarget::Alias("proxy.test.example".into()))
    );
    for bad in ["fd00::1", "not a name!"] {
        let (_, problems) = with_router_and_dns(&format!("ingress = \"{bad}\""));
        assert!(
            has(&problems, &format!("publish.dns.ingress: '{bad}'")),
            "{bad}: {problems:?}"
        );
    }
}

#[test]
fn without_a_router_a_name_points_at_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tsig.key"), "c2VjcmV0LWtleS1ieXRlcw==\n").unwrap();
    let (cfg, problems) = check(
        r#"
        zones = ["test.example"]
        [dns]
        server = "127.0.0.1:53"
        zone = "test.example"
        key_name = "slipway"
        key_secret_file = "tsig.key"
        "#,
        dir.path(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let guest = "10.20.0.12".parse().unwrap();
    assert_eq!(
        cfg.dns_target(Some(guest)),
        Some(crate::provider::publish::DnsTarget::Address(guest))
    );
    assert_eq!(cfg.dns_target(None), None);
}
