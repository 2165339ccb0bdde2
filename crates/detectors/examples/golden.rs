//! Dumps every finding for a fixed corpus (the labelled datasets, concatenations of their
//! rows, and the benchmark text) so two builds can be diffed finding by finding.
//!
//! `cargo run --release -p detectors --example golden -- ../shared/datasets > findings.txt`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use detectors::{DetectorConfig, DetectorMask, DetectorSet, ScanContext, Surface};
use serde_json::Value;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/datasets".into());
    let mut texts: Vec<String> = Vec::new();
    for f in [
        "prompt_injection_ext.jsonl",
        "dangerous_code_ext.jsonl",
        "safety_ext.jsonl",
        "pii_ext.jsonl",
    ] {
        let data = std::fs::read_to_string(format!("{dir}/{f}")).expect("read dataset");
        for l in data.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(l).expect("json row");
            texts.push(v["text"].as_str().unwrap_or("").to_owned());
        }
    }
    // Concatenations of rows (longer, mixed texts), deterministic.
    let n = texts.len();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..400 {
        let mut s = String::new();
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(&texts[(x % n as u64) as usize]);
            s.push(if x % 3 == 0 { '\n' } else { ' ' });
        }
        texts.push(s);
    }
    let set = DetectorSet::new(&DetectorConfig::default()).expect("build");
    let surfaces = [
        Surface::UserPrompt,
        Surface::ToolOutput,
        Surface::AgentMessage,
    ];
    let mut out = String::new();
    let start = std::time::Instant::now();
    for (i, t) in texts.iter().enumerate() {
        for s in surfaces {
            for f in set.scan(t, &ScanContext::new(s)) {
                writeln!(
                    out,
                    "{i} {} {} {} {} {} {:.4} {:?}",
                    s.as_str(),
                    f.detector.as_str(),
                    f.rule,
                    f.start,
                    f.end,
                    f.score,
                    f.severity
                )
                .unwrap();
            }
        }
        for (name, mask, s) in [
            ("pii-only", DetectorMask::PII, Surface::UserPrompt),
            ("inj-only", DetectorMask::INJECTION, Surface::ToolOutput),
            ("code-only", DetectorMask::CODE, Surface::UserPrompt),
        ] {
            for f in set.scan(t, &ScanContext::new(s).with_detectors(mask)) {
                writeln!(
                    out,
                    "{i} {name} {} {} {} {:.4}",
                    f.rule, f.start, f.end, f.score
                )
                .unwrap();
            }
        }
    }
    print!("{out}");
    eprintln!(
        "{} texts, {:.3}s",
        texts.len(),
        start.elapsed().as_secs_f64()
    );
}
