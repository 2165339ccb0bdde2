//! Hash + append with group commit (64 concurrent appenders), and verify throughput.
//!
//! `cargo bench -p audit-chain --bench append`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_chain::{
    AuditEvent, AuditWriter, GENESIS_PREV_HASH, SqliteOptions, SyncMode, VerifyOptions,
    WriterConfig, db_path, export, verify_jsonl, verify_store,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use policy_engine::{ContentCapture, Durability};

fn drafts() -> Vec<AuditEvent> {
    let ctx = common::ctx(ContentCapture::Redacted);
    (0..3)
        .map(|n| AuditEvent::draft(&common::exchange(n), &ctx))
        .collect()
}

fn seal(c: &mut Criterion) {
    let d = drafts();
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_event", |b| {
        let mut i = 0u64;
        b.iter(|| {
            let mut ev = d[(i % 3) as usize].clone();
            i += 1;
            ev.seal(i, GENESIS_PREV_HASH).unwrap()
        })
    });
    g.finish();
}

/// `n` appends spread over 64 concurrent tasks; returns the elapsed time.
fn append_concurrent(
    rt: &tokio::runtime::Runtime,
    writer: &AuditWriter,
    d: &Arc<Vec<AuditEvent>>,
    n: u64,
) -> Duration {
    const TASKS: u64 = 64;
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(TASKS as usize);
        for t in 0..TASKS {
            let (w, d) = (writer.clone(), d.clone());
            let per = n / TASKS + u64::from(t < n % TASKS);
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    let ev = d[((t + i) % 3) as usize].clone();
                    w.append_event(ev, Durability::Sync).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let d = Arc::new(drafts());
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for (name, sync) in [
        ("sync_full_64_concurrent", SyncMode::Full),
        ("sync_normal_64_concurrent", SyncMode::Normal),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let writer = AuditWriter::open(
            dir.path(),
            WriterConfig {
                sqlite: SqliteOptions {
                    sync,
                    ..SqliteOptions::default()
                },
                ..WriterConfig::default()
            },
        )
        .unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| append_concurrent(&rt, &writer, &d, iters))
        });
        writer.close();
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    const N: u64 = 50_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let writer = AuditWriter::open(
        dir.path(),
        WriterConfig {
            sqlite: SqliteOptions {
                sync: SyncMode::Normal,
                ..SqliteOptions::default()
            },
            ..WriterConfig::default()
        },
    )
    .unwrap();
    append_concurrent(&rt, &writer, &Arc::new(drafts()), N);
    writer.close();
    let db = db_path(dir.path());
    let jsonl = dir.path().join("export.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
    export(&db, None, &mut f).unwrap();
    drop(f);
    let mut g = c.benchmark_group("verify");
    g.sample_size(10).throughput(Throughput::Elements(N));
    g.bench_function("store_50k", |b| {
        b.iter(|| {
            let r = verify_store(&db, &VerifyOptions::default()).unwrap();
            assert_eq!(r.events_verified, N);
        })
    });
    g.bench_function("jsonl_50k", |b| {
        b.iter(|| {
            let r = verify_jsonl(&jsonl, &VerifyOptions::default()).unwrap();
            assert_eq!(r.events_verified, N);
        })
    });
    g.finish();
}

criterion_group!(benches, seal, append, verify);
criterion_main!(benches);
