//! Writer, store, verify, checkpoints, export.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use audit_chain::{
    AuditWriter, BreakKind, CheckpointConfig, CheckpointSigner, ExportOptions, SqliteOptions,
    SyncMode, VerifyOptions, WriterConfig, db_path, export, export_with, verify_jsonl,
    verify_store,
};
use policy_engine::ContentCapture;

fn config(signer: Option<&CheckpointSigner>, every_events: u64) -> WriterConfig {
    WriterConfig {
        sqlite: SqliteOptions {
            sync: SyncMode::Normal,
            ..SqliteOptions::default()
        },
        checkpoint: signer.map(|s| CheckpointConfig {
            every_events,
            every: Duration::from_secs(3600),
            signer: s.clone(),
        }),
        ..WriterConfig::default()
    }
}

async fn write_events(
    dir: &Path,
    n: u64,
    signer: Option<&CheckpointSigner>,
    every: u64,
) -> Vec<audit_chain::Receipt> {
    let writer = AuditWriter::open(dir, config(signer, every)).unwrap();
    let ctx = common::ctx(ContentCapture::Redacted);
    let mut receipts = Vec::new();
    for i in 0..n {
        receipts.push(writer.append(&common::exchange(i), &ctx).await.unwrap());
    }
    writer.close();
    receipts
}

fn sql(dir: &Path, stmt: &str) {
    let conn = rusqlite::Connection::open(db_path(dir)).unwrap();
    conn.execute_batch(stmt).unwrap();
}

fn verify(dir: &Path, key: Option<&CheckpointSigner>) -> audit_chain::VerifyReport {
    verify_store(
        &db_path(dir),
        &VerifyOptions {
            from_seq: None,
            public_key: key.map(CheckpointSigner::public_key),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn appended_events_verify_and_receipts_match_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let receipts = write_events(dir.path(), 10, None, 0).await;
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let report = verify(dir.path(), None);
    assert_eq!(report.broken, None);
    assert_eq!(report.events_verified, 10);
    assert!(report.from_genesis);
    assert_eq!(report.head_hash, Some(receipts[9].hash_hex()));
    assert_eq!(
        receipts[3].chain_header(),
        format!("4:{}", receipts[3].hash_hex())
    );
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), 3, None, 0).await;
    let r = write_events(dir.path(), 2, None, 0).await;
    assert_eq!(r[1].seq, 5);
    assert_eq!(verify(dir.path(), None).events_verified, 5);
}

#[tokio::test]
async fn names_the_first_broken_link() {
    let cases: &[(&str, &str, u64, BreakKind)] = &[
        (
            "edit",
            "UPDATE audit_events SET event = replace(event, 'gw-1', 'gw-2') WHERE seq = 4",
            4,
            BreakKind::Edited,
        ),
        (
            "delete",
            "DELETE FROM audit_events WHERE seq = 5",
            5,
            BreakKind::Deleted,
        ),
        (
            "swap",
            "UPDATE audit_events SET seq = -1 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = 4; UPDATE audit_events SET seq = 4 WHERE seq = -1",
            3,
            BreakKind::Reordered,
        ),
        (
            "insert",
            "UPDATE audit_events SET seq = seq + 100; UPDATE audit_events SET seq = seq - 99 WHERE seq > 106; \
             INSERT INTO audit_events SELECT 7, id, time, conversation, agent, workflow, decision, event, prev_hash, hash FROM audit_events WHERE seq = 106; \
             UPDATE audit_events SET seq = seq - 100 WHERE seq > 100",
            7,
            BreakKind::Inserted,
        ),
        (
            "hash column",
            "UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 2",
            2,
            BreakKind::Edited,
        ),
        (
            "prev column",
            "UPDATE audit_events SET prev_hash = zeroblob(32) WHERE seq = 6",
            6,
            BreakKind::Edited,
        ),
    ];
    for (name, stmt, seq, kind) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_events(dir.path(), 9, None, 0).await;
        sql(dir.path(), stmt);
        let report = verify(dir.path(), None);
        let b = report
            .broken
            .unwrap_or_else(|| panic!("{name}: not detected"));
        assert_eq!((b.seq, b.kind), (*seq, *kind), "{name}: {}", b.message);
    }
}

