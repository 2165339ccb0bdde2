//! Replay: run recorded traffic through a candidate policy pack before it ships.
//!
//! [`replay`] reads the audit chain (the embedded store or a JSONL export, detected by
//! content), rebuilds each recorded exchange from its stored content, re-evaluates the
//! input phase of the candidate pack on the recorded request and the output phase on the
//! recorded response, and compares the candidate's decision with the baseline: the
//! recorded decision, or a `--baseline` pack evaluated the same way. With `shadow` it
//! compares the recorded real decisions with the recorded shadow verdicts of
//! `gateway run --shadow-policy` instead ([`ShadowInputLayer`], [`ShadowOutputLayer`]).
//!
//! Reading is streamed (pages of 1,024 store rows, or line by line), records are
//! evaluated on worker threads (records of one conversation always on the same worker,
//! in order, with a fresh [`policy_engine::PolicyState`] per conversation and side, expired
//! by recorded time), and
//! results are put back in input order before they are aggregated, so the report — and
//! its JSON form — is byte-identical for the same inputs. Budgets and rate limits are
//! simulated in that order (`docs/replay.md` states exactly what is and is not simulated).
//!
//! ```no_run
//! use gateway::replay::{FailOn, Format, ReplayOptions, render, replay};
//! let mut opts = ReplayOptions::new("palisade-data/palisade.db");
//! opts.policy = Some("candidate.yaml".into());
//! opts.fail_on.push(FailOn::parse("ALLOW->BLOCK > 1%").unwrap());
//! let report = replay(&opts).unwrap();
//! print!("{}", render(&report, Format::Markdown));
//! std::process::exit(if report.failed() { 1 } else { 0 });
//! ```

mod error;
mod evaluate;
mod failon;
mod input;
mod record;
mod render;
mod report;
mod shadow;
mod simulate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, SystemTime};

use policy_engine::CompiledPack;

pub use error::ReplayError;
pub use evaluate::{FindingSummary, VerdictSummary};
pub use failon::{Cmp, FailOn, Metric, Threshold};
pub use input::InputKind;
pub use render::{Format, render};
pub use report::{
    CostSummary, DECISIONS, Example, Excerpt, FailOnResult, GroupChange, InputInfo,
    MAX_UNREPLAYABLE_LISTED, MatrixRow, PolicyChange, REPORT_SCHEMA, ReasonCount, ReplayReport,
    SideInfo, ToolChange, Totals, Transition, TransitionExamples, UnreplayableRecord,
    UnreplayableSummary,
};
pub use shadow::{ShadowInput, ShadowInputLayer, ShadowOutput, ShadowOutputLayer, ShadowPack};

use evaluate::{Mode, Processed, RecordFilter, Worker};
use input::{RawRecord, Source};
use report::Aggregator;
use simulate::CostSim;

/// Records per batch handed to a worker.
const BATCH: usize = 256;

/// Called with the number of records processed so far (progress display).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What to replay and how.
#[derive(Clone)]
pub struct ReplayOptions {
    /// The audit input: `palisade.db`, its data directory, or a JSONL export.
    pub audit: PathBuf,
    /// The candidate pack (required unless `shadow`).
    pub policy: Option<PathBuf>,
    /// A baseline pack; without it the recorded decisions are the baseline.
    pub baseline: Option<PathBuf>,
    /// Compare recorded real decisions with recorded shadow verdicts.
    pub shadow: bool,
    /// Only records at or after this time (stored form; see [`parse_since`]).
    pub since: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Examples kept per transition.
    pub examples: usize,
    /// `--fail-on` conditions.
    pub fail_on: Vec<FailOn>,
    /// Worker threads (0: one per available core).
    pub threads: usize,
    /// Texts whose detector findings each worker caches (AutoGen resends the whole
    /// conversation every turn); 0 scans every text of every record.
    pub scan_cache_entries: usize,
    /// Progress callback (every 8,192 records and at the end).
    pub progress: Option<Progress>,
}

/// Default of [`ReplayOptions::scan_cache_entries`].
pub const DEFAULT_SCAN_CACHE_ENTRIES: usize = policy_engine::DEFAULT_MAX_ENTRIES;

impl std::fmt::Debug for ReplayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayOptions")
            .field("audit", &self.audit)
            .field("policy", &self.policy)
            .field("baseline", &self.baseline)
            .field("shadow", &self.shadow)
            .field("since", &self.since)
            .field("agent", &self.agent)
            .field("workflow", &self.workflow)
            .field("examples", &self.examples)
            .field("fail_on", &self.fail_on)
            .field("threads", &self.threads)
            .field("scan_cache_entries", &self.scan_cache_entries)
            .finish_non_exhaustive()
    }
}

