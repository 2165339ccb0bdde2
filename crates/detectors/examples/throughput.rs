//! Scans the benchmark's chat text of a given size repeatedly and prints the throughput
//! (for profilers: `perf record`, `valgrind --tool=callgrind`, where criterion is too heavy).
//!
//! `cargo run --release -p detectors --example throughput -- 16384 2000 [unicode]`
//!
//! With `unicode`, apostrophes become typographic ones (`’`), so the text is not pure ASCII
//! and goes through normalisation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detectors::{DetectorConfig, DetectorSet, ScanContext, Surface};

#[path = "../benches/common/chat_text.rs"]
mod chat_text;
use chat_text::chat_text;

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().map_or(16384, |a| a.parse().unwrap());
    let iters: usize = args.next().map_or(1000, |a| a.parse().unwrap());
    let t0 = std::time::Instant::now();
    let set = DetectorSet::new(&DetectorConfig::default()).unwrap();
    let build = t0.elapsed();
    let mut text = chat_text(size);
    if args.next().as_deref() == Some("unicode") {
        text = text.replace('\'', "\u{2019}");
    }
    let ctx = ScanContext::new(Surface::UserPrompt);
    let mut n = 0usize;
    let t1 = std::time::Instant::now();
    for _ in 0..iters {
        n += std::hint::black_box(set.scan(std::hint::black_box(&text), &ctx)).len();
    }
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "build {:.3}s; {size} bytes x {iters}: {:.1} MB/s ({} findings/scan)",
        build.as_secs_f64(),
        (size * iters) as f64 / secs / 1e6,
        n / iters.max(1)
    );
}
