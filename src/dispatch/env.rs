//! Handlers of `/env …`: create (with dry-run review), list, info and the
//! lifecycle jobs (start, stop, restart, destroy).

use super::{Call, Dispatcher};
use crate::catalog::profile::{IpMode, Profile};
use crate::chat::{render, Reply};
use crate::domain::domain_name::Domain;
use crate::domain::lifecycle::{self, CreateOptions, EnvState, JobKind, Step};
use crate::domain::names::EnvName;
use crate::domain::policy::{self, Decision};
use crate::domain::quota::{self, Resources};
use crate::domain::team::Team;
use crate::provider::publish::config::PublishConfig;
use crate::store::envs::{EnvRecord, NewEnv, Submitted};
use crate::store::jobs::{Enqueued, NewJob};
use crate::store::StoreError;
use serde_json::json;
use std::time::Duration;

/// The validated parts of a create request.
struct CreateRequest<'a> {
    name: EnvName,
    profile: &'a Profile,
    team: &'a Team,
    resources: Resources,
    ttl: Duration,
    /// Set when no ttl was asked for and the profile's default is longer
    /// than the team allows: the lifetime is the team's maximum, and why.
    ttl_note: Option<String>,
    domain: Option<Domain>,
}

/// The lifetime of a new environment: the one asked for, else the profile's
/// default — capped at the team's maximum when nobody asked, with a note
/// that says so (the user never typed a ttl to blame).
fn lifetime_of(
    asked: Option<Duration>,
    profile: &Profile,
    team: &Team,
) -> (Duration, Option<String>) {
    match (asked, team.quota.max_ttl) {
        (Some(ttl), _) => (ttl, None),
        (None, Some(max)) if profile.ttl_default > max => (
            max,
            Some(render::ttl_capped(
                max,
                &team.name.0,
                &profile.name,
                profile.ttl_default,
            )),
        ),
        (None, _) => (profile.ttl_default, None),
    }
}

/// What a create job will do, from the profile, whether a domain was asked for,
/// and which publishers are configured.
pub(crate) fn create_options(
    profile: &Profile,
    domain: bool,
    publish: &PublishConfig,
) -> CreateOptions {
    CreateOptions {
        route: domain && publish.router.is_some(),
        dns: domain && publish.dns.is_some(),
        monitor: profile.monitored && publish.monitor.is_some(),
        static_ip: profile.network.ip == IpMode::Pool,
        ha: profile.ha,
        post_provision: profile
            .post_provision
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        reach_ssh: profile.post_provision.iter().any(|s| s.logs_in()),
        initial_snapshot: profile.initial_snapshot,
    }
}

pub(crate) fn plan_steps(kind: JobKind, opts: Option<CreateOptions>) -> Vec<Step> {
    lifecycle::plan(kind, &opts.unwrap_or_default())
}

impl Dispatcher {
    fn validate_create<'a>(&'a self, call: &Call<'a>) -> Result<CreateRequest<'a>, String> {
        let name = EnvName::parse(call.str("name").unwrap_or_default()).map_err(|e| e.0)?;
        let profile_name = call.str("profile").unwrap_or_default();
        let profile = self
            .catalog
            .profile(profile_name)
            .ok_or_else(|| format!("profile: '{profile_name}' is unknown; /profiles lists them"))?;
        let team = match call.str("team") {
            Some(t) => *call
                .teams
                .iter()
                .find(|team| team.name.0 == t)
                .ok_or_else(|| format!("team: you are not a member of team {t}"))?,
            None => call.teams[0],
        };
        let resources = profile
            .resources(call.int("cpu"), call.int("memory"), call.int("disk"))
            .map_err(|e| e.0)?;
        let (ttl, ttl_note) = lifetime_of(call.duration("ttl"), profile, team);
        if ttl.is_zero() {
            return Err("ttl: must be longer than zero".into());
        }
        if ttl > profile.ttl_max {
            return Err(format!(
                "ttl: {} is longer than the maximum of {} for profile {}",
                render::duration(ttl),
                render::duration(profile.ttl_max),
                profile.name
            ));
        }
        if let Some(max) = team.quota.max_ttl.filter(|max| ttl > *max) {
            return Err(format!(
                "ttl: {} is longer than team {}'s maximum of {}; ask for less, or ask an admin to raise quota.max_ttl",
                render::duration(ttl),
                team.name,
                render::duration(max)
            ));
        }
        if profile.network.ip == IpMode::Pool && team.ip_pool.is_none() {
            return Err(format!(
                "profile {} needs a static address, but team {} has no ip_pool; ask an admin to configure one",
                profile.name, team.name
            ));
        }
        if !self
            .config
            .proxmox
            .bridges
            .contains(&profile.network.bridge)
        {
            return Err(format!(
                "profile {} uses bridge {}, which is not in proxmox.bridges; ask an admin to fix the profile",
                profile.name, profile.network.bridge
            ));
        }
        let domain = match call.str("domain") {
            None => None,
            Some(raw) => {
                if profile.expose_port.is_none() {
                    return Err(format!(
                        "domain: profile {} may not be exposed; pick a profile that can be (/profiles)",
                        profile.name
                    ));
                }
                if self.config.publish.router.is_none() {
                    return Err("domain: publishing is not configured here; ask an admin to set up [publish]".into());
                }
                Some(Domain::parse(raw, &self.config.publish.zones).map_err(|e| e.0)?)
            }
        };
        Ok(CreateRequest {
            name,
            profile,
            team,
            resources,
            ttl,
            ttl_note,
            domain,
        })
    }

