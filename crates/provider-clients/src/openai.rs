//! The OpenAI-compatible upstream: a pooled hyper client (rustls, HTTP/1.1 and HTTP/2) as a
//! tower `Service`.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exchange::{ApiError, BoxError, ExchangeHandle, Outcome, ResponseBody};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use policy_engine::ProviderSpec;

use crate::{ProviderError, Secret};

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream host.
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// TCP keep-alive probe interval on upstream connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Largest non-streamed upstream answer accepted (bigger is a 502).
const MAX_BUFFERED_RESPONSE: usize = 32 * 1024 * 1024;
/// Largest part of an upstream 5xx body read to find its error message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest upstream error message quoted in a 502.
const MAX_QUOTED_MESSAGE: usize = 300;
/// `User-Agent` sent when the client sent none.
const DEFAULT_USER_AGENT: &str = concat!("palisade/", env!("CARGO_PKG_VERSION"));

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The future of the provider services: boxed, `Send`, cancels the upstream call on drop.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send>>,
}

impl ResponseFuture {
    pub(crate) fn new(
        fut: impl Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            inner: Box::pin(fut),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// An error in the middle of a streamed upstream body (connection cut, read timeout). The
/// client sees the response end abnormally; the exchange records the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamStreamError {
    /// One-line reason, naming the upstream.
    pub message: String,
}

fn root_store() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // Unparseable system certificates are skipped; the bundled roots remain.
            let _ = roots.add(cert);
        }
        roots
    })
}

fn tls_config(provider: &str) -> Result<rustls::ClientConfig, ProviderError> {
    let roots = root_store();
    if roots.is_empty() {
        return Err(ProviderError::NoRootCertificates {
            provider: provider.to_owned(),
        });
    }
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()
        .map_err(|source| ProviderError::Tls {
            provider: provider.to_owned(),
            source,
        })?
        .with_root_certificates(roots.clone())
        .with_no_client_auth())
}

/// `{base_url}/chat/completions` as a URI, checked.
fn endpoint(spec: &ProviderSpec) -> Result<http::Uri, ProviderError> {
    let invalid = |reason: &str| ProviderError::InvalidBaseUrl {
        provider: spec.name.clone(),
        base_url: spec.base_url.clone(),
        reason: reason.to_owned(),
    };
    let base = spec.base_url.trim_end_matches('/');
    let uri: http::Uri = format!("{base}/chat/completions")
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(invalid("the scheme must be http or https")),
    }
    if uri.authority().is_none() {
        return Err(invalid("a host is required"));
    }
    Ok(uri)
}

struct Inner {
    name: Arc<str>,
    endpoint: http::Uri,
    authorization: Option<HeaderValue>,
    key: Option<Secret>,
    client: HttpsClient,
    connect_timeout: Duration,
    request_timeout: Duration,
}

/// An OpenAI-compatible upstream as a tower `Service`. Cheap to clone (one shared pool).
///
/// It POSTs the request body as received (or, when a policy edited the request, the
/// re-serialized request) to `{base_url}/chat/completions` with the provider's own
/// `Authorization: Bearer <key>`; of the client's headers only `Accept` and `User-Agent`
/// are forwarded (never its `Authorization`). Upstream failures are OpenAI-style responses:
/// refused / unresolvable / TLS / reset / malformed / 5xx → 502 `upstream_error`,
/// timeout → 504 `upstream_timeout`.
///
/// Timeouts: `connect_timeout` bounds the TCP connect (a miss is a 504); `request_timeout`
/// bounds the time to the response headers and, for non-streamed answers, the whole answer;
/// for streamed answers it bounds every gap between two body frames.
#[derive(Clone)]
pub struct OpenAiUpstream {
    inner: Arc<Inner>,
}

impl fmt::Debug for OpenAiUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiUpstream")
            .field("name", &self.inner.name)
            .field("endpoint", &self.inner.endpoint)
            .field("key", &self.inner.key)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

