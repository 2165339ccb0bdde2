//! Streaming conformance (issue 8): every output policy in every stream mode against
//! responses re-chunked adversarially — one character per event, one byte per body frame
//! (UTF-8 characters split across frames), every split point of the sensitive value, random
//! splits with fixed seeds. The released content never holds forbidden content, equals the
//! non-streamed result for the same response, and the recorded stream stats say what was
//! released. Layer-level (a `tower::service_fn` upstream), plus a few runs through the real
//! gateway with the mock upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use exchange::{
    BoxError, ChatChunk, ChatResponse, ChunkChoice, Delta, Exchange, ExchangeHandle,
    FunctionCallDelta, Outcome, ResponseBody, Role, StreamStats, ToolCallDelta,
};
use http_body_util::BodyExt;
use policy_engine::{CompiledPack, PolicyLayer, PolicyState, SharedPack};
use tower::{Layer, Service, ServiceExt};

// ---------------------------------------------------------------------------------------
// Upstream responses and re-chunking

/// A scripted upstream answer: content pieces, then an optional tool call in pieces.
#[derive(Clone, Debug)]
struct Script {
    content: Vec<String>,
    call: Option<(String, Vec<String>)>,
}

impl Script {
    fn text(&self) -> String {
        self.content.concat()
    }
}

fn chunk(delta: Delta, finish: Option<&str>) -> ChatChunk {
    ChatChunk {
        id: "chatcmpl-conf".to_owned(),
        object: "chat.completion.chunk".to_owned(),
        created: 1_700_000_000,
        model: "gpt-4o".to_owned(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_owned),
            extra: Default::default(),
        }],
        usage: None,
        extra: Default::default(),
    }
}

fn event(c: &ChatChunk) -> String {
    format!("data: {}\n\n", serde_json::to_string(c).unwrap())
}

/// The SSE body upstream sends for `script`.
fn sse_body(script: &Script) -> Vec<u8> {
    let mut out = event(&chunk(
        Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        },
        None,
    ));
    for piece in &script.content {
        out.push_str(&event(&chunk(
            Delta {
                content: Some(piece.clone()),
                ..Delta::default()
            },
            None,
        )));
    }
    let finish = if let Some((name, args)) = &script.call {
        for (i, a) in args.iter().enumerate() {
            let first = i == 0;
            out.push_str(&event(&chunk(
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: 0,
                        id: first.then(|| "call_1".to_owned()),
                        kind: first.then(|| "function".to_owned()),
                        function: Some(FunctionCallDelta {
                            name: first.then(|| name.clone()),
                            arguments: Some(a.clone()),
                        }),
                    }]),
                    ..Delta::default()
                },
                None,
            )));
        }
        "tool_calls"
    } else {
        "stop"
    };
    out.push_str(&event(&chunk(Delta::default(), Some(finish))));
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// The same answer as one JSON completion.
fn json_body(script: &Script) -> Vec<u8> {
    let mut message = serde_json::json!({"role": "assistant", "content": script.text()});
    let mut finish = "stop";
    if let Some((name, args)) = &script.call {
        message["tool_calls"] = serde_json::json!([{
            "id": "call_1", "type": "function",
            "function": {"name": name, "arguments": args.concat()}
        }]);
        if script.content.is_empty() {
            message["content"] = serde_json::Value::Null;
        }
        finish = "tool_calls";
    }
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-conf", "object": "chat.completion", "created": 1_700_000_000u64,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }))
    .unwrap()
}

/// Pieces of `s` of lengths drawn by a fixed-seed generator (1..=max characters).
fn random_pieces(s: &str, seed: u64, max: usize) -> Vec<String> {
    let mut rng = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = 1 + (rng >> 33) as usize % max;
        let end = (i + n).min(chars.len());
        out.push(chars[i..end].iter().collect());
        i = end;
    }
    out
}

