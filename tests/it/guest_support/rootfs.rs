//! The guests' Debian bookworm userland: built once with debootstrap from the
//! machine's own Debian mirror, cached under `<target>/guest-rootfs/`, built
//! into a temporary directory and renamed into place under a file lock, so
//! parallel tests and test binaries never build it twice nor see half of it.

use super::{program, spawn_tied};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

pub const SUITE: &str = "bookworm";
pub const VARIANT: &str = "minbase";
/// What TESTING.md measured, plus sudo (post-provisioning creates users).
pub const INCLUDE: &str = "openssh-server,python3,nginx-light,iproute2,sudo";
/// Bump when [`post_process`] changes: the cache key changes with it.
const LAYOUT: u32 = 1;

/// Where the cache lives: `$SLIPWAY_GUEST_CACHE`, else `$CARGO_TARGET_DIR/guest-rootfs`,
/// else `<repo>/target/guest-rootfs`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLIPWAY_GUEST_CACHE") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => manifest.join(dir), // join keeps an absolute one as it is
        None => manifest.join("target"),
    };
    target.join("guest-rootfs")
}

/// The cache entry's name: changes whenever what goes into it does.
fn key() -> String {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{SUITE} {VARIANT} {INCLUDE} {LAYOUT}").bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{SUITE}-{VARIANT}-{:08x}", hash as u32)
}

/// The Debian mirror the machine itself uses: `$SLIPWAY_GUEST_MIRROR`, else the first
/// URI of the stanza for `bookworm` in /etc/apt/sources.list.d/debian.sources, else a
/// `deb URI bookworm …` line of /etc/apt/sources.list.
pub fn mirror() -> String {
    if let Ok(mirror) = std::env::var("SLIPWAY_GUEST_MIRROR") {
        return mirror;
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        if let Some(uri) = mirror_from_deb822(&text, SUITE) {
            return uri;
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        for line in text.lines() {
            let words: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('['))
                .collect();
            if words.len() >= 3 && words[0] == "deb" && words[2] == SUITE {
                return words[1].to_string();
            }
        }
    }
    panic!(
        "guest_support: no Debian mirror for {SUITE} in /etc/apt/sources.list.d/debian.sources \
         or /etc/apt/sources.list (set SLIPWAY_GUEST_MIRROR)"
    );
}

/// The first URI of the deb822 stanza whose `Suites` has `suite`.
pub fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
        };
        let is_deb = field("Types").is_none_or(|t| t.split_whitespace().any(|t| t == "deb"));
        let has_suite = field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
        if is_deb && has_suite {
            if let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(String::from))
            {
                return Some(uri);
            }
        }
    }
    None
}

/// The hosts of every mirror in the machine's sources: what the apt proxy lets through.
pub fn mirror_hosts() -> Vec<String> {
    let mut text = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    text.push('\n');
    text.push_str(&fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    text.push('\n');
    text.push_str(&mirror());
    let mut hosts: Vec<String> = text
        .split_whitespace()
        .filter_map(|word| {
            let rest = word
                .strip_prefix("http://")
                .or_else(|| word.strip_prefix("https://"))?;
            let host = rest.split(['/', ':']).next()?;
            (!host.is_empty()).then(|| host.to_ascii_lowercase())
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The cached root filesystem, built on first use. Never written to: guests get an
/// overlay (or a copy) of it.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(build_once)
}

fn build_once() -> PathBuf {
    let cache = cache_dir();
    fs::create_dir_all(&cache)
        .unwrap_or_else(|e| panic!("guest_support: cannot create {}: {e}", cache.display()));
    let done = cache.join(key());
    if done.is_dir() {
        return done;
    }
    let lock_path = cache.join(".build.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("guest_support: cannot open {}: {e}", lock_path.display()));
    // Blocks while another test (or test binary) builds; released when `lock` drops.
    lock.lock()
        .unwrap_or_else(|e| panic!("guest_support: cannot lock {}: {e}", lock_path.display()));
    if done.is_dir() {
        return done; // someone else built it while we waited
    }
    // Only the lock holder builds: whatever `.building-*` is here was left by a killed build.
    for entry in fs::read_dir(&cache).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".building-")
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let building = cache.join(format!(".building-{}-{}", key(), std::process::id()));
    let log_path = cache.join(format!("{}.log", key()));
    let mirror = mirror();
    let debootstrap = program("debootstrap", "debootstrap");
    eprintln!(
        "guest_support: building the guest rootfs ({SUITE}, {INCLUDE}) from {mirror} into {} \
         (about a minute, once; log in {})",
        done.display(),
        log_path.display()
    );
    let started = Instant::now();
    let log = File::create(&log_path)
        .unwrap_or_else(|e| panic!("guest_support: cannot create {}: {e}", log_path.display()));
    // In a PID and mount namespace of its own, tied to this process: if the test process
    // is killed, debootstrap and everything it started die with it, and its mounts
    // (the target's /proc, /sys, /dev/pts) vanish with the namespace.
    let mut cmd = Command::new(program("unshare", "util-linux"));
    cmd.args(["--mount", "--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(debootstrap)
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={INCLUDE}"))
        .arg(SUITE)
        .arg(&building)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    let status = spawn_tied(cmd)
        .and_then(|mut child| child.wait())
        .expect("guest_support: cannot run debootstrap");
    if !status.success() {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let _ = fs::remove_dir_all(&building);
        panic!(
            "guest_support: debootstrap {SUITE} from {mirror} failed ({status}); last lines of {}:\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    post_process(&building);
    fs::write(
        building.join(".slipway-guest-rootfs"),
        format!("{SUITE} {VARIANT} {INCLUDE} layout {LAYOUT} from {mirror}\n"),
    )
    .expect("stamp");
    fs::rename(&building, &done).unwrap_or_else(|e| {
        panic!(
            "guest_support: cannot rename {} to {}: {e}",
            building.display(),
            done.display()
        )
    });
    eprintln!(
        "guest_support: guest rootfs built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    done
}

/// What every guest starts without: host keys (each guest makes its own), the host's
/// resolver (guests have no route out: nothing to ask), downloaded packages and package
/// lists (a fresh Proxmox template has none either: provisioning runs `apt-get update`).
fn post_process(root: &Path) {
    let remove_matching = |dir: &str, keep: &dyn Fn(&str) -> bool| {
        for entry in fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    };
    remove_matching("etc/ssh", &|name| !name.starts_with("ssh_host_"));
    remove_matching("var/cache/apt/archives", &|name| !name.ends_with(".deb"));
    remove_matching("var/cache/apt", &|name| !name.ends_with(".bin"));
    remove_matching("var/lib/apt/lists", &|name| name == "lock");
    fs::write(
        root.join("etc/resolv.conf"),
        "# Slipway test guest: no name server (the guest has no route out)\n",
    )
    .expect("resolv.conf");
}
