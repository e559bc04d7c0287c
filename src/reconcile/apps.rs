//! The app half of the reconcile loop, against the Docker hosts: those declared
//! in `[[docker.hosts]]` and the docker-host environments live apps run on.
//!
//! Drift — a live app whose serving container is missing, or not running while
//! the app should run — is marked on the app and reported once in its thread;
//! that it matches again is reported too. Drift is reported, never repaired.
//!
//! App orphans — containers with Slipway's labels (owner, app id, one of the
//! configured teams) that no live app accounts for, because their app ended or
//! because they are left over beside the container that serves — are reported,
//! and removed after `reconcile.orphan_grace` once their labels and their app
//! have been looked at again. A container without those labels is never
//! touched, and an app with a job in progress is not judged at all: its
//! containers come and go by design.
//!
//! Each host is listed before the database is read, and the apps with a job in
//! progress are read both before and after, so a job that ran while a host was
//! being listed is seen as running.

use super::{Pass, ReconcileError, Reconciler};
use crate::domain::lifecycle::EnvState;
use crate::provider::docker::{
    self, ContainerInfo, DockerError, Host, LABEL_APP, LABEL_APP_ID, LABEL_OWNER, LABEL_TEAM, OWNER,
};
use crate::store::apps::AppRecord;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

/// Why a live app's container does not match its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppDrift {
    /// The serving container is gone (or none is recorded).
    Missing(String),
    /// It is there, but not running while the app should run.
    NotRunning(String),
}

impl AppDrift {
    pub(crate) fn describe(&self) -> &str {
        match self {
            AppDrift::Missing(d) | AppDrift::NotRunning(d) => d,
        }
    }

    /// What the owner can do about it.
    pub(crate) fn remedy(&self, app: &str, image: &str) -> String {
        match self {
            AppDrift::Missing(_) => format!(
                "/app update {app} image:{image} deploys it again; /app remove {app} cleans up"
            ),
            AppDrift::NotRunning(_) => format!(
                "/app restart {app} starts it again; /app logs {app} may show why it stopped"
            ),
        }
    }
}

/// Compares a ready or stopped app with its serving container as Docker
/// lists it on `host`. A stopped app's container may be in any state, but
/// must be there.
pub(crate) fn app_drift(
    state: EnvState,
    serving: Option<&str>,
    found: Option<&ContainerInfo>,
    host: &str,
) -> Option<AppDrift> {
    let Some(name) = serving else {
        return Some(AppDrift::Missing(format!(
            "no container of it is recorded on Docker host {host}"
        )));
    };
    match found {
        None => Some(AppDrift::Missing(format!(
            "its container {name} is missing from Docker host {host}"
        ))),
        Some(c) if state == EnvState::Ready && !c.running() => Some(AppDrift::NotRunning(format!(
            "its container {name} is {}, but it should be running",
            if c.state.is_empty() {
                "not running"
            } else {
                &c.state
            }
        ))),
        Some(_) => None,
    }
}

/// What the loop knows of a live app when it judges a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveApp {
    pub name: String,
    /// The name of the container that serves it.
    pub serving: Option<String>,
    /// A job is working on it.
    pub busy: bool,
}

/// What a container found on a Docker host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It lacks Slipway's labels, or names a team this Slipway does not have: never touched.
    NotOurs,
    /// A live app accounts for it.
    Accounted,
    /// Slipway's, and nothing accounts for it.
    Orphan { app_id: i64, why: String },
}

/// Judges one container by its labels against the live apps (by id).
pub(crate) fn judge(c: &ContainerInfo, teams: &[&str], live: &HashMap<i64, LiveApp>) -> Verdict {
    let label = |k: &str| c.labels.get(k).map(String::as_str);
    if label(LABEL_OWNER) != Some(OWNER) {
        return Verdict::NotOurs;
    }
    let Some(app_id) = label(LABEL_APP_ID).and_then(|v| v.parse::<i64>().ok()) else {
        return Verdict::NotOurs;
    };
    if !label(LABEL_TEAM).is_some_and(|t| teams.contains(&t)) {
        return Verdict::NotOurs;
    }
    match live.get(&app_id) {
        None => Verdict::Orphan {
            app_id,
            why: format!(
                "app {} (#{app_id}) is no longer live",
                label(LABEL_APP).unwrap_or("?")
            ),
        },
        Some(app) if app.busy || app.serving.as_deref() == Some(c.name.as_str()) => {
            Verdict::Accounted
        }
        Some(app) => Verdict::Orphan {
            app_id,
            why: format!(
                "a leftover container of app {}, which is served by {}",
                app.name,
                app.serving.as_deref().unwrap_or("no container")
            ),
        },
    }
}

