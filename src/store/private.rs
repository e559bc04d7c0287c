//! The database holds app secrets: it is created readable by Slipway's user
//! only (0600; SQLite gives its `-wal` and `-shm` files the same mode), and an
//! existing one that other users may read is refused with the fix.

use super::StoreError;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `path` with mode 0600 if it does not exist; refuses it, and its
/// `-wal`/`-shm` files, if group or others may read or write them.
pub fn private_file(path: &Path) -> Result<(), StoreError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        // Let SQLite say why it cannot open it (a missing directory, …).
        Err(_) => return Ok(()),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Exposed { path: file, mode });
        }
    }
    Ok(())
}

/// Creates the directory `dir` with mode 0700 if it does not exist; refuses
/// one that group or others may enter or read (it holds a secret store).
pub fn private_dir(dir: &Path) -> Result<(), std::io::Error> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        return std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} can be read by other users (mode {mode:04o}) and holds secrets; run: chmod 700 {}",
                dir.display(),
                dir.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_file_is_private_and_an_exposed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        private_file(&db).unwrap();
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = private_file(&db).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_secret_directory_is_made_private_and_an_open_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("matrix");
        private_dir(&store).unwrap();
        let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = private_dir(&store).unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
    }
}
