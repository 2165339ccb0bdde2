//! The whole policy stack through `oneshot`, with the in-process mock provider (no network):
//! the per-request cost of Palisade without HTTP. Guards the hot path against regressions;
//! the HTTP-level comparison with a bare proxy is `benches/load/run.sh`.
//!
//! `cargo bench -p gateway --bench stack`
//!
//! - `empty`: no policies, anonymous, audit `content: none` + `durability: async`.
//! - `default`: injection, PII redaction (placeholders restored), secrets, safety, firewall,
//!   audit-logger, budget + rate limit, audit `durability: sync`, gateway key required.
//! - `default_stream`: the default pack with `stream: true` (the body is drained).
//! - `default_fresh`: the default pack, with a user message never seen before on every call
//!   (the system prompt repeats): the per-message caches (detector findings, token counts)
//!   miss on the new message. As the message is the first non-system one, every call is
//!   also a new conversation (the worst case for per-conversation state). The other cases send the same body every
//!   time, so after the first call those caches answer.
//!
//! Profiling aid: `PALISADE_STACK_PROFILE=default:2000` (or `empty:N`, `default_stream:N`,
//! `default_fresh:N`)
//! sends N requests of that case and exits without criterion, e.g. under
//! `valgrind --tool=callgrind --toggle-collect='stack::call*'` for stable instruction counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::{PolicyStack, StackParts};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const EMPTY: &str = r#"
pack: {name: bench-empty, version: "1"}
auth: optional
providers:
  - {name: mock, kind: mock, model: "*"}
policies: {chain: []}
audit: {content: none, durability: async}
"#;

const DEFAULT: &str = r#"
pack: {name: bench-default, version: "1"}
auth: required
on_block: completion
providers:
  - {name: mock, kind: mock, model: "*"}
policies:
  chain: [prompt-injection, pii-detector, secrets-detector, safety-filter, agent-firewall, audit-logger, budget]
policy:
  prompt-injection: {action: block, threshold: 0.5}
  pii-detector: {action: redact, strategy: placeholder, restore: true}
  secrets-detector: {action: redact, strategy: mask}
  safety-filter: {action: block, min_severity: medium}
  agent-firewall: {default: allow, on_violation: strip, max_message_chars: 100000}
  audit-logger: {capture_fields: [sender_agents, recipient_agent]}
tools:
  lookup_order: {category: internal}
  send_http_request: {category: external_api}
rules:
  - name: prevent-data-exfiltration-to-external-endpoints
    condition:
      action_type: tool_call
      tool_name: send_http_request
      parameter: url
      matches_pattern: '^(https?://)?([^/]*\.)?(webhook|slack|discord)'
    decision: BLOCK
audit: {content: redacted, durability: sync, on_audit_failure: deny}
budgets:
  - {scope: agent, match: "*", limit_usd: 1000000, period: day}
rate_limits:
  - {scope: agent, match: "*", requests_per_minute: 100000000, tokens_per_minute: 100000000000}
"#;

/// A body like the load harness's (benches/load/src/body.rs): system + user message with an
/// e-mail and a phone number, one tool; assembled at run time.
fn body(stream: bool, turn: Option<u64>) -> Bytes {
    let system = "You are the order-support assistant of an online bookshop. Answer in a friendly, \
        concise tone. Use the lookup_order tool to fetch the status of an order before you make any \
        promise about delivery dates. Never invent tracking numbers, prices or stock levels; if the \
        tool does not return them, say that you will check with a colleague. Keep answers under 120 \
        words, use plain sentences, no tables. If the customer asks to change contact details, \
        confirm the new details back to them and note that the change applies to future orders only.";
    let email = format!("{}.{}@{}", "jane", "doe", "example.com");
    let phone = format!("+1 {} {} {}", "415", "555", "0132");
    let mut user = format!(
        "Mail {email}, tel {phone}. Hello, I ordered two books last Tuesday (order 48213) and the \
         tracking page has not changed since Thursday. Could you check where the parcel is?"
    );
    if let Some(turn) = turn {
        user.push_str(&format!(
            " This is my message number {turn}, sorry to insist."
        ));
    }
    let mut v = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "name": "customer", "content": user}
        ],
        "tools": [{"type": "function", "function": {
            "name": "lookup_order",
            "description": "Look up an order by its number and return its status.",
            "parameters": {"type": "object",
                "properties": {"order_id": {"type": "string"}, "include_events": {"type": "boolean"}},
                "required": ["order_id"]}}}],
        "tool_choice": "auto",
        "max_tokens": 256
    });
    if stream {
        v["stream"] = Value::Bool(true);
        v["tool_choice"] = Value::from("none");
    }
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

struct Fixture {
    stack: PolicyStack,
    key: Option<String>,
    _dir: tempfile::TempDir,
}

fn fixture(yaml: &str, with_key: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pack = policy_engine::CompiledPack::from_yaml(yaml, "bench.yaml").unwrap();
    let parts = StackParts::open(pack, dir.path(), "gw-bench").unwrap();
    let key = with_key.then(|| {
        parts
            .keys
            .create("bench-agent", Some("worker"), Some("bench"))
            .unwrap()
            .key
    });
    Fixture {
        stack: parts.build(),
        key,
        _dir: dir,
    }
}

async fn call(f: &Fixture, body: &Bytes) -> usize {
    let mut req = http::Request::new(body.clone());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(k) = &f.key {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {k}")).unwrap(),
        );
    }
    let res = f.stack.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    res.into_body().collect().await.unwrap().to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let chat = body(false, None);
    let stream = body(true, None);
    let fresh = |turn: u64| body(false, Some(turn));
    let empty = fixture(EMPTY, false);
    let default = fixture(DEFAULT, true);

    if let Ok(spec) = std::env::var("PALISADE_STACK_PROFILE") {
        let (case, n) = spec.split_once(':').unwrap_or((spec.as_str(), "1000"));
        let n: usize = n.parse().expect("PALISADE_STACK_PROFILE=case:N");
        // `None`: a new user message on every call.
        let (f, body) = match case {
            "empty" => (&empty, Some(&chat)),
            "default" => (&default, Some(&chat)),
            "default_stream" => (&default, Some(&stream)),
            "default_fresh" => (&default, None),
            other => panic!("unknown case {other}: empty, default, default_stream, default_fresh"),
        };
        // One call first, so lazy state (detectors, caches, prepared statements) is built.
        for i in 0..=n {
            match body {
                Some(b) => rt.block_on(call(f, b)),
                None => rt.block_on(call(f, &fresh(i as u64))),
            };
        }
        std::process::exit(0);
    }

    let mut g = c.benchmark_group("stack_oneshot");
    g.throughput(Throughput::Elements(1));
    g.bench_function("empty", |b| b.iter(|| rt.block_on(call(&empty, &chat))));
    g.bench_function("default", |b| b.iter(|| rt.block_on(call(&default, &chat))));
    g.bench_function("default_stream", |b| {
        b.iter(|| rt.block_on(call(&default, &stream)))
    });
    let mut turn = 0u64;
    g.bench_function("default_fresh", |b| {
        b.iter_batched(
            || {
                turn += 1;
                fresh(turn)
            },
            |body| rt.block_on(call(&default, &body)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
