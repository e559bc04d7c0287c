//! Figure: resident memory of the release `slipway run` after 60 s idle with
//! Discord (gateway mode, against the gateway and REST stand-ins in this
//! process) and Matrix (a real Synapse from the `.venv`) connected.
//!
//! To show what the figure is made of, the same binary runs at the same time
//! in three more configurations: Discord only, Matrix only and neither (the
//! workers, scheduler, reconciler and `/healthz` alone). Every process has
//! its own database, stand-ins and Matrix bot user, and all share one fakepve
//! and one Synapse. For the process with both adapters `/proc/PID/smaps` is
//! summed by mapping: the binary's own pages (code; data and unwind tables),
//! shared libraries, the heap and other anonymous memory (thread stacks,
//! malloc's per-thread arenas). VmRSS counts the binary's resident code pages
//! in full although they are clean, shared with other processes running the
//! same file, and dropped first under memory pressure.
//!
//! `SLIPWAY_BENCH_BIN=/path/to/slipway` measures another build of the same
//! source instead (e.g. with another release profile).

use crate::common::{Opts, TestEnv};
use crate::discord_support::gateway::Gateway;
use crate::discord_support::rest::Rest;
use crate::discord_support::{ADMIN_CHANNEL, APP, GUILD, STATUS_CHANNEL, WEB_ADMIN, WEB_DEV};
use crate::matrix_support::{eventually, Person, Synapse};
use crate::process::{end, free_port, healthz_ok, vm_kb};
use crate::Figure;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const IDLE: Duration = Duration::from_secs(60);
const TARGET_KB: u64 = 25 * 1024;

/// One configuration of the binary.
struct Variant {
    name: &'static str,
    discord: bool,
    matrix: bool,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "both",
        discord: true,
        matrix: true,
    },
    Variant {
        name: "discord",
        discord: true,
        matrix: false,
    },
    Variant {
        name: "matrix",
        discord: false,
        matrix: true,
    },
    Variant {
        name: "none",
        discord: false,
        matrix: false,
    },
];

/// A running `slipway run` and the stand-ins it is connected to.
struct Started {
    variant: &'static Variant,
    child: Child,
    port: u16,
    gateway: Option<Gateway>,
    /// Kept alive for the gateway's REST side.
    _rest: Option<Rest>,
    bot: Option<String>,
}

/// The Matrix side shared by every process: alice (admin) creates a command
/// room, an admin room and an encrypted room, and invites bob and the bots.
struct MatrixWorld {
    synapse: Synapse,
    alice: Person,
    bob: Person,
    /// Bot user id and password by variant name.
    bots: Vec<(&'static str, Person)>,
    rooms: Vec<String>,
    admin_room: String,
}

async fn matrix_world() -> MatrixWorld {
    let synapse = Synapse::start().await;
    let alice = synapse.register("alice", true).await;
    let bob = synapse.register("bob", false).await;
    let mut bots = Vec::new();
    for v in VARIANTS.iter().filter(|v| v.matrix) {
        bots.push((
            v.name,
            synapse
                .register(&format!("slipway-{}", v.name), false)
                .await,
        ));
    }
    let ids: Vec<&str> = bots.iter().map(|(_, p)| p.user_id.as_str()).collect();
    let with_bob: Vec<&str> = ids.iter().copied().chain([bob.user_id.as_str()]).collect();
    let room = alice.create_room(&with_bob, &[], false).await;
    let admin_room = alice.create_room(&ids, &[], false).await;
    let secret_room = alice.create_room(&with_bob, &[], true).await;
    bob.join(&room).await;
    bob.join(&secret_room).await;
    MatrixWorld {
        synapse,
        alice,
        bob,
        bots,
        rooms: vec![room, admin_room.clone(), secret_room],
        admin_room,
    }
}

/// tests/it/common's configuration with this variant's database, an `[http]`
/// port, team bindings for the chat platforms and the adapters' sections.
fn write_config(
    env: &TestEnv,
    v: &Variant,
    port: u16,
    rest: Option<&Rest>,
    world: &MatrixWorld,
) -> std::path::PathBuf {
    let dir = env.dir.path();
    let base = std::fs::read_to_string(&env.config_path).unwrap();
    let mut text = base
        .replace(
            "database = \"slipway.db\"",
            &format!("database = \"idle-{}.db\"", v.name),
        )
        .replace(
            r#"members = { console = ["web-dev"] }"#,
            &format!(
                r#"members = {{ console = ["web-dev"], discord = ["{WEB_DEV}"], matrix = ["{}"] }}"#,
                world.bob.user_id
            ),
        )
        .replace(
            r#"admins = { console = ["web-admin"] }"#,
            &format!(
                r#"admins = {{ console = ["web-admin"], discord = ["{WEB_ADMIN}"], matrix = ["{}"] }}"#,
                world.alice.user_id
            ),
        );
    text.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n"));
    if let Some(rest) = rest {
        std::fs::write(dir.join("discord-token"), "test-bot-token").unwrap();
        text.push_str(&format!(
            r#"
[discord]
mode = "gateway"
application_id = {APP}
token_file = "discord-token"
guild_id = {GUILD}
admin_channel = {ADMIN_CHANNEL}
status_channel = {STATUS_CHANNEL}
api_proxy = "{}"
"#,
            rest.url
        ));
    }
    if let Some((_, bot)) = world.bots.iter().find(|(n, _)| *n == v.name) {
        let password = format!("matrix-password-{}", v.name);
        std::fs::write(dir.join(&password), &bot.password).unwrap();
        text.push_str(&format!(
            r#"
[matrix]
homeserver = "{}"
user_id = "{}"
password_file = "{password}"
store_dir = "matrix-store-{}"
admin_room = "{}"
"#,
            world.synapse.url, bot.user_id, v.name, world.admin_room
        ));
    }
    let path = dir.join(format!("idle-{}.toml", v.name));
    std::fs::write(&path, text).unwrap();
    path
}

/// The binary measured: this build's, or `SLIPWAY_BENCH_BIN` (to compare
/// another build of the same source, e.g. another release profile).
fn binary() -> String {
    let path =
        std::env::var("SLIPWAY_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_slipway").into());
    // As /proc/PID/smaps names it.
    std::fs::canonicalize(&path)
        .map(|p| p.display().to_string())
        .unwrap_or(path)
}

