//! Scan throughput, all detectors, on chat-like texts of 1 KiB, 16 KiB and 256 KiB.
//!
//! `cargo bench -p detectors --bench scan`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use detectors::{DetectorConfig, DetectorSet, ScanContext, Surface};

#[path = "common/chat_text.rs"]
mod chat_text;
use chat_text::chat_text;

fn bench(c: &mut Criterion) {
    let set = DetectorSet::new(&DetectorConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("scan_all_detectors");
    for size in [1024usize, 16 * 1024, 256 * 1024] {
        let text = chat_text(size);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &text, |b, t| {
            b.iter(|| set.scan(t, &ScanContext::new(Surface::UserPrompt)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
