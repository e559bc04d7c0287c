//! Slipway running in-process for a test: the recording chat sink, sending
//! commands as a console user, waiting for jobs and messages, and the checks
//! every test can end with (invariants, no secret anywhere).

use super::FakePve;
use serde_json::Value;
use slipway::app::App;
use slipway::chat::{ChatError, ChatSink, Inbound, MessageRef, Reply, ReplyTo};
use slipway::dispatch::Dispatcher;
use slipway::domain::team::{Actor, Platform};
use slipway::store::jobs::JobRecord;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every message the chat sink was asked to post or edit.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(String, String)>>,
    next: AtomicU64,
}

impl Recorder {
    /// ("send"|"edit", message id, text)
    pub fn all(&self) -> Vec<(String, String)> {
        self.events.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ChatSink for Recorder {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    async fn send(&self, to: &ReplyTo, text: &str) -> Result<MessageRef, ChatError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        self.events
            .lock()
            .unwrap()
            .push((format!("send {id}"), text.to_string()));
        Ok(MessageRef {
            platform: Platform::Console,
            channel: to.channel.clone(),
            id,
        })
    }

    async fn edit(&self, msg: &MessageRef, text: &str) -> Result<(), ChatError> {
        self.events
            .lock()
            .unwrap()
            .push((format!("edit {}", msg.id), text.to_string()));
        Ok(())
    }
}

static EVENT: AtomicU64 = AtomicU64::new(1);

/// A running in-process Slipway.
pub struct Running {
    pub app: Option<App>,
    pub dispatcher: Dispatcher,
    pub sink: Arc<Recorder>,
    /// Credentials that must never show up in a message, log or stored row.
    pub secrets: Vec<String>,
}

/// Fails if any secret appears in `text`.
pub fn assert_no_secret(secrets: &[String], text: &str, place: &str) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "a secret leaked into {place}");
    }
}

/// `user` of `[console] users`, with the roles configured there.
pub fn console_actor(config: &slipway::config::Config, user: &str) -> Actor {
    Actor {
        platform: Platform::Console,
        user_id: user.into(),
        display: user.into(),
        roles: config.console_users.get(user).cloned().unwrap_or_default(),
    }
}

/// `text` typed by console user `user`.
pub fn console_inbound(config: &slipway::config::Config, user: &str, text: &str) -> Inbound {
    Inbound {
        actor: console_actor(config, user),
        text: text.into(),
        event_id: format!("test:{}", EVENT.fetch_add(1, Ordering::Relaxed)),
        reply_to: ReplyTo {
            platform: Platform::Console,
            channel: "test".into(),
            thread: None,
            interaction: None,
        },
    }
}

impl Running {
    pub fn actor(&self, user: &str) -> Actor {
        console_actor(&self.dispatcher.config, user)
    }

    pub fn inbound(&self, user: &str, text: &str) -> Inbound {
        console_inbound(&self.dispatcher.config, user, text)
    }

    /// Sends a command as `user` and returns Slipway's reply.
    pub async fn say(&self, user: &str, text: &str) -> Reply {
        self.dispatcher.handle(&self.inbound(user, text)).await
    }

    /// Waits until the job has finished (at most a minute).
    pub async fn finished(&self, job: i64) -> JobRecord {
        self.finished_within(job, Duration::from_secs(60)).await
    }

