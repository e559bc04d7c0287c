//! The MAC address of an environment's network device: fixed at create, the
//! same on every try of the create and after a restore, so an operator can
//! make a DHCP reservation for it. It sits in Proxmox's own range (the
//! `BC:24:11` prefix PVE gives new devices) with the rest taken from a hash
//! of the environment's id, name and creation time.

use crate::store::envs::EnvRecord;
use sha2::{Digest, Sha256};

/// Proxmox Server Solutions' OUI, which PVE uses for generated addresses.
const PREFIX: [u8; 3] = [0xBC, 0x24, 0x11];

/// `BC:24:11:XX:XX:XX` for this environment.
pub fn mac_of(env: &EnvRecord) -> String {
    mac_from(env.id, &env.name, env.created_at)
}

fn mac_from(id: i64, name: &str, created_at: i64) -> String {
    let digest = Sha256::digest(format!("slipway-mac:{id}:{name}:{created_at}"));
    PREFIX
        .iter()
        .chain(&digest[..3])
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::mac_from;

    #[test]
    fn the_address_is_stable_in_proxmoxs_range_and_differs_per_environment() {
        let a = mac_from(1, "shop", 1_700_000_000);
        assert_eq!(a, mac_from(1, "shop", 1_700_000_000));
        assert!(a.starts_with("BC:24:11:"), "{a}");
        assert_eq!(a.len(), 17);
        assert_ne!(a, mac_from(2, "shop", 1_700_000_000));
        assert_ne!(a, mac_from(1, "shop", 1_700_000_001));
    }
}
