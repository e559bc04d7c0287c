//! The guests' network: a network namespace per guest, joined to the machine by
//! a veth pair on a subnet the test chooses. The machine's end has the gateway
//! address, the guest's end (`eth0` inside) the guest's. The guest gets no
//! default route: it reaches the gateway and nothing else, so nothing a guest
//! does can leave the machine.

use super::{ip, run, run_checked};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

/// Panics unless `address` and `gateway` are two distinct host addresses of one private
/// (RFC 1918) subnet of length `prefix`.
pub fn check_addresses(address: Ipv4Addr, gateway: Ipv4Addr, prefix: u8) {
    assert!(
        (8..=30).contains(&prefix),
        "guest_support: prefix /{prefix}: use a /8 to /30 (tests use a /30 or /24 of 10.231.0.0/16)"
    );
    for (what, a) in [("address", address), ("gateway", gateway)] {
        assert!(
            a.is_private(),
            "guest_support: the guest's {what} {a} is not a private (RFC 1918) address; \
             guests live on private subnets of their own (tests use 10.231.0.0/16)"
        );
        let host = u32::from(a) & !mask(prefix);
        assert!(
            host != 0 && host != !mask(prefix),
            "guest_support: {what} {a} is the network or broadcast address of its /{prefix}"
        );
    }
    assert!(
        address != gateway,
        "guest_support: address and gateway are both {address}"
    );
    assert!(
        network(address, prefix) == network(gateway, prefix),
        "guest_support: address {address} and gateway {gateway} are not in one /{prefix}"
    );
}

pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

pub fn network(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & mask(prefix))
}

fn overlaps(a: Ipv4Addr, a_prefix: u8, b: Ipv4Addr, b_prefix: u8) -> bool {
    let m = mask(a_prefix.min(b_prefix));
    u32::from(a) & m == u32::from(b) & m
}

/// The IPv4 routes of the machine (every table) that overlap `subnet/prefix`, as
/// `ip route` prints them. Another live guest's subnet shows up here as well: its
/// gateway end adds a route for it.
pub fn overlapping_routes(subnet: Ipv4Addr, prefix: u8) -> Vec<String> {
    const TYPES: &[&str] = &[
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    let out = run(ip().args(["-4", "-o", "route", "show", "table", "all"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            let mut dest = words.next().unwrap_or("default");
            if TYPES.contains(&dest) {
                dest = words.next().unwrap_or("default");
            }
            if dest == "default" {
                return false;
            }
            let (addr, len) = dest.split_once('/').unwrap_or((dest, "32"));
            match (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) {
                (Ok(addr), Ok(len)) => overlaps(addr, len, subnet, prefix),
                _ => false,
            }
        })
        .map(String::from)
        .collect()
}

/// Serialises "is the subnet free? then take it" between the tests of this process
/// (the mutex) and other test processes (the file lock).
pub fn lock(cache: &Path) -> (std::sync::MutexGuard<'static, ()>, File) {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let path = cache.join(".net.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("guest_support: cannot open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("guest_support: cannot lock {}: {e}", path.display()));
    (guard, file)
}

/// Creates the namespace. Panics, saying why, where the machine cannot.
pub fn add_netns(name: &str) {
    if let Err(e) = run_checked(ip().args(["netns", "add", name])) {
        panic!(
            "guest_support: cannot create the network namespace {name}: {e}\n\
             A real guest needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN (network \
             namespaces, mounts, chroot); this machine does not allow it."
        );
    }
}

/// The veth pair: `host_if` on the machine with `gateway/prefix`, `eth0` in `netns` with
/// `address/prefix`, both up, `lo` up inside.
pub fn add_veth(netns: &str, host_if: &str, address: Ipv4Addr, gateway: Ipv4Addr, prefix: u8) {
    run(ip().args([
        "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ]));
    run(ip().args([
        "addr",
        "add",
        &format!("{gateway}/{prefix}"),
        "dev",
        host_if,
    ]));
    run(ip().args(["link", "set", host_if, "up"]));
    run(ip().args(["-n", netns, "link", "set", "lo", "up"]));
    run(ip().args([
        "-n",
        netns,
        "addr",
        "add",
        &format!("{address}/{prefix}"),
        "dev",
        "eth0",
    ]));
    run(ip().args(["-n", netns, "link", "set", "eth0", "up"]));
}

/// Kills whatever still runs in `netns` and deletes it (and so the guest end of its
/// veth pair, and with it the machine's end).
pub fn delete_netns(name: &str) {
    if let Ok(out) = run_checked(ip().args(["netns", "pids", name])) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) with a PID and a signal number; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = run_checked(ip().args(["netns", "del", name]));
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The owning test process's PID in one of our names (`{prefix}{pid}-{n}` /
/// `{prefix}{pid:x}n{n}`).
fn owner(name: &str, prefix: &str, radix: u32, sep: char) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, n) = rest.split_once(sep)?;
    n.parse::<u32>().ok()?;
    u32::from_str_radix(pid, radix).ok()
}

pub const NETNS_PREFIX: &str = "slipway-guest-";
pub const LINK_PREFIX: &str = "sg";

/// Removes what test processes that no longer run (killed, not unwound) left behind:
/// namespaces, links and guest directories named after their PID.
pub fn sweep_stale(guests_dir: &Path) {
    if let Ok(out) = run_checked(ip().args(["netns", "list"])) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if owner(name, NETNS_PREFIX, 10, '-').is_some_and(|pid| !pid_alive(pid)) {
                eprintln!("guest_support: removing the stale network namespace {name}");
                delete_netns(name);
            }
        }
    }
    if let Ok(out) = run_checked(ip().args(["-o", "link", "show"])) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "13: sg1f2an0@if2: <BROADCAST,…"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if owner(name, LINK_PREFIX, 16, 'n').is_some_and(|pid| !pid_alive(pid)) {
                eprintln!("guest_support: removing the stale link {name}");
                let _ = run_checked(ip().args(["link", "del", name]));
            }
        }
    }
    for entry in std::fs::read_dir(guests_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !pid_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
