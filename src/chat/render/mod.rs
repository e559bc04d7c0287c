//! Every user-visible wording Slipway produces, as pure functions of data.
//! Command-specific replies come from the command's templates (`commands/*.toml`);
//! the rest is here so that it reads the same on every platform.

use crate::catalog::command::CommandSpec;
use crate::catalog::profile::Profile;
use crate::catalog::Catalog;
use crate::domain::lifecycle::{EnvState, StepState};
use crate::domain::quota::{Quota, QuotaCheck, Usage};
use crate::progress::{Outcome, Progress};
use crate::provider::ContainerStatus;
use crate::store::envs::EnvRecord;
use crate::store::jobs::{JobRecord, LogLine, StepRecord};
use std::time::Duration;

mod notices;
mod ssh;
pub use notices::*;
pub use ssh::*;

/// Renders a command's reply template `key` with `ctx`; None if the command has
/// no such template. A template error is logged and the fallback used.
pub fn template(spec: Option<&CommandSpec>, key: &str, ctx: &serde_json::Value) -> Option<String> {
    let t = spec?.replies.get(key)?;
    match minijinja::Environment::new().render_str(t, ctx) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) => {
            tracing::warn!(template = key, error = %e, "reply template failed; using the default wording");
            None
        }
    }
}

/// A duration as people write it (and as `ttl:` accepts it): "3d", "12h", "1d 6h".
pub fn duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

