//! Running the programs a guest is made of: found on PATH (or panicking with the
//! package to install), tied to the test process, stopped with their PID namespace.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// Stops what `unshare --pid --fork --kill-child` started: killing the namespace's PID 1
/// (`init`, else the only child of `unshare`) ends the namespace — the kernel kills and
/// reaps the rest before `unshare` sees its child exit, and the namespace's mounts go
/// with them.
pub fn stop_pid_namespace(mut unshare: Child, init: Option<i32>) {
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

/// The only child of process `parent` (the guest's PID 1 for its `unshare`).
pub fn child_of(parent: u32) -> Option<i32> {
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

pub fn ip() -> Command {
    Command::new(ip_path())
}

/// Runs `cmd`; its output if it exits 0, else what it printed.
pub fn run_checked(cmd: &mut Command) -> Result<Output, String> {
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
pub fn run(cmd: &mut Command) -> Output {
    run_checked(cmd).unwrap_or_else(|e| panic!("guest_support: {e}"))
}

/// `path` single-quoted for sh.
pub fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}
