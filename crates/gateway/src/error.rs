use std::path::PathBuf;

/// Why the gateway could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The policy pack is invalid (every problem is listed).
    #[error("policy pack `{path}` is invalid:\n{source}")]
    Pack {
        /// Pack file.
        path: PathBuf,
        /// The validation errors.
        #[source]
        source: policy_engine::PackError,
    },
    /// A provider could not be set up (e.g. its key reference does not resolve).
    #[error("provider setup failed: {0}")]
    Provider(#[source] provider_clients::ProviderError),
    /// The audit store could not be opened.
    #[error("audit store: {0}")]
    Audit(#[source] audit_chain::AuditError),
    /// The checkpoint signing key could not be read.
    #[error("audit checkpoint signing key: {0}")]
    CheckpointKey(#[source] audit_chain::KeyError),
    /// The cost ledger could not be opened.
    #[error("cost ledger: {0}")]
    Cost(#[source] cost_accounting::CostError),
    /// The key store could not be opened.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyStoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}
