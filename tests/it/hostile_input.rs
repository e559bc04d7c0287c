//! Hostile input, generated: at least 10,000 lines full of backticks, quotes,
//! `{{`, `$(`, newlines, 300-character labels, IDN and control characters go to
//! the command parser and every validator. Nothing panics, and nothing unsafe
//! is accepted: an accepted name or domain has exactly the safe form.

use proptest::prelude::*;
use slipway::catalog::Catalog;
use slipway::domain::domain_name::Domain;
use slipway::domain::names::EnvName;
use std::path::Path;

static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();

fn catalog() -> Catalog {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    Catalog::load(
        &repo.join("commands"),
        &repo.join("profiles"),
        &["web".into()],
    )
    .expect("the shipped catalog loads")
}

/// Pieces attackers and typos are made of.
fn hostile_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("`".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{% raw %}".to_string()),
        Just("$(".to_string()),
        Just(")".to_string()),
        Just(";".to_string()),
        Just("|".to_string()),
        Just("&&".to_string()),
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("\t".to_string()),
        Just("\0".to_string()),
        Just("\u{1b}[31m".to_string()),
        Just("\u{202e}".to_string()),
        Just("../".to_string()),
        Just("ñ".to_string()),
        Just("xn--".to_string()),
        Just("пример".to_string()),
        Just("例え".to_string()),
        Just(" ".to_string()),
        Just(":".to_string()),
        Just("\\".to_string()),
        Just("-".to_string()),
        Just(".".to_string()),
        "[a-z0-9]{1,8}",
        "[a-z]{300}",
        "\\PC{1,6}",
    ]
}

fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_piece(), 1..8).prop_map(|v| v.concat())
}

fn safe_label(s: &str) -> bool {
    let re = regex::Regex::new(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$").unwrap();
    re.is_match(s)
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// 4,000 names, 2,000 × 4 domains and 1,500 × 9 command lines: over 25,000 hostile inputs.
proptest! {
    #![proptest_config(cases(4000))]

    #[test]
    fn env_names_are_safe_when_accepted(raw in hostile()) {
        if let Ok(name) = EnvName::parse(&raw) {
            prop_assert!(safe_label(name.as_str()), "accepted {:?}", raw);
        }
    }

}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn domains_are_safe_when_accepted(a in hostile(), b in hostile()) {
        let zones = vec!["test.example".to_string()];
        for raw in [format!("{a}.test.example"), format!("{a}.{b}.test.example"), a.clone(), format!("{a}{b}")] {
            if let Ok(d) = Domain::parse(&raw, &zones) {
                let s = d.to_string();
                prop_assert!(s.ends_with(".test.example"), "accepted {:?}", raw);
                prop_assert!(s.len() <= 253);
                for label in s.split('.') {
                    prop_assert!(safe_label(label), "accepted {:?} with label {:?}", raw, label);
                }
            }
        }
    }

}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn the_parser_never_panics_and_keeps_values_clean(value in hostile(), other in hostile()) {
        let catalog = CATALOG.get_or_init(catalog);
        let lines = [
            format!("/env create profile:web-app name:{value}"),
            format!("/env create profile:web-app \"name:{value}\" ttl:{other}"),
            format!("/env create {value} {other}"),
            format!("/deny 1 {value}"),
            format!("!env {value}"),
            format!("/{value}"),
            format!("/approve {value}"),
            format!("/env extend name:shop by:{value}"),
            format!("/env create profile:web-app name:shop domain:{value}"),
        ];
        for line in lines {
            if let Ok((_, inv)) = catalog.parse(&line) {
                for v in inv.args.values() {
                    if let slipway::catalog::command::ArgValue::Str(s) = v {
                        prop_assert!(!s.chars().any(char::is_control), "a control character got through in {:?}", line);
                    }
                }
                if let Some(name) = inv.str("name") {
                    // The parser checks form only; the handler's EnvName::parse is the gate.
                    if let Ok(n) = EnvName::parse(name) {
                        prop_assert!(safe_label(n.as_str()));
                    }
                }
            }
        }
    }
}
