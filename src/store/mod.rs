//! The only module with SQL. One rusqlite connection on a thread of its own
//! (`thread.rs`), sent closures by async callers; WAL, foreign keys and a busy timeout; migrations from
//! `migrations/*.sql` embedded in the binary. Every state change is a
//! conditional update (`... WHERE state = ?`), so a stale writer changes nothing.

pub mod apps;
pub mod chat_refs;
pub mod envs;
pub mod host_keys;
pub mod jobs;
pub mod lifetimes;
pub mod private;
pub mod reconcile;
pub mod runs;
pub mod ssh_keys;
mod thread;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Errors from the store, for the operator's log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("the database task stopped: {0}")]
    Join(String),
    #[error("another Slipway ({0}) is using this database; stop it first, or point this one at another database")]
    InUse(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error(
        "the database file {path} can be read by other users (mode {mode:04o}), and it holds app secrets; \
         run: chmod 600 {path}, then start Slipway again"
    )]
    Exposed { path: String, mode: u32 },
}

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_lifetimes.sql"),
    include_str!("../../migrations/0003_reconcile.sql"),
    include_str!("../../migrations/0004_domains.sql"),
    include_str!("../../migrations/0005_chat_refs.sql"),
    include_str!("../../migrations/0006_apps.sql"),
    include_str!("../../migrations/0007_app_reconcile.sql"),
    include_str!("../../migrations/0008_hot_indexes.sql"),
    include_str!("../../migrations/0009_step_ids.sql"),
    include_str!("../../migrations/0010_ssh_keys.sql"),
    include_str!("../../migrations/0011_host_keys.sql"),
];

fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
}

/// Applies pending migrations. rusqlite_migration reads the schema version before
/// its transaction starts, so two processes opening a fresh database at once can
/// both try the same migration; the loser finds the schema current on a retry.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    let mut attempt = 0;
    loop {
        match migrations().to_latest(conn) {
            Ok(()) => break,
            Err(_) if attempt < 3 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
            }
            Err(e) => return Err(e.into()),
        }
    }
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Deferred);
    Ok(())
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<thread::DbThread>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        private::private_file(path)?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Room for every hot statement of the worker, dispatcher and scheduler.
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        let db = thread::DbThread::start(conn)
            .map_err(|e| StoreError::Join(format!("could not start the database thread: {e}")))?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Runs `f` with the connection on the database thread.
    /// Whether the database answers (`/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(drop)?)
        })
        .await
    }

    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.call(f).await
    }

    /// Runs `f` on the database thread and blocks until it is done (start-up,
    /// shutdown and tests; never from async code).
    pub(crate) fn call_sync<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.call_sync(f)
    }

    /// Claims the database for this process. A holder whose heartbeat is older
    /// than `stale_after` seconds is taken to be dead (killed or crashed), and
    /// every lease it held is released so its jobs resume here at once.
    pub fn acquire_instance(&self, owner: &str, stale_after: i64) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.call_sync(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let held: Option<(String, i64)> = tx
                .query_row("SELECT owner, heartbeat FROM instance WHERE id = 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .ok();
            if let Some((other, beat)) = held {
                if other != owner && now() - beat < stale_after && process_alive(&other) {
                    return Err(StoreError::InUse(other));
                }
            }
            tx.execute(
                "INSERT INTO instance (id, owner, heartbeat) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET owner = ?1, heartbeat = ?2",
                rusqlite::params![&owner, now()],
            )?;
            tx.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_until = 0 WHERE state IN ('running', 'rolling_back')",
                [],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Keeps the instance claim fresh.
    pub async fn heartbeat(&self, owner: String) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE instance SET heartbeat = ?2 WHERE id = 1 AND owner = ?1",
                rusqlite::params![owner, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// Gives up the claim on a clean exit.
    pub fn release_instance(&self, owner: &str) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.call_sync(move |c| {
            c.execute("DELETE FROM instance WHERE id = 1 AND owner = ?1", [&owner])?;
            Ok(())
        })
    }

    /// Writes one audit record.
    pub async fn audit(
        &self,
        actor: String,
        action: String,
        target: String,
        outcome: String,
        detail: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            audit(c, &actor, &action, &target, &outcome, &detail)?;
            Ok(())
        })
        .await
    }

    /// `PRAGMA integrity_check` — "ok" when the file is sound.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        self.call(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
            .await
    }
}

/// The instance owner string is "host:pid:nonce"; on the same host a dead pid
/// means the holder is gone even if its heartbeat is fresh (it was killed).
fn process_alive(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return true;
    };
    if host != hostname() {
        return true;
    }
    match pid.parse::<u32>() {
        Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

/// This machine's name, for the instance owner string.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub(crate) fn audit(
    c: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![now(), actor, action, target, outcome, detail])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
    }

    #[test]
    fn a_live_second_instance_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let me = format!("{}:{}:a", hostname(), std::process::id());
        store.acquire_instance(&me, 60).unwrap();
        let other = format!("{}:{}:b", hostname(), std::process::id());
        assert!(matches!(
            store.acquire_instance(&other, 60),
            Err(StoreError::InUse(_))
        ));
    }

    #[test]
    fn a_dead_holder_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store
            .acquire_instance(&format!("{}:999999999:x", hostname()), 60)
            .unwrap();
        let me = format!("{}:{}:a", hostname(), std::process::id());
        store.acquire_instance(&me, 60).unwrap();
    }
}
