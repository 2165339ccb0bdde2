use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{ApiError, ChatRequest, ChatResponse, Decision, Identity, Verdict};

/// What kind of call an exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// `POST /v1/chat/completions`.
    #[default]
    ChatCompletion,
    /// `POST /v1/enforce`: a tool asks before it runs.
    ToolEnforce,
}

/// A sender → recipient edge between agents in a turn (from messages' `name` fields).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Edge {
    /// The agent that wrote the message.
    pub from: String,
    /// The agent the message was delivered to (the caller of this turn).
    pub to: String,
}

/// Token usage of an exchange, as the gateway records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached prompt tokens (subset of prompt tokens).
    pub cached_tokens: u64,
    /// True when counted by the gateway's tokenizer because the provider gave none.
    pub estimated: bool,
}

/// A tool call in the response, as recorded: name and a digest of the arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// Tool name.
    pub name: String,
    /// Hex SHA-256 of the arguments string.
    pub arguments_sha256: String,
}

/// What became of the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Not finished yet.
    #[default]
    Pending,
    /// Forwarded upstream and answered.
    Forwarded {
        /// Upstream status.
        status: u16,
    },
    /// Blocked by a policy (answered by the gateway).
    Blocked {
        /// The policy or rule that blocked.
        policy: String,
        /// Status sent to the client (403, or 200 for a completion-style block).
        status: u16,
    },
    /// Refused before policy evaluation (auth, bad request, budget, rate limit).
    Rejected {
        /// Status sent to the client.
        status: u16,
        /// Error code.
        code: String,
    },
    /// The upstream failed (refused, reset, 5xx, timeout).
    UpstreamError {
        /// Status sent to the client (502/504).
        status: u16,
        /// Why.
        reason: String,
    },
    /// The client went away before the answer was complete.
    ClientDisconnected,
}

/// Streaming statistics recorded for `stream: true` exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StreamStats {
    /// SSE events received from upstream.
    pub chunks_received: u64,
    /// Bytes released to the client.
    pub bytes_released: u64,
    /// Bytes released before the output verdict covering them (0 under `hold`).
    pub bytes_released_before_verdict: u64,
    /// Whether the output scan saw the whole response.
    pub output_scan_completed: bool,
    /// Whether the stream ended with `[DONE]` from upstream.
    pub completed: bool,
}

/// The context of one exchange. Lives behind an [`ExchangeHandle`] in the request
/// extensions; every layer adds to it, the audit layer records it once at the end.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Event id (UUID v7, time-ordered).
    pub id: uuid::Uuid,
    /// Wall-clock receive time.
    pub received_at: SystemTime,
    /// Monotonic start, for latency.
    pub started: Instant,
    /// Kind of call.
    pub kind: RequestKind,
    /// Caller.
    pub identity: Identity,
    /// Conversation id (header or fingerprint of the opening messages).
    pub conversation_id: String,
    /// The parsed request (possibly edited by policies).
    pub request: ChatRequest,
    /// The request bytes as received.
    pub original_body: Bytes,
    /// True once a policy changed `request`: the provider re-serializes it.
    pub request_modified: bool,
    /// Agents that wrote messages in this request (from `name` fields), in order, deduplicated.
    pub senders: Vec<String>,
    /// Sender → recipient edges.
    pub edges: Vec<Edge>,
    /// Provider that served (or would have served) the call.
    pub provider: Option<String>,
    /// Every policy's verdict, in evaluation order.
    pub verdicts: Vec<Verdict>,
    /// Token usage.
    pub usage: Option<TokenUsage>,
    /// Cost in USD as an exact decimal string (e.g. `"0.000125"`); `None` when not computed.
    pub cost_usd: Option<String>,
    /// True when the model has no known price (cost unknown, never silently zero).
    pub cost_unknown: bool,
    /// The final response (non-streamed, or assembled from the stream) after output policies.
    pub response: Option<ChatResponse>,
    /// Tool calls in the response.
    pub tool_calls: Vec<ToolCallRecord>,
    /// What became of the exchange.
    pub outcome: Outcome,
    /// Upstream latency (time to response headers, or to the end of a non-streamed body).
    pub upstream_latency: Option<Duration>,
    /// Total latency, set by the audit layer.
    pub total_latency: Option<Duration>,
    /// Streaming statistics.
    pub stream: Option<StreamStats>,
    /// Metadata attached by `audit-logger` (tags, captured fields).
    pub metadata: BTreeMap<String, String>,
    /// Request headers captured for `capture_fields: [header:NAME]` (names lower-case).
    pub captured_headers: BTreeMap<String, String>,
    /// Verdicts of the shadow (candidate) pack, evaluated log-only beside the active one.
    pub shadow_verdicts: Vec<Verdict>,
    /// The human approval this turn waited for, if any.
    pub approval: Option<ApprovalRecord>,
}

