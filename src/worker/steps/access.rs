//! `/env access add|remove`: a person's SSH public keys go into (or out of)
//! the guest's `authorized_keys`, over SSH with Slipway's key and the host key
//! recorded at first contact. Each line Slipway adds ends in a marker of the
//! person, so a removal takes exactly their lines and nothing the guest's
//! owner wrote by hand.

use super::{JobRun, StepCx, StepError, StepState};
use crate::provider::guest_ssh::{self, Target};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long the remote edit of authorized_keys may take.
const EDIT_LIMIT: Duration = Duration::from_secs(30);

/// Replaces the lines marked `$1` in the login user's authorized_keys with
/// the lines on stdin (none: they go). Atomic for readers (a rename).
const EDIT: &str = r#"set -e; umask 077; mkdir -p ~/.ssh; f=~/.ssh/authorized_keys; touch "$f"; { grep -v -F -e " $1" "$f" || true; cat; } > "$f.slipway"; chmod 600 "$f.slipway"; mv "$f.slipway" "$f""#;

/// The comment that marks `person`'s lines: a hash, so no id reaches the guest.
pub fn marker(person: &str) -> String {
    let digest = Sha256::digest(person.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("slipway-access-{hex}")
}

impl StepCx<'_> {
    pub(super) async fn grant_access(
        &self,
        run: &mut JobRun,
        person: &str,
    ) -> Result<StepState, StepError> {
        let keys = self.store.ssh_keys(person.to_string()).await?;
        if keys.is_empty() {
            return Err(StepError(format!(
                "{person} has no SSH keys; they add one with /keys add, then ask again"
            )));
        }
        let mark = marker(person);
        let mut lines = String::new();
        for k in &keys {
            // The type and the key, with Slipway's marker as the comment.
            let mut parts = k.line.split_whitespace();
            let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
                continue;
            };
            lines.push_str(&format!("{kind} {blob} {mark}\n"));
        }
        self.edit_authorized_keys(run, &mark, lines.as_bytes())
            .await?;
        self.store
            .log(
                run.job.id,
                "info",
                format!("{} key(s) of {person} added to authorized_keys", keys.len()),
            )
            .await?;
        Ok(StepState::Done)
    }

    pub(super) async fn revoke_access(
        &self,
        run: &mut JobRun,
        person: &str,
    ) -> Result<StepState, StepError> {
        self.edit_authorized_keys(run, &marker(person), b"").await?;
        self.store
            .log(
                run.job.id,
                "info",
                format!("the keys of {person} are out of authorized_keys"),
            )
            .await?;
        Ok(StepState::Done)
    }

    async fn edit_authorized_keys(
        &self,
        run: &JobRun,
        mark: &str,
        lines: &[u8],
    ) -> Result<(), StepError> {
        let address = self.address(run)?.to_string();
        let Some(recorded) = self.store.host_keys(run.env.id).await? else {
            return Err(StepError(format!(
                "Slipway has never logged in to {} (no host key is recorded), so it cannot \
                 change who logs in; only environments provisioned over SSH can share access",
                run.env.name
            )));
        };
        let target = Target {
            user: &self.config.provision.ssh_user,
            address: &address,
            key_file: &self.ssh_identity.private_file,
        };
        let command = format!("sh -c '{EDIT}' sh {mark}");
        guest_ssh::run(&target, &recorded, &command, lines, EDIT_LIMIT)
            .await
            .map_err(|e| StepError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_the_same_for_a_person_and_differs_between_people() {
        assert_eq!(marker("console:carol"), marker("console:carol"));
        assert_ne!(marker("console:carol"), marker("console:dave"));
        assert!(marker("matrix:@carol:example.org")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
