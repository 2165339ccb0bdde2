//! Memory, load time and speed of the token counter, against tiktoken-rs.
//!
//! ```text
//! cargo run --release -p cost-accounting --example token_counter -- load ours [FILE...]
//! cargo run --release -p cost-accounting --example token_counter -- load tiktoken [FILE...]
//! cargo run --release -p cost-accounting --example token_counter -- corpus /work/shared/datasets/*.jsonl
//! ```
//!
//! `load` reports VmRSS / VmHWM (from `/proc/self/status`) before and after loading
//! `o200k_base` in a fresh process, one implementation per process (`ours-both` loads
//! `cl100k_base` too), then after counting the `text` fields of FILE... (JSON lines) with it.
//! `corpus` counts those texts with both (ours through `count_text`, first pass, so its count
//! cache is cold and included), checks that every count is equal and reports the times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

fn mem() -> String {
    format!(
        "VmRSS {} kB (anon {}, file {}), VmHWM {} kB",
        status("VmRSS:"),
        status("RssAnon:"),
        status("RssFile:"),
        status("VmHWM:")
    )
}

fn read_texts(files: &[String]) -> Vec<String> {
    let mut texts = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                texts.push(t.to_owned());
            }
        }
    }
    texts
}

fn load(which: &str, files: &[String]) {
    let texts = read_texts(files);
    println!("before: {}", mem());
    let started = Instant::now();
    let mut keep = None;
    let n = match which {
        "ours" => cost_accounting::count_text("gpt-4o", "hello world") as usize,
        "ours-both" => {
            cost_accounting::count_text("gpt-4o", "hello world") as usize
                + cost_accounting::count_text("gpt-4", "hello world") as usize
        }
        "tiktoken" => keep
            .insert(tiktoken_rs::o200k_base().unwrap())
            .encode_ordinary("hello world")
            .len(),
        _ => panic!("load ours|ours-both|tiktoken"),
    };
    let took = started.elapsed();
    println!(
        "after:  {} ({n} tokens; load + first count {took:.2?})",
        mem()
    );
    if !texts.is_empty() {
        let total: u64 = texts
            .iter()
            .map(|t| match &keep {
                Some(bpe) => bpe.encode_ordinary(t).len() as u64,
                None => cost_accounting::count_text("gpt-4o", t),
            })
            .sum();
        println!(
            "after counting {} texts ({total} tokens): {}",
            texts.len(),
            mem()
        );
    }
    drop(keep);
}

fn corpus(files: &[String]) {
    let texts = read_texts(files);
    let bytes: usize = texts.iter().map(String::len).sum();
    println!("{} texts, {bytes} bytes", texts.len());
    for (model, reference) in [
        ("gpt-4o", tiktoken_rs::o200k_base_singleton()),
        ("gpt-4", tiktoken_rs::cl100k_base_singleton()),
    ] {
        cost_accounting::count_text(model, "warm up");
        reference.encode_ordinary("warm up");
        let started = Instant::now();
        let ours: Vec<u64> = texts
            .iter()
            .map(|t| cost_accounting::count_text(model, t))
            .collect();
        let ours_took = started.elapsed();
        let mut best_ref = Duration::MAX;
        let mut theirs = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            theirs = texts
                .iter()
                .map(|t| reference.encode_ordinary(t).len() as u64)
                .collect();
            best_ref = best_ref.min(started.elapsed());
        }
        assert_eq!(ours, theirs, "{model}: counts differ");
        let total: u64 = ours.iter().sum();
        println!(
            "{model}: {total} tokens, all equal; count_text (cold cache) {ours_took:.2?}, \
             tiktoken-rs encode_ordinary {best_ref:.2?} (best of 3)"
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") => load(
            args.get(1).map_or("ours", String::as_str),
            args.get(2..).unwrap_or_default(),
        ),
        Some("corpus") => corpus(args.get(1..).unwrap_or_default()),
        _ => eprintln!(
            "usage: token_counter load ours|ours-both|tiktoken [FILE...] | corpus FILE..."
        ),
    }
}
