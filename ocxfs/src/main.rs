//! The `ocxfs` command: its subcommands, dispatched to the library.

use std::io::IsTerminal;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use ocxfs::mount::{self, MountArgs};

/// Mount a One Codex account as a read-only filesystem.
#[derive(Parser)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("OCXFS_COMMIT"), ")"), about)]
struct Cli {
    /// Log level or filter (also RUST_LOG), e.g. info, debug, ocxfs=trace
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount your One Codex documents on a directory
    Mount(Box<MountArgs>),
    /// Unmount a mounted directory
    Unmount {
        /// The mount point
        mountpoint: std::path::PathBuf,
    },
    /// Read files or directories of a mount into its caches (the disk cache
    /// with --cache-dir), saying first how many POSTs that takes
    Prefetch(ocxfs::prefetch_cmd::PrefetchArgs),
    /// Show what a running mount did: POSTs, bytes, cache hits, errors
    Stats {
        /// The mount point
        mountpoint: std::path::PathBuf,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// List POSTs per document and sample
        #[arg(long)]
        per_document: bool,
    },
    /// Print the completion script for a shell (e.g. `ocxfs completions bash
    /// > /etc/bash_completion.d/ocxfs`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `ocxfs manpage | man -l -`), or write
    /// one page per command into DIR
    Manpage {
        /// Write ocxfs.1, ocxfs-mount.1, … here instead
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Serve a fake One Codex API and storage (test bed and offline demo)
    #[cfg(feature = "demo")]
    Emulator(Box<ocxfs_emulator::EmulatorArgs>),
    /// Not in this build (built without the `demo` feature)
    #[cfg(not(feature = "demo"))]
    #[command(hide = true)]
    Emulator {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn init_logging(level: Option<&str>) {
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,ocxfs=info"))
        }
    };
    // The HTTP libraries log request URLs at debug level, and presigned URLs
    // are secrets: keep them at info whatever the filter asks.
    let filter = [
        "reqwest=info",
        "hyper=info",
        "hyper_util=info",
        "h2=info",
        "rustls=info",
    ]
    .into_iter()
    .fold(filter, |f, d| {
        f.add_directive(d.parse().expect("static directive"))
    });
    // A detached daemon's stderr is its log file: no colour codes there.
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(filter)
        .with(log)
        .with(mount::EarlyWarnings)
        .init();
}

fn main() {
    // Run as `mount.fuse.ocxfs` (by `mount -t fuse.ocxfs` and fstab), take
    // mount(8)'s argument form.
    let args: Vec<String> = std::env::args().collect();
    let helper = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "mount.fuse.ocxfs");
    let cli = if helper {
        match mount::helper_args(&args[1..]) {
            Ok(argv) => Cli::parse_from(argv),
            Err(reason) => {
                eprintln!("mount.fuse.ocxfs: {reason}");
                std::process::exit(1);
            }
        }
    } else {
        // `ocxfs mount DIR -o a,b=c` takes the options of mount(8)'s form too.
        match mount::expand_mount_options(&args) {
            Ok(argv) => Cli::parse_from(argv),
            Err(reason) => {
                eprintln!("ocxfs: {reason}");
                std::process::exit(2);
            }
        }
    };
    if matches!(cli.command, Command::Mount(_)) {
        if let Err(reason) = mount::move_api_key_to_environment() {
            eprintln!("ocxfs: {reason}");
            std::process::exit(1);
        }
    }
    init_logging(cli.log_level.as_deref());
    let result = match cli.command {
        Command::Mount(args) if args.foreground => mount::run_foreground(*args),
        Command::Mount(args) => mount::spawn_daemon(&args, cli.log_level.as_deref()),
        Command::Unmount { mountpoint } => mount::unmount(&mountpoint),
        Command::Prefetch(args) => ocxfs::prefetch_cmd::run(&args),
        Command::Stats {
            mountpoint,
            json,
            per_document,
        } => ocxfs::stats::read(&mountpoint).map(|s| {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).expect("stats serialize")
                );
            } else {
                print!("{}", ocxfs::stats::render(&s, per_document));
            }
        }),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ocxfs", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage { dir: None } => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| format!("cannot write the manual page: {e}")),
        Command::Manpage { dir: Some(dir) } => clap_mangen::generate_to(Cli::command(), &dir)
            .map_err(|e| format!("cannot write manual pages into {}: {e}", dir.display())),
        #[cfg(feature = "demo")]
        Command::Emulator(args) => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(ocxfs_emulator::run(*args))
                    .map_err(|e| e.to_string())
            }),
        #[cfg(not(feature = "demo"))]
        Command::Emulator { .. } => Err(ocxfs::demo::NOT_BUILT.to_owned()),
    };
    if let Err(reason) = result {
        eprintln!("ocxfs: {reason}");
        std::process::exit(1);
    }
}