fn spawn(config: &Path) -> Child {
    Command::new(binary())
        .args(["run", "--config"])
        .arg(config)
        // `slipway run`'s own default, at warn: matrix-sdk logs expected 404s
        // at ERROR.
        .env(
            "SLIPWAY_LOG",
            "warn,matrix_sdk::http_client=off,matrix_sdk_crypto::backups=error",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn slipway run")
}

async fn start(env: &TestEnv, v: &'static Variant, world: &MatrixWorld) -> Started {
    let (gateway, rest) = if v.discord {
        let gateway = Gateway::start().await;
        let rest = Rest::start().await;
        rest.set_gateway_url(&gateway.url);
        (Some(gateway), Some(rest))
    } else {
        (None, None)
    };
    let port = free_port();
    let config = write_config(env, v, port, rest.as_ref(), world);
    Started {
        variant: v,
        child: spawn(&config),
        port,
        gateway,
        _rest: rest,
        bot: world
            .bots
            .iter()
            .find(|(n, _)| *n == v.name)
            .map(|(_, p)| p.user_id.clone()),
    }
}

/// Connected: `/healthz` answers (so `slipway run` got past the Matrix
/// login, catch-up sync and joins, and started Discord) and the gateway
/// stand-in has sent READY after serenity's IDENTIFY.
fn connected(s: &Started) -> bool {
    healthz_ok(s.port)
        && s.gateway
            .as_ref()
            .is_none_or(|g| g.ready.load(Ordering::SeqCst))
}

/// What `/proc/PID/status` says, in kB (threads: a count).
struct Status {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

fn status(pid: u32) -> Status {
    Status {
        rss: vm_kb(pid, "VmRSS:"),
        hwm: vm_kb(pid, "VmHWM:"),
        anon: vm_kb(pid, "RssAnon:"),
        file: vm_kb(pid, "RssFile:"),
        threads: vm_kb(pid, "Threads:"),
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Resident kB of `/proc/PID/smaps`, summed by mapping.
#[derive(Default)]
struct Smaps {
    /// The binary's executable pages (its code), and how much is mapped.
    code: u64,
    code_mapped: u64,
    /// The binary's other pages: read-only data, unwind tables, relocated
    /// and writable data.
    data: u64,
    /// Of `data`: pages written since mapping (relocations the loader
    /// applied, statics): private to this process.
    data_dirty: u64,
    /// Other files: shared libraries.
    libs: u64,
    /// `[heap]`, malloc's main arena.
    heap: u64,
    /// Anonymous mappings: thread stacks, malloc's per-thread arenas, large
    /// allocations.
    anon: u64,
}

fn smaps(pid: u32) -> Smaps {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let bin = binary();
    let mut sum = Smaps::default();
    let mut slot: fn(&mut Smaps) -> &mut u64 = |s| &mut s.anon;
    let mut in_code = false;
    let mut in_data = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else { continue };
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let perms = words.get(1).copied().unwrap_or_default();
            let path = words.get(5).copied().unwrap_or_default();
            in_code = path == bin && perms.contains('x');
            in_data = path == bin && !in_code;
            slot = if in_code {
                |s| &mut s.code
            } else if path == bin {
                |s| &mut s.data
            } else if path.starts_with('/') {
                |s| &mut s.libs
            } else if path == "[heap]" {
                |s| &mut s.heap
            } else {
                |s| &mut s.anon
            };
        } else if *first == "Rss:" {
            *slot(&mut sum) += words.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if *first == "Private_Dirty:" && in_data {
            sum.data_dirty += words.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if *first == "Size:" && in_code {
            sum.code_mapped += words
                .get(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    sum
}

/// Waits until every process is connected; Err names the ones that are not.
async fn all_connected(started: &[Started]) -> Result<(), Vec<&'static str>> {
    let begun = Instant::now();
    while !started.iter().all(connected) {
        if begun.elapsed() > Duration::from_secs(120) {
            return Err(started
                .iter()
                .filter(|s| !connected(s))
                .map(|s| s.variant.name)
                .collect());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Asserts that each bot joined every room it was invited to (it does so
/// while connecting).
async fn assert_joined(started: &[Started], world: &MatrixWorld) {
    for bot in started.iter().filter_map(|s| s.bot.as_ref()) {
        for room in &world.rooms {
            eventually(30, "the bot joining its rooms", || async {
                let members = world.alice.joined_members(room).await;
                if members.contains(bot) {
                    Ok(())
                } else {
                    Err(format!("{members:?}"))
                }
            })
            .await;
        }
    }
}

/// The figure's text: the process with both adapters, the other
/// configurations and where the first one's pages are.
fn describe(readings: &[(&str, Status)], m: &Smaps, connect_secs: f64) -> String {
    let both = &readings[0].1;
    let others: Vec<String> = readings[1..]
        .iter()
        .map(|(n, r)| format!("{n} {:.1}", mb(r.rss)))
        .collect();
    let bin = std::env::var("SLIPWAY_BENCH_BIN")
        .map(|b| format!("; binary {b}"))
        .unwrap_or_default();
    format!(
        "{:.1} MB (peak {:.1} MB; anon {:.1} + file {:.1}; {} threads); \
         same binary, other configs: {} MB; \
         smaps: binary code {:.1} (of {:.1} mapped) + binary data {:.1} ({:.1} dirty), libs {:.1}, \
         heap {:.1}, other anon {:.1} MB; all connected {connect_secs:.1} s after spawn{bin}",
        mb(both.rss),
        mb(both.hwm),
        mb(both.anon),
        mb(both.file),
        both.threads,
        others.join(", "),
        mb(m.code),
        mb(m.code_mapped),
        mb(m.data),
        mb(m.data_dirty),
        mb(m.libs),
        mb(m.heap),
        mb(m.anon),
    )
}

pub async fn idle_rss() -> Figure {
    let name = "RSS idle 60 s, Discord + Matrix connected";
    let env = TestEnv::new(Opts {
        provision: false,
        ..Opts::default()
    });
    let world = matrix_world().await;
    let mut started = Vec::new();
    for v in VARIANTS {
        started.push(start(&env, v, &world).await);
    }
    let begun = Instant::now();
    if let Err(late) = all_connected(&started).await {
        for s in started {
            end(s.child);
        }
        let text = format!("not connected within 120 s: {late:?}");
        return Figure::new(name, text, "<= 25 MB", false);
    }
    let connect_secs = begun.elapsed().as_secs_f64();
    assert_joined(&started, &world).await;
    tokio::time::sleep(IDLE).await;

    let mut readings = Vec::new();
    let mut breakdown = Smaps::default();
    for s in &mut started {
        if let Ok(Some(exit)) = s.child.try_wait() {
            panic!("slipway run ({}) exited while idle: {exit}", s.variant.name);
        }
        readings.push((s.variant.name, status(s.child.id())));
        if s.variant.name == "both" {
            breakdown = smaps(s.child.id());
        }
    }
    for s in started {
        end(s.child);
    }
    for (n, r) in &readings {
        eprintln!(
            "idle {n}: VmRSS {:.1} MB, VmHWM {:.1} MB, RssAnon {:.1} MB, RssFile {:.1} MB, {} threads",
            mb(r.rss),
            mb(r.hwm),
            mb(r.anon),
            mb(r.file),
            r.threads
        );
    }
    let ok = readings[0].1.rss <= TARGET_KB;
    Figure::new(
        name,
        describe(&readings, &breakdown, connect_secs),
        "<= 25 MB",
        ok,
    )
}
