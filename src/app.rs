//! Wiring only: load the configuration and catalog, open the store, build the
//! providers, spawn the workers, notifier and endpoints, and drain them on
//! shutdown. No decisions are made here.

use crate::catalog::{Catalog, Problem};
use crate::chat::notifier::Notifier;
use crate::chat::{ChatSink, Sinks};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::domain::team::Platform;
use crate::metrics::Metrics;
use crate::progress::{self, Bus};
use crate::provider::proxmox::Proxmox;
use crate::provider::ssh_identity::ProvisioningKey;
use crate::provider::Compute;
use crate::reconcile::Reconciler;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::worker::Worker;
use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Seconds without a heartbeat after which another instance's claim lapses.
const STALE_AFTER: i64 = 30;

/// A running Slipway.
pub struct App {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    pub store: Store,
    pub compute: Arc<dyn Compute>,
    pub bus: Bus,
    /// Decided approval requests, for every adapter to edit its cards.
    pub decisions: crate::chat::DecisionBus,
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub owner: String,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub clock: Arc<dyn Clock>,
    /// Wakes the scheduler (an expiry changed, or a test moved the clock).
    pub schedule: Arc<Notify>,
    /// The chat sinks, once started.
    sinks: std::sync::OnceLock<Sinks>,
    pub publishers: Arc<crate::provider::publish::Publishers>,
    pub docker: Arc<crate::provider::docker::DockerHosts>,
    /// Slipway's own SSH key pair (in its data directory).
    pub ssh_identity: Arc<ProvisioningKey>,
}

