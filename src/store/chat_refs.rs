//! Messages and threads a chat adapter owns (an approval's card, an
//! environment's status thread), and the expiry of approvals nobody decided.

use super::envs::ApprovalRecord;
use super::{audit, now, Store, StoreError};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

impl Store {
    /// Remembers what `platform` owns for (`kind`, `key`); replaces an older value.
    pub async fn set_chat_ref(
        &self,
        kind: &'static str,
        key: i64,
        platform: &'static str,
        value: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO chat_refs (kind, key, platform, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key, platform) DO UPDATE SET value = excluded.value",
                params![kind, key, platform, value],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn chat_ref(
        &self,
        kind: &'static str,
        key: i64,
        platform: &'static str,
    ) -> Result<Option<String>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT value FROM chat_refs WHERE kind = ?1 AND key = ?2 AND platform = ?3",
                params![kind, key, platform],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// Marks every approval pending for `max_age_secs` or longer as expired and
    /// frees its environment's name; returns them as they were.
    pub async fn expire_approvals(
        &self,
        max_age_secs: i64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let ids: Vec<i64> = self
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let cutoff = now() - max_age_secs;
                let ids: Vec<i64> = tx
                    .prepare("SELECT id FROM approvals WHERE state = 'pending' AND created_at <= ?1")?
                    .query_map([cutoff], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for id in &ids {
                    tx.execute(
                        "UPDATE approvals SET state = 'expired', decided_at = ?2 WHERE id = ?1 AND state = 'pending'",
                        params![id, now()],
                    )?;
                    tx.execute(
                        "UPDATE environments SET state = 'denied', reason = 'the approval request expired', updated_at = ?2
                         WHERE id = (SELECT env_id FROM approvals WHERE id = ?1) AND state = 'pending_approval'",
                        params![id, now()],
                    )?;
                    audit(&tx, "slipway", "approval.expire", &format!("request {id}"), "expired", "")?;
                }
                tx.commit()?;
                Ok(ids)
            })
            .await?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.approval(id).await?);
        }
        Ok(out)
    }
}
