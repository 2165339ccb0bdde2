//! The built-in deterministic `mock` provider: answers without any network, so demos and
//! tests need no upstream.
//!
//! # The exact rules
//!
//! * **Content.** `Mock reply from <model> to <name>: <text>` where `<model>` is the request's
//!   `model`, `<name>` is the last message's `name` (or `user` when it has none) and `<text>`
//!   is the first 60 characters (Unicode scalar values) of the last message's text.
//! * **Tool calls.** When the request has a non-empty `tools` list, `tool_choice` is not
//!   `"none"`, and the last message is not a tool result (`role: tool` or `function`), the
//!   answer is one call (`id` `call_mock_0`, `finish_reason: tool_calls`, `content: null`) to
//!   the tool named by `tool_choice` (`{"type":"function","function":{"name":…}}`) or else to
//!   the first tool. Its arguments are a JSON object holding exactly the schema's `required`
//!   properties (serialized with keys in alphabetical order), each synthesised from its
//!   property schema: `default`
//!   if given, else the first `enum` value, else by `type`: `string` → `"mock-<property>"`,
//!   `integer` → `minimum` or `1`, `number` → `minimum` or `1.0`, `boolean` → `true`,
//!   `array` → `[]`, `object` → the same rule applied to its own `required` properties,
//!   `null` → `null`; a missing or unknown `type` → `"mock-<property>"`.
//!   Two top-level string properties (no `default`, no `enum`) are filled from the
//!   conversation instead, so tests can play a model that follows what it read: `url` ←
//!   the last `http://` / `https://` URL in the messages' texts (up to the first whitespace,
//!   quote or `<>()[]`, trailing `.,;:!?` dropped), and `body` ← the text of the last
//!   non-system message; each keeps its `mock-<property>` value when there is none.
//! * **Usage.** Tokens are whitespace-separated words: `prompt_tokens` is the sum of the
//!   words of every message's text plus the words of every tool call's name and arguments in
//!   the messages; `completion_tokens` is the words of the answer's content, or for a tool
//!   call the words of its name plus the words of its arguments string.
//! * **Streaming.** `data: <chunk>\n\n` events: first a chunk with `role: assistant` and empty
//!   content; then the content in deltas of at most three words each (concatenated they give
//!   the content exactly) — or, for a tool call, one delta with id, type, name and empty
//!   arguments followed by the arguments in two halves; then a chunk with an empty delta and
//!   the `finish_reason`; then, when `stream_options.include_usage` is true, a chunk with no
//!   choices and the usage; then `data: [DONE]\n\n`.
//! * **Ids.** `id` is `chatcmpl-mock-` and 16 hex digits of an FNV-1a hash of the request's
//!   model and messages; `created` is the fixed [`MOCK_CREATED`]; `system_fingerprint` is
//!   `fp_mock`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use exchange::{
    BoxError, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, ExchangeHandle,
    FunctionCall, FunctionCallDelta, Message, Outcome, ResponseBody, Role, ToolCall, ToolCallDelta,
    Usage,
};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

/// The `created` timestamp of every mock answer (fixed, so answers are reproducible).
pub const MOCK_CREATED: u64 = 1_700_000_000;

/// The answer the mock gives: text, or one tool call.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Text(String),
    Call { name: String, arguments: String },
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn completion_id(req: &ChatRequest) -> String {
    let mut h = fnv1a(req.model.as_bytes(), 0xcbf2_9ce4_8422_2325);
    for m in &req.messages {
        h = fnv1a(m.role.as_str().as_bytes(), h);
        h = fnv1a(m.text().as_bytes(), h);
        h = fnv1a(b"\x00", h);
    }
    format!("chatcmpl-mock-{h:016x}")
}

fn prompt_tokens(req: &ChatRequest) -> u64 {
    req.messages
        .iter()
        .map(|m| {
            let calls: u64 = m
                .tool_calls
                .iter()
                .flatten()
                .map(|c| words(&c.function.name) + words(&c.function.arguments))
                .sum();
            words(&m.text()) + calls
        })
        .sum()
}

/// The tool the mock should call, if any.
fn tool_to_call(req: &ChatRequest) -> Option<&exchange::Tool> {
    let tools = req.tools.as_ref().filter(|t| !t.is_empty())?;
    let last = req.messages.last()?;
    if matches!(last.role, Role::Tool | Role::Function) {
        return None;
    }
    match &req.tool_choice {
        Some(Value::String(s)) if s == "none" => None,
        Some(Value::Object(o)) => {
            let named = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match named {
                Some(n) => tools
                    .iter()
                    .find(|t| t.function.name == n)
                    .or(tools.first()),
                None => tools.first(),
            }
        }
        _ => tools.first(),
    }
}

