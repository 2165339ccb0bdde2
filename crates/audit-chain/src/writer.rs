//! The single writer: one thread owns the store, hashes events in order and commits them
//! in groups (many events per transaction).
//!
//! A batch is whatever is queued when the thread wakes. If it holds a `durability: sync`
//! append or a control (`flush`, `checkpoint_now`), it is committed at once (group commit).
//! A transaction holding only async appends stays open for up to
//! [`WriterConfig::linger`] or `max_batch` events so that later batches share its commit;
//! async appends are answered right after their insert, never after the linger. The head
//! ([`AuditWriter::head`]) moves only after a commit.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use exchange::Exchange;
use policy_engine::{CheckpointSettings, Durability};
use tokio::sync::{Semaphore, oneshot};

use crate::canonical::GENESIS_PREV_HASH;
use crate::checkpoint::{CheckpointSigner, KeyError};
use crate::error::AuditError;
use crate::event::{AuditContext, AuditEvent, format_time};
use crate::store::{
    ChainHead, Checkpoint, EventStore, SqliteOptions, SqliteStore, StoreError, StoredEvent, db_path,
};

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
    /// Most appends waiting for the writer; further appends wait (backpressure).
    pub queue_capacity: usize,
    /// Signed checkpoints, if any.
    pub checkpoint: Option<CheckpointConfig>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            sqlite: SqliteOptions::default(),
            max_batch: 2048,
            linger: Duration::from_millis(5),
            queue_capacity: 16_384,
            checkpoint: None,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

enum Cmd {
    Append {
        event: Box<AuditEvent>,
        durability: Durability,
        reply: Option<Reply<Receipt>>,
        _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    Flush(Reply<Option<ChainHead>>),
    Checkpoint(Reply<Option<Checkpoint>>),
}

struct Shared {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Cmd>>>,
    permits: Arc<Semaphore>,
    head: parking_lot::Mutex<Option<ChainHead>>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
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

impl AuditWriter {
    /// Opens `<data_dir>/palisade.db` and starts the writer thread.
    pub fn open(data_dir: &Path, config: WriterConfig) -> Result<AuditWriter, AuditError> {
        let store =
            SqliteStore::open(&db_path(data_dir), config.sqlite).map_err(AuditError::store)?;
        AuditWriter::with_store(store, config)
    }

    /// Starts the writer thread over any store.
    pub fn with_store<S: EventStore + 'static>(
        mut store: S,
        config: WriterConfig,
    ) -> Result<AuditWriter, AuditError> {
        let head = store.head().map_err(AuditError::store)?;
        let last_cp = store
            .checkpoints(head.map_or(0, |h| h.seq))
            .map_err(AuditError::store)?
            .last()
            .map(|c| c.seq);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            tx: parking_lot::Mutex::new(Some(tx)),
            permits: Arc::new(Semaphore::new(config.queue_capacity.max(1))),
            head: parking_lot::Mutex::new(head),
            thread: parking_lot::Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        let mut task = WriterTask {
            store,
            rx,
            max_batch: config.max_batch.max(1),
            linger: config.linger,
            checkpoint: config.checkpoint,
            last_cp_seq: last_cp.unwrap_or(0),
            last_cp_at: Instant::now(),
            head,
            open: None,
            shared: weak,
        };
        let handle = std::thread::Builder::new()
            .name("palisade-audit-writer".to_owned())
            .spawn(move || task.run())
            .map_err(|e| AuditError::Spawn(Arc::new(e)))?;
        *shared.thread.lock() = Some(handle);
        Ok(AuditWriter { shared })
    }

    fn sender(&self) -> Result<mpsc::Sender<Cmd>, AuditError> {
        self.shared.tx.lock().clone().ok_or(AuditError::Closed)
    }

    /// Records `ex` under `ctx` (content capture, tags, pack, durability). Resolves after the
    /// commit with `durability: sync`, once the event has its place with `async`.
    /// The exchange is read now; the future borrows nothing.
    pub fn append(
        &self,
        ex: &Exchange,
        ctx: &AuditContext,
    ) -> impl std::future::Future<Output = Result<Receipt, AuditError>> + Send + use<> {
        self.append_event(AuditEvent::draft(ex, ctx), ctx.settings.durability)
    }

