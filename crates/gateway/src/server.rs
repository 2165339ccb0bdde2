//! The HTTP server: routes, body limits, admin API, reload, shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use exchange::{ApiError, ExchangeHandle, ResponseBody, full_body, json_response};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use policy_engine::CompiledPack;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::GatewayError;
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::stack::{PolicyStack, StackParts, audit_context};

/// Environment variable holding the admin token (unless the pack names one).
pub const ADMIN_TOKEN_ENV: &str = "PALISADE_ADMIN_TOKEN";

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Listen address (default `127.0.0.1:4100`; port 0 picks one).
    pub listen: SocketAddr,
    /// Data directory for the embedded store (default `./palisade-data`).
    pub data_dir: PathBuf,
    /// The policy pack file.
    pub policy_path: PathBuf,
    /// A candidate pack evaluated in log-only shadow mode.
    pub shadow_policy: Option<PathBuf>,
}

impl GatewayConfig {
    /// Defaults with the given pack.
    pub fn new(policy_path: impl Into<PathBuf>) -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4100)),
            data_dir: PathBuf::from("palisade-data"),
            policy_path: policy_path.into(),
            shadow_policy: None,
        }
    }
}

pub(crate) struct State {
    config: GatewayConfig,
    parts: StackParts,
    stack: PolicyStack,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    instance_id: String,
}

/// A gateway running in the background (tests, embedding in a larger process).
pub struct RunningGateway {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, the `base_url` for OpenAI clients.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Reloads the pack from its file; a bad pack is refused and the old one keeps serving.
    pub fn reload(&self) -> Result<String, GatewayError> {
        reload(&self.state)
    }

    /// The key store (tests create keys through it).
    pub fn keys(&self) -> Arc<KeyStore> {
        self.state.parts.keys.clone()
    }

    /// Stops accepting, lets in-flight requests finish, flushes the audit store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        if let Err(e) = self.state.parts.audit.flush().await {
            tracing::error!(error = %e, "audit store flush failed at shutdown");
        }
        let audit = self.state.parts.audit.clone();
        // `close` commits what is queued, signs a final checkpoint and joins the writer thread.
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        if let Err(e) = self.state.parts.cost.flush() {
            tracing::error!(error = %e, "cost ledger flush failed at shutdown");
        }
    }
}

fn load_pack(path: &std::path::Path) -> Result<CompiledPack, GatewayError> {
    CompiledPack::load(path).map_err(|source| GatewayError::Pack {
        path: path.to_path_buf(),
        source,
    })
}

async fn build_state(config: GatewayConfig) -> Result<Arc<State>, GatewayError> {
    let pack = load_pack(&config.policy_path)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| GatewayError::Io {
        what: format!(
            "cannot create data directory `{}`",
            config.data_dir.display()
        ),
        source,
    })?;
    let instance_id = format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut parts = StackParts::open(pack, &config.data_dir, &instance_id)?;
    if let Some(shadow) = &config.shadow_policy {
        parts.shadow = Some(crate::replay::ShadowPack::new(load_pack(shadow)?));
    }
    let stack = parts.build();
    Ok(Arc::new(State {
        config,
        parts,
        stack,
        metrics: Arc::new(Metrics::default()),
        ready: AtomicBool::new(true),
        instance_id,
    }))
}

fn reload(state: &State) -> Result<String, GatewayError> {
    let result = (|| {
        let pack = load_pack(&state.config.policy_path)?;
        // The shadow pack reloads with the active one; a bad one refuses the whole reload.
        let shadow_pack = match &state.config.shadow_policy {
            Some(p) => Some(load_pack(p)?),
            None => None,
        };
        state
            .parts
            .provider
            .reload(&pack.settings.providers)
            .map_err(GatewayError::Provider)?;
        state
            .parts
            .cost
            .reload(pack.settings.cost.clone())
            .map_err(GatewayError::Cost)?;
        state
            .parts
            .audit_ctx
            .store(Arc::new(audit_context(&pack, &state.instance_id)));
        let summary = format!(
            "{} {} ({})",
            pack.meta.name, pack.meta.version, &pack.meta.content_sha256
        );
        state.parts.pack.store(Arc::new(pack));
        if let (Some(p), Some(shadow)) = (shadow_pack, &state.parts.shadow) {
            shadow.pack.store(Arc::new(p));
        }
        Ok(summary)
    })();
    state.metrics.reload(result.is_ok());
    match &result {
        Ok(s) => tracing::info!(pack = %s, "policy pack reloaded"),
        Err(e) => {
            tracing::error!(error = %e, "policy pack reload refused; the previous pack keeps serving")
        }
    }
    result
}

