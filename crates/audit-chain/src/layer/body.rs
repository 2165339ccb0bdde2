//! The SSE body wrapper: writes the event when the stream ends or is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use exchange::{BoxError, ExchangeHandle, Outcome, ResponseBody};
use http_body::{Body, Frame};
use policy_engine::OnAuditFailure;

use crate::error::AuditError;
use crate::event::{AuditContext, AuditEvent};
use crate::writer::{AuditWriter, Receipt};

type AppendFuture = Pin<Box<dyn Future<Output = Result<Receipt, AuditError>> + Send>>;

enum State {
    /// Passing frames through; the final `[DONE]` frame is held back.
    Streaming,
    /// Upstream ended: waiting for the commit.
    Appending(AppendFuture),
    /// Releasing the held final frame.
    Releasing,
    /// Finished.
    Done,
}

pub(crate) struct AuditBody {
    inner: ResponseBody,
    handle: ExchangeHandle,
    writer: AuditWriter,
    ctx: Arc<AuditContext>,
    state: State,
    held: Vec<u8>,
    seen_done: bool,
    recorded: bool,
}

impl AuditBody {
    pub(crate) fn new(
        inner: ResponseBody,
        handle: ExchangeHandle,
        writer: AuditWriter,
        ctx: Arc<AuditContext>,
    ) -> Self {
        AuditBody {
            inner,
            handle,
            writer,
            ctx,
            state: State::Streaming,
            held: Vec::new(),
            seen_done: false,
            recorded: false,
        }
    }

    fn draft(&self, disconnected: bool, error: Option<&BoxError>) -> AuditEvent {
        let mut ex = self.handle.lock();
        ex.total_latency = Some(ex.started.elapsed());
        if disconnected {
            ex.outcome = Outcome::ClientDisconnected;
        } else if let Some(e) = error {
            if matches!(ex.outcome, Outcome::Pending | Outcome::Forwarded { .. }) {
                ex.outcome = Outcome::UpstreamError {
                    status: 502,
                    reason: format!("stream failed: {e}"),
                };
            }
        } else if ex.outcome == Outcome::Pending {
            ex.outcome = Outcome::Forwarded { status: 200 };
        }
        AuditEvent::draft(&ex, &self.ctx)
    }
}

/// Where the line holding `[DONE]` starts in `data`, if any.
fn done_line_start(data: &[u8]) -> Option<usize> {
    const DONE: &[u8] = b"[DONE]";
    let pos = data.windows(DONE.len()).position(|w| w == DONE)?;
    let line_start = data[..pos]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    data[line_start..pos]
        .starts_with(b"data:")
        .then_some(line_start)
}

impl Body for AuditBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Streaming => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        let Some(data) = frame.data_ref() else {
                            return Poll::Ready(Some(Ok(frame)));
                        };
                        if this.seen_done {
                            this.held.extend_from_slice(data);
                            continue;
                        }
                        if let Some(start) = done_line_start(data) {
                            this.seen_done = true;
                            let data = data.clone();
                            this.held.extend_from_slice(&data[start..]);
                            if start > 0 {
                                return Poll::Ready(Some(Ok(Frame::data(data.slice(..start)))));
                            }
                            continue;
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Some(Err(e)) => {
                        let draft = this.draft(false, Some(&e));
                        this.recorded = true;
                        this.state = State::Done;
                        if let Err(ae) = this.writer.append_detached(draft) {
                            tracing::error!(error = %ae, "audit event of a failed stream not recorded");
                        }
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => {
                        let draft = this.draft(false, None);
                        this.recorded = true;
                        let fut = this
                            .writer
                            .append_event(draft, this.ctx.settings.durability);
                        this.state = State::Appending(Box::pin(fut));
                    }
                },
                State::Appending(fut) => {
                    let res = ready!(fut.as_mut().poll(cx));
                    match res {
                        Ok(receipt) => {
                            let mut out =
                                format!(": x-palisade-chain: {}\n\n", receipt.chain_header())
                                    .into_bytes();
                            out.append(&mut this.held);
                            this.held = out;
                            this.state = State::Releasing;
                        }
                        Err(e) => {
                            if this.ctx.settings.on_failure == OnAuditFailure::Deny {
                                // The status is already sent: end with an OpenAI-style error
                                // event instead of the final frame.
                                let body = super::unavailable(&e).body_bytes();
                                let mut out = b"data: ".to_vec();
                                out.extend_from_slice(&body);
                                out.extend_from_slice(b"\n\n");
                                this.held = out;
                            } else {
                                tracing::error!(error = %e, "audit event of a stream not recorded; serving anyway (on_audit_failure: allow)");
                            }
                            this.state = State::Releasing;
                        }
                    }
                }
                State::Releasing => {
                    this.state = State::Done;
                    if !this.held.is_empty() {
                        let held = std::mem::take(&mut this.held);
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(held)))));
                    }
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for AuditBody {
    fn drop(&mut self) {
        if !self.recorded {
            self.recorded = true;
            // Drop the inner body first: the layers below (cost settlement, stream stats)
            // finish their bookkeeping on drop, and the event must include it.
            drop(std::mem::replace(&mut self.inner, exchange::empty_body()));
            let draft = self.draft(true, None);
            if let Err(e) = self.writer.append_detached(draft) {
                tracing::error!(error = %e, "audit event of a disconnected stream not recorded");
            }
        }
    }
}
