//! Providers: the outside systems a job's steps act on, each behind a small
//! trait so the worker is written once and tested against the real thing.
//! `Compute` is Proxmox VE ([`proxmox`]); `Runner` runs post-provision programs
//! ([`command`]). [`publish`] makes environments reachable: routers (Traefik,
//! Caddy), DNS and monitoring. [`docker`] runs apps' containers on Docker hosts.

pub mod command;
pub mod docker;
pub mod pin;
pub mod proxmox;
pub mod publish;

use async_trait::async_trait;
use std::net::Ipv4Addr;
use std::time::Duration;

/// A Proxmox task to wait for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskRef {
    pub node: String,
    pub upid: String,
}

/// What Slipway asks Proxmox to create.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub node: String,
    pub vmid: u32,
    pub hostname: String,
    pub ostemplate: String,
    pub storage: String,
    pub disk_gb: u32,
    pub cores: u32,
    pub memory_mb: u32,
    pub swap_mb: u32,
    pub unprivileged: bool,
    pub features: Vec<String>,
    pub onboot: bool,
    pub net0: String,
    pub tags: Vec<String>,
    pub description: String,
    /// The resource pool the container joins.
    pub pool: Option<String>,
    /// OpenSSH public-key lines root's `authorized_keys` starts with.
    pub ssh_public_keys: Vec<String>,
    /// DNS servers and search domains, space-separated; `None` = the host's.
    pub nameserver: Option<String>,
    pub searchdomain: Option<String>,
}

/// A container's stored configuration, as far as Slipway needs it.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub tags: Vec<String>,
    /// The MAC address of `net0` (`hwaddr=`), for a DHCP reservation.
    pub hwaddr: Option<String>,
    pub description: String,
    pub lock: Option<String>,
}

/// A container's live state.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ContainerStatus {
    pub status: String,
    pub cpu: f64,
    pub cpus: f64,
    pub mem: u64,
    pub maxmem: u64,
    pub uptime: u64,
    /// Managed by Proxmox HA (then removing it needs `Sys.Console`).
    pub ha_managed: bool,
}

/// A guest as `/cluster/resources` lists it.
#[derive(Debug, Clone)]
pub struct Guest {
    pub vmid: u32,
    pub node: String,
    /// `lxc` or `qemu`, as `/cluster/resources` says.
    pub kind: String,
    pub status: String,
    pub tags: Vec<String>,
}

mod error;
pub mod guest_ssh;
pub mod ssh_identity;
pub use error::{ErrorKind, ProviderError};

/// The cluster in one read: its guests and whether each node is online.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub guests: Vec<Guest>,
    /// Nodes as the cluster sees them: (name, online).
    pub nodes: Vec<(String, bool)>,
}

impl Cluster {
    /// Whether `node` is known and online (an unknown node is not).
    pub fn online(&self, node: &str) -> bool {
        self.nodes.iter().any(|(n, up)| n == node && *up)
    }

    /// Whether the cluster reports `node` and says it is not online.
    pub fn offline(&self, node: &str) -> bool {
        self.nodes.iter().any(|(n, up)| n == node && !*up)
    }
}

/// Proxmox VE as the worker sees it.
#[async_trait]
pub trait Compute: Send + Sync {
    /// Every guest in the cluster.
    async fn guests(&self) -> Result<Vec<Guest>, ProviderError>;
    /// Every guest and every node's health, in one `/cluster/resources` read.
    async fn cluster(&self) -> Result<Cluster, ProviderError>;
    /// A container's config, or None if it does not exist.
    async fn config(&self, node: &str, vmid: u32)
        -> Result<Option<ContainerConfig>, ProviderError>;
    async fn create(&self, spec: &ContainerSpec) -> Result<TaskRef, ProviderError>;
    /// Waits until the task ends; a task that ends in error fails with its log tail.
    async fn wait(&self, task: &TaskRef, timeout: Duration) -> Result<(), ProviderError>;
    async fn start(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError>;
    async fn shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout: Duration,
    ) -> Result<TaskRef, ProviderError>;
    async fn stop(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError>;
    async fn status(&self, node: &str, vmid: u32)
        -> Result<Option<ContainerStatus>, ProviderError>;
    /// IPv4 addresses the container reports (without prefix), loopback excluded.
    async fn addresses(&self, node: &str, vmid: u32) -> Result<Vec<String>, ProviderError>;
    async fn snapshot(&self, node: &str, vmid: u32, name: &str) -> Result<TaskRef, ProviderError>;
    async fn snapshots(&self, node: &str, vmid: u32) -> Result<Vec<String>, ProviderError>;
    async fn delete_snapshot(
        &self,
        node: &str,
        vmid: u32,
        name: &str,
    ) -> Result<TaskRef, ProviderError>;
    /// Deletes the container and its disks.
    async fn destroy(&self, node: &str, vmid: u32) -> Result<TaskRef, ProviderError>;
    async fn ha_add(&self, vmid: u32) -> Result<(), ProviderError>;
    /// Removes the HA resource; Ok if there was none.
    async fn ha_remove(&self, vmid: u32) -> Result<(), ProviderError>;
    /// The static IPv4 addresses a guest is configured with (`ip=` of a
    /// container's `netN`, a VM's cloud-init `ipconfigN`); none for DHCP.
    async fn static_addresses(&self, guest: &Guest) -> Result<Vec<Ipv4Addr>, ProviderError>;
}

/// The static IPv4 addresses in a guest's config: the `ip=` part of every
/// `netN` (containers) and `ipconfigN` (VMs) value, without the prefix.
pub fn configured_addresses(config: &serde_json::Value) -> Vec<Ipv4Addr> {
    let Some(map) = config.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(k, _)| {
            let n = k.strip_prefix("net").or_else(|| k.strip_prefix("ipconfig"));
            n.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|(_, v)| v.as_str())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.strip_prefix("ip="))
        .filter_map(|ip| ip.split('/').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::configured_addresses;
    use serde_json::json;

    #[test]
    fn configured_addresses_are_the_ip_parts_of_every_network_device() {
        let cfg = json!({
            "net0": "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1",
            "net1": "name=eth1,bridge=vmbr1,ip=dhcp",
            "ipconfig0": "ip=192.168.1.9/24,gw=192.168.1.1",
            "netmask": "ip=10.9.9.9/8",
            "description": "ip=10.1.1.1/8",
        });
        let mut got = configured_addresses(&cfg);
        got.sort();
        assert_eq!(
            got,
            vec![
                "10.0.0.5".parse::<std::net::Ipv4Addr>().unwrap(),
                "192.168.1.9".parse().unwrap()
            ]
        );
    }
}