/// A host that answered, and Slipway's containers on it.
type Listed = (Host, Vec<ContainerInfo>);

impl Reconciler {
    pub(super) async fn pass_apps(&self, pass: &mut Pass) -> Result<(), ReconcileError> {
        let mut busy = self.busy_apps().await?;
        let mut listed: Vec<Listed> = Vec::new();
        for (key, address) in self.app_hosts().await? {
            match self.list_host(&key, address).await {
                Ok(found) => listed.push(found),
                Err(e) => {
                    tracing::warn!(host = %key, error = %e, "could not list this Docker host's containers; its apps are judged next time");
                    pass.unreachable.push(key);
                }
            }
        }
        busy.extend(self.busy_apps().await?);
        let apps = self.store.list_apps(None).await?;
        self.check_app_drift(&apps, &busy, &listed, pass).await?;
        self.check_app_orphans(&apps, &busy, &listed, pass).await
    }

    /// Apps (environment ids) with a job in progress.
    async fn busy_apps(&self) -> Result<HashSet<i64>, ReconcileError> {
        Ok(self
            .store
            .unfinished_jobs()
            .await?
            .into_iter()
            .map(|j| j.env_id)
            .collect())
    }

    /// The declared hosts and the hosts live apps run on, with the address of
    /// those that are docker-host environments.
    async fn app_hosts(&self) -> Result<BTreeMap<String, Option<Ipv4Addr>>, ReconcileError> {
        let mut hosts: BTreeMap<String, Option<Ipv4Addr>> = self
            .docker
            .config
            .hosts
            .iter()
            .map(|h| (h.name.clone(), None))
            .collect();
        for app in self.store.list_apps(None).await? {
            if hosts.contains_key(&app.host) {
                continue;
            }
            let address = match docker::env_host_id(&app.host) {
                Some(id) => self
                    .store
                    .env(id)
                    .await?
                    .and_then(|e| e.address)
                    .and_then(|a| a.parse().ok()),
                None => None,
            };
            hosts.insert(app.host, address);
        }
        Ok(hosts)
    }

    async fn list_host(&self, key: &str, address: Option<Ipv4Addr>) -> Result<Listed, DockerError> {
        let host = self.docker.host(key, address)?;
        let found = host
            .containers
            .list(&[(LABEL_OWNER, OWNER.to_string())])
            .await?;
        Ok((host, found))
    }

    async fn check_app_drift(
        &self,
        apps: &[AppRecord],
        busy: &HashSet<i64>,
        listed: &[Listed],
        pass: &mut Pass,
    ) -> Result<(), ReconcileError> {
        for app in apps {
            let env = &app.env;
            if busy.contains(&env.id) || !matches!(env.state, EnvState::Ready | EnvState::Stopped) {
                continue;
            }
            let Some((host, found)) = listed.iter().find(|(h, _)| h.key == app.host) else {
                continue; // its host did not answer: nothing is known
            };
            let container = app
                .container
                .as_deref()
                .and_then(|name| found.iter().find(|c| c.name == name));
            let drift = app_drift(env.state, app.container.as_deref(), container, &host.key);
            let described = drift.as_ref().map(|d| d.describe().to_string());
            if !self.store.set_drift(env.id, described).await? {
                continue;
            }
            let text = match &drift {
                Some(d) => {
                    pass.apps_drifted.push(env.name.clone());
                    tracing::warn!(app = %env.name, drift = %d.describe(), "app drift");
                    format!(
                        "⚠️ @{} {} has drifted: {}. /app info {} shows it; {}.",
                        env.owner_display,
                        env.name,
                        d.describe(),
                        env.name,
                        d.remedy(&env.name, &app.image)
                    )
                }
                None => format!("✅ {} matches Docker again.", env.name),
            };
            self.tell(env, text).await;
        }
        Ok(())
    }

