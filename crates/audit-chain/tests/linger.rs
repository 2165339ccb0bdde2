//! Async linger: several `durability: async` appends share one commit; sync appends,
//! flush and close commit at once. A counting store observes begin/commit calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use audit_chain::{
    AuditError, AuditEvent, AuditWriter, ChainHead, Checkpoint, CheckpointConfig, CheckpointSigner,
    EventFilter, EventStore, SqliteOptions, SqliteStore, StoreError, StoredEvent, VerifyOptions,
    WriterConfig, db_path, verify_store,
};
use policy_engine::{ContentCapture, Durability};

/// Far longer than any test: a commit seen before it ends was not caused by the linger.
const FOREVER: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Counters {
    begins: AtomicUsize,
    commits: AtomicUsize,
    fail_inserts: AtomicBool,
    /// The thread of each commit.
    commit_threads: std::sync::Mutex<Vec<String>>,
}

struct CountingStore {
    inner: SqliteStore,
    counters: Arc<Counters>,
    committed: std::sync::mpsc::Sender<()>,
}

impl EventStore for CountingStore {
    fn begin(&mut self) -> Result<Option<ChainHead>, StoreError> {
        self.counters.begins.fetch_add(1, Ordering::SeqCst);
        self.inner.begin()
    }
    fn insert_event(&mut self, e: &StoredEvent) -> Result<(), StoreError> {
        if self.counters.fail_inserts.load(Ordering::SeqCst) {
            return Err(StoreError::Refused("database or disk is full".to_owned()));
        }
        self.inner.insert_event(e)
    }
    fn insert_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
        self.inner.insert_checkpoint(c)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        let r = self.inner.commit();
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.counters.commit_threads.lock().unwrap().push(thread);
        self.counters.commits.fetch_add(1, Ordering::SeqCst);
        let _ = self.committed.send(());
        r
    }
    fn rollback(&mut self) {
        self.inner.rollback();
    }
    fn head(&mut self) -> Result<Option<ChainHead>, StoreError> {
        self.inner.head()
    }
    fn read_events(
        &mut self,
        f: &EventFilter,
        a: u64,
        l: usize,
        o: &mut Vec<StoredEvent>,
    ) -> Result<(), StoreError> {
        self.inner.read_events(f, a, l, o)
    }
    fn checkpoints(&mut self, from: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints(from)
    }
}

struct Harness {
    dir: tempfile::TempDir,
    writer: AuditWriter,
    counters: Arc<Counters>,
    committed: std::sync::mpsc::Receiver<()>,
    drafts: Vec<AuditEvent>,
}

fn harness(linger: Duration, max_batch: usize) -> Harness {
    harness_with(WriterConfig {
        linger,
        max_batch,
        ..WriterConfig::default()
    })
}

fn harness_with(config: WriterConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(&db_path(dir.path()), SqliteOptions::default()).unwrap();
    let counters = Arc::new(Counters::default());
    let (tx, committed) = std::sync::mpsc::channel();
    let store = CountingStore {
        inner,
        counters: counters.clone(),
        committed: tx,
    };
    let writer = AuditWriter::with_store(store, config).unwrap();
    let ctx = common::ctx(ContentCapture::Redacted);
    let drafts = (0..3)
        .map(|n| AuditEvent::draft(&common::exchange(n), &ctx))
        .collect();
    Harness {
        dir,
        writer,
        counters,
        committed,
        drafts,
    }
}

impl Harness {
    async fn append(&self, i: u64, d: Durability) -> Result<audit_chain::Receipt, AuditError> {
        let ev = self.drafts[(i % 3) as usize].clone();
        // A guard against a hang, not a synchronisation: nothing here waits for the linger.
        tokio::time::timeout(Duration::from_secs(30), self.writer.append_event(ev, d))
            .await
            .expect("append answered without waiting for the linger")
    }
    fn begins(&self) -> usize {
        self.counters.begins.load(Ordering::SeqCst)
    }
    fn commits(&self) -> usize {
        self.counters.commits.load(Ordering::SeqCst)
    }
    fn commit_threads(&self) -> Vec<String> {
        self.counters.commit_threads.lock().unwrap().clone()
    }
    fn stored(&self) -> u64 {
        self.writer.close();
        let report = verify_store(&db_path(self.dir.path()), &VerifyOptions::default()).unwrap();
        assert!(report.is_intact());
        report.events_verified
    }
}

#[tokio::test]
async fn sequential_async_appends_share_one_commit_and_are_answered_at_once() {
    let h = harness(FOREVER, 2048);
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(h.append(i, Durability::Async).await.unwrap().seq);
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    // Every receipt came back while nothing is committed.
    assert_eq!(h.commits(), 0);
    assert_eq!(h.writer.head(), None);
    let head = h.writer.flush().await.unwrap().unwrap();
    assert_eq!(head.seq, 10);
    assert_eq!(h.writer.head(), Some(head));
    assert_eq!((h.begins(), h.commits()), (1, 1));
    assert_eq!(h.stored(), 10);
}

