//! Scan throughput, all detectors, on chat-like texts of 1 KiB, 16 KiB and 256 KiB.
//!
//! `cargo bench -p detectors --bench scan`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use detectors::{DetectorConfig, DetectorSet, ScanContext, Surface};

/// Typical multi-agent chat turns: prose, a little code, numbers, a URL, an e-mail.
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
    let mut cut = size;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

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
