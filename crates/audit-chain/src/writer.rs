//! The single writer: appends are sealed (chain position, canonical bytes, SHA-256) in
//! order on the caller's thread, under one lock, and queued for the writer, which owns the
//! store and commits them in groups (many events per transaction). The writer's work runs on
//! its own thread, or on the thread of a `durability: sync` caller when nobody else is
//! committing ([`WriterConfig::commit_on_caller`]): that caller takes what is queued (its
//! own append last) and commits it itself, sparing the two thread wake-ups of a round trip.
//!
//! A batch is whatever is queued when the writer looks. If it holds a `durability: sync`
//! append or a control (`flush`, `checkpoint_now`), it is committed at once (group commit),
//! with one exception under concurrency: when the previous commit held several events,
//! a transaction with sync appends stays open for up to [`WriterConfig::sync_gather`] so that
//! the appends of concurrent requests share its commit (a lone request never waits).
//! A transaction holding only async appends stays open for up to
//! [`WriterConfig::linger`] or `max_batch` events so that later batches share its commit.
//! An async append is answered as soon as it is sealed and queued: it neither waits for the
//! writer thread nor wakes it (the thread sleeps through its linger; a sync append, a
//! control, `max_batch` queued events or the first append after it went idle wake it), so
//! a request pays no cross-thread round trip. When a batch fails, the chain position is
//! reset to the committed head, events sealed after the failure are dropped (async ones are
//! counted as lost in the error log), and async appends wait for their commit until a
//! commit succeeds again. The head ([`AuditWriter::head`]) moves only after a commit.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use exchange::Exchange;
use policy_engine::{CheckpointSettings, Durability};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::canonical::GENESIS_PREV_HASH;
use crate::checkpoint::{CheckpointSigner, KeyError};
use crate::error::AuditError;
use crate::event::{AuditContext, AuditEvent, format_time};
use crate::store::{
    ChainHead, Checkpoint, EventStore, SqliteOptions, SqliteStore, StoreError, StoredEvent,
    SyncMode, db_path,
};
use crate::wal::WalCheckpointer;

/// What an append gives back: the event's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Event id.
    pub event_id: String,
    /// Sequence number.
    pub seq: u64,
    /// Event hash.
    pub hash: [u8; 32],
}

impl Receipt {
    /// Hex of the hash.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// The `x-palisade-chain` header value: `<seq>:<hash-hex>`.
    pub fn chain_header(&self) -> String {
        format!("{}:{}", self.seq, self.hash_hex())
    }
}

/// Signed checkpoint cadence for the writer.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Sign after this many events.
    pub every_events: u64,
    /// Or after this long (when the head moved).
    pub every: Duration,
    /// The signing key.
    pub signer: CheckpointSigner,
}

impl CheckpointConfig {
    /// From the pack's `audit.checkpoint` settings (reads the key now).
    pub fn from_settings(s: &CheckpointSettings) -> Result<CheckpointConfig, KeyError> {
        Ok(CheckpointConfig {
            every_events: s.every_events.max(1),
            every: s.every,
            signer: CheckpointSigner::from_secret_ref(&s.signing_key_ref)?,
        })
    }
}

