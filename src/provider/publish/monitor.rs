//! Prometheus `file_sd` targets: one JSON file per monitored environment,
//! `slipway-env-<id>.json` in the configured directory, naming the container's
//! node exporter with the labels `team`, `env` and `profile`. Prometheus reads
//! it through a `file_sd_configs` entry whose `files` pattern covers
//! `DIR/*.json`; the file is replaced atomically and removed on teardown.

use super::config::MonitorConfig;
use super::{files, object_name, Monitor, PublishError, Target};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;

/// Writes Prometheus file_sd target files.
#[derive(Debug, Clone)]
pub struct FileSd {
    cfg: MonitorConfig,
}

#[derive(Serialize)]
struct TargetGroup {
    targets: Vec<String>,
    labels: BTreeMap<&'static str, String>,
}

impl FileSd {
    pub fn new(cfg: &MonitorConfig) -> FileSd {
        FileSd { cfg: cfg.clone() }
    }

    /// The file an environment's target lives in.
    pub fn file_name(env_id: i64) -> String {
        format!("{}.json", object_name(env_id))
    }

    /// The file's whole content for `target`.
    pub fn render(&self, target: &Target) -> String {
        let group = TargetGroup {
            targets: vec![format!("{}:{}", target.address, self.cfg.exporter_port)],
            labels: BTreeMap::from([
                ("env", target.env_name.to_string()),
                ("profile", target.profile.clone()),
                ("team", target.team.clone()),
            ]),
        };
        let mut text = serde_json::to_string_pretty(&[group]).expect("strings always serialize");
        text.push('\n');
        text
    }
}

#[async_trait]
impl Monitor for FileSd {
    async fn add_target(&self, target: &Target) -> Result<(), PublishError> {
        files::write_atomic(
            self.cfg.file_sd_dir.clone(),
            Self::file_name(target.env_id),
            self.render(target).into_bytes(),
        )
        .await
    }

    async fn remove_target(&self, env_id: i64) -> Result<(), PublishError> {
        files::remove(self.cfg.file_sd_dir.clone(), Self::file_name(env_id)).await
    }
}
