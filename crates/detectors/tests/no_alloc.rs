//! A scan allocates nothing in steady state beyond the findings it returns: scratch
//! buffers, candidate lists, lazy DFA caches and decode buffers are reused across scans, and
//! the PII number classifier works on stack buffers.
//! Counted with a counting global allocator (`allocation-counter`, per thread).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detectors::{DetectorConfig, DetectorMask, DetectorSet, ScanContext, Surface};

/// Ordinary multi-agent chat turns without PII, secrets or attacks: prose, code, numbers
/// (counts, a percentage, decimals, times, a thousands separator), a URL, a hash-like token,
/// punctuation.
const TURNS: &[&str] = &[
    "Sure! Here is a summary of the quarterly report. Revenue grew 12% year over year, driven mostly by the enterprise segment. ",
    "The planner agent suggests we split the task into three steps: collect the data, clean it, and produce the charts.\n",
    "```python\nimport pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df.groupby('region').sum())\n```\n",
    "We looked at the logs from yesterday between 10:00 and 11:30; the error rate went up to 3.5 percent. ",
    "Tool result: {\"status\": \"ok\", \"items\": 42, \"next_page\": \"https://api.example.com/v1/items?page=2\"}\n",
    "Let me know whether the meeting on Thursday still works for everyone, otherwise we move it to next week. ",
    "The build of commit 9f3c2a1b7e4d finished in 4 minutes; 1,204 tests passed and 3 were skipped.\n",
];

fn chat_text(size: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < size {
        s.push_str(TURNS[i % TURNS.len()]);
        i += 1;
    }
    s
}

/// Allocations of one scan of `text` after warm-up scans, and its findings.
fn allocations(
    set: &DetectorSet,
    text: &str,
    surface: Surface,
    mask: DetectorMask,
) -> (u64, usize) {
    let ctx = ScanContext::new(surface).with_detectors(mask);
    for _ in 0..3 {
        set.scan(text, &ctx);
    }
    let mut n = 0;
    let info = allocation_counter::measure(|| {
        n = std::hint::black_box(set.scan(std::hint::black_box(text), &ctx)).len();
    });
    (info.count_total, n)
}

/// All detectors but PII.
fn no_pii() -> DetectorMask {
    DetectorMask::INJECTION | DetectorMask::SECRETS | DetectorMask::SAFETY | DetectorMask::CODE
}

const SURFACES: [Surface; 3] = [
    Surface::UserPrompt,
    Surface::ToolOutput,
    Surface::AgentMessage,
];

#[test]
fn scanning_typical_text_without_findings_does_not_allocate() {
    let set = DetectorSet::new(&DetectorConfig::default()).unwrap();
    for size in [100, 1024, 16 * 1024, 256 * 1024] {
        let text = chat_text(size);
        let no_digits: String = text.chars().filter(|c| !c.is_ascii_digit()).collect();
        for surface in SURFACES {
            for (t, mask) in [
                (&text, DetectorMask::ALL),
                (&no_digits, DetectorMask::ALL),
                (&text, no_pii()),
                (&text, DetectorMask::PII),
            ] {
                let (allocs, findings) = allocations(&set, t, surface, mask);
                assert_eq!(
                    findings, 0,
                    "size {size}, {surface:?}: the text has no findings"
                );
                assert_eq!(
                    allocs, 0,
                    "size {size}, {surface:?}, {mask:?}: allocations per scan"
                );
            }
        }
    }
}