impl OpenAiUpstream {
    /// An upstream for `spec`, authenticating with `key` (no `Authorization` header when
    /// `None`, e.g. a local server).
    pub fn new(spec: &ProviderSpec, key: Option<Secret>) -> Result<Self, ProviderError> {
        let endpoint = endpoint(spec)?;
        let authorization = match &key {
            Some(k) => {
                let mut v =
                    HeaderValue::try_from(format!("Bearer {}", k.expose())).map_err(|_| {
                        ProviderError::SecretNotHeaderSafe {
                            origin: spec.secret_key_ref.as_ref().map_or_else(
                                || "the provider key".to_owned(),
                                crate::secret::describe,
                            ),
                        }
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(spec.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&spec.name)?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(https);
        Ok(OpenAiUpstream {
            inner: Arc::new(Inner {
                name: spec.name.as_str().into(),
                endpoint,
                authorization,
                key,
                client,
                connect_timeout: spec.connect_timeout,
                request_timeout: spec.request_timeout,
            }),
        })
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The URL requests are sent to.
    pub fn endpoint(&self) -> &http::Uri {
        &self.inner.endpoint
    }
}

impl tower::Service<http::Request<Bytes>> for OpenAiUpstream {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The pooled client is always ready; connections are made per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> ResponseFuture {
        ResponseFuture::new(forward(self.inner.clone(), req))
    }
}

/// Records the failure on the exchange and answers with it.
fn fail(handle: &ExchangeHandle, err: ApiError) -> http::Response<ResponseBody> {
    {
        let mut ex = handle.lock();
        ex.outcome = Outcome::UpstreamError {
            status: err.status.as_u16(),
            reason: err.message.clone(),
        };
    }
    err.into_response()
}

fn not_forwarded(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
            // The body may be re-framed or edited downstream; hyper recomputes the length.
            | "content-length"
            // Cookies of the gateway's upstream session are not the client's.
            | "set-cookie"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !not_forwarded(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

async fn forward(
    inner: Arc<Inner>,
    mut req: http::Request<Bytes>,
) -> Result<http::Response<ResponseBody>, BoxError> {
    let handle = match ExchangeHandle::from_request(&mut req) {
        Ok(h) => h,
        Err(e) => return Ok(e.into_response()),
    };
    let body = {
        let mut ex = handle.lock();
        ex.provider = Some(inner.name.to_string());
        if ex.request_modified {
            ex.upstream_body()
        } else {
            Ok(req.body().clone())
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return Ok(fail(
                &handle,
                ApiError::internal(format!(
                    "request for upstream `{}` cannot be serialized: {e}",
                    inner.name
                )),
            ));
        }
    };

    let mut up = http::Request::new(Full::new(body));
    *up.method_mut() = http::Method::POST;
    *up.uri_mut() = inner.endpoint.clone();
    let headers = up.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = req.headers().get(header::ACCEPT) {
        headers.insert(header::ACCEPT, v.clone());
    }
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_USER_AGENT));
    headers.insert(header::USER_AGENT, ua);
    if let Some(auth) = &inner.authorization {
        headers.insert(header::AUTHORIZATION, auth.clone());
    }

    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started) + inner.request_timeout;
    let res = match tokio::time::timeout_at(deadline, inner.client.request(up)).await {
        Err(_) => return Ok(fail(&handle, timeout_error(&inner))),
        Ok(Err(e)) => return Ok(fail(&handle, classify(&inner, &e))),
        Ok(Ok(res)) => res,
    };
    handle.lock().upstream_latency = Some(started.elapsed());
    let status = res.status();

    if status.is_server_error() {
        let msg = match tokio::time::timeout_at(
            deadline,
            Limited::new(res.into_body(), MAX_ERROR_BODY).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => error_message(&collected.to_bytes(), inner.key.as_ref()),
            _ => None,
        };
        let message = match msg {
            Some(m) => format!("upstream `{}` answered {status}: {m}", inner.name),
            None => format!("upstream `{}` answered {status}", inner.name),
        };
        return Ok(fail(&handle, ApiError::bad_gateway(message)));
    }

    let (parts, incoming) = res.into_parts();
    let mut out_headers = HeaderMap::with_capacity(parts.headers.len());
    copy_headers(&parts.headers, &mut out_headers);

    let body: ResponseBody = if is_event_stream(&parts.headers) {
        UpstreamBody {
            inner: incoming,
            idle: inner.request_timeout,
            sleep: Box::pin(tokio::time::sleep(inner.request_timeout)),
            handle: handle.clone(),
            name: inner.name.clone(),
            status: status.as_u16(),
            finished: false,
        }
        .boxed_unsync()
    } else {
        let collected = match tokio::time::timeout_at(
            deadline,
            Limited::new(incoming, MAX_BUFFERED_RESPONSE).collect(),
        )
        .await
        {
            Err(_) => return Ok(fail(&handle, timeout_error(&inner))),
            Ok(Err(e)) => return Ok(fail(&handle, body_error(&inner, &*e))),
            Ok(Ok(c)) => c.to_bytes(),
        };
        if status.is_success()
            && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&collected)
        {
            return Ok(fail(
                &handle,
                ApiError::bad_gateway(format!(
                    "upstream `{}` sent a malformed response: the body is not json ({e})",
                    inner.name
                )),
            ));
        }
        exchange::full_body(collected)
    };

    handle.lock().outcome = Outcome::Forwarded {
        status: status.as_u16(),
    };
    let mut res = http::Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = out_headers;
    Ok(res)
}

fn timeout_error(inner: &Inner) -> ApiError {
    ApiError::gateway_timeout(format!(
        "upstream `{}` did not answer within {:?}",
        inner.name, inner.request_timeout
    ))
}

/// The next error in a chain. `io::Error::source` skips the error it wraps (it returns that
/// error's source), so a wrapped error is visited through `get_ref` instead.
fn next_in_chain<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return Some(inner);
    }
    e.source()
}

/// The innermost error of a chain (usually the most specific message).
fn deepest<'a>(e: &'a (dyn StdError + 'static)) -> &'a (dyn StdError + 'static) {
    let mut cur = e;
    while let Some(next) = next_in_chain(cur) {
        cur = next;
    }
    cur
}

fn chain_has<T: StdError + 'static>(
    e: &(dyn StdError + 'static),
    pred: impl Fn(&T) -> bool,
) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>()
            && pred(t)
        {
            return true;
        }
        cur = next_in_chain(c);
    }
    false
}

