//! Prometheus metrics: jobs by state and pending approvals (read from the store
//! at scrape time), step durations, and Proxmox call errors.

use crate::store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: String,
}

pub struct Metrics {
    registry: Registry,
    pub jobs: Family<StateLabel, Gauge>,
    pub pending_approvals: Gauge,
    pub step_seconds: Family<StepLabel, Histogram>,
    pub proxmox_errors: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("slipway");
        let jobs = Family::<StateLabel, Gauge>::default();
        let pending_approvals = Gauge::default();
        let step_seconds = Family::<StepLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 14))
        });
        let proxmox_errors = Counter::default();
        registry.register("jobs", "Jobs by state", jobs.clone());
        registry.register(
            "pending_approvals",
            "Requests waiting for an admin",
            pending_approvals.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "How long job steps take",
            step_seconds.clone(),
        );
        registry.register(
            "proxmox_errors",
            "Failed Proxmox API calls",
            proxmox_errors.clone(),
        );
        Metrics {
            registry,
            jobs,
            pending_approvals,
            step_seconds,
            proxmox_errors,
        }
    }

    /// Refreshes the store-backed gauges and renders the text exposition.
    pub async fn render(&self, store: &Store) -> String {
        if let Ok(counts) = store.job_counts().await {
            self.jobs.clear();
            for (state, n) in counts {
                self.jobs.get_or_create(&StateLabel { state }).set(n);
            }
        }
        if let Ok(p) = store.pending_approvals(None).await {
            self.pending_approvals.set(p.len() as i64);
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