impl ReplayOptions {
    /// Defaults for `audit`: no pack yet, 3 examples per transition, all cores.
    pub fn new(audit: impl Into<PathBuf>) -> ReplayOptions {
        ReplayOptions {
            audit: audit.into(),
            policy: None,
            baseline: None,
            shadow: false,
            since: None,
            agent: None,
            workflow: None,
            examples: 3,
            fail_on: Vec::new(),
            threads: 0,
            scan_cache_entries: DEFAULT_SCAN_CACHE_ENTRIES,
            progress: None,
        }
    }
}

/// Parses `--since`: a duration before `now` (`90s`, `30m`, `12h`, `7d`, `2w`) or an RFC
/// 3339 time; returns the stored form (`2025-01-02T03:04:05.000000Z`).
pub fn parse_since(s: &str, now: SystemTime) -> Result<String, ReplayError> {
    let t = s.trim();
    let bad = || {
        ReplayError::Usage(format!(
            "--since `{s}`: expected a duration (90s, 30m, 12h, 7d, 2w) or an RFC 3339 time"
        ))
    };
    if let Some(unit) = t.chars().last().filter(|c| "smhdw".contains(*c)) {
        if let Ok(n) = t[..t.len() - 1].parse::<u64>() {
            let secs = match unit {
                's' => n,
                'm' => n.saturating_mul(60),
                'h' => n.saturating_mul(3600),
                'd' => n.saturating_mul(86_400),
                _ => n.saturating_mul(7 * 86_400),
            };
            let at = now.checked_sub(Duration::from_secs(secs)).ok_or_else(bad)?;
            return Ok(audit_chain::format_time(at));
        }
    }
    audit_chain::normalize_time(t).ok_or_else(bad)
}

fn load(path: &std::path::Path, what: &'static str) -> Result<Arc<CompiledPack>, ReplayError> {
    CompiledPack::load(path)
        .map(Arc::new)
        .map_err(|source| ReplayError::Pack { what, source })
}

fn pack_info(pack: &CompiledPack, cost_simulated: bool) -> SideInfo {
    SideInfo {
        source: "pack".to_owned(),
        name: Some(pack.meta.name.clone()),
        version: Some(pack.meta.version.clone()),
        sha256: Some(pack.meta.content_sha256.clone()),
        cost_simulated,
    }
}

fn recorded_info(source: &str) -> SideInfo {
    SideInfo {
        source: source.to_owned(),
        name: None,
        version: None,
        sha256: None,
        cost_simulated: false,
    }
}

type Batch = Vec<RawRecord>;
type Results = Vec<(u64, Processed)>;

/// Replays the audit input described by `opts`.
pub fn replay(opts: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let (mode, baseline_info, candidate_info, cand_sim, base_sim) = if opts.shadow {
        if opts.policy.is_some() || opts.baseline.is_some() {
            return Err(ReplayError::Usage(
                "--shadow compares the recorded shadow verdicts with the real ones; it takes no --policy or --baseline".to_owned(),
            ));
        }
        (
            Mode::Shadow,
            recorded_info("recorded"),
            recorded_info("shadow"),
            None,
            None,
        )
    } else {
        let Some(policy) = &opts.policy else {
            return Err(ReplayError::Usage(
                "--policy is required (or --shadow)".to_owned(),
            ));
        };
        let candidate = load(policy, "candidate")?;
        let baseline = match &opts.baseline {
            Some(b) => Some(load(b, "baseline")?),
            None => None,
        };
        let cand_sim = CostSim::new(&candidate.settings.cost);
        let base_sim = baseline
            .as_ref()
            .and_then(|b| CostSim::new(&b.settings.cost));
        let candidate_info = pack_info(&candidate, cand_sim.is_some());
        let baseline_info = match &baseline {
            Some(b) => pack_info(b, base_sim.is_some()),
            None => recorded_info("recorded"),
        };
        (
            Mode::Packs {
                candidate,
                baseline,
            },
            baseline_info,
            candidate_info,
            cand_sim,
            base_sim,
        )
    };
    let (path, kind) = input::detect(&opts.audit)?;
    let store_filter = audit_chain::EventFilter {
        since: opts.since.clone(),
        agent: opts.agent.clone(),
        ..audit_chain::EventFilter::default()
    };
    let record_filter = match kind {
        InputKind::Sqlite => RecordFilter::default(),
        InputKind::Jsonl => RecordFilter {
            since: opts.since.clone(),
            agent: opts.agent.clone(),
            workflow: opts.workflow.clone(),
        },
    };
    let source = Source::open(&path, kind, store_filter, opts.workflow.clone())?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        opts.threads
    };
    let input_name = opts.audit.display().to_string();
    let aggregator = Aggregator::new(opts.examples, cand_sim, base_sim);
    let aggregator = run_pipeline(
        source,
        threads.max(1),
        opts.scan_cache_entries,
        &mode,
        &record_filter,
        &input_name,
        aggregator,
        opts.progress.clone(),
    )?;
    let info = InputInfo {
        kind,
        path: input_name,
        since: opts.since.clone(),
        agent: opts.agent.clone(),
        workflow: opts.workflow.clone(),
    };
    let mode_name = if opts.shadow { "shadow" } else { "packs" };
    Ok(aggregator.finish(
        info,
        mode_name,
        baseline_info,
        candidate_info,
        &opts.fail_on,
    ))
}