/// Body frames: `0` = one frame per SSE event, otherwise random sizes 1..=n bytes (1 = one
/// byte per frame, which splits UTF-8 characters).
fn frames(body: &[u8], max: usize, seed: u64) -> Vec<Bytes> {
    if max == 0 {
        let text = String::from_utf8(body.to_vec()).unwrap();
        return text
            .split_inclusive("\n\n")
            .map(|e| Bytes::from(e.to_owned()))
            .collect();
    }
    let mut rng = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = 1 + (rng >> 33) as usize % max;
        let end = (i + n).min(body.len());
        out.push(Bytes::copy_from_slice(&body[i..end]));
        i = end;
    }
    out
}

/// Every re-chunking of `script` the suite runs: (label, script, frames max, seed).
fn rechunkings(script: &Script, sensitive: &str) -> Vec<(String, Script, usize)> {
    let text = script.text();
    let mut out = Vec::new();
    // One character per event, one frame per event.
    out.push((
        "1 char per event".to_owned(),
        Script {
            content: text
                .chars()
                .collect::<Vec<char>>()
                .chunks(4)
                .map(|c| c.iter().collect())
                .collect(),
            call: script
                .call
                .as_ref()
                .map(|(n, a)| (n.clone(), a.concat().chars().map(String::from).collect())),
        },
        0,
    ));
    // Whole content in one event, one byte per body frame.
    out.push((
        "1 byte per frame".to_owned(),
        Script {
            content: if text.is_empty() {
                vec![]
            } else {
                vec![text.clone()]
            },
            call: script.call.clone(),
        },
        1,
    ));
    // Every split point of the sensitive value.
    if let Some(at) = text.find(sensitive) {
        for (k, _) in sensitive.char_indices().skip(1) {
            let cut = at + k;
            out.push((
                format!(
                    "split {:?} | {:?}",
                    &text[at..cut],
                    &text[cut..at + sensitive.len()]
                ),
                Script {
                    content: vec![text[..cut].to_owned(), text[cut..].to_owned()],
                    call: script.call.clone(),
                },
                0,
            ));
        }
    }
    if let Some((name, args)) = &script.call {
        let args = args.concat();
        if let Some(at) = args.find(sensitive) {
            for (k, _) in sensitive.char_indices().skip(1) {
                let cut = at + k;
                out.push((
                    format!("args split at {cut}"),
                    Script {
                        content: script.content.clone(),
                        call: Some((
                            name.clone(),
                            vec![args[..cut].to_owned(), args[cut..].to_owned()],
                        )),
                    },
                    0,
                ));
            }
        }
    }
    // Random splits with fixed seeds, random body framing.
    for seed in 1..=4u64 {
        out.push((
            format!("random seed {seed}"),
            Script {
                content: random_pieces(&text, seed, 7),
                call: script
                    .call
                    .as_ref()
                    .map(|(n, a)| (n.clone(), random_pieces(&a.concat(), seed, 5))),
            },
            (seed as usize * 7) % 23 + 1,
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Running a response through the policy layers

fn shared(yaml: &str) -> SharedPack<CompiledPack> {
    let pack = CompiledPack::from_yaml(yaml, "conformance.yaml")
        .unwrap_or_else(|e| panic!("pack does not load:\n{e}"));
    Arc::new(arc_swap::ArcSwap::from_pointee(pack))
}

fn request(user: &str, stream: bool) -> (http::Request<Bytes>, ExchangeHandle) {
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": user}],
        "stream": stream,
    })
    .to_string();
    let body = Bytes::from(body);
    let handle = ExchangeHandle::new(Exchange::parse(body.clone()).unwrap());
    let mut req = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    req.extensions_mut().insert(handle.clone());
    (req, handle)
}

fn hyper_frame(b: Bytes) -> http_body::Frame<Bytes> {
    http_body::Frame::data(b)
}

fn upstream_response(
    content_type: &'static str,
    frames: Vec<Bytes>,
) -> http::Response<ResponseBody> {
    let stream = futures_util::stream::iter(
        frames
            .into_iter()
            .map(|b| Ok::<_, BoxError>(hyper_frame(b))),
    );
    let body = http_body_util::StreamBody::new(stream).boxed_unsync();
    let mut res = http::Response::new(body);
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    res
}

async fn call(
    pack: &SharedPack<CompiledPack>,
    user: &str,
    stream: bool,
    content_type: &'static str,
    frames: Vec<Bytes>,
) -> (u16, Bytes, ExchangeHandle) {
    let state = PolicyState::new();
    let frames = Arc::new(std::sync::Mutex::new(Some(frames)));
    let inner = tower::service_fn(move |_req: http::Request<Bytes>| {
        let f = frames.lock().unwrap().take().unwrap_or_default();
        async move { Ok::<_, BoxError>(upstream_response(content_type, f)) }
    });
    let mut svc = PolicyLayer::new(pack.clone(), state).layer(inner);
    let (req, handle) = request(user, stream);
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, body, handle)
}

/// What a client saw of a stream.
#[derive(Debug, Default)]
struct Seen {
    /// Content of the chunks before a `content_filter` finish.
    content: String,
    /// The explanation of a block, if the stream was blocked.
    block: Option<String>,
    finish: Option<String>,
    calls: Vec<(String, String)>,
    done: bool,
}

fn parse_stream(body: &[u8]) -> Seen {
    let text = std::str::from_utf8(body).expect("the stream is UTF-8");
    let mut seen = Seen::default();
    assert!(
        text.ends_with("\n\n"),
        "the stream ends with a complete event: {text:?}"
    );
    for ev in text.split_terminator("\n\n") {
        assert!(!seen.done, "nothing follows [DONE]: {text:?}");
        let data = ev
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("event is `data: ...`: {ev:?}"));
        if data == "[DONE]" {
            seen.done = true;
            continue;
        }
        let c: ChatChunk = serde_json::from_str(data)
            .unwrap_or_else(|e| panic!("event is a chat.completion.chunk ({e}): {data}"));
        assert_eq!(c.id, "chatcmpl-conf", "upstream id kept");
        assert_eq!(c.model, "gpt-4o", "upstream model kept");
        assert_eq!(c.created, 1_700_000_000, "upstream created kept");
        for ch in c.choices {
            if ch.finish_reason.as_deref() == Some("content_filter") {
                seen.block = Some(ch.delta.content.clone().unwrap_or_default());
            } else if let Some(s) = &ch.delta.content {
                seen.content.push_str(s);
            }
            for tc in ch.delta.tool_calls.unwrap_or_default() {
                let i = tc.index as usize;
                while seen.calls.len() <= i {
                    seen.calls.push(Default::default());
                }
                if let Some(f) = tc.function {
                    seen.calls[i].0.push_str(&f.name.unwrap_or_default());
                    seen.calls[i].1.push_str(&f.arguments.unwrap_or_default());
                }
            }
            if ch.finish_reason.is_some() {
                seen.finish = ch.finish_reason;
            }
        }
    }
    seen
}

