//! Tower layers: [`InputPolicyLayer`] (request phase), [`OutputPolicyLayer`] (response
//! phase) and [`PolicyLayer`] (both, for embedding). The gateway splits them around the
//! cost layer: Audit → Policy[in] → Cost → Policy[out] → Provider.
//!
//! Service contract: `Service<http::Request<Bytes>, Response = http::Response<ResponseBody>,
//! Error = BoxError>`. Blocks are `Ok` responses (see [`crate::CompiledPack::blocked_response`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{BoxFuture, Either, Ready, ready};
use http_body_util::BodyExt;

use exchange::{
    ApiError, BoxError, ChatResponse, ExchangeHandle, Outcome, ResponseBody, ToolCallRecord,
};
use sha2::{Digest, Sha256};

use crate::SharedPack;
use crate::pack::CompiledPack;
use crate::state::PolicyState;

/// Request-phase policy layer.
#[derive(Clone)]
pub struct InputPolicyLayer {
    pack: SharedPack<CompiledPack>,
    state: PolicyState,
}

impl InputPolicyLayer {
    /// A layer evaluating `pack` (reloadable) with cross-turn `state`.
    pub fn new(pack: SharedPack<CompiledPack>, state: PolicyState) -> Self {
        InputPolicyLayer { pack, state }
    }
}

impl<S> tower::Layer<S> for InputPolicyLayer {
    type Service = InputPolicy<S>;
    fn layer(&self, inner: S) -> InputPolicy<S> {
        InputPolicy {
            inner,
            pack: self.pack.clone(),
            state: self.state.clone(),
        }
    }
}

/// Request-phase policy service: evaluates the input phase, answers blocks itself,
/// forwards the (possibly redacted) request otherwise.
#[derive(Clone)]
pub struct InputPolicy<S> {
    inner: S,
    pack: SharedPack<CompiledPack>,
    state: PolicyState,
}

type Res = http::Response<ResponseBody>;

/// Response future of [`InputPolicy`]: an immediate answer (block, bad request), the
/// inner service's future, or a turn held for a human approval.
pub type InputFuture<F> =
    Either<Ready<Result<Res, BoxError>>, Either<F, BoxFuture<'static, Result<Res, BoxError>>>>;

fn capture_headers(pack: &CompiledPack, req: &http::Request<Bytes>, ex: &mut exchange::Exchange) {
    for f in &pack.settings.audit.capture_fields {
        if let Some(h) = f.strip_prefix("header:") {
            if let Some(v) = req.headers().get(h).and_then(|v| v.to_str().ok()) {
                ex.captured_headers.insert(h.to_owned(), v.to_owned());
            }
        }
    }
}

impl<S> tower::Service<http::Request<Bytes>> for InputPolicy<S>
where
    S: tower::Service<http::Request<Bytes>, Response = Res, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Res;
    type Error = BoxError;
    type Future = InputFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        let handle = match ExchangeHandle::from_request(&mut req) {
            Ok(h) => h,
            Err(e) => return Either::Left(ready(Ok(e.into_response()))),
        };
        let pack = self.pack.load_full();
        let needs;
        let new_body = {
            let mut ex = handle.lock();
            capture_headers(&pack, &req, &mut ex);
            needs = pack.run_input(&mut ex, &self.state);
            if ex.decision() == exchange::Decision::Block {
                let (policy, _) = pack.block_message(&ex);
                ex.outcome = Outcome::Blocked {
                    policy,
                    status: pack.blocked_status(),
                };
                return Either::Left(ready(Ok(pack.blocked_response(&ex))));
            }
            if ex.request_modified {
                match ex.upstream_body() {
                    Ok(b) => Some(b),
                    Err(e) => {
                        return Either::Left(ready(Ok(ApiError::internal(format!(
                            "policy: cannot re-serialize the redacted request: {e}"
                        ))
                        .into_response())));
                    }
                }
            } else {
                None
            }
        };
        if let Some(b) = new_body {
            req.headers_mut().remove(http::header::CONTENT_LENGTH);
            *req.body_mut() = b;
        }
        if !needs.is_empty() {
            // Held for a human: use the readied service later, leave a clone in its place.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let state = self.state.clone();
            return Either::Right(Either::Right(Box::pin(crate::approval::hold_then_call(
                inner, req, pack, state, handle, needs,
            ))));
        }
        Either::Right(Either::Left(self.inner.call(req)))
    }
}

/// Response-phase policy layer.
#[derive(Clone)]
pub struct OutputPolicyLayer {
    pack: SharedPack<CompiledPack>,
    state: PolicyState,
}

