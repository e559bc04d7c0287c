//! The steps of app jobs: pull the image, create and start the container,
//! check its health, switch the route to it (blue-green), remove the old one,
//! restart, stop, start, remove — and their compensation. Like every step
//! they look before they act: a container is named after its app and job
//! (`slipway-app-<app>-<job>`) and labelled, so a resumed step finds what it
//! made before a crash; only containers with the app's labels are removed.

use super::data::{AppContainerData, PullImageData, Serving, StartAppData, SwitchRouteData};
use super::{JobRun, StepCx, StepError};
use crate::domain::app::{ImageRef, REDACTED};
use crate::domain::lifecycle::{JobKind, Step, StepState};
use crate::provider::docker::{
    self, AppContainer, DockerError, Host, HostNetwork, Networking, LABEL_APP, LABEL_APP_ID,
    LABEL_JOB, LABEL_OWNER, LABEL_REQUEST, LABEL_TEAM, OWNER,
};
use crate::store::apps::AppRecord;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

impl From<DockerError> for StepError {
    fn from(e: DockerError) -> Self {
        StepError(e.to_string())
    }
}

/// The container a job creates.
fn container_name(app_id: i64, job_id: i64) -> String {
    format!("slipway-app-{app_id}-{job_id}")
}

impl StepCx<'_> {
    async fn app_of(&self, run: &JobRun) -> Result<AppRecord, StepError> {
        self.store
            .app(run.env.id)
            .await?
            .ok_or_else(|| StepError(format!("{} has no app record", run.env.name)))
    }

    async fn host_of(&self, app: &AppRecord) -> Result<Host, StepError> {
        let env_address = match docker::env_host_id(&app.host) {
            Some(id) => self
                .store
                .env(id)
                .await?
                .and_then(|e| e.address)
                .and_then(|a| a.parse::<Ipv4Addr>().ok()),
            None => None,
        };
        Ok(self.docker.host(&app.host, env_address)?)
    }

    /// The image this job deploys: the app's for a deploy, the new one for an update.
    fn job_image(run: &JobRun, app: &AppRecord) -> Result<String, StepError> {
        let raw = match run.job.kind {
            JobKind::Update => app.next_image.clone().ok_or_else(|| {
                StepError(
                    "the update's image is no longer recorded; ask for the update again".into(),
                )
            })?,
            _ => app.image.clone(),
        };
        // Stored values were parsed at request time; normalize as Docker stores them.
        Ok(ImageRef::parse(&raw).map(|i| i.normalized()).unwrap_or(raw))
    }

    /// The app and the Docker host it runs on.
    async fn app_and_host(&self, run: &JobRun) -> Result<(AppRecord, Host), StepError> {
        let app = self.app_of(run).await?;
        let host = self.host_of(&app).await?;
        Ok((app, host))
    }

    pub(super) async fn pull_image(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let (app, host) = self.app_and_host(run).await?;
        let image = Self::job_image(run, &app)?;
        if host.containers.image_present(&image).await? {
            run.set_data(i, &PullImageData { present: true });
        } else {
            self.store
                .log(
                    run.job.id,
                    "info",
                    format!("pulling {image} on {}", host.key),
                )
                .await?;
            host.containers.pull(&image).await.map_err(|e| {
                StepError(format!(
                    "could not pull {image}: {e}; check the reference and that the host can reach its registry"
                ))
            })?;
        }
        Ok(StepState::Done)
    }

    pub(super) async fn start_app_container(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let (_, host) = self.app_and_host(run).await?;
        let name = self.job_container(run)?;
        host.containers.start(&name).await?;
        let upstream = match host.network {
            HostNetwork::Host { .. } => self.job_port(run)?,
            HostNetwork::Bridge => host
                .containers
                .inspect(&name)
                .await?
                .and_then(|i| i.published_port)
                .ok_or_else(|| StepError(format!("Docker published no port for {name}")))?,
        };
        run.set_data(
            i,
            &StartAppData {
                upstream: Some(upstream),
            },
        );
        Ok(StepState::Done)
    }

    /// `check_health`: the new container answers; a create's first container
    /// serves as soon as it does.
    pub(super) async fn check_new_container(
        &self,
        run: &mut JobRun,
    ) -> Result<StepState, StepError> {
        let (app, host) = self.app_and_host(run).await?;
        let (name, port) = (self.job_container(run)?, self.job_upstream(run)?);
        self.check_health(&app, &host, &name, port, "the new container")
            .await?;
        if run.job.kind == JobKind::Create {
            let image = Self::job_image(run, &app)?;
            self.store
                .set_app_serving(run.env.id, name, port, image)
                .await?;
        }
        Ok(StepState::Done)
    }

    pub(super) async fn remove_old_container(
        &self,
        run: &mut JobRun,
    ) -> Result<StepState, StepError> {
        let (_, host) = self.app_and_host(run).await?;
        let previous = run
            .output_of::<SwitchRouteData>(&Step::SwitchRoute)?
            .and_then(|d| d.previous)
            .and_then(|p| p.container);
        if let Some(old) = previous {
            // Requests in flight on the old container finish first.
            tokio::time::sleep(self.docker.config.grace).await;
            // Traffic has moved: a failure here must not roll the switch
            // back onto a container that may be half gone.
            match host
                .containers
                .remove(&old, self.docker.config.stop_timeout)
                .await
            {
                Ok(()) => self.store.release_app_port(host.key.clone(), old).await?,
                Err(e) => {
                    tracing::warn!(job = run.job.id, container = %old, error = %e, "old container not removed");
                    self.store
                        .log(
                            run.job.id,
                            "warn",
                            format!("could not remove the old container {old} ({e}); /app remove or `docker rm` clears it"),
                        )
                        .await?;
                }
            }
        }
        self.store.clear_next_image(run.env.id).await?;
        Ok(StepState::Done)
    }

    pub(super) async fn restart_app(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let (app, host) = self.app_and_host(run).await?;
        let name = self.serving_container(run, &app, &host).await?;
        host.containers
            .restart(&name, self.docker.config.stop_timeout)
            .await?;
        self.follow_port(run, &app, &host, &name).await?;
        Ok(StepState::Done)
    }

    pub(super) async fn stop_app(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let (app, host) = self.app_and_host(run).await?;
        let name = self.serving_container(run, &app, &host).await?;
        host.containers
            .stop(&name, self.docker.config.stop_timeout)
            .await?;
        Ok(StepState::Done)
    }

    pub(super) async fn remove_app_containers(
        &self,
        run: &mut JobRun,
    ) -> Result<StepState, StepError> {
        let (_, host) = self.app_and_host(run).await?;
        let mine = [(LABEL_APP_ID, run.env.id.to_string())];
        for found in host.containers.list(&mine).await? {
            if found.labels.get(LABEL_OWNER).map(String::as_str) == Some(OWNER) {
                host.containers
                    .remove(&found.id, self.docker.config.stop_timeout)
                    .await?;
            }
        }
        self.store.release_app_ports(run.env.id).await?;
        Ok(StepState::Done)
    }

    fn job_container(&self, run: &JobRun) -> Result<String, StepError> {
        Ok(container_name(run.env.id, run.job.id))
    }

    fn job_port(&self, run: &JobRun) -> Result<u16, StepError> {
        run.output_of::<AppContainerData>(&Step::CreateAppContainer)?
            .and_then(|d| d.port)
            .ok_or_else(|| StepError("the new container's port was not recorded".into()))
    }

    fn job_upstream(&self, run: &JobRun) -> Result<u16, StepError> {
        run.output_of::<StartAppData>(&Step::StartAppContainer)?
            .and_then(|d| d.upstream)
            .ok_or_else(|| StepError("the new container's published port was not recorded".into()))
    }

    pub(super) async fn create_app_container(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let (app, host) = self.app_and_host(run).await?;
        let (app, host) = (&app, &host);
        let name = self.job_container(run)?;
        run.set_data(
            i,
            &AppContainerData {
                container: Some(name.clone()),
                ..AppContainerData::default()
            },
        );
        let networking = match host.network {
            HostNetwork::Host { first, last } => {
                let port = self
                    .store
                    .allocate_app_port(host.key.clone(), run.env.id, name.clone(), first..=last)
                    .await?
                    .ok_or_else(|| {
                        StepError(format!(
                            "host {} has no free port left in {first}-{last}; remove an app or ask an admin to widen docker.hosts.ports",
                            host.key
                        ))
                    })?;
                run.set_data(
                    i,
                    &AppContainerData {
                        port: Some(port),
                        ..run.data(i)?
                    },
                );
                Networking::Host { port }
            }
            HostNetwork::Bridge => Networking::Bridge {
                port: app.port,
                bind: host.address,
            },
        };
        self.checkpoint(run, i).await?;
        if let Some(existing) = host.containers.inspect(&name).await? {
            if existing.labels.get(LABEL_APP_ID) == Some(&run.env.id.to_string()) {
                // Created before a crash, before this step was marked done.
                return Ok(StepState::Done);
            }
            return Err(StepError(format!(
                "a container called {name} exists and is not this app's; remove it by hand"
            )));
        }
        let labels = BTreeMap::from([
            (LABEL_OWNER.to_string(), OWNER.to_string()),
            (LABEL_APP_ID.to_string(), run.env.id.to_string()),
            (LABEL_APP.to_string(), run.env.name.clone()),
            (LABEL_TEAM.to_string(), run.env.team.clone()),
            (LABEL_REQUEST.to_string(), run.job.requested_by.clone()),
            (LABEL_JOB.to_string(), run.job.id.to_string()),
        ]);
        let spec = AppContainer {
            name: name.clone(),
            image: Self::job_image(run, app)?,
            env: app.vars.to_docker(),
            labels,
            cores: run.env.resources.cores,
            memory_mb: run.env.resources.memory_mb,
            networking,
            binds: app.access.binds.clone(),
            privileged: app.access.privileged,
            devices: app.access.devices.clone(),
        };
        let id = host.containers.create(&spec).await.map_err(|e| {
            // Docker may quote the request back; never let a variable's value through.
            StepError(redact_values(&e.to_string(), app))
        })?;
        run.set_data(
            i,
            &AppContainerData {
                id: Some(id),
                ..run.data(i)?
            },
        );
        Ok(StepState::Done)
    }

    /// GETs the health path of container `name` (reached on `port`) until it
    /// answers 2xx or 3xx, at most `docker.health_retries` times; fails with the
    /// last answer and, if the container died, its exit code and last log lines.
    /// `which` names the container in the message ("the new container").
    async fn check_health(
        &self,
        app: &AppRecord,
        host: &Host,
        name: &str,
        port: u16,
        which: &str,
    ) -> Result<(), StepError> {
        let cfg = &self.docker.config;
        let url = format!("http://{}:{port}{}", host.address, app.health_path);
        let http = reqwest::Client::builder()
            .timeout(cfg.health_interval.max(Duration::from_secs(2)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StepError(format!("cannot build the HTTP client: {e}")))?;
        let mut last = String::new();
        for attempt in 1..=cfg.health_retries {
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() || r.status().is_redirection() => return Ok(()),
                Ok(r) => last = format!("answered {}", r.status().as_u16()),
                Err(e) if e.is_timeout() => last = "did not answer in time".into(),
                Err(_) => last = "refused the connection".into(),
            }
            if let Some(info) = host.containers.inspect(name).await? {
                if !info.running() && info.state != "restarting" && info.state != "created" {
                    let logs = host.containers.logs(name, 5).await.unwrap_or_default();
                    return Err(StepError(format!(
                        "{which} {} (exit code {}){}",
                        info.state,
                        info.exit_code.unwrap_or_default(),
                        if logs.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; last log lines: {}",
                                redact_values(&logs.join(" | "), app)
                            )
                        }
                    )));
                }
            }
            if attempt < cfg.health_retries {
                tokio::time::sleep(cfg.health_interval).await;
            }
        }
        Err(StepError(format!(
            "GET {} on {which} {last} ({} tries, {} apart)",
            app.health_path,
            cfg.health_retries,
            crate::chat::render::duration(cfg.health_interval)
        )))
    }

    /// The app's serving container, which must still be on its host.
    async fn serving_container(
        &self,
        run: &JobRun,
        app: &AppRecord,
        host: &Host,
    ) -> Result<String, StepError> {
        let name = app.container.clone().ok_or_else(|| {
            StepError(format!(
                "{} has no container yet; /app info {} shows its state",
                run.env.name, run.env.name
            ))
        })?;
        if host.containers.inspect(&name).await?.is_none() {
            return Err(StepError(format!(
                "its container {name} is no longer on Docker host {}; /app update {} image:{} deploys it again, /app remove {} cleans up",
                host.key, run.env.name, app.image, run.env.name
            )));
        }
        Ok(name)
    }

    /// After a (re)start: Docker gives a bridge container's published port anew
    /// on every start, so a changed port is recorded and the route follows it.
    /// Returns the port the container is reached on.
    async fn follow_port(
        &self,
        run: &mut JobRun,
        app: &AppRecord,
        host: &Host,
        name: &str,
    ) -> Result<u16, StepError> {
        let recorded = app.upstream_port;
        let now = match host.network {
            HostNetwork::Host { .. } => recorded,
            HostNetwork::Bridge => host
                .containers
                .inspect(name)
                .await?
                .and_then(|i| i.published_port),
        };
        let port = now.ok_or_else(|| StepError(format!("Docker published no port for {name}")))?;
        if recorded != Some(port) {
            self.publish_app_route(run, port).await?;
            self.store
                .set_app_serving(run.env.id, name.to_string(), port, app.image.clone())
                .await?;
        }
        Ok(port)
    }

    /// `/app start`: starts the stopped serving container and waits until it is
    /// healthy. If it is not, it is stopped again, so the app stays as it was.
    pub(super) async fn start_app(&self, run: &mut JobRun) -> Result<StepState, StepError> {
        let (app, host) = self.app_and_host(run).await?;
        let (app, host) = (&app, &host);
        let name = self.serving_container(run, app, host).await?;
        host.containers.start(&name).await?;
        let port = self.follow_port(run, app, host, &name).await?;
        let Err(unhealthy) = self
            .check_health(app, host, &name, port, "the container")
            .await
        else {
            return Ok(StepState::Done);
        };
        let stopped_again = host
            .containers
            .stop(&name, self.docker.config.stop_timeout)
            .await;
        if let Err(e) = &stopped_again {
            tracing::warn!(job = run.job.id, container = %name, error = %e, "unhealthy container not stopped again");
        }
        Err(StepError(format!(
            "{unhealthy}. {}; /app logs {} shows why",
            if stopped_again.is_ok() {
                "It was stopped again"
            } else {
                "It could not be stopped again"
            },
            run.env.name
        )))
    }

    /// Moves traffic to the new container and records it as serving; the old
    /// one is remembered in the step's data so a rollback can move it back.
    pub(super) async fn switch_route(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<StepState, StepError> {
        let app = self.app_of(run).await?;
        let new = self.job_container(run)?;
        if run.data::<SwitchRouteData>(i)?.previous.is_none() {
            run.set_data(
                i,
                &SwitchRouteData {
                    previous: Some(Serving {
                        container: app.container.clone(),
                        port: app.upstream_port,
                        image: app.image.clone(),
                    }),
                },
            );
            self.checkpoint(run, i).await?;
        }
        let upstream = self.job_upstream(run)?;
        self.publish_app_route(run, upstream).await?;
        let image = app.next_image.clone().unwrap_or_else(|| app.image.clone());
        self.store
            .set_app_serving(run.env.id, new, upstream, image)
            .await?;
        Ok(StepState::Done)
    }

    /// Publishes the app's route to `upstream` if it has a domain and a router is configured.
    async fn publish_app_route(&self, run: &mut JobRun, upstream: u16) -> Result<(), StepError> {
        if run.env.domain.is_none() || self.publishers.router.is_none() {
            return Ok(());
        }
        self.publish_route(run, Some(upstream)).await.map(drop)
    }

    /// Undoes `create_app_container`: the new container goes, its port is free.
    pub(super) async fn undo_create_app_container(
        &self,
        run: &mut JobRun,
    ) -> Result<(), StepError> {
        let (_, host) = self.app_and_host(run).await?;
        let name = self.job_container(run)?;
        host.containers
            .remove(&name, self.docker.config.stop_timeout)
            .await?;
        self.store.release_app_port(host.key, name).await?;
        Ok(())
    }

    /// Undoes `switch_route`: traffic goes back to the container that served before.
    pub(super) async fn undo_switch_route(
        &self,
        run: &mut JobRun,
        i: usize,
    ) -> Result<(), StepError> {
        let Some(Serving {
            container: Some(container),
            port: Some(port),
            image,
        }) = run.data::<SwitchRouteData>(i)?.previous
        else {
            return Ok(());
        };
        self.publish_app_route(run, port).await?;
        self.store
            .set_app_serving(run.env.id, container, port, image)
            .await?;
        Ok(())
    }

    /// The port an app's route goes to when no step names one: the serving container's.
    pub(super) async fn app_route_port(&self, run: &JobRun) -> Result<u16, StepError> {
        self.app_of(run)
            .await?
            .upstream_port
            .ok_or_else(|| StepError("the app has no serving container yet".into()))
    }

    /// The line a finished app job ends with.
    pub(in crate::worker) async fn app_summary(&self, run: &JobRun) -> String {
        let Ok(app) = self.app_of(run).await else {
            return "done".into();
        };
        let url = run
            .env
            .domain
            .as_deref()
            .map(|d| format!(" — https://{d}"))
            .unwrap_or_default();
        match run.job.kind {
            JobKind::Create => format!("running {} on {}{url}", app.image, app.host),
            JobKind::Update => format!(
                "now running {}{url}; the old container was removed",
                app.image
            ),
            JobKind::Restart => "restarted".into(),
            JobKind::Readdress => format!("route and DNS follow its new address{url}"),
            JobKind::Access => "access changed".into(),
            JobKind::Start => format!("started; running {}{url}", app.image),
            JobKind::Stop => format!(
                "stopped; its quota stays reserved. /app start {} starts it again",
                run.env.name
            ),
            JobKind::Destroy => "removed; its quota is free again".into(),
        }
    }

    /// After an update's rollback: the old container kept serving; say so.
    pub(in crate::worker) async fn app_update_failed(&self, run: &JobRun, reason: &str) -> String {
        let _ = self.store.clear_next_image(run.env.id).await;
        let serving = self
            .app_of(run)
            .await
            .map(|a| a.image)
            .unwrap_or_else(|_| "its old image".into());
        format!(
            "{reason}. The new container was removed; {} keeps serving {serving} from the old one.",
            run.env.name
        )
    }
}

/// Replaces every variable value of `app` found in `text` (Docker errors may quote them).
fn redact_values(text: &str, app: &AppRecord) -> String {
    let mut out = text.to_string();
    for value in app.vars.0.values().filter(|v| v.len() >= 4) {
        out = out.replace(value.as_str(), REDACTED);
    }
    out
}
