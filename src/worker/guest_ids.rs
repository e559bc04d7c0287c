//! The cluster's guest ids for VMID allocation, listed at most once per
//! [`FRESH`] however many creates allocate at the same moment: 16 workers
//! starting 16 creates make one `/cluster/resources` call, not 16.
//!
//! Reusing a listing for a moment is safe: Slipway's own reservations are in
//! the database (checked on every allocation), and a guest someone else
//! created meanwhile makes the create answer "already exists", after which
//! the next id is tried.

use crate::provider::{Compute, ProviderError};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long one listing is reused.
pub const FRESH: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct GuestIds {
    listed: Mutex<Option<(Instant, Vec<u32>)>>,
}

impl GuestIds {
    /// The ids in use in the cluster. Callers arriving while a listing is
    /// under way wait for it and share it.
    pub async fn get(&self, compute: &dyn Compute) -> Result<Vec<u32>, ProviderError> {
        let mut listed = self.listed.lock().await;
        if let Some((at, ids)) = listed.as_ref() {
            if at.elapsed() < FRESH {
                return Ok(ids.clone());
            }
        }
        let ids: Vec<u32> = compute.guests().await?.iter().map(|g| g.vmid).collect();
        *listed = Some((Instant::now(), ids.clone()));
        Ok(ids)
    }
}
