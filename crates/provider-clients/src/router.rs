//! Model routing: the request's `model` picks the provider.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use exchange::{ApiError, BoxError, ExchangeHandle, Outcome, ResponseBody};
use policy_engine::{MissingKey, ProviderKind, ProviderSpec};

use crate::{MockProvider, OpenAiUpstream, ProviderError, ResponseFuture, resolve_secret};

/// How many model names a `model_not_found` answer lists.
const LISTED_MODELS: usize = 5;

/// A model served by the gateway, for `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Model name.
    pub id: String,
    /// Provider that serves it.
    pub provider: String,
}

/// What actually answers for a provider.
#[derive(Debug, Clone)]
pub enum Backend {
    /// An OpenAI-compatible HTTP upstream.
    OpenAi(OpenAiUpstream),
    /// The built-in mock (configured `kind: mock`, or `on_missing_key: mock` without a key).
    Mock(MockProvider),
}

impl Backend {
    /// Sends one request.
    pub fn call(&self, req: http::Request<Bytes>) -> ResponseFuture {
        match self {
            Backend::OpenAi(up) => tower::Service::call(&mut up.clone(), req),
            Backend::Mock(mock) => {
                let mut req = req;
                let res = mock.respond(&mut req);
                ResponseFuture::new(std::future::ready(Ok(res)))
            }
        }
    }

    /// Whether this is the built-in mock.
    pub fn is_mock(&self) -> bool {
        matches!(self, Backend::Mock(_))
    }
}

/// One configured provider, ready to serve.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Provider name.
    pub name: String,
    /// The model entries as configured (exact names and `*` / `prefix*` patterns).
    pub models: Vec<String>,
    /// What answers.
    pub backend: Backend,
}

/// The immutable routing table built from the pack's providers.
///
/// Routing: an exact model name wins (the first provider in pack order that lists it);
/// otherwise the first pattern, in pack order, that matches: `*` matches every model,
/// `prefix*` every model starting with `prefix`.
pub struct ProviderRouter {
    providers: Vec<Provider>,
    exact: HashMap<String, usize>,
    patterns: Vec<(String, usize)>,
}

impl fmt::Debug for ProviderRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderRouter")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

fn build_provider(spec: &ProviderSpec) -> Result<Provider, ProviderError> {
    if spec.models.is_empty() {
        return Err(ProviderError::NoModels {
            provider: spec.name.clone(),
        });
    }
    let backend = match spec.kind {
        ProviderKind::Mock => Backend::Mock(MockProvider::new(spec.name.as_str())),
        ProviderKind::OpenAi => {
            let key = match &spec.secret_key_ref {
                None => Ok(None),
                Some(r) => resolve_secret(r).map(Some),
            };
            match (key, spec.on_missing_key) {
                (Ok(key), _) => Backend::OpenAi(OpenAiUpstream::new(spec, key)?),
                (Err(_), MissingKey::Mock) => {
                    tracing::info!(
                        provider = %spec.name,
                        "provider key not available; serving its models with the built-in mock"
                    );
                    Backend::Mock(MockProvider::new(spec.name.as_str()))
                }
                (Err(e), MissingKey::Fail) => {
                    return Err(ProviderError::MissingKey {
                        provider: spec.name.clone(),
                        source: Box::new(e),
                    });
                }
            }
        }
    };
    Ok(Provider {
        name: spec.name.clone(),
        models: spec.models.clone(),
        backend,
    })
}

