use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use exchange::{BoxError, ChatResponse, ResponseBody};
use http_body::{Body, Frame, SizeHint};

use super::settle::{Observed, Settlement};
use crate::sse::SseScanner;
use crate::tokens;

/// JSON bodies larger than this are not kept for usage parsing (usage is then estimated).
const MAX_COLLECT: usize = 16 * 1024 * 1024;

/// Frames read without waiting when a body is dropped unread.
const MAX_DRAIN_FRAMES: usize = 1024;

enum Mode {
    Sse(SseScanner),
    /// `Some` while collecting the body to read its usage.
    Json(Option<BytesMut>),
}

/// The response body: passes frames through (removing the usage chunk when asked), and
/// settles the cost when it ends, fails or is dropped.
pub(crate) struct CostBody {
    inner: ResponseBody,
    mode: Mode,
    settlement: Option<Settlement>,
    ok: bool,
    ended: bool,
}

impl CostBody {
    pub(crate) fn new(
        inner: ResponseBody,
        settlement: Settlement,
        ok: bool,
        sse: bool,
        strip_usage: bool,
    ) -> Self {
        let mode = if sse {
            Mode::Sse(SseScanner::new(strip_usage))
        } else {
            // Collect the body for its usage only when no inner layer parsed it already.
            Mode::Json((ok && !settlement.response_known()).then(BytesMut::new))
        };
        CostBody {
            inner,
            mode,
            settlement: Some(settlement),
            ok,
            ended: false,
        }
    }

    fn finish(&mut self) {
        let Some(mut settlement) = self.settlement.take() else {
            return;
        };
        let (usage, text) = match &mut self.mode {
            Mode::Sse(s) => (s.usage.take(), Some(std::mem::take(&mut s.text))),
            Mode::Json(collected) => match collected
                .take()
                .and_then(|b| serde_json::from_slice::<ChatResponse>(&b).ok())
            {
                Some(resp) => (resp.usage.clone(), Some(tokens::completion_text(&resp))),
                None => (None, None),
            },
        };
        settlement.finish(Observed {
            ok: self.ok,
            usage,
            text,
        });
    }
}

impl Body for CostBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    };
                    match &mut this.mode {
                        Mode::Sse(scanner) => {
                            let out = scanner.push(&data);
                            if out.is_empty() {
                                continue;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        Mode::Json(collected) => {
                            if let Some(buf) = collected {
                                if buf.len() + data.len() <= MAX_COLLECT {
                                    buf.extend_from_slice(&data);
                                } else {
                                    *collected = None;
                                }
                            }
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                }
                Some(Err(e)) => {
                    // The stream was cut: charge what was seen.
                    this.finish();
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    let tail = match &mut this.mode {
                        Mode::Sse(scanner) => scanner.finish(),
                        Mode::Json(_) => Bytes::new(),
                    };
                    this.finish();
                    this.ended = true;
                    if tail.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match &self.mode {
            Mode::Json(_) => self.inner.size_hint(),
            Mode::Sse(_) => SizeHint::default(),
        }
    }
}

impl CostBody {
    /// Reads, without waiting, what the inner body already holds (a buffered JSON answer is
    /// complete even when the client never read it), for accounting only.
    fn drain_ready(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..MAX_DRAIN_FRAMES {
            match Pin::new(&mut self.inner).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match &mut self.mode {
                        Mode::Sse(scanner) => {
                            scanner.push(&data);
                        }
                        Mode::Json(collected) => {
                            if let Some(buf) = collected {
                                if buf.len() + data.len() <= MAX_COLLECT {
                                    buf.extend_from_slice(&data);
                                } else {
                                    *collected = None;
                                }
                            }
                        }
                    }
                }
                Poll::Ready(None) => {
                    if let Mode::Sse(scanner) = &mut self.mode {
                        scanner.finish();
                    }
                    return;
                }
                Poll::Ready(Some(Err(_))) | Poll::Pending => return,
            }
        }
    }
}

impl Drop for CostBody {
    fn drop(&mut self) {
        // Client disconnected or the consumer stopped early: settle on what was seen, plus
        // whatever the upstream had already delivered.
        if self.settlement.is_some() && !self.ended {
            self.drain_ready();
        }
        self.finish();
    }
}