    /// Waits until the job has finished, at most `limit` (jobs on a real guest).
    pub async fn finished_within(&self, job: i64, limit: Duration) -> JobRecord {
        let started = Instant::now();
        loop {
            let j = self
                .dispatcher
                .store
                .job(job)
                .await
                .unwrap()
                .expect("job exists");
            if j.state.is_finished() {
                // Let the notifier deliver the final state.
                tokio::time::sleep(Duration::from_millis(400)).await;
                return j;
            }
            assert!(
                started.elapsed() < limit,
                "job {job} did not finish within {limit:?}: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The environment called `name`, whatever its state (newest first).
    pub async fn env(&self, name: &str) -> slipway::store::envs::EnvRecord {
        let name = name.to_string();
        let id: i64 = super::db(&self.dispatcher.config.database)
            .query_row(
                "SELECT id FROM environments WHERE name = ?1 ORDER BY id DESC LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        self.dispatcher.store.env(id).await.unwrap().unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        super::count(&self.dispatcher.config.database, sql)
    }

    /// Makes the lifetime scheduler look at the clock now.
    pub fn wake_scheduler(&self) {
        self.app.as_ref().unwrap().schedule.notify_one();
    }

    /// Waits until a posted or edited message contains `needle` (at most 10 s).
    pub async fn wait_for_message(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some((_, text)) = self
                .sink
                .all()
                .into_iter()
                .find(|(_, t)| t.contains(needle))
            {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no message contains {needle:?}: {:?}",
                self.sink.all()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many posted or edited messages contain `needle`.
    pub fn messages_with(&self, needle: &str) -> usize {
        self.sink
            .all()
            .iter()
            .filter(|(_, t)| t.contains(needle))
            .count()
    }

    /// The invariants that hold whatever fault happened: no container created
    /// twice for one environment, no orphan after one reconcile pass (run with
    /// `reconcile.orphan_grace = "0s"`), the quota of team web held, exactly one
    /// outcome message per finished job, and a sound database.
    pub async fn assert_invariants(&self, pve: &FakePve, env_limit: u64) {
        use std::collections::HashMap;
        let per_env = |guests: &[Value]| {
            let mut m: HashMap<String, usize> = HashMap::new();
            for g in guests {
                for tag in g["config"]["tags"].as_str().unwrap_or("").split(';') {
                    if tag.starts_with("slipway-env-") {
                        *m.entry(tag.to_string()).or_default() += 1;
                    }
                }
            }
            m
        };
        let before = per_env(&pve.guests().await);
        assert!(
            before.values().all(|n| *n == 1),
            "a container was created twice: {before:?}"
        );
        self.app
            .as_ref()
            .unwrap()
            .reconciler()
            .pass()
            .await
            .expect("a reconcile pass");
        let store = &self.dispatcher.store;
        for (tag, _) in per_env(&pve.guests().await) {
            let id: i64 = tag.trim_start_matches("slipway-env-").parse().unwrap();
            let env = store
                .env(id)
                .await
                .unwrap()
                .expect("the tagged environment exists");
            assert!(
                !env.state.is_ended(),
                "orphan after a reconcile pass: {tag} of a {} environment",
                env.state
            );
        }
        let usage = store.usage("web".into()).await.unwrap();
        assert!(usage.environments <= env_limit, "quota exceeded: {usage:?}");
        let jobs = store.list_jobs(None, 10_000).await.unwrap();
        let messages = self.sink.all();
        for (job, name) in jobs.iter().filter(|(j, _)| j.state.is_finished()) {
            let ok = format!("✅ {} {name}:", job.kind);
            let bad = format!("❌ {} {name} failed", job.kind);
            let n = messages
                .iter()
                .filter(|(_, t)| t.starts_with(&ok) || t.starts_with(&bad))
                .count();
            let same_kind = jobs
                .iter()
                .filter(|(j, n2)| n2 == name && j.kind == job.kind && j.state.is_finished())
                .count();
            assert_eq!(
                n, same_kind,
                "outcome messages for {} {name}: {n}",
                job.kind
            );
        }
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
    }

    /// Scans every chat message and every stored value for the secrets.
    pub async fn assert_no_secrets_anywhere(&self) {
        for (_, text) in self.sink.all() {
            assert_no_secret(&self.secrets, &text, "a chat message");
        }
        let c = super::db(&self.dispatcher.config.database);
        let rows: Vec<String> = (|| -> rusqlite::Result<Vec<String>> {
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::new();
            for t in tables {
                let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\""))?;
                let n = stmt.column_count();
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    for i in 0..n {
                        if let Ok(Some(v)) = row.get::<_, Option<String>>(i) {
                            out.push(format!("{t}: {v}"));
                        }
                    }
                }
            }
            Ok(out)
        })()
        .unwrap();
        for r in rows {
            assert_no_secret(&self.secrets, &r, "the database");
        }
    }

    pub async fn stop(mut self) {
        self.assert_no_secrets_anywhere().await;
        if let Some(app) = self.app.take() {
            app.shutdown(Duration::from_secs(10)).await;
        }
    }
}