#[tokio::test]
async fn checkpoints_detect_a_cut_tail_and_a_rehashed_rewrite() {
    let signer = CheckpointSigner::generate();
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), 10, Some(&signer), 4).await;
    let ok = verify(dir.path(), Some(&signer));
    assert_eq!(ok.broken, None);
    // every 4 events, and a final one at close: 4, 8, 10
    assert_eq!(ok.checkpoints_verified, 3);
    assert_eq!(ok.unsigned_tail, 0);

    sql(dir.path(), "DELETE FROM audit_events WHERE seq > 7");
    let cut = verify(dir.path(), Some(&signer)).broken.unwrap();
    assert_eq!(
        (cut.seq, cut.kind),
        (8, BreakKind::Truncated),
        "{}",
        cut.message
    );

    // Rewrite event 2 and rehash everything after it: the chain links, the checkpoint does not.
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), 10, Some(&signer), 4).await;
    rewrite_and_rehash(&db_path(dir.path()), 2);
    let plain = verify(dir.path(), None);
    assert_eq!(
        plain.broken.as_ref().map(|b| b.kind),
        Some(BreakKind::Rewritten)
    );
    let rw = verify(dir.path(), Some(&signer)).broken.unwrap();
    assert_eq!(
        (rw.seq, rw.kind),
        (4, BreakKind::Rewritten),
        "{}",
        rw.message
    );

    // A checkpoint signed with another key does not count.
    let other = CheckpointSigner::generate();
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), 5, Some(&signer), 4).await;
    let bad = verify(dir.path(), Some(&other)).broken.unwrap();
    assert_eq!((bad.seq, bad.kind), (4, BreakKind::BadSignature));
}

/// Changes event `seq` and recomputes every hash after it, as an attacker with write access would.
fn rewrite_and_rehash(db: &Path, seq: u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: Vec<(i64, String, Vec<u8>)> = conn
        .prepare("SELECT seq, event, prev_hash FROM audit_events ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev: Option<[u8; 32]> = None;
    for (s, event, old_prev) in rows {
        let event = if s as u64 == seq {
            event.replace("gw-1", "gw-X")
        } else {
            event
        };
        let p: [u8; 32] = prev.unwrap_or_else(|| old_prev.try_into().unwrap());
        let h = audit_chain::chain_hash(&p, event.as_bytes());
        conn.execute(
            "UPDATE audit_events SET event = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![event, p.to_vec(), h.to_vec(), s],
        )
        .unwrap();
        prev = Some(h);
    }
}

#[tokio::test]
async fn export_round_trips_through_jsonl_verify() {
    let signer = CheckpointSigner::generate();
    let dir = tempfile::tempdir().unwrap();
    let receipts = write_events(dir.path(), 12, Some(&signer), 5).await;
    let mut out = Vec::new();
    let summary = export(&db_path(dir.path()), None, &mut out).unwrap();
    assert_eq!(summary.events, 12);
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &out).unwrap();
    let report = verify_jsonl(&file, &VerifyOptions::default()).unwrap();
    assert_eq!(report.broken, None);
    assert_eq!(report.events_verified, 12);
    assert_eq!(report.head_hash, Some(receipts[11].hash_hex()));
    // Each line is one JSON object with RFC 3339 time and the chain fields.
    let first: serde_json::Value =
        serde_json::from_slice(out.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev_hash"], "0".repeat(64));
    assert_eq!(first["time"], "2025-01-01T00:00:00.000000Z");

    // --since: starts later, verifies from its first event.
    let mut since = Vec::new();
    let s = export(
        &db_path(dir.path()),
        Some("2025-01-01T00:00:10Z"),
        &mut since,
    )
    .unwrap();
    assert_eq!(s.first_seq, Some(8)); // 1.50025 s apart: event 8 is at 10.50175 s
    std::fs::write(&file, &since).unwrap();
    let r = verify_jsonl(&file, &VerifyOptions::default()).unwrap();
    assert_eq!(
        (r.broken, r.from_genesis, r.events_verified),
        (None, false, 5)
    );

    // With checkpoint lines, a cut tail of the file is detected.
    let mut with_cp = Vec::new();
    let s = export_with(
        &db_path(dir.path()),
        &ExportOptions {
            include_checkpoints: true,
            ..ExportOptions::default()
        },
        &mut with_cp,
    )
    .unwrap();
    assert_eq!(s.checkpoints, 3); // 5, 10, 12
    let opts = VerifyOptions {
        from_seq: None,
        public_key: Some(signer.public_key()),
    };
    std::fs::write(&file, &with_cp).unwrap();
    let r = verify_jsonl(&file, &opts).unwrap();
    assert_eq!((r.broken, r.checkpoints_verified), (None, 3));
    let text = String::from_utf8(with_cp).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Drop events 11 and 12 but keep the last checkpoint line.
    let cut: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            l.starts_with("{\"checkpoint\"")
                || !(l.contains("\"seq\":11,") || l.contains("\"seq\":12,"))
        })
        .collect();
    std::fs::write(&file, cut.join("\n") + "\n").unwrap();
    let b = verify_jsonl(&file, &opts).unwrap().broken.unwrap();
    assert_eq!((b.seq, b.kind), (11, BreakKind::Truncated), "{}", b.message);
}

#[tokio::test]
async fn bad_since_is_refused_with_its_value() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), 1, None, 0).await;
    let err = export(&db_path(dir.path()), Some("yesterday"), &mut Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit export: `--since yesterday` is not an RFC 3339 time (e.g. 2025-01-31T00:00:00Z)"
    );
}

#[tokio::test]
async fn tail_prints_the_last_events() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), 15, None, 0).await;
    let mut out = Vec::new();
    let s = audit_chain::tail(&db_path(dir.path()), &mut out, false).unwrap();
    assert_eq!((s.events, s.first_seq, s.last_seq), (10, Some(6), Some(15)));
}