impl ProviderRouter {
    /// Builds the table: resolves every key, sets up every client. A provider whose key
    /// cannot be resolved becomes the mock when its `on_missing_key` is `mock`, and is an
    /// error (naming the provider and the variable or file) when it is `fail`.
    pub fn new(specs: &[ProviderSpec]) -> Result<ProviderRouter, ProviderError> {
        let mut providers = Vec::with_capacity(specs.len());
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(ProviderError::DuplicateProvider {
                    provider: spec.name.clone(),
                });
            }
            let p = build_provider(spec)?;
            for m in &p.models {
                if m.ends_with('*') {
                    patterns.push((m.trim_end_matches('*').to_owned(), i));
                } else {
                    exact.entry(m.clone()).or_insert(i);
                }
            }
            providers.push(p);
        }
        Ok(ProviderRouter {
            providers,
            exact,
            patterns,
        })
    }

    /// The providers, in pack order.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The provider for `model`, if any.
    pub fn route(&self, model: &str) -> Option<&Provider> {
        if let Some(i) = self.exact.get(model) {
            return self.providers.get(*i);
        }
        self.patterns
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
            .and_then(|(_, i)| self.providers.get(*i))
    }

    /// The models with exact names, in pack order, each once (patterns are not listed).
    pub fn models(&self) -> Vec<ModelInfo> {
        let mut out: Vec<ModelInfo> = Vec::new();
        for p in &self.providers {
            for m in &p.models {
                if !m.ends_with('*') && !out.iter().any(|o| &o.id == m) {
                    out.push(ModelInfo {
                        id: m.clone(),
                        provider: p.name.clone(),
                    });
                }
            }
        }
        out
    }

    /// `GET /v1/models` in OpenAI's list format; `owned_by` is the provider name.
    pub fn models_response_json(&self) -> serde_json::Value {
        let data: Vec<serde_json::Value> = self
            .models()
            .into_iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id,
                    "object": "model",
                    "created": 0,
                    "owned_by": m.provider,
                })
            })
            .collect();
        serde_json::json!({ "object": "list", "data": data })
    }

    /// The 404 answer for a model no provider serves.
    pub fn model_not_found(&self, model: &str) -> ApiError {
        let models = self.models();
        let mut listed: Vec<String> = models
            .iter()
            .take(LISTED_MODELS)
            .map(|m| format!("`{}`", m.id))
            .collect();
        if models.len() > LISTED_MODELS {
            listed.push(format!("and {} more", models.len() - LISTED_MODELS));
        }
        let available = if listed.is_empty() {
            "no models are configured".to_owned()
        } else {
            format!("available: {}", listed.join(", "))
        };
        ApiError::new(
            http::StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model `{model}` is not served by this gateway; {available}"),
        )
        .with_code("model_not_found")
        .with_param("model")
    }
}

/// The provider stage of the stack: routes each request by its `model` to the provider's
/// backend. The routing table is swapped atomically by [`ProviderService::reload`].
#[derive(Clone, Debug)]
pub struct ProviderService {
    router: Arc<ArcSwap<ProviderRouter>>,
}

impl ProviderService {
    /// Builds the router from `specs` (see [`ProviderRouter::new`]).
    pub fn new(specs: &[ProviderSpec]) -> Result<Self, ProviderError> {
        ProviderRouter::new(specs).map(Self::from_router)
    }

    /// A service over an already built router.
    pub fn from_router(router: ProviderRouter) -> Self {
        ProviderService {
            router: Arc::new(ArcSwap::from_pointee(router)),
        }
    }

    /// Rebuilds the router from `specs` and swaps it in; on error the old one keeps serving.
    /// Requests in flight finish on the router they started with.
    pub fn reload(&self, specs: &[ProviderSpec]) -> Result<(), ProviderError> {
        let next = ProviderRouter::new(specs)?;
        self.router.store(Arc::new(next));
        Ok(())
    }

    /// The current routing table.
    pub fn router(&self) -> Arc<ProviderRouter> {
        self.router.load_full()
    }
}

impl tower::Service<http::Request<Bytes>> for ProviderService {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> ResponseFuture {
        let handle = match ExchangeHandle::from_request(&mut req) {
            Ok(h) => h,
            Err(e) => return ResponseFuture::new(std::future::ready(Ok(e.into_response()))),
        };
        let router = self.router.load();
        let backend = {
            let ex = handle.lock();
            router
                .route(&ex.request.model)
                .map(|p| p.backend.clone())
                .ok_or_else(|| router.model_not_found(&ex.request.model))
        };
        match backend {
            Ok(b) => b.call(req),
            Err(e) => {
                handle.lock().outcome = Outcome::Rejected {
                    status: e.status.as_u16(),
                    code: "model_not_found".to_owned(),
                };
                ResponseFuture::new(std::future::ready(Ok(e.into_response())))
            }
        }
    }
}