/// Reloads on a blocking thread: compiling a pack and re-reading budget counters from the
/// ledger are synchronous work that must not stall the runtime.
async fn reload_blocking(state: &Arc<State>) -> Result<String, GatewayError> {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || reload(&st)).await {
        Ok(r) => r,
        Err(e) => Err(GatewayError::Io {
            what: "reload task failed".to_owned(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Starts the gateway in the background and returns once it is listening.
pub async fn spawn(config: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| GatewayError::Io {
        what: "cannot read the bound address".to_owned(),
        source,
    })?;
    let state = build_state(config).await?;
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, state.clone(), rx));
    Ok(RunningGateway {
        addr,
        state,
        shutdown: tx,
        task,
    })
}

/// Runs the gateway until Ctrl-C or SIGTERM; SIGHUP reloads the pack.
pub async fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let running = spawn(config).await?;
    let pack = running.state.parts.pack.load();
    tracing::info!(
        addr = %running.addr,
        pack = %pack.meta.name,
        version = %pack.meta.version,
        data_dir = %running.state.config.data_dir.display(),
        "palisade gateway listening on http://{}/v1",
        running.addr
    );
    drop(pack);
    wait_for_signals(&running.state).await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signals(state: &Arc<State>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = reload_blocking(state).await; }
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_state: &Arc<State>) {
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await;
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    ChatCompletions,
    Models,
    Healthz,
    Readyz,
    Metrics,
    AdminReload,
    Enforce,
    AdminApprovals,
    NotFound,
    MethodNotAllowed,
}

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        let path = path.trim_end_matches('/');
        if crate::approvals::is_approvals_path(path) {
            // Methods are checked per sub-route by the approvals API.
            return Route::AdminApprovals;
        }
        let (route, allowed) = match path {
            "/v1/chat/completions" | "/chat/completions" => (Route::ChatCompletions, Method::POST),
            "/v1/models" | "/models" => (Route::Models, Method::GET),
            "/healthz" => (Route::Healthz, Method::GET),
            "/readyz" => (Route::Readyz, Method::GET),
            "/metrics" => (Route::Metrics, Method::GET),
            "/admin/reload" => (Route::AdminReload, Method::POST),
            "/v1/enforce" | "/enforce" => (Route::Enforce, Method::POST),
            _ => return Route::NotFound,
        };
        if *method == allowed || (allowed == Method::GET && *method == Method::HEAD) {
            route
        } else {
            Route::MethodNotAllowed
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Models => "models",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::AdminReload => "admin_reload",
            Route::Enforce => "enforce",
            Route::AdminApprovals => "admin_approvals",
            Route::NotFound => "not_found",
            Route::MethodNotAllowed => "method_not_allowed",
        }
    }
}

async fn handle(
    state: Arc<State>,
    req: http::Request<Incoming>,
) -> Result<http::Response<ResponseBody>, Infallible> {
    let route = Route::of(req.method(), req.uri().path());
    let res = match route {
        Route::ChatCompletions => chat_completions(&state, req).await,
        Route::Enforce => {
            let limit = state.parts.pack.load().settings.limits.max_body_bytes;
            match read_body(req, limit).await {
                Ok(r) => crate::enforce::enforce(&state.parts, r).await,
                Err(e) => e.into_response(),
            }
        }
        Route::AdminApprovals => match check_admin(&state, req.headers()) {
            Err(e) => e.into_response(),
            Ok(()) => {
                let method = req.method().clone();
                let path = req.uri().path().to_owned();
                let query = req.uri().query().map(str::to_owned);
                match read_body(req, 64 * 1024).await {
                    Ok(r) => crate::approvals::handle(
                        state.parts.policy_state.approvals(),
                        &method,
                        &path,
                        query.as_deref(),
                        r.body(),
                    ),
                    Err(e) => e.into_response(),
                }
            }
        },
        Route::Models => json_response(
            StatusCode::OK,
            &state.parts.provider.router().models_response_json(),
        ),
        Route::Healthz => json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        Route::Readyz => readyz(&state).await,
        Route::Metrics => metrics(&state),
        Route::AdminReload => match check_admin(&state, req.headers()) {
            Err(e) => e.into_response(),
            Ok(()) => match reload_blocking(&state).await {
                Ok(summary) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({"status": "reloaded", "pack": summary}),
                ),
                Err(e) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_policy_pack",
                    e.to_string(),
                )
                .with_code("pack_invalid")
                .into_response(),
            },
        },
        Route::MethodNotAllowed => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!(
                "method {} is not allowed on {}",
                req.method(),
                req.uri().path()
            ),
        )
        .into_response(),
        Route::NotFound => ApiError::not_found(format!(
            "unknown URL: {} {}",
            req.method(),
            req.uri().path()
        ))
        .with_code("unknown_url")
        .into_response(),
    };
    state.metrics.request(route.label(), res.status().as_u16());
    Ok(res)
}

