//! A Docker image reference, parsed in Docker's own reference grammar, so
//! that what is accepted is exactly what `docker pull` accepts.

use super::Invalid;
use std::fmt;

/// A Docker image reference: `[registry[:port]/]path[:tag][@sha256:digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef(String);

impl ImageRef {
    /// Accepts what `docker pull` accepts, in Docker's reference grammar:
    /// lower-case path components separated by `/`, an optional tag of
    /// `[A-Za-z0-9_.-]` (at most 128), an optional sha256 digest.
    pub fn parse(raw: &str) -> Result<ImageRef, Invalid> {
        let bad = |why: &str| {
            Invalid(format!(
                "image: {} is not an image reference ({why}); write e.g. nginx:1.27 or registry.example:5000/team/app:v2",
                crate::domain::names::shown(raw)
            ))
        };
        if raw.is_empty() || raw.len() > 255 {
            return Err(bad("it must be 1-255 characters"));
        }
        let (name_tag, digest) = match raw.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (raw, None),
        };
        if let Some(d) = digest {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("a digest starts with sha256:"))?;
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("a sha256 digest has 64 hex digits"));
            }
        }
        // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(bad("a tag is letters, digits, '_', '.' or '-'"));
            }
        }
        let mut parts = name.split('/').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            // The first of several components may be a registry host[:port].
            let registry = first
                && parts.peek().is_some()
                && (part.contains('.') || part.contains(':') || part == "localhost");
            first = false;
            let ok = if registry {
                let (host, port) = part.split_once(':').unwrap_or((part, "0"));
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                    && port.parse::<u16>().is_ok()
            } else {
                component(part)
            };
            if !ok {
                return Err(bad(
                    "path components are lower-case letters and digits, separated by '.', '_', '__' or '-'",
                ));
            }
        }
        Ok(ImageRef(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reference with `:latest` made explicit, as Docker stores it.
    pub fn normalized(&self) -> String {
        let last_slash = self.0.rfind('/').map(|i| i + 1).unwrap_or(0);
        if self.0.contains('@') || self.0[last_slash..].contains(':') {
            self.0.clone()
        } else {
            format!("{}:latest", self.0)
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn component(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if part.is_empty() || !part.starts_with(alnum) || !part.ends_with(alnum) {
        return false;
    }
    let mut run = 0;
    for c in part.chars() {
        if alnum(c) {
            run = 0;
        } else if matches!(c, '.' | '_' | '-') {
            run += 1;
            if run > 2 {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_image_references_parse() {
        for ok in [
            "nginx",
            "nginx:1.27",
            "library/nginx:latest",
            "ghcr.io/acme/shop:v2.1",
            "registry.example:5000/team/app",
            "localhost/slipway-test:v1",
            "busybox@sha256:1111111111111111111111111111111111111111111111111111111111111111",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_image_references_are_refused() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx::1",
            "ngi nx",
            "nginx;reboot",
            "-nginx",
            "a//b",
            "nginx@md5:00",
            "$(reboot)",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untagged_image_is_latest() {
        assert_eq!(
            ImageRef::parse("registry:5000/app").unwrap().normalized(),
            "registry:5000/app:latest"
        );
        assert_eq!(ImageRef::parse("app:v1").unwrap().normalized(), "app:v1");
    }
}
