//! The load upstream: a mock OpenAI server speaking the real wire format. Answers are the
//! built-in mock provider's (`provider_clients::mock_http_response`, the same bytes as the
//! `mock-upstream` binary); streamed answers can pace their SSE events (`--chunk-delay-ms`)
//! so time-to-first-token and inter-chunk latency mean something.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use exchange::{ApiError, ChatRequest, ResponseBody};
use http::{Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Serves until the process ends.
pub async fn serve(listen: SocketAddr, chunk_delay: Duration) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "load-upstream listening on http://{}/v1",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, chunk_delay));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: http::Request<Incoming>,
    chunk_delay: Duration,
) -> Result<http::Response<ResponseBody>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/v1/chat/completions" {
        return Ok(
            ApiError::not_found(format!("unknown route `{}`", req.uri().path())).into_response(),
        );
    }
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return Ok(ApiError::bad_request(format!("body: {e}")).into_response()),
    };
    let chat: ChatRequest = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return Ok(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("invalid request body: {e}"),
            )
            .into_response());
        }
    };
    if !chat.is_stream() || chunk_delay.is_zero() {
        return Ok(provider_clients::mock_http_response(&chat));
    }
    // Paced stream: the first event at once, every later one after `chunk_delay`.
    let events = provider_clients::mock_sse_events(&chat);
    let stream = futures_util::stream::unfold(
        (events.into_iter(), true),
        move |(mut events, first)| async move {
            let event: Bytes = events.next()?;
            if !first {
                tokio::time::sleep(chunk_delay).await;
            }
            Some((Ok::<_, Infallible>(Frame::data(event)), (events, false)))
        },
    );
    let body = http_body_util::StreamBody::new(stream)
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut res = http::Response::new(body);
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    Ok(res)
}
