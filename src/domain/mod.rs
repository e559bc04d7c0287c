//! Pure domain logic: names, teams, quotas, the policy decision and job plans.
//! Nothing here does I/O: no tokio, rusqlite, serenity or reqwest.

pub mod app;
pub mod domain_name;
pub mod lifecycle;
pub mod lifetime;
pub mod mac;
pub mod names;
pub mod policy;
pub mod quota;
pub mod ssh_key;
pub mod step;
pub mod team;
