//! The attribution ledger: `<data_dir>/ledger.db` (SQLite, WAL), one row per request,
//! written by a dedicated thread in batches so the request path only enqueues.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, params};

use crate::error::CostError;

/// File name of the ledger inside the data directory.
pub const LEDGER_FILE: &str = "ledger.db";

/// Rows written per transaction at most.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    seq               INTEGER PRIMARY KEY,
    event_id          TEXT NOT NULL UNIQUE,
    ts_ms             INTEGER NOT NULL,
    agent             TEXT NOT NULL,
    role              TEXT,
    workflow          TEXT,
    conversation      TEXT,
    model             TEXT NOT NULL,
    key_id            TEXT,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    estimated         INTEGER NOT NULL,
    cost_pico         INTEGER
);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms);
";

/// One ledger row: one request's attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerRow {
    /// The exchange id (= the audit event id).
    pub event_id: String,
    /// Receive time, Unix milliseconds.
    pub ts_ms: i64,
    /// Agent (`anonymous` when none).
    pub agent: String,
    /// Role.
    pub role: Option<String>,
    /// Workflow.
    pub workflow: Option<String>,
    /// Conversation id.
    pub conversation: Option<String>,
    /// Model as requested.
    pub model: String,
    /// Public id of the virtual key.
    pub key_id: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached prompt tokens.
    pub cached_tokens: u64,
    /// Counted by the gateway's tokenizer.
    pub estimated: bool,
    /// Cost in picodollars; `None` when the model has no known price.
    pub cost_pico: Option<u128>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn cost_to_sql(v: Option<u128>) -> Option<i64> {
    // i64::MAX picodollars is ~9.2 million USD per request: saturating is harmless.
    v.map(|c| i64::try_from(c).unwrap_or(i64::MAX))
}

pub(crate) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> CostError + '_ {
    move |source| CostError::Ledger {
        path: path.to_owned(),
        source,
    }
}

