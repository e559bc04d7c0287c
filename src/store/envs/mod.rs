//! Environments, approvals and address allocations. This file has the stored
//! environment, its reads and its state changes; `create` decides and reserves
//! a create request, `approvals` approves and denies what waits for an admin,
//! and `addresses` hands out addresses from a team's pool.

mod addresses;
mod approvals;
mod create;

pub use approvals::{ApprovalRecord, Decided};
pub use create::{NewEnv, Submitted};

use super::{now, Store, StoreError};
use crate::domain::lifecycle::EnvState;
use crate::domain::quota::{Resources, Usage};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// An environment as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvRecord {
    pub id: i64,
    pub name: String,
    pub team: String,
    pub owner: String,
    pub owner_display: String,
    pub profile: String,
    pub node: String,
    pub vmid: Option<u32>,
    pub resources: Resources,
    pub address: Option<String>,
    pub state: EnvState,
    pub reason: Option<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub ttl_secs: Option<i64>,
    pub announce_to: Option<String>,
    /// The domain it is published under.
    pub domain: Option<String>,
    /// "lxc" for an environment, "app" for an app (see `domain::app`).
    pub kind: String,
}

impl EnvRecord {
    /// Whether this row is an app rather than an LXC environment.
    pub fn is_app(&self) -> bool {
        self.kind == crate::domain::app::APP_KIND
    }

    /// Where lifecycle events go; environments from before announcements existed
    /// fall back to the console.
    pub fn announce_to_or_default(&self) -> String {
        self.announce_to
            .clone()
            .unwrap_or_else(|| r#"{"platform":"console","channel":"console"}"#.into())
    }
}

const ENV_COLUMNS: &str = "id, name, team, owner, owner_display, profile, node, vmid, cores, memory_mb, swap_mb, disk_gb, address, state, reason, expires_at, created_at, ttl_secs, announce_to, domain, kind";

fn env_row(r: &Row<'_>) -> rusqlite::Result<EnvRecord> {
    let state: String = r.get(13)?;
    Ok(EnvRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        team: r.get(2)?,
        owner: r.get(3)?,
        owner_display: r.get(4)?,
        profile: r.get(5)?,
        node: r.get(6)?,
        vmid: r.get(7)?,
        resources: Resources {
            cores: r.get(8)?,
            memory_mb: r.get(9)?,
            swap_mb: r.get(10)?,
            disk_gb: r.get(11)?,
        },
        address: r.get(12)?,
        state: EnvState::parse(&state).unwrap_or(EnvState::Failed),
        reason: r.get(14)?,
        expires_at: r.get(15)?,
        created_at: r.get(16)?,
        ttl_secs: r.get(17)?,
        announce_to: r.get(18)?,
        domain: r.get(19)?,
        kind: r.get(20)?,
    })
}

fn holding_list() -> String {
    EnvState::HOLDING
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The team's usage now, inside the caller's transaction.
pub fn usage(c: &Connection, team: &str) -> Result<Usage, StoreError> {
    let sql = format!(
        "SELECT COALESCE(SUM(cores), 0), COALESCE(SUM(memory_mb), 0), COALESCE(SUM(disk_gb), 0), COUNT(*)
         FROM environments WHERE team = ?1 AND state IN ({})",
        holding_list()
    );
    Ok(c.prepare_cached(&sql)?.query_row([team], |r| {
        Ok(Usage {
            cores: r.get::<_, i64>(0)? as u64,
            memory_mb: r.get::<_, i64>(1)? as u64,
            disk_gb: r.get::<_, i64>(2)? as u64,
            environments: r.get::<_, i64>(3)? as u64,
        })
    })?)
}

impl Store {
    pub async fn env(&self, id: i64) -> Result<Option<EnvRecord>, StoreError> {
        self.call(move |c| read_env(c, id)).await
    }

    /// The live environment with this name, if any.
    pub async fn env_by_name(&self, name: String) -> Result<Option<EnvRecord>, StoreError> {
        self.call(move |c| live_by_name(c, &name)).await
    }

    /// How many live environments each node holds.
    pub async fn live_per_node(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT node, COUNT(*) FROM environments
                 WHERE state NOT IN ('destroyed', 'failed', 'denied') GROUP BY node",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Live environments, optionally of one team, newest last.
    pub async fn list_envs(&self, team: Option<String>) -> Result<Vec<EnvRecord>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ENV_COLUMNS} FROM environments
                 WHERE state NOT IN ('destroyed', 'failed', 'denied') AND (?1 IS NULL OR team = ?1) ORDER BY id"
            ))?;
            let rows = stmt.query_map([team], env_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn usage(&self, team: String) -> Result<Usage, StoreError> {
        self.call(move |c| usage(c, &team)).await
    }

    /// Moves an environment between states; false if it was not in `from`.
    pub async fn set_env_state(
        &self,
        id: i64,
        from: &'static [EnvState],
        to: EnvState,
        reason: Option<String>,
    ) -> Result<bool, StoreError> {
        self.call(move |c| set_env_state(c, id, from, to, reason.as_deref()))
            .await
    }

    /// A provisioned environment becomes ready; its lifetime starts `t`, and
    /// its expiry reminders (`reminders`: (offset, due) pairs) are scheduled
    /// in the same transaction.
    pub async fn mark_ready(
        &self,
        env_id: i64,
        t: i64,
        ttl_secs: Option<i64>,
        reminders: Vec<(i64, i64)>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.prepare_cached(
                "UPDATE environments SET state = 'ready', expires_at = ?2 + ?3, updated_at = ?2
                 WHERE id = ?1 AND state = 'provisioning'",
            )?
            .execute(params![env_id, t, ttl_secs])?;
            if ttl_secs.is_some() {
                crate::store::lifetimes::write_reminders(&tx, env_id, &reminders)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Forgets a VMID that turned out to be taken by someone else.
    pub async fn clear_vmid(&self, env_id: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE environments SET vmid = NULL, updated_at = ?2 WHERE id = ?1",
                params![env_id, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// The node the environment's guest is on now (after HA or a migration).
    pub async fn set_node(&self, env_id: i64, node: String) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE environments SET node = ?2, updated_at = ?3 WHERE id = ?1",
                params![env_id, node, now()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn set_address(
        &self,
        env_id: i64,
        address: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE environments SET address = ?2, updated_at = ?3 WHERE id = ?1",
                params![env_id, address, now()],
            )?;
            Ok(())
        })
        .await
    }
}

fn live_by_name(c: &Connection, name: &str) -> Result<Option<EnvRecord>, StoreError> {
    Ok(c
        .prepare_cached(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE name = ?1 AND state NOT IN ('destroyed', 'failed', 'denied')"
        ))?
        .query_row([name], env_row)
        .optional()?)
}

/// The environment with this id, live or not.
pub(crate) fn read_env(c: &Connection, id: i64) -> Result<Option<EnvRecord>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {ENV_COLUMNS} FROM environments WHERE id = ?1"
    ))?
    .query_row([id], env_row)
    .optional()?)
}

pub(crate) fn set_env_state(
    c: &Connection,
    id: i64,
    from: &[EnvState],
    to: EnvState,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let list = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let n = c
        .prepare_cached(&format!(
            "UPDATE environments SET state = ?2, reason = COALESCE(?3, reason), updated_at = ?4
             WHERE id = ?1 AND state IN ({list})"
        ))?
        .execute(params![id, to.as_str(), reason, now()])?;
    Ok(n == 1)
}
