//! SSH: the answers of `/keys`, how to log in, and a guest without an address.

use super::duration;
use std::time::Duration;

/// The answer to a refused `/keys add`.
pub fn key_refused(e: &crate::domain::ssh_key::KeyError) -> String {
    match e {
        crate::domain::ssh_key::KeyError::PrivateKey => format!("🚨 Not stored: {e}."),
        _ => format!("⚠️ key: {e}"),
    }
}

/// The answer to `/keys add`.
pub fn key_added(
    key: &crate::domain::ssh_key::SshKey,
    added: &crate::store::ssh_keys::KeyAdded,
) -> String {
    use crate::store::ssh_keys::{KeyAdded, MAX_KEYS_PER_PERSON};
    let name = key_name(&key.kind, &key.fingerprint, &key.comment);
    match added {
        KeyAdded::Added => format!(
            "🔑 Added {name}. It logs in as root to every environment you create from now on."
        ),
        KeyAdded::AlreadyThere => format!("🔑 You have added {name} already; nothing changed."),
        KeyAdded::Full => format!(
            "⚠️ You have {MAX_KEYS_PER_PERSON} keys, the most Slipway keeps per person; remove one with /keys remove key:<fingerprint> first (/keys list shows them)"
        ),
    }
}

/// `/keys list`.
pub fn keys(list: &[crate::store::ssh_keys::StoredKey]) -> String {
    if list.is_empty() {
        return NO_KEYS.to_string();
    }
    let mut out = format!("🔑 Your SSH keys ({}):", list.len());
    for k in list {
        let comment = k.line.splitn(3, ' ').nth(2).unwrap_or_default();
        out.push_str(&format!(
            "\n  {}",
            key_name(&k.kind, &k.fingerprint, comment)
        ));
    }
    out
}

/// A step needs the guest's address and the guest reported none.
pub fn no_address(env: &str) -> String {
    format!(
        "{env} has no IPv4 address, which this step needs; the guest reported none. Check DHCP \
         on the profile's bridge, raise proxmox.address_wait, or give the profile \
         network.ip = \"pool\""
    )
}

/// `wait for network` ran out of time.
pub fn no_address_within(env: &str, vmid: u32, wait: Duration) -> String {
    format!(
        "CT {vmid} ({env}) reported no usable IPv4 address within {}; check DHCP on the \
         profile's bridge, raise proxmox.address_wait, or give the profile network.ip = \"pool\"",
        duration(wait)
    )
}

/// How to log in, in `/env info`: the command and the host key to expect.
pub fn login_lines(
    user: &str,
    address: Option<&str>,
    host_key: Option<&str>,
    hwaddr: Option<&str>,
) -> String {
    let mut out = match address {
        Some(address) => format!("\n  login: ssh {user}@{address}"),
        None => "\n  login: no address reported yet".into(),
    };
    if let (Some(fp), Some(_)) = (host_key, address) {
        out.push_str(&format!("\n  host key: {fp}"));
    }
    if let Some(mac) = hwaddr {
        out.push_str(&format!(
            "\n  MAC address: {mac} (fixed; for a DHCP reservation)"
        ));
    }
    out
}

pub const NO_KEYS: &str = "🔑 You have no SSH key with Slipway, so you cannot log in to what you create. Add one: /keys add key:\"ssh-ed25519 AAAA… you@laptop\" (one line of your .pub file; ssh-keygen -t ed25519 makes one)";

/// The answer to `/keys remove`.
pub fn key_removed(fingerprint: &str, removed: bool) -> String {
    if removed {
        format!("🔑 Removed {fingerprint}. Environments you create from now on do not trust it; running ones keep it until you remove it there.")
    } else {
        format!("⚠️ key: you have no key {fingerprint}; /keys list shows your keys' fingerprints")
    }
}

fn key_name(kind: &str, fingerprint: &str, comment: &str) -> String {
    if comment.is_empty() {
        format!("{kind} key {fingerprint}")
    } else {
        format!("{kind} key {fingerprint} ({comment})")
    }
}
