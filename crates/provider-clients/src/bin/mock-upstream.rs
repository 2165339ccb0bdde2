//! `mock-upstream --listen 127.0.0.1:PORT`: the mock OpenAI upstream of
//! `provider_clients::mock_server`, for the load harness and manual runs.

use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: mock-upstream [--listen ADDR]   (default 127.0.0.1:4200)";

fn parse_args() -> Result<SocketAddr, String> {
    let mut listen = "127.0.0.1:4200".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            s if s.starts_with("--listen=") => listen = s["--listen=".len()..].to_owned(),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    listen
        .parse()
        .map_err(|e| format!("invalid --listen address `{listen}`: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let mock = match provider_clients::mock_server::MockUpstream::start(addr).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mock-upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock-upstream listening on {}", mock.base_url());
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("mock-upstream: cannot wait for ctrl-c: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
