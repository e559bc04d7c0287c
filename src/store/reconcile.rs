//! What the reconcile loop remembers: drift on environments and apps, LXC
//! containers with Slipway's tag that no live environment accounts for
//! (orphans), and Docker containers with Slipway's labels that no live app
//! accounts for (app orphans), each with when it was first seen so it is
//! removed only after a grace period.

use super::{Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// An app orphan as remembered: when it was first seen, and whether it was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppOrphan {
    pub first_seen: i64,
    pub reported: bool,
}

/// An orphan as remembered.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub vmid: u32,
    pub node: String,
    pub first_seen: i64,
    pub reported: bool,
}

impl Store {
    /// Sets or clears an environment's drift; true if it changed (report then).
    pub async fn set_drift(&self, env_id: i64, drift: Option<String>) -> Result<bool, StoreError> {
        self.call(move |c| {
            let n = c.execute(
                "UPDATE environments SET drift = ?2 WHERE id = ?1 AND drift IS NOT ?2",
                params![env_id, drift],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn drift(&self, env_id: i64) -> Result<Option<String>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT drift FROM environments WHERE id = ?1",
                [env_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Remembers an orphan (first sighting only) and returns what is known of it.
    pub async fn see_orphan(
        &self,
        vmid: u32,
        node: String,
        tags: String,
        now: i64,
    ) -> Result<Orphan, StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO orphans (vmid, node, tags, first_seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(vmid) DO UPDATE SET node = ?2, tags = ?3,
                    first_seen = CASE WHEN removed_at IS NOT NULL THEN ?4 ELSE first_seen END,
                    reported = CASE WHEN removed_at IS NOT NULL THEN 0 ELSE reported END,
                    removed_at = NULL",
                params![vmid, node, tags, now],
            )?;
            Ok(c.query_row(
                "SELECT vmid, node, first_seen, reported FROM orphans WHERE vmid = ?1",
                [vmid],
                |r| {
                    Ok(Orphan {
                        vmid: r.get(0)?,
                        node: r.get(1)?,
                        first_seen: r.get(2)?,
                        reported: r.get(3)?,
                    })
                },
            )?)
        })
        .await
    }

    pub async fn orphan_reported(&self, vmid: u32) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute("UPDATE orphans SET reported = 1 WHERE vmid = ?1", [vmid])?;
            Ok(())
        })
        .await
    }

    pub async fn orphan_removed(&self, vmid: u32, now: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE orphans SET removed_at = ?2 WHERE vmid = ?1",
                params![vmid, now],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets orphans that are no longer there (removed by someone, or adopted).
    pub async fn forget_orphans_except(&self, present: Vec<u32>) -> Result<(), StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let known: Vec<u32> = tx
                .prepare("SELECT vmid FROM orphans WHERE removed_at IS NULL")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for vmid in known.into_iter().filter(|v| !present.contains(v)) {
                tx.execute("DELETE FROM orphans WHERE vmid = ?1", [vmid])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The environment (any state) that was created with this tag's id, if it is live.
    pub async fn live_env_id(&self, env_id: i64) -> Result<Option<i64>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT id FROM environments WHERE id = ?1 AND state NOT IN ('destroyed', 'failed', 'denied')",
                [env_id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// Remembers an app orphan (first sighting only) and returns what is known of it.
    pub async fn see_app_orphan(
        &self,
        host: String,
        container: String,
        name: String,
        app_id: i64,
        now: i64,
    ) -> Result<AppOrphan, StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO app_orphans (host, container, name, app_id, first_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(host, container) DO UPDATE SET name = ?3, app_id = ?4,
                    first_seen = CASE WHEN removed_at IS NOT NULL THEN ?5 ELSE first_seen END,
                    reported = CASE WHEN removed_at IS NOT NULL THEN 0 ELSE reported END,
                    removed_at = NULL",
                params![host, container, name, app_id, now],
            )?;
            Ok(c.query_row(
                "SELECT first_seen, reported FROM app_orphans WHERE host = ?1 AND container = ?2",
                params![host, container],
                |r| {
                    Ok(AppOrphan {
                        first_seen: r.get(0)?,
                        reported: r.get(1)?,
                    })
                },
            )?)
        })
        .await
    }

    pub async fn app_orphan_reported(
        &self,
        host: String,
        container: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE app_orphans SET reported = 1 WHERE host = ?1 AND container = ?2",
                params![host, container],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn app_orphan_removed(
        &self,
        host: String,
        container: String,
        now: i64,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE app_orphans SET removed_at = ?3 WHERE host = ?1 AND container = ?2",
                params![host, container, now],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the app orphans of `host` that are no longer there (removed by
    /// someone, or accounted for again).
    pub async fn forget_app_orphans_except(
        &self,
        host: String,
        present: Vec<String>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let known: Vec<String> = tx
                .prepare(
                    "SELECT container FROM app_orphans WHERE host = ?1 AND removed_at IS NULL",
                )?
                .query_map([&host], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for container in known.into_iter().filter(|k| !present.contains(k)) {
                tx.execute(
                    "DELETE FROM app_orphans WHERE host = ?1 AND container = ?2",
                    params![host, container],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
