//! Domain names under which an environment is published (`shop.test.example`):
//! RFC 1123 labels, lower-case ASCII, at most 253 characters, strictly under one
//! of the configured zones. Once a value is a [`Domain`] it is safe to put into a
//! Traefik rule, a Caddy matcher, a file name, a DNS update or a commit message;
//! nothing downstream re-checks it. Pure: no I/O.

use super::names::{shown, NameError};
use std::fmt;

/// A fully qualified domain name (written without the final dot) that lies
/// under one of the zones Slipway may publish in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain {
    name: String,
    /// Byte offset in `name` where the zone starts.
    zone_at: usize,
}

impl Domain {
    /// The longest name DNS allows, written without the final dot.
    pub const MAX_LEN: usize = 253;
    /// The longest label DNS allows.
    pub const MAX_LABEL: usize = 63;

    /// Parses a domain a user typed and checks that it lies under one of
    /// `zones` (which the configuration has checked with [`Domain::check_zone`]).
    /// The most specific matching zone wins.
    pub fn parse(raw: &str, zones: &[String]) -> Result<Domain, NameError> {
        check_syntax(raw, "domain")?;
        let zone = zones
            .iter()
            .map(|z| z.trim_end_matches('.'))
            .filter(|z| {
                raw.len() > z.len() + 1
                    && raw.ends_with(z)
                    && raw.as_bytes()[raw.len() - z.len() - 1] == b'.'
            })
            .max_by_key(|z| z.len());
        match zone {
            Some(z) => Ok(Domain {
                name: raw.to_string(),
                zone_at: raw.len() - z.len(),
            }),
            None if zones.iter().any(|z| z.trim_end_matches('.') == raw) => {
                Err(NameError(format!(
                    "domain: {} is the zone itself; choose a name under it, such as shop.{raw}",
                    shown(raw)
                )))
            }
            None if zones.is_empty() => Err(NameError(
                "domain: no zones are configured for publishing; ask an admin to set publish.zones"
                    .to_string(),
            )),
            None => Err(NameError(format!(
                "domain: {} is not under a zone Slipway publishes in; use a name ending in {}",
                shown(raw),
                zone_list(zones)
            ))),
        }
    }