/// A human approval decision recorded on the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Approval request id.
    pub id: String,
    /// The rule or policy that asked for approval.
    pub rule: String,
    /// `approved`, `denied`, `timed_out`, or `pending` (non-holding mode answered at once).
    pub status: String,
    /// Who decided (from the admin API / CLI), if anyone.
    pub approver: Option<String>,
    /// Milliseconds between the request and the decision.
    pub waited_ms: u64,
}

impl Exchange {
    /// A new exchange for a parsed request.
    pub fn new(request: ChatRequest, original_body: Bytes) -> Self {
        Exchange {
            id: uuid::Uuid::now_v7(),
            received_at: SystemTime::now(),
            started: Instant::now(),
            kind: RequestKind::ChatCompletion,
            identity: Identity::default(),
            conversation_id: String::new(),
            request,
            original_body,
            request_modified: false,
            senders: Vec::new(),
            edges: Vec::new(),
            provider: None,
            verdicts: Vec::new(),
            usage: None,
            cost_usd: None,
            cost_unknown: false,
            response: None,
            tool_calls: Vec::new(),
            outcome: Outcome::Pending,
            upstream_latency: None,
            total_latency: None,
            stream: None,
            metadata: BTreeMap::new(),
            captured_headers: BTreeMap::new(),
            shadow_verdicts: Vec::new(),
            approval: None,
        }
    }

    /// Parses a request body into an exchange; the error names the field at fault.
    pub fn parse(body: Bytes) -> Result<Self, ApiError> {
        let request = parse_chat_request(&body)?;
        Ok(Exchange::new(request, body))
    }

    /// The most severe decision so far (ALLOW when there is none).
    pub fn decision(&self) -> Decision {
        self.verdicts
            .iter()
            .map(|v| v.decision)
            .max()
            .unwrap_or(Decision::Allow)
    }

    /// The verdict that decided (first of the most severe).
    pub fn deciding_verdict(&self) -> Option<&Verdict> {
        let d = self.decision();
        self.verdicts
            .iter()
            .find(|v| v.decision == d && d != Decision::Allow)
    }

    /// The body to send upstream: the original bytes, or the edited request re-serialized.
    pub fn upstream_body(&self) -> Result<Bytes, serde_json::Error> {
        if self.request_modified {
            serde_json::to_vec(&self.request).map(Bytes::from)
        } else {
            Ok(self.original_body.clone())
        }
    }
}

/// Parses a chat-completions body, with an OpenAI-style 400 naming the field at fault.
///
/// One pass straight into [`ChatRequest`] on the hot path; only a body that fails (or has
/// no messages) is parsed again as a `serde_json::Value` to find the field at fault.
pub(crate) fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    if let Ok(req) = serde_json::from_slice::<ChatRequest>(body) {
        if !req.messages.is_empty() {
            return Ok(req);
        }
    }
    diagnose_chat_request(body)
}

/// The slow path of [`parse_chat_request`]: the same result, with the error naming the
/// field at fault.
fn diagnose_chat_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "request body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("request body must be a JSON object"))?;
    match obj.get("model") {
        None => {
            return Err(ApiError::bad_request("missing required field `model`").with_param("model"));
        }
        Some(serde_json::Value::String(_)) => {}
        Some(_) => {
            return Err(ApiError::bad_request("field `model` must be a string").with_param("model"));
        }
    }
    match obj.get("messages") {
        None => {
            return Err(
                ApiError::bad_request("missing required field `messages`").with_param("messages")
            );
        }
        Some(serde_json::Value::Array(a)) if a.is_empty() => {
            return Err(
                ApiError::bad_request("field `messages` must not be empty").with_param("messages")
            );
        }
        Some(serde_json::Value::Array(_)) => {}
        Some(_) => {
            return Err(
                ApiError::bad_request("field `messages` must be an array of messages")
                    .with_param("messages"),
            );
        }
    }
    let whole_error = match serde_json::from_value::<ChatRequest>(value.clone()) {
        Ok(req) => return Ok(req),
        Err(e) => e,
    };
    // Only on the error path: find the element at fault so the message names it.
    if let Some(serde_json::Value::Array(msgs)) = obj.get("messages") {
        for (i, m) in msgs.iter().enumerate() {
            if let Err(e) = serde_json::from_value::<crate::Message>(m.clone()) {
                return Err(ApiError::bad_request(format!(
                    "invalid message at `messages[{i}]`: {e}"
                ))
                .with_param(format!("messages[{i}]")));
            }
        }
    }
    if let Some(serde_json::Value::Array(tools)) = obj.get("tools") {
        for (i, t) in tools.iter().enumerate() {
            if let Err(e) = serde_json::from_value::<crate::Tool>(t.clone()) {
                return Err(
                    ApiError::bad_request(format!("invalid tool at `tools[{i}]`: {e}"))
                        .with_param(format!("tools[{i}]")),
                );
            }
        }
    }
    Err(ApiError::bad_request(format!(
        "invalid request body: {whole_error}"
    )))
}

