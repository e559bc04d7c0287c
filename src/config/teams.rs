//! `[[teams]]`: each team's members and admins per platform, quota, VMID
//! range and address pool, validated into [`Team`]s; ranges of different
//! teams may not overlap.

use super::duration;
use crate::catalog::Problem;
use crate::domain::names::TeamName;
use crate::domain::quota::Quota;
use crate::domain::ssh_key::SshKey;
use crate::domain::team::{IpPool, OverQuota, Platform, Team};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeam {
    pub(super) name: String,
    #[serde(default)]
    members: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    admins: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    quota: RawQuota,
    /// "approval" (default) or "refuse".
    #[serde(default)]
    over_quota: Option<String>,
    vmids: RawVmids,
    ip_pool: Option<RawPool>,
    /// Public keys that may log in to every environment of the team.
    #[serde(default)]
    ssh_keys: Vec<String>,
    /// A file of such keys, one per line (`authorized_keys` without options).
    ssh_keys_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    cores: Option<u32>,
    memory_mb: Option<u32>,
    disk_gb: Option<u32>,
    environments: Option<u32>,
    max_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVmids {
    first: u32,
    last: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    /// "10.20.0.10-10.20.0.50"
    range: String,
    /// "10.20.0.0/24": the network the range lies in.
    network: String,
    gateway: String,
}

/// Validates every team, then checks that there is at least one and that no
/// two share a name or VMIDs.
pub(super) fn validate(
    raw: &[RawTeam],
    base: &Path,
    f: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Team> {
    let teams = raw
        .iter()
        .filter_map(|t| team(t, base, f, problems))
        .collect::<Vec<_>>();
    if teams.is_empty() {
        problems.push(Problem::new(
            f,
            "teams: configure at least one [[teams]]".into(),
        ));
    }
    check_overlaps(&teams, f, problems);
    teams
}

fn bindings(
    raw: &BTreeMap<String, Vec<String>>,
    key: &str,
    f: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<Platform, Vec<String>> {
    let mut out = BTreeMap::new();
    for (platform, roles) in raw {
        match Platform::parse(platform) {
            Some(p) => {
                out.insert(p, roles.clone());
            }
            None => problems.push(Problem::new(
                f,
                format!("{key}: '{platform}' is not a platform (console, discord or matrix)"),
            )),
        }
    }
    out
}

fn team(t: &RawTeam, base: &Path, f: &str, problems: &mut Vec<Problem>) -> Option<Team> {
    let key = format!("teams.{}", t.name);
    let before = problems.len();
    let over_quota = match t.over_quota.as_deref() {
        None | Some("approval") => OverQuota::Approval,
        Some("refuse") => OverQuota::Refuse,
        Some(other) => {
            problems.push(Problem::new(
                f,
                format!("{key}.over_quota: '{other}' is not 'approval' or 'refuse'"),
            ));
            OverQuota::Approval
        }
    };
    if t.vmids.first < 100 || t.vmids.first > t.vmids.last || t.vmids.last > 999_999_999 {
        problems.push(Problem::new(
            f,
            format!(
                "{key}.vmids: {}-{} is not a range within 100-999999999",
                t.vmids.first, t.vmids.last
            ),
        ));
    }
    let max_ttl = t
        .quota
        .max_ttl
        .as_deref()
        .map(|d| duration(d, &format!("{key}.quota.max_ttl"), f, problems));
    let ip_pool = t.ip_pool.as_ref().and_then(|p| pool(p, &key, f, problems));
    let members = bindings(&t.members, &format!("{key}.members"), f, problems);
    let admins = bindings(&t.admins, &format!("{key}.admins"), f, problems);
    let ssh_keys = ssh_keys(t, base, &key, f, problems);
    (problems.len() == before).then(|| Team {
        name: TeamName(t.name.clone()),
        members,
        admins,
        quota: Quota {
            cores: t.quota.cores,
            memory_mb: t.quota.memory_mb,
            disk_gb: t.quota.disk_gb,
            environments: t.quota.environments,
            max_ttl,
        },
        over_quota,
        vmids: (t.vmids.first, t.vmids.last),
        ip_pool,
        ssh_keys,
    })
}

/// The team's keys from `ssh_keys` and `ssh_keys_file`, each checked as
/// `/keys add` checks a person's (blank lines and `#` comments skipped in the file).
fn ssh_keys(
    t: &RawTeam,
    base: &Path,
    key: &str,
    f: &str,
    problems: &mut Vec<Problem>,
) -> Vec<SshKey> {
    let mut lines: Vec<(String, String)> = t
        .ssh_keys
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("{key}.ssh_keys[{i}]"), l.clone()))
        .collect();
    if let Some(file) = &t.ssh_keys_file {
        let path = base.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => lines.extend(
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                    .map(|(n, l)| {
                        (
                            format!("{key}.ssh_keys_file {}:{}", path.display(), n + 1),
                            l.to_string(),
                        )
                    }),
            ),
            Err(e) => problems.push(Problem::new(
                f,
                format!("{key}.ssh_keys_file: cannot read {} ({e})", path.display()),
            )),
        }
    }
    let mut keys: Vec<SshKey> = Vec::new();
    for (place, line) in lines {
        match SshKey::parse(&line) {
            Ok(k) if keys.iter().any(|x| x.fingerprint == k.fingerprint) => {}
            Ok(k) => keys.push(k),
            Err(e) => problems.push(Problem::new(f, format!("{place}: {e}"))),
        }
    }
    keys
}

fn pool(p: &RawPool, key: &str, f: &str, problems: &mut Vec<Problem>) -> Option<IpPool> {
    let net: Option<ipnet::Ipv4Net> = p.network.parse().ok();
    let range: Option<(Ipv4Addr, Ipv4Addr)> = p
        .range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    let gateway: Option<Ipv4Addr> = p.gateway.parse().ok();
    match (net, range, gateway) {
        (Some(net), Some((first, last)), Some(gateway))
            if first <= last
                && net.contains(&first)
                && net.contains(&last)
                && net.contains(&gateway) =>
        {
            Some(IpPool {
                first,
                last,
                prefix_len: net.prefix_len(),
                gateway,
            })
        }
        _ => {
            problems.push(Problem::new(
                f,
                format!(
                    "{key}.ip_pool: expected range = \"A-B\" and a gateway inside network = \"CIDR\" (got range '{}', network '{}', gateway '{}')",
                    p.range, p.network, p.gateway
                ),
            ));
            None
        }
    }
}

fn check_overlaps(teams: &[Team], f: &str, problems: &mut Vec<Problem>) {
    for (i, a) in teams.iter().enumerate() {
        for b in &teams[i + 1..] {
            if a.name == b.name {
                problems.push(Problem::new(
                    f,
                    format!("teams: '{}' is defined twice", a.name),
                ));
            }
            if a.vmids.0 <= b.vmids.1 && b.vmids.0 <= a.vmids.1 {
                problems.push(Problem::new(
                    f,
                    format!(
                        "teams.{}.vmids overlaps teams.{}.vmids: give each team its own range",
                        a.name, b.name
                    ),
                ));
            }
        }
    }
}
