//! A network namespace of the test's own, joined to the machine by a veth
//! pair on a /30 of 10.199.0.0/16: the machine's end is `.1`, the
//! namespace's `.2`. A Docker host in it behaves as a docker-host
//! environment does — dockerd on its own address, Docker's bridge and
//! published ports — without touching the machine's own network. Removed on
//! drop (deleting the namespace deletes both ends of the pair).

use crate::publish_support::{program, run};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

pub struct Netns {
    name: String,
    host_if: String,
    /// The /30's third octet.
    subnet: u8,
}

fn ip() -> Command {
    Command::new(program("ip", "iproute2"))
}

impl Netns {
    /// A new namespace; `tag` (a few letters) tells the test's apart.
    pub fn new(tag: &str) -> Netns {
        let pid = std::process::id();
        let subnet = (pid % 250) as u8 + 1;
        // Interface names are at most 15 bytes.
        let name = format!("slw{tag}{}", pid % 100_000);
        let host_if = format!("{name}h");
        let ns_if = format!("{name}c");
        assert!(host_if.len() <= 15, "interface name {host_if} is too long");
        // What a killed earlier run left behind.
        let _ = ip().args(["netns", "del", &name]).output();
        let _ = ip().args(["link", "del", &host_if]).output();
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            subnet,
        };
        run(ip().args(["netns", "add", &name]));
        run(ip().args([
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]));
        run(ip().args(["link", "set", &ns_if, "netns", &name]));
        run(ip().args([
            "addr",
            "add",
            &format!("{}/30", ns.host_address()),
            "dev",
            &host_if,
        ]));
        run(ip().args(["link", "set", &host_if, "up"]));
        let inside = |args: &[&str]| {
            run(ip().args(["netns", "exec", &name, "ip"]).args(args));
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/30", ns.address()),
            "dev",
            &ns_if,
        ]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's address.
    pub fn address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 199, self.subnet, 2)
    }

    /// The machine's end of the pair: the namespace's gateway.
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 199, self.subnet, 1)
    }

    /// The /30 as `A.B.C.D/30`.
    pub fn network(&self) -> String {
        format!("10.199.{}.0/30", self.subnet)
    }

    /// For nsenter --net=.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip().args(["netns", "del", &self.name]).output();
        let _ = ip().args(["link", "del", &self.host_if]).output();
    }
}