fn bar(done: usize, total: usize) -> String {
    let width = 10;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn secs(ms: u64) -> String {
    duration(Duration::from_secs(ms / 1000))
}

/// The live progress message of a job.
pub fn progress(p: &Progress) -> String {
    let done = p
        .steps
        .iter()
        .filter(|s| matches!(s.state, StepState::Done | StepState::Skipped))
        .count();
    let total = p.steps.len();
    let mut out = match &p.outcome {
        Some(Outcome::Succeeded(summary)) => format!(
            "✅ {} {}: {summary} ({})",
            p.kind,
            p.env_name,
            secs(p.elapsed_ms)
        ),
        Some(Outcome::Failed(reason)) => format!(
            "❌ {} {} failed: {reason} ({})",
            p.kind,
            p.env_name,
            secs(p.elapsed_ms)
        ),
        None if p.rolling_back => format!(
            "↩️ {} {}: rolling back [{}] ({})",
            p.kind,
            p.env_name,
            bar(done, total),
            secs(p.elapsed_ms)
        ),
        None => {
            let step = p
                .steps
                .get(p.current)
                .map(|s| s.name.as_str())
                .unwrap_or("");
            format!(
                "⏳ {} {} [{}] step {}/{}: {step} ({})",
                p.kind,
                p.env_name,
                bar(done, total),
                (p.current + 1).min(total),
                total,
                secs(p.elapsed_ms)
            )
        }
    };
    for (i, s) in p.steps.iter().enumerate() {
        let mark = match s.state {
            StepState::Pending => "·",
            StepState::Running => "▶",
            StepState::Done => "✓",
            StepState::Skipped => "–",
            StepState::Failed => "✗",
            StepState::Compensated => "↩",
        };
        out.push_str(&format!("\n  {mark} {}", s.name));
        if let (true, None, Some(note)) = (i == p.current, &p.outcome, &p.note) {
            out.push_str(&format!(" — {note}"));
        }
    }
    out
}

/// A step's note while a lock another Proxmox task holds is waited out.
pub fn waiting_for_lock(try_no: u32) -> String {
    format!("waiting for a lock held by another Proxmox task (try {try_no})")
}

/// "in 2 days", "3 hours ago", "never".
pub fn relative(at: Option<i64>, now: i64) -> String {
    match at {
        None => "never".into(),
        Some(t) if t >= now => format!("in {}", rough(t - now)),
        Some(t) => format!("{} ago", rough(now - t)),
    }
}

fn rough(secs: i64) -> String {
    // Rounded to the nearest unit: "in 3 days" a few seconds after asking for 3d.
    let (n, unit) = match secs {
        s if s < 90 => (s, "second"),
        s if s < 3600 => ((s + 30) / 60, "minute"),
        s if s < 36 * 3600 => ((s + 1800) / 3600, "hour"),
        s => ((s + 43200) / 86400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// "expires in 3 days", "never expires", or the lifetime it will get once ready.
fn expiry(e: &EnvRecord, now: i64) -> String {
    match (e.expires_at, e.ttl_secs) {
        (Some(at), _) => relative(Some(at), now),
        (None, Some(ttl)) if !matches!(e.state, EnvState::Ready | EnvState::Stopped) => {
            format!(
                "{} after it is ready",
                duration(Duration::from_secs(ttl.max(0) as u64))
            )
        }
        (None, _) => "never".into(),
    }
}

/// "1 core", "4 cores".
pub fn cores(n: u32) -> String {
    if n == 1 {
        "1 core".into()
    } else {
        format!("{n} cores")
    }
}

pub fn env_line(e: &EnvRecord, now: i64) -> String {
    format!(
        "{} — {} ({}), {} / {} MB / {} GB, {}{}{}, expires {}",
        e.name,
        e.state,
        e.profile,
        cores(e.resources.cores),
        e.resources.memory_mb,
        e.resources.disk_gb,
        e.vmid
            .map(|v| format!("CT {v} on {}", e.node))
            .unwrap_or_else(|| format!("node {}", e.node)),
        e.address
            .as_deref()
            .map(|a| format!(", {a}"))
            .unwrap_or_default(),
        e.domain
            .as_deref()
            .map(|d| format!(", https://{d}"))
            .unwrap_or_default(),
        expiry(e, now)
    ) + destroy_failed(e).as_str()
}

/// "; the last destroy failed: …" while a failed destroy leaves it destroying.
fn destroy_failed(e: &EnvRecord) -> String {
    match e.reason.as_deref() {
        Some(r)
            if e.state == EnvState::Destroying && r.starts_with(crate::worker::DESTROY_FAILED) =>
        {
            format!("\n  ⚠️ {r}. /env destroy name:{} tries again", e.name)
        }
        _ => String::new(),
    }
}

/// Why a lifecycle job was not queued, in the user's words (None: it was).
pub fn not_queued(name: &str, what: &str, e: &crate::store::jobs::Enqueued) -> Option<String> {
    use crate::store::jobs::Enqueued;
    match e {
        Enqueued::Queued(_) => None,
        Enqueued::Duplicate(job) => {
            Some(format!("This request was already received as job {job}."))
        }
        Enqueued::Busy(job) => Some(format!(
            "⏳ {name} is busy with job {job}; wait for it to finish (/job {job})"
        )),
        Enqueued::WrongState(state) => {
            Some(format!("⚠️ {name} is {state}, so it cannot {what} now"))
        }
    }
}

pub fn env_list(envs: &[EnvRecord], now: i64) -> String {
    if envs.is_empty() {
        return "No environments. Create one with /env create profile:<profile> name:<name>".into();
    }
    let mut out = format!("{} environment(s):", envs.len());
    for e in envs {
        out.push_str(&format!("\n• {}", env_line(e, now)));
    }
    out
}

/// What Proxmox says about an environment's guest right now.
pub enum Live {
    Running(ContainerStatus),
    /// Proxmox answered: there is no such guest.
    Missing,
    /// Proxmox could not be asked (the error).
    Unknown(String),
}

/// Where an environment's name points, as `/env info` says it.
pub enum DnsShown<'a> {
    /// Through the proxy: the name points at the ingress.
    Routed(&'a crate::provider::publish::DnsTarget),
    /// Straight at the guest.
    Direct(&'a crate::provider::publish::DnsTarget),
}

fn dns_line(domain: &str, dns: &DnsShown<'_>) -> String {
    use crate::provider::publish::DnsTarget;
    let (target, what) = match dns {
        DnsShown::Routed(t) => (t, "the proxy, which forwards to the guest"),
        DnsShown::Direct(t) => (t, "the guest itself, no proxy"),
    };
    let record = match target {
        DnsTarget::Address(_) => "A",
        DnsTarget::Alias(_) => "CNAME",
    };
    format!("\n  DNS: {domain} {record} {target} ({what})")
}

pub fn env_info(
    e: &EnvRecord,
    live: &Live,
    login: Option<&str>,
    dns: Option<&DnsShown<'_>>,
    now: i64,
) -> String {
    let mut out = format!(
        "{}\n  team {}, owner {}, created {}",
        env_line(e, now),
        e.team,
        e.owner_display,
        relative(Some(e.created_at), now)
    );
    if let Some(reason) = &e.reason {
        out.push_str(&format!("\n  reason: {reason}"));
    }
    if let Some(login) = login {
        out.push_str(login);
    }
    if let (Some(domain), Some(dns), false) = (&e.domain, dns, e.state.is_ended()) {
        out.push_str(&dns_line(domain, dns));
    }
    match live {
        Live::Running(s) => out.push_str(&format!(
            "\n  live: {}, CPU {:.0}% of {} {}, memory {} / {} MB, up {}",
            s.status,
            s.cpu * 100.0,
            s.cpus,
            plural(s.cpus as u64, "core", "cores"),
            s.mem / (1024 * 1024),
            s.maxmem / (1024 * 1024),
            duration(Duration::from_secs(s.uptime))
        )),
        Live::Missing if e.vmid.is_some() && !e.state.is_ended() => {
            out.push_str("\n  live: the container is not in Proxmox")
        }
        Live::Missing => {}
        Live::Unknown(why) => out.push_str(&format!(
            "\n  live: unknown, Proxmox could not be asked ({why}); try again shortly"
        )),
    }
    out
}

/// `one` for 1, else `many`.
pub fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn limit(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "∞".into())
}

pub fn quota(team: &str, q: &Quota, u: &Usage) -> String {
    format!(
        "Team {team}: cores {}/{}, memory {}/{} MB, disk {}/{} GB, environments {}/{}{}{}",
        u.cores,
        limit(q.cores),
        u.memory_mb,
        limit(q.memory_mb),
        u.disk_gb,
        limit(q.disk_gb),
        u.environments,
        limit(q.environments),
        q.max_ttl
            .map(|t| format!(", longest lifetime {}", duration(t)))
            .unwrap_or_default(),
        over_quota(&crate::domain::quota::over(q, u))
    )
}

/// "cores 0 → 2, …": what a request does to the team's use, and plainly
/// when that is over the quota and by how much.
pub fn quota_change(c: &QuotaCheck) -> String {
    format!(
        "cores {} → {}, memory {} → {} MB, disk {} → {} GB, environments {} → {}{}",
        c.before.cores,
        c.after.cores,
        c.before.memory_mb,
        c.after.memory_mb,
        c.before.disk_gb,
        c.after.disk_gb,
        c.before.environments,
        c.after.environments,
        over_quota(&c.exceeded)
    )
}

/// " — ⚠️ over the team's quota: environments 5 of 2 (3 over)", or nothing.
fn over_quota(exceeded: &[crate::domain::quota::Excess]) -> String {
    if exceeded.is_empty() {
        String::new()
    } else {
        format!(
            " — ⚠️ over the team's quota: {}",
            crate::domain::quota::describe(exceeded)
        )
    }
}

pub fn profiles(list: &[Profile]) -> String {
    let mut out = String::from("Profiles:");
    for p in list {
        out.push_str(&format!(
            "\n• {} — {} (cores {}-{}, memory {}-{} MB, disk {}-{} GB; lifetime {} up to {}{}{})",
            p.name,
            p.description,
            p.cores.min,
            p.cores.max,
            p.memory_mb.min,
            p.memory_mb.max,
            p.disk_gb.min,
            p.disk_gb.max,
            duration(p.ttl_default),
            duration(p.ttl_max),
            if p.needs_approval {
                "; needs approval"
            } else {
                ""
            },
            if p.expose_port.is_some() {
                "; can be exposed"
            } else {
                ""
            },
        ));
    }
    out
}

pub fn help(catalog: &Catalog) -> String {
    let mut out = String::from("Commands:");
    for c in catalog.commands() {
        out.push_str(&format!("\n• {} — {}", c.usage(), c.description));
        if c.permission == crate::catalog::command::Permission::Admin {
            out.push_str(" (admins)");
        }
    }
    out
}

pub fn jobs(list: &[(JobRecord, String)]) -> String {
    if list.is_empty() {
        return "No jobs yet.".into();
    }
    let mut out = String::from("Recent jobs:");
    for (j, env) in list {
        out.push_str(&format!(
            "\n• job {} — {} {}: {}{}",
            j.id,
            j.kind,
            env,
            j.state,
            j.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    out
}

pub fn job(j: &JobRecord, env: &str, steps: &[StepRecord], log: &[LogLine]) -> String {
    let mut out = format!("Job {} — {} {}: {}", j.id, j.kind, env, j.state);
    if let Some(e) = &j.error {
        out.push_str(&format!("\n  error: {e}"));
    }
    for s in steps {
        out.push_str(&format!(
            "\n  {}. {} — {}{}",
            s.seq + 1,
            s.step.label(),
            s.state,
            s.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    if !log.is_empty() {
        out.push_str("\nLog:");
        let skip = log.len().saturating_sub(40);
        for l in &log[skip..] {
            out.push_str(&format!("\n  [{}] {}", l.level, l.line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(Duration::from_secs(90 * 86400)), "90d");
        assert_eq!(duration(Duration::from_secs(14 * 86400)), "14d");
        assert_eq!(duration(Duration::from_secs(86400 + 6 * 3600)), "1d 6h");
        assert_eq!(duration(Duration::from_secs(12)), "12s");
    }

    #[test]
    fn relative_times_round_to_one_unit() {
        assert_eq!(relative(Some(1000 + 2 * 86400), 1000), "in 2 days");
        assert_eq!(relative(Some(1000 - 3600), 1000), "1 hour ago");
        assert_eq!(relative(None, 0), "never");
    }

    #[test]
    fn one_core_is_singular() {
        assert_eq!(cores(1), "1 core");
        assert_eq!(cores(4), "4 cores");
    }

    #[test]
    fn the_rate_limit_names_the_burst_and_the_rate() {
        assert_eq!(
            slow_down(3, 60, Duration::from_millis(300)),
            "🐢 Slow down: at most 3 commands at once, then 60 a minute. Try again in 1s."
        );
    }
}
