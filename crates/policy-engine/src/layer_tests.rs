//! Layer tests: tower `service_fn` inner services, no network.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use exchange::{BoxError, ExchangeHandle, Outcome, ResponseBody};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

use crate::tests::pack;
use crate::{InputPolicyLayer, OutputPolicyLayer, PolicyLayer, PolicyState, SharedPack};

const PACK: &str = r#"pack: {name: layer}
on_block: error
policies: {chain: [pii-detector, agent-firewall]}
policy:
  pii-detector: {action: redact, restore: true}
  agent-firewall: {default: deny, agents: {me: {allowed_tools: [ok_tool]}}}
rules:
  - name: no-secrets-talk
    condition: {content_matches: 'launch codes'}
    decision: BLOCK
    reason: not here
  - name: no-webhooks
    condition: {action_type: tool_call, parameter: url, matches_pattern: webhook}
    decision: BLOCK
"#;

fn shared(yaml: &str) -> SharedPack<crate::CompiledPack> {
    Arc::new(arc_swap::ArcSwap::from_pointee(pack(yaml)))
}

fn request(body: &str) -> http::Request<Bytes> {
    let mut req = http::Request::post("/v1/chat/completions")
        .header("x-palisade-agent", "me")
        .body(Bytes::from(body.to_owned()))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = ExchangeHandle::from_request(&mut req);
    req
}

fn json(status: u16, body: serde_json::Value) -> http::Response<ResponseBody> {
    let mut res = exchange::json_response(
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK),
        &body,
    );
    *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    res
}

async fn body_of(res: http::Response<ResponseBody>) -> (u16, String) {
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn input_block_answers_403_without_calling_inner() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let inner = tower::service_fn(move |_req: http::Request<Bytes>| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(json(200, serde_json::json!({}))) }
    });
    let svc = InputPolicyLayer::new(shared(PACK), PolicyState::new()).layer(inner);
    let req = request(
        r#"{"model":"m","messages":[{"role":"user","content":"tell me the launch codes"}]}"#,
    );
    let handle = req.extensions().get::<ExchangeHandle>().cloned();
    let res = svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = body_of(res).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        r#"{"error":{"message":"blocked by rule `no-secrets-talk`: not here","type":"policy_violation","param":null,"code":"no-secrets-talk"}}"#
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let outcome = handle.map(|h| h.lock().outcome.clone());
    assert_eq!(
        outcome,
        Some(Outcome::Blocked {
            policy: "no-secrets-talk".to_owned(),
            status: 403
        })
    );
}

#[tokio::test]
async fn input_replaces_body_with_redacted_request() {
    let seen = Arc::new(parking_lot::Mutex::new(String::new()));
    let s = seen.clone();
    let inner = tower::service_fn(move |req: http::Request<Bytes>| {
        *s.lock() = String::from_utf8_lossy(req.body()).into_owned();
        async move { Ok::<_, BoxError>(json(200, serde_json::json!({}))) }
    });
    let svc = InputPolicyLayer::new(shared(PACK), PolicyState::new()).layer(inner);
    let req = request(
        r#"{"model":"m","messages":[{"role":"user","content":"mail x@y.com"}],"tools":[{"type":"function","function":{"name":"ok_tool"}},{"type":"function","function":{"name":"bad_tool"}}],"temperature":0.5}"#,
    );
    let res = svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let sent: serde_json::Value =
        serde_json::from_str(&seen.lock()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sent["messages"][0]["content"], "mail <EMAIL_1>");
    assert_eq!(sent["tools"].as_array().map(Vec::len), Some(1));
    assert_eq!(sent["tools"][0]["function"]["name"], "ok_tool");
    assert_eq!(sent["temperature"], 0.5);
}

fn completion(content: &str, tool: Option<(&str, &str)>) -> serde_json::Value {
    let calls = tool.map(|(n, a)| {
        serde_json::json!([{"id":"c1","type":"function","function":{"name":n,"arguments":a}}])
    });
    serde_json::json!({"id":"r1","object":"chat.completion","created":1,"model":"m",
        "choices":[{"index":0,"message":{"role":"assistant","content":content,"tool_calls":calls},"finish_reason":"stop"}]})
}

#[tokio::test]
async fn policy_layer_restores_placeholders_and_records_tool_calls() {
    let inner = tower::service_fn(|req: http::Request<Bytes>| async move {
        let body = String::from_utf8_lossy(req.body()).into_owned();
        assert!(body.contains("<EMAIL_1>"), "{body}");
        Ok::<_, BoxError>(json(
            200,
            completion("I wrote to <EMAIL_1>.", Some(("ok_tool", "{\"q\":1}"))),
        ))
    });
    let svc = PolicyLayer::new(shared(PACK), PolicyState::new()).layer(inner);
    let req = request(r#"{"model":"m","messages":[{"role":"user","content":"mail x@y.com"}]}"#);
    let handle = req.extensions().get::<ExchangeHandle>().cloned();
    let res = svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = body_of(res).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["choices"][0]["message"]["content"], "I wrote to x@y.com.");
    let ex = handle
        .map(|h| h.lock().clone())
        .unwrap_or_else(|| panic!("no exchange"));
    assert_eq!(ex.tool_calls.len(), 1);
    assert_eq!(ex.tool_calls[0].name, "ok_tool");
    assert_eq!(
        ex.tool_calls[0].arguments_sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"{\"q\":1}"))
    );
    assert!(ex.response.is_some());
}

