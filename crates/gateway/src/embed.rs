//! Embedding helpers: put Palisade's layers in front of any tower service whose requests
//! carry a streaming body (an axum router, a hyper server), by buffering the body first.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use exchange::{ApiError, BoxError, ResponseBody};
use http_body_util::BodyExt;

/// Buffers the request body (up to `limit` bytes, else 413) so the Palisade layers below
/// see `http::Request<Bytes>`; maps any inner error to an OpenAI-style 500, so the result
/// is infallible (what axum's `route_service` wants).
#[derive(Debug, Clone, Copy)]
pub struct BufferRequestLayer {
    limit: usize,
}

impl BufferRequestLayer {
    /// Buffers bodies of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        BufferRequestLayer { limit }
    }
}

impl Default for BufferRequestLayer {
    /// 4 MiB, the gateway's default.
    fn default() -> Self {
        BufferRequestLayer::new(4 * 1024 * 1024)
    }
}

impl<S> tower::Layer<S> for BufferRequestLayer {
    type Service = BufferRequest<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BufferRequest {
            inner,
            limit: self.limit,
        }
    }
}

/// See [`BufferRequestLayer`].
#[derive(Debug, Clone)]
pub struct BufferRequest<S> {
    inner: S,
    limit: usize,
}

impl<S, B> tower::Service<http::Request<B>> for BufferRequest<S>
where
    S: tower::Service<
            http::Request<Bytes>,
            Response = http::Response<ResponseBody>,
            Error = BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness of the inner service is awaited per call (it is cloned), so this layer
        // never reports an error from here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let limit = self.limit;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match http_body_util::Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(ApiError::new(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request_error",
                        format!("request body exceeds the limit of {limit} bytes"),
                    )
                    .with_code("request_too_large")
                    .into_response());
                }
                Err(e) => {
                    return Ok(ApiError::bad_request(format!(
                        "could not read the request body: {e}"
                    ))
                    .into_response());
                }
            };
            let req = http::Request::from_parts(parts, bytes);
            match tower::ServiceExt::oneshot(inner, req).await {
                Ok(res) => Ok(res),
                Err(e) => Ok(match e.downcast::<ApiError>() {
                    Ok(api) => api.into_response(),
                    Err(e) => ApiError::internal(format!("internal error: {e}")).into_response(),
                }),
            }
        })
    }
}