    async fn check_app_orphans(
        &self,
        apps: &[AppRecord],
        busy: &HashSet<i64>,
        listed: &[Listed],
        pass: &mut Pass,
    ) -> Result<(), ReconcileError> {
        let teams: Vec<&str> = self
            .config
            .teams
            .iter()
            .map(|t| t.name.0.as_str())
            .collect();
        let live: HashMap<i64, LiveApp> = apps
            .iter()
            .map(|a| {
                let app = LiveApp {
                    name: a.env.name.clone(),
                    serving: a.container.clone(),
                    busy: busy.contains(&a.env.id),
                };
                (a.env.id, app)
            })
            .collect();
        for (host, found) in listed {
            let mut present = Vec::new();
            for c in found {
                if let Verdict::Orphan { app_id, why } = judge(c, &teams, &live) {
                    present.push(c.id.clone());
                    self.app_orphan(host, c, app_id, &why, pass).await?;
                }
            }
            self.store
                .forget_app_orphans_except(host.key.clone(), present)
                .await?;
        }
        Ok(())
    }

    /// Remembers an app orphan, reports it the first time, and removes it once
    /// the grace period has passed. A Docker failure is retried next pass.
    async fn app_orphan(
        &self,
        host: &Host,
        c: &ContainerInfo,
        app_id: i64,
        why: &str,
        pass: &mut Pass,
    ) -> Result<(), ReconcileError> {
        let now = self.clock.now();
        let grace = self.config.reconcile.orphan_grace.as_secs() as i64;
        let shown = format!("{}/{}", host.key, c.name);
        pass.app_orphans.push(shown.clone());
        let (key, id) = (host.key.clone(), c.id.clone());
        let orphan = self
            .store
            .see_app_orphan(key.clone(), id.clone(), c.name.clone(), app_id, now)
            .await?;
        let audit = |outcome: &str, detail: String| {
            self.store.audit(
                "slipway:reconcile".into(),
                "reconcile.app_orphan".into(),
                format!("container {shown}"),
                outcome.into(),
                detail,
            )
        };
        if !orphan.reported {
            tracing::warn!(host = %host.key, container = %c.name, app_id, why = %why, "app orphan: a container with Slipway's labels that no live app accounts for");
            audit(
                "reported",
                format!("{why}; removed after {grace}s unless an app claims it"),
            )
            .await?;
            self.store
                .app_orphan_reported(key.clone(), id.clone())
                .await?;
        }
        if !self.config.reconcile.remove_orphans || now - orphan.first_seen < grace {
            return Ok(());
        }
        match self.remove_app_orphan(host, c, app_id).await {
            Ok(true) => {
                self.store.app_orphan_removed(key, id, now).await?;
                audit("removed", String::new()).await?;
                pass.apps_removed.push(shown);
            }
            Ok(false) => {}
            Err(ReconcileError::Docker(e)) => {
                tracing::warn!(container = %shown, error = %e, "could not remove an app orphan; trying again next time");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Stops and removes an app orphan after looking once more: it must still
    /// carry Slipway's labels for the same app, and that app must still not
    /// account for it. Frees the host port it held.
    async fn remove_app_orphan(
        &self,
        host: &Host,
        c: &ContainerInfo,
        app_id: i64,
    ) -> Result<bool, ReconcileError> {
        let Some(now) = host.containers.inspect(&c.id).await? else {
            return Ok(false);
        };
        let label = |k: &str| now.labels.get(k).map(String::as_str);
        if label(LABEL_OWNER) != Some(OWNER) || label(LABEL_APP_ID) != Some(&app_id.to_string()) {
            return Ok(false);
        }
        if let Some(app) = self.store.app(app_id).await? {
            let serving = app.container.as_deref() == Some(now.name.as_str());
            if !app.env.state.is_ended() && (serving || self.busy_apps().await?.contains(&app_id)) {
                return Ok(false);
            }
        }
        host.containers
            .remove(&c.id, self.docker.config.stop_timeout)
            .await?;
        self.store
            .release_app_port(host.key.clone(), now.name.clone())
            .await?;
        tracing::info!(host = %host.key, container = %now.name, "app orphan removed");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, state: &str, labels: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: format!("id-{name}"),
            name: name.into(),
            state: state.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ContainerInfo::default()
        }
    }

    fn ours(name: &str, app_id: &str) -> ContainerInfo {
        container(
            name,
            "running",
            &[
                (LABEL_OWNER, OWNER),
                (LABEL_APP_ID, app_id),
                (LABEL_APP, "shop"),
                (LABEL_TEAM, "web"),
            ],
        )
    }

    fn live(serving: &str, busy: bool) -> HashMap<i64, LiveApp> {
        HashMap::from([(
            7,
            LiveApp {
                name: "shop".into(),
                serving: Some(serving.into()),
                busy,
            },
        )])
    }

    const TEAMS: &[&str] = &["web"];

    #[test]
    fn the_serving_container_of_a_live_app_is_accounted_for() {
        let c = ours("slipway-app-7-3", "7");
        assert_eq!(
            judge(&c, TEAMS, &live("slipway-app-7-3", false)),
            Verdict::Accounted
        );
    }

    #[test]
    fn a_container_of_an_app_that_is_no_longer_live_is_an_orphan() {
        let c = ours("slipway-app-9-4", "9");
        match judge(&c, TEAMS, &live("slipway-app-7-3", false)) {
            Verdict::Orphan { app_id, why } => {
                assert_eq!(app_id, 9);
                assert!(why.contains("app shop (#9) is no longer live"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_leftover_beside_the_serving_container_is_an_orphan_unless_a_job_works_on_the_app() {
        let old = ours("slipway-app-7-2", "7");
        assert!(matches!(
            judge(&old, TEAMS, &live("slipway-app-7-3", false)),
            Verdict::Orphan { app_id: 7, .. }
        ));
        assert_eq!(
            judge(&old, TEAMS, &live("slipway-app-7-3", true)),
            Verdict::Accounted
        );
    }

    #[test]
    fn a_container_without_all_of_slipways_labels_is_never_ours() {
        let none = HashMap::new();
        let cases = [
            container("web", "running", &[]),
            container(
                "x",
                "running",
                &[
                    (LABEL_OWNER, "someone-else"),
                    (LABEL_APP_ID, "9"),
                    (LABEL_TEAM, "web"),
                ],
            ),
            container("y", "running", &[(LABEL_OWNER, OWNER), (LABEL_TEAM, "web")]),
            container(
                "z",
                "running",
                &[
                    (LABEL_OWNER, OWNER),
                    (LABEL_APP_ID, "nine"),
                    (LABEL_TEAM, "web"),
                ],
            ),
            container("w", "running", &[(LABEL_OWNER, OWNER), (LABEL_APP_ID, "9")]),
            container(
                "v",
                "running",
                &[
                    (LABEL_OWNER, OWNER),
                    (LABEL_APP_ID, "9"),
                    (LABEL_TEAM, "other"),
                ],
            ),
        ];
        for c in cases {
            assert_eq!(judge(&c, TEAMS, &none), Verdict::NotOurs, "{}", c.name);
        }
    }

    #[test]
    fn a_ready_app_whose_container_is_gone_has_drifted_and_can_be_deployed_again() {
        let d = app_drift(EnvState::Ready, Some("slipway-app-7-3"), None, "local").unwrap();
        assert_eq!(
            d.describe(),
            "its container slipway-app-7-3 is missing from Docker host local"
        );
        assert!(d
            .remedy("shop", "web:v1")
            .contains("/app update shop image:web:v1"));
    }

    #[test]
    fn a_ready_app_whose_container_exited_has_drifted_but_a_stopped_one_has_not() {
        let exited = container("slipway-app-7-3", "exited", &[]);
        let d = app_drift(
            EnvState::Ready,
            Some("slipway-app-7-3"),
            Some(&exited),
            "local",
        )
        .unwrap();
        assert_eq!(
            d,
            AppDrift::NotRunning(
                "its container slipway-app-7-3 is exited, but it should be running".into()
            )
        );
        assert!(d.remedy("shop", "web:v1").contains("/app restart shop"));
        assert_eq!(
            app_drift(
                EnvState::Stopped,
                Some("slipway-app-7-3"),
                Some(&exited),
                "local"
            ),
            None
        );
    }

    #[test]
    fn a_stopped_app_whose_container_is_gone_has_drifted() {
        assert!(matches!(
            app_drift(EnvState::Stopped, Some("slipway-app-7-3"), None, "local"),
            Some(AppDrift::Missing(_))
        ));
    }

    #[test]
    fn a_running_container_of_a_ready_app_matches() {
        let running = container("slipway-app-7-3", "running", &[]);
        assert_eq!(
            app_drift(
                EnvState::Ready,
                Some("slipway-app-7-3"),
                Some(&running),
                "local"
            ),
            None
        );
    }
}