impl OutputPolicyLayer {
    /// A layer evaluating `pack` (reloadable) with cross-turn `state`.
    pub fn new(pack: SharedPack<CompiledPack>, state: PolicyState) -> Self {
        OutputPolicyLayer { pack, state }
    }
}

impl<S> tower::Layer<S> for OutputPolicyLayer {
    type Service = OutputPolicy<S>;
    fn layer(&self, inner: S) -> OutputPolicy<S> {
        OutputPolicy {
            inner,
            pack: self.pack.clone(),
            state: self.state.clone(),
        }
    }
}

/// Response-phase policy service: JSON responses are parsed, evaluated, redacted /
/// restored and re-serialized when changed; SSE streams are scanned as they flow under
/// each policy's `stream_mode` (see [`crate::StreamPlan`] and `docs/streaming.md`).
#[derive(Clone)]
pub struct OutputPolicy<S> {
    inner: S,
    pack: SharedPack<CompiledPack>,
    state: PolicyState,
}

fn is_json(res: &Res) -> bool {
    res.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

fn tool_records(resp: &ChatResponse) -> Vec<ToolCallRecord> {
    resp.choices
        .iter()
        .flat_map(|c| c.message.tool_calls.as_deref().unwrap_or(&[]))
        .map(|c| ToolCallRecord {
            name: c.function.name.clone(),
            arguments_sha256: hex::encode(Sha256::digest(c.function.arguments.as_bytes())),
        })
        .collect()
}

async fn output_phase(
    res: Res,
    handle: ExchangeHandle,
    pack: Arc<CompiledPack>,
    state: PolicyState,
) -> Result<Res, BoxError> {
    if res.status() == http::StatusCode::OK && crate::stream::is_event_stream(&res) {
        return Ok(crate::stream::scan_stream(res, handle, pack, state));
    }
    if res.status() != http::StatusCode::OK || !is_json(&res) {
        return Ok(res);
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            let reason = format!("upstream body could not be read: {e}");
            handle.lock().outcome = Outcome::UpstreamError {
                status: 502,
                reason: reason.clone(),
            };
            return Ok(ApiError::bad_gateway(reason).into_response());
        }
    };
    let Ok(mut resp) = serde_json::from_slice::<ChatResponse>(&bytes) else {
        return Ok(http::Response::from_parts(
            parts,
            exchange::full_body(bytes),
        ));
    };
    let original = resp.clone();
    let needs = {
        let mut ex = handle.lock();
        let needs = pack.run_output(&mut ex, &mut resp, &state);
        ex.tool_calls = tool_records(&resp);
        ex.response = Some(resp.clone());
        if ex.decision() == exchange::Decision::Block {
            let (policy, _) = pack.block_message(&ex);
            ex.outcome = Outcome::Blocked {
                policy,
                status: pack.blocked_status(),
            };
            return Ok(pack.blocked_response(&ex));
        }
        needs
    };
    if let Some(res) = crate::approval::output_gate(&pack, &state, &handle, needs).await {
        return Ok(res);
    }
    if resp == original {
        return Ok(http::Response::from_parts(
            parts,
            exchange::full_body(bytes),
        ));
    }
    let new = serde_json::to_vec(&resp)?;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(http::Response::from_parts(parts, exchange::full_body(new)))
}

impl<S> tower::Service<http::Request<Bytes>> for OutputPolicy<S>
where
    S: tower::Service<http::Request<Bytes>, Response = Res, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Res;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Res, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        let handle = match ExchangeHandle::from_request(&mut req) {
            Ok(h) => h,
            Err(e) => return Box::pin(ready(Ok(e.into_response()))),
        };
        let pack = self.pack.load_full();
        let state = self.state.clone();
        // Use the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let res = inner.call(req).await?;
            output_phase(res, handle, pack, state).await
        })
    }
}

/// Both phases around one inner service (for embedding): `InputPolicy<OutputPolicy<S>>`.
pub type Policy<S> = InputPolicy<OutputPolicy<S>>;

/// Both phases in one layer (for embedding without a cost layer in between).
#[derive(Clone)]
pub struct PolicyLayer {
    input: InputPolicyLayer,
    output: OutputPolicyLayer,
}

impl PolicyLayer {
    /// A layer evaluating `pack` (reloadable) with cross-turn `state`.
    pub fn new(pack: SharedPack<CompiledPack>, state: PolicyState) -> Self {
        PolicyLayer {
            input: InputPolicyLayer::new(pack.clone(), state.clone()),
            output: OutputPolicyLayer::new(pack, state),
        }
    }
}

impl<S> tower::Layer<S> for PolicyLayer {
    type Service = Policy<S>;
    fn layer(&self, inner: S) -> Policy<S> {
        self.input.layer(self.output.layer(inner))
    }
}