/// Synthesises a value for property `name` from its JSON schema (see the module docs).
fn synthesise(name: &str, schema: &Value) -> Value {
    if let Some(d) = schema.get("default") {
        return d.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return first.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(s)) => s.as_str(),
        // `type: ["string", "null"]`: the first non-null type.
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "",
    };
    match ty {
        "integer" => schema
            .get("minimum")
            .and_then(Value::as_i64)
            .map_or(Value::from(1), Value::from),
        "number" => schema
            .get("minimum")
            .and_then(Value::as_f64)
            .map_or(Value::from(1.0), Value::from),
        "boolean" => Value::Bool(true),
        "array" => Value::Array(Vec::new()),
        "object" => Value::Object(synthesise_object(schema)),
        "null" => Value::Null,
        _ => Value::String(format!("mock-{name}")),
    }
}

fn synthesise_object(schema: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let props = schema.get("properties");
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let prop_schema = props.and_then(|p| p.get(req)).unwrap_or(&Value::Null);
        out.insert(req.to_owned(), synthesise(req, prop_schema));
    }
    out
}

/// The arguments the mock sends when calling a tool with this parameters schema.
pub fn mock_tool_arguments(parameters: Option<&Value>) -> String {
    let obj = parameters.map(synthesise_object).unwrap_or_default();
    Value::Object(obj).to_string()
}

/// The last `http(s)://` URL in the messages' texts.
fn last_url(req: &ChatRequest) -> Option<String> {
    let mut found = None;
    for m in &req.messages {
        let text = m.text();
        let mut rest: &str = &text;
        while let Some(i) = rest
            .find("http://")
            .into_iter()
            .chain(rest.find("https://"))
            .min()
        {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| c.is_whitespace() || "\"'<>()[]`".contains(c))
                .unwrap_or(tail.len());
            let url = tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
            if url.len() > "https://".len() {
                found = Some(url.to_owned());
            }
            rest = &tail[end.max(1)..];
        }
    }
    found
}

/// The conversation-filled arguments (`url`, `body`; see the module docs).
fn conversation_arguments(req: &ChatRequest, parameters: Option<&Value>) -> String {
    let mut obj = parameters.map(synthesise_object).unwrap_or_default();
    let props = parameters.and_then(|p| p.get("properties"));
    let plain_string = |name: &str| {
        props.and_then(|p| p.get(name)).is_some_and(|s| {
            s.get("default").is_none()
                && s.get("enum").is_none()
                && matches!(s.get("type"), None | Some(Value::String(_)))
                && s.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "string")
        })
    };
    if obj.contains_key("url") && plain_string("url") {
        if let Some(u) = last_url(req) {
            obj.insert("url".to_owned(), Value::String(u));
        }
    }
    if obj.contains_key("body") && plain_string("body") {
        let last = req
            .messages
            .iter()
            .rev()
            .filter(|m| !matches!(m.role, Role::System | Role::Developer))
            .map(|m| m.text().into_owned())
            .find(|t| !t.is_empty());
        if let Some(b) = last {
            obj.insert("body".to_owned(), Value::String(b));
        }
    }
    Value::Object(obj).to_string()
}

fn answer(req: &ChatRequest) -> Answer {
    if let Some(tool) = tool_to_call(req) {
        return Answer::Call {
            name: tool.function.name.clone(),
            arguments: conversation_arguments(req, tool.function.parameters.as_ref()),
        };
    }
    let (name, text) = match req.messages.last() {
        Some(m) => (
            m.name.clone().unwrap_or_else(|| "user".to_owned()),
            m.text().chars().take(60).collect::<String>(),
        ),
        None => ("user".to_owned(), String::new()),
    };
    Answer::Text(format!("Mock reply from {} to {name}: {text}", req.model))
}

fn usage(req: &ChatRequest, answer: &Answer) -> Usage {
    let prompt = prompt_tokens(req);
    let completion = match answer {
        Answer::Text(t) => words(t),
        Answer::Call { name, arguments } => words(name) + words(arguments),
    };
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        ..Usage::default()
    }
}

fn fingerprint() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("system_fingerprint".to_owned(), Value::from("fp_mock"));
    m
}

