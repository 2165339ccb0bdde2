//! `palisade`: run the gateway and operate it — keys, audit, cost, policy, scan.
//! Exit codes: 0 success, 1 a check failed (invalid pack, broken chain, failing tests),
//! 2 bad usage or unreadable input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod approvals;
mod ops;

/// Palisade: a policy gateway for LLM traffic from multi-agent systems.
#[derive(Parser)]
#[command(name = "palisade", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--data-dir`, for every subcommand that opens the embedded store.
#[derive(clap::Args)]
struct StoreArgs {
    /// Data directory of the embedded store.
    #[arg(
        long,
        global = true,
        default_value = "palisade-data",
        env = "PALISADE_DATA_DIR"
    )]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Manage per-agent virtual keys.
    Keys {
        #[command(subcommand)]
        command: ops::KeysCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Verify, export and follow the audit chain.
    Audit {
        #[command(subcommand)]
        command: ops::AuditCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Spend reports.
    Cost {
        #[command(subcommand)]
        command: ops::CostCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Validate and test policy packs.
    Policy {
        #[command(subcommand)]
        command: ops::PolicyCommand,
    },
    /// List, show, approve and deny held turns on a running gateway (admin API).
    Approvals(approvals::ApprovalsArgs),
    /// Scan text with the detectors: JSONL on stdin → JSONL on stdout, or `--text`.
    Scan(ops::ScanArgs),
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Run the gateway until Ctrl-C / SIGTERM (SIGHUP reloads the pack).
    Run(gateway::cli::GatewayArgs),
}

/// The allocator of `palisade-gateway` (see `bins/gateway/src/main.rs`): `palisade gateway
/// run` is the same server.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Gateway {
            command: GatewayCommand::Run(args),
        } => gateway::cli::run_blocking(args),
        Command::Keys { command, store } => ops::keys(command, &store.data_dir),
        Command::Audit { command, store } => ops::audit(command, &store.data_dir),
        Command::Cost { command, store } => ops::cost(command, &store.data_dir),
        Command::Policy { command } => ops::policy(command),
        Command::Scan(args) => ops::scan(args),
        Command::Approvals(args) => approvals::approvals(args),
    }
}
