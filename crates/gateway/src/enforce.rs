//! `POST /v1/enforce`: a tool asks before it runs.
//!
//! Request (with the agent's key): `{"tool": "send_http_request", "arguments": {…},
//! "call_id"?: "call_1", "conversation_id"?: "…"}`. Answer (`200`):
//! `{"decision": "ALLOW|LOG|REDACT|CONSTRAIN|BLOCK", "allowed": bool, "reasons": […],
//! "event_id": "…", "conversation_id": "…", "approval"?: {"id", "status", "approver"}}`.
//! The call is evaluated by the pack's detectors, agent firewall, rules, taint tracking and
//! `default_decision` ([`policy_engine::CompiledPack::evaluate_tool_call`]), held for a human
//! when a `CONSTRAIN` rule requires approval, and audited as a `tool_enforce` event through
//! the same identity and audit layers as chat completions. `allowed` is what the tool should
//! obey: false for `BLOCK` and for an approval that is pending (non-holding mode).
//!
//! The conversation is the body's `conversation_id`, else the `X-Palisade-Conversation`
//! header, else the conversation the agent was last seen in (within an hour), else a
//! fingerprint of the call.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use exchange::{
    ApiError, BoxError, ChatRequest, Content, Decision, Exchange, ExchangeHandle, FunctionCall,
    Message, Outcome, RequestKind, ResponseBody, Role, ToolCall, json_response,
};
use futures_util::future::BoxFuture;
use policy_engine::{
    CompiledPack, GateOutcome, PolicyState, SharedPack, ToolCallRequest, approval_gate,
};
use tower::{ServiceBuilder, ServiceExt};

use crate::identity::IdentityLayer;
use crate::stack::StackParts;

/// The model name recorded for tool-enforcement events.
pub const ENFORCE_MODEL: &str = "palisade-enforce";

/// How long an agent's latest conversation is assumed to continue for enforce calls.
const LATEST_CONVERSATION_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Clone)]
struct EnforceService {
    pack: SharedPack<CompiledPack>,
    state: PolicyState,
}

type Res = http::Response<ResponseBody>;

fn synthetic_request(call: &ToolCallRequest) -> ChatRequest {
    ChatRequest {
        model: ENFORCE_MODEL.to_owned(),
        messages: vec![Message {
            role: Role::Assistant,
            content: Some(Content::Text(String::new())),
            name: None,
            tool_calls: Some(vec![ToolCall {
                id: call.call_id.clone().unwrap_or_else(|| "enforce".to_owned()),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: call.tool.clone(),
                    arguments: call.arguments_value().to_string(),
                },
            }]),
            tool_call_id: None,
            extra: Default::default(),
        }],
        stream: None,
        stream_options: None,
        tools: None,
        tool_choice: None,
        max_tokens: None,
        max_completion_tokens: None,
        response_format: None,
        extra: Default::default(),
    }
}

impl tower::Service<http::Request<Bytes>> for EnforceService {
    type Response = Res;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Res, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        let pack = self.pack.load_full();
        let state = self.state.clone();
        let call = req.extensions_mut().remove::<ToolCallRequest>();
        let handle = req.extensions().get::<ExchangeHandle>().cloned();
        let header_conversation = req.headers().contains_key(exchange::HEADER_CONVERSATION);
        Box::pin(async move {
            let (Some(call), Some(handle)) = (call, handle) else {
                return Ok(ApiError::internal("enforce: request context missing").into_response());
            };
            let needs = {
                let mut ex = handle.lock();
                if let Some(c) = call.conversation_id.as_deref().filter(|c| !c.is_empty()) {
                    ex.conversation_id = c.chars().take(256).collect();
                } else if !header_conversation {
                    let latest =
                        ex.identity.agent.as_deref().and_then(|a| {
                            state.latest_conversation(a, LATEST_CONVERSATION_MAX_AGE)
                        });
                    if let Some(c) = latest {
                        ex.conversation_id = c;
                    }
                }
                pack.evaluate_tool_call(&mut ex, &call, &state)
            };
            let blocked = handle.lock().decision() == Decision::Block;
            let mut pending = false;
            if !needs.is_empty() && !blocked {
                let phase = exchange::Phase::Input;
                if let GateOutcome::Pending { .. } =
                    approval_gate(&pack, &state, &handle, phase, needs).await
                {
                    pending = true;
                }
            }
            let mut ex = handle.lock();
            let decision = ex.decision();
            let allowed = decision != Decision::Block && !pending;
            let reasons: Vec<serde_json::Value> = ex
                .verdicts
                .iter()
                .filter(|v| v.decision != Decision::Allow || v.policy == "human-oversight")
                .map(|v| {
                    serde_json::json!({
                        "policy": v.policy,
                        "rule": v.rule,
                        "decision": v.decision,
                        "reason": v.reason,
                    })
                })
                .collect();
            ex.outcome = if decision == Decision::Block || pending {
                let (policy, _) = pack.block_message(&ex);
                Outcome::Blocked {
                    policy: if pending {
                        "human-oversight".to_owned()
                    } else {
                        policy
                    },
                    status: 200,
                }
            } else {
                Outcome::Forwarded { status: 200 }
            };
            let mut body = serde_json::json!({
                "decision": decision,
                "allowed": allowed,
                "reasons": reasons,
                "event_id": ex.id.to_string(),
                "conversation_id": ex.conversation_id,
            });
            if let Some(a) = &ex.approval {
                body["approval"] = serde_json::json!({
                    "id": a.id,
                    "status": a.status,
                    "approver": a.approver,
                    "waited_ms": a.waited_ms,
                });
            }
            let mut res = json_response(http::StatusCode::OK, &body);
            if let Ok(v) = http::HeaderValue::from_str(decision.as_str()) {
                res.headers_mut().insert(exchange::HEADER_DECISION, v);
            }
            if let Some(a) = &ex.approval {
                if let Ok(v) = http::HeaderValue::from_str(&a.id) {
                    res.headers_mut().insert(policy_engine::HEADER_APPROVAL, v);
                }
            }
            Ok(res)
        })
    }
}

/// Answers `POST /v1/enforce` (body already read and size-limited).
pub(crate) async fn enforce(parts: &StackParts, mut req: http::Request<Bytes>) -> Res {
    let call: ToolCallRequest = match serde_json::from_slice(req.body()) {
        Ok(c) => c,
        Err(e) => {
            return ApiError::bad_request(format!("invalid enforce request: {e}")).into_response();
        }
    };
    if call.tool.trim().is_empty() {
        return ApiError::bad_request("field `tool` must not be empty")
            .with_param("tool")
            .into_response();
    }
    let args = call.arguments_value();
    if !args.is_object() {
        return ApiError::bad_request("field `arguments` must be a JSON object")
            .with_param("arguments")
            .into_response();
    }
    let request = synthetic_request(&call);
    let mut ex = Exchange::new(request, req.body().clone());
    ex.kind = RequestKind::ToolEnforce;
    let handle = ExchangeHandle::new(ex);
    req.extensions_mut().insert(handle.clone());
    req.extensions_mut().insert(call);
    let svc = ServiceBuilder::new()
        .layer(IdentityLayer::new(parts.keys.clone(), parts.pack.clone()))
        .layer(audit_chain::AuditLayer::new(
            parts.audit.clone(),
            parts.audit_ctx.clone(),
        ))
        .service(EnforceService {
            pack: parts.pack.clone(),
            state: parts.policy_state.clone(),
        });
    match svc.oneshot(req).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "enforce request failed inside the gateway");
            ApiError::internal("internal gateway error").into_response()
        }
    }
}
