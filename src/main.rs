//! The `slipway` command: run the bot, a local console, check or migrate.

use clap::{Parser, Subcommand};
use slipway::app::{self, App};
use slipway::chat::console::{self, ConsoleSink};
use slipway::chat::matrix::MatrixAdapter;
use slipway::config::Config;
use slipway::provider::ssh_identity::ProvisioningKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "slipway",
    version,
    about = "Self-service Proxmox LXC environments from chat"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot: configured chat adapters, workers and the operations endpoint.
    Run {
        #[arg(long, short, default_value = "slipway.toml")]
        config: PathBuf,
    },
    /// A local chat: one command per line from stdin, replies and progress on stdout.
    Console {
        #[arg(long, short, default_value = "slipway.toml")]
        config: PathBuf,
        /// The console user to act as (from console.users).
        #[arg(long = "as")]
        user: Option<String>,
    },
    /// Validate the configuration, commands/, profiles/ and templates; list every problem.
    Check {
        #[arg(long, short, default_value = "slipway.toml")]
        config: PathBuf,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[arg(long, short, default_value = "slipway.toml")]
        config: PathBuf,
    },
    /// Discord tasks.
    Discord {
        #[command(subcommand)]
        command: DiscordCommand,
    },
    /// Slipway's own SSH key (in its data directory, beside the database).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the public key new environments trust (made if there is none).
    Show {
        #[arg(long, short, default_value = "slipway.toml")]
        config: PathBuf,
    },
    /// Make a new key pair. Environments created before keep trusting the old key.
    Rotate {
        #[arg(long, short, default_value = "slipway.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DiscordCommand {
    /// Write the slash commands generated from commands/*.toml to Discord.
    SyncCommands {
        #[arg(long, short, default_value = "slipway.toml")]
        config: PathBuf,
        /// The guild to write them to (default: discord.guild_id; none: global).
        #[arg(long)]
        guild: Option<u64>,
    },
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load(config: &Path) -> Result<Config, ExitCode> {
    Config::load(config).map_err(|problems| {
        eprintln!(
            "slipway: the configuration has {} problem(s):",
            problems.len()
        );
        for p in problems {
            eprintln!("  {p}");
        }
        ExitCode::from(1)
    })
}

/// At most two malloc arenas: glibc gives each thread that allocates its own
/// (up to 8 per core), and each keeps freed memory resident. Slipway's
/// threads allocate little, so sharing two costs no measurable speed and
/// keeps the idle process ~1.5 MB smaller (BENCHMARKS.md, idle RSS).
/// `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists;
        // mallopt only changes glibc's allocator settings.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slipway: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Check { config } => check(&config),
            Command::Migrate { config } => migrate(&config),
            Command::Console { config, user } => console_cmd(&config, user.as_deref()).await,
            Command::Run { config } => run(&config).await,
            Command::Discord {
                command: DiscordCommand::SyncCommands { config, guild },
            } => sync_commands(&config, guild).await,
            Command::Keys { command } => keys_cmd(command),
        }
    })
}