/// Writer options.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// SQLite options (ignored by [`AuditWriter::with_store`]).
    pub sqlite: SqliteOptions,
    /// Most events per transaction.
    pub max_batch: usize,
    /// How long a transaction holding only `durability: async` appends stays open for
    /// more events before it is committed (`max_batch` events commit it earlier; a sync
    /// append, `flush`, `checkpoint_now` or `close` commit it at once). Async appends are
    /// answered right after their insert, so they never wait for it; zero commits every
    /// batch at once.
    pub linger: Duration,
    /// How long a transaction holding `durability: sync` appends may stay open for the
    /// appends of concurrent requests, when the previous commit held two events or more
    /// (concurrent requests). Each commit writes the pages it touched (the table's and its
    /// four indexes' right edges) to the WAL, so fewer, larger commits write far fewer
    /// pages per event. A sync append waits at most this much longer; a lone request
    /// (the previous commit held one event) never waits. Zero: commit every batch with a
    /// sync append at once.
    pub sync_gather: Duration,
    /// Most appends waiting for the writer; further appends wait (backpressure).
    pub queue_capacity: usize,
    /// [`AuditWriter::open`]: run SQLite's WAL checkpoints on a thread of their own, at most
    /// this often after a commit, instead of inside the commit that fills the WAL (which
    /// stalls the requests waiting for that commit by an fsync of both files). Small,
    /// frequent checkpoints stall the writer least (`docs/audit-format.md`, section 5).
    /// `None`: SQLite's automatic checkpoint on the commit path. Ignored by
    /// [`AuditWriter::with_store`].
    pub wal_checkpoint_every: Option<Duration>,
    /// Signed checkpoints, if any.
    pub checkpoint: Option<CheckpointConfig>,
    /// A `durability: sync` append is committed on the caller's own thread when the writer
    /// is free (nobody else is committing), instead of waking the writer thread and waiting
    /// to be woken by it: two thread wake-ups less per request at low concurrency. Under
    /// concurrency the others' appends go to the writer thread as before (group commit).
    /// [`AuditWriter::open`] ignores it with [`SyncMode::Full`], where a commit waits for
    /// an fsync (left to the writer thread).
    pub commit_on_caller: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            sqlite: SqliteOptions::default(),
            max_batch: 2048,
            linger: Duration::from_millis(5),
            sync_gather: Duration::from_micros(500),
            queue_capacity: 16_384,
            wal_checkpoint_every: Some(Duration::from_millis(20)),
            checkpoint: None,
            commit_on_caller: true,
        }
    }
}

/// With the WAL checkpoint thread: the writer's own (automatic) checkpoint threshold, pages.
/// A `PASSIVE` checkpoint on another connection copies the WAL but cannot make it start
/// over while the writer keeps appending (SQLite restarts the WAL only at the start of a
/// write transaction after a checkpoint that copied every frame), so without this the WAL
/// file grows as long as the load lasts. The writer's checkpoint at this size finds most
/// frames copied already (a short stall, once every ~16 MiB of WAL) and lets the WAL restart.
const WAL_RESTART_PAGES: u32 = 4096;

type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

/// An event sealed by [`AuditWriter::submit`], on its way to the writer.
struct Sealed {
    row: StoredEvent,
    hash: [u8; 32],
    /// The chain epoch it was sealed in (see [`Chain::epoch`]).
    epoch: u64,
    /// Commit its transaction at once (`durability: sync`, or async while the store fails).
    commit_now: bool,
    /// `None`: answered already (async) or nobody waits (detached).
    reply: Option<Reply<Receipt>>,
    _permit: Option<OwnedSemaphorePermit>,
}

enum Cmd {
    Append(Box<Sealed>),
    Flush(Reply<Option<ChainHead>>),
    Checkpoint(Reply<Option<Checkpoint>>),
}

/// The sealing side of the chain, shared by every handle under one lock: appends take
/// their position and send in the same critical section, so the queue is in chain order.
struct Chain {
    tx: Option<mpsc::Sender<Cmd>>,
    /// Position and hash of the last event sealed (not necessarily committed).
    seq: u64,
    prev: [u8; 32],
    /// Bumped by the writer when it resets the position after a failed batch; events
    /// sealed in an older epoch chain onto rolled-back events and are dropped.
    epoch: u64,
    /// The last batch failed: async appends wait for their commit until one succeeds.
    failed: bool,
    /// Async appends queued without waking the writer since the last wake-up.
    queued: usize,
    /// The writer found nothing to do and sleeps until woken: the next append wakes it.
    writer_idle: bool,
}

struct Shared {
    chain: parking_lot::Mutex<Chain>,
    /// The writer's state and store: the writer thread's, or a sync caller's while it
    /// commits on its own thread ([`WriterConfig::commit_on_caller`]).
    task: Arc<parking_lot::Mutex<Box<dyn Step>>>,
    /// [`WriterConfig::commit_on_caller`] in effect.
    commit_on_caller: bool,
    permits: Arc<Semaphore>,
    head: parking_lot::Mutex<Option<ChainHead>>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The writer thread, to wake it (from its linger, or when idle).
    waker: OnceLock<std::thread::Thread>,
    max_batch: usize,
}