fn worker_loop(mut worker: Worker, rx: Receiver<Batch>, tx: SyncSender<Results>) {
    while let Ok(batch) = rx.recv() {
        let out: Results = batch
            .iter()
            .map(|raw| (raw.index, worker.process(raw)))
            .collect();
        if tx.send(out).is_err() {
            return;
        }
    }
}

fn aggregate_loop(
    rx: Receiver<Results>,
    mut agg: Aggregator,
    progress: Option<Progress>,
) -> Result<Aggregator, ReplayError> {
    let mut pending: BTreeMap<u64, Processed> = BTreeMap::new();
    let mut next = 0u64;
    while let Ok(results) = rx.recv() {
        for (i, p) in results {
            pending.insert(i, p);
        }
        while let Some(p) = pending.remove(&next) {
            if let Processed::Failed(e) = p {
                return Err(e);
            }
            agg.add(p);
            next += 1;
            if next % 8192 == 0 {
                if let Some(f) = &progress {
                    f(next);
                }
            }
        }
    }
    if let Some(f) = &progress {
        f(next);
    }
    Ok(agg)
}

#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    source: Source,
    threads: usize,
    scan_cache_entries: usize,
    mode: &Mode,
    filter: &RecordFilter,
    input_name: &str,
    aggregator: Aggregator,
    progress: Option<Progress>,
) -> Result<Aggregator, ReplayError> {
    std::thread::scope(|scope| {
        let (res_tx, res_rx) = sync_channel::<Results>(threads * 4);
        let mut senders = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = sync_channel::<Batch>(4);
            let worker = Worker {
                mode: mode.clone(),
                filter: filter.clone(),
                input_name: input_name.to_owned(),
                states: evaluate::ConversationStates::with_scan_cache(scan_cache_entries),
            };
            let res_tx = res_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("replay-worker-{i}"))
                .spawn_scoped(scope, move || worker_loop(worker, rx, res_tx))
                .map_err(|e| ReplayError::Thread(e.to_string()))?;
            senders.push(tx);
            workers.push(handle);
        }
        drop(res_tx);
        let agg = std::thread::Builder::new()
            .name("replay-aggregate".to_owned())
            .spawn_scoped(scope, move || aggregate_loop(res_rx, aggregator, progress))
            .map_err(|e| ReplayError::Thread(e.to_string()))?;
        let read_result = dispatch(source, &senders);
        drop(senders);
        let mut worker_died = false;
        for w in workers {
            worker_died |= w.join().is_err();
        }
        let agg = agg
            .join()
            .map_err(|_| ReplayError::Thread("the aggregator stopped".to_owned()))?;
        if worker_died {
            return Err(ReplayError::Thread("a worker stopped".to_owned()));
        }
        let agg = agg?;
        read_result?;
        Ok(agg)
    })
}

/// Reads the input and hands records to workers by conversation, in batches.
fn dispatch(source: Source, senders: &[SyncSender<Batch>]) -> Result<(), ReplayError> {
    let n = senders.len() as u64;
    let mut batches: Vec<Batch> = (0..senders.len())
        .map(|_| Vec::with_capacity(BATCH))
        .collect();
    let mut pending = 0;
    let flush = |batches: &mut Vec<Batch>| -> bool {
        for (b, tx) in batches.iter_mut().zip(senders) {
            if !b.is_empty() && tx.send(std::mem::take(b)).is_err() {
                return false;
            }
        }
        true
    };
    for rec in source {
        let rec = rec?;
        let w = (rec.shard % n) as usize;
        batches[w].push(rec);
        pending += 1;
        if pending >= BATCH {
            pending = 0;
            if !flush(&mut batches) {
                // The aggregator stopped (corrupt record): its error is reported.
                return Ok(());
            }
        }
    }
    flush(&mut batches);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_rfc3339() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        assert_eq!(
            parse_since("7d", now).unwrap(),
            "1970-01-04T00:00:00.000000Z"
        );
        assert_eq!(
            parse_since("2025-01-02T03:04:05+01:00", now).unwrap(),
            "2025-01-02T02:04:05.000000Z"
        );
        assert_eq!(
            parse_since("soon", now).unwrap_err().to_string(),
            "replay: --since `soon`: expected a duration (90s, 30m, 12h, 7d, 2w) or an RFC 3339 time"
        );
    }
}
