//! Lifetimes: sleeps until the next reminder or expiry is due (or until woken),
//! then posts due reminders and queues teardowns. It only enqueues: the worker
//! does the teardown. Everything it acts on is in SQLite, so after downtime the
//! overdue teardowns run at once and at most one catch-up reminder is sent per
//! environment; a claimed reminder is never sent twice.

use crate::chat::{announce, render, Announcement, AnnouncementKind, Sinks};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::lifecycle::{plan, CreateOptions, EnvState, JobKind};
use crate::domain::lifetime;
use crate::store::jobs::{Enqueued, NewJob};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The longest real time between two looks, so a clock jump is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub struct Scheduler {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub sinks: Sinks,
    /// Wakes this loop early (an expiry changed).
    pub wake: Arc<Notify>,
    /// Wakes the workers after a teardown was queued.
    pub workers: Arc<Notify>,
}

impl Scheduler {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let pause = match self.tick().await {
                Ok(pause) => pause,
                Err(e) => {
                    tracing::error!(error = %e, "lifetime scheduler failed; trying again");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {
                    // Expiries change in bursts (many environments ready at
                    // once): one look covers the burst.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// Does what is due now; returns how long to sleep.
    pub async fn tick(&self) -> Result<Duration, StoreError> {
        let now = self.clock.now();
        let grace = self.config.lifetimes.grace.as_secs() as i64;
        self.tear_down_expired(now, grace).await?;
        self.send_reminders(now).await?;
        let next = self.store.next_due(grace).await?;
        Ok(match next {
            Some(at) if at <= now => Duration::from_millis(100),
            Some(at) => Duration::from_secs((at - now) as u64).min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }

    async fn tear_down_expired(&self, now: i64, grace: i64) -> Result<(), StoreError> {
        // Destroying too: a teardown that failed is tried again (a few times).
        const LIVE: &[EnvState] = &[EnvState::Ready, EnvState::Stopped, EnvState::Destroying];
        for (env, failed) in self.store.expired(now, grace).await? {
            self.store.skip_env_reminders(env.id).await?;
            // A docker-host environment goes after the apps on it.
            let host = crate::provider::docker::env_host_key(env.id);
            let apps = self.store.apps_on_host(host).await?;
            if !apps.is_empty() {
                self.remove_apps_first(&env, &apps).await?;
                continue;
            }
            let job = NewJob {
                kind: JobKind::Destroy,
                // One teardown per expiry and try, however often this runs.
                idempotency_key: format!(
                    "expiry:{}:{}{}",
                    env.id,
                    env.expires_at.unwrap_or_default(),
                    if failed > 0 {
                        format!(":retry{failed}")
                    } else {
                        String::new()
                    }
                ),
                requested_by: "slipway:lifetimes".into(),
                reply_to: env.announce_to_or_default(),
                steps: plan(JobKind::Destroy, &CreateOptions::default()),
            };
            match self
                .store
                .enqueue(env.id, LIVE, Some(EnvState::Destroying), job)
                .await?
            {
                Enqueued::Queued(job_id) => {
                    tracing::info!(env = %env.name, job = job_id, "lifetime over: tearing down");
                    self.workers.notify_waiters();
                    let text = if failed > 0 {
                        format!(
                            "⌛ @{} {} expired {} and its teardown failed; trying again (job {job_id}, try {} of {}).",
                            env.owner_display,
                            env.name,
                            render::relative(env.expires_at, now),
                            failed + 1,
                            crate::store::lifetimes::TEARDOWN_TRIES
                        )
                    } else {
                        format!(
                            "⌛ @{} {} expired {}; tearing it down now (job {job_id}).",
                            env.owner_display,
                            env.name,
                            render::relative(env.expires_at, now)
                        )
                    };
                    let a = Announcement {
                        text,
                        env_id: env.id,
                        kind: AnnouncementKind::Notice,
                    };
                    announce(&self.sinks, Some(&env.announce_to_or_default()), &a).await;
                }
                // A job of its own runs: the next look tries again.
                Enqueued::Busy(_) | Enqueued::Duplicate(_) | Enqueued::WrongState(_) => {}
            }
        }
        Ok(())
    }

    /// Queues the removal of every app on the expired docker-host `env`; the
    /// environment's own teardown follows on a later look, once they are gone.
    async fn remove_apps_first(
        &self,
        env: &crate::store::envs::EnvRecord,
        apps: &[crate::store::envs::EnvRecord],
    ) -> Result<(), StoreError> {
        const LIVE: &[EnvState] = &[EnvState::Ready, EnvState::Stopped, EnvState::Destroying];
        for app in apps {
            let opts =
                crate::domain::app::AppOptions::for_app(app.domain.is_some(), &self.config.publish);
            let job = NewJob {
                kind: JobKind::Destroy,
                idempotency_key: format!(
                    "expiry-host:{}:{}:{}",
                    app.id,
                    env.id,
                    env.expires_at.unwrap_or_default()
                ),
                requested_by: "slipway:lifetimes".into(),
                reply_to: app.announce_to_or_default(),
                steps: crate::domain::app::plan(JobKind::Destroy, opts),
            };
            let queued = self
                .store
                .enqueue(app.id, LIVE, Some(EnvState::Destroying), job)
                .await?;
            if let Enqueued::Queued(job_id) = queued {
                tracing::info!(env = %env.name, app = %app.name, job = job_id, "host expired: removing its app first");
                self.workers.notify_waiters();
                let a = Announcement {
                    text: format!(
                        "⌛ {} expired; the app {} on it is removed first (job {job_id}), then {} is torn down.",
                        env.name, app.name, env.name
                    ),
                    env_id: env.id,
                    kind: AnnouncementKind::Notice,
                };
                announce(&self.sinks, Some(&env.announce_to_or_default()), &a).await;
            }
        }
        Ok(())
    }

    async fn send_reminders(&self, now: i64) -> Result<(), StoreError> {
        let mut by_env: BTreeMap<i64, Vec<crate::store::lifetimes::DueReminder>> = BTreeMap::new();
        for r in self.store.due_reminders(now).await? {
            by_env.entry(r.env_id).or_default().push(r);
        }
        for (_, due) in by_env {
            let pairs: Vec<(i64, i64)> = due.iter().map(|r| (r.id, r.due_at)).collect();
            let (send, skip) = lifetime::catch_up(&pairs);
            self.store.skip_reminders(skip).await?;
            let Some(r) = send.and_then(|id| due.iter().find(|r| r.id == id)) else {
                continue;
            };
            if !self.store.claim_reminder(r.id, now).await? {
                continue;
            }
            let text = format!(
                "⏰ @{} {} expires {}. Extend it with /env extend {} 1d, or destroy it now with /env destroy {}.",
                r.owner_display,
                r.env_name,
                render::relative(Some(r.expires_at), now),
                r.env_name,
                r.env_name
            );
            let a = Announcement {
                text,
                env_id: r.env_id,
                kind: AnnouncementKind::Reminder,
            };
            announce(&self.sinks, r.announce_to.as_deref(), &a).await;
        }
        Ok(())
    }
}
