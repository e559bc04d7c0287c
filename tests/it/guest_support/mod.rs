//! A real guest for tests: a Debian bookworm userland with OpenSSH, Python 3,
//! nginx-light, iproute2 and sudo, in a network namespace of its own, with sshd
//! as PID 1 of its own PID namespace — what a new Proxmox container looks like
//! from the outside, for login and post-provisioning tests (fakepve runs nothing).
//!
//! A module of the integration-test binary (`tests/it`): `crate::guest_support`.
//!
//! - The root filesystem is built once by debootstrap from the machine's Debian mirror
//!   and cached under `<target>/guest-rootfs/` ([`rootfs::rootfs`]); each guest gets an
//!   overlay of it (a copy where overlayfs cannot be mounted, or with
//!   `SLIPWAY_GUEST_COPY=1`), so guests never share state.
//! - [`Guest::start`] takes the guest's address, the gateway (the machine's end of the
//!   veth pair) and the prefix. **Each test picks its own subnet**, distinct from every
//!   other test's: a /30 (`10.231.N.0/30`: gateway `.1`, guest `.2`) or a /24 of
//!   10.231.0.0/16, which nothing else of Slipway's tests uses (the apps tests use
//!   10.199.0.0/16). A subnet that overlaps any route of the machine — another live
//!   guest's included — panics at once. The guest has no default route: it reaches the
//!   gateway and nothing else.
//! - Fresh host keys per guest (`ssh-keygen -A` in the guest), the given public keys in
//!   `/root/.ssh/authorized_keys` (0700/0600).
//! - [`Guest::with_apt_proxy`] runs tinyproxy on the gateway that lets the guest's apt
//!   reach the machine's Debian mirror (and only it).
//! - Dropping the guest kills sshd (and with it everything in its PID namespace),
//!   deletes the namespace, the veth pair and the overlay, also when the test panics.
//!   If the test process is killed instead, the guest's processes die with it
//!   (`PR_SET_PDEATHSIG`), and the next test process removes the namespaces, links
//!   and directories left behind.
//!
//! Needs root (network namespaces, mounts, chroot) and the Debian packages debootstrap,
//! openssh-client, iproute2, util-linux and (for the proxy) tinyproxy: without them it
//! panics, saying so — a test that needs a real guest fails, it never skips.

#![allow(dead_code)]

pub mod net;
pub mod process;
pub mod proxy;
pub mod rootfs;
pub mod ssh;

use process::{child_of, ip, quote, run, run_checked, stop_pid_namespace};
#[allow(unused_imports)]
pub use process::{program, spawn_tied};
#[allow(unused_imports)]
pub use ssh::{keygen, KeyPair};

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// How long sshd may take to answer on port 22 (it takes about half a second).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running guest. Everything it made is removed on drop.
pub struct Guest {
    address: Ipv4Addr,
    gateway: Ipv4Addr,
    prefix: u8,
    netns: String,
    host_if: String,
    hostname: String,
    /// This guest's directory: `upper/` + `work/` + `merged/` (overlay) or `root/` (copy),
    /// `boot.sh`, `sshd.log`, the proxy's files.
    dir: PathBuf,
    /// Where the guest's own files are: the overlay's upper directory, or the copy.
    root: PathBuf,
    netns_created: bool,
    link_created: bool,
    /// `ip netns exec … unshare …`; its only child is the guest's PID 1, sshd.
    sshd: Option<Child>,
    init_pid: Option<i32>,
    proxy: Option<Child>,
    started_in: Duration,
}

impl Guest {
    /// Starts a guest at `address/prefix` whose gateway (the machine's end of its veth
    /// pair) is `gateway`, with `authorized_keys` (OpenSSH public key lines) for root, and
    /// returns once its sshd answers on port 22. Panics, saying why, if anything fails
    /// (no root, no network namespaces, a subnet in use, sshd not up in [`START_TIMEOUT`]).
    pub fn start(
        address: Ipv4Addr,
        gateway: Ipv4Addr,
        prefix: u8,
        authorized_keys: &[String],
    ) -> Guest {
        preflight();
        net::check_addresses(address, gateway, prefix);
        let rootfs = rootfs::rootfs();
        let guests_dir = rootfs::cache_dir().join("guests");
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| net::sweep_stale(&guests_dir));