fn check(path: &Path) -> ExitCode {
    init_tracing("warn");
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match app::load_catalog(&config) {
        Ok(catalog) => {
            println!(
                "{}: ok ({} teams, {} commands, {} profiles)",
                path.display(),
                config.teams.len(),
                catalog.commands().count(),
                catalog.profiles.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("slipway: {} problem(s) found:", problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            ExitCode::from(1)
        }
    }
}

fn migrate(path: &Path) -> ExitCode {
    init_tracing("warn");
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match slipway::store::Store::open(&config.database) {
        Ok(_) => {
            println!("{}: schema is up to date", config.database.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slipway: cannot migrate {}: {e}", config.database.display());
            ExitCode::from(1)
        }
    }
}

fn keys_cmd(command: KeysCommand) -> ExitCode {
    let (path, rotate) = match &command {
        KeysCommand::Show { config } => (config, false),
        KeysCommand::Rotate { config } => (config, true),
    };
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dir = app::data_dir(&config);
    let key = if rotate {
        ProvisioningKey::create(&dir)
    } else {
        ProvisioningKey::load_or_create(&dir)
    };
    match key {
        Ok(k) => {
            if rotate {
                eprintln!(
                    "slipway: made a new provisioning key {} in {}; environments created before keep trusting the old one",
                    k.fingerprint,
                    k.private_file.display()
                );
            }
            println!("{}", k.public_line);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slipway: Slipway's provisioning key: {e}");
            ExitCode::from(1)
        }
    }
}

async fn console_cmd(path: &Path, user: Option<&str>) -> ExitCode {
    init_tracing("warn");
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let app = match App::build(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("slipway: {e:#}");
            return ExitCode::from(1);
        }
    };
    let dispatcher = app.dispatcher();
    let actor = match console::actor(&dispatcher, user) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("slipway: {e}");
            app.shutdown(Duration::from_secs(1)).await;
            return ExitCode::from(2);
        }
    };
    app.start(vec![Arc::new(ConsoleSink::new())]);
    let ok = console::run(&dispatcher, actor).await;
    app.shutdown(Duration::from_secs(30)).await;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(path: &Path) -> ExitCode {
    // matrix-sdk logs every failed request at ERROR, expected 404s too; the
    // Matrix adapter logs the failures that matter, with their context.
    init_tracing("info,matrix_sdk::http_client=off,matrix_sdk_crypto::backups=error");
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let app = match App::build(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("slipway: {e:#}");
            return ExitCode::from(1);
        }
    };
    let discord = match slipway::chat::discord::Discord::new(&app) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("slipway: {e:#}");
            app.shutdown(Duration::from_secs(5)).await;
            return ExitCode::from(1);
        }
    };
    let mut sinks: Vec<_> = discord.iter().map(|d| d.sink()).collect();
    let matrix = match app.config.matrix.clone() {
        Some(cfg) => match MatrixAdapter::connect(cfg, &app.catalog).await {
            Ok(adapter) => {
                sinks.push(adapter.sink());
                Some(adapter)
            }
            Err(e) => {
                eprintln!("slipway: Matrix: {e}");
                app.shutdown(Duration::from_secs(5)).await;
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    app.start(sinks);
    if let Some(discord) = &discord {
        if let Err(e) = discord.start(&app).await {
            eprintln!("slipway: {e:#}");
            app.shutdown(Duration::from_secs(5)).await;
            return ExitCode::from(1);
        }
    }
    if let Some(adapter) = matrix {
        adapter.spawn(app.dispatcher(), &app.tracker, app.cancel.clone());
        tracing::info!("Matrix adapter is listening");
    }
    match app.serve_http().await {
        Ok(Some(addr)) => tracing::info!(%addr, "serving /healthz and /metrics"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("slipway: {e:#}");
            app.shutdown(Duration::from_secs(5)).await;
            return ExitCode::from(1);
        }
    }
    tracing::info!("slipway is running; SIGTERM or Ctrl-C stops it");
    wait_for_signal().await;
    tracing::info!("shutting down: finishing running steps");
    app.shutdown(Duration::from_secs(60)).await;
    ExitCode::SUCCESS
}

async fn sync_commands(path: &Path, guild: Option<u64>) -> ExitCode {
    init_tracing("warn");
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let catalog = match app::load_catalog(&config) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("slipway: {} problem(s) found:", problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(1);
        }
    };
    match slipway::chat::discord::sync_commands(&config, &catalog, guild).await {
        Ok(n) => {
            let target = guild
                .or(config.discord.as_ref().and_then(|d| d.guild_id))
                .map(|g| format!("guild {g}"))
                .unwrap_or_else(|| "all guilds (global commands)".into());
            println!("{n} commands written to {target}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slipway: cannot write the Discord commands: {e}");
            ExitCode::from(1)
        }
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