impl Shared {
    fn wake(&self) {
        if let Some(t) = self.waker.get() {
            t.unpark();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: disconnect the queue and wake the writer so it commits
        // what it holds and ends, even in the middle of a linger.
        self.chain.get_mut().tx = None;
        self.wake();
    }
}

/// Handle to the single audit writer. Cheap to clone; the writer thread ends when the last
/// handle is dropped or [`AuditWriter::close`] is called (signing a final checkpoint).
#[derive(Clone)]
pub struct AuditWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("head", &*self.shared.head.lock())
            .finish()
    }
}

/// What [`AuditWriter::submit`] leaves to wait for.
enum Submitted {
    /// Answered at once (async).
    Done(Receipt),
    /// Answered by the writer after the commit.
    Wait(oneshot::Receiver<Result<Receipt, AuditError>>),
    /// Answered after the commit, which the caller tries to make itself ([`AuditWriter::lead`]).
    Lead(oneshot::Receiver<Result<Receipt, AuditError>>),
}

impl AuditWriter {
    /// Opens `<data_dir>/palisade.db` and starts the writer thread.
    pub fn open(data_dir: &Path, mut config: WriterConfig) -> Result<AuditWriter, AuditError> {
        config.commit_on_caller &= config.sqlite.sync == SyncMode::Normal;
        let db = db_path(data_dir);
        let store = SqliteStore::open(&db, config.sqlite).map_err(AuditError::store)?;
        let wal = match config.wal_checkpoint_every {
            Some(every) => {
                store
                    .set_autocheckpoint(WAL_RESTART_PAGES)
                    .map_err(AuditError::store)?;
                Some(WalCheckpointer::start(&db, every).map_err(AuditError::store)?)
            }
            None => None,
        };
        AuditWriter::spawn(store, config, wal)
    }

