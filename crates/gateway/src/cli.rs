//! The flags of `palisade gateway run` and `palisade-gateway`, shared by both binaries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags for running the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Policy pack file.
    #[arg(
        long,
        default_value = "policy-packs/quickstart.yaml",
        env = "PALISADE_POLICY"
    )]
    pub policy_config: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:4100", env = "PALISADE_LISTEN")]
    pub listen: SocketAddr,
    /// Data directory of the embedded store.
    #[arg(long, default_value = "palisade-data", env = "PALISADE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Candidate pack evaluated inline in log-only shadow mode.
    #[arg(long)]
    pub shadow_policy: Option<PathBuf>,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colours only on a terminal
/// (a log file or journal gets plain lines, and the per-request access line costs less).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

/// Runs the gateway until a signal; maps failure to exit code 1 with the error on stderr.
pub fn run_blocking(args: GatewayArgs) -> ExitCode {
    init_tracing();
    let mut config = crate::GatewayConfig::new(args.policy_config);
    config.listen = args.listen;
    config.data_dir = args.data_dir;
    config.shadow_policy = args.shadow_policy;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