    /// The node with the fewest live environments among the allowed ones.
    async fn pick_node(&self) -> Result<String, StoreError> {
        let nodes = &self.config.proxmox.nodes;
        if nodes.len() < 2 {
            return Ok(nodes.first().cloned().unwrap_or_default());
        }
        let counts = self.store.live_per_node().await?;
        Ok(nodes
            .iter()
            .min_by_key(|n| counts.get(*n).copied().unwrap_or(0))
            .cloned()
            .unwrap_or_default())
    }

    /// The node a dry run names: the one placement picked, unless the
    /// cluster says it is offline; then the worker's choice, and why.
    async fn planned_node(&self, picked: String) -> Result<String, StoreError> {
        let cluster = match self.compute.cluster().await {
            Ok(c) => c,
            Err(e) => return Ok(format!("{picked} (node health unknown: {e})")),
        };
        if !cluster.offline(&picked) {
            return Ok(picked);
        }
        let counts = self.store.live_per_node().await?;
        let there = self
            .config
            .proxmox
            .nodes
            .iter()
            .filter(|n| cluster.online(n))
            .min_by_key(|n| counts.get(*n).copied().unwrap_or(0));
        Ok(match there {
            Some(n) => format!("{n} ({picked} is offline)"),
            None => format!("{picked} (offline, and no other configured node is online)"),
        })
    }

    pub(super) async fn env_create(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let req = match self.validate_create(call) {
            Ok(r) => r,
            Err(msg) => return Ok(Reply::private(format!("⚠️ {msg}"))),
        };
        let node = self.pick_node().await?;
        let opts = create_options(req.profile, req.domain.is_some(), &self.config.publish);
        let steps = plan_steps(JobKind::Create, Some(opts));
        if call.flag("dry-run") {
            let node = self.planned_node(node).await?;
            return self.dry_run(call, &req, &node, &steps).await;
        }
        let actor = call.actor();
        let new = NewEnv {
            name: req.name.to_string(),
            team: req.team.name.0.clone(),
            owner: actor.key(),
            owner_display: actor.display.clone(),
            profile: req.profile.name.clone(),
            node: node.clone(),
            resources: req.resources,
            request_key: call.inbound.event_id.clone(),
            ttl_secs: Some(req.ttl.as_secs() as i64),
            announce_to: call.inbound.reply_to.to_json(),
            domain: req.domain.as_ref().map(|d| d.to_string()),
        };
        let job = NewJob {
            kind: JobKind::Create,
            idempotency_key: call.inbound.event_id.clone(),
            requested_by: actor.key(),
            reply_to: call.inbound.reply_to.to_json(),
            steps,
        };
        let over = req.team.over_quota;
        let profile_name = req.profile.name.clone();
        let needs = req.profile.needs_approval;
        let decide =
            move |c: &quota::QuotaCheck| policy::decide_create(c, over, &profile_name, needs);
        let submitted = self
            .store
            .submit_create(new, req.team.quota.clone(), decide, job)
            .await?;
        let ctx = json!({
            "name": req.name.as_str(), "profile": req.profile.name, "team": req.team.name.0, "node": node,
            "cores": req.resources.cores, "memory_mb": req.resources.memory_mb, "disk_gb": req.resources.disk_gb,
            "ttl": render::duration(req.ttl),
        });
        // Told with the answer, so a person without a key learns how to log in.
        let mut key_hint = if self.store.ssh_keys(call.actor().key()).await?.is_empty() {
            format!("\n{}", render::NO_KEYS)
        } else {
            String::new()
        };
        if let Some(note) = &req.ttl_note {
            key_hint = format!("\n{note}{key_hint}");
        }
        Ok(match submitted {
            Submitted::Queued { job_id, check, .. } => {
                self.wake.notify_waiters();
                let mut ctx = ctx;
                ctx["job"] = json!(job_id);
                ctx["quota"] = json!(render::quota_change(&check));
                let text = render::template(Some(call.spec), "queued", &ctx).unwrap_or_else(|| {
                    format!("🚀 Creating {} ({}) as job {job_id}. Quota: {}", req.name, req.profile.name, render::quota_change(&check))
                }) + key_hint.as_str();
                Reply { text, job: Some(job_id), ..Reply::default() }
            }
            Submitted::Pending { approval_id, reason, check, .. } => {
                let mut ctx = ctx;
                ctx["request"] = json!(approval_id);
                ctx["reason"] = json!(reason.describe());
                ctx["quota"] = json!(render::quota_change(&check));
                let text = render::template(Some(call.spec), "pending", &ctx).unwrap_or_else(|| {
                    format!(
                        "🕓 Request #{approval_id} for {} waits for a team admin: {}. An admin decides with /approve {approval_id} or /deny {approval_id} <reason>.",
                        req.name,
                        reason.describe()
                    )
                }) + key_hint.as_str();
                Reply { text, approval: Some(approval_id), ..Reply::default() }
            }
            Submitted::Denied { reason } => Reply::private(format!("⛔ {} was not created: {reason}", req.name)),
            Submitted::Duplicate { env_id } => Reply::private(format!(
                "This request was already received (environment {env_id}); nothing new was created."
            )),
            Submitted::DomainTaken { name } => Reply::private(format!(
                "⚠️ domain: {} is already published for environment {name}; pick another domain",
                req.domain.as_ref().map(|d| d.to_string()).unwrap_or_default()
            )),
            Submitted::NameTaken { state } => Reply::private(format!(
                "⚠️ name: an environment called {} already exists ({state}); pick another name or destroy it first",
                req.name
            )),
        })
    }

