//! [`AuditLayer`]: records every exchange that passes through a tower stack.
//!
//! The outermost policy-aware layer: it sees blocked exchanges too. For a buffered
//! response it finalizes the exchange, appends the event and (with `durability: sync`)
//! releases the response only after the commit, adding `x-palisade-event` and
//! `x-palisade-chain: <seq>:<hash>`. For an SSE response it sets `x-palisade-event` up
//! front, wraps the body, and writes the event when the body ends (or is dropped: the
//! client went away), holding back the final `data: [DONE]` frame until the commit and
//! sending the chain receipt just before it as an SSE comment (`: x-palisade-chain: …`).
//! A store failure answers 503 unless the pack says `on_audit_failure: allow`.

mod body;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use exchange::{ApiError, BoxError, Exchange, ExchangeHandle, Outcome, ResponseBody};
use http_body_util::BodyExt;
use policy_engine::OnAuditFailure;

use crate::error::AuditError;
use crate::event::{AuditContext, AuditEvent, outcome_from_status};
use crate::writer::{AuditWriter, Receipt};

/// The response future of [`Audit`].
pub type AuditResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send>>;

/// Tower layer that records each exchange in the audit chain.
#[derive(Clone)]
pub struct AuditLayer {
    writer: AuditWriter,
    ctx: Arc<ArcSwap<AuditContext>>,
}

impl AuditLayer {
    /// A layer writing through `writer`; `ctx` is read per request (the gateway stores a
    /// new context on pack reload).
    pub fn new(writer: AuditWriter, ctx: Arc<ArcSwap<AuditContext>>) -> Self {
        AuditLayer { writer, ctx }
    }
}

impl<S> tower::Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            writer: self.writer.clone(),
            ctx: self.ctx.clone(),
        }
    }
}

/// The service made by [`AuditLayer`].
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    writer: AuditWriter,
    ctx: Arc<ArcSwap<AuditContext>>,
}

/// Records the exchange if the request future is dropped before it was recorded (the
/// client went away while waiting).
struct DropGuard {
    armed: Option<(ExchangeHandle, AuditWriter, Arc<AuditContext>)>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some((h, writer, ctx)) = self.armed.take() {
            let draft = {
                let mut ex = h.lock();
                ex.outcome = Outcome::ClientDisconnected;
                ex.total_latency = Some(ex.started.elapsed());
                AuditEvent::draft(&ex, &ctx)
            };
            if let Err(e) = writer.append_detached(draft) {
                tracing::error!(error = %e, "audit event of a cancelled exchange not recorded");
            }
        }
    }
}

pub(crate) fn unavailable(e: &AuditError) -> ApiError {
    match e {
        AuditError::StoreUnavailable(_) => ApiError::unavailable(e.to_string()),
        other => ApiError::unavailable(format!("audit store unavailable: {other}")),
    }
}

fn header_value(s: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(s).ok()
}

fn add_receipt(res: &mut http::Response<ResponseBody>, receipt: &Receipt) {
    if let Some(v) = header_value(&receipt.event_id) {
        res.headers_mut().insert(exchange::HEADER_EVENT, v);
    }
    if let Some(v) = header_value(&receipt.chain_header()) {
        res.headers_mut().insert(exchange::HEADER_CHAIN, v);
    }
}

