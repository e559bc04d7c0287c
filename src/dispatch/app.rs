//! Handlers of `/app …`: deploy (validated, then decided and reserved like an
//! environment's create), list, info, logs, restart, stop, start, update and
//! remove. What a
//! value may be is decided in [`crate::domain::app`]; variable values that
//! look like secrets are never part of a reply.

use super::{Call, Dispatcher};
use crate::chat::{render, Reply};
use crate::domain::app::{self, AccessRules, AppOptions, EnvVars, HostAccess, ImageRef};
use crate::domain::domain_name::Domain;
use crate::domain::lifecycle::{EnvState, JobKind, Step};
use crate::domain::names::EnvName;
use crate::domain::policy;
use crate::domain::quota::Resources;
use crate::domain::team::Team;
use crate::provider::docker::{self, Host};
use crate::store::apps::{Access, AppRecord, NewApp};
use crate::store::envs::{NewEnv, Submitted};
use crate::store::jobs::{Enqueued, NewJob};
use crate::store::StoreError;
use serde_json::json;
use std::net::Ipv4Addr;

/// The most log lines `/app logs` shows.
const MAX_LOG_LINES: i64 = 200;
/// Chat messages are short (Discord: 2000 characters).
const MAX_LOG_CHARS: usize = 1800;

/// A deploy request that passed validation.
struct Deploy<'a> {
    name: EnvName,
    image: ImageRef,
    team: &'a Team,
    host_key: String,
    host_label: String,
    address: Ipv4Addr,
    vars: EnvVars,
    port: u16,
    health_path: String,
    resources: Resources,
    domain: Option<Domain>,
    access: Access,
}

pub(crate) fn app_plan(kind: JobKind, opts: AppOptions) -> Vec<Step> {
    app::plan(kind, opts)
}

impl Dispatcher {
    /// Finds the host `host:` names for the team: a declared one it may use,
    /// or a ready docker-host environment of the team.
    async fn resolve_host(
        &self,
        raw: Option<&str>,
        team: &Team,
    ) -> Result<Result<(String, String, Ipv4Addr, bool), String>, StoreError> {
        let declared = |name: &str| {
            self.docker
                .for_team(&team.name.0)
                .find(|h| h.name == name)
                .map(|h| {
                    (
                        h.name.clone(),
                        h.name.clone(),
                        h.address,
                        h.allow_host_access,
                    )
                })
        };
        let Some(raw) = raw else {
            return Ok(self
                .docker
                .for_team(&team.name.0)
                .next()
                .map(|h| (h.name.clone(), h.name.clone(), h.address, h.allow_host_access))
                .ok_or_else(|| {
                    format!(
                        "host: team {} has no Docker host; name a docker-host environment with host:ENV, or ask an admin to declare one in [[docker.hosts]]",
                        team.name
                    )
                }));
        };
        if let Some(found) = declared(raw) {
            return Ok(Ok(found));
        }
        let env = self.store.env_by_name(raw.to_string()).await?;
        Ok(match env {
            Some(e) if e.team == team.name.0 && !e.is_app() && self.is_docker_host(&e.profile) => {
                match (e.state, e.address.as_deref().and_then(|a| a.parse().ok())) {
                    (EnvState::Ready, Some(address)) => Ok((
                        docker::env_host_key(e.id),
                        format!("{} (docker-host environment)", e.name),
                        address,
                        false,
                    )),
                    (EnvState::Ready, None) => Err(format!(
                        "host: {} has no address yet; /env info {} shows it",
                        e.name, e.name
                    )),
                    (state, _) => Err(format!("host: {} is {state}, not ready", e.name)),
                }
            }
            _ => Err(format!(
                "host: {} is neither a Docker host team {} may use nor one of its docker-host environments",
                crate::domain::names::shown(raw),
                team.name
            )),
        })
    }

    /// A docker-host environment is one whose profile has Slipway sign
    /// dockerd's certificate (`docker_tls = true`, as `docker-host` does).
    fn is_docker_host(&self, profile: &str) -> bool {
        self.catalog
            .profiles
            .iter()
            .any(|p| p.name == profile && p.docker_tls)
    }

