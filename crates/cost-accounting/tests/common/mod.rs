#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use exchange::{
    BoxError, Exchange, ExchangeHandle, ResponseBody, UsdAmount, full_body, json_response,
};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use policy_engine::{BudgetSpec, CostSettings, Period, RateLimitSpec, Scope, ScopeMatch};
use serde_json::{Value, json};

pub fn usd(s: &str) -> UsdAmount {
    UsdAmount::parse(s).unwrap()
}

pub fn settings() -> CostSettings {
    CostSettings {
        default_max_tokens: 4096,
        ..CostSettings::default()
    }
}

pub fn budget(scope: Scope, matcher: &str, limit: &str, period: Period) -> BudgetSpec {
    BudgetSpec {
        scope,
        matcher: if matcher == "*" {
            ScopeMatch::Each
        } else {
            ScopeMatch::Name(matcher.to_owned())
        },
        limit: usd(limit),
        period,
        soft_limit: None,
    }
}

pub fn rate_limit(
    rpm: Option<u32>,
    tpm: Option<u64>,
    max_concurrent: Option<u32>,
) -> RateLimitSpec {
    RateLimitSpec {
        scope: Scope::Agent,
        matcher: ScopeMatch::Each,
        requests_per_minute: rpm,
        tokens_per_minute: tpm,
        max_concurrent,
    }
}

/// "hello world" to `mock` with max_tokens 100: the prompt estimate is 9 tokens
/// (3 priming + 3 per message + 1 role + 2 text), so the worst case is
/// 9 × 1e-6 + 100 × 2e-6 = 0.000209 USD.
pub const WORST: &str = "0.000209";

pub fn chat_body(stream: bool, include_usage: Option<bool>) -> Value {
    let mut body = json!({
        "model": "mock",
        "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": 100,
    });
    if stream {
        body["stream"] = json!(true);
    }
    if let Some(u) = include_usage {
        body["stream_options"] = json!({"include_usage": u});
    }
    body
}

/// A request with its exchange handle (so the test can read the exchange afterwards).
pub fn request(
    agent: &str,
    conversation: &str,
    body: &Value,
) -> (http::Request<Bytes>, ExchangeHandle) {
    let bytes = Bytes::from(body.to_string());
    let mut ex = Exchange::parse(bytes.clone()).unwrap();
    ex.identity.agent = Some(agent.to_owned());
    ex.conversation_id = conversation.to_owned();
    let handle = ExchangeHandle::new(ex);
    let mut req = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(bytes)
        .unwrap();
    req.extensions_mut().insert(handle.clone());
    (req, handle)
}

pub const CONTENT: [&str; 3] = ["Hel", "lo the", "re!"];

pub fn completion_json(usage: Option<(u64, u64)>) -> Value {
    let mut v = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": CONTENT.concat()}, "finish_reason": "stop"}],
    });
    if let Some((p, c)) = usage {
        v["usage"] = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    }
    v
}

pub fn json_answer(usage: Option<(u64, u64)>) -> http::Response<ResponseBody> {
    json_response(http::StatusCode::OK, &completion_json(usage))
}

pub fn sse_text(usage: Option<(u64, u64)>) -> String {
    let mut s = String::new();
    for (i, part) in CONTENT.iter().enumerate() {
        let finish = if i + 1 == CONTENT.len() {
            json!("stop")
        } else {
            Value::Null
        };
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "mock",
            "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": finish}]});
        s.push_str(&format!("data: {chunk}\n\n"));
    }
    if let Some((p, c)) = usage {
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "mock",
            "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}});
        s.push_str(&format!("data: {chunk}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

/// An SSE answer delivered in small pieces (events split across frames).
pub fn sse_answer(usage: Option<(u64, u64)>) -> http::Response<ResponseBody> {
    let text = sse_text(usage);
    let pieces: Vec<Bytes> = text
        .as_bytes()
        .chunks(17)
        .map(Bytes::copy_from_slice)
        .collect();
    let body = Pieces(pieces.into_iter().rev().collect());
    http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(body.boxed_unsync())
        .unwrap()
}

struct Pieces(Vec<Bytes>);

impl Body for Pieces {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop().map(|b| Ok(Frame::data(b))))
    }
}

/// A body fed by a channel: frames arrive when the test sends them.
pub struct ChannelBody(pub tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub async fn body_string(res: http::Response<ResponseBody>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub fn empty_ok() -> http::Response<ResponseBody> {
    http::Response::new(full_body(Bytes::new()))
}
