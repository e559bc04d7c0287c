//! Atomic file replacement and idempotent removal for the file-based
//! publishers (Traefik's file provider, Prometheus `file_sd`, the Git working
//! copy). A watcher never sees a half-written file: the bytes go to a hidden
//! temporary file ending in `.tmp` in the same directory (a suffix neither
//! Traefik nor a `*.json` file_sd pattern loads), which is synced and then
//! renamed over the target.

use super::PublishError;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `dir/name` atomically. Does nothing if the file already
/// holds exactly these bytes, so a repeated publish does not make a watcher reload.
pub(crate) async fn write_atomic(
    dir: PathBuf,
    name: String,
    bytes: Vec<u8>,
) -> Result<(), PublishError> {
    tokio::task::spawn_blocking(move || write_atomic_blocking(&dir, &name, &bytes))
        .await
        .map_err(|e| PublishError::Config(format!("the file writer panicked: {e}")))?
}

/// Removes `dir/name`; `Ok` if it is not there.
pub(crate) async fn remove(dir: PathBuf, name: String) -> Result<(), PublishError> {
    tokio::task::spawn_blocking(move || remove_blocking(&dir, &name))
        .await
        .map_err(|e| PublishError::Config(format!("the file writer panicked: {e}")))?
}

fn check_name(name: &str) -> Result<(), PublishError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(PublishError::Refused(format!(
            "{}: not a plain file name",
            crate::domain::names::shown(name)
        )))
    }
}

pub(crate) fn write_atomic_blocking(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), PublishError> {
    check_name(name)?;
    let target = dir.join(name);
    if fs::read(&target).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| PublishError::file("create", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| PublishError::file("write", &tmp, e))?;
        fs::rename(&tmp, &target).map_err(|e| PublishError::file("replace", &target, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir);
    Ok(())
}

pub(crate) fn remove_blocking(dir: &Path, name: &str) -> Result<(), PublishError> {
    check_name(name)?;
    let target = dir.join(name);
    match fs::remove_file(&target) {
        Ok(()) => {
            sync_dir(dir);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PublishError::file("remove", &target, e)),
    }
}

/// Makes the rename or removal durable; best effort, as some filesystems
/// refuse to sync a directory and the change itself has already happened.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic_blocking(dir.path(), "a.json", b"one").unwrap();
        write_atomic_blocking(dir.path(), "a.json", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go makes the rename fail.
        fs::create_dir(dir.path().join("a.json")).unwrap();
        fs::write(dir.path().join("a.json/x"), b"x").unwrap();
        let err = write_atomic_blocking(dir.path(), "a.json", b"one").unwrap_err();
        assert!(err.to_string().contains("cannot replace"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn removing_an_absent_file_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        remove_blocking(dir.path(), "gone.json").unwrap();
    }

    #[test]
    fn a_name_with_a_path_in_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic_blocking(dir.path(), "../x.json", b"x").is_err());
        assert!(remove_blocking(dir.path(), "a/b.json").is_err());
        assert!(remove_blocking(dir.path(), ".hidden").is_err());
    }
}