    async fn validate_deploy<'a>(
        &'a self,
        call: &Call<'a>,
    ) -> Result<Result<Deploy<'a>, String>, StoreError> {
        macro_rules! tri {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                }
            };
        }
        let name = tri!(EnvName::parse(call.str("name").unwrap_or_default()).map_err(|e| e.0));
        let image = tri!(ImageRef::parse(call.str("image").unwrap_or_default()).map_err(|e| e.0));
        let team = match call.str("team") {
            Some(t) => *tri!(call
                .teams
                .iter()
                .find(|team| team.name.0 == t)
                .ok_or_else(|| format!("team: you are not a member of team {t}"))),
            None => call.teams[0],
        };
        let vars = tri!(EnvVars::parse(call.strs("env")).map_err(|e| e.0));
        let (host_key, host_label, address, host_allows) =
            tri!(self.resolve_host(call.str("host"), team).await?);
        let cfg = &self.docker.config;
        let health_path = call
            .str("health")
            .map(str::to_string)
            .unwrap_or_else(|| cfg.health_path.clone());
        if !health_path.starts_with('/') || health_path.contains(char::is_whitespace) {
            return Ok(Err(format!(
                "health: {} is not a path such as /healthz",
                crate::domain::names::shown(&health_path)
            )));
        }
        let access = HostAccess {
            volumes: call.strs("volume").iter().map(|s| s.to_string()).collect(),
            privileged: call.flag("privileged"),
            host_network: call.str("network") == Some("host"),
            devices: call.strs("device").iter().map(|s| s.to_string()).collect(),
        };
        let rules = AccessRules {
            requester_is_admin: team.is_admin(call.actor()),
            host_allows,
        };
        let mounts = tri!(app::check_access(&access, rules).map_err(|e| e.0));
        let shares_network = self.docker.config.hosts.iter().any(|h| {
            h.name == host_key && matches!(h.network, docker::config::HostNetwork::Host { .. })
        });
        if access.host_network && !shares_network {
            return Ok(Err(format!(
                "network: {host_label} runs apps on Docker's bridge, where an app cannot be given the host's network; leave network out, or deploy to a host declared with network = \"host\""
            )));
        }
        let domain = match call.str("domain") {
            None => None,
            Some(raw) => {
                if self.config.publish.router.is_none() {
                    return Ok(Err(
                        "domain: publishing is not configured here; ask an admin to set up [publish]".into(),
                    ));
                }
                Some(tri!(
                    Domain::parse(raw, &self.config.publish.zones).map_err(|e| e.0)
                ))
            }
        };
        let resources = Resources {
            cores: call.int("cpu").map(|c| c as u32).unwrap_or(cfg.default_cpu),
            memory_mb: call
                .int("memory")
                .map(|m| m as u32)
                .unwrap_or(cfg.default_memory_mb),
            swap_mb: 0,
            disk_gb: 0,
        };
        Ok(Ok(Deploy {
            name,
            image,
            team,
            host_key,
            host_label,
            address,
            vars,
            port: call
                .int("port")
                .map(|p| p as u16)
                .unwrap_or(cfg.default_port),
            health_path,
            resources,
            domain,
            access: Access {
                binds: mounts.iter().map(|m| m.bind()).collect(),
                privileged: access.privileged,
                host_network: access.host_network,
                devices: access.devices,
            },
        }))
    }

    pub(super) async fn app_deploy(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let d = match self.validate_deploy(call).await? {
            Ok(d) => d,
            Err(msg) => {
                self.store
                    .audit(
                        call.actor().key(),
                        call.spec.action.name().into(),
                        call.str("name").unwrap_or_default().to_string(),
                        "refused".into(),
                        msg.clone(),
                    )
                    .await?;
                return Ok(Reply::private(format!("⚠️ {msg}")));
            }
        };
        let actor = call.actor();
        let opts = AppOptions::for_app(d.domain.is_some(), &self.config.publish);
        let new = NewEnv {
            name: d.name.to_string(),
            team: d.team.name.0.clone(),
            owner: actor.key(),
            owner_display: actor.display.clone(),
            profile: app::APP_PROFILE.into(),
            node: d.host_key.clone(),
            resources: d.resources,
            request_key: call.inbound.event_id.clone(),
            ttl_secs: None,
            announce_to: call.inbound.reply_to.to_json(),
            domain: d.domain.as_ref().map(|x| x.to_string()),
        };
        let details = NewApp {
            host: d.host_key.clone(),
            image: d.image.to_string(),
            vars: d.vars.clone(),
            port: d.port,
            health_path: d.health_path.clone(),
            access: d.access.clone(),
            address: d.address.to_string(),
        };
        let job = NewJob {
            kind: JobKind::Create,
            idempotency_key: call.inbound.event_id.clone(),
            requested_by: actor.key(),
            reply_to: call.inbound.reply_to.to_json(),
            steps: app_plan(JobKind::Create, opts),
        };
        let over = d.team.over_quota;
        let decide = move |c: &crate::domain::quota::QuotaCheck| {
            policy::decide_create(c, over, app::APP_PROFILE, false)
        };
        let quota = d.team.quota.clone();
        let submitted = self
            .store
            .submit_app(new, details, quota, decide, job)
            .await?;
        let ctx = json!({
            "name": d.name.as_str(), "image": d.image.as_str(), "team": d.team.name.0,
            "host": d.host_label, "cores": d.resources.cores, "memory_mb": d.resources.memory_mb,
            "env": d.vars.shown(),
        });
        Ok(match submitted {
            Submitted::Queued { job_id, check, .. } => {
                self.wake.notify_waiters();
                let mut ctx = ctx;
                ctx["job"] = json!(job_id);
                ctx["quota"] = json!(render::quota_change(&check));
                let text = render::template(Some(call.spec), "queued", &ctx).unwrap_or_else(|| {
                    format!(
                        "🚀 Deploying {} ({}) on {} as job {job_id}. env: {}. Quota: {}",
                        d.name, d.image, d.host_label, d.vars.shown(), render::quota_change(&check)
                    )
                });
                Reply { text, job: Some(job_id), ..Reply::default() }
            }
            Submitted::Pending { approval_id, reason, .. } => Reply {
                text: format!(
                    "🕓 Request #{approval_id} to deploy {} waits for a team admin: {}. An admin decides with /approve {approval_id} or /deny {approval_id} <reason>.",
                    d.name,
                    reason.describe()
                ),
                approval: Some(approval_id),
                ..Reply::default()
            },
            Submitted::Denied { reason } => Reply::private(format!("⛔ {} was not deployed: {reason}", d.name)),
            Submitted::Duplicate { env_id } => Reply::private(format!(
                "This request was already received (app {env_id}); nothing new was deployed."
            )),
            Submitted::DomainTaken { name } => Reply::private(format!(
                "⚠️ domain: {} is already published for {name}; pick another domain",
                d.domain.as_ref().map(|x| x.to_string()).unwrap_or_default()
            )),
            Submitted::NameTaken { state } => Reply::private(format!(
                "⚠️ name: {} is already taken by an app or environment ({state}); pick another name",
                d.name
            )),
        })
    }

    /// The live app `name` if the caller's teams own it.
    async fn visible_app(&self, call: &Call<'_>) -> Result<Result<AppRecord, Reply>, StoreError> {
        let raw = call.str("name").unwrap_or_default().to_string();
        let env = self.store.env_by_name(raw.clone()).await?;
        let app = match env {
            Some(e) if e.is_app() && call.teams.iter().any(|t| t.name.0 == e.team) => {
                self.store.app(e.id).await?
            }
            _ => None,
        };
        Ok(app.ok_or_else(|| {
            Reply::private(format!(
                "⚠️ name: there is no app {} in your teams; /app list shows yours",
                crate::domain::names::shown(&raw)
            ))
        }))
    }

    fn host_for(&self, app: &AppRecord, env_address: Option<Ipv4Addr>) -> Result<Host, String> {
        self.docker
            .host(&app.host, env_address)
            .map_err(|e| e.to_string())
    }

    async fn env_host_address(&self, app: &AppRecord) -> Result<Option<Ipv4Addr>, StoreError> {
        Ok(match docker::env_host_id(&app.host) {
            Some(id) => self
                .store
                .env(id)
                .await?
                .and_then(|e| e.address)
                .and_then(|a| a.parse().ok()),
            None => None,
        })
    }

    pub(super) async fn app_list(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let mut apps = Vec::new();
        for t in &call.teams {
            apps.extend(self.store.list_apps(Some(t.name.0.clone())).await?);
        }
        if apps.is_empty() {
            return Ok(Reply::private(
                "No apps yet. Deploy one with /app deploy image:REF name:NAME",
            ));
        }
        let lines: Vec<String> = apps
            .iter()
            .map(|a| {
                format!(
                    "• {} — {} — {} on {} — team {}{}",
                    a.env.name,
                    a.env.state,
                    a.image,
                    a.host,
                    a.env.team,
                    a.env
                        .domain
                        .as_deref()
                        .map(|d| format!(" — https://{d}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        Ok(Reply::private(lines.join("\n")))
    }

    pub(super) async fn app_info(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let app = match self.visible_app(call).await? {
            Ok(a) => a,
            Err(reply) => return Ok(reply),
        };
        let mut lines = vec![
            format!(
                "📦 {} — {} — team {}, owner {}",
                app.env.name, app.env.state, app.env.team, app.env.owner_display
            ),
            format!(
                "  image {} on {}, {}, {} MB",
                app.image,
                app.host,
                render::cores(app.env.resources.cores),
                app.env.resources.memory_mb
            ),
            format!("  env: {}", app.vars.shown()),
        ];
        if let Some(d) = &app.env.domain {
            lines.push(format!("  URL https://{d}"));
        }
        if let Some(next) = &app.next_image {
            lines.push(format!("  updating to {next}"));
        }
        if let Some(drift) = self.store.drift(app.env.id).await? {
            lines.push(format!("  ⚠️ drift: {drift}"));
        }
        let live = match (&app.container, self.env_host_address(&app).await?) {
            (Some(name), address) => match self.host_for(&app, address) {
                Ok(host) => match host.containers.inspect(name).await {
                    Ok(Some(i)) => format!(
                        "  live: {}{}{}",
                        i.state,
                        uptime(i.started_at.as_deref(), i.running())
                            .map(|u| format!(", up {u}"))
                            .unwrap_or_default(),
                        // Where the router reaches it: for trying it before DNS.
                        app.upstream_port
                            .map(|p| format!(", backend http://{}:{p}/", host.address))
                            .unwrap_or_default()
                    ),
                    Ok(None) => format!("  live: its container {name} is missing on the host"),
                    Err(e) => format!("  live: could not ask Docker: {e}"),
                },
                Err(e) => format!("  live: {e}"),
            },
            (None, _) => "  live: no container yet".into(),
        };
        lines.push(live);
        Ok(Reply::private(lines.join("\n")))
    }

    pub(super) async fn app_logs(&self, call: &Call<'_>) -> Result<Reply, StoreError> {
        let app = match self.visible_app(call).await? {
            Ok(a) => a,
            Err(reply) => return Ok(reply),
        };
        let lines = call.int("lines").unwrap_or(20).clamp(1, MAX_LOG_LINES) as u32;
        let Some(name) = app.container.clone() else {
            return Ok(Reply::private(format!(
                "{} has no container yet",
                app.env.name
            )));
        };
        let address = self.env_host_address(&app).await?;
        let host = match self.host_for(&app, address) {
            Ok(h) => h,
            Err(e) => return Ok(Reply::private(format!("⚠️ {e}"))),
        };
        Ok(match host.containers.logs(&name, lines).await {
            Ok(log) => {
                let mut text = log.join("\n");
                if text.len() > MAX_LOG_CHARS {
                    let cut = text.ceil_char_boundary(text.len() - MAX_LOG_CHARS);
                    text = format!("…{}", &text[cut..]);
                }
                Reply::private(format!(
                    "📜 last {lines} lines of {}:\n```\n{text}\n```",
                    app.env.name
                ))
            }
            Err(e) => Reply::private(format!("⚠️ could not read the logs: {e}")),
        })
    }

    /// An update makes a new container with the app's stored access: checked
    /// again against who asks now and what the host allows now (an admin who
    /// was demoted, or a host that stopped allowing it, gets no new one).
    fn access_still_granted(&self, call: &Call<'_>, app: &AppRecord) -> Result<(), String> {
        let access = HostAccess {
            volumes: app.access.binds.clone(),
            privileged: app.access.privileged,
            host_network: app.access.host_network,
            devices: app.access.devices.clone(),
        };
        let rules = AccessRules {
            requester_is_admin: self
                .config
                .team(&app.env.team)
                .is_some_and(|t| t.is_admin(call.actor())),
            host_allows: self
                .docker
                .config
                .hosts
                .iter()
                .any(|h| h.name == app.host && h.allow_host_access),
        };
        app::check_access(&access, rules).map(drop).map_err(|e| {
            format!(
                "⚠️ {}: the update would make a new container with what it was granted, and that is {}. Nothing was changed.",
                app.env.name, e.0
            )
        })
    }

    /// Restart, stop, start, update or remove: the owner or a team admin queues the job.
    pub(super) async fn app_job(
        &self,
        call: &Call<'_>,
        kind: JobKind,
    ) -> Result<Reply, StoreError> {
        let app = match self.visible_app(call).await? {
            Ok(a) => a,
            Err(reply) => return Ok(reply),
        };
        let env = &app.env;
        if let Err(refusal) = call.may_act_on(env, "do that") {
            return Ok(refusal);
        }
        let actor = call.actor();
        const READY: &[EnvState] = &[EnvState::Ready];
        const STOPPED: &[EnvState] = &[EnvState::Stopped];
        // Destroying too: a remove that failed half-way can be asked for again.
        const LIVE: &[EnvState] = &[EnvState::Ready, EnvState::Stopped, EnvState::Destroying];
        let opts = AppOptions::for_app(env.domain.is_some(), &self.config.publish);
        let what = match kind {
            JobKind::Destroy => "remove",
            other => other.as_str(),
        };
        let job = NewJob {
            kind,
            idempotency_key: call.inbound.event_id.clone(),
            requested_by: actor.key(),
            reply_to: call.inbound.reply_to.to_json(),
            steps: app_plan(kind, opts),
        };
        let mut image = None;
        let enqueued = match kind {
            JobKind::Update => {
                let parsed = match ImageRef::parse(call.str("image").unwrap_or_default()) {
                    Ok(i) => i,
                    Err(e) => return Ok(Reply::private(format!("⚠️ {}", e.0))),
                };
                if let Err(why) = self.access_still_granted(call, &app) {
                    return Ok(Reply::private(why));
                }
                image = Some(parsed.to_string());
                self.store
                    .enqueue_update(env.id, parsed.to_string(), job)
                    .await?
            }
            JobKind::Restart | JobKind::Stop => {
                self.store.enqueue(env.id, READY, None, job).await?
            }
            JobKind::Start => self.store.enqueue(env.id, STOPPED, None, job).await?,
            _ => {
                self.store
                    .enqueue(env.id, LIVE, Some(EnvState::Destroying), job)
                    .await?
            }
        };
        Ok(match enqueued {
            Enqueued::Queued(job_id) => {
                self.wake.notify_waiters();
                let text = match &image {
                    Some(i) => format!(
                        "🔁 Updating {} from {} to {i} as job {job_id}: the new container starts beside the old one and takes over once healthy.",
                        env.name, app.image
                    ),
                    None => format!("🔧 {what} {} queued as job {job_id}", env.name),
                };
                Reply {
                    text,
                    job: Some(job_id),
                    ..Reply::default()
                }
            }
            refused => {
                Reply::private(render::not_queued(&env.name, what, &refused).unwrap_or_default())
            }
        })
    }
}

/// "3m 12s" since Docker's RFC 3339 start time, for a running container.
fn uptime(started_at: Option<&str>, running: bool) -> Option<String> {
    if !running {
        return None;
    }
    let started = humantime::parse_rfc3339_weak(started_at?).ok()?;
    let up = std::time::SystemTime::now().duration_since(started).ok()?;
    Some(render::duration(std::time::Duration::from_secs(
        up.as_secs(),
    )))
}
