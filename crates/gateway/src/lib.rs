//! The Palisade gateway library: the OpenAI-compatible HTTP server, identity (virtual keys),
//! the admin API, metrics, and the one place where the policy-aware layers are stacked.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gateway::GatewayError> {
//! let config = gateway::GatewayConfig::new("policy-packs/quickstart.yaml");
//! let running = gateway::spawn(config).await?;
//! println!("serving on {}", running.base_url());
//! running.shutdown().await;
//! # Ok(()) }
//! ```

mod approvals;
pub mod cli;
pub mod embed;
mod enforce;
mod error;
mod identity;
pub mod keys;
mod metrics;
pub mod replay;
mod server;
mod stack;

pub use enforce::ENFORCE_MODEL;
pub use error::GatewayError;
pub use identity::{
    IdentityLayer, IdentityService, conversation_fingerprint, presented_key, senders_and_edges,
};
pub use keys::{KeyRecord, KeyStore, KeyStoreError, NewKey};
pub use metrics::Metrics;
pub use server::{GatewayConfig, RunningGateway, run, spawn};
pub use stack::{PolicyStack, StackParts};
