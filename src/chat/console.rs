//! The console adapter: local chat on stdin/stdout, one command per line, as a
//! configured console user. It turns each line into an [`Inbound`], prints the
//! reply and live progress, and — when stdin is not a terminal — exits after EOF
//! once every job it started has finished.

use super::{ChatError, ChatSink, Inbound, MessageRef, ReplyTo};
use crate::dispatch::Dispatcher;
use crate::domain::lifecycle::JobState;
use crate::domain::team::{Actor, Platform};
use async_trait::async_trait;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Prints progress messages; an edit prints the message's new first line.
pub struct ConsoleSink {
    next: AtomicU64,
}

impl ConsoleSink {
    pub fn new() -> Self {
        ConsoleSink {
            next: AtomicU64::new(1),
        }
    }
}

impl Default for ConsoleSink {
    fn default() -> Self {
        Self::new()
    }
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

#[async_trait]
impl ChatSink for ConsoleSink {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    async fn send(&self, to: &ReplyTo, text: &str) -> Result<MessageRef, ChatError> {
        say(text.lines().next().unwrap_or(""));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(MessageRef {
            platform: Platform::Console,
            channel: to.channel.clone(),
            id: id.to_string(),
        })
    }

    async fn edit(&self, _msg: &MessageRef, text: &str) -> Result<(), ChatError> {
        say(text.lines().next().unwrap_or(""));
        Ok(())
    }
}

/// The console identity: `--as USER`, else `console.default_user`, else the only user.
pub fn actor(dispatcher: &Dispatcher, user: Option<&str>) -> Result<Actor, String> {
    let users = &dispatcher.config.console_users;
    let name = user
        .map(str::to_string)
        .or_else(|| dispatcher.config.console_default_user.clone())
        .or_else(|| {
            (users.len() == 1)
                .then(|| users.keys().next().cloned())
                .flatten()
        })
        .ok_or_else(|| {
            "no console user: pass --as USER, or set console.default_user in the configuration"
                .to_string()
        })?;
    let roles = users.get(&name).cloned().ok_or_else(|| {
        format!(
            "console user '{name}' is not in console.users; known users: {}",
            users.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    Ok(Actor {
        platform: Platform::Console,
        user_id: name.clone(),
        display: name,
        roles,
    })
}

/// Reads commands until EOF. Returns true if every job started or resumed
/// here succeeded.
pub async fn run(dispatcher: &Dispatcher, actor: Actor) -> bool {
    let interactive = std::io::stdin().is_terminal();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let session = format!("{}-{}", std::process::id(), crate::store::now_ms());
    // Jobs a crashed session left unfinished are resumed by this process's
    // workers: a piped console waits for them too before it exits.
    let mut started: Vec<i64> = match dispatcher.store.unfinished_jobs().await {
        Ok(jobs) => jobs.into_iter().map(|j| j.id).collect(),
        Err(e) => {
            eprintln!("slipway: cannot read the unfinished jobs: {e}");
            Vec::new()
        }
    };
    let mut n = 0u64;
    loop {
        if interactive {
            print!("slipway ({})> ", actor.display);
            let _ = std::io::stdout().flush();
        }
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                eprintln!("slipway: cannot read stdin: {e}");
                break;
            }
        };
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        n += 1;
        let inbound = Inbound {
            actor: actor.clone(),
            text: text.to_string(),
            event_id: format!("console:{session}:{n}"),
            reply_to: ReplyTo {
                platform: Platform::Console,
                channel: "console".into(),
                thread: None,
                interaction: None,
            },
        };
        let reply = dispatcher.handle(&inbound).await;
        say(&reply.text);
        started.extend(reply.job);
    }
    if started.is_empty() {
        return true;
    }
    wait_for(dispatcher, &started).await
}

async fn wait_for(dispatcher: &Dispatcher, jobs: &[i64]) -> bool {
    loop {
        let mut all_done = true;
        let mut all_ok = true;
        for id in jobs {
            match dispatcher.store.job(*id).await {
                Ok(Some(j)) if j.state.is_finished() => all_ok &= j.state == JobState::Succeeded,
                Ok(Some(_)) => all_done = false,
                Ok(None) => all_ok = false,
                Err(e) => {
                    eprintln!("slipway: cannot read job {id}: {e}");
                    return false;
                }
            }
        }
        if all_done {
            // Let the notifier print the final lines.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return all_ok;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
