//! `palisade-replay`: run recorded traffic through a candidate policy pack.
//!
//! Exit codes: 0 ok, 1 a `--fail-on` threshold was crossed, 2 bad input (unreadable or
//! corrupt audit input, invalid pack, bad flag).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use clap::Parser;
use gateway::replay::{FailOn, Format, ReplayOptions, parse_since, render, replay};

/// Re-evaluate recorded exchanges with a candidate policy pack and report what changes.
#[derive(Debug, Parser)]
#[command(name = "palisade-replay", version)]
struct Args {
    /// Candidate policy pack (required unless --shadow).
    #[arg(long, conflicts_with = "shadow")]
    policy: Option<PathBuf>,
    /// Audit input: the embedded store (`palisade-data/palisade.db` or its directory) or a
    /// JSONL export (`palisade audit export`).
    #[arg(long, default_value = "palisade-data/palisade.db")]
    audit: PathBuf,
    /// Baseline pack evaluated the same way; default: the recorded decisions.
    #[arg(long, conflicts_with = "shadow")]
    baseline: Option<PathBuf>,
    /// Only records at or after: a duration back from now (`90s`, `30m`, `12h`, `7d`, `2w`)
    /// or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Output format: text, json or markdown.
    #[arg(long, default_value = "text")]
    format: Format,
    /// Fail (exit 1) when a condition holds: `FROM->TO > N` or `N%` (of replayed records;
    /// `*` for any decision), `changed > N`, `unreplayable > N%`, `new-allowed-tool`.
    /// Repeatable.
    #[arg(long = "fail-on")]
    fail_on: Vec<String>,
    /// Compare the recorded shadow verdicts (`gateway run --shadow-policy`) with the real ones.
    #[arg(long)]
    shadow: bool,
    /// Examples kept per transition.
    #[arg(long, default_value_t = 3)]
    examples: usize,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Texts whose detector findings each worker caches (0: scan every text of every record).
    #[arg(long, default_value_t = gateway::replay::DEFAULT_SCAN_CACHE_ENTRIES)]
    scan_cache: usize,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Never show a progress line (it is shown only when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,
}

const EXIT_THRESHOLD: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

/// mimalloc: replay is allocation-heavy (decoding events, rebuilding exchanges); it cuts the
/// instructions per record by ~20 % against glibc malloc (docs/replay.md). The gateway
/// binaries use jemalloc with one arena instead: mimalloc raised their peak RSS under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut opts = ReplayOptions::new(&args.audit);
    opts.policy = args.policy;
    opts.baseline = args.baseline;
    opts.shadow = args.shadow;
    opts.agent = args.agent;
    opts.workflow = args.workflow;
    opts.examples = args.examples;
    opts.threads = args.threads;
    opts.scan_cache_entries = args.scan_cache;
    if let Some(s) = &args.since {
        match parse_since(s, SystemTime::now()) {
            Ok(t) => opts.since = Some(t),
            Err(e) => return bad(&e),
        }
    }
    for f in &args.fail_on {
        match FailOn::parse(f) {
            Ok(c) => opts.fail_on.push(c),
            Err(e) => return bad(&e),
        }
    }
    let tty = !args.no_progress && std::io::stderr().is_terminal();
    if tty {
        let started = Instant::now();
        opts.progress = Some(Arc::new(move |n: u64| {
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2Kreplayed {n} records ({:.0}/s)",
                n as f64 / secs
            );
            let _ = err.flush();
        }));
    }
    let result = replay(&opts);
    if tty {
        eprintln!();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => return bad(&e),
    };
    let text = render(&report, args.format);
    let written = match &args.output {
        Some(path) => std::fs::write(path, text.as_bytes())
            .map_err(|e| format!("cannot write `{}`: {e}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write the report: {e}"))
        }
    };
    if let Err(e) = written {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if report.failed() {
        for f in report.fail_on.iter().filter(|f| f.crossed) {
            eprintln!(
                "fail-on `{}` crossed: {} of {}",
                f.condition, f.value, f.total
            );
        }
        ExitCode::from(EXIT_THRESHOLD)
    } else {
        ExitCode::SUCCESS
    }
}

fn bad(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_BAD_INPUT)
}
