//! Shadow mode: a candidate pack evaluated inline, log-only, beside the active pack.
//!
//! [`ShadowInputLayer`] sits just inside the audit layer: it evaluates the candidate's
//! input phase on a copy of the exchange (the request as received) and stores the
//! verdicts in `Exchange::shadow_verdicts`. [`ShadowOutputLayer`] sits just outside the
//! provider: for a buffered JSON answer it evaluates the candidate's output phase on a
//! copy of the upstream response (unless the candidate already blocked the input) and
//! appends those verdicts. Neither ever changes what the client gets: the request goes on
//! untouched and the response is passed on with the same head and the same bytes. The
//! audit layer records the shadow verdicts beside the real ones; `palisade-replay
//! --shadow` reports them.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use exchange::{BoxError, ChatResponse, Decision, ExchangeHandle, ResponseBody};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use policy_engine::{CompiledPack, PolicyState, SharedPack};

/// The shadow pack (reloadable) and its own cross-turn state.
#[derive(Clone)]
pub struct ShadowPack {
    /// The candidate pack; the gateway swaps it on reload.
    pub pack: SharedPack<CompiledPack>,
    /// State of the shadow evaluation (never shared with the active pack).
    pub state: PolicyState,
}

impl ShadowPack {
    /// A shadow pack with fresh state.
    pub fn new(pack: CompiledPack) -> ShadowPack {
        ShadowPack {
            pack: Arc::new(arc_swap::ArcSwap::from_pointee(pack)),
            state: PolicyState::new(),
        }
    }
}

impl std::fmt::Debug for ShadowPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowPack")
            .field("pack", &self.pack.load().meta.name)
            .finish_non_exhaustive()
    }
}

/// Layer evaluating the shadow pack's input phase.
#[derive(Clone, Debug)]
pub struct ShadowInputLayer {
    shadow: ShadowPack,
}

impl ShadowInputLayer {
    /// A layer for `shadow`.
    pub fn new(shadow: ShadowPack) -> Self {
        ShadowInputLayer { shadow }
    }
}

impl<S> tower::Layer<S> for ShadowInputLayer {
    type Service = ShadowInput<S>;
    fn layer(&self, inner: S) -> ShadowInput<S> {
        ShadowInput {
            inner,
            shadow: self.shadow.clone(),
        }
    }
}

/// Service made by [`ShadowInputLayer`].
#[derive(Clone, Debug)]
pub struct ShadowInput<S> {
    inner: S,
    shadow: ShadowPack,
}

impl<S> tower::Service<http::Request<Bytes>> for ShadowInput<S>
where
    S: tower::Service<
            http::Request<Bytes>,
            Response = http::Response<ResponseBody>,
            Error = BoxError,
        >,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        if let Ok(handle) = ExchangeHandle::from_request(&mut req) {
            let mut copy = handle.lock().clone();
            copy.verdicts.clear();
            copy.shadow_verdicts.clear();
            let pack = self.shadow.pack.load_full();
            pack.evaluate_input(&mut copy, &self.shadow.state);
            handle.lock().shadow_verdicts = copy.verdicts;
        }
        self.inner.call(req)
    }
}

/// Layer evaluating the shadow pack's output phase.
#[derive(Clone, Debug)]
pub struct ShadowOutputLayer {
    shadow: ShadowPack,
}

impl ShadowOutputLayer {
    /// A layer for `shadow`.
    pub fn new(shadow: ShadowPack) -> Self {
        ShadowOutputLayer { shadow }
    }
}

impl<S> tower::Layer<S> for ShadowOutputLayer {
    type Service = ShadowOutput<S>;
    fn layer(&self, inner: S) -> ShadowOutput<S> {
        ShadowOutput {
            inner,
            shadow: self.shadow.clone(),
        }
    }
}

/// Service made by [`ShadowOutputLayer`].
#[derive(Clone, Debug)]
pub struct ShadowOutput<S> {
    inner: S,
    shadow: ShadowPack,
}

fn is_json(res: &http::Response<ResponseBody>) -> bool {
    res.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// A body that fails with `e` (the upstream body failed while the shadow read it: the
/// layers above see the same failure they would have seen).
fn failing_body(e: BoxError) -> ResponseBody {
    let frames = futures_util::stream::iter([Err::<http_body::Frame<Bytes>, BoxError>(e)]);
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

fn shadow_output(handle: &ExchangeHandle, shadow: &ShadowPack, bytes: &Bytes) {
    let Ok(response) = serde_json::from_slice::<ChatResponse>(bytes) else {
        return;
    };
    let mut copy = handle.lock().clone();
    if copy
        .shadow_verdicts
        .iter()
        .any(|v| v.decision == Decision::Block)
    {
        return;
    }
    copy.verdicts = std::mem::take(&mut copy.shadow_verdicts);
    let before = copy.verdicts.len();
    let mut response = response;
    let pack = shadow.pack.load_full();
    pack.evaluate_output(&mut copy, &mut response, &shadow.state);
    let added: Vec<_> = copy.verdicts.drain(before..).collect();
    handle.lock().shadow_verdicts.extend(added);
}

impl<S> tower::Service<http::Request<Bytes>> for ShadowOutput<S>
where
    S: tower::Service<
            http::Request<Bytes>,
            Response = http::Response<ResponseBody>,
            Error = BoxError,
        > + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<ResponseBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        let handle = ExchangeHandle::from_request(&mut req).ok();
        let shadow = self.shadow.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let Some(handle) = handle else {
                return Ok(res);
            };
            if res.status() != http::StatusCode::OK || !is_json(&res) {
                return Ok(res);
            }
            let (parts, body) = res.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => return Ok(http::Response::from_parts(parts, failing_body(e))),
            };
            shadow_output(&handle, &shadow, &bytes);
            Ok(http::Response::from_parts(
                parts,
                exchange::full_body(bytes),
            ))
        })
    }
}