/// The mock's complete (non-streamed) answer to `req`.
pub fn mock_response(req: &ChatRequest) -> ChatResponse {
    let ans = answer(req);
    let usage = usage(req, &ans);
    let (message, finish) = match ans {
        Answer::Text(t) => (Message::text_message(Role::Assistant, t), "stop"),
        Answer::Call { name, arguments } => (
            Message {
                role: Role::Assistant,
                content: None,
                name: None,
                tool_calls: Some(vec![ToolCall {
                    id: "call_mock_0".to_owned(),
                    kind: "function".to_owned(),
                    function: FunctionCall { name, arguments },
                }]),
                tool_call_id: None,
                extra: Map::new(),
            },
            "tool_calls",
        ),
    };
    ChatResponse {
        id: completion_id(req),
        object: "chat.completion".to_owned(),
        created: MOCK_CREATED,
        model: req.model.clone(),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish.to_owned()),
            extra: Map::new(),
        }],
        usage: Some(usage),
        extra: fingerprint(),
    }
}

/// Splits `text` into pieces of at most three words; the pieces concatenate to `text`.
fn split_words(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut count = 0;
    let mut in_word = false;
    for ch in text.chars() {
        let ws = ch.is_whitespace();
        if !ws && !in_word {
            if count == 3 {
                pieces.push(std::mem::take(&mut cur));
                count = 0;
            }
            count += 1;
        }
        in_word = !ws;
        cur.push(ch);
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// The chunks of the mock's streamed answer to `req` (without the final `[DONE]`).
pub fn mock_stream_chunks(req: &ChatRequest) -> Vec<ChatChunk> {
    let ans = answer(req);
    let usage = usage(req, &ans);
    let id = completion_id(req);
    let chunk = |delta: Delta, finish: Option<&str>| ChatChunk {
        id: id.clone(),
        object: "chat.completion.chunk".to_owned(),
        created: MOCK_CREATED,
        model: req.model.clone(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_owned),
            extra: Map::new(),
        }],
        usage: None,
        extra: fingerprint(),
    };
    let mut out = vec![chunk(
        Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        },
        None,
    )];
    let finish = match ans {
        Answer::Text(t) => {
            for piece in split_words(&t) {
                out.push(chunk(
                    Delta {
                        content: Some(piece),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            "stop"
        }
        Answer::Call { name, arguments } => {
            out.push(chunk(
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: 0,
                        id: Some("call_mock_0".to_owned()),
                        kind: Some("function".to_owned()),
                        function: Some(FunctionCallDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        }),
                    }]),
                    ..Delta::default()
                },
                None,
            ));
            let mut mid = arguments.len() / 2;
            while !arguments.is_char_boundary(mid) {
                mid += 1;
            }
            let (a, b) = arguments.split_at(mid);
            for part in [a, b] {
                out.push(chunk(
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: 0,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(part.to_owned()),
                            }),
                            ..ToolCallDelta::default()
                        }]),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            "tool_calls"
        }
    };
    out.push(chunk(Delta::default(), Some(finish)));
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if include_usage {
        out.push(ChatChunk {
            id,
            object: "chat.completion.chunk".to_owned(),
            created: MOCK_CREATED,
            model: req.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
            extra: fingerprint(),
        });
    }
    out
}

/// One SSE event: `data: <json>\n\n`.
pub fn sse_event(chunk: &ChatChunk) -> Bytes {
    let json = serde_json::to_string(chunk).unwrap_or_default();
    Bytes::from(format!("data: {json}\n\n"))
}

/// The SSE terminator `data: [DONE]\n\n`.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// The SSE events of the mock's streamed answer, `[DONE]` included, one `Bytes` per event.
pub fn mock_sse_events(req: &ChatRequest) -> Vec<Bytes> {
    let mut events: Vec<Bytes> = mock_stream_chunks(req).iter().map(sse_event).collect();
    events.push(Bytes::from_static(SSE_DONE));
    events
}