fn io_kind(e: &(dyn StdError + 'static), kind: std::io::ErrorKind) -> bool {
    chain_has::<std::io::Error>(e, |io| io.kind() == kind)
}

fn is_tls(e: &(dyn StdError + 'static)) -> bool {
    chain_has::<rustls::Error>(e, |_| true)
        || chain_has::<std::io::Error>(e, |io| {
            io.get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        })
}

fn is_dns(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.to_string() == "dns error" {
            return true;
        }
        cur = next_in_chain(c);
    }
    false
}

/// Maps a client error (no response headers received) to the client's answer.
fn classify(inner: &Inner, err: &hyper_util::client::legacy::Error) -> ApiError {
    let e: &(dyn StdError + 'static) = err;
    let detail = deepest(e).to_string();
    let name = &inner.name;
    if err.is_connect() {
        if io_kind(e, std::io::ErrorKind::TimedOut) {
            return ApiError::gateway_timeout(format!(
                "upstream `{name}` did not accept a connection within {:?}",
                inner.connect_timeout
            ));
        }
        if io_kind(e, std::io::ErrorKind::ConnectionRefused) {
            return ApiError::bad_gateway(format!(
                "upstream `{name}` refused the connection: {detail}"
            ));
        }
        if is_dns(e) {
            return ApiError::bad_gateway(format!(
                "upstream `{name}` host could not be resolved: {detail}"
            ));
        }
        if is_tls(e) {
            return ApiError::bad_gateway(format!(
                "upstream `{name}` tls handshake failed: {detail}"
            ));
        }
        return ApiError::bad_gateway(format!("upstream `{name}` could not be reached: {detail}"));
    }
    if is_tls(e) {
        return ApiError::bad_gateway(format!("upstream `{name}` tls handshake failed: {detail}"));
    }
    body_error(inner, e)
}

/// Maps an error after the request was sent (reset, malformed, cut body).
fn body_error(inner: &Inner, e: &(dyn StdError + 'static)) -> ApiError {
    let detail = deepest(e).to_string();
    let name = &inner.name;
    if chain_has::<hyper::Error>(e, hyper::Error::is_parse)
        || chain_has::<hyper::Error>(e, hyper::Error::is_parse_status)
    {
        return ApiError::bad_gateway(format!(
            "upstream `{name}` sent a malformed response: {detail}"
        ));
    }
    if chain_has::<http_body_util::LengthLimitError>(e, |_| true) {
        return ApiError::bad_gateway(format!(
            "upstream `{name}` sent a response larger than {MAX_BUFFERED_RESPONSE} bytes"
        ));
    }
    if io_kind(e, std::io::ErrorKind::TimedOut)
        || chain_has::<hyper::Error>(e, hyper::Error::is_timeout)
    {
        return timeout_error(inner);
    }
    ApiError::bad_gateway(format!(
        "upstream `{name}` closed the connection before answering: {detail}"
    ))
}

/// The `error.message` of an OpenAI-style error body, with the provider key scrubbed and
/// the length bounded; `None` when the body has none.
fn error_message(body: &[u8], key: Option<&Secret>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let msg = v
        .get("error")
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(serde_json::Value::as_str)?;
    let mut msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(k) = key
        && !k.expose().is_empty()
    {
        msg = msg.replace(k.expose(), "*****");
    }
    if msg.chars().count() > MAX_QUOTED_MESSAGE {
        msg = msg.chars().take(MAX_QUOTED_MESSAGE).collect::<String>() + "…";
    }
    (!msg.is_empty()).then_some(msg)
}

/// A streamed upstream body: frames pass through as they arrive; a cut or a read timeout
/// becomes a body error (the client's response ends abnormally) and is recorded.
struct UpstreamBody {
    inner: hyper::body::Incoming,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    handle: ExchangeHandle,
    name: Arc<str>,
    status: u16,
    finished: bool,
}

impl UpstreamBody {
    fn failed(&mut self, message: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finished = true;
        {
            let mut ex = self.handle.lock();
            if let Some(stream) = ex.stream.as_mut() {
                stream.completed = false;
            }
            ex.outcome = Outcome::UpstreamError {
                status: self.status,
                reason: message.clone(),
            };
        }
        tracing::warn!(provider = %self.name, reason = %message, "upstream stream failed");
        Poll::Ready(Some(Err(Box::new(UpstreamStreamError { message }))))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let detail = deepest(&e).to_string();
                let message = format!("upstream `{}` cut the stream: {detail}", this.name);
                this.failed(message)
            }
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    let message = format!(
                        "upstream `{}` sent nothing for {:?} in the middle of the stream",
                        this.name, this.idle
                    );
                    this.failed(message)
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_scrubs_the_key_and_bounds_length() {
        let key = Secret::new(format!("sk-{}", "k".repeat(30)));
        let body = format!(
            r#"{{"error":{{"message":"boom with {} inside","type":"server_error"}}}}"#,
            key.expose()
        );
        assert_eq!(
            error_message(body.as_bytes(), Some(&key)).as_deref(),
            Some("boom with ***** inside")
        );
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "a".repeat(400));
        let m = error_message(long.as_bytes(), None).unwrap();
        assert_eq!(m.chars().count(), MAX_QUOTED_MESSAGE + 1);
        assert_eq!(error_message(b"not json", None), None);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        from.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        from.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        from.insert("x-request-id", HeaderValue::from_static("r1"));
        let mut to = HeaderMap::new();
        copy_headers(&from, &mut to);
        assert_eq!(to.len(), 1);
        assert_eq!(to["x-request-id"], "r1");
    }
}