#[tokio::test]
async fn sync_append_joins_the_open_transaction_and_commits_at_once() {
    let h = harness(FOREVER, 2048);
    for i in 0..3 {
        h.append(i, Durability::Async).await.unwrap();
    }
    assert_eq!(h.commits(), 0);
    let r = h.append(3, Durability::Sync).await.unwrap();
    assert_eq!(r.seq, 4);
    assert_eq!((h.begins(), h.commits()), (1, 1));
    assert_eq!(
        h.writer.head(),
        Some(ChainHead {
            seq: 4,
            hash: r.hash
        })
    );
    // Nothing is open: flush has nothing to commit.
    assert_eq!(h.writer.flush().await.unwrap().unwrap().seq, 4);
    assert_eq!(h.commits(), 1);
    assert_eq!(h.stored(), 4);
}

#[tokio::test]
async fn max_batch_commits_before_the_linger_ends() {
    let h = harness(FOREVER, 4);
    for i in 0..10 {
        h.append(i, Durability::Async).await.unwrap();
    }
    // 1..=4 and 5..=8 are committed by reaching max_batch (the 4th and 8th appends wake
    // the writer), 9..=10 by the flush: never more than four events per transaction.
    assert_eq!(h.writer.flush().await.unwrap().unwrap().seq, 10);
    assert_eq!((h.begins(), h.commits()), (3, 3));
    assert_eq!(h.stored(), 10);
}

