//! A mock OpenAI HTTP server for tests, end-to-end runs and benches. It speaks the real wire
//! format (JSON and SSE), answers with the [`mock provider`](crate::MockProvider)'s logic,
//! and injects faults chosen by the request's `model`, so any client can trigger them:
//!
//! | `model`              | behaviour                                                          |
//! |----------------------|--------------------------------------------------------------------|
//! | `fault-500`          | 500 with an OpenAI error body (`server_error`)                     |
//! | `fault-503`          | 503 with an OpenAI error body (`service_unavailable`)              |
//! | `fault-reset`        | the connection is closed without an answer                         |
//! | `fault-slow-<ms>`    | waits `<ms>` milliseconds before the response headers              |
//! | `fault-cut-stream`   | streams two SSE events, then drops the connection (stream requests; JSON requests get 200 then a cut body) |
//! | `fault-malformed`    | 200 `application/json` whose body is not JSON                      |
//! | `step-stream`        | each SSE event waits for [`MockUpstream::release_events`]          |
//! | anything else        | the mock answer                                                    |
//!
//! Routes: `POST /v1/chat/completions`, `GET /v1/models`; anything else is an OpenAI-style
//! 404. Counters (connections, requests, cancellations, completions) can be read and awaited.
//!
//! ```no_run
//! # async fn demo() -> Result<(), provider_clients::ProviderError> {
//! let mock = provider_clients::mock_server::MockUpstream::start("127.0.0.1:0".parse().unwrap()).await?;
//! println!("{}", mock.base_url()); // http://127.0.0.1:PORT/v1
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use exchange::{ApiError, BoxError, ChatRequest, ResponseBody};
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{Semaphore, watch};

use crate::ProviderError;

/// What the mock upstream has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockCounters {
    /// TCP connections accepted.
    pub connections: u64,
    /// `POST /v1/chat/completions` requests whose body was fully received.
    pub requests: u64,
    /// Requests whose client went away before the answer was complete.
    pub cancelled: u64,
    /// Requests whose answer was completely handed to the connection.
    pub completed: u64,
}

struct State {
    counters: watch::Sender<MockCounters>,
    last_body: parking_lot::Mutex<Option<Bytes>>,
    last_headers: parking_lot::Mutex<Option<HeaderMap>>,
    step: Semaphore,
}