/// Slipway's data directory: where its database is.
pub fn data_dir(config: &Config) -> std::path::PathBuf {
    config
        .database
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// Loads the catalog for a configuration, with every problem listed.
pub fn load_catalog(config: &Config) -> Result<Catalog, Vec<Problem>> {
    let teams: Vec<String> = config.teams.iter().map(|t| t.name.0.clone()).collect();
    let catalog = Catalog::load(&config.commands_dir, &config.profiles_dir, &teams)?;
    let problems = cross_check(config, &catalog);
    if problems.is_empty() {
        Ok(catalog)
    } else {
        Err(problems)
    }
}

/// Profiles whose post-provision would fail as configured: said at start,
/// not refused, so the rest of the catalog stays usable.
fn warn_unusable_profiles(config: &Config, catalog: &Catalog) {
    if !config.provision.enabled || config.docker.env_ca_key.is_some() {
        return;
    }
    for p in catalog.profiles.iter().filter(|p| p.docker_tls) {
        tracing::warn!(
            profile = %p.name,
            "creating this profile will fail at post-provision: it needs docker.env_tls with \
             ca_file, cert_file, key_file and ca_key_file to sign dockerd's certificate"
        );
    }
}

/// What only the configuration and the catalog together can tell.
fn cross_check(config: &Config, catalog: &Catalog) -> Vec<Problem> {
    let mut problems = Vec::new();
    for p in &catalog.profiles {
        if !config.proxmox.bridges.contains(&p.network.bridge) {
            problems.push(Problem::new(
                &p.file,
                format!(
                    "network.bridge: '{}' is not in proxmox.bridges ({})",
                    p.network.bridge,
                    config.proxmox.bridges.join(", ")
                ),
            ));
        }
        if let Some(s) = p
            .storage
            .as_ref()
            .filter(|s| !config.proxmox.storages.contains(s))
        {
            problems.push(Problem::new(
                &p.file,
                format!("storage: '{s}' is not in proxmox.storages"),
            ));
        }
    }
    problems
}

fn problems_error(what: &str, problems: Vec<Problem>) -> anyhow::Error {
    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::anyhow!(
        "{what} has {} problem(s):\n{}\nRun `slipway check --config FILE` after fixing them.",
        problems.len(),
        list.join("\n")
    )
}

impl App {
    /// Builds everything and claims the database. Nothing runs yet.
    pub fn build(config: Config) -> anyhow::Result<App> {
        Self::build_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`App::build`], with the clock lifetimes are measured by.
    pub fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let catalog = load_catalog(&config).map_err(|p| problems_error("the catalog", p))?;
        warn_unusable_profiles(&config, &catalog);
        let store = Store::open(&config.database)
            .with_context(|| format!("cannot open the database {}", config.database.display()))?;
        let owner = format!(
            "{}:{}:{}",
            crate::store::hostname(),
            std::process::id(),
            crate::store::now_ms()
        );
        store.acquire_instance(&owner, STALE_AFTER)?;
        let metrics = Arc::new(Metrics::new());
        let proxmox = Proxmox::new(&config.proxmox)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_error_counter(metrics.proxmox_errors.clone());
        let publishers = crate::provider::publish::config::build(&config.publish)
            .map_err(|e| anyhow::anyhow!("publish: {e}"))?;
        let docker = crate::provider::docker::DockerHosts::new(config.docker.clone());
        let ssh_identity = ProvisioningKey::load_or_create(&data_dir(&config))
            .map_err(|e| anyhow::anyhow!("Slipway's provisioning key: {e}"))?;
        Ok(App {
            ssh_identity: Arc::new(ssh_identity),
            publishers: Arc::new(publishers),
            docker: Arc::new(docker),
            config: Arc::new(config),
            catalog: Arc::new(catalog),
            store,
            compute: Arc::new(proxmox),
            bus: progress::bus(),
            decisions: tokio::sync::broadcast::channel(256).0,
            wake: Arc::new(Notify::new()),
            metrics,
            owner,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            clock,
            schedule: Arc::new(Notify::new()),
            sinks: std::sync::OnceLock::new(),
        })
    }

    pub fn dispatcher(&self) -> Dispatcher {
        let mut dispatcher = Dispatcher::new(
            self.config.clone(),
            self.catalog.clone(),
            self.store.clone(),
            self.compute.clone(),
            self.wake.clone(),
            self.schedule.clone(),
            self.clock.clone(),
        );
        // One set of Docker clients for the whole process, and one channel
        // of decisions, whichever adapter's dispatcher made them.
        dispatcher.docker = self.docker.clone();
        dispatcher.decisions = self.decisions.clone();
        dispatcher
    }

    /// A worker over this app's store and providers. `start` spawns the
    /// configured number of them; a test may drive one with `Worker::step_once`.
    pub fn worker(&self) -> Arc<Worker> {
        Arc::new(Worker {
            store: self.store.clone(),
            compute: self.compute.clone(),
            config: self.config.clone(),
            catalog: self.catalog.clone(),
            bus: self.bus.clone(),
            wake: self.wake.clone(),
            owner: self.owner.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
            schedule: self.schedule.clone(),
            publishers: self.publishers.clone(),
            docker: self.docker.clone(),
            guest_ids: Default::default(),
            ssh_identity: self.ssh_identity.clone(),
        })
    }

    /// Spawns the workers, the heartbeat and the notifier for these chat sinks.
    pub fn start(&self, sinks: Vec<Arc<dyn ChatSink>>) {
        self.worker().spawn(&self.tracker, &self.cancel);
        let sinks: Sinks = Arc::new(
            sinks
                .into_iter()
                .map(|s| (s.platform(), s))
                .collect::<HashMap<Platform, _>>(),
        );
        let notifier = Notifier {
            store: self.store.clone(),
            sinks: sinks.clone(),
            interval: Duration::from_millis(250),
        };
        let _ = self.sinks.set(sinks.clone());
        self.tracker
            .spawn(self.reconciler().run(self.cancel.clone()));
        let scheduler = Scheduler {
            store: self.store.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            sinks,
            wake: self.schedule.clone(),
            workers: self.wake.clone(),
        };
        self.tracker.spawn(scheduler.run(self.cancel.clone()));
        self.tracker
            .spawn(notifier.run(self.bus.subscribe(), self.cancel.clone()));
        let (store, owner, cancel) = (self.store.clone(), self.owner.clone(), self.cancel.clone());
        self.tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {
                        if let Err(e) = store.heartbeat(owner.clone()).await {
                            tracing::warn!(error = %e, "heartbeat failed");
                        }
                    }
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }

    /// A reconciler that reports through the started chat sinks.
    pub fn reconciler(&self) -> Reconciler {
        Reconciler {
            store: self.store.clone(),
            compute: self.compute.clone(),
            docker: self.docker.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            sinks: self.sinks.get().cloned().unwrap_or_default(),
            workers: self.wake.clone(),
        }
    }

    /// Serves `/healthz` and `/metrics` if configured; returns the bound address.
    pub async fn serve_http(&self) -> anyhow::Result<Option<std::net::SocketAddr>> {
        let Some(addr) = self.config.http_listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on http.listen {addr}"))?;
        let bound = listener.local_addr()?;
        self.tracker.spawn(crate::http::serve(
            listener,
            self.store.clone(),
            self.metrics.clone(),
            self.cancel.clone(),
        ));
        Ok(Some(bound))
    }

    /// Stops claiming jobs, lets running steps finish within `deadline`, and
    /// gives up the database.
    pub async fn shutdown(self, deadline: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some work did not finish within {deadline:?}; it resumes on the next start"
            );
        }
        if let Err(e) = self.store.release_instance(&self.owner) {
            tracing::warn!(error = %e, "could not release the database claim");
        }
    }
}