/// The non-streamed result: `Err(())` when blocked, else (content, calls, finish).
type Reference = Result<(String, Vec<(String, String)>, Option<String>), ()>;

async fn reference(pack: &SharedPack<CompiledPack>, user: &str, script: &Script) -> Reference {
    let (status, body, _) = call(
        pack,
        user,
        false,
        "application/json",
        vec![Bytes::from(json_body(script))],
    )
    .await;
    if status != 200 {
        return Err(());
    }
    let resp: ChatResponse = serde_json::from_slice(&body).unwrap();
    let c = &resp.choices[0];
    if c.finish_reason.as_deref() == Some("content_filter") {
        return Err(());
    }
    let calls = c
        .message
        .tool_calls
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.function.name, t.function.arguments))
        .collect();
    Ok((
        c.message.text().into_owned(),
        calls,
        c.finish_reason.clone(),
    ))
}

// ---------------------------------------------------------------------------------------
// The cases

struct Case {
    name: &'static str,
    /// The chain and `policy:` entries; `{MODE}` is replaced by the stream mode keys.
    policies: &'static str,
    user: &'static str,
    script: Script,
    /// The value whose split points are tried.
    sensitive: String,
    /// What must never reach the client (unless the mode is pass-through).
    forbidden: Vec<String>,
    /// Whether the non-streamed result is a block.
    blocks: bool,
}

