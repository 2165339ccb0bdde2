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

fn main() -> ExitCode {
    gateway::cli::run_blocking(Cli::parse().args)
}