/// A running mock OpenAI server. Stops (and drops its connections) when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream")
            .field("addr", &self.addr)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    /// Binds `addr` (use `127.0.0.1:0` in tests) and serves on the current tokio runtime.
    pub async fn start(addr: SocketAddr) -> Result<MockUpstream, ProviderError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ProviderError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ProviderError::Bind { addr, source })?;
        let (counters, _) = watch::channel(MockCounters::default());
        let state = Arc::new(State {
            counters,
            last_body: parking_lot::Mutex::new(None),
            last_headers: parking_lot::Mutex::new(None),
            step: Semaphore::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(MockUpstream {
            addr: local,
            state,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, the `base_url` for clients and provider specs.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> MockCounters {
        *self.state.counters.borrow()
    }

    /// Chat requests received.
    pub fn requests_received(&self) -> u64 {
        self.counters().requests
    }

    /// Chat requests cancelled by the client before the answer completed.
    pub fn requests_cancelled(&self) -> u64 {
        self.counters().cancelled
    }

    /// TCP connections accepted.
    pub fn connections_accepted(&self) -> u64 {
        self.counters().connections
    }

    /// The body of the last chat request received, as received.
    pub fn last_request_body(&self) -> Option<Bytes> {
        self.state.last_body.lock().clone()
    }

    /// The last chat request's body parsed as JSON.
    pub fn last_request_json(&self) -> Option<serde_json::Value> {
        self.last_request_body()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// The headers of the last chat request received.
    pub fn last_request_headers(&self) -> Option<HeaderMap> {
        self.state.last_headers.lock().clone()
    }

    /// Waits until `pred` holds for the counters (no polling: woken on every change).
    pub async fn wait_for(&self, pred: impl FnMut(&MockCounters) -> bool) -> MockCounters {
        let mut rx = self.state.counters.subscribe();
        match rx.wait_for(pred).await {
            Ok(c) => *c,
            // The sender lives in `self.state`; it cannot be gone while `self` is borrowed.
            Err(_) => self.counters(),
        }
    }

    /// Lets `n` more events of `step-stream` answers go out.
    pub fn release_events(&self, n: usize) {
        self.state.step.add_permits(n);
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "mock upstream accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        state.counters.send_modify(|c| c.connections += 1);
        let state = state.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Connection errors (client went away, deliberate resets) end the connection.
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Counts a request as cancelled when dropped before [`CancelGuard::complete`].
struct CancelGuard {
    state: Arc<State>,
    done: bool,
}

impl CancelGuard {
    fn complete(&mut self) {
        if !self.done {
            self.done = true;
            self.state.counters.send_modify(|c| c.completed += 1);
        }
    }

    /// Done without counting as completed or cancelled (deliberate faults).
    fn disarm(&mut self) {
        self.done = true;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.counters.send_modify(|c| c.cancelled += 1);
        }
    }
}

/// Marks the guard complete when the body ends; a drop before that counts as cancelled.
struct GuardedBody {
    inner: ResponseBody,
    guard: CancelGuard,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        match &res {
            Poll::Ready(None) => this.guard.complete(),
            Poll::Ready(Some(Err(_))) => this.guard.disarm(),
            _ => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A deliberate fault (`fault-reset`, `fault-cut-stream`): hyper drops the connection.
#[derive(Debug, thiserror::Error)]
#[error("mock upstream fault: {0}")]
struct Fault(&'static str);

fn error_json(status: StatusCode, kind: &str, message: &str) -> http::Response<ResponseBody> {
    ApiError::new(status, kind, message).into_response()
}

async fn handle(
    state: Arc<State>,
    req: http::Request<Incoming>,
) -> Result<http::Response<ResponseBody>, BoxError> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => chat(state, req).await,
        (&Method::GET, "/v1/models") => Ok(models()),
        (_, path) => Ok(ApiError::not_found(format!("unknown route `{path}`")).into_response()),
    }
}

fn models() -> http::Response<ResponseBody> {
    let data: Vec<serde_json::Value> = ["gpt-4o", "gpt-4o-mini", "mock"]
        .iter()
        .map(|id| {
            serde_json::json!({
                "id": id, "object": "model", "created": crate::MOCK_CREATED, "owned_by": "palisade-mock",
            })
        })
        .collect();
    exchange::json_response(
        StatusCode::OK,
        &serde_json::json!({ "object": "list", "data": data }),
    )
}

fn sse_response(body: ResponseBody) -> http::Response<ResponseBody> {
    let mut res = http::Response::new(body);
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    res
}

async fn chat(
    state: Arc<State>,
    req: http::Request<Incoming>,
) -> Result<http::Response<ResponseBody>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    *state.last_body.lock() = Some(body.clone());
    *state.last_headers.lock() = Some(parts.headers);
    state.counters.send_modify(|c| c.requests += 1);
    let mut guard = CancelGuard {
        state: state.clone(),
        done: false,
    };

    let chat: ChatRequest = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            guard.complete();
            return Ok(error_json(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("invalid request body: {e}"),
            ));
        }
    };
    let model = chat.model.as_str();
    match model {
        "fault-500" => {
            guard.complete();
            return Ok(error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the mock upstream failed (fault-500)",
            ));
        }
        "fault-503" => {
            guard.complete();
            return Ok(error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the mock upstream is overloaded (fault-503)",
            ));
        }
        "fault-reset" => {
            guard.disarm();
            return Err(Box::new(Fault("reset")));
        }
        "fault-malformed" => {
            guard.complete();
            let mut res = http::Response::new(exchange::full_body("this is not json {"));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return Ok(res);
        }
        "fault-cut-stream" => {
            let mut events = crate::mock_sse_events(&chat);
            events.truncate(2);
            // Yield once before the cut so the server flushes the events (hyper flushes
            // whenever the body is not ready), then fail the body: hyper drops the connection.
            let frames = futures_util::stream::iter(
                events
                    .into_iter()
                    .map(|b| Ok::<_, BoxError>(Frame::data(b))),
            )
            .chain(futures_util::stream::once(async {
                tokio::task::yield_now().await;
                Err::<Frame<Bytes>, BoxError>(Box::new(Fault("cut stream")))
            }));
            let body = http_body_util::StreamBody::new(frames);
            guard.disarm();
            return Ok(sse_response(body.boxed_unsync()));
        }
        _ => {}
    }
    if let Some(ms) = model
        .strip_prefix("fault-slow-")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if model == "step-stream" && chat.is_stream() {
        let events = crate::mock_sse_events(&chat);
        let stream = futures_util::stream::unfold(
            (events.into_iter(), state.clone()),
            |(mut events, state)| async move {
                let event = events.next()?;
                match state.step.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return None,
                }
                Some((Ok::<_, Infallible>(Frame::data(event)), (events, state)))
            },
        );
        let body = http_body_util::StreamBody::new(stream)
            .map_err(|never| match never {})
            .boxed_unsync();
        return Ok(sse_response(
            GuardedBody { inner: body, guard }.boxed_unsync(),
        ));
    }
    let res = crate::mock_http_response(&chat);
    if chat.is_stream() {
        let (parts, body) = res.into_parts();
        return Ok(http::Response::from_parts(
            parts,
            GuardedBody { inner: body, guard }.boxed_unsync(),
        ));
    }
    guard.complete();
    Ok(res)
}