    async fn dry_run(
        &self,
        call: &Call<'_>,
        req: &CreateRequest<'_>,
        node: &str,
        steps: &[Step],
    ) -> Result<Reply, StoreError> {
        let usage = self.store.usage(req.team.name.0.clone()).await?;
        let check = quota::check(&req.team.quota, usage, &req.resources);
        let decision = policy::decide_create(
            &check,
            req.team.over_quota,
            &req.profile.name,
            req.profile.needs_approval,
        );
        let verdict = match decision {
            Decision::Enqueue => "would start at once".to_string(),
            Decision::AwaitApproval(r) => {
                format!("would need an admin's approval: {}", r.describe())
            }
            Decision::Deny(r) => format!("would be refused: {r}"),
        };
        let ctx = json!({
            "name": req.name.as_str(), "profile": req.profile.name, "team": req.team.name.0, "node": node,
            "cores": req.resources.cores, "memory_mb": req.resources.memory_mb, "disk_gb": req.resources.disk_gb,
            "swap_mb": req.resources.swap_mb, "ttl": render::duration(req.ttl),
            "quota": render::quota_change(&check), "verdict": verdict, "steps": steps,
        });
        let text = render::template(Some(call.spec), "plan", &ctx).unwrap_or_else(|| {
            format!(
                "📝 Plan for {} (dry run, nothing was created)\n  profile {}, team {}, node {}\n  {}, {} MB memory, {} MB swap, {} GB disk, lifetime {}\n  quota: {}\n  {}\n  steps: {}",
                req.name, req.profile.name, req.team.name, node, render::cores(req.resources.cores), req.resources.memory_mb,
                req.resources.swap_mb, req.resources.disk_gb, render::duration(req.ttl),
                render::quota_change(&check), verdict, steps.iter().map(Step::label).collect::<Vec<_>>().join(" → ")
            )
        });
        Ok(Reply::private(text))
    }

    pub(super) async fn env_list(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let mut envs = Vec::new();
        for t in &call.teams {
            envs.extend(self.store.list_envs(Some(t.name.0.clone())).await?);
        }
        envs.retain(|e| !e.is_app());
        Ok(Reply::private(render::env_list(&envs, self.clock.now())))
    }