#[tokio::test]
async fn tail_follows_new_events() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), 1, None, 0).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    struct ChanWriter(std::sync::mpsc::Sender<Vec<u8>>);
    impl std::io::Write for ChanWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let db = db_path(dir.path());
    let opts = audit_chain::TailOptions {
        last: 0,
        follow: true,
        poll_interval: Duration::from_millis(5),
        stop: Some(stop.clone()),
    };
    let t = std::thread::spawn(move || {
        audit_chain::tail_with(&db, &opts, &mut ChanWriter(tx)).unwrap()
    });
    write_events(dir.path(), 2, None, 0).await;
    let mut lines = 0;
    while lines < 2 {
        let chunk = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let s = t.join().unwrap();
    assert_eq!((s.first_seq, s.last_seq), (Some(2), Some(3)));
}

#[tokio::test]
async fn async_durability_returns_a_receipt_that_is_committed_by_flush() {
    let dir = tempfile::tempdir().unwrap();
    let writer = AuditWriter::open(dir.path(), config(None, 0)).unwrap();
    let mut ctx = common::ctx(ContentCapture::None);
    ctx.settings.durability = policy_engine::Durability::Async;
    let r = writer.append(&common::exchange(0), &ctx).await.unwrap();
    let head = writer.flush().await.unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (r.seq, r.hash));
    writer.close();
    assert!(matches!(
        writer.append(&common::exchange(1), &ctx).await,
        Err(audit_chain::AuditError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let writer = AuditWriter::open(dir.path(), config(None, 0)).unwrap();
    let ctx = std::sync::Arc::new(common::ctx(ContentCapture::Redacted));
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (w, c) = (writer.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25u64 {
                seqs.push(
                    w.append(&common::exchange(t * 100 + i), &c)
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    writer.close();
    assert_eq!(verify(dir.path(), None).events_verified, 400);
}

#[tokio::test]
async fn content_none_keeps_no_bodies_and_full_keeps_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let writer = AuditWriter::open(dir.path(), config(None, 0)).unwrap();
    writer
        .append(&common::exchange(0), &common::ctx(ContentCapture::None))
        .await
        .unwrap();
    writer
        .append(&common::exchange(0), &common::ctx(ContentCapture::Full))
        .await
        .unwrap();
    writer.close();
    let events: Vec<_> = audit_chain::open_events(&db_path(dir.path()), Default::default())
        .unwrap()
        .map(|e| e.unwrap().decode().unwrap())
        .collect();
    assert_eq!(events[0].content, None);
    let full = events[1].content.as_ref().unwrap();
    assert!(full.request.as_deref().unwrap().contains("bob@example.com"));
    assert!(
        full.request_forwarded
            .as_deref()
            .unwrap()
            .contains("[EMAIL_ADDRESS]")
    );
    assert_eq!(events[1].seq, 2);
    assert_eq!(events[1].hash.len(), 64);
}

#[test]
fn the_writer_connection_keeps_a_512_kib_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        audit_chain::SqliteStore::open(&db_path(dir.path()), SqliteOptions::default()).unwrap();
    let size: i64 = store
        .connection()
        .query_row("PRAGMA cache_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(size, -512);
    // readers keep SQLite's default
    let reader = audit_chain::SqliteStore::open_read_only(&db_path(dir.path())).unwrap();
    let size: i64 = reader
        .connection()
        .query_row("PRAGMA cache_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(size, -2000);
}

/// Size of the database file after `n` async appends and a flush (writer still open).
async fn db_size_after_flush(wal_checkpoint_every: Option<Duration>) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let writer = AuditWriter::open(
        dir.path(),
        WriterConfig {
            wal_checkpoint_every,
            ..WriterConfig::default()
        },
    )
    .unwrap();
    let db = db_path(dir.path());
    let empty = std::fs::metadata(&db).unwrap().len();
    let ctx = common::ctx(ContentCapture::Full);
    let ex = common::exchange(1);
    for _ in 0..3000 {
        writer
            .append_event(
                audit_chain::AuditEvent::draft(&ex, &ctx),
                policy_engine::Durability::Async,
            )
            .await
            .unwrap();
    }
    assert_eq!(writer.flush().await.unwrap().unwrap().seq, 3000);
    let flushed = std::fs::metadata(&db).unwrap().len();
    writer.close();
    assert!(verify(dir.path(), None).is_intact());
    (empty, flushed)
}

#[tokio::test]
async fn the_writer_leaves_wal_checkpoints_to_its_own_thread() {
    // SQLite's automatic checkpoint (past 1,000 WAL pages) copies pages into the database
    // file inside a commit; with the checkpoint thread (not due for an hour) no commit does.
    let (empty, flushed) = db_size_after_flush(None).await;
    assert!(flushed > empty, "the control run checkpointed in a commit");
    let (empty, flushed) = db_size_after_flush(Some(Duration::from_secs(3600))).await;
    assert_eq!(flushed, empty);
}