#[tokio::test]
async fn the_linger_ends_with_a_commit() {
    let h = harness(Duration::from_millis(1), 2048);
    h.append(0, Durability::Async).await.unwrap();
    let committed = h.committed;
    tokio::task::spawn_blocking(move || committed.recv().unwrap())
        .await
        .unwrap();
    // Committed by the deadline: flush finds nothing open.
    assert_eq!(h.writer.flush().await.unwrap().unwrap().seq, 1);
    assert_eq!(
        (
            h.counters.begins.load(Ordering::SeqCst),
            h.counters.commits.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn zero_linger_commits_every_batch() {
    let h = harness(Duration::ZERO, 2048);
    for i in 0..3 {
        h.append(i, Durability::Async).await.unwrap();
        // The writer thread commits on its own; this waits for that signal.
        h.committed.recv().unwrap();
    }
    assert_eq!((h.begins(), h.commits()), (3, 3));
    assert_eq!(h.stored(), 3);
}

#[tokio::test]
async fn close_commits_the_open_transaction() {
    let h = harness(FOREVER, 2048);
    for i in 0..5 {
        h.append(i, Durability::Async).await.unwrap();
    }
    assert_eq!(h.commits(), 0);
    assert_eq!(h.stored(), 5);
    assert_eq!(h.commits(), 1);
}

#[tokio::test]
async fn drop_commits_the_open_transaction() {
    let h = harness(FOREVER, 2048);
    h.append(0, Durability::Async).await.unwrap();
    let Harness {
        dir,
        writer,
        committed,
        counters,
        ..
    } = h;
    drop(writer);
    tokio::task::spawn_blocking(move || committed.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(counters.commits.load(Ordering::SeqCst), 1);
    let report = verify_store(&db_path(dir.path()), &VerifyOptions::default()).unwrap();
    assert_eq!(report.events_verified, 1);
}

#[tokio::test]
async fn store_failure_rolls_back_the_open_transaction_and_the_writer_recovers() {
    let h = harness(FOREVER, 2048);
    h.append(0, Durability::Async).await.unwrap();
    h.append(1, Durability::Async).await.unwrap();
    h.counters.fail_inserts.store(true, Ordering::SeqCst);
    let err = h.append(2, Durability::Sync).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit store unavailable: audit store: database or disk is full"
    );
    // The two acked async events were rolled back with it (logged as lost).
    assert_eq!((h.commits(), h.writer.head()), (0, None));
    h.counters.fail_inserts.store(false, Ordering::SeqCst);
    let r = h
        .append(3, Durability::Sync)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    assert_eq!(r.seq, 1);
    assert_eq!(h.writer.flush().await.unwrap().unwrap().seq, 1);
    assert_eq!(h.stored(), 1);
}

#[tokio::test]
async fn after_a_failure_the_chain_continues_from_the_committed_head() {
    let h = harness(FOREVER, 2048);
    h.append(0, Durability::Async).await.unwrap();
    assert_eq!(h.writer.flush().await.unwrap().unwrap().seq, 1);
    // Answered at once (sealed as 2 and 3), then lost with the failing batch. Both are
    // sealed before the store fails: the writer may insert them first or not at all, and
    // either way they go with the batch (failing before they were sealed, the first
    // failed insert would make the second wait for its commit).
    assert_eq!(h.append(1, Durability::Async).await.unwrap().seq, 2);
    assert_eq!(h.append(2, Durability::Async).await.unwrap().seq, 3);
    h.counters.fail_inserts.store(true, Ordering::SeqCst);
    assert!(h.append(3, Durability::Sync).await.is_err());
    // While the store fails, an async append waits for its commit and sees the error.
    let err = h.append(4, Durability::Async).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit store unavailable: audit store: database or disk is full"
    );
    h.counters.fail_inserts.store(false, Ordering::SeqCst);
    // Sealed right after the committed head, and (still degraded) answered after its
    // commit: the head has moved when the receipt arrives.
    let r = h.append(5, Durability::Async).await.unwrap();
    assert_eq!(r.seq, 2);
    assert_eq!(h.writer.head().map(|x| x.seq), Some(2));
    // Healthy again: async appends are answered at once.
    assert_eq!(h.append(6, Durability::Async).await.unwrap().seq, 3);
    assert_eq!(h.writer.flush().await.unwrap().unwrap().seq, 3);
    assert_eq!(h.stored(), 3);
}

/// Gathering on, for as long as a test runs: a sync append that is held is released only
/// by a full batch, a control or the end of the writer.
fn gathering(max_batch: usize) -> Harness {
    harness_with(WriterConfig {
        linger: FOREVER,
        sync_gather: FOREVER,
        max_batch,
        ..WriterConfig::default()
    })
}

#[tokio::test]
async fn a_lone_sync_append_is_committed_at_once_even_when_gathering_is_on() {
    // One request at a time (every commit holds one event): nothing is ever held, or
    // these appends would hang on the endless gather.
    let h = gathering(2048);
    for i in 0..3 {
        assert_eq!(h.append(i, Durability::Sync).await.unwrap().seq, i + 1);
        assert_eq!(h.commits(), i as usize + 1);
    }
    assert_eq!(h.stored(), 3);
}

#[tokio::test]
async fn after_a_commit_of_several_events_concurrent_sync_appends_share_one_commit() {
    let h = gathering(4);
    // A commit of two events: requests run concurrently.
    h.append(0, Durability::Async).await.unwrap();
    assert_eq!(h.append(1, Durability::Sync).await.unwrap().seq, 2);
    assert_eq!(h.commits(), 1);
    // Four sync appends at once: the first is held until the fourth fills the batch.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let w = h.writer.clone();
            let ev = h.drafts[i % 3].clone();
            tokio::spawn(async move { w.append_event(ev, Durability::Sync).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a full batch is committed without waiting for the gather")
            .unwrap()
            .unwrap();
        seqs.push(r.seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, vec![3, 4, 5, 6]);
    assert_eq!((h.begins(), h.commits()), (2, 2));
    // The last commit held four: a sync append is held again, and a flush commits it.
    let mut held = Box::pin(h.writer.append_event(h.drafts[0].clone(), Durability::Sync));
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(held.as_mut(), cx))
    })
    .await;
    assert!(first.is_pending(), "sealed, queued and held for the gather");
    assert_eq!(h.writer.flush().await.unwrap().unwrap().seq, 7);
    assert_eq!(held.await.unwrap().seq, 7);
    assert_eq!((h.begins(), h.commits()), (3, 3));
    assert_eq!(h.stored(), 7);
}

#[tokio::test]
async fn a_held_sync_append_is_committed_when_the_gather_ends() {
    let h = harness_with(WriterConfig {
        linger: FOREVER,
        sync_gather: Duration::from_millis(1),
        ..WriterConfig::default()
    });
    h.append(0, Durability::Async).await.unwrap();
    h.append(1, Durability::Sync).await.unwrap();
    // The last commit held two: this one is held, and nothing but the end of the gather
    // commits it (were the gather's end missed, the endless linger would keep it and the
    // append would time out). That it was held at all is checked by the test above.
    assert_eq!(h.append(2, Durability::Sync).await.unwrap().seq, 3);
    assert_eq!(h.commits(), 2);
    assert_eq!(h.stored(), 3);
}

fn signed(every_events: u64, every: Duration) -> (Harness, CheckpointSigner) {
    let signer = CheckpointSigner::generate();
    let h = harness_with(WriterConfig {
        linger: FOREVER,
        checkpoint: Some(CheckpointConfig {
            every_events,
            every,
            signer: signer.clone(),
        }),
        ..WriterConfig::default()
    });
    (h, signer)
}

fn checkpoints(h: &Harness) -> Vec<u64> {
    let mut s = SqliteStore::open_read_only(&db_path(h.dir.path())).unwrap();
    s.checkpoints(0).unwrap().iter().map(|c| c.seq).collect()
}

#[tokio::test]
async fn checkpoint_now_commits_the_open_transaction_and_signs_its_head() {
    let (h, signer) = signed(1_000, FOREVER);
    for i in 0..3 {
        h.append(i, Durability::Async).await.unwrap();
    }
    let cp = h.writer.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(cp.seq, 3);
    assert!(signer.public_key().verifies(&cp));
    assert_eq!(h.writer.head().unwrap().seq, 3);
    // The events' commit, then the checkpoint's.
    assert_eq!((h.begins(), h.commits()), (2, 2));
    assert_eq!(checkpoints(&h), vec![3]);
}

#[tokio::test]
async fn event_count_checkpoints_wait_for_the_commit() {
    let (h, _) = signed(2, FOREVER);
    for i in 0..3 {
        h.append(i, Durability::Async).await.unwrap();
    }
    // Three events inserted, none committed: nothing to sign yet.
    assert_eq!(h.commits(), 0);
    assert_eq!(checkpoints(&h), Vec::<u64>::new());
    h.append(3, Durability::Sync).await.unwrap();
    h.writer.flush().await.unwrap();
    assert_eq!(checkpoints(&h), vec![4]);
}

#[tokio::test]
async fn time_based_checkpoint_follows_a_linger_commit() {
    let signer = CheckpointSigner::generate();
    let h = harness_with(WriterConfig {
        linger: Duration::from_millis(1),
        checkpoint: Some(CheckpointConfig {
            every_events: 1_000,
            every: Duration::ZERO,
            signer,
        }),
        ..WriterConfig::default()
    });
    h.append(0, Durability::Async).await.unwrap();
    // The linger's commit, then the checkpoint that is due by time.
    h.committed.recv().unwrap();
    h.committed.recv().unwrap();
    assert_eq!(checkpoints(&h), vec![1]);
    assert_eq!((h.begins(), h.commits()), (2, 2));
}

const WRITER_THREAD: &str = "palisade-audit-writer";

#[tokio::test]
async fn a_sync_append_is_committed_on_the_callers_thread_when_the_writer_is_free() {
    let caller = std::thread::current().name().unwrap().to_owned();
    let on = harness(FOREVER, 2048);
    let off = harness_with(WriterConfig {
        linger: FOREVER,
        commit_on_caller: false,
        ..WriterConfig::default()
    });
    for h in [&on, &off] {
        for i in 0..20 {
            assert_eq!(h.append(i, Durability::Sync).await.unwrap().seq, i + 1);
        }
    }
    // A caller that finds the writer thread busy (still starting, or descheduled while it
    // holds the lock on a loaded machine) leaves the commit to it; nothing else does.
    let on_caller = on.commit_threads().iter().filter(|t| **t == caller).count();
    assert!(on_caller >= 15, "{:?}", on.commit_threads());
    assert_eq!(on.commits(), 20);
    assert_eq!(off.commit_threads(), vec![WRITER_THREAD; 20]);
    assert_eq!((on.stored(), off.stored()), (20, 20));
}

#[tokio::test]
async fn after_a_commit_on_the_callers_thread_the_writer_still_ends_a_linger() {
    // The writer thread sleeps with nothing to do while callers commit; an async append
    // after such a commit must wake it, or its linger would never end (nothing else comes).
    // Whether the writer is asleep yet when an append arrives depends on thread timing,
    // so the round is repeated: after the first, it has long gone to sleep.
    let h = harness(Duration::from_millis(20), 2048);
    for round in 0..10u64 {
        h.append(2 * round, Durability::Sync).await.unwrap();
        h.committed.recv_timeout(Duration::from_secs(30)).unwrap();
        let r = h.append(2 * round + 1, Durability::Async).await.unwrap();
        assert_eq!(r.seq, 2 * round + 2);
        h.committed
            .recv_timeout(Duration::from_secs(30))
            .expect("the linger ended with a commit");
        assert_eq!(h.commit_threads().last().unwrap(), WRITER_THREAD);
    }
    assert_eq!(h.commits(), 20);
    assert_eq!(h.stored(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_and_the_writer_commit_one_chain() {
    let h = harness(Duration::from_millis(2), 2048);
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let w = h.writer.clone();
            let drafts = h.drafts.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..60u64 {
                    let d = if (t + i) % 3 == 0 {
                        Durability::Async
                    } else {
                        Durability::Sync
                    };
                    let ev = drafts[(i % 3) as usize].clone();
                    seqs.push(w.append_event(ev, d).await.unwrap().seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("every append answered")
                .unwrap(),
        );
    }
    all.sort_unstable();
    assert_eq!(all, (1..=480).collect::<Vec<_>>());
    assert_eq!(h.stored(), 480);
}