    /// Appends a draft event (its `seq` and hashes are assigned by the writer).
    pub fn append_event(
        &self,
        event: AuditEvent,
        durability: Durability,
    ) -> impl std::future::Future<Output = Result<Receipt, AuditError>> + Send + use<> {
        let sender = self.sender();
        let permits = self.shared.permits.clone();
        async move {
            let sender = sender?;
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| AuditError::Closed)?;
            let (reply, rx) = oneshot::channel();
            sender
                .send(Cmd::Append {
                    event: Box::new(event),
                    durability,
                    reply: Some(reply),
                    _permit: Some(permit),
                })
                .map_err(|_| AuditError::Closed)?;
            rx.await.map_err(|_| AuditError::Closed)?
        }
    }

    /// Queues a draft event without waiting (client went away, drop paths). Errors are
    /// logged by the writer.
    pub fn append_detached(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.sender()?
            .send(Cmd::Append {
                event: Box::new(event),
                durability: Durability::Async,
                reply: None,
                _permit: None,
            })
            .map_err(|_| AuditError::Closed)
    }

    /// Waits until everything queued before this call is committed; returns the head.
    pub async fn flush(&self) -> Result<Option<ChainHead>, AuditError> {
        let sender = self.sender()?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(Cmd::Flush(reply))
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Commits what is queued and signs a checkpoint of the head now (if configured and
    /// the head is not signed yet).
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>, AuditError> {
        let sender = self.sender()?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(Cmd::Checkpoint(reply))
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// The last committed head.
    pub fn head(&self) -> Option<ChainHead> {
        *self.shared.head.lock()
    }

    /// Stops accepting events, commits what is queued, signs a final checkpoint and waits
    /// for the writer thread to end. Other clones get [`AuditError::Closed`] afterwards.
    pub fn close(&self) {
        let tx = self.shared.tx.lock().take();
        drop(tx);
        self.shared.permits.close();
        let handle = self.shared.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

struct Pending {
    reply: Option<Reply<Receipt>>,
    receipt: Receipt,
    acked: bool,
}

/// The write transaction the writer keeps open while async appends linger.
struct OpenTx {
    /// Sequence number and hash of the last event inserted in this transaction.
    seq: u64,
    prev: [u8; 32],
    /// Events inserted and not committed yet.
    pending: Vec<Pending>,
    /// Commit no later than this (async appends only).
    deadline: Instant,
}

struct WriterTask<S> {
    store: S,
    rx: mpsc::Receiver<Cmd>,
    max_batch: usize,
    linger: Duration,
    checkpoint: Option<CheckpointConfig>,
    last_cp_seq: u64,
    last_cp_at: Instant,
    head: Option<ChainHead>,
    open: Option<OpenTx>,
    shared: std::sync::Weak<Shared>,
}

impl<S: EventStore> WriterTask<S> {
    fn run(&mut self) {
        let mut batch: Vec<Cmd> = Vec::with_capacity(self.max_batch);
        loop {
            let wait = match &self.open {
                Some(tx) => Some(tx.deadline.saturating_duration_since(Instant::now())),
                None => self.checkpoint_wait(),
            };
            let first = match wait {
                Some(d) => match self.rx.recv_timeout(d) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if self.open.is_some() {
                            let _ = self.commit_open();
                            let _ = self.sign_if_needed(false);
                        } else {
                            let _ = self.sign_if_needed(true);
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            batch.push(first);
            let room = self
                .max_batch
                .saturating_sub(self.open.as_ref().map_or(0, |t| t.pending.len()))
                .max(1);
            while batch.len() < room {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
        let _ = self.commit_open();
        let _ = self.sign_if_needed(true);
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
    /// sync appends. On failure everything in it is rolled back and reported.
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
            self.fail_tx(tx, &err);
            return Err(err);
        }
        self.head = Some(ChainHead {
            seq: tx.seq,
            hash: tx.prev,
        });
        if let Some(s) = self.shared.upgrade() {
            *s.head.lock() = self.head;
        }
        for p in tx.pending {
            if let Some(r) = p.reply {
                let _ = r.send(Ok(p.receipt));
            }
        }
        Ok(())
    }

    /// Rolls back `tx`, logs the acked async events lost and fails the waiting appends.
    fn fail_tx(&mut self, tx: OpenTx, err: &AuditError) {
        self.store.rollback();
        let lost = tx.pending.iter().filter(|p| p.acked).count();
        tracing::error!(error = %err, lost_async_events = lost, "audit batch not committed");
        for p in tx.pending {
            if let Some(r) = p.reply {
                let _ = r.send(Err(err.clone()));
            }
        }
    }

    /// Inserts one event into the open transaction (beginning one if needed) and returns
    /// its receipt.
    fn insert(&mut self, event: &mut AuditEvent) -> Result<Receipt, AuditError> {
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
            });
        }
        let Some(tx) = self.open.as_mut() else {
            return Err(AuditError::Closed);
        };
        let (seq, prev) = (tx.seq + 1, tx.prev);
        let (bytes, hash) = event
            .seal_hashed(seq, prev)
            .map_err(AuditError::Canonical)?;
        let row = StoredEvent {
            seq,
            id: event.id.clone(),
            time: event.time.clone(),
            conversation: event.conversation.clone(),
            agent: event.agent.clone(),
            workflow: event.workflow.clone(),
            decision: event.decision.as_str().to_owned(),
            event: bytes,
            prev_hash: prev.to_vec(),
            hash: hash.to_vec(),
        };
        self.store.insert_event(&row).map_err(AuditError::store)?;
        tx.seq = seq;
        tx.prev = hash;
        Ok(Receipt {
            event_id: row.id,
            seq,
            hash,
        })
    }

    fn process(&mut self, batch: &mut Vec<Cmd>) {
        let mut controls = Vec::new();
        let mut failure: Option<AuditError> = None;
        // A sync append or a control in the batch: commit at its end, no linger.
        let mut commit_now = self.linger.is_zero();
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Append {
                    mut event,
                    durability,
                    reply,
                    _permit,
                } => {
                    if let Some(err) = &failure {
                        if let Some(r) = reply {
                            let _ = r.send(Err(err.clone()));
                        }
                        continue;
                    }
                    if durability == Durability::Sync {
                        commit_now = true;
                    }
                    let receipt = match self.insert(&mut event) {
                        Ok(r) => r,
                        Err(e @ AuditError::Canonical(_)) => {
                            if let Some(r) = reply {
                                let _ = r.send(Err(e));
                            }
                            continue;
                        }
                        Err(e) => {
                            failure = Some(e.clone());
                            if let Some(r) = reply {
                                let _ = r.send(Err(e));
                            }
                            continue;
                        }
                    };
                    let mut p = Pending {
                        reply,
                        receipt,
                        acked: false,
                    };
                    if durability == Durability::Async {
                        if let Some(r) = p.reply.take() {
                            let _ = r.send(Ok(p.receipt.clone()));
                        }
                        p.acked = true;
                    }
                    if let Some(tx) = self.open.as_mut() {
                        tx.pending.push(p);
                    }
                }
                other => {
                    commit_now = true;
                    controls.push(other);
                }
            }
        }
        if let Some(err) = &failure {
            match self.open.take() {
                Some(tx) => self.fail_tx(tx, err),
                None => self.store.rollback(),
            }
        } else if commit_now
            || self
                .open
                .as_ref()
                .is_some_and(|t| t.pending.len() >= self.max_batch)
        {
            if let Err(e) = self.commit_open() {
                failure = Some(e);
            }
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
                Cmd::Append { .. } => {}
            }
        }
    }
}

impl AuditError {
    pub(crate) fn store(e: StoreError) -> AuditError {
        AuditError::StoreUnavailable(Arc::new(e))
    }
}