        let started = Instant::now();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let host_if = format!("{}{pid:x}n{n}", net::LINK_PREFIX);
        assert!(host_if.len() <= 15, "interface name {host_if} is too long");
        let mut guest = Guest {
            address,
            gateway,
            prefix,
            netns: format!("{}{pid}-{n}", net::NETNS_PREFIX),
            host_if,
            hostname: format!("guest-{}", address.to_string().replace('.', "-")),
            dir: guests_dir.join(format!("{pid}-{n}")),
            root: PathBuf::new(),
            netns_created: false,
            link_created: false,
            sshd: None,
            init_pid: None,
            proxy: None,
            started_in: Duration::ZERO,
        };
        // From here on a panic drops `guest`, which removes whatever was made so far.
        fs::create_dir_all(&guest.dir).expect("guest directory");
        guest.prepare_root(rootfs, authorized_keys);
        {
            let _lock = net::lock(&rootfs::cache_dir());
            let subnet = net::network(address, prefix);
            let taken = net::overlapping_routes(subnet, prefix);
            assert!(
                taken.is_empty(),
                "guest_support: {subnet}/{prefix} overlaps what this machine already routes \
                 ({}); give each test its own subnet of 10.231.0.0/16",
                taken.join("; ")
            );
            net::add_netns(&guest.netns);
            guest.netns_created = true;
            guest.link_created = true;
            net::add_veth(&guest.netns, &guest.host_if, address, gateway, prefix);
        }
        guest.boot(rootfs);
        guest.wait_for_ssh(started + START_TIMEOUT);
        guest.started_in = started.elapsed();
        eprintln!(
            "guest_support: guest {} up at {address} in {} ms",
            guest.hostname,
            guest.started_in.as_millis()
        );
        guest
    }

    /// The guest's own files before boot: an overlay's upper directory (or a copy of the
    /// rootfs), with the hostname and root's authorized_keys.
    fn prepare_root(&mut self, rootfs: &Path, authorized_keys: &[String]) {
        if overlay_works(rootfs) {
            for sub in ["upper", "work", "merged"] {
                fs::create_dir(self.dir.join(sub)).expect("overlay directory");
            }
            self.root = self.dir.join("upper");
        } else {
            self.root = self.dir.join("root");
            run(Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(rootfs)
                .arg(&self.root));
        }
        let mkdir = |path: &str, mode: u32| {
            let dir = self.root.join(path);
            fs::create_dir_all(&dir).expect("guest directory");
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
        };
        mkdir("etc", 0o755);
        mkdir("root", 0o700);
        mkdir("root/.ssh", 0o700);
        let write = |path: &str, text: &str, mode: u32| {
            let file = self.root.join(path);
            fs::write(&file, text).expect("guest file");
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("chmod");
        };
        let mut keys = authorized_keys.join("\n");
        keys.push('\n');
        write("root/.ssh/authorized_keys", &keys, 0o600);
        write("etc/hostname", &format!("{}\n", self.hostname), 0o644);
        write(
            "etc/hosts",
            &format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                self.hostname
            ),
            0o644,
        );
    }

    /// Starts sshd as PID 1 of a new PID (and mount and UTS) namespace in the guest's
    /// network namespace, chrooted into the guest's root.
    fn boot(&mut self, rootfs: &Path) {
        let overlay = self.root.ends_with("upper");
        let merged = if overlay {
            self.dir.join("merged")
        } else {
            self.root.clone()
        };
        let mut script = String::from("set -e\n");
        if overlay {
            for path in [rootfs, &self.root, &self.dir] {
                let path = path.to_string_lossy();
                assert!(
                    !path.contains([',', ':']),
                    "guest_support: overlayfs cannot take the path {path}"
                );
            }
            script.push_str(&format!(
                "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}\n",
                quote(rootfs),
                quote(&self.root),
                quote(&self.dir.join("work")),
                quote(&merged)
            ));
        }
        let m = quote(&merged);
        script.push_str(&format!(
            "mount -t proc proc {m}/proc\n\
             mount -t sysfs sysfs {m}/sys\n\
             mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs {m}/run\n\
             mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts {m}/dev/pts\n\
             mount --bind {m}/dev/pts/ptmx {m}/dev/ptmx\n\
             hostname {host}\n\
             exec chroot {m} /bin/sh -c 'rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; \
             mkdir -p /run/sshd /run/lock; exec /usr/sbin/sshd -D -e'\n",
            host = self.hostname,
        ));
        let boot = self.dir.join("boot.sh");
        fs::write(&boot, script).expect("boot.sh");
        let log = fs::File::create(self.dir.join("sshd.log")).expect("sshd.log");
        let mut cmd = ip();
        cmd.args(["netns", "exec", &self.netns])
            .arg(program("unshare", "util-linux"))
            .args(["--mount", "--pid", "--uts", "--fork", "--kill-child", "sh"])
            .arg(&boot)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.sshd = Some(spawn_tied(cmd).expect("guest_support: cannot start the guest"));
    }

    /// Waits for sshd's banner on port 22.
    fn wait_for_ssh(&mut self, deadline: Instant) {
        let addr = SocketAddr::from((self.address, 22));
        loop {
            if let Some(status) = self.sshd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "guest_support: the guest at {} stopped before sshd answered ({status}); \
                     its output:\n{}",
                    self.address,
                    self.sshd_log()
                );
            }
            if ssh::ssh_banner(addr).is_some() {
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "guest_support: sshd of the guest at {} did not answer on port 22 within \
                     {} s; its output:\n{}",
                    self.address,
                    START_TIMEOUT.as_secs(),
                    self.sshd_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.init_pid = self.sshd.as_ref().and_then(|c| child_of(c.id()));
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The guest's network namespace, for `ip netns exec NAME …`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// How long [`Guest::start`] took (the rootfs build not counted).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// What sshd (`-D -e`) and the boot script printed so far.
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The guest's PID 1 (sshd) as the machine numbers it.
    pub fn init_pid(&self) -> Option<i32> {
        self.init_pid
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            stop_pid_namespace(proxy, None);
        }
        if let Some(sshd) = self.sshd.take() {
            stop_pid_namespace(sshd, self.init_pid);
        }
        if self.netns_created {
            net::delete_netns(&self.netns);
        }
        if self.link_created {
            // Usually gone with the namespace already.
            let _ = run_checked(ip().args(["link", "del", &self.host_if]));
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("guest_support: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

/// Panics, saying what is missing, where a real guest cannot run.
fn preflight() {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "guest_support: a real guest needs root (network namespaces, mounts, chroot); this \
         test runs as uid {euid}. Run it as root, as CI does."
    );
    for (name, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("debootstrap", "debootstrap"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ] {
        program(name, package);
    }
}

/// Whether an overlay of `rootfs` can be mounted here (once per process).
fn overlay_works(rootfs: &Path) -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        if std::env::var_os("SLIPWAY_GUEST_COPY").is_some_and(|v| v == "1") {
            return false;
        }
        let dir = rootfs::cache_dir()
            .join("guests")
            .join(format!("{}-probe", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["upper", "work", "merged"] {
            fs::create_dir_all(dir.join(sub)).expect("probe directory");
        }
        let script = format!(
            "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {m} && test -e {m}/etc/debian_version",
            quote(rootfs),
            quote(&dir.join("upper")),
            quote(&dir.join("work")),
            m = quote(&dir.join("merged")),
        );
        let works = run_checked(
            Command::new(program("unshare", "util-linux")).args(["--mount", "sh", "-c", &script]),
        )
        .is_ok();
        let _ = fs::remove_dir_all(&dir);
        if !works {
            eprintln!("guest_support: overlayfs does not mount here; guests get a copy of the rootfs");
        }
        works
    })
}
