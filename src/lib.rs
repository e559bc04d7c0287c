//! # Slipway
//!
//! A self-hosted chat-ops bot: teams create, run and destroy Proxmox VE LXC
//! environments from chat, within quotas, with admin approval where needed.
//!
//! # Layout
//!
//! The flow is the architecture; each stage has its module:
//!
//! 1. **chat event → adapter** — [`chat::console`], [`chat::discord`] and
//!    [`chat::matrix`] turn a platform's message into an [`chat::Inbound`].
//! 2. **invocation** — [`catalog`] parses the line with the definitions from
//!    `commands/*.toml` into a typed [`catalog::command::Invocation`].
//! 3. **policy** — [`dispatch`] finds the actor's team ([`domain::team`]),
//!    checks the command's permission and the per-user rate limit, and asks
//!    [`domain::policy`] for a decision: enqueue, await approval, or deny.
//! 4. **decision → job in SQLite** — [`store`] reserves quota and writes the
//!    environment and its job in one `BEGIN IMMEDIATE` transaction.
//! 5. **worker steps** — [`worker`] claims the job with a lease and runs the
//!    steps planned by [`domain::lifecycle`], journaling each one.
//! 6. **provider calls** — [`provider::proxmox`] (Proxmox VE),
//!    [`provider::command`] (post-provision programs), [`provider::publish`]
//!    (routes, DNS, monitoring) and [`provider::docker`] (apps' containers on
//!    Docker hosts) behind small traits.
//! 7. **progress events** — [`progress`] carries each step's state to
//!    [`chat::notifier`], which **edits the chat message** through the
//!    adapter's [`chat::ChatSink`]; wording lives in [`chat::render`].
//!
//! [`app`] wires these together; [`config`] loads and validates the TOML file.

pub mod app;
pub mod catalog;
pub mod chat;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod progress;
pub mod provider;
pub mod reconcile;
pub mod scheduler;
pub mod store;
pub mod worker;