async fn readyz(state: &State) -> http::Response<ResponseBody> {
    let store_ok = state.parts.audit.flush().await.is_ok();
    if state.ready.load(Ordering::Relaxed) && store_ok {
        json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ready", "pack": state.parts.pack.load().meta.name}),
        )
    } else {
        ApiError::unavailable(if store_ok {
            "not ready"
        } else {
            "audit store unavailable"
        })
        .into_response()
    }
}

fn metrics(state: &State) -> http::Response<ResponseBody> {
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);
    state.parts.cost.render_prometheus(&mut out);
    let mut res = http::Response::new(full_body(out));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// The admin token: the pack's `admin.token_ref`, else `PALISADE_ADMIN_TOKEN`. Without one the
/// admin API is closed.
fn check_admin(state: &State, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let pack = state.parts.pack.load();
    let expected = match &pack.settings.admin_token_ref {
        Some(r) => provider_clients::resolve_secret(r)
            .ok()
            .map(|s| s.expose().to_owned()),
        None => std::env::var(ADMIN_TOKEN_ENV)
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let Some(expected) = expected else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!(
                "the admin API is disabled: set {ADMIN_TOKEN_ENV} or `admin.token_ref` in the pack"
            ),
        ));
    };
    let presented = crate::identity::presented_key(headers).unwrap_or("");
    if presented.len() == expected.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            presented.as_bytes(),
            expected.as_bytes(),
        ))
    {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid admin token").with_code("invalid_admin_token"))
    }
}

async fn read_body(
    req: http::Request<Incoming>,
    limit: usize,
) -> Result<http::Request<Bytes>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body exceeds the limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    };
    if let Some(len) = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let (parts, body) = req.into_parts();
    let collected = http_body_util::Limited::new(body, limit).collect().await;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "could not read the request body: {e}"
            )));
        }
    };
    Ok(http::Request::from_parts(parts, bytes))
}

async fn chat_completions(
    state: &State,
    req: http::Request<Incoming>,
) -> http::Response<ResponseBody> {
    let limit = state.parts.pack.load().settings.limits.max_body_bytes;
    let mut req = match read_body(req, limit).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let handle = match ExchangeHandle::from_request(&mut req) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let result = state.stack.clone().oneshot(req).await;
    let mut res = match result {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "request failed inside the gateway");
            match e.downcast::<ApiError>() {
                Ok(api) => api.into_response(),
                Err(_) => ApiError::internal("internal gateway error").into_response(),
            }
        }
    };
    let ex = handle.lock();
    state.metrics.exchange(&ex);
    res.headers_mut().insert(
        exchange::HEADER_DECISION,
        http::HeaderValue::from_static(ex.decision().as_str()),
    );
    tracing::info!(
        agent = ex.identity.agent_or_anonymous(),
        conversation = %ex.conversation_id,
        model = %ex.request.model,
        decision = %ex.decision(),
        status = res.status().as_u16(),
        latency_ms = ex.started.elapsed().as_secs_f64() * 1000.0,
        "chat completion"
    );
    drop(ex);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::of(&Method::POST, "/v1/chat/completions"),
            Route::ChatCompletions
        );
        assert_eq!(
            Route::of(&Method::GET, "/v1/chat/completions"),
            Route::MethodNotAllowed
        );
        assert_eq!(Route::of(&Method::GET, "/v1/models/"), Route::Models);
        assert_eq!(Route::of(&Method::GET, "/v2/nothing"), Route::NotFound);
        assert_eq!(
            Route::of(&Method::POST, "/admin/reload"),
            Route::AdminReload
        );
    }
}
