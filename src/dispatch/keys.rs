//! Handlers of `/keys add`, `/keys list` and `/keys remove`: a person's SSH
//! public keys, which go into every environment they create.

use super::{Call, Dispatcher};
use crate::chat::{render, Reply};
use crate::domain::ssh_key::{KeyError, SshKey};
use crate::store::StoreError;

impl Dispatcher {
    pub(super) async fn keys_add(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let owner = call.actor().key();
        let raw = call.str("key").unwrap_or_default();
        let key = match SshKey::parse(raw) {
            Ok(k) => k,
            Err(e) => {
                let outcome = match e {
                    KeyError::PrivateKey => "refused: a private key (not stored)",
                    _ => "refused",
                };
                // Never the pasted text: it may be a private key.
                self.store
                    .audit(
                        owner,
                        call.spec.action.name().into(),
                        String::new(),
                        outcome.into(),
                        e.to_string(),
                    )
                    .await?;
                return Ok(Reply::private(render::key_refused(&e)));
            }
        };
        let added = self.store.add_ssh_key(owner, key.clone()).await?;
        Ok(Reply::private(render::key_added(&key, &added)))
    }

    pub(super) async fn keys_list(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let keys = self.store.ssh_keys(call.actor().key()).await?;
        Ok(Reply::private(render::keys(&keys)))
    }

    pub(super) async fn keys_remove(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let fingerprint = call.str("key").unwrap_or_default().trim().to_string();
        let removed = self
            .store
            .remove_ssh_key(call.actor().key(), fingerprint.clone())
            .await?;
        Ok(Reply::private(render::key_removed(&fingerprint, removed)))
    }
}
