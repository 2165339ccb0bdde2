//! The benchmark's chat text, shared by `benches/scan.rs`, `examples/throughput.rs` and
//! `examples/golden.rs` (included with `#[path]`).

/// Typical multi-agent chat turns: prose, a little code, numbers, a URL, an e-mail.
pub const TURNS: &[&str] = &[
    "Sure! Here is a summary of the quarterly report. Revenue grew 12% year over year, driven mostly by the enterprise segment. ",
    "The planner agent suggests we split the task into three steps: collect the data, clean it, and produce the charts.\n",
    "```python\nimport pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df.groupby('region').sum())\n```\n",
    "Can you check the logs from yesterday between 10:00 and 11:30? The error rate went up to 3.5 percent. ",
    "I'll forward this to Maria; her address is maria.lopez@example.com if you need to follow up. ",
    "Tool result: {\"status\": \"ok\", \"items\": 42, \"next_page\": \"https://api.example.com/v1/items?page=2\"}\n",
    "Let me know whether the meeting on Thursday still works for everyone, otherwise we move it to next week. ",
    "To run the tests locally, use `cargo test --workspace` and then `rm -rf ./target/tmp` to clean up. ",
];

/// `size` bytes of the turns repeated (cut on a char boundary).
#[allow(dead_code)]
pub fn chat_text(size: usize) -> String {
    let mut s = String::with_capacity(size + 256);
    let mut i = 0;
    while s.len() < size {
        s.push_str(TURNS[i % TURNS.len()]);
        i += 1;
    }
    let mut cut = size.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}