/// A response body that yields each event as its own frame.
pub(crate) fn frames_body(events: Vec<Bytes>) -> ResponseBody {
    let stream = futures_util::stream::iter(
        events
            .into_iter()
            .map(|b| Ok::<_, Infallible>(http_body::Frame::data(b))),
    );
    http_body_util::StreamBody::new(stream)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The mock's HTTP answer to `req`: JSON, or SSE when `stream: true`.
pub fn mock_http_response(req: &ChatRequest) -> http::Response<ResponseBody> {
    if req.is_stream() {
        let mut res = http::Response::new(frames_body(mock_sse_events(req)));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        res.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        res
    } else {
        exchange::json_response(http::StatusCode::OK, &mock_response(req))
    }
}

/// The built-in mock provider as a tower `Service` (contract in the crate docs). It records
/// `provider`, `upstream_latency` and `Outcome::Forwarded { status: 200 }` on the exchange.
#[derive(Debug, Clone)]
pub struct MockProvider {
    name: Arc<str>,
}

impl MockProvider {
    /// A mock provider recorded under `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        MockProvider { name: name.into() }
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Answers one request (what `call` does, without the future).
    pub fn respond(&self, req: &mut http::Request<Bytes>) -> http::Response<ResponseBody> {
        let started = Instant::now();
        let handle = match ExchangeHandle::from_request(req) {
            Ok(h) => h,
            Err(e) => return e.into_response(),
        };
        // The exchange's request is what would be sent upstream (edited by policies or not).
        let res = mock_http_response(&handle.lock().request);
        let mut ex = handle.lock();
        ex.provider = Some(self.name.to_string());
        ex.upstream_latency = Some(started.elapsed());
        ex.outcome = Outcome::Forwarded {
            status: res.status().as_u16(),
        };
        res
    }
}

impl tower::Service<http::Request<Bytes>> for MockProvider {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(self.respond(&mut req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn weather_tools() -> serde_json::Value {
        serde_json::json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 3},
                    "detailed": {"type": "boolean"},
                    "lang": {"type": "string", "default": "en"},
                    "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "optional": {"type": "string"}
                },
                "required": ["city", "unit", "days", "detailed", "lang", "where", "tags"]
            }}},
            {"type": "function", "function": {"name": "send_email", "parameters": {
                "type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]
            }}}
        ])
    }

    #[test]
    fn text_answer_quotes_sender_and_first_60_chars() {
        let long = "x".repeat(70);
        let r = req(serde_json::json!({"model": "m1", "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": long}
        ]}));
        let res = mock_response(&r);
        assert_eq!(
            res.choices[0].message.text(),
            format!("Mock reply from m1 to user: {}", "x".repeat(60))
        );
        assert_eq!(res.choices[0].finish_reason.as_deref(), Some("stop"));
        let usage = res.usage.clone().unwrap();
        // prompt: "be nice" (2) + one 70-char word (1); completion: 7 words.
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (3, 7, 10)
        );
        assert_eq!(res.created, MOCK_CREATED);
        assert!(res.id.starts_with("chatcmpl-mock-"));
        assert_eq!(mock_response(&r), res, "deterministic");
    }

    #[test]
    fn tool_call_arguments_come_from_required_properties() {
        let r = req(
            serde_json::json!({"model": "m", "tools": weather_tools(), "messages": [
                {"role": "user", "content": "weather in Paris?"}
            ]}),
        );
        let res = mock_response(&r);
        let msg = &res.choices[0].message;
        assert_eq!(msg.content, None);
        let call = &msg.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.id, "call_mock_0");
        assert_eq!(call.function.name, "get_weather");
        assert_eq!(
            call.function.arguments,
            r#"{"city":"mock-city","days":3,"detailed":true,"lang":"en","tags":[],"unit":"celsius","where":{"lat":1.0}}"#
        );
        assert_eq!(res.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(res.usage.unwrap().completion_tokens, 2);
    }

    #[test]
    fn url_and_body_are_filled_from_the_conversation() {
        let tools = serde_json::json!([{"type": "function", "function": {"name": "post_webhook",
            "parameters": {"type": "object", "required": ["body", "url", "channel"], "properties": {
                "url": {"type": "string"}, "body": {"type": "string"}, "channel": {"type": "string"}}}}}]);
        let r = req(
            serde_json::json!({"model": "m", "tools": tools, "messages": [
                {"role": "system", "content": "see https://system.example/ignored"},
                {"role": "user", "content": "send it to https://a.example/x, or (https://b.example/in)."},
                {"role": "user", "name": "researcher", "content": "record: jane"}
            ]}),
        );
        let call = &mock_response(&r).choices[0]
            .message
            .tool_calls
            .clone()
            .unwrap()[0];
        assert_eq!(
            call.function.arguments,
            r#"{"body":"record: jane","channel":"mock-channel","url":"https://b.example/in"}"#
        );
        let none = req(
            serde_json::json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": ""}]}),
        );
        let call = &mock_response(&none).choices[0]
            .message
            .tool_calls
            .clone()
            .unwrap()[0];
        assert_eq!(
            call.function.arguments,
            r#"{"body":"mock-body","channel":"mock-channel","url":"mock-url"}"#
        );
    }

    #[test]
    fn tool_choice_names_the_tool_and_none_disables_calls() {
        let named = req(serde_json::json!({"model": "m", "tools": weather_tools(),
            "tool_choice": {"type": "function", "function": {"name": "send_email"}},
            "messages": [{"role": "user", "content": "mail bob"}]}));
        let res = mock_response(&named);
        let call = &res.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "send_email");
        assert_eq!(call.function.arguments, r#"{"to":"mock-to"}"#);

        let none = req(serde_json::json!({"model": "m", "tools": weather_tools(),
            "tool_choice": "none", "messages": [{"role": "user", "content": "hi"}]}));
        assert!(mock_response(&none).choices[0].message.tool_calls.is_none());
    }

    #[test]
    fn after_a_tool_result_the_answer_is_text() {
        let r = req(
            serde_json::json!({"model": "m", "tools": weather_tools(), "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_mock_0", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_mock_0", "content": "sunny, 21C"}
            ]}),
        );
        let res = mock_response(&r);
        assert_eq!(
            res.choices[0].message.text(),
            "Mock reply from m to user: sunny, 21C"
        );
        // 1 + (get_weather 1 + arguments 1) + 2
        assert_eq!(res.usage.unwrap().prompt_tokens, 5);
    }

    #[test]
    fn stream_has_role_deltas_finish_usage_and_done() {
        let r = req(serde_json::json!({"model": "m", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "name": "critic", "content": "one two three four"}]}));
        let chunks = mock_stream_chunks(&r);
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        let text: String = chunks
            .iter()
            .filter_map(|c| c.choices.first())
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Mock reply from m to critic: one two three four");
        let deltas = chunks
            .iter()
            .filter(|c| {
                c.choices
                    .first()
                    .and_then(|c| c.delta.content.as_deref())
                    .is_some_and(|s| !s.is_empty())
            })
            .count();
        assert_eq!(deltas, 4); // 10 words in threes
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish.choices[0].finish_reason.as_deref(), Some("stop"));
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage.as_ref().unwrap().completion_tokens, 10);
        let events = mock_sse_events(&r);
        assert_eq!(events.len(), chunks.len() + 1);
        assert_eq!(events.last().unwrap().as_ref(), SSE_DONE);
        assert!(events[0].starts_with(b"data: {") && events[0].ends_with(b"\n\n"));
    }

    #[test]
    fn stream_without_include_usage_has_no_usage_chunk() {
        let r = req(serde_json::json!({"model": "m", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}));
        let chunks = mock_stream_chunks(&r);
        assert!(
            chunks
                .iter()
                .all(|c| c.usage.is_none() && !c.choices.is_empty())
        );
    }

    #[test]
    fn streamed_tool_call_reassembles() {
        let r = req(
            serde_json::json!({"model": "m", "stream": true, "tools": weather_tools(),
            "messages": [{"role": "user", "content": "weather?"}]}),
        );
        let chunks = mock_stream_chunks(&r);
        let mut name = String::new();
        let mut args = String::new();
        for c in &chunks {
            for tc in c
                .choices
                .iter()
                .flat_map(|c| c.delta.tool_calls.iter().flatten())
            {
                if let Some(f) = &tc.function {
                    name.push_str(f.name.as_deref().unwrap_or(""));
                    args.push_str(f.arguments.as_deref().unwrap_or(""));
                }
            }
        }
        assert_eq!(name, "get_weather");
        let full = mock_response(&req(
            serde_json::json!({"model": "m", "tools": weather_tools(),
            "messages": [{"role": "user", "content": "weather?"}]}),
        ));
        assert_eq!(
            args,
            full.choices[0].message.tool_calls.as_ref().unwrap()[0]
                .function
                .arguments
        );
        assert_eq!(
            chunks.last().unwrap().choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
    }

    #[test]
    fn split_words_keeps_every_character() {
        for text in ["", "a", "a b c d", "  lead and trail  ", "x\ny\tz w v"] {
            assert_eq!(split_words(text).concat(), text);
        }
        assert_eq!(split_words("a b c d e"), vec!["a b c ", "d e"]);
    }

    #[tokio::test]
    async fn mock_provider_service_records_the_exchange() {
        use tower::ServiceExt;
        let mut req = http::Request::new(Bytes::from_static(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        ));
        let handle = ExchangeHandle::from_request(&mut req).unwrap();
        let res = MockProvider::new("openai").oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: ChatResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v.choices[0].message.text(),
            "Mock reply from gpt-4o to user: hi"
        );
        let ex = handle.lock();
        assert_eq!(ex.provider.as_deref(), Some("openai"));
        assert_eq!(ex.outcome, Outcome::Forwarded { status: 200 });
    }
}
