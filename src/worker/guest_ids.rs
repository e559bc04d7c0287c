//! The cluster as VMID allocation and placement see it — the guest ids in
//! use and which nodes are online — read at most once per [`FRESH`] however
//! many creates allocate at the same moment: 16 workers starting 16 creates
//! make one `/cluster/resources` call, not 16.
//!
//! Reusing a listing for a moment is safe: Slipway's own reservations are in
//! the database (checked on every allocation), and a guest someone else
//! created meanwhile makes the create answer "already exists", after which
//! the next id is tried. A node that went offline within the moment answers
//! 595, after which the create is placed again.

use crate::provider::{Cluster, Compute, ProviderError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long one listing is reused.
pub const FRESH: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct GuestIds {
    listed: Mutex<Option<(Instant, Arc<Cluster>)>>,
}

impl GuestIds {
    /// The cluster's guests and nodes. Callers arriving while a listing is
    /// under way wait for it and share it.
    pub async fn get(&self, compute: &dyn Compute) -> Result<Arc<Cluster>, ProviderError> {
        let mut listed = self.listed.lock().await;
        if let Some((at, cluster)) = listed.as_ref() {
            if at.elapsed() < FRESH {
                return Ok(cluster.clone());
            }
        }
        let cluster = Arc::new(compute.cluster().await?);
        *listed = Some((Instant::now(), cluster.clone()));
        Ok(cluster)
    }
}
