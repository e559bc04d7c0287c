//! One Proxmox write whose effect is a task: send it, save the task id in the
//! journal at once, wait for the task. A transient failure of the send is
//! tried again after looking whether the write took effect anyway; a config
//! lock another Proxmox task holds — whether the API refused the write or the
//! task ended on it — is waited out within `proxmox.lock_wait`, and the step's
//! message says so.

use super::data::SavedTask;
use super::StepCx;
use crate::provider::{ErrorKind, ProviderError, TaskRef};
use crate::worker::{JobRun, StepError};
use std::future::Future;
use std::time::Duration;

/// Whether the write already took effect, as the step looks at it.
pub(super) enum Effect {
    /// Sent and its task ended well.
    Done,
    /// Found in effect after a failed send (another try was not needed).
    AlreadyThere,
}

impl StepCx<'_> {
    /// Sends `send` and waits up to `wait` for its task. `slot` is the step
    /// whose data `D` saves the task id (`None`: not saved, the step looks
    /// again after a restart). `in_effect` says whether a send that failed
    /// transiently took effect after all.
    pub(super) async fn task_write<D, S, SF, E, EF>(
        &self,
        run: &mut JobRun,
        slot: Option<usize>,
        wait: Duration,
        send: S,
        in_effect: E,
    ) -> Result<Effect, StepError>
    where
        D: SavedTask,
        S: Fn() -> SF,
        SF: Future<Output = Result<TaskRef, ProviderError>>,
        E: Fn() -> EF,
        EF: Future<Output = Result<bool, StepError>>,
    {
        let mut backoff = self.backoff();
        loop {
            let saved = match slot {
                Some(i) => run.data::<D>(i)?.task(),
                None => None,
            };
            let task = match saved {
                Some(t) => t,
                None => match send().await {
                    Ok(t) => {
                        if let Some(i) = slot {
                            run.set_data(i, &D::with(t.clone()));
                            self.checkpoint(run, i).await?;
                        }
                        t
                    }
                    Err(e) if self.retry(run, &mut backoff, &e).await? => {
                        if in_effect().await? {
                            return Ok(Effect::AlreadyThere);
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            match self.compute.wait(&task, wait).await {
                Ok(()) => return Ok(Effect::Done),
                Err(e)
                    if e.kind() == ErrorKind::Locked
                        && self.retry(run, &mut backoff, &e).await? =>
                {
                    // The task ended on the lock, so the write did nothing: send it again.
                    if let Some(i) = slot {
                        forget_task::<D>(run, i);
                        self.checkpoint(run, i).await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Drops the task id step `i` saved, so the next try sends the write again.
pub(super) fn forget_task<D: SavedTask>(run: &mut JobRun, i: usize) {
    if let Some(map) = run.steps[i].data.as_object_mut() {
        map.remove(D::FIELD);
    }
}
