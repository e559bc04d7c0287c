//! Turns progress events into chat messages: the first event of a job posts a
//! message, later ones edit it. Edits are coalesced — only the latest state of
//! each job is sent, at most every `interval` — and the message reference is
//! stored with the job, so after a restart the same message is edited again.

use super::{render, ChatError, MessageRef, ReplyTo};
use crate::progress::Progress;
use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio_util::sync::CancellationToken;

pub struct Notifier {
    pub store: Store,
    pub sinks: super::Sinks,
    pub interval: Duration,
}

impl Notifier {
    pub async fn run(self, mut rx: Receiver<Progress>, cancel: CancellationToken) {
        let mut latest: BTreeMap<i64, Progress> = BTreeMap::new();
        let mut refs: HashMap<i64, MessageRef> = HashMap::new();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(p) => {
                        let id = p.job_id;
                        let done = p.outcome.is_some();
                        latest.insert(id, p);
                        if done {
                            if let Some(p) = latest.remove(&id) {
                                self.deliver(&p, &mut refs).await;
                                refs.remove(&id);
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => tracing::warn!(skipped = n, "progress events were coalesced under load"),
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    for (_, p) in std::mem::take(&mut latest) {
                        self.deliver(&p, &mut refs).await;
                    }
                }
                _ = cancel.cancelled() => break,
            }
        }
        for (_, p) in std::mem::take(&mut latest) {
            self.deliver(&p, &mut refs).await;
        }
    }

    async fn deliver(&self, p: &Progress, refs: &mut HashMap<i64, MessageRef>) {
        let Some(to) = ReplyTo::from_json(&p.reply_to) else {
            return;
        };
        let Some(sink) = self.sinks.get(&to.platform) else {
            return;
        };
        let text = render::progress(p);
        if let std::collections::hash_map::Entry::Vacant(slot) = refs.entry(p.job_id) {
            // After a restart the job's message is found again in the store.
            if let Ok(Some(job)) = self.store.job(p.job_id).await {
                if let Some(r) = job
                    .progress_ref
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok())
                {
                    slot.insert(r);
                }
            }
        }
        for attempt in 0..3 {
            let result = match refs.get(&p.job_id) {
                Some(msg) => sink.edit(msg, &text).await,
                None => match sink.send(&to, &text).await {
                    Ok(msg) => {
                        let _ = self
                            .store
                            .set_progress_ref(
                                p.job_id,
                                serde_json::to_string(&msg).unwrap_or_default(),
                            )
                            .await;
                        refs.insert(p.job_id, msg);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) => return,
                Err(ChatError::RateLimited(wait)) if attempt < 2 => tokio::time::sleep(wait).await,
                Err(e) => {
                    tracing::warn!(job = p.job_id, error = %e, "could not deliver progress");
                    return;
                }
            }
        }
    }
}