/// Opens (creating if needed) the ledger for writing.
pub(crate) fn open_rw(path: &Path) -> Result<Connection, CostError> {
    let err = sql_err(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
    let _mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(&err)?;
    // 512 KiB of page cache (SQLite's default is 2 MiB): the writer only appends.
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-512;")
        .map_err(&err)?;
    conn.execute_batch(SCHEMA).map_err(&err)?;
    Ok(conn)
}

/// Opens an existing ledger read-only.
pub(crate) fn open_ro(path: &Path) -> Result<Connection, CostError> {
    if !path.exists() {
        return Err(CostError::LedgerMissing {
            path: path.to_owned(),
        });
    }
    let err = sql_err(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
    Ok(conn)
}

/// The columns budget counters need.
pub(crate) struct SpendRow {
    pub ts_ms: i64,
    pub agent: String,
    pub role: Option<String>,
    pub workflow: Option<String>,
    pub conversation: Option<String>,
    pub cost_pico: Option<u128>,
}

/// Calls `f` for every row at or after `since_ms`.
pub(crate) fn scan_spend(
    conn: &Connection,
    path: &Path,
    since_ms: i64,
    mut f: impl FnMut(SpendRow),
) -> Result<(), CostError> {
    let err = sql_err(path);
    let mut stmt = conn
        .prepare(
            "SELECT ts_ms, agent, role, workflow, conversation, cost_pico FROM ledger WHERE ts_ms >= ?1",
        )
        .map_err(&err)?;
    let mut rows = stmt.query(params![since_ms]).map_err(&err)?;
    while let Some(r) = rows.next().map_err(&err)? {
        let cost: Option<i64> = r.get(5).map_err(&err)?;
        f(SpendRow {
            ts_ms: r.get(0).map_err(&err)?,
            agent: r.get(1).map_err(&err)?,
            role: r.get(2).map_err(&err)?,
            workflow: r.get(3).map_err(&err)?,
            conversation: r.get(4).map_err(&err)?,
            cost_pico: cost.map(|c| u128::try_from(c).unwrap_or(0)),
        });
    }
    Ok(())
}

enum Msg {
    Row(Box<LedgerRow>),
    Flush(mpsc::SyncSender<()>),
}

/// The background writer: a thread owning the write connection.
pub(crate) struct LedgerWriter {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl LedgerWriter {
    /// Starts the writer thread on `conn`. `errors` counts rows that could not be written.
    pub(crate) fn start(
        path: &Path,
        conn: Connection,
        errors: Arc<AtomicU64>,
    ) -> Result<LedgerWriter, CostError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread_path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("palisade-cost-ledger".to_owned())
            .spawn(move || writer_loop(conn, rx, &thread_path, &errors))
            .map_err(|e| CostError::Writer {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(LedgerWriter {
            tx: Some(tx),
            thread: Some(thread),
            path: path.to_owned(),
        })
    }

    /// Enqueues a row (never blocks).
    pub(crate) fn append(&self, row: LedgerRow) {
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(Msg::Row(Box::new(row))).is_ok())
            .unwrap_or(false);
        if !sent {
            tracing::error!(ledger = %self.path.display(), "cost ledger writer stopped; row dropped");
        }
    }

    /// Blocks until every row enqueued before this call is committed.
    pub(crate) fn flush(&self) -> Result<(), CostError> {
        let gone = || CostError::Writer {
            path: self.path.clone(),
            reason: "the writer thread has stopped".to_owned(),
        };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(Msg::Flush(ack_tx))
            .map_err(|_| gone())?;
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        ack_rx.recv().map_err(|_| gone())
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain what is queued and exit.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// How long the writer keeps collecting rows after the first one before it commits. Rows are
/// never awaited by a request (the audit chain is the durable record), so a short linger turns
/// one transaction per request into one per burst under load; a flush commits at once.
const LINGER: Duration = Duration::from_millis(10);

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Msg>, path: &Path, errors: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut rows: Vec<LedgerRow> = Vec::new();
        let mut acks: Vec<mpsc::SyncSender<()>> = Vec::new();
        let deadline = Instant::now() + LINGER;
        let take = |msg: Msg, rows: &mut Vec<LedgerRow>, acks: &mut Vec<_>| match msg {
            Msg::Row(r) => rows.push(*r),
            Msg::Flush(ack) => acks.push(ack),
        };
        take(first, &mut rows, &mut acks);
        let mut open = true;
        // The linger sleeps instead of waiting on the channel: a row sent meanwhile does
        // not wake this thread (one wake-up per burst, not per request). A flush or the
        // writer's drop unparks it.
        loop {
            while rows.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => take(m, &mut rows, &mut acks),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if !open || rows.len() >= MAX_BATCH || !acks.is_empty() || now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        if !rows.is_empty()
            && let Err(e) = write_batch(&mut conn, &rows)
        {
            errors.fetch_add(rows.len() as u64, Ordering::Relaxed);
            tracing::error!(ledger = %path.display(), rows = rows.len(), error = %e, "cost ledger write failed");
        }
        for ack in acks {
            let _ = ack.send(());
        }
        if !open {
            break;
        }
    }
}

fn write_batch(conn: &mut Connection, rows: &[LedgerRow]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO ledger (event_id, ts_ms, agent, role, workflow, conversation, model, key_id,
                 prompt_tokens, completion_tokens, cached_tokens, estimated, cost_pico)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.event_id,
                r.ts_ms,
                r.agent,
                r.role,
                r.workflow,
                r.conversation,
                r.model,
                r.key_id,
                to_i64(r.prompt_tokens),
                to_i64(r.completion_tokens),
                to_i64(r.cached_tokens),
                r.estimated,
                cost_to_sql(r.cost_pico),
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_connection_keeps_a_512_kib_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_rw(&dir.path().join(LEDGER_FILE)).unwrap();
        let size: i64 = conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(size, -512);
        let journal: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
    }
}
