//! Where values named in the configuration are read from: paths relative to
//! the configuration file, and secrets from environment variables or files
//! (shared by every section that holds one).

use std::path::{Path, PathBuf};

/// A path from the configuration, relative to the configuration file's directory.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads the secret `{section}.{key}` from the environment variable named by
/// `{key}_env` or the file named by `{key}_file` (trimmed). Ok(None): neither is
/// set. The error names the key and says what to do; it never holds the value.
pub fn secret_source(
    section: &str,
    key: &str,
    env: Option<&str>,
    file: Option<&str>,
    base: &Path,
) -> Result<Option<String>, String> {
    match (env, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!("{section}: give {key}_env or {key}_file, not both")),
        (Some(var), None) => std::env::var(var).map(Some).map_err(|_| {
            format!("{section}.{key}_env: the environment variable {var} is not set; export it with the {key}")
        }),
        (None, Some(f)) => std::fs::read_to_string(resolve(base, f))
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("{section}.{key}_file: cannot read {f}: {e}")),
    }
}
