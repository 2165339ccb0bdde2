//! `CostLayer`: rate limits and budget reservation before the inner service, usage and cost
//! attribution after it (at the end of the response body, or when it is dropped).

mod body;
mod future;
mod layer;
mod settle;

use bytes::Bytes;
use exchange::{ExchangeHandle, Outcome, ResponseBody};
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use self::future::Pending;
pub use self::future::ResponseFuture;
pub use self::layer::CostLayer;
use self::settle::Settlement;
use crate::engine::{Attribution, CostEngine};
use crate::tokens;

/// The cost service: see [`CostLayer`].
#[derive(Clone, Debug)]
pub struct Cost<S> {
    inner: S,
    engine: CostEngine,
}

impl<S> Cost<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, engine: CostEngine) -> Self {
        Cost { inner, engine }
    }
}

fn attribution(ex: &exchange::Exchange) -> Attribution {
    Attribution {
        event_id: ex.id.to_string(),
        ts_ms: ex
            .received_at
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0),
        agent: ex.identity.agent_or_anonymous().to_owned(),
        role: ex.identity.role.clone(),
        workflow: ex.identity.workflow.clone(),
        conversation: (!ex.conversation_id.is_empty()).then(|| ex.conversation_id.clone()),
        model: ex.request.model.clone(),
        key_id: ex.identity.key_id.clone(),
    }
}

impl<S> tower::Service<http::Request<Bytes>> for Cost<S>
where
    S: tower::Service<http::Request<Bytes>, Response = http::Response<ResponseBody>>,
{
    type Response = http::Response<ResponseBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        let handle = match ExchangeHandle::from_request(&mut req) {
            Ok(h) => h,
            Err(e) => return ResponseFuture::denied(e.into_response()),
        };
        let (attr, output_limit, stream, client_asked_usage) = {
            let ex = handle.lock();
            (
                attribution(&ex),
                ex.request.output_limit(),
                ex.request.is_stream(),
                ex.request
                    .stream_options
                    .as_ref()
                    .and_then(|o| o.include_usage)
                    == Some(true),
            )
        };
        let mut prompt = || tokens::estimate_prompt_tokens(&handle.lock().request);
        let admission = match self.engine.admit(attr, &mut prompt, output_limit) {
            Ok(a) => a,
            Err(api) => {
                handle.lock().outcome = Outcome::Rejected {
                    status: api.status.as_u16(),
                    code: api.code.clone().unwrap_or_default(),
                };
                return ResponseFuture::denied(api.into_response());
            }
        };
        let mut strip_usage = false;
        if stream && !client_asked_usage {
            let mut ex = handle.lock();
            let before = ex.request.stream_options.clone();
            ex.request
                .stream_options
                .get_or_insert_with(Default::default)
                .include_usage = Some(true);
            match serde_json::to_vec(&ex.request) {
                Ok(body) => {
                    ex.request_modified = true;
                    *req.body_mut() = Bytes::from(body);
                    strip_usage = true;
                }
                Err(e) => {
                    ex.request.stream_options = before;
                    tracing::warn!(error = %e, "could not add stream_options.include_usage; usage will be estimated");
                }
            }
        }
        let fut = self.inner.call(req);
        ResponseFuture::called(
            fut,
            Pending {
                settlement: Settlement::new(admission, handle),
                strip_usage,
                stream,
            },
        )
    }
}
