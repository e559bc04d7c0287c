//! Addresses from a team's IP pool: one allocation per environment, kept in
//! `ip_allocations` so that no two environments are given the same address.

use crate::store::{Store, StoreError};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

impl Store {
    /// Allocates the first free address of `candidates` to the environment, or
    /// returns the one it already holds (so a resumed step allocates nothing new).
    pub async fn allocate_ip(
        &self,
        env_id: i64,
        team: String,
        candidates: Vec<String>,
    ) -> Result<Option<String>, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(held) = tx
                .query_row(
                    "SELECT address FROM ip_allocations WHERE env_id = ?1",
                    [env_id],
                    |r| r.get(0),
                )
                .optional()?
            {
                return Ok(Some(held));
            }
            let mut chosen = None;
            for addr in candidates {
                let taken: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM ip_allocations WHERE address = ?1)",
                    [&addr],
                    |r| r.get(0),
                )?;
                if !taken {
                    tx.execute(
                        "INSERT INTO ip_allocations (address, team, env_id) VALUES (?1, ?2, ?3)",
                        params![addr, team, env_id],
                    )?;
                    chosen = Some(addr);
                    break;
                }
            }
            tx.commit()?;
            Ok(chosen)
        })
        .await
    }

    pub async fn release_ips(&self, env_id: i64) -> Result<usize, StoreError> {
        self.call(move |c| Ok(c.execute("DELETE FROM ip_allocations WHERE env_id = ?1", [env_id])?))
            .await
    }

    pub async fn allocated_ips(&self, env_id: i64) -> Result<Vec<String>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare("SELECT address FROM ip_allocations WHERE env_id = ?1")?;
            let rows = stmt
                .query_map([env_id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(rows)
        })
        .await
    }
}