    /// Starts the writer thread over any store.
    pub fn with_store<S: EventStore + 'static>(
        store: S,
        config: WriterConfig,
    ) -> Result<AuditWriter, AuditError> {
        AuditWriter::spawn(store, config, None)
    }

    fn spawn<S: EventStore + 'static>(
        mut store: S,
        config: WriterConfig,
        wal: Option<WalCheckpointer>,
    ) -> Result<AuditWriter, AuditError> {
        let head = store.head().map_err(AuditError::store)?;
        let last_cp = store
            .checkpoints(head.map_or(0, |h| h.seq))
            .map_err(AuditError::store)?
            .last()
            .map(|c| c.seq);
        let (tx, rx) = mpsc::channel();
        let max_batch = config.max_batch.max(1);
        let shared = Arc::new_cyclic(|weak| {
            let task: Box<dyn Step> = Box::new(WriterTask {
                store,
                rx,
                max_batch,
                linger: config.linger,
                sync_gather: config.sync_gather,
                last_batch: 0,
                checkpoint: config.checkpoint,
                last_cp_seq: last_cp.unwrap_or(0),
                last_cp_at: Instant::now(),
                head,
                open: None,
                epoch: 0,
                last_error: None,
                shared: weak.clone(),
                wal,
                batch: Vec::with_capacity(max_batch),
                backlog: Vec::new(),
                writer: Writer::Running,
            });
            Shared {
                chain: parking_lot::Mutex::new(Chain {
                    tx: Some(tx),
                    seq: head.map_or(0, |h| h.seq),
                    prev: head.map_or(GENESIS_PREV_HASH, |h| h.hash),
                    epoch: 0,
                    failed: false,
                    queued: 0,
                    writer_idle: false,
                }),
                task: Arc::new(parking_lot::Mutex::new(task)),
                commit_on_caller: config.commit_on_caller,
                permits: Arc::new(Semaphore::new(config.queue_capacity.max(1))),
                head: parking_lot::Mutex::new(head),
                thread: parking_lot::Mutex::new(None),
                waker: OnceLock::new(),
                max_batch,
            }
        });
        let task = shared.task.clone();
        let handle = std::thread::Builder::new()
            .name("palisade-audit-writer".to_owned())
            .spawn(move || writer_thread(&task))
            .map_err(|e| AuditError::Spawn(Arc::new(e)))?;
        let _ = shared.waker.set(handle.thread().clone());
        *shared.thread.lock() = Some(handle);
        Ok(AuditWriter { shared })
    }

    /// Records `ex` under `ctx` (content capture, tags, pack, durability). Resolves after the
    /// commit with `durability: sync`, once the event is sealed and queued with `async`.
    /// The exchange is read now; the future borrows nothing.
    pub fn append(
        &self,
        ex: &Exchange,
        ctx: &AuditContext,
    ) -> impl std::future::Future<Output = Result<Receipt, AuditError>> + Send + use<> {
        self.append_event(AuditEvent::draft(ex, ctx), ctx.settings.durability)
    }

    /// Appends a draft event (its `seq` and hashes are assigned here, in chain order).
    pub fn append_event(
        &self,
        event: AuditEvent,
        durability: Durability,
    ) -> impl std::future::Future<Output = Result<Receipt, AuditError>> + Send + use<> {
        let writer = self.clone();
        async move {
            let permit = writer
                .shared
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| AuditError::Closed)?;
            match writer.submit(event, durability == Durability::Sync, Some(permit), true)? {
                Submitted::Done(r) => Ok(r),
                Submitted::Wait(rx) => rx.await.map_err(|_| AuditError::Closed)?,
                Submitted::Lead(rx) => {
                    writer.lead();
                    rx.await.map_err(|_| AuditError::Closed)?
                }
            }
        }
    }

    /// Queues a draft event without waiting (client went away, drop paths). Errors are
    /// logged by the writer.
    pub fn append_detached(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.submit(event, false, None, false).map(|_| ())
    }

    /// Seals `event` at the next chain position and queues it, in one critical section.
    /// `sync`: the caller waits for the commit; `answer`: somebody waits for a receipt
    /// (not a detached append), so while the store fails an async append waits too.
    fn submit(
        &self,
        mut event: AuditEvent,
        sync: bool,
        permit: Option<OwnedSemaphorePermit>,
        answer: bool,
    ) -> Result<Submitted, AuditError> {
        let mut chain = self.shared.chain.lock();
        let seq = chain.seq + 1;
        let prev = chain.prev;
        let (bytes, hash) = event
            .seal_hashed(seq, prev)
            .map_err(AuditError::Canonical)?;
        let commit_now = sync || chain.failed;
        let (reply, rx) = if commit_now && answer {
            let (reply, rx) = oneshot::channel();
            (Some(reply), Some(rx))
        } else {
            (None, None)
        };
        // Answered now (async), or after the commit: made by the caller if it can.
        let lead = commit_now && self.shared.commit_on_caller;
        let submitted = match rx {
            Some(rx) if lead => Submitted::Lead(rx),
            Some(rx) => Submitted::Wait(rx),
            None => Submitted::Done(Receipt {
                event_id: event.id.clone(),
                seq,
                hash,
            }),
        };
        let row = StoredEvent {
            seq,
            id: std::mem::take(&mut event.id),
            time: std::mem::take(&mut event.time),
            conversation: std::mem::take(&mut event.conversation),
            agent: std::mem::take(&mut event.agent),
            workflow: event.workflow.take(),
            decision: event.decision.as_str().to_owned(),
            event: bytes,
            prev_hash: prev.to_vec(),
            hash: hash.to_vec(),
        };
        let sealed = Sealed {
            row,
            hash,
            epoch: chain.epoch,
            commit_now,
            reply,
            _permit: permit,
        };
        let tx = chain.tx.as_ref().ok_or(AuditError::Closed)?;
        tx.send(Cmd::Append(Box::new(sealed)))
            .map_err(|_| AuditError::Closed)?;
        chain.seq = seq;
        chain.prev = hash;
        let wake = if matches!(submitted, Submitted::Lead(_)) {
            // the caller commits it, or wakes the writer when it cannot
            false
        } else if commit_now || chain.writer_idle {
            chain.writer_idle = false;
            true
        } else {
            chain.queued += 1;
            if chain.queued >= self.shared.max_batch {
                chain.queued = 0;
                true
            } else {
                false
            }
        };
        drop(chain);
        if wake {
            self.shared.wake();
        }
        Ok(submitted)
    }

    /// Commits what is queued (a sync append of this caller among it) on this thread if
    /// nobody else is committing; otherwise wakes the writer thread to do it.
    fn lead(&self) {
        match self.shared.task.try_lock() {
            Some(mut task) => task.lead(),
            None => self.shared.wake(),
        }
    }

    fn control(&self, cmd: Cmd) -> Result<(), AuditError> {
        let chain = self.shared.chain.lock();
        let tx = chain.tx.as_ref().ok_or(AuditError::Closed)?;
        tx.send(cmd).map_err(|_| AuditError::Closed)?;
        drop(chain);
        self.shared.wake();
        Ok(())
    }

    /// Waits until everything queued before this call is committed; returns the head.
    pub async fn flush(&self) -> Result<Option<ChainHead>, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.control(Cmd::Flush(reply))?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Commits what is queued and signs a checkpoint of the head now (if configured and
    /// the head is not signed yet).
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.control(Cmd::Checkpoint(reply))?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// The last committed head.
    pub fn head(&self) -> Option<ChainHead> {
        *self.shared.head.lock()
    }

    /// Stops accepting events, commits what is queued, signs a final checkpoint and waits
    /// for the writer thread to end. Other clones get [`AuditError::Closed`] afterwards.
    pub fn close(&self) {
        let tx = self.shared.chain.lock().tx.take();
        drop(tx);
        self.shared.permits.close();
        self.shared.wake();
        let handle = self.shared.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// An event inserted in the open transaction. `None`: answered already (async) or detached;
/// the receipt is built only for an append that waits for the commit.
struct Pending(Option<(Reply<Receipt>, Receipt)>);

/// The write transaction the writer keeps open while async appends linger.
struct OpenTx {
    /// Sequence number and hash of the last event inserted in this transaction.
    seq: u64,
    prev: [u8; 32],
    /// Events inserted and not committed yet.
    pending: Vec<Pending>,
    /// Commit no later than this (async appends only).
    deadline: Instant,
    /// A sync append waits in it and the commit is held for concurrent appends: commit no
    /// later than this.
    sync_by: Option<Instant>,
}

impl OpenTx {
    /// When the transaction must be committed at the latest.
    fn due(&self) -> Instant {
        self.sync_by.map_or(self.deadline, |s| s.min(self.deadline))
    }
}

struct WriterTask<S> {
    store: S,
    rx: mpsc::Receiver<Cmd>,
    max_batch: usize,
    linger: Duration,
    sync_gather: Duration,
    /// Events in the last committed transaction (several: requests run concurrently).
    last_batch: usize,
    checkpoint: Option<CheckpointConfig>,
    last_cp_seq: u64,
    last_cp_at: Instant,
    head: Option<ChainHead>,
    open: Option<OpenTx>,
    /// The chain epoch this thread accepts events of.
    epoch: u64,
    /// Why the last batch failed (answered to events of an older epoch).
    last_error: Option<AuditError>,
    shared: std::sync::Weak<Shared>,
    /// The WAL checkpoint thread, told of every commit (dropped after the store).
    wal: Option<WalCheckpointer>,
    /// Commands being handled (kept to reuse its allocation).
    batch: Vec<Cmd>,
    /// Commands taken from the queue while declaring the writer idle, handled next.
    backlog: Vec<Cmd>,
    /// What the writer thread is doing, as a committing caller sees it.
    writer: Writer,
}

/// The writer thread's state, for a caller deciding whether to wake it.
#[derive(Clone, Copy)]
enum Writer {
    /// Running (or about to): it will look at the queue and the deadlines again.
    Running,
    /// Asleep until woken, or until the instant.
    Asleep(Option<Instant>),
}

/// What the writer thread does after a [`WriterTask::step`].
enum Next {
    /// Sleep until woken, or until the instant.
    Park(Option<Instant>),
    /// Every handle is gone: commit what is left and end.
    Exit,
}

/// The writer's work, behind [`Shared::task`] (the store's type erased).
trait Step: Send {
    /// Handles what is queued and what is due (the writer thread).
    fn step(&mut self) -> Next;
    /// The same on a caller's thread ([`AuditWriter::lead`]); wakes the writer thread when
    /// something is left for it.
    fn lead(&mut self);
    /// Commits what is open and signs a final checkpoint.
    fn finish(&mut self);
}

/// The writer thread: handles the queue, then sleeps until woken or something is due.
fn writer_thread(task: &parking_lot::Mutex<Box<dyn Step>>) {
    loop {
        // (the lock is not held while sleeping: a sync caller may commit meanwhile)
        let next = task.lock().step();
        match next {
            Next::Exit => break,
            Next::Park(None) => std::thread::park(),
            Next::Park(Some(t)) => {
                let left = t.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    std::thread::park_timeout(left);
                }
            }
        }
    }
    task.lock().finish();
}

impl<S: EventStore> Step for WriterTask<S> {
    fn step(&mut self) -> Next {
        let next = self.work();
        self.writer = match next {
            Next::Park(t) => Writer::Asleep(t),
            Next::Exit => Writer::Running,
        };
        next
    }

    fn lead(&mut self) {
        let wake = match self.work() {
            Next::Exit => true,
            // the writer thread sleeps past what is due now
            Next::Park(t) => match (self.writer, t) {
                (Writer::Asleep(None), Some(_)) => true,
                (Writer::Asleep(Some(until)), Some(t)) => t < until,
                _ => false,
            },
        };
        if wake && let Some(s) = self.shared.upgrade() {
            self.writer = Writer::Running;
            s.wake();
        }
    }

    fn finish(&mut self) {
        let _ = self.commit_open();
        let _ = self.sign_if_needed(true);
    }
}

impl<S: EventStore> WriterTask<S> {
    /// Handles one batch of what is queued (and the backlog), commits what is due, and says
    /// when the writer thread must look again.
    fn work(&mut self) -> Next {
        let mut batch = std::mem::take(&mut self.batch);
        batch.append(&mut self.backlog);
        let room = self
            .max_batch
            .saturating_sub(self.open.as_ref().map_or(0, |t| t.pending.len()))
            .max(1);
        let mut gone = false;
        while batch.len() < room {
            match self.rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        // a full batch: more may be queued
        let more = batch.len() >= room;
        if !batch.is_empty() {
            self.process(&mut batch);
        }
        self.batch = batch;
        // Under a steady stream the queue is never empty: the deadline still holds.
        if self
            .open
            .as_ref()
            .is_some_and(|t| Instant::now() >= t.due())
        {
            let _ = self.commit_open();
            let _ = self.sign_if_needed(false);
        }
        if gone {
            return Next::Exit;
        }
        if self.open.is_none() && self.checkpoint_wait() == Some(Duration::ZERO) {
            let _ = self.sign_if_needed(true);
        }
        let now = Instant::now();
        if more {
            return Next::Park(Some(now));
        }
        // Lingering (async appends queue without waking the writer; a sync append, a
        // control, `max_batch` queued events or the last handle's drop wake it), or a
        // time-based checkpoint to sign.
        if let Some(tx) = &self.open {
            return Next::Park(Some(tx.due()));
        }
        if let Some(d) = self.checkpoint_wait() {
            return Next::Park(Some(now.checked_add(d).unwrap_or(now)));
        }
        // Nothing to do: sleep until an append wakes the writer. Declared under the chain
        // lock, which every append holds while it queues, so none slips in unnoticed.
        let Some(shared) = self.shared.upgrade() else {
            return Next::Park(Some(now));
        };
        let mut chain = shared.chain.lock();
        match self.rx.try_recv() {
            Ok(c) => {
                self.backlog.push(c);
                Next::Park(Some(now))
            }
            Err(mpsc::TryRecvError::Empty) => {
                chain.writer_idle = true;
                Next::Park(None)
            }
            Err(mpsc::TryRecvError::Disconnected) => Next::Park(Some(now)),
        }
    }

    /// How long until a time-based checkpoint is due (`None`: nothing to sign).
    fn checkpoint_wait(&self) -> Option<Duration> {
        let cp = self.checkpoint.as_ref()?;
        let head = self.head?;
        if head.seq <= self.last_cp_seq {
            return None;
        }
        Some(cp.every.saturating_sub(self.last_cp_at.elapsed()))
    }

    /// Signs and stores a checkpoint of the committed head when due (`force`: whenever the
    /// head is unsigned). Never inside an open event transaction.
    fn sign_if_needed(&mut self, force: bool) -> Result<Option<Checkpoint>, AuditError> {
        if self.open.is_some() {
            return Ok(None);
        }
        let (Some(cp_cfg), Some(head)) = (&self.checkpoint, self.head) else {
            return Ok(None);
        };
        if head.seq <= self.last_cp_seq {
            return Ok(None);
        }
        let due = force
            || head.seq - self.last_cp_seq >= cp_cfg.every_events
            || self.last_cp_at.elapsed() >= cp_cfg.every;
        if !due {
            return Ok(None);
        }
        let cp = cp_cfg
            .signer
            .sign(head.seq, &head.hash, &format_time(SystemTime::now()));
        let res = self
            .store
            .begin()
            .and_then(|_| self.store.insert_checkpoint(&cp))
            .and_then(|()| self.store.commit());
        match res {
            Ok(()) => {
                if let Some(w) = &self.wal {
                    w.committed();
                }
                self.last_cp_seq = head.seq;
                self.last_cp_at = Instant::now();
                Ok(Some(cp))
            }
            Err(e) => {
                self.store.rollback();
                tracing::error!(error = %e, "audit checkpoint not stored");
                Err(AuditError::store(e))
            }
        }
    }

    /// Commits the open transaction (if any): publishes the new head, then answers the
    /// waiting appends. On failure everything in it is rolled back and reported.
    fn commit_open(&mut self) -> Result<(), AuditError> {
        let Some(tx) = self.open.take() else {
            return Ok(());
        };
        if tx.pending.is_empty() {
            self.store.rollback();
            return Ok(());
        }
        if let Err(e) = self.store.commit() {
            let err = AuditError::store(e);
            self.fail_tx(Some(tx), &err);
            return Err(err);
        }
        self.head = Some(ChainHead {
            seq: tx.seq,
            hash: tx.prev,
        });
        self.last_batch = tx.pending.len();
        if let Some(w) = &self.wal {
            w.committed();
        }
        if let Some(s) = self.shared.upgrade() {
            *s.head.lock() = self.head;
            if self.last_error.is_some() {
                s.chain.lock().failed = false;
            }
        }
        self.last_error = None;
        for (r, receipt) in tx.pending.into_iter().filter_map(|p| p.0) {
            let _ = r.send(Ok(receipt));
        }
        Ok(())
    }

    /// Rolls back `tx`, moves the sealing position back to the committed head in a new
    /// epoch, then fails its waiting appends and logs the answered async events lost. The
    /// reset comes first: an append made after an error was answered is sealed afresh.
    fn fail_tx(&mut self, tx: Option<OpenTx>, err: &AuditError) {
        self.store.rollback();
        self.reset_chain(err);
        let Some(tx) = tx else {
            return;
        };
        let lost = tx.pending.iter().filter(|p| p.0.is_none()).count();
        tracing::error!(error = %err, lost_async_events = lost, "audit batch not committed");
        for (r, _) in tx.pending.into_iter().filter_map(|p| p.0) {
            let _ = r.send(Err(err.clone()));
        }
    }

    /// After a failure: later events were sealed onto events that are gone. Seal from the
    /// committed head again, in a new epoch, and make async appends wait for their commit.
    fn reset_chain(&mut self, err: &AuditError) {
        self.last_error = Some(err.clone());
        if let Some(s) = self.shared.upgrade() {
            let mut chain = s.chain.lock();
            chain.seq = self.head.map_or(0, |h| h.seq);
            chain.prev = self.head.map_or(GENESIS_PREV_HASH, |h| h.hash);
            chain.epoch += 1;
            chain.failed = true;
            self.epoch = chain.epoch;
        } else {
            self.epoch += 1;
        }
    }

    /// Inserts one sealed event into the open transaction (beginning one if needed; the
    /// store's head must be where the event was sealed).
    fn insert(&mut self, sealed: &Sealed) -> Result<(), AuditError> {
        let row = &sealed.row;
        if self.open.is_none() {
            let (seq, prev) = match self.store.begin().map_err(AuditError::store)? {
                Some(h) => (h.seq, h.hash),
                None => (0, GENESIS_PREV_HASH),
            };
            let now = Instant::now();
            // A linger too long for `Instant` (e.g. `Duration::MAX`) waits a year instead.
            let deadline = now
                .checked_add(self.linger)
                .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
                .unwrap_or(now);
            self.open = Some(OpenTx {
                seq,
                prev,
                pending: Vec::new(),
                deadline,
                sync_by: None,
            });
        }
        let Some(tx) = self.open.as_mut() else {
            return Err(AuditError::Closed);
        };
        if row.seq != tx.seq + 1 || row.prev_hash[..] != tx.prev[..] {
            return Err(AuditError::store(StoreError::Refused(format!(
                "chain head moved: the store is at seq {}, event {} was sealed after seq {} \
                 (another writer?)",
                tx.seq,
                row.seq,
                row.seq - 1
            ))));
        }
        self.store.insert_event(row).map_err(AuditError::store)?;
        tx.seq = row.seq;
        tx.prev = sealed.hash;
        Ok(())
    }

    fn process(&mut self, batch: &mut Vec<Cmd>) {
        let mut controls = Vec::new();
        let mut failure: Option<AuditError> = None;
        let mut stale = 0usize;
        // A sync append or a control in the batch: commit at its end, no linger (sync
        // appends alone may be gathered, see `sync_gather`).
        let mut commit_now = self.linger.is_zero();
        let mut sync = false;
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Append(sealed) => {
                    let sealed = *sealed;
                    let outcome = if sealed.epoch != self.epoch {
                        // Sealed onto events that were rolled back.
                        Err(self.last_error.clone().unwrap_or(AuditError::Closed))
                    } else {
                        sync |= sealed.commit_now;
                        self.insert(&sealed).inspect_err(|e| {
                            // Roll back and reset now, before anyone hears of the error.
                            let open = self.open.take();
                            self.fail_tx(open, e);
                            failure = Some(e.clone());
                        })
                    };
                    match (outcome, sealed.reply) {
                        (Ok(()), reply) => {
                            let waiting = reply.map(|r| {
                                let receipt = Receipt {
                                    event_id: sealed.row.id,
                                    seq: sealed.row.seq,
                                    hash: sealed.hash,
                                };
                                (r, receipt)
                            });
                            if let Some(tx) = self.open.as_mut() {
                                tx.pending.push(Pending(waiting));
                            }
                        }
                        (Err(e), Some(r)) => {
                            let _ = r.send(Err(e));
                        }
                        (Err(_), None) => stale += 1,
                    }
                }
                other => {
                    commit_now = true;
                    controls.push(other);
                }
            }
        }
        if stale > 0 {
            tracing::error!(
                lost_async_events = stale,
                "audit events sealed onto a failed batch were not recorded"
            );
        }
        let full = self
            .open
            .as_ref()
            .is_some_and(|t| t.pending.len() >= self.max_batch);
        // Sync appends alone, after a commit of several events: hold the commit for the
        // appends of the concurrent requests, up to `sync_gather` after the first.
        let gather =
            sync && !commit_now && !full && self.last_batch >= 2 && !self.sync_gather.is_zero();
        if gather && let Some(tx) = self.open.as_mut() {
            let now = Instant::now();
            let by = *tx
                .sync_by
                .get_or_insert_with(|| now.checked_add(self.sync_gather).unwrap_or(now));
            commit_now = now >= by;
        } else {
            commit_now |= sync;
        }
        if failure.is_none()
            && (commit_now || full)
            && let Err(e) = self.commit_open()
        {
            failure = Some(e);
        }
        let _ = self.sign_if_needed(false);
        for c in controls {
            match c {
                Cmd::Flush(r) => {
                    let res = match &failure {
                        Some(e) => Err(e.clone()),
                        None => Ok(self.head),
                    };
                    let _ = r.send(res);
                }
                Cmd::Checkpoint(r) => {
                    let _ = r.send(self.sign_if_needed(true));
                }
                Cmd::Append(_) => {}
            }
        }
    }
}

impl AuditError {
    pub(crate) fn store(e: StoreError) -> AuditError {
        AuditError::StoreUnavailable(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_leaves_every_commit_to_the_writer_thread_with_synchronous_full() {
        for (sync, on_caller) in [(SyncMode::Normal, true), (SyncMode::Full, false)] {
            let dir = tempfile::tempdir().unwrap();
            let config = WriterConfig {
                sqlite: SqliteOptions {
                    sync,
                    ..SqliteOptions::default()
                },
                ..WriterConfig::default()
            };
            let writer = AuditWriter::open(dir.path(), config).unwrap();
            assert_eq!(writer.shared.commit_on_caller, on_caller, "{sync:?}");
            writer.close();
        }
    }
}
