//! The response body that runs the upstream SSE stream through a [`StreamScanner`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use exchange::{BoxError, ResponseBody};
use http_body::{Body, Frame};

use super::StreamScanner;

/// Reads upstream frames only when the client reads (back-pressure), releases what the
/// scanner allows, and drops the upstream body as soon as the stream is over for the client
/// (a block cancels the upstream request; so does the client's disconnect, by dropping this).
pub(crate) struct ScannedBody {
    inner: Option<ResponseBody>,
    scanner: StreamScanner,
}

impl ScannedBody {
    pub(crate) fn new(inner: ResponseBody, scanner: StreamScanner) -> Self {
        ScannedBody {
            inner: Some(inner),
            scanner,
        }
    }
}

impl Body for ScannedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.scanner.is_finished() {
                this.inner = None;
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let out = match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.scanner.push(&data),
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    this.scanner.fail();
                    this.inner = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.scanner.end(),
            };
            if this.scanner.is_finished() {
                this.inner = None;
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}
