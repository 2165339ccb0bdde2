//! Prints the heap a built `DetectorSet` keeps (bytes allocated by `DetectorSet::new` and
//! still held) and the peak during the build, counted by a counting global allocator
//! (`allocation-counter`, a dev-dependency). Lazy DFA caches are created on first use, so a
//! scan of the benchmark text follows and its retained growth is printed too.
//!
//! `cargo run --release -p detectors --example heap`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detectors::{DetectorConfig, DetectorSet, ScanContext, Surface};

#[path = "../benches/common/chat_text.rs"]
mod chat_text;

fn main() {
    let mut set = None;
    let built = allocation_counter::measure(|| {
        set = Some(DetectorSet::new(&DetectorConfig::default()).unwrap());
    });
    let set = set.unwrap();
    let text = chat_text::chat_text(16384);
    let scanned = allocation_counter::measure(|| {
        std::hint::black_box(set.scan(&text, &ScanContext::new(Surface::UserPrompt)));
    });
    println!(
        "DetectorSet::new: retained {:.2} MB, build peak {:.2} MB; first 16 KiB scan: +{:.2} MB retained",
        built.bytes_current as f64 / 1e6,
        built.bytes_max as f64 / 1e6,
        scanned.bytes_current as f64 / 1e6,
    );
}
