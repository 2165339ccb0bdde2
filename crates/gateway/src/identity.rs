//! Identity: virtual key → agent/role/workflow, header claims, conversation id, and the
//! sender → recipient edges of a turn. Runs first in the policy-aware stack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use exchange::{ApiError, BoxError, Edge, Exchange, ExchangeHandle, ResponseBody, Role};
use policy_engine::{AuthMode, CompiledPack, SharedPack};
use sha2::{Digest, Sha256};

use crate::keys::KeyStore;

/// Resolves who is calling and fills the exchange's identity, conversation and edges.
#[derive(Clone)]
pub struct IdentityLayer {
    keys: Arc<KeyStore>,
    pack: SharedPack<CompiledPack>,
}

impl IdentityLayer {
    /// A layer over the key store and the live pack (for `auth:`).
    pub fn new(keys: Arc<KeyStore>, pack: SharedPack<CompiledPack>) -> Self {
        IdentityLayer { keys, pack }
    }
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner,
            keys: self.keys.clone(),
            pack: self.pack.clone(),
        }
    }
}

/// See [`IdentityLayer`].
#[derive(Clone)]
pub struct IdentityService<S> {
    inner: S,
    keys: Arc<KeyStore>,
    pack: SharedPack<CompiledPack>,
}

type BoxFut = Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send>>;

/// The presented key: `Authorization: Bearer <key>` or `api-key: <key>`.
pub fn presented_key(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn header_str(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_owned)
}

/// Fills identity (from `record` or claims), conversation id and edges.
pub fn resolve(
    ex: &mut Exchange,
    headers: &http::HeaderMap,
    record: Option<&crate::keys::KeyRecord>,
) {
    ex.identity.claimed_agent = header_str(headers, exchange::HEADER_AGENT);
    ex.identity.claimed_workflow = header_str(headers, exchange::HEADER_WORKFLOW);
    match record {
        Some(r) => {
            ex.identity.authenticated = true;
            ex.identity.key_id = Some(r.id.clone());
            ex.identity.agent = Some(r.agent.clone());
            ex.identity.role = r.role.clone();
            ex.identity.workflow = r
                .workflow
                .clone()
                .or_else(|| ex.identity.claimed_workflow.clone());
        }
        None => {
            ex.identity.authenticated = false;
            ex.identity.agent = ex.identity.claimed_agent.clone();
            ex.identity.workflow = ex.identity.claimed_workflow.clone();
        }
    }
    ex.conversation_id = match header_str(headers, exchange::HEADER_CONVERSATION) {
        Some(c) => c,
        None => conversation_fingerprint(ex),
    };
    let (senders, edges) = senders_and_edges(ex);
    ex.senders = senders;
    ex.edges = edges;
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            let n = name.as_str();
            let secret_like = ["key", "token", "secret", "auth", "cookie", "password"]
                .iter()
                .any(|w| n.contains(w));
            if n.starts_with("x-") && !secret_like {
                ex.captured_headers
                    .insert(name.as_str().to_owned(), v.to_owned());
            }
        }
    }
}

/// A stable id for a conversation the client did not name: SHA-256 over the workflow and the
/// first non-system message's text. Every agent of an AutoGen group chat sees the same task
/// as its first non-system message (each has its own system prompt), so their turns link up.
/// Limit: two conversations that open with the identical task in the same workflow share an
/// id; set `X-Palisade-Conversation` to separate them.
pub fn conversation_fingerprint(ex: &Exchange) -> String {
    let mut h = Sha256::new();
    h.update(ex.identity.workflow.as_deref().unwrap_or("").as_bytes());
    h.update([0u8]);
    if let Some(first) = ex
        .request
        .messages
        .iter()
        .find(|m| !matches!(m.role, Role::System | Role::Developer))
    {
        h.update(first.text().as_bytes());
    }
    let d = h.finalize();
    format!("conv-{}", hex::encode(&d[..8]))
}

