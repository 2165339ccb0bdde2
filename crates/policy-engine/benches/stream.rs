//! Per-chunk cost of stream scanning (issue 8): the default pack's output policies in
//! `window` mode (and `hold`, and `pass-through` for reference) over a 120-chunk answer.
//! `cargo bench -p policy-engine --bench stream`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use exchange::{Exchange, ExchangeHandle};
use policy_engine::{CompiledPack, PolicyState, StreamScanner};

fn pack(mode: &str) -> Arc<CompiledPack> {
    let yaml = format!(
        "pack: {{name: bench, version: \"1\"}}\npolicies:\n  chain: [prompt-injection, pii-detector, secrets-detector, safety-filter, quality-scorer]\n\
         policy:\n  prompt-injection: {{action: block, threshold: 0.5}}\n\
         \x20 pii-detector: {{action: redact, strategy: placeholder, restore: true, stream_mode: {mode}}}\n\
         \x20 secrets-detector: {{action: redact, strategy: mask, stream_mode: {mode}}}\n\
         \x20 safety-filter: {{action: block, min_severity: medium, stream_mode: {mode}}}\n\
         \x20 quality-scorer: {{threshold: 0.5, action: log, stream_mode: {mode}}}\n"
    );
    Arc::new(CompiledPack::from_yaml(&yaml, "bench.yaml").unwrap())
}

fn events() -> Vec<Bytes> {
    events_of(4)
}

fn events_of(repeat: usize) -> Vec<Bytes> {
    let words = "The quarterly report shows revenue grew in every region; contact the analyst \
                 team for the detailed breakdown by product line and the forecast for next year. ";
    let text = words.repeat(repeat);
    let mut out = vec![Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    )];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(5) {
        let s: String = piece.iter().collect();
        out.push(Bytes::from(format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(&s).unwrap()
        )));
    }
    out.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    ));
    out
}

fn handle() -> ExchangeHandle {
    ExchangeHandle::new(
        Exchange::parse(Bytes::from_static(
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Summarise the quarterly report."}]}"#,
        ))
        .unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let evs = events();
    let n = evs.len() as u64;
    let mut g = c.benchmark_group("stream");
    for mode in ["window", "hold", "pass-through"] {
        let p = pack(mode);
        g.throughput(criterion::Throughput::Elements(n));
        g.bench_function(format!("{mode}/whole stream ({n} events)"), |b| {
            b.iter(|| {
                let mut s = StreamScanner::new(p.clone(), PolicyState::new(), handle());
                let mut out = 0;
                for e in &evs {
                    out += s.push(e).len();
                }
                out + s.end().len()
            })
        });
        g.bench_function(format!("{mode}/first event (role chunk)"), |b| {
            b.iter(|| {
                let mut s = StreamScanner::new(p.clone(), PolicyState::new(), handle());
                s.push(&evs[0]).len()
            })
        });
    }
    // A long answer (≈ 20 KB, 4 000 events): each window step scans a bounded tail, so
    // the cost per event stays flat instead of growing with the answer.
    let long = events_of(128);
    let n = long.len() as u64;
    let p = pack("window");
    g.throughput(criterion::Throughput::Elements(n));
    g.bench_function(format!("window/long answer ({n} events)"), |b| {
        b.iter(|| {
            let mut s = StreamScanner::new(p.clone(), PolicyState::new(), handle());
            let mut out = 0;
            for e in &long {
                out += s.push(e).len();
            }
            out + s.end().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