    /// The live environment `name` if the caller's teams own it.
    pub(super) async fn visible_env(
        &self,
        call: &Call<'_>,
    ) -> Result<Result<EnvRecord, Reply>, StoreError> {
        let raw = call.str("name").unwrap_or_default().to_string();
        let env = self.store.env_by_name(raw.clone()).await?;
        Ok(match env {
            Some(e) if e.is_app() && call.teams.iter().any(|t| t.name.0 == e.team) => {
                Err(Reply::private(format!(
                    "⚠️ name: {} is an app, not an environment; use /app info, /app restart or /app remove",
                    e.name
                )))
            }
            Some(e) if call.teams.iter().any(|t| t.name.0 == e.team) => Ok(e),
            _ => Err(Reply::private(format!(
                "⚠️ name: there is no environment {} in your teams; /env list shows yours",
                crate::domain::names::shown(&raw)
            ))),
        })
    }

    pub(super) async fn env_info(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let env = match self.visible_env(call).await? {
            Ok(e) => e,
            Err(reply) => return Ok(reply),
        };
        let live = match env.vmid {
            Some(vmid) => match self.compute.status(&env.node, vmid).await {
                Ok(Some(s)) => render::Live::Running(s),
                Ok(None) => render::Live::Missing,
                Err(e) => render::Live::Unknown(e.to_string()),
            },
            None => render::Live::Missing,
        };
        // The MAC address, as Proxmox has it, for a DHCP reservation.
        let hwaddr = match (env.vmid, matches!(live, render::Live::Running(_))) {
            (Some(vmid), true) => self
                .compute
                .config(&env.node, vmid)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.hwaddr),
            _ => None,
        };
        let host_keys = self.store.host_keys(env.id).await?;
        let host_key = host_keys
            .as_deref()
            .and_then(crate::provider::guest_ssh::preferred_fingerprint);
        let login = (!env.is_app() && !env.state.is_ended()).then(|| {
            render::login_lines(
                &self.config.provision.ssh_user,
                env.address.as_deref(),
                host_key.as_deref(),
                hwaddr.as_deref(),
            )
        });
        let address = env.address.as_deref().and_then(|a| a.parse().ok());
        let target = self.config.publish.dns_target(address);
        let dns = target.as_ref().map(|t| {
            if self.config.publish.router.is_some() {
                render::DnsShown::Routed(t)
            } else {
                render::DnsShown::Direct(t)
            }
        });
        Ok(Reply::private(render::env_info(
            &env,
            &live,
            login.as_deref(),
            dns.as_ref(),
            self.clock.now(),
        )))
    }

    /// Start, stop, restart or destroy (`kind`): the owner or a team admin queues the job.
    pub(super) async fn env_lifecycle(
        &self,
        call: &Call<'_>,
        kind: JobKind,
    ) -> Result<Reply, StoreError> {
        let env = match self.visible_env(call).await? {
            Ok(e) => e,
            Err(reply) => return Ok(reply),
        };
        if let Err(refusal) = call.may_act_on(&env, "do that") {
            return Ok(refusal);
        }
        if kind == JobKind::Destroy {
            let host = crate::provider::docker::env_host_key(env.id);
            let apps = self.store.apps_on_host(host).await?;
            if !apps.is_empty() {
                return Ok(Reply::private(render::host_has_apps(&env.name, &apps)));
            }
        }
        let actor = call.actor();
        const READY: &[EnvState] = &[EnvState::Ready];
        const STOPPED: &[EnvState] = &[EnvState::Stopped];
        // Destroying too: a destroy that failed can be asked for again.
        const LIVE: &[EnvState] = &[EnvState::Ready, EnvState::Stopped, EnvState::Destroying];
        let (from, to): (&'static [EnvState], Option<EnvState>) = match kind {
            JobKind::Start => (STOPPED, None),
            JobKind::Stop | JobKind::Restart => (READY, None),
            // Destroy: route() passes no other kind.
            _ => (LIVE, Some(EnvState::Destroying)),
        };
        let job = NewJob {
            kind,
            idempotency_key: call.inbound.event_id.clone(),
            requested_by: actor.key(),
            reply_to: call.inbound.reply_to.to_json(),
            steps: plan_steps(kind, None),
        };
        Ok(match self.store.enqueue(env.id, from, to, job).await? {
            Enqueued::Queued(job_id) => {
                self.wake.notify_waiters();
                let ctx = json!({"name": env.name, "job": job_id, "kind": kind.as_str()});
                let text = render::template(Some(call.spec), "queued", &ctx)
                    .unwrap_or_else(|| format!("🔧 {kind} {} queued as job {job_id}", env.name));
                Reply {
                    text,
                    job: Some(job_id),
                    ..Reply::default()
                }
            }
            refused => Reply::private(
                render::not_queued(&env.name, &kind.to_string(), &refused).unwrap_or_default(),
            ),
        })
    }
}
