//! `palisade-load`: the load harness of `benches/load/run.sh`.
//!
//! - `palisade-load upstream --listen ADDR [--chunk-delay-ms N]`: mock OpenAI upstream
//!   (JSON and SSE, the mock provider's wire format), optionally pacing SSE events.
//! - `palisade-load floor --listen ADDR --upstream ADDR`: the bare pass-through proxy.
//! - `palisade-load body [--stream]`: prints the ~1.3 KB request body.
//! - `palisade-load stream-probe --url URL [--requests N] [--concurrency C] [-H 'K: V']`:
//!   time to first token and inter-chunk latency of streamed requests, as JSON.
//! - `palisade-load key --data-dir DIR --out FILE`: a gateway key, as a header line in FILE.
//! - `palisade-load run [...]`: the whole comparison (see `run.sh`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod body;
mod floor;
mod probe;
mod procstat;
mod run;
mod upstream;

#[derive(Parser)]
#[command(
    name = "palisade-load",
    about = "Palisade load harness (127.0.0.1 only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mock OpenAI upstream.
    Upstream {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:18400")]
        listen: SocketAddr,
        /// Milliseconds between SSE events of streamed answers.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
    },
    /// Bare pass-through proxy (the floor).
    Floor {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:18401")]
        listen: SocketAddr,
        /// Upstream address.
        #[arg(long, default_value = "127.0.0.1:18400")]
        upstream: SocketAddr,
    },
    /// Prints the request body.
    Body {
        /// The streamed variant.
        #[arg(long)]
        stream: bool,
    },
    /// Streaming probe: TTFT and inter-chunk latency.
    StreamProbe {
        /// `http://HOST:PORT/v1/chat/completions`.
        #[arg(long)]
        url: http::Uri,
        /// Requests in all.
        #[arg(long, default_value_t = 100)]
        requests: usize,
        /// Concurrent streams.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Extra header `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
    },
    /// Creates a gateway key in `--data-dir` and writes `Authorization: Bearer …` to `--out`
    /// (for profiling the default pack by hand; the key is never printed).
    Key {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// Where the header line goes.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// The whole comparison.
    Run(run::RunArgs),
}

fn loopback_only(addr: &SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        anyhow::bail!("{addr}: the load harness only uses loopback addresses");
    }
    Ok(())
}

async fn main_inner(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Upstream {
            listen,
            chunk_delay_ms,
        } => {
            loopback_only(&listen)?;
            upstream::serve(listen, Duration::from_millis(chunk_delay_ms)).await
        }
        Cmd::Floor { listen, upstream } => {
            loopback_only(&listen)?;
            loopback_only(&upstream)?;
            floor::serve(listen, upstream).await
        }
        Cmd::Body { stream } => {
            let v = if stream {
                body::stream_body()
            } else {
                body::chat_body()
            };
            println!("{}", serde_json::to_string(&v)?);
            Ok(())
        }
        Cmd::StreamProbe {
            url,
            requests,
            concurrency,
            headers,
        } => {
            let host = url.host().unwrap_or("");
            if !(host == "127.0.0.1" || host == "localhost" || host == "[::1]") {
                anyhow::bail!("{url}: the probe only targets loopback addresses");
            }
            let mut hs = Vec::new();
            for h in headers {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("header `{h}` is not `Name: value`"))?;
                hs.push((
                    http::HeaderName::from_bytes(k.trim().as_bytes())?,
                    http::HeaderValue::from_str(v.trim())?,
                ));
            }
            let report = probe::run(probe::ProbeConfig {
                url,
                body: bytes::Bytes::from(serde_json::to_vec(&body::stream_body())?),
                headers: hs,
                requests,
                concurrency,
            })
            .await;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Cmd::Key { data_dir, out } => {
            let store = gateway::KeyStore::open(&data_dir)?;
            let k = store.create("load-agent", Some("worker"), Some("load"))?;
            std::fs::write(&out, format!("Authorization: Bearer {}\n", k.key))?;
            Ok(())
        }
        Cmd::Run(args) => run::run(args).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("palisade-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_inner(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
