//! Reaching a new guest over SSH with Slipway's provisioning key, and its host
//! key: trusted on first use, per environment, and checked from then on.
//!
//! Slipway runs OpenSSH's `ssh` (Debian's openssh-client) with no user or
//! system configuration (`-F /dev/null`), so what a step connects with is only
//! what is written here and in the step's own arguments.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT_SECS: u32 = 5;
/// The pause between attempts while a new guest's sshd comes up.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Where to log in, and with which key.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub user: &'a str,
    pub address: &'a str,
    pub key_file: &'a Path,
}

/// Why a guest could not be reached as it should be.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error(
        "{address} did not accept an SSH login as {user} with Slipway's key within {waited}: {last}; \
         check that the guest runs sshd and that its address is right (the job log has every attempt)"
    )]
    Unreachable {
        address: String,
        user: String,
        waited: String,
        last: String,
    },
    #[error(
        "the SSH host key of {address} is not the one recorded at first contact ({recorded}); \
         someone may be intercepting the connection, or the guest was reinstalled. Nothing was run. \
         If the guest was rebuilt on purpose, destroy and recreate the environment"
    )]
    HostKeyChanged { address: String, recorded: String },
    #[error(
        "the command Slipway ran over SSH on {address} as {user} failed: {message}; \
         check that the guest is up and that {user} may write its ~/.ssh"
    )]
    Failed {
        address: String,
        user: String,
        message: String,
    },
    #[error("cannot run ssh: {0}; install OpenSSH's client (Debian: openssh-client)")]
    Spawn(String),
    #[error("cannot write the known_hosts file for {0}: {1}")]
    Io(String, String),
}

/// A known_hosts file for one step, in a private directory that is removed
/// when this is dropped.
pub struct KnownHostsFile {
    dir: tempfile::TempDir,
}

impl KnownHostsFile {
    /// Writes `lines` (known_hosts lines as recorded) to a new private file.
    pub fn new(lines: &str) -> Result<KnownHostsFile, SshError> {
        let io = |e: std::io::Error| SshError::Io("a new guest".into(), e.to_string());
        let dir = tempfile::Builder::new()
            .prefix("slipway-ssh-")
            .tempdir()
            .map_err(io)?;
        let mut f = std::fs::File::create(dir.path().join("known_hosts")).map_err(io)?;
        f.write_all(lines.as_bytes()).map_err(io)?;
        Ok(KnownHostsFile { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    fn read(&self) -> Result<String, SshError> {
        std::fs::read_to_string(self.path())
            .map_err(|e| SshError::Io(self.path().display().to_string(), e.to_string()))
    }
}

/// What one `ssh … true` said.
struct Attempt {
    ok: bool,
    host_key_failed: bool,
    message: String,
}

/// `ssh` as Slipway runs it: no configuration but this, `known` as the only
/// known_hosts, `strict` host key checking; the remote command follows.
fn ssh(target: &Target<'_>, known: &Path, strict: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-i"])
        .arg(target.key_file)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args([
            "-o",
            "HashKnownHosts=no",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-o")
        .arg(format!("StrictHostKeyChecking={strict}"))
        .arg("-o")
        .arg(format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"))
        .args(["-o", "LogLevel=ERROR", "-l", target.user, "--"])
        .arg(target.address)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The last line of ssh's stderr that says something.
fn last_words(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('@'))
        .unwrap_or("no answer")
        .to_string()
}

fn host_key_failed(stderr: &str) -> bool {
    stderr.contains("Host key verification failed")
        || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
}

async fn attempt(target: &Target<'_>, known: &Path, strict: &str) -> Result<Attempt, SshError> {
    let out = ssh(target, known, strict)
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| SshError::Spawn(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(Attempt {
        ok: out.status.success(),
        host_key_failed: host_key_failed(&stderr),
        message: last_words(&stderr),
    })
}

/// Runs the shell command `command` on a known guest (it must present one of
/// the `recorded` host keys), with `input` on its stdin, within `limit`.
pub async fn run(
    target: &Target<'_>,
    recorded: &str,
    command: &str,
    input: &[u8],
    limit: Duration,
) -> Result<(), SshError> {
    let file = KnownHostsFile::new(recorded)?;
    let mut child = ssh(target, &file.path(), "yes")
        .arg(command)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| SshError::Spawn(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(input)
            .await
            .map_err(|e| SshError::Io(target.address.into(), e.to_string()))?;
    }
    let failed = |message: String| SshError::Failed {
        address: target.address.into(),
        user: target.user.into(),
        message,
    };
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| {
            failed(format!(
                "no answer within {}",
                crate::chat::render::duration(limit)
            ))
        })?
        .map_err(|e| SshError::Spawn(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Ok(());
    }
    if host_key_failed(&stderr) {
        return Err(SshError::HostKeyChanged {
            address: target.address.into(),
            recorded: fingerprints(recorded).join(", "),
        });
    }
    Err(failed(last_words(&stderr)))
}

/// Logs in until the guest accepts, within `wait`. With `recorded` host keys
/// the guest must present one of them; without, the key it presents is
/// trusted and returned (as known_hosts lines) for the caller to record.
/// `on_retry` hears every failed attempt (for the job log).
pub async fn reach(
    target: &Target<'_>,
    recorded: Option<&str>,
    wait: Duration,
    mut on_retry: impl FnMut(u32, &str),
) -> Result<String, SshError> {
    let file = KnownHostsFile::new(recorded.unwrap_or(""))?;
    let strict = if recorded.is_some() {
        "yes"
    } else {
        "accept-new"
    };
    let started = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let a = attempt(target, &file.path(), strict).await?;
        if a.ok {
            let learned = file.read()?;
            return Ok(if learned.trim().is_empty() {
                recorded.unwrap_or_default().to_string()
            } else {
                learned
            });
        }
        if a.host_key_failed {
            return Err(SshError::HostKeyChanged {
                address: target.address.into(),
                recorded: fingerprints(recorded.unwrap_or_default()).join(", "),
            });
        }
        if started.elapsed() >= wait {
            return Err(SshError::Unreachable {
                address: target.address.into(),
                user: target.user.into(),
                waited: crate::chat::render::duration(wait),
                last: a.message,
            });
        }
        on_retry(tries, &a.message);
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The SHA-256 fingerprints of the keys in known_hosts `lines`, as
/// `ssh-keygen -lf` prints them (`SHA256:…`).
pub fn fingerprints(lines: &str) -> Vec<String> {
    lines
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let _host = parts.next()?;
            let key = format!("{} {}", parts.next()?, parts.next()?);
            ssh_key::PublicKey::from_openssh(&key)
                .ok()
                .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        })
        .collect()
}

/// The host key people compare with what their ssh shows: the ed25519 key's
/// fingerprint if there is one, else the first.
pub fn preferred_fingerprint(lines: &str) -> Option<String> {
    let ed = lines
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("ssh-ed25519"));
    match ed {
        Some(line) => fingerprints(line).into_iter().next(),
        None => fingerprints(lines).into_iter().next(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_from_known_hosts_lines() {
        let public = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ssh/k_ed25519.pub"),
        )
        .unwrap();
        let expected = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ssh/k_ed25519.fingerprint"),
        )
        .unwrap();
        let mut key = public.split_whitespace();
        let line = format!("10.0.0.5 {} {}\n", key.next().unwrap(), key.next().unwrap());
        assert_eq!(fingerprints(&line), vec![expected.trim().to_string()]);
        assert_eq!(preferred_fingerprint(&line), Some(expected.trim().into()));
        assert!(fingerprints("garbage\n10.0.0.5 ssh-ed25519 notbase64").is_empty());
    }
}