/// Shared, lockable handle to the [`Exchange`] of one call. Cloned into the request
/// extensions (and the response extensions) so every layer sees the same context.
#[derive(Debug, Clone)]
pub struct ExchangeHandle(Arc<parking_lot::Mutex<Exchange>>);

impl ExchangeHandle {
    /// Wraps an exchange.
    pub fn new(exchange: Exchange) -> Self {
        ExchangeHandle(Arc::new(parking_lot::Mutex::new(exchange)))
    }

    /// Locks the exchange. Never hold the guard across an `.await`.
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, Exchange> {
        self.0.lock()
    }

    /// The handle in `req`'s extensions; if absent, parses the body into a new exchange and
    /// inserts it (so each layer also works on its own, e.g. embedded around a client).
    pub fn from_request(req: &mut http::Request<Bytes>) -> Result<ExchangeHandle, ApiError> {
        if let Some(h) = req.extensions().get::<ExchangeHandle>() {
            return Ok(h.clone());
        }
        let mut ex = Exchange::parse(req.body().clone())?;
        crate::identity_from_headers(&mut ex, req.headers());
        let h = ExchangeHandle::new(ex);
        req.extensions_mut().insert(h.clone());
        Ok(h)
    }
}

/// Fills header claims when no identity layer ran (embedded use).
pub(crate) fn claims_from_headers(ex: &mut Exchange, headers: &http::HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    ex.identity.claimed_agent = get(crate::HEADER_AGENT);
    ex.identity.claimed_workflow = get(crate::HEADER_WORKFLOW);
    if ex.identity.agent.is_none() {
        ex.identity.agent = ex.identity.claimed_agent.clone();
    }
    if ex.identity.workflow.is_none() {
        ex.identity.workflow = ex.identity.claimed_workflow.clone();
    }
    if let Some(c) = get(crate::HEADER_CONVERSATION) {
        ex.conversation_id = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        match Exchange::parse(Bytes::from(body.to_owned())) {
            Ok(_) => ApiError::internal("parsed"),
            Err(e) => e,
        }
    }

    #[test]
    fn malformed_json_is_400_with_position() {
        let e = err("{\"model\": ");
        assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with("request body is not valid JSON"),
            "{}",
            e.message
        );
    }

    #[test]
    fn missing_messages_names_field() {
        let e = err(r#"{"model":"m"}"#);
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(e.message, "missing required field `messages`");
    }

    #[test]
    fn wrong_type_of_messages_names_field() {
        let e = err(r#"{"model":"m","messages":"hi"}"#);
        assert_eq!(e.param.as_deref(), Some("messages"));
    }

    #[test]
    fn bad_role_names_messages() {
        let e = err(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0]"));
        assert!(e.message.contains("wizard"), "{}", e.message);
    }

    #[test]
    fn fast_path_parses_like_the_diagnosing_path() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"s"},
            {"role":"user","name":"u","content":[{"type":"text","text":"hi"}]}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
            "temperature":0.2,"seed":7,"stream":false}"#;
        let fast = parse_chat_request(body).unwrap();
        let slow = diagnose_chat_request(body).unwrap();
        assert_eq!(
            serde_json::to_value(&fast).unwrap(),
            serde_json::to_value(&slow).unwrap()
        );
        assert_eq!(fast.extra.get("seed"), Some(&serde_json::Value::from(7)));
    }

    #[test]
    fn non_object_bodies_and_empty_messages_keep_their_errors() {
        assert_eq!(
            err(r#"["m", [{"role":"user","content":"x"}]]"#).message,
            "request body must be a JSON object"
        );
        let e = err(r#"{"model":"m","messages":[]}"#);
        assert_eq!(e.message, "field `messages` must not be empty");
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(
            err(r#"{"model":1,"messages":[]}"#).message,
            "field `model` must be a string"
        );
    }

    #[test]
    fn most_severe_decision_wins() {
        let mut ex = Exchange::parse(Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
        ex.verdicts
            .push(Verdict::new("a", crate::Phase::Input, Decision::Log, "l"));
        ex.verdicts
            .push(Verdict::new("b", crate::Phase::Input, Decision::Block, "b"));
        ex.verdicts.push(Verdict::new(
            "c",
            crate::Phase::Input,
            Decision::Redact,
            "r",
        ));
        assert_eq!(ex.decision(), Decision::Block);
        assert_eq!(ex.deciding_verdict().map(|v| v.policy.as_str()), Some("b"));
    }
}
