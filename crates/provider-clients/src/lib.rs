//! Upstream LLM providers as tower services: an OpenAI-compatible HTTP upstream
//! ([`OpenAiUpstream`]), the built-in deterministic [`MockProvider`], model routing
//! ([`ProviderRouter`], [`ProviderService`]), provider keys ([`Secret`], [`resolve_secret`]),
//! and a mock OpenAI HTTP server for tests and benches ([`mock_server::MockUpstream`]).
//!
//! Every service here follows the stack's contract:
//! `Service<http::Request<Bytes>, Response = http::Response<ResponseBody>, Error = BoxError>`.
//! Upstream failures are OpenAI-style `Ok` responses (502 `upstream_error`, 504
//! `upstream_timeout`), recorded as `Outcome::UpstreamError` on the exchange.
//!
//! ```
//! use provider_clients::mock_response;
//! let req: exchange::ChatRequest = serde_json::from_str(
//!     r#"{"model":"gpt-4o","messages":[{"role":"user","name":"planner","content":"plan the trip"}]}"#,
//! ).unwrap();
//! let res = mock_response(&req);
//! assert_eq!(res.choices[0].message.text(), "Mock reply from gpt-4o to planner: plan the trip");
//! ```

mod error;
mod mock;
pub mod mock_server;
mod openai;
mod router;
mod secret;

pub use error::ProviderError;
pub use mock::{
    MOCK_CREATED, MockProvider, SSE_DONE, mock_http_response, mock_response, mock_sse_events,
    mock_stream_chunks, mock_tool_arguments, sse_event,
};
pub use openai::{OpenAiUpstream, ResponseFuture, UpstreamStreamError};
pub use router::{Backend, ModelInfo, Provider, ProviderRouter, ProviderService};
pub use secret::{Secret, resolve_secret};
