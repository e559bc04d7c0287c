//! A real guest for tests: a Debian bookworm userland with OpenSSH, Python 3,
//! nginx-light, iproute2 and sudo, in a network namespace of its own, with sshd
//! as PID 1 of its own PID namespace — what a new Proxmox container looks like
//! from the outside, for login and post-provisioning tests (fakepve runs nothing).
//!
//! Use it from an integration test with `mod guest_support;` (a test at the top of
//! `tests/`) or `#[path = "../guest_support/mod.rs"] mod guest_support;`.
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
pub mod proxy;
pub mod rootfs;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Once, OnceLock};
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
        let mut cmd = Command::new(ip_path());
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
            if ssh_banner(addr).is_some() {
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

/// Stops what `unshare --pid --fork --kill-child` started: killing the namespace's PID 1
/// (`init`, else the only child of `unshare`) ends the namespace — the kernel kills and
/// reaps the rest before `unshare` sees its child exit, and the namespace's mounts go
/// with them.
fn stop_pid_namespace(mut unshare: Child, init: Option<i32>) {
    if let Some(pid) = init.or_else(|| child_of(unshare.id())) {
        // SAFETY: kill(2) with a PID and a signal number; no memory involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(unshare.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = unshare.kill(); // --kill-child takes PID 1 along
    let _ = unshare.wait();
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

/// The first bytes sshd sends, if it answers.
fn ssh_banner(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let banner = String::from_utf8_lossy(&buf[..n]).into_owned();
    banner.starts_with("SSH-").then_some(banner)
}

/// The only child of process `parent` (the guest's PID 1 for its `unshare`).
fn child_of(parent: u32) -> Option<i32> {
    if let Ok(text) = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")) {
        if let Some(pid) = text.split_whitespace().next() {
            return pid.parse().ok();
        }
    }
    // Without CONFIG_PROC_CHILDREN: whose parent is `parent`?
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (comm) S PPID …": comm may hold spaces, so read after the last ')'.
        let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1);
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// Spawns `cmd` so that it is killed (SIGKILL) when this test process ends, however it
/// ends. PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, and test
/// threads end with their test, so every such child is forked by one thread that lives
/// as long as the process.
pub fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("guest_support spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("guest_support: cannot start the spawner thread");
        tx
    });
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe, and reads errno.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .expect("guest_support: the spawner thread is gone");
    answer
        .recv()
        .expect("guest_support: the spawner thread is gone")
}

/// `name` on PATH (or in /usr/sbin, /sbin: debootstrap is there, not on every PATH);
/// panics naming the Debian package to install.
pub fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("guest_support: `{name}` is not installed: apt-get install {package}");
}

fn ip_path() -> PathBuf {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| program("ip", "iproute2")).clone()
}

pub(crate) fn ip() -> Command {
    Command::new(ip_path())
}

/// Runs `cmd`; its output if it exits 0, else what it printed.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `cmd`, panicking with what it printed unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Output {
    run_checked(cmd).unwrap_or_else(|e| panic!("guest_support: {e}"))
}

/// `path` single-quoted for sh.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}
