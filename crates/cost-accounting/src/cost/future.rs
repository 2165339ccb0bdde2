use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use exchange::ResponseBody;
use http_body_util::BodyExt;

use super::body::CostBody;
use super::settle::Settlement;

/// What the future needs once the inner service answered.
pub(crate) struct Pending {
    pub(crate) settlement: Settlement,
    pub(crate) strip_usage: bool,
    pub(crate) stream: bool,
}

impl Pending {
    fn wrap(self, res: http::Response<ResponseBody>) -> http::Response<ResponseBody> {
        let (mut parts, body) = res.into_parts();
        let ok = parts.status.is_success();
        let is_sse = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start().starts_with("text/event-stream"))
            .unwrap_or(self.stream && ok);
        if is_sse && self.strip_usage {
            // The body may shrink.
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        let body = CostBody::new(body, self.settlement, ok, is_sse, self.strip_usage);
        http::Response::from_parts(parts, body.boxed_unsync())
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Cost`](super::Cost): the inner call, or a refusal answered
    /// without calling it.
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F> {
        /// The inner service was called.
        Called {
            #[pin]
            fut: F,
            pending: Option<Pending>,
        },
        /// Refused (budget, rate limit, unparseable request).
        Denied {
            response: Option<http::Response<ResponseBody>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(fut: F, pending: Pending) -> Self {
        ResponseFuture::Called {
            fut,
            pending: Some(pending),
        }
    }

    pub(crate) fn denied(response: http::Response<ResponseBody>) -> Self {
        ResponseFuture::Denied {
            response: Some(response),
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResponseBody>, E>>,
{
    type Output = Result<http::Response<ResponseBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Denied { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    exchange::ApiError::internal(
                        "cost layer: response future polled after completion",
                    )
                    .into_response()
                })))
            }
            ResponseFutureProj::Called { fut, pending } => {
                let result = ready!(fut.poll(cx));
                let Some(p) = pending.take() else {
                    return Poll::Ready(result);
                };
                match result {
                    Ok(res) => Poll::Ready(Ok(p.wrap(res))),
                    Err(e) => {
                        // Infrastructure failure: nothing known to be spent.
                        p.settlement.release();
                        Poll::Ready(Err(e))
                    }
                }
            }
        }
    }
}
