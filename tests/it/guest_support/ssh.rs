//! Logging into a guest: key pairs, its host keys, the system `ssh`, and `exec`
//! (nsenter) to look behind sshd's back.

use super::process::program;
use super::{run, Guest};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// An ed25519 key pair made by `ssh-keygen`, without a passphrase.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    /// The public key, one OpenSSH line without the newline.
    pub public: String,
}

/// `ssh-keygen -t ed25519` into `dir/name` (and `dir/name.pub`).
pub fn keygen(dir: &Path, name: &str) -> KeyPair {
    let private = dir.join(name);
    run(Command::new(program("ssh-keygen", "openssh-client"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private));
    let public = fs::read_to_string(private.with_extension("pub"))
        .expect("ssh-keygen wrote no public key")
        .trim()
        .to_string();
    KeyPair { private, public }
}

impl Guest {
    /// A host public key of the guest, e.g. `"ed25519"`: the `.pub` line.
    pub fn host_public_key(&self, kind: &str) -> String {
        let path = self.root.join(format!("etc/ssh/ssh_host_{kind}_key.pub"));
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("guest_support: no host key {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// The SHA256 fingerprint of the guest's ed25519 host key, as `ssh-keygen -lf`
    /// prints it: `SHA256:…` (43 base64 characters, no padding).
    pub fn host_key_fingerprint(&self) -> String {
        let path = self.root.join("etc/ssh/ssh_host_ed25519_key.pub");
        let out = run(Command::new(program("ssh-keygen", "openssh-client"))
            .args(["-E", "sha256", "-lf"])
            .arg(&path));
        // "256 SHA256:… root@guest (ED25519)"
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("ssh-keygen -lf printed no fingerprint")
            .to_string()
    }

    /// known_hosts lines for every host key of the guest, under its address.
    pub fn known_hosts(&self) -> String {
        let mut lines = String::new();
        for kind in ["ed25519", "ecdsa", "rsa"] {
            let key = self.host_public_key(kind);
            let mut words = key.split_whitespace();
            let (Some(algo), Some(blob)) = (words.next(), words.next()) else {
                panic!("guest_support: odd host key {key}");
            };
            lines.push_str(&format!("{} {algo} {blob}\n", self.address));
        }
        lines
    }

    /// Writes [`Guest::known_hosts`] to `path`, for [`Guest::ssh`].
    pub fn write_known_hosts(&self, path: &Path) {
        fs::write(path, self.known_hosts()).expect("known_hosts");
    }

    /// The system `ssh` to root at the guest with only `key`, checking the host key
    /// against `known_hosts` strictly (`StrictHostKeyChecking=yes`), `BatchMode=yes`, no
    /// user or system configuration, no agent. Add the remote command and run it.
    pub fn ssh_command(&self, key: &Path, known_hosts: &Path) -> Command {
        let mut cmd = Command::new(program("ssh", "openssh-client"));
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=10",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile=\"{}\"", known_hosts.display()))
            .arg(format!("root@{}", self.address))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `command` in the guest over ssh ([`Guest::ssh_command`]).
    pub fn ssh(&self, key: &Path, known_hosts: &Path, command: &str) -> Output {
        self.ssh_command(key, known_hosts)
            .arg(command)
            .output()
            .expect("guest_support: cannot run ssh")
    }

    /// Runs `script` with `/bin/sh -c` inside the guest without ssh (nsenter into its
    /// namespaces and root): to look at or change the guest behind sshd's back.
    pub fn exec(&self, script: &str) -> Output {
        self.exec_with_input(script, b"")
    }

    /// [`Guest::exec`] with `input` on standard input.
    pub fn exec_with_input(&self, script: &str, input: &[u8]) -> Output {
        let pid = self
            .init_pid
            .expect("guest_support: the guest's PID 1 is not known");
        let mut child = Command::new(program("nsenter", "util-linux"))
            .args(["-t", &pid.to_string(), "-m", "-u", "-n", "-p", "-r", "-w"])
            .args(["/bin/sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("guest_support: cannot run nsenter");
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().expect("nsenter")
    }
}

/// The first bytes sshd sends, if it answers.
pub(super) fn ssh_banner(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let banner = String::from_utf8_lossy(&buf[..n]).into_owned();
    banner.starts_with("SSH-").then_some(banner)
}
