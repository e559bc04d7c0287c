//! The SSH public keys people added (`/keys add`), per person.

use super::{audit, now, Store, StoreError};
use crate::catalog::command::Action;
use crate::domain::ssh_key::SshKey;
use rusqlite::params;

/// A key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub fingerprint: String,
    pub line: String,
    pub kind: String,
    pub added_at: i64,
}

/// Per person at most this many keys, so the create request stays small.
pub const MAX_KEYS_PER_PERSON: i64 = 20;

/// What `add_ssh_key` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAdded {
    Added,
    /// The person has this key already.
    AlreadyThere,
    /// The person has `MAX_KEYS_PER_PERSON` keys.
    Full,
}

impl Store {
    /// Adds `key` for `owner` (audited).
    pub async fn add_ssh_key(&self, owner: String, key: SshKey) -> Result<KeyAdded, StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM ssh_keys WHERE owner = ?1",
                [&owner],
                |r| r.get(0),
            )?;
            let there: i64 = tx.query_row(
                "SELECT COUNT(*) FROM ssh_keys WHERE owner = ?1 AND fingerprint = ?2",
                params![owner, key.fingerprint],
                |r| r.get(0),
            )?;
            let added = if there > 0 {
                KeyAdded::AlreadyThere
            } else if count >= MAX_KEYS_PER_PERSON {
                KeyAdded::Full
            } else {
                tx.execute(
                    "INSERT INTO ssh_keys (owner, fingerprint, line, kind, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![owner, key.fingerprint, key.line, key.kind, now()],
                )?;
                audit(&tx, &owner, Action::KeysAdd.name(), &key.fingerprint, "added", &key.kind)?;
                KeyAdded::Added
            };
            tx.commit()?;
            Ok(added)
        })
        .await
    }

    /// `owner`'s keys, oldest first.
    pub async fn ssh_keys(&self, owner: String) -> Result<Vec<StoredKey>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT fingerprint, line, kind, added_at FROM ssh_keys WHERE owner = ?1 ORDER BY id",
            )?;
            let keys = stmt
                .query_map([owner], |r| {
                    Ok(StoredKey {
                        fingerprint: r.get(0)?,
                        line: r.get(1)?,
                        kind: r.get(2)?,
                        added_at: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(keys)
        })
        .await
    }

    /// Removes `owner`'s key with this fingerprint; false if there was none.
    pub async fn remove_ssh_key(
        &self,
        owner: String,
        fingerprint: String,
    ) -> Result<bool, StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM ssh_keys WHERE owner = ?1 AND fingerprint = ?2",
                params![owner, fingerprint],
            )?;
            if n > 0 {
                audit(
                    &tx,
                    &owner,
                    Action::KeysRemove.name(),
                    &fingerprint,
                    "removed",
                    "",
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }
}
