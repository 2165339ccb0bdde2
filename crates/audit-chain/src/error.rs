use std::sync::Arc;

use crate::canonical::CanonicalError;
use crate::store::StoreError;

/// Why an event could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The store failed (disk full, file locked, …). The gateway answers 503 unless the
    /// pack says `on_audit_failure: allow`.
    #[error("audit store unavailable: {0}")]
    StoreUnavailable(#[source] Arc<StoreError>),
    /// The writer has been closed.
    #[error("audit writer is closed")]
    Closed,
    /// The event has no canonical form (cannot happen for events built by this crate).
    #[error("audit event: {0}")]
    Canonical(#[source] CanonicalError),
    /// The writer thread could not be started.
    #[error("audit writer: cannot start thread: {0}")]
    Spawn(#[source] Arc<std::io::Error>),
}