const MODES: [(&str, &str); 4] = [
    ("pass-through", "stream_mode: pass-through"),
    ("window:16", "stream_mode: window, window_chars: 16"),
    ("window", "stream_mode: window"),
    ("hold", "stream_mode: hold"),
];

fn secret() -> String {
    // Assembled at run time: no credential-shaped literal in the repository.
    let body: String = "Q7wE2rT9yU4iO1pA8sD5fG3hJ6kL0zXcVbNm"
        .chars()
        .take(36)
        .collect();
    format!("ghp_{body}")
}

fn script(text: &str) -> Script {
    Script {
        content: vec![text.to_owned()],
        call: None,
    }
}

fn cases() -> Vec<Case> {
    let email = "jane.doe@example.com".to_owned();
    let secret = secret();
    vec![
        Case {
            name: "pii placeholder",
            policies: "chain: [pii-detector]\npolicy:\n  pii-detector: {action: redact, strategy: placeholder, {MODE}}\n",
            user: "hello",
            script: script(&format!(
                "Guten Tag! Hier ist die Zusammenfassung des Treffens von gestern Abend. \
                 Schreiben Sie an {email} — grüße ✓ 😀 bis bald, Jürgen."
            )),
            sensitive: email.clone(),
            forbidden: vec![email.clone(), "jane.d".to_owned()],
            blocks: false,
        },
        Case {
            name: "pii mask",
            policies: "chain: [pii-detector]\npolicy:\n  pii-detector: {action: redact, strategy: mask, {MODE}}\n",
            user: "hello",
            script: script(&format!("ok: {email}, and ✓ done")),
            sensitive: email.clone(),
            forbidden: vec![email.clone()],
            blocks: false,
        },
        Case {
            name: "pii restore",
            policies: "chain: [pii-detector]\npolicy:\n  pii-detector: {action: redact, restore: true, {MODE}}\n",
            user: "Please remember my address jane.doe@example.com for later.",
            script: script("Noted — I will write to <EMAIL_1> soon ✓, or <EMA_NOT> stays."),
            sensitive: "<EMAIL_1>".to_owned(),
            forbidden: vec!["<EMA".to_owned() + "IL_1>", "<EMAIL".to_owned()],
            blocks: false,
        },
        Case {
            name: "secrets mask",
            policies: "chain: [secrets-detector]\npolicy:\n  secrets-detector: {action: redact, strategy: mask, {MODE}}\n",
            user: "hello",
            script: script(&format!("Use token {secret} for the build — ✓.")),
            sensitive: secret.clone(),
            forbidden: vec![secret.clone(), secret[..12].to_owned()],
            blocks: false,
        },
        Case {
            name: "safety block",
            policies: "chain: [safety-filter]\npolicy:\n  safety-filter: {action: block, {MODE}}\n",
            user: "hello",
            script: script("The novel's hero — Zoë — says: I want to die, and the chapter ends."),
            sensitive: "I want to die".to_owned(),
            forbidden: vec!["want to die".to_owned()],
            blocks: true,
        },
        Case {
            name: "firewall block",
            policies: "chain: [agent-firewall]\npolicy:\n  agent-firewall: {default: deny, on_violation: block, {MODE}}\n",
            user: "hello",
            script: Script {
                content: vec!["Sending it now ✓.".to_owned()],
                call: Some((
                    "send_email".to_owned(),
                    vec![r#"{"to":"ops@example.org","body":"hi"}"#.to_owned()],
                )),
            },
            sensitive: "ops@example.org".to_owned(),
            forbidden: vec!["send_email".to_owned(), "ops@example.org".to_owned()],
            blocks: true,
        },
        Case {
            name: "firewall strip",
            policies: "chain: [agent-firewall]\npolicy:\n  agent-firewall: {default: deny, on_violation: strip, {MODE}}\n",
            user: "hello",
            script: Script {
                content: vec!["Sending it now ✓.".to_owned()],
                call: Some((
                    "send_email".to_owned(),
                    vec![r#"{"to":"ops@example.org"}"#.to_owned()],
                )),
            },
            sensitive: "ops@example.org".to_owned(),
            forbidden: vec!["ops@example.org".to_owned()],
            blocks: false,
        },
        Case {
            name: "firewall allows",
            policies: "chain: [agent-firewall, pii-detector]\npolicy:\n  agent-firewall: {default: allow, {MODE}}\n  pii-detector: {action: redact, {MODE}}\n",
            user: "hello",
            script: Script {
                content: vec![],
                call: Some(("lookup".to_owned(), vec![format!(r#"{{"who":"{email}"}}"#)])),
            },
            sensitive: email.clone(),
            forbidden: vec![email.clone()],
            blocks: false,
        },
        Case {
            name: "quality block",
            policies: "chain: [quality-scorer]\npolicy:\n  quality-scorer: {threshold: 0.99, action: block, {MODE}}\n",
            user: "Write a long essay about rivers.",
            script: script("I'm sorry, but I can't help with that."),
            sensitive: "can't".to_owned(),
            forbidden: vec![],
            blocks: true,
        },
    ]
}

fn pack_yaml(case: &Case, mode: &str) -> String {
    format!(
        "pack: {{name: conformance, version: \"1\"}}\npolicies:\n  {}",
        case.policies
            .replace("{MODE}", mode)
            .replace('\n', "\n  ")
            .replacen("  policy:", "policy:", 1)
    )
}

fn check_stats(stats: &StreamStats, seen: &Seen, mode: &str, label: &str) {
    let released: usize = seen.content.len() + seen.calls.iter().map(|c| c.1.len()).sum::<usize>();
    let notes = seen.content.matches("[palisade] removed a call").count();
    if notes == 0 {
        assert_eq!(
            stats.bytes_released as usize, released,
            "{label}: bytes_released"
        );
    }
    assert!(stats.completed, "{label}: upstream [DONE] recorded");
    match mode {
        "hold" => {
            assert_eq!(
                stats.bytes_released_before_verdict, 0,
                "{label}: hold releases nothing before the verdict"
            );
            assert!(stats.output_scan_completed, "{label}: scan completed");
        }
        "pass-through" => {
            assert_eq!(
                stats.bytes_released_before_verdict, stats.bytes_released,
                "{label}"
            );
            assert!(
                !stats.output_scan_completed,
                "{label}: pass-through does not scan"
            );
        }
        _ => {
            assert!(
                stats.bytes_released_before_verdict <= stats.bytes_released,
                "{label}"
            );
        }
    }
}

#[tokio::test]
async fn every_policy_in_every_mode_survives_adversarial_rechunking() {
    let mut runs = 0;
    for case in cases() {
        for (mode, keys) in MODES {
            let yaml = pack_yaml(&case, keys);
            let pack = shared(&yaml);
            let want = reference(&pack, case.user, &case.script).await;
            assert_eq!(
                want.is_err(),
                case.blocks,
                "{} / {mode}: non-streamed block",
                case.name
            );
            for (label, script, max) in rechunkings(&case.script, &case.sensitive) {
                let label = format!("{} / {mode} / {label}", case.name);
                let body = sse_body(&script);
                let fr = frames(&body, max, runs as u64);
                let (status, out, handle) =
                    call(&pack, case.user, true, "text/event-stream", fr).await;
                runs += 1;
                assert_eq!(status, 200, "{label}");
                let seen = parse_stream(&out);
                assert!(seen.done, "{label}: ends with [DONE]");
                let ex = handle.lock().clone();
                let stats = ex
                    .stream
                    .clone()
                    .unwrap_or_else(|| panic!("{label}: stream stats recorded"));
                if mode == "pass-through" {
                    assert_eq!(
                        seen.content,
                        case.script.text(),
                        "{label}: pass-through is verbatim"
                    );
                    assert!(seen.block.is_none(), "{label}");
                    check_stats(&stats, &seen, mode, &label);
                    continue;
                }
                let released = format!(
                    "{}{}",
                    seen.content,
                    seen.calls
                        .iter()
                        .map(|c| format!("{}{}", c.0, c.1))
                        .collect::<String>()
                );
                for f in &case.forbidden {
                    assert!(
                        !released.contains(f.as_str()),
                        "{label}: released {f:?}: {released:?}"
                    );
                }
                match &want {
                    Err(()) => {
                        let why = seen
                            .block
                            .as_deref()
                            .unwrap_or_else(|| panic!("{label}: stream must be blocked: {seen:?}"));
                        assert!(
                            why.contains("[palisade] blocked by"),
                            "{label}: explanation {why:?}"
                        );
                        assert_eq!(seen.finish.as_deref(), Some("content_filter"), "{label}");
                        assert!(
                            matches!(ex.outcome, Outcome::Blocked { status: 200, .. }),
                            "{label}: {:?}",
                            ex.outcome
                        );
                        if mode == "hold" {
                            assert_eq!(
                                seen.content, "",
                                "{label}: hold releases nothing of a blocked answer"
                            );
                            assert!(seen.calls.is_empty(), "{label}");
                        }
                        assert!(
                            case.script.text().starts_with(&seen.content),
                            "{label}: released a prefix: {:?}",
                            seen.content
                        );
                    }
                    Ok((content, calls, finish)) => {
                        assert!(seen.block.is_none(), "{label}: not blocked: {seen:?}");
                        assert_eq!(
                            &seen.content, content,
                            "{label}: equals the non-streamed content"
                        );
                        assert_eq!(
                            &seen.calls, calls,
                            "{label}: equals the non-streamed tool calls"
                        );
                        assert_eq!(&seen.finish, finish, "{label}: finish_reason");
                        check_stats(&stats, &seen, mode, &label);
                        assert!(stats.output_scan_completed, "{label}");
                    }
                }
            }
        }
    }
    assert!(runs > 500, "ran {runs} streams");
}

/// Regression guard for the bounded tail scan: a 20 KB answer sent four characters per event
/// (each window step scans only a bounded tail, not the whole answer so far). Sensitive
/// values are spread over the answer, far past the scan's look-back, and the result must
/// equal the non-streamed one.
#[tokio::test]
async fn long_answer_in_small_chunks_equals_the_non_streamed_result() {
    let secret = secret();
    let filler = "The quarterly report shows revenue grew in every region; the analyst team \
                  has the breakdown by product line and the forecast for next year. ";
    let mut text = String::new();
    let mut n = 0;
    while text.len() < 20_000 {
        text.push_str(filler);
        if text.len() % 7 == 0 || text.len() > 19_800 {
            continue;
        }
        n += 1;
        match n % 4 {
            0 => text.push_str(&format!("Mail jane.doe{n}@example.com today. ")),
            1 => text.push_str(&format!("Schreiben Sie an jürgen{n}@example.org — ✓ 😀. ")),
            2 => text.push_str(&format!("The token is {secret} for now. ")),
            _ => text.push_str("Nothing to see here. "),
        }
    }
    let script = Script {
        content: text
            .chars()
            .collect::<Vec<char>>()
            .chunks(4)
            .map(|c| c.iter().collect())
            .collect(),
        call: None,
    };
    let yaml = "pack: {name: long, version: \"1\"}\npolicies:\n  chain: [pii-detector, secrets-detector, safety-filter]\n\
                policy:\n  pii-detector: {action: redact, strategy: placeholder, stream_mode: window}\n\
                \x20 secrets-detector: {action: redact, strategy: mask, stream_mode: window}\n\
                \x20 safety-filter: {action: block, stream_mode: window}\n";
    let pack = shared(yaml);
    let want = reference(&pack, "hello", &script).await;
    let Ok((content, _, finish)) = want else {
        panic!("the long answer is not blocked");
    };
    assert!(!content.contains("@example"), "reference redacts");
    let body = sse_body(&script);
    let (status, out, handle) = call(
        &pack,
        "hello",
        true,
        "text/event-stream",
        frames(&body, 0, 0),
    )
    .await;
    assert_eq!(status, 200);
    let seen = parse_stream(&out);
    assert!(seen.done);
    assert!(seen.block.is_none(), "not blocked");
    assert_eq!(seen.content, content, "equals the non-streamed content");
    assert_eq!(seen.finish, finish);
    assert!(!seen.content.contains(&secret));
    let stats = handle.lock().stream.clone().expect("stream stats");
    assert!(stats.output_scan_completed);
    assert_eq!(stats.chunks_received as usize, script.content.len() + 2);
}

// ---------------------------------------------------------------------------------------
// Through the real gateway with the mock upstream

const GATEWAY_PACK: &str = r#"
pack: {name: stream-e2e, version: "1.0"}
auth: required
providers:
  - name: upstream
    kind: openai
    base_url: "{UPSTREAM}"
    model: [gpt-4o, fault-cut-stream]
    secret_key_ref: {file: "{KEY_FILE}"}
    timeout_seconds: 5
policies:
  chain: [pii-detector, safety-filter]
policy:
  pii-detector: {action: redact, restore: true}
  safety-filter: {action: block, direction: output}
"#;

async fn gateway_stream(env: &palisade_tests::TestEnv, key: &str, user: &str) -> Seen {
    let body = serde_json::json!({
        "model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": user}],
    });
    let res = palisade_tests::post_json(env.url("/v1/chat/completions"), key, &body)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.unwrap();
    // The audit layer adds an SSE comment with the chain head; drop comments before parsing.
    let text: String = String::from_utf8(bytes.to_vec())
        .unwrap()
        .split_inclusive("\n\n")
        .filter(|e| !e.starts_with(':'))
        .collect();
    let text = text.replace("chatcmpl-mock", "chatcmpl-conf");
    let mut seen = Seen::default();
    for ev in text.split_terminator("\n\n") {
        let data = ev.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            seen.done = true;
            continue;
        }
        let c: ChatChunk = serde_json::from_str(data).unwrap();
        for ch in c.choices {
            if ch.finish_reason.as_deref() == Some("content_filter") {
                seen.block = ch.delta.content.clone();
            } else if let Some(s) = ch.delta.content {
                seen.content.push_str(&s);
            }
            if ch.finish_reason.is_some() {
                seen.finish = ch.finish_reason;
            }
        }
    }
    seen
}

#[tokio::test]
async fn gateway_streams_restore_placeholders_and_block_mid_stream() {
    let env = palisade_tests::TestEnv::start(GATEWAY_PACK).await.unwrap();
    let key = env.key("writer", "writer").unwrap();

    // The mock echoes the (redacted) user message; the client gets the original back.
    let seen = gateway_stream(&env, &key, "mail jane.doe@example.com today").await;
    assert!(seen.done);
    assert_eq!(seen.finish.as_deref(), Some("stop"));
    assert!(seen.block.is_none(), "{seen:?}");
    assert!(
        seen.content.ends_with("mail jane.doe@example.com today"),
        "{:?}",
        seen.content
    );
    let upstream_saw =
        String::from_utf8(env.upstream.last_request_body().unwrap().to_vec()).unwrap();
    assert!(
        !upstream_saw.contains("jane.doe@example.com"),
        "{upstream_saw}"
    );

    // Only the output is checked for safety: the echo turns into a clean mid-stream block.
    let seen = gateway_stream(&env, &key, "Please repeat: I want to die").await;
    assert!(seen.done, "{seen:?}");
    assert_eq!(seen.finish.as_deref(), Some("content_filter"));
    let why = seen.block.unwrap();
    assert!(why.contains("blocked by policy `safety-filter`"), "{why}");
    assert!(!seen.content.contains("want to die"), "{:?}", seen.content);
}
