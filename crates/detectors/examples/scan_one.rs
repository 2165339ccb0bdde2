//! Prints the findings for one text read from stdin (debugging aid).
//!
//! `echo "text" | cargo run -p detectors --example scan_one -- tool_output`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;

use detectors::{DetectorConfig, DetectorSet, ScanContext, Surface, injection_score};

fn main() {
    let surface = std::env::args()
        .nth(1)
        .and_then(|s| Surface::parse(&s))
        .unwrap_or(Surface::UserPrompt);
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).unwrap();
    let set = DetectorSet::new(&DetectorConfig::default()).unwrap();
    let f = set.scan(&text, &ScanContext::new(surface));
    for x in &f {
        println!(
            "{:<10} {:<45} {:>5}..{:<5} {:.2} {:?}",
            x.detector.as_str(),
            x.rule,
            x.start,
            x.end,
            x.score,
            &text[x.start..x.end]
        );
    }
    println!("injection_score {:.3}", injection_score(&f));
}