fn is_event_stream(res: &http::Response<ResponseBody>) -> bool {
    res.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// An exchange for a request whose body could not be parsed, so the rejection is recorded.
fn rejected_exchange(req: &http::Request<Bytes>, err: &ApiError) -> Option<Exchange> {
    let model = serde_json::from_slice::<serde_json::Value>(req.body())
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let request =
        serde_json::from_value(serde_json::json!({"model": model, "messages": []})).ok()?;
    let mut ex = Exchange::new(request, req.body().clone());
    let get = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    ex.identity.claimed_agent = get(exchange::HEADER_AGENT);
    ex.identity.agent = ex.identity.claimed_agent.clone();
    ex.identity.claimed_workflow = get(exchange::HEADER_WORKFLOW);
    ex.identity.workflow = ex.identity.claimed_workflow.clone();
    ex.conversation_id = get(exchange::HEADER_CONVERSATION).unwrap_or_default();
    ex.outcome = Outcome::Rejected {
        status: err.status.as_u16(),
        code: err.code.clone().unwrap_or_else(|| err.kind.clone()),
    };
    ex.total_latency = Some(ex.started.elapsed());
    Some(ex)
}

impl<S> tower::Service<http::Request<Bytes>> for Audit<S>
where
    S: tower::Service<
            http::Request<Bytes>,
            Response = http::Response<ResponseBody>,
            Error = BoxError,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = AuditResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        let ctx = self.ctx.load_full();
        let writer = self.writer.clone();
        let handle = match ExchangeHandle::from_request(&mut req) {
            Ok(h) => h,
            Err(api) => {
                let append = rejected_exchange(&req, &api).map(|ex| {
                    let id = ex.id.to_string();
                    (id, writer.append(&ex, &ctx))
                });
                return Box::pin(async move {
                    let mut res = api.into_response();
                    if let Some((id, append)) = append {
                        match append.await {
                            Ok(r) => add_receipt(&mut res, &r),
                            Err(e) => {
                                if ctx.settings.on_failure == OnAuditFailure::Deny {
                                    return Ok(unavailable(&e).into_response());
                                }
                                tracing::error!(error = %e, event = %id, "audit event not recorded");
                            }
                        }
                    }
                    Ok(res)
                });
            }
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut guard = DropGuard {
                armed: Some((handle.clone(), writer.clone(), ctx.clone())),
            };
            let res = match fut.await {
                Ok(r) => r,
                Err(e) => {
                    if let Some((h, writer, ctx)) = guard.armed.take() {
                        let draft = {
                            let mut ex = h.lock();
                            if ex.outcome == Outcome::Pending {
                                ex.outcome = Outcome::UpstreamError {
                                    status: 500,
                                    reason: format!("internal error: {e}"),
                                };
                            }
                            ex.total_latency = Some(ex.started.elapsed());
                            AuditEvent::draft(&ex, &ctx)
                        };
                        if let Err(ae) = writer.append_detached(draft) {
                            tracing::error!(error = %ae, "audit event of a failed exchange not recorded");
                        }
                    }
                    return Err(e);
                }
            };
            if is_event_stream(&res) {
                guard.armed = None;
                let id = handle.lock().id.to_string();
                let (mut parts, inner) = res.into_parts();
                if let Some(v) = header_value(&id) {
                    parts.headers.insert(exchange::HEADER_EVENT, v);
                }
                let body = body::AuditBody::new(inner, handle, writer, ctx);
                return Ok(http::Response::from_parts(parts, body.boxed_unsync()));
            }
            let (draft, id) = {
                let mut ex = handle.lock();
                ex.total_latency = Some(ex.started.elapsed());
                if ex.outcome == Outcome::Pending {
                    ex.outcome = outcome_from_status(res.status());
                }
                (AuditEvent::draft(&ex, &ctx), ex.id.to_string())
            };
            let append = writer.append_event(draft, ctx.settings.durability);
            guard.armed = None;
            let mut res = res;
            match append.await {
                Ok(r) => add_receipt(&mut res, &r),
                Err(e) => {
                    if ctx.settings.on_failure == OnAuditFailure::Deny {
                        return Ok(unavailable(&e).into_response());
                    }
                    tracing::error!(error = %e, event = %id, "audit event not recorded; serving anyway (on_audit_failure: allow)");
                    if let Some(v) = header_value(&id) {
                        res.headers_mut().insert(exchange::HEADER_EVENT, v);
                    }
                }
            }
            Ok(res)
        })
    }
}
