//! [`Compute`] for [`Proxmox`]: each container operation as its PVE API
//! call, and PVE's answers read into Slipway's types. A container that does
//! not exist is `None`, not an error; HA add and remove are idempotent.

use super::Proxmox;
use crate::provider::{
    Cluster, Compute, ContainerConfig, ContainerSpec, ContainerStatus, Guest, ProviderError,
    TaskRef,
};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};

fn bool01(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

#[async_trait]
impl Compute for Proxmox {
    async fn guests(&self) -> Result<Vec<Guest>, ProviderError> {
        let data = self
            .get(&["cluster", "resources"], &[("type", "vm".into())])
            .await?;
        Ok(items(&data).filter_map(guest).collect())
    }

    async fn cluster(&self) -> Result<Cluster, ProviderError> {
        let data = self.get(&["cluster", "resources"], &[]).await?;
        Ok(Cluster {
            guests: items(&data)
                .filter(|g| matches!(g.get("type").and_then(Value::as_str), Some("lxc" | "qemu")))
                .filter_map(guest)
                .collect(),
            nodes: items(&data)
                .filter(|n| n.get("type").and_then(Value::as_str) == Some("node"))
                .filter_map(|n| {
                    let name = n.get("node")?.as_str()?.to_string();
                    let online = n.get("status").and_then(Value::as_str) == Some("online");
                    Some((name, online))
                })
                .collect(),
        })
    }

    async fn config(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<ContainerConfig>, ProviderError> {
        match self
            .get(&["nodes", node, "lxc", &vmid.to_string(), "config"], &[])
            .await
        {
            Ok(cfg) => Ok(Some(ContainerConfig {
                tags: split_tags(cfg.get("tags").and_then(Value::as_str).unwrap_or("")),
                hwaddr: cfg
                    .get("net0")
                    .and_then(Value::as_str)
                    .and_then(|n| n.split(',').find_map(|p| p.strip_prefix("hwaddr=")))
                    .map(str::to_string),
                description: cfg
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                lock: cfg.get("lock").and_then(Value::as_str).map(str::to_string),
            })),
            Err(e)
                if e.is_not_found()
                    || matches!(&e, ProviderError::Api { status: 500, .. } if is_missing_config(&e)) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn create(&self, s: &ContainerSpec) -> Result<TaskRef, ProviderError> {
        let mut form = vec![
            ("vmid", s.vmid.to_string()),
            ("ostemplate", s.ostemplate.clone()),
            ("hostname", s.hostname.clone()),
            ("storage", s.storage.clone()),
            ("rootfs", format!("{}:{}", s.storage, s.disk_gb)),
            ("cores", s.cores.to_string()),
            ("memory", s.memory_mb.to_string()),
            ("swap", s.swap_mb.to_string()),
            ("unprivileged", bool01(s.unprivileged)),
            ("onboot", bool01(s.onboot)),
            ("net0", s.net0.clone()),
            ("tags", s.tags.join(";")),
            ("description", s.description.clone()),
        ];
        if let Some(pool) = &s.pool {
            form.push(("pool", pool.clone()));
        }
        if !s.features.is_empty() {
            form.push(("features", s.features.join(",")));
        }
        if let Some(ns) = &s.nameserver {
            form.push(("nameserver", ns.clone()));
        }
        if let Some(sd) = &s.searchdomain {
            form.push(("searchdomain", sd.clone()));
        }
        if !s.ssh_public_keys.is_empty() {
            // PVE: one key per line, OpenSSH format.
            form.push(("ssh-public-keys", s.ssh_public_keys.join("\n")));
        }
        self.task(Method::POST, &s.node, &["nodes", &s.node, "lxc"], &form)
            .await
    }

    async fn wait(&self, task: &TaskRef, timeout: Duration) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let st = self
                .get(&["nodes", &task.node, "tasks", &task.upid, "status"], &[])
                .await?;
            if st.get("status").and_then(Value::as_str) == Some("stopped") {
                let exit = st
                    .get("exitstatus")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                if exit == "OK" {
                    return Ok(());
                }
                let log_tail = self.task_log_tail(task).await;
                return Err(ProviderError::Task { exit, log_tail });
            }
            if started.elapsed() >= timeout {
                return Err(ProviderError::Timeout(
                    format!("task {}", task.upid),
                    timeout,
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
        }
    }

    async fn start(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError> {
        self.task(
            Method::POST,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "status", "start"],
            &[],
        )
        .await
    }

    async fn shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout: Duration,
    ) -> Result<TaskRef, ProviderError> {
        let form = [
            ("timeout", timeout.as_secs().max(1).to_string()),
            ("forceStop", "1".to_string()),
        ];
        self.task(
            Method::POST,
            node,
            &[
                "nodes",
                node,
                "lxc",
                &vmid.to_string(),
                "status",
                "shutdown",
            ],
            &form,
        )
        .await
    }

    async fn stop(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError> {
        self.task(
            Method::POST,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "status", "stop"],
            &[],
        )
        .await
    }

    async fn status(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<ContainerStatus>, ProviderError> {
        match self
            .get(
                &["nodes", node, "lxc", &vmid.to_string(), "status", "current"],
                &[],
            )
            .await
        {
            Ok(s) => Ok(Some(ContainerStatus {
                status: s
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                cpu: s.get("cpu").and_then(Value::as_f64).unwrap_or(0.0),
                cpus: s.get("cpus").and_then(Value::as_f64).unwrap_or(0.0),
                mem: s.get("mem").and_then(Value::as_u64).unwrap_or(0),
                maxmem: s.get("maxmem").and_then(Value::as_u64).unwrap_or(0),
                uptime: s.get("uptime").and_then(Value::as_u64).unwrap_or(0),
                ha_managed: s
                    .get("ha")
                    .and_then(|h| h.get("managed"))
                    .and_then(Value::as_u64)
                    .is_some_and(|m| m == 1),
            })),
            Err(e) if e.is_not_found() || is_missing_config(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn addresses(&self, node: &str, vmid: u32) -> Result<Vec<String>, ProviderError> {
        let data = self
            .get(
                &["nodes", node, "lxc", &vmid.to_string(), "interfaces"],
                &[],
            )
            .await?;
        let mut out = Vec::new();
        for iface in data.as_array().into_iter().flatten() {
            if iface.get("name").and_then(Value::as_str) == Some("lo") {
                continue;
            }
            if let Some(inet) = iface.get("inet").and_then(Value::as_str) {
                out.push(inet.split('/').next().unwrap_or(inet).to_string());
            }
            for a in iface
                .get("ip-addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if a.get("ip-address-type").and_then(Value::as_str) == Some("inet") {
                    if let Some(ip) = a.get("ip-address").and_then(Value::as_str) {
                        if !out.iter().any(|o| o == ip) {
                            out.push(ip.to_string());
                        }
                    }
                }
            }
        }
        out.retain(|a| !a.starts_with("127."));
        Ok(out)
    }

    async fn snapshot(&self, node: &str, vmid: u32, name: &str) -> Result<TaskRef, ProviderError> {
        let form = [
            ("snapname", name.to_string()),
            (
                "description",
                "taken by Slipway after provisioning".to_string(),
            ),
        ];
        self.task(
            Method::POST,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "snapshot"],
            &form,
        )
        .await
    }

    async fn snapshots(&self, node: &str, vmid: u32) -> Result<Vec<String>, ProviderError> {
        let data = self
            .get(&["nodes", node, "lxc", &vmid.to_string(), "snapshot"], &[])
            .await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .filter(|n| *n != "current")
            .map(str::to_string)
            .collect())
    }

    async fn delete_snapshot(
        &self,
        node: &str,
        vmid: u32,
        name: &str,
    ) -> Result<TaskRef, ProviderError> {
        self.task(
            Method::DELETE,
            node,
            &["nodes", node, "lxc", &vmid.to_string(), "snapshot", name],
            &[],
        )
        .await
    }

    async fn destroy(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError> {
        let q = [
            ("purge", "1".to_string()),
            ("destroy-unreferenced-disks", "1".to_string()),
        ];
        self.task(
            Method::DELETE,
            node,
            &["nodes", node, "lxc", &vmid.to_string()],
            &q,
        )
        .await
    }

    async fn ha_add(&self, vmid: u32) -> Result<(), ProviderError> {
        let form = [
            ("sid", format!("ct:{vmid}")),
            ("state", "started".to_string()),
            ("comment", "managed by Slipway".to_string()),
        ];
        match self
            .once(Method::POST, &["cluster", "ha", "resources"], &form)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already defined") || e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn ha_remove(&self, vmid: u32) -> Result<(), ProviderError> {
        match self
            .once(
                Method::DELETE,
                &["cluster", "ha", "resources", &format!("ct:{vmid}")],
                &[],
            )
            .await
        {
            Ok(_) => Ok(()),
            // "cannot delete service 'ct:200', not HA managed!" — nothing to remove.
            Err(e)
                if e.is_not_found()
                    || e.to_string().contains("no such resource")
                    || e.to_string().contains("not HA managed") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn static_addresses(
        &self,
        guest: &Guest,
    ) -> Result<Vec<std::net::Ipv4Addr>, ProviderError> {
        let kind = if guest.kind == "qemu" { "qemu" } else { "lxc" };
        let vmid = guest.vmid.to_string();
        match self
            .get(&["nodes", &guest.node, kind, &vmid, "config"], &[])
            .await
        {
            Ok(cfg) => Ok(crate::provider::configured_addresses(&cfg)),
            // Deleted since the listing: it holds nothing.
            Err(e) if e.is_not_found() || is_missing_config(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// PVE answers 500 "Configuration file 'nodes/pve1/lxc/123.conf' does not exist".
fn is_missing_config(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Api { message, .. } if message.contains("does not exist"))
}

/// PVE stores tags separated by ';' (older versions: ',' or spaces).
pub fn split_tags(raw: &str) -> Vec<String> {
    raw.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The entries of a `/cluster/resources` answer.
fn items(data: &Value) -> impl Iterator<Item = &Value> {
    data.as_array().into_iter().flatten()
}

fn guest(g: &Value) -> Option<Guest> {
    Some(Guest {
        vmid: g.get("vmid")?.as_u64()? as u32,
        node: g.get("node")?.as_str()?.to_string(),
        kind: g
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("lxc")
            .to_string(),
        status: g
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        tags: split_tags(g.get("tags").and_then(Value::as_str).unwrap_or("")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_on_every_separator_pve_used() {
        assert_eq!(
            split_tags("slipway;env-1,team-web x"),
            vec!["slipway", "env-1", "team-web", "x"]
        );
    }

    #[test]
    fn already_exists_is_recognised() {
        let e = ProviderError::Api {
            status: 500,
            message: "CT 102 already exists on node 'pve1'".into(),
        };
        assert!(e.is_already_exists());
    }
}
