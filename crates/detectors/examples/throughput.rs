//! Scans the benchmark's chat text of a given size repeatedly and prints the throughput
//! (for profilers: `perf record`, `valgrind --tool=callgrind`, where criterion is too heavy).
//!
//! `cargo run --release -p detectors --example throughput -- 16384 2000 [unicode]`
//!
//! With `unicode`, apostrophes become typographic ones (`’`), so the text is not pure ASCII
//! and goes through normalisation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detectors::{DetectorConfig, DetectorSet, ScanContext, Surface};

/// The same turns as `benches/scan.rs`.
const TURNS: &[&str] = &[
    "Sure! Here is a summary of the quarterly report. Revenue grew 12% year over year, driven mostly by the enterprise segment. ",
    "The planner agent suggests we split the task into three steps: collect the data, clean it, and produce the charts.\n",
    "```python\nimport pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df.groupby('region').sum())\n```\n",
    "Can you check the logs from yesterday between 10:00 and 11:30? The error rate went up to 3.5 percent. ",
    "I'll forward this to Maria; her address is maria.lopez@example.com if you need to follow up. ",
    "Tool result: {\"status\": \"ok\", \"items\": 42, \"next_page\": \"https://api.example.com/v1/items?page=2\"}\n",
    "Let me know whether the meeting on Thursday still works for everyone, otherwise we move it to next week. ",
    "To run the tests locally, use `cargo test --workspace` and then `rm -rf ./target/tmp` to clean up. ",
];

fn chat_text(size: usize) -> String {
    let mut s = String::with_capacity(size + 256);
    let mut i = 0;
    while s.len() < size {
        s.push_str(TURNS[i % TURNS.len()]);
        i += 1;
    }
    s.truncate(size);
    s
}

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
