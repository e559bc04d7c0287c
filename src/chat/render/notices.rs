//! Notices the loops and jobs post in an environment's thread or in reply:
//! addresses and nodes that moved, access that changed, refusals to destroy.

use super::duration;
use crate::store::envs::EnvRecord;
use std::time::Duration;

/// Why a docker-host environment with apps on it is not destroyed.
pub fn host_has_apps(env: &str, apps: &[EnvRecord]) -> String {
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    format!(
        "⚠️ {env} runs the apps {}; destroying it would strand them (and its address could go to another team's host). Remove them first: /app remove {}. Nothing was changed.",
        names.join(", "),
        names.join(", /app remove ")
    )
}

/// The question a 🗑️ on a reminder gets before anything is destroyed.
pub fn confirm_destroy(env: &EnvRecord) -> String {
    let guest = env
        .vmid
        .map(|v| format!(" (CT {v} on {})", env.node))
        .unwrap_or_default();
    format!(
        "⚠️ Destroy {}{guest} and everything on it? React 🗑️ on this message to confirm; nothing happens otherwise.",
        env.name
    )
}

/// The answer to a person who sent commands faster than the limit allows.
pub fn slow_down(burst: u32, per_minute: u32, wait: std::time::Duration) -> String {
    format!(
        "🐢 Slow down: at most {burst} commands at once, then {per_minute} a minute. Try again in {}s.",
        wait.as_secs().max(1)
    )
}

/// The end of a job that moved what was published to a new address.
pub fn readdressed(address: Option<&str>) -> String {
    format!(
        "its route, DNS record and monitoring target now point at {}",
        address.unwrap_or("its new address")
    )
}

/// The end of an `/env access` job.
pub fn access_changed<'a>(
    steps: impl IntoIterator<Item = &'a crate::domain::step::Step>,
    user: &str,
    address: Option<&str>,
) -> String {
    use crate::domain::step::{person_shown, Step};
    let login = address
        .map(|a| format!(" (ssh {user}@{a})"))
        .unwrap_or_default();
    steps
        .into_iter()
        .filter_map(|s| match s {
            Step::GrantAccess(who) => Some(format!(
                "{} logs in with their own keys now{login}",
                person_shown(who)
            )),
            Step::RevokeAccess(who) => {
                Some(format!("{}'s keys no longer log in", person_shown(who)))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A DHCP address that changed, as the thread hears it.
pub fn address_changed(env: &str, from: &str, to: &str, job: i64) -> String {
    format!("🧭 {env}'s address changed from {from} to {to} (DHCP); moving its route, DNS record and monitoring target (job {job}).")
}

/// Another try at moving what is published, after a readdress failed.
pub fn readdress_retried(env: &str, to: &str, job: i64) -> String {
    format!("🧭 {env}: moving its route, DNS record and monitoring target to {to} once more; the last try failed (job {job}).")
}

/// A guest found on another node than the recorded one.
pub fn guest_moved(vmid: u32, from: &str, to: &str) -> String {
    format!("CT {vmid} is on node {to} now, not on {from} (moved by HA or a migration); following it there")
}

/// An approval whose environment is gone: nothing was decided or changed.
pub fn void_request(id: i64, name: &str, env_state: &str) -> String {
    let what = match env_state {
        "destroyed" => format!("{name} was destroyed meanwhile"),
        "destroying" => format!("{name} is being destroyed"),
        "failed" => format!("{name} failed meanwhile"),
        other => format!("{name} is {other} now"),
    };
    format!("➖ Request #{id} is void: {what}, so nothing was changed.")
}

/// A create moved before anything was written, because its node was down.
pub fn placed_elsewhere(here: &str, there: &str, why: &str) -> String {
    format!("placed on {there} instead of {here}: {why}")
}

/// A create without `ttl:` whose profile's default is above the team's maximum.
pub fn ttl_capped(max: Duration, team: &str, profile: &str, default: Duration) -> String {
    format!(
        "⏳ Lifetime {}: team {team}'s maximum, shorter than profile {profile}'s default of {}.",
        duration(max),
        duration(default)
    )
}
