//! Apps: the details only an app has (its Docker host, image, variables, port
//! and serving container), kept beside its environment row, and the host
//! ports handed to app containers. An app is submitted through the same
//! `BEGIN IMMEDIATE` transaction as an environment, so its CPU and memory are
//! reserved against the team's quota before anything runs.

use super::envs::{EnvRecord, NewEnv, Submitted};
use super::jobs::{Enqueued, NewJob};
use super::{Store, StoreError};
use crate::domain::app::{EnvVars, APP_KIND};
use crate::domain::lifecycle::EnvState;
use crate::domain::policy::Decision;
use crate::domain::quota::{Quota, QuotaCheck};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// What a container may reach on its host beyond the ordinary, as checked and
/// granted at request time (see `domain::app::check_access`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Docker `Binds` entries (named volumes; host paths only if an admin was allowed).
    #[serde(default)]
    pub binds: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub devices: Vec<String>,
}

/// An app as stored: its environment row and its details.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub env: EnvRecord,
    pub host: String,
    pub image: String,
    pub next_image: Option<String>,
    pub vars: EnvVars,
    pub port: u16,
    pub health_path: String,
    pub access: Access,
    pub container: Option<String>,
    pub upstream_port: Option<u16>,
}

/// An app request that passed validation.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub host: String,
    pub image: String,
    pub vars: EnvVars,
    pub port: u16,
    pub health_path: String,
    pub access: Access,
    /// Where the host's published ports are reached (the route's upstream address).
    pub address: String,
}

fn details(c: &Connection, env: EnvRecord) -> Result<Option<AppRecord>, StoreError> {
    Ok(c.query_row(
        "SELECT host, image, next_image, env, port, health_path, access, container, upstream_port
         FROM apps WHERE env_id = ?1",
        [env.id],
        |r| {
            let vars: String = r.get(3)?;
            let access: String = r.get(6)?;
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                vars,
                r.get::<_, u16>(4)?,
                r.get::<_, String>(5)?,
                access,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<u16>>(8)?,
            ))
        },
    )
    .optional()?
    .map(
        |(host, image, next_image, vars, port, health_path, access, container, upstream_port)| {
            AppRecord {
                env,
                host,
                image,
                next_image,
                vars: EnvVars(serde_json::from_str(&vars).unwrap_or_default()),
                port,
                health_path,
                access: serde_json::from_str(&access).unwrap_or_default(),
                container,
                upstream_port,
            }
        },
    ))
}

impl Store {
    /// Decides and reserves an app request atomically, exactly like an
    /// environment's create, writing the app's details in the same transaction.
    pub async fn submit_app(
        &self,
        env: NewEnv,
        app: NewApp,
        quota: Quota,
        decide: impl FnOnce(&QuotaCheck) -> Decision + Send + 'static,
        job: NewJob,
    ) -> Result<Submitted, StoreError> {
        self.submit_create_with(env, quota, decide, job, move |c, env_id| {
            c.execute(
                "UPDATE environments SET kind = ?2, address = ?3 WHERE id = ?1",
                params![env_id, APP_KIND, app.address],
            )?;
            c.execute(
                "INSERT INTO apps (env_id, host, image, env, port, health_path, access)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    env_id,
                    app.host,
                    app.image,
                    serde_json::to_string(&app.vars.0).unwrap_or_else(|_| "{}".into()),
                    app.port,
                    app.health_path,
                    serde_json::to_string(&app.access).unwrap_or_else(|_| "{}".into()),
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// The app whose environment row is `env_id`, in whatever state.
    pub async fn app(&self, env_id: i64) -> Result<Option<AppRecord>, StoreError> {
        let Some(env) = self.env(env_id).await? else {
            return Ok(None);
        };
        self.call(move |c| details(c, env)).await
    }

    /// Live apps whose containers run on `host` (a declared host's name, or
    /// `env:<id>` for a docker-host environment), oldest first.
    pub async fn apps_on_host(&self, host: String) -> Result<Vec<EnvRecord>, StoreError> {
        let ids: Vec<i64> = self
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT a.env_id FROM apps a JOIN environments e ON e.id = a.env_id
                     WHERE a.host = ?1 AND e.state NOT IN ('destroyed', 'failed', 'denied')
                     ORDER BY a.env_id",
                )?;
                let ids = stmt
                    .query_map([host], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()?;
                Ok(ids)
            })
            .await?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.env(id).await?);
        }
        Ok(out)
    }

    /// Live apps, optionally of one team, oldest first.
    pub async fn list_apps(&self, team: Option<String>) -> Result<Vec<AppRecord>, StoreError> {
        let envs = self.list_envs(team).await?;
        self.call(move |c| {
            let mut out = Vec::new();
            for env in envs.into_iter().filter(EnvRecord::is_app) {
                out.extend(details(c, env)?);
            }
            Ok(out)
        })
        .await
    }

    /// Queues an update to `image`: the job and the new image are written together.
    pub async fn enqueue_update(
        &self,
        env_id: i64,
        image: String,
        job: NewJob,
    ) -> Result<Enqueued, StoreError> {
        const READY: &[EnvState] = &[EnvState::Ready];
        self.enqueue_with(env_id, READY, None, job, move |c| {
            c.execute(
                "UPDATE apps SET next_image = ?2 WHERE env_id = ?1",
                params![env_id, image],
            )?;
            Ok(())
        })
        .await
    }

    /// The container `container` on `upstream_port` now serves `image`.
    pub async fn set_app_serving(
        &self,
        env_id: i64,
        container: String,
        upstream_port: u16,
        image: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE apps SET container = ?2, upstream_port = ?3, image = ?4 WHERE env_id = ?1",
                params![env_id, container, upstream_port, image],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets an update's image (it finished, or was given up).
    pub async fn clear_next_image(&self, env_id: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE apps SET next_image = NULL WHERE env_id = ?1",
                [env_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Hands `container` the first free port of `candidates` on `host`, or the
    /// one it already holds (so a resumed step allocates nothing new).
    pub async fn allocate_app_port(
        &self,
        host: String,
        env_id: i64,
        container: String,
        candidates: std::ops::RangeInclusive<u16>,
    ) -> Result<Option<u16>, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(held) = tx
                .query_row(
                    "SELECT port FROM app_ports WHERE host = ?1 AND container = ?2",
                    params![host, container],
                    |r| r.get(0),
                )
                .optional()?
            {
                return Ok(Some(held));
            }
            let taken: Vec<u16> = tx
                .prepare("SELECT port FROM app_ports WHERE host = ?1")?
                .query_map([&host], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let chosen = candidates.into_iter().find(|p| !taken.contains(p));
            if let Some(port) = chosen {
                tx.execute(
                    "INSERT INTO app_ports (host, port, env_id, container) VALUES (?1, ?2, ?3, ?4)",
                    params![host, port, env_id, container],
                )?;
            }
            tx.commit()?;
            Ok(chosen)
        })
        .await
    }

    /// Frees the port a removed container held.
    pub async fn release_app_port(
        &self,
        host: String,
        container: String,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM app_ports WHERE host = ?1 AND container = ?2",
                params![host, container],
            )?;
            Ok(())
        })
        .await
    }

    /// Frees every port an app's containers held.
    pub async fn release_app_ports(&self, env_id: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute("DELETE FROM app_ports WHERE env_id = ?1", [env_id])?;
            Ok(())
        })
        .await
    }
}
