//! `palisade-gateway`: runs the gateway (the same as `palisade gateway run`).

use std::process::ExitCode;

use clap::Parser;

/// Palisade policy gateway for LLM traffic from multi-agent systems.
#[derive(Parser)]
#[command(name = "palisade-gateway", version)]
struct Cli {
    #[command(flatten)]
    args: gateway::cli::GatewayArgs,
}

/// jemalloc with one arena (configured in `.cargo/config.toml`): against glibc malloc it cut
/// the default pack's CPU per request by ~15 % and its peak RSS under load by ~9 MB
/// (docs/performance.md); glibc gave each thread its own arena, so the memory freed after the
/// detectors' build on the main thread was never reused by the request threads.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    gateway::cli::run_blocking(Cli::parse().args)
}
