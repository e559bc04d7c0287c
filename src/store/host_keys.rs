//! The SSH host keys each environment's guest presented at first contact.

use super::{now, Store, StoreError};
use rusqlite::{params, OptionalExtension};

impl Store {
    /// The known_hosts lines recorded for `env_id`, if it was reached before.
    pub async fn host_keys(&self, env_id: i64) -> Result<Option<String>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT known_hosts FROM host_keys WHERE env_id = ?1",
                [env_id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// Records the host keys learned at first contact. A record that is there
    /// already is kept: a host key is never silently re-trusted.
    pub async fn record_host_keys(
        &self,
        env_id: i64,
        known_hosts: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO host_keys (env_id, known_hosts, learned_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (env_id) DO NOTHING",
                params![env_id, known_hosts, now()],
            )?;
            Ok(())
        })
        .await
    }
}
