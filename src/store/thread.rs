//! The database connection lives on one thread of its own; callers send it
//! closures and await the answer. Every caller queues in arrival order, and
//! none of them blocks a runtime thread or parks on a mutex: with 16 workers
//! sharing one connection, a contended mutex cost each call ~1.5 ms of waking
//! and rescheduling, against ~0.05 ms of SQL.

use super::StoreError;
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Owns the connection thread; the connection closes when the last handle drops.
pub(super) struct DbThread {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl DbThread {
    pub(super) fn start(mut conn: Connection) -> std::io::Result<DbThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("slipway-db".into())
            .spawn(move || {
                for job in rx {
                    job(&mut conn);
                }
            })?;
        Ok(DbThread {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the connection thread and waits for its answer without
    /// blocking the runtime.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Box::new(move |c| {
            let _ = reply.send(run(c, f));
        }))?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `f` on the connection thread and blocks until it answers (start-up,
    /// shutdown and tests; never from async code).
    pub(super) fn call_sync<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Box::new(move |c| {
            let _ = reply.send(run(c, f));
        }))?;
        answer.recv().map_err(|_| stopped())?
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }
}

/// A panic in one call is that call's error; the thread goes on serving.
fn run<T>(
    c: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(|| f(c))).unwrap_or_else(|_| {
        Err(StoreError::Join(
            "a database call panicked; see the log above".into(),
        ))
    })
}

fn stopped() -> StoreError {
    StoreError::Join("the database thread has stopped".into())
}

impl Drop for DbThread {
    /// Lets queued calls finish and the connection close before the handle is
    /// gone, so a restart in the same process finds the file released.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            // The last handle may be dropped by a call running on the thread itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}