    /// Checks a zone name from the configuration (same syntax as a domain; a
    /// final dot is tolerated and dropped) and returns it in canonical form.
    pub fn check_zone(raw: &str) -> Result<String, NameError> {
        let trimmed = raw.strip_suffix('.').unwrap_or(raw);
        check_syntax(trimmed, "zone")?;
        Ok(trimmed.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The configured zone this domain lies under (`test.example`).
    pub fn zone(&self) -> &str {
        &self.name[self.zone_at..]
    }

    /// The part left of the zone (`shop` in `shop.test.example`).
    pub fn host(&self) -> &str {
        &self.name[..self.zone_at - 1]
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn zone_list(zones: &[String]) -> String {
    let list: Vec<String> = zones
        .iter()
        .map(|z| format!(".{}", z.trim_end_matches('.')))
        .collect();
    match list.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", list.join(", ")),
    }
}

/// Checks everything but the zone, naming the worst problem first: a character
/// that could change the meaning of a rule or a file matters more than a
/// length, which matters more than a capital letter.
fn check_syntax(raw: &str, what: &str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError(format!("{what}: must not be empty")));
    }
    let value = shown(raw);
    if let Some(c) = raw.chars().find(|c| !c.is_ascii()) {
        return Err(NameError(format!(
            "{what}: {value} contains {}; internationalised names must be written in their ASCII (punycode, xn--…) form",
            describe(c)
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if let Some(c) = raw.chars().find(|c| !allowed(*c)) {
        return Err(NameError(format!(
            "{what}: {value} contains {}, but only lower-case letters, digits, '-' and '.' are allowed",
            describe(c)
        )));
    }
    if raw.len() > Domain::MAX_LEN {
        return Err(NameError(format!(
            "{what}: {value} is {} characters long; the limit is {}",
            raw.len(),
            Domain::MAX_LEN
        )));
    }
    if raw.ends_with('.') {
        return Err(NameError(format!(
            "{what}: {value} ends with a dot; write it without the final dot ({})",
            raw.trim_end_matches('.')
        )));
    }
    for label in raw.split('.') {
        check_label(label, raw, what)?;
    }
    if raw.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(NameError(format!(
            "{what}: {value} contains capital letters; use lower case ({})",
            raw.to_ascii_lowercase()
        )));
    }
    Ok(())
}

fn check_label(label: &str, raw: &str, what: &str) -> Result<(), NameError> {
    let value = shown(raw);
    if label.is_empty() {
        return Err(NameError(format!(
            "{what}: {value} has an empty label (a leading dot or two dots in a row)"
        )));
    }
    if label.len() > Domain::MAX_LABEL {
        return Err(NameError(format!(
            "{what}: the label {} of {value} is {} characters long; a label may have at most {}",
            shown(label),
            label.len(),
            Domain::MAX_LABEL
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError(format!(
            "{what}: the label {} of {value} must start and end with a letter or digit",
            shown(label)
        )));
    }
    Ok(())
}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '`' => "a backtick".to_string(),
        '\'' => "a single quote".to_string(),
        '"' => "a double quote".to_string(),
        '\n' | '\r' => "a line break".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c if !c.is_ascii() => format!("the non-ASCII character '{c}' (U+{:04X})", c as u32),
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Vec<String> {
        vec!["test.example".to_string(), "apps.corp.example".to_string()]
    }

    fn refused(raw: &str) -> String {
        Domain::parse(raw, &zones()).unwrap_err().0
    }

    #[test]
    fn a_name_under_a_zone_is_accepted_and_split_into_host_and_zone() {
        let d = Domain::parse("shop.test.example", &zones()).unwrap();
        assert_eq!(d.as_str(), "shop.test.example");
        assert_eq!(d.host(), "shop");
        assert_eq!(d.zone(), "test.example");
    }

    #[test]
    fn a_deeper_name_keeps_every_label_left_of_the_zone_as_host() {
        let d = Domain::parse("api.shop-2.test.example", &zones()).unwrap();
        assert_eq!(d.host(), "api.shop-2");
        assert_eq!(d.zone(), "test.example");
    }

    #[test]
    fn the_most_specific_zone_wins() {
        let zones = vec!["example".to_string(), "test.example".to_string()];
        let d = Domain::parse("shop.test.example", &zones).unwrap();
        assert_eq!(d.zone(), "test.example");
    }

    #[test]
    fn a_zone_written_with_a_final_dot_still_matches() {
        let d = Domain::parse("shop.test.example", &["test.example.".to_string()]).unwrap();
        assert_eq!(d.zone(), "test.example");
    }

    #[test]
    fn a_domain_with_a_backtick_is_refused_naming_the_backtick() {
        let err = refused("sh`op.test.example");
        assert!(err.contains("a backtick"), "{err}");
        assert!(err.contains("'sh`op.test.example'"), "{err}");
    }

    #[test]
    fn a_backtick_rule_breakout_is_refused() {
        let err = refused("x`) || Host(`evil.test.example");
        assert!(err.contains("a backtick"), "{err}");
    }

    #[test]
    fn a_domain_with_quotes_is_refused() {
        assert!(refused("sh\"op.test.example").contains("a double quote"));
        assert!(refused("sh'op.test.example").contains("a single quote"));
    }

    #[test]
    fn a_domain_with_a_space_is_refused() {
        assert!(refused("my shop.test.example").contains("a space"));
    }

    #[test]
    fn template_and_shell_syntax_is_refused() {
        assert!(refused("{{env}}.test.example").contains("'{'"));
        assert!(refused("$(reboot).test.example").contains("'$'"));
    }

    #[test]
    fn a_newline_is_refused_and_escaped_when_shown() {
        let err = refused("shop\n.test.example");
        assert!(err.contains("a line break"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("\\n"), "{err}");
    }

    #[test]
    fn a_slash_is_refused_so_no_path_can_be_built_from_a_domain() {
        assert!(refused("../etc.test.example").contains("'/'"));
    }

    #[test]
    fn a_label_of_sixty_four_characters_is_refused() {
        let label = "a".repeat(64);
        let err = refused(&format!("{label}.test.example"));
        assert!(err.contains("64 characters long"), "{err}");
        assert!(err.contains("at most 63"), "{err}");
        let ok = format!("{}.test.example", "a".repeat(63));
        assert!(Domain::parse(&ok, &zones()).is_ok());
    }

    #[test]
    fn a_name_over_253_characters_is_refused() {
        let host = vec!["a".repeat(60); 4].join(".");
        let raw = format!("{host}.test.example");
        assert!(raw.len() >= 254);
        let err = refused(&raw);
        assert!(err.contains("the limit is 253"), "{err}");
        assert!(err.contains('…'), "the value is shortened: {err}");
    }

    #[test]
    fn an_internationalised_name_is_refused_with_a_punycode_hint() {
        let err = refused("bücher.test.example");
        assert!(err.contains("non-ASCII character 'ü'"), "{err}");
        assert!(err.contains("punycode"), "{err}");
        assert!(Domain::parse("xn--bcher-kva.test.example", &zones()).is_ok());
    }

    #[test]
    fn a_look_alike_unicode_dot_is_refused() {
        assert!(refused("shop\u{ff0e}test.example").contains("U+FF0E"));
    }

    #[test]
    fn a_trailing_dot_is_refused_with_the_name_to_write_instead() {
        let err = refused("shop.test.example.");
        assert!(
            err.contains("write it without the final dot (shop.test.example)"),
            "{err}"
        );
    }

    #[test]
    fn empty_labels_are_refused() {
        assert!(refused(".shop.test.example").contains("empty label"));
        assert!(refused("shop..test.example").contains("empty label"));
    }

    #[test]
    fn a_label_with_an_edge_hyphen_is_refused() {
        assert!(refused("-shop.test.example").contains("start and end"));
        assert!(refused("shop-.test.example").contains("start and end"));
    }

    #[test]
    fn capitals_are_refused_with_a_lower_case_hint() {
        let err = refused("Shop.test.example");
        assert!(err.contains("use lower case (shop.test.example)"), "{err}");
    }

    #[test]
    fn a_name_outside_the_zones_is_refused_listing_the_zones() {
        let err = refused("shop.other.example");
        assert!(err.contains("not under a zone"), "{err}");
        assert!(err.contains(".test.example, .apps.corp.example"), "{err}");
    }

    #[test]
    fn a_name_that_only_ends_with_the_zone_text_is_outside_it() {
        assert!(refused("shoptest.example").contains("not under a zone"));
    }

    #[test]
    fn the_bare_zone_itself_is_refused() {
        let err = refused("test.example");
        assert!(err.contains("is the zone itself"), "{err}");
        assert!(err.contains("shop.test.example"), "{err}");
    }

    #[test]
    fn an_empty_domain_is_refused() {
        assert!(refused("").contains("must not be empty"));
    }

    #[test]
    fn with_no_zones_configured_the_refusal_says_so() {
        let err = Domain::parse("shop.test.example", &[]).unwrap_err().0;
        assert!(err.contains("no zones are configured"), "{err}");
    }

    #[test]
    fn a_zone_from_the_configuration_is_checked_and_its_final_dot_dropped() {
        assert_eq!(Domain::check_zone("test.example.").unwrap(), "test.example");
        assert!(Domain::check_zone("Test.example").is_err());
        assert!(Domain::check_zone("bad zone").is_err());
    }
}
