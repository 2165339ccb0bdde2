//! JSONL export and `tail`, and reading events back for replay.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::canonical::to_canonical;
use crate::event::{AuditEvent, normalize_time};
use crate::store::{EventFilter, EventIter, EventStore, SqliteStore, StoreError, StoredEvent};
use crate::verify::{CheckpointJson, CheckpointLine};

/// Why an export or tail failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("audit export: writing output: {0}")]
    Write(#[source] std::io::Error),
    /// `--since` is not an RFC 3339 time.
    #[error("audit export: `--since {0}` is not an RFC 3339 time (e.g. 2025-01-31T00:00:00Z)")]
    BadSince(String),
    /// A stored event is not readable JSON.
    #[error("audit export: event {seq} is not readable: {source}")]
    Unreadable {
        /// Sequence number.
        seq: u64,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoredEvent {
    /// The event, with `prev_hash` and `hash` filled in.
    pub fn decode(&self) -> Result<AuditEvent, serde_json::Error> {
        let mut ev: AuditEvent = serde_json::from_slice(&self.event)?;
        ev.prev_hash = hex::encode(&self.prev_hash);
        ev.hash = hex::encode(&self.hash);
        Ok(ev)
    }

    /// One JSONL line (no newline): the canonical JSON of the event with `prev_hash` and
    /// `hash`, so the line verifies on its own.
    pub fn to_json_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut v: Value = serde_json::from_slice(&self.event)?;
        if let Value::Object(m) = &mut v {
            m.insert(
                "prev_hash".to_owned(),
                Value::String(hex::encode(&self.prev_hash)),
            );
            m.insert("hash".to_owned(), Value::String(hex::encode(&self.hash)));
        }
        to_canonical(&v).map_err(serde::ser::Error::custom)
    }
}

/// Opens the store read-only and iterates the events matching `filter` (memory bounded).
pub fn open_events(db: &Path, filter: EventFilter) -> Result<EventIter<SqliteStore>, StoreError> {
    Ok(EventIter::new(
        SqliteStore::open_read_only(db)?,
        filter,
        1024,
    ))
}

/// Export options.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only events with `seq >= from_seq`.
    pub from_seq: Option<u64>,
    /// Also write `{"checkpoint":{…}}` lines after the events they sign, so that
    /// `verify --jsonl` with the public key detects a cut tail of the file too.
    pub include_checkpoints: bool,
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    /// Event lines.
    pub events: u64,
    /// Checkpoint lines.
    pub checkpoints: u64,
    /// First event written.
    pub first_seq: Option<u64>,
    /// Last event written.
    pub last_seq: Option<u64>,
}

/// Exports events at or after `since` (RFC 3339) as JSONL to `out`.
pub fn export<W: Write>(
    db: &Path,
    since: Option<&str>,
    out: &mut W,
) -> Result<ExportSummary, ExportError> {
    export_with(
        db,
        &ExportOptions {
            since: since.map(str::to_owned),
            ..ExportOptions::default()
        },
        out,
    )
}

/// Exports with all options.
pub fn export_with<W: Write>(
    db: &Path,
    opts: &ExportOptions,
    out: &mut W,
) -> Result<ExportSummary, ExportError> {
    let since = match &opts.since {
        Some(s) => Some(normalize_time(s).ok_or_else(|| ExportError::BadSince(s.clone()))?),
        None => None,
    };
    let mut store = SqliteStore::open_read_only(db)?;
    let mut checkpoints = if opts.include_checkpoints {
        store.checkpoints(opts.from_seq.unwrap_or(0))?
    } else {
        Vec::new()
    }
    .into_iter()
    .peekable();
    let filter = EventFilter {
        from_seq: opts.from_seq,
        since,
        ..EventFilter::default()
    };
    let mut summary = ExportSummary::default();
    for ev in EventIter::new(store, filter, 1024) {
        let ev = ev?;
        write_line(&ev, out)?;
        summary.events += 1;
        summary.first_seq.get_or_insert(ev.seq);
        summary.last_seq = Some(ev.seq);
        while let Some(cp) = checkpoints.next_if(|c| c.seq <= ev.seq) {
            if cp.seq == ev.seq {
                let line = CheckpointLine {
                    checkpoint: CheckpointJson::from(&cp),
                };
                let v = serde_json::to_value(&line).map_err(|source| ExportError::Unreadable {
                    seq: cp.seq,
                    source,
                })?;
                let bytes = to_canonical(&v).unwrap_or_default();
                out.write_all(&bytes).map_err(ExportError::Write)?;
                out.write_all(b"\n").map_err(ExportError::Write)?;
                summary.checkpoints += 1;
            }
        }
    }
    out.flush().map_err(ExportError::Write)?;
    Ok(summary)
}

fn write_line<W: Write>(ev: &StoredEvent, out: &mut W) -> Result<(), ExportError> {
    let line = ev
        .to_json_line()
        .map_err(|source| ExportError::Unreadable {
            seq: ev.seq,
            source,
        })?;
    out.write_all(&line).map_err(ExportError::Write)?;
    out.write_all(b"\n").map_err(ExportError::Write)
}

/// Tail options.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Start with the last `last` events (0: only new ones).
    pub last: u64,
    /// Keep polling for new events.
    pub follow: bool,
    /// Poll interval while following.
    pub poll_interval: Duration,
    /// Set to stop following (Ctrl-C handler, tests).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            last: 10,
            follow: false,
            poll_interval: Duration::from_millis(250),
            stop: None,
        }
    }
}

/// Writes the last 10 events as JSONL and, with `follow`, new events as they are
/// committed (polling the database) until the process is stopped.
pub fn tail<W: Write>(db: &Path, out: &mut W, follow: bool) -> Result<ExportSummary, ExportError> {
    tail_with(
        db,
        &TailOptions {
            follow,
            ..TailOptions::default()
        },
        out,
    )
}

/// Tail with all options.
pub fn tail_with<W: Write>(
    db: &Path,
    opts: &TailOptions,
    out: &mut W,
) -> Result<ExportSummary, ExportError> {
    let mut store = SqliteStore::open_read_only(db)?;
    let head = store.head()?.map_or(0, |h| h.seq);
    let mut after = head.saturating_sub(opts.last);
    let mut summary = ExportSummary::default();
    let mut page = Vec::with_capacity(256);
    let filter = EventFilter::default();
    loop {
        page.clear();
        store.read_events(&filter, after, 256, &mut page)?;
        for ev in &page {
            write_line(ev, out)?;
            summary.events += 1;
            summary.first_seq.get_or_insert(ev.seq);
            summary.last_seq = Some(ev.seq);
            after = ev.seq;
        }
        out.flush().map_err(ExportError::Write)?;
        let stopped = opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed));
        if page.len() == 256 && !stopped {
            continue;
        }
        if !opts.follow || stopped {
            return Ok(summary);
        }
        std::thread::sleep(opts.poll_interval);
    }
}