/// Sender agents (distinct `name`s of messages not written by the caller) and the edges of
/// the messages delivered to the caller since its own last message.
pub fn senders_and_edges(ex: &Exchange) -> (Vec<String>, Vec<Edge>) {
    let caller = ex.identity.agent.clone();
    let mut senders: Vec<String> = Vec::new();
    let mut edges: Vec<Edge> = Vec::new();
    let msgs = &ex.request.messages;
    let last_own = msgs.iter().rposition(|m| {
        m.role == Role::Assistant && (m.name.is_none() || m.name.as_deref() == caller.as_deref())
    });
    for (i, m) in msgs.iter().enumerate() {
        if matches!(
            m.role,
            Role::System | Role::Developer | Role::Tool | Role::Function
        ) {
            continue;
        }
        let Some(name) = m.name.as_deref() else {
            continue;
        };
        if Some(name) == caller.as_deref() {
            continue;
        }
        if !senders.iter().any(|s| s == name) {
            senders.push(name.to_owned());
        }
        if last_own.is_none_or(|lo| i > lo) {
            let e = Edge {
                from: name.to_owned(),
                to: caller.clone().unwrap_or_else(|| "anonymous".to_owned()),
            };
            if !edges.contains(&e) {
                edges.push(e);
            }
        }
    }
    (senders, edges)
}

impl<S> tower::Service<http::Request<Bytes>> for IdentityService<S>
where
    S: tower::Service<
            http::Request<Bytes>,
            Response = http::Response<ResponseBody>,
            Error = BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFut;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        let handle = match ExchangeHandle::from_request(&mut req) {
            Ok(h) => h,
            Err(e) => return Box::pin(async move { Ok(e.into_response()) }),
        };
        let auth = self.pack.load().settings.auth;
        let record = match presented_key(req.headers()) {
            None => None,
            Some(k) => match self.keys.authenticate(k) {
                Ok(Some(r)) => Some(r),
                Ok(None) if auth == AuthMode::Required => {
                    return Box::pin(async {
                        Ok(
                            ApiError::unauthorized("invalid, unknown or revoked Palisade API key")
                                .into_response(),
                        )
                    });
                }
                // Optional auth: an unknown key (e.g. a placeholder like "sk-...") is anonymous.
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "key store lookup failed");
                    return Box::pin(async {
                        Ok(ApiError::unavailable("key store unavailable").into_response())
                    });
                }
            },
        };
        if record.is_none() && auth == AuthMode::Required {
            return Box::pin(async {
                Ok(ApiError::unauthorized(
                    "missing Palisade API key: send `Authorization: Bearer <key>` (create one with `palisade keys create`)",
                )
                .into_response())
            });
        }
        {
            let mut ex = handle.lock();
            resolve(&mut ex, req.headers(), record.as_ref());
        }
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move { inner.call(req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(body: &str, agent: Option<&str>) -> Exchange {
        let mut e = Exchange::parse(Bytes::from(body.to_owned())).unwrap();
        e.identity.agent = agent.map(str::to_owned);
        e
    }

    #[test]
    fn autogen_turns_share_a_conversation_id() {
        let a = ex(
            r#"{"model":"m","messages":[{"role":"system","content":"You are A"},{"role":"user","content":"Plan a trip","name":"user"}]}"#,
            Some("alice"),
        );
        let b = ex(
            r#"{"model":"m","messages":[{"role":"system","content":"You are B"},{"role":"user","content":"Plan a trip","name":"user"},{"role":"user","content":"step 1","name":"alice"}]}"#,
            Some("bob"),
        );
        assert_eq!(conversation_fingerprint(&a), conversation_fingerprint(&b));
        let c = ex(
            r#"{"model":"m","messages":[{"role":"user","content":"Other"}]}"#,
            None,
        );
        assert_ne!(conversation_fingerprint(&a), conversation_fingerprint(&c));
    }

    #[test]
    fn edges_come_from_messages_since_the_callers_last_turn() {
        let e = ex(
            r#"{"model":"m","messages":[
              {"role":"user","content":"task","name":"user"},
              {"role":"user","content":"x","name":"bob"},
              {"role":"assistant","content":"mine","name":"alice"},
              {"role":"user","content":"y","name":"bob"},
              {"role":"user","content":"z","name":"carol"}]}"#,
            Some("alice"),
        );
        let (senders, edges) = senders_and_edges(&e);
        assert_eq!(senders, vec!["user", "bob", "carol"]);
        assert_eq!(
            edges,
            vec![
                Edge {
                    from: "bob".into(),
                    to: "alice".into()
                },
                Edge {
                    from: "carol".into(),
                    to: "alice".into()
                }
            ]
        );
    }

    #[test]
    fn presented_key_reads_bearer_and_api_key() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer pal_x"),
        );
        assert_eq!(presented_key(&h), Some("pal_x"));
        let mut h = http::HeaderMap::new();
        h.insert("api-key", http::HeaderValue::from_static("pal_y"));
        assert_eq!(presented_key(&h), Some("pal_y"));
        assert_eq!(presented_key(&http::HeaderMap::new()), None);
    }
}
