//! Slipway's own provisioning key: an ed25519 key pair made at first start in
//! Slipway's data directory (beside its database). Its public half goes into
//! every environment Slipway creates, so post-provisioning can log in; its
//! private half is a 0600 file that is never logged. `slipway keys rotate`
//! makes a new pair (environments created before keep trusting the old one
//! until their keys are pushed again).

use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The private key's file name in the data directory; `.pub` beside it.
pub const KEY_FILE: &str = "slipway_ed25519";

/// Why the provisioning key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {0} {1}: {2}")]
    Io(&'static str, PathBuf, std::io::Error),
    #[error("{0} is not an OpenSSH private key ({1}); move it away and start Slipway again to make a new one")]
    Unreadable(PathBuf, String),
    #[error("{0} can be read by other users (mode {1:o}); run `chmod 600 {0}`")]
    Exposed(PathBuf, u32),
}

/// The key pair: where the private key is, and the public line.
#[derive(Debug, Clone)]
pub struct ProvisioningKey {
    pub private_file: PathBuf,
    /// `ssh-ed25519 AAAA… slipway@HOST`
    pub public_line: String,
    /// `SHA256:…`
    pub fingerprint: String,
}

impl ProvisioningKey {
    /// Loads the pair from `dir`, or makes it if there is none.
    pub fn load_or_create(dir: &Path) -> Result<ProvisioningKey, IdentityError> {
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            return Self::create(dir);
        }
        let mode = std::fs::metadata(&path)
            .map_err(|e| IdentityError::Io("read", path.clone(), e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::Exposed(path, mode & 0o777));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| IdentityError::Io("read", path.clone(), e))?;
        let key = PrivateKey::from_openssh(text)
            .map_err(|e| IdentityError::Unreadable(path.clone(), e.to_string()))?;
        Self::describe(path, &key)
    }

    /// Makes a new pair in `dir`, replacing one that is there.
    pub fn create(dir: &Path) -> Result<ProvisioningKey, IdentityError> {
        std::fs::create_dir_all(dir).map_err(|e| IdentityError::Io("create", dir.into(), e))?;
        let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
            .map_err(|e| IdentityError::Unreadable(dir.join(KEY_FILE), e.to_string()))?;
        key.set_comment(format!("slipway@{}", crate::store::hostname()));
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| IdentityError::Unreadable(dir.join(KEY_FILE), e.to_string()))?;
        let path = dir.join(KEY_FILE);
        let fresh = dir.join(format!(".{KEY_FILE}.new"));
        let _ = std::fs::remove_file(&fresh);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&fresh)
            .map_err(|e| IdentityError::Io("create", fresh.clone(), e))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| IdentityError::Io("write", fresh.clone(), e))?;
        std::fs::rename(&fresh, &path)
            .map_err(|e| IdentityError::Io("replace", path.clone(), e))?;
        let me = Self::describe(path, &key)?;
        let public = dir.join(format!("{KEY_FILE}.pub"));
        std::fs::write(&public, format!("{}\n", me.public_line))
            .map_err(|e| IdentityError::Io("write", public, e))?;
        tracing::info!(fingerprint = %me.fingerprint, file = %me.private_file.display(), "made Slipway's provisioning key");
        Ok(me)
    }

    fn describe(path: PathBuf, key: &PrivateKey) -> Result<ProvisioningKey, IdentityError> {
        let public = key.public_key();
        Ok(ProvisioningKey {
            public_line: public
                .to_openssh()
                .map_err(|e| IdentityError::Unreadable(path.clone(), e.to_string()))?,
            fingerprint: public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
            private_file: path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let made = ProvisioningKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(&made.private_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(made.public_line.starts_with("ssh-ed25519 "));
        let again = ProvisioningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(
            again.fingerprint, made.fingerprint,
            "loaded, not made again"
        );
        let public = std::fs::read_to_string(dir.path().join("slipway_ed25519.pub")).unwrap();
        assert_eq!(public.trim(), made.public_line);
        // The public line is one a person could add: it parses as a key.
        let parsed = crate::domain::ssh_key::SshKey::parse(&made.public_line).unwrap();
        assert_eq!(parsed.fingerprint, made.fingerprint);
    }

    #[test]
    fn rotating_makes_a_new_key_and_a_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProvisioningKey::load_or_create(dir.path()).unwrap();
        let second = ProvisioningKey::create(dir.path()).unwrap();
        assert_ne!(first.fingerprint, second.fingerprint);
        std::fs::set_permissions(&second.private_file, std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let e = ProvisioningKey::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
