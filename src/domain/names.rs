//! Names that users type and Proxmox stores: environment hostnames, team names
//! and job / approval ids. Once a value has one of these types it is valid; nothing
//! downstream re-checks it.

use std::fmt;

/// Why a typed name was refused, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// An environment name, which is also the container's hostname: one RFC 1123
/// label, lower case, 1 to 63 characters, letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

impl EnvName {
    pub const MAX_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check_label(raw, "name").map(|()| EnvName(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks one DNS label (RFC 1123, lower case only) and explains the first problem.
pub fn check_label(raw: &str, what: &str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError(format!("{what}: must not be empty")));
    }
    let shown = shown(raw);
    if raw.len() > EnvName::MAX_LEN {
        return Err(NameError(format!(
            "{what}: {shown} is {} characters long; the limit is {} (one DNS label)",
            raw.chars().count(),
            EnvName::MAX_LEN
        )));
    }
    // Name the worst character first: a backtick matters more than a capital.
    let bad = |c: &char| !(c.is_ascii_alphanumeric() || *c == '-');
    let upper = |c: &char| c.is_ascii_uppercase();
    if let Some(c) = raw.chars().find(bad).or_else(|| raw.chars().find(upper)) {
        let hint = if c.is_ascii_uppercase() {
            format!("; use lower case ({})", raw.to_ascii_lowercase())
        } else {
            String::new()
        };
        return Err(NameError(format!(
            "{what}: {shown} contains {}, but only lower-case letters, digits and '-' are allowed{hint}",
            describe_char(c)
        )));
    }
    if raw.starts_with('-') || raw.ends_with('-') {
        return Err(NameError(format!(
            "{what}: {shown} must start and end with a letter or digit"
        )));
    }
    Ok(())
}

/// A value as it may be quoted back to a user: control characters escaped, long
/// values shortened, so an error message can never carry a payload.
pub fn shown(raw: &str) -> String {
    let mut out: String = raw.chars().take(40).flat_map(char::escape_debug).collect();
    if raw.chars().count() > 40 {
        out.push('…');
    }
    format!("'{out}'")
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '`' => "a backtick".to_string(),
        '\n' | '\r' => "a line break".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

/// A team's name as configured.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct TeamName(pub String);

impl fmt::Display for TeamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_lower_case_name_is_accepted() {
        assert_eq!(EnvName::parse("shop-2").unwrap().as_str(), "shop-2");
    }

    #[test]
    fn hostname_with_a_backtick_is_rejected() {
        let err = EnvName::parse("sh`op").unwrap_err();
        assert!(err.0.contains("backtick"), "{err}");
    }

    #[test]
    fn hostname_with_a_space_is_rejected() {
        assert!(EnvName::parse("my shop").unwrap_err().0.contains("a space"));
    }

    #[test]
    fn upper_case_is_rejected_with_a_lower_case_hint() {
        let err = EnvName::parse("Shop").unwrap_err();
        assert!(err.0.contains("use lower case (shop)"), "{err}");
    }

    #[test]
    fn sixty_four_characters_are_rejected() {
        let long = "a".repeat(64);
        assert!(EnvName::parse(&long)
            .unwrap_err()
            .0
            .contains("64 characters"));
        assert!(EnvName::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn leading_and_trailing_hyphens_are_rejected() {
        assert!(EnvName::parse("-shop").is_err());
        assert!(EnvName::parse("shop-").is_err());
    }

    #[test]
    fn control_characters_are_escaped_when_shown() {
        let err = EnvName::parse("a\u{1b}[31m").unwrap_err();
        assert!(!err.0.contains('\u{1b}'), "{err}");
    }
}