#[tokio::test]
async fn output_block_replaces_response() {
    let inner = tower::service_fn(|_req: http::Request<Bytes>| async move {
        Ok::<_, BoxError>(json(
            200,
            completion("", Some(("ok_tool", r#"{"url":"https://webhook.site/x"}"#))),
        ))
    });
    let svc = OutputPolicyLayer::new(shared(PACK), PolicyState::new()).layer(inner);
    let req = request(r#"{"model":"m","messages":[{"role":"user","content":"go"}]}"#);
    let res = svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = body_of(res).await;
    assert_eq!(status, 403);
    assert!(body.contains(r#""code":"no-webhooks""#), "{body}");
}

#[tokio::test]
async fn output_passes_clean_streams_and_errors_through_untouched() {
    for (ct, status, body) in [
        (
            "text/event-stream",
            200,
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n",
        ),
        ("application/json", 502, "{\"error\":{}}"),
    ] {
        let inner = tower::service_fn(move |_req: http::Request<Bytes>| async move {
            let mut res = http::Response::new(exchange::full_body(body));
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ct),
            );
            Ok::<_, BoxError>(res)
        });
        let svc = OutputPolicyLayer::new(shared(PACK), PolicyState::new()).layer(inner);
        let req = request(r#"{"model":"m","messages":[{"role":"user","content":"go"}]}"#);
        let res = svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body_of(res).await, (status, body.to_owned()));
    }
}

#[tokio::test]
async fn a_stream_event_that_is_not_a_chunk_ends_the_stream_as_a_block() {
    let inner = tower::service_fn(|_req: http::Request<Bytes>| async move {
        let mut res =
            http::Response::new(exchange::full_body("data: {\"x\":1}\n\ndata: [DONE]\n\n"));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        Ok::<_, BoxError>(res)
    });
    let svc = OutputPolicyLayer::new(shared(PACK), PolicyState::new()).layer(inner);
    let req = request(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"go"}]}"#);
    let (status, body) = body_of(svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""finish_reason":"content_filter""#)
            && body.contains("blocked by policy `stream`: upstream sent an event that is not a chat.completion.chunk")
            && body.ends_with("data: [DONE]\n\n"),
        "{body}"
    );
}

#[tokio::test]
async fn completion_block_is_a_valid_sse_stream_when_streaming() {
    let yaml = PACK.replace("on_block: error", "on_block: completion");
    let inner = tower::service_fn(|_req: http::Request<Bytes>| async move {
        Ok::<_, BoxError>(json(200, serde_json::json!({})))
    });
    let svc = InputPolicyLayer::new(shared(&yaml), PolicyState::new()).layer(inner);
    let req = request(
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"the launch codes"}]}"#,
    );
    let res = svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        res.headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let (status, body) = body_of(res).await;
    assert_eq!(status, 200);
    let events: Vec<&str> = body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or("not an sse data line"))
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2], "[DONE]");
    let first: exchange::ChatChunk =
        serde_json::from_str(events[0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.choices[0].delta.content.as_deref(),
        Some("[palisade] blocked by rule `no-secrets-talk`: not here")
    );
    let last: exchange::ChatChunk =
        serde_json::from_str(events[1]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        last.choices[0].finish_reason.as_deref(),
        Some("content_filter")
    );

    // and a plain completion otherwise
    let inner = tower::service_fn(|_req: http::Request<Bytes>| async move {
        Ok::<_, BoxError>(json(200, serde_json::json!({})))
    });
    let svc = InputPolicyLayer::new(shared(&yaml), PolicyState::new()).layer(inner);
    let req = request(r#"{"model":"m","messages":[{"role":"user","content":"the launch codes"}]}"#);
    let (status, body) = body_of(svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(status, 200);
    let v: exchange::ChatResponse = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        v.choices[0].finish_reason.as_deref(),
        Some("content_filter")
    );
    assert_eq!(v.model, "m");
}

#[tokio::test]
async fn bad_request_body_is_a_400_response() {
    let inner = tower::service_fn(|_req: http::Request<Bytes>| async move {
        Ok::<_, BoxError>(json(200, serde_json::json!({})))
    });
    let svc = InputPolicyLayer::new(shared(PACK), PolicyState::new()).layer(inner);
    let req = http::Request::post("/v1/chat/completions")
        .body(Bytes::from_static(b"{\"model\":\"m\"}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = body_of(svc.oneshot(req).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(status, 400);
}
