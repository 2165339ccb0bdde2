//! The audit chain: one event per exchange, hash-chained, stored durably, verifiable.
//!
//! Every exchange — blocked ones included — becomes an [`AuditEvent`]. The single
//! [`AuditWriter`] gives each event its place (`seq`), links it to the previous one
//! (`hash = SHA-256(prev_hash ‖ canonical bytes)`, see `docs/audit-format.md`) and commits
//! events in groups to an [`EventStore`] (SQLite in WAL mode: `<data_dir>/palisade.db`).
//! Signed checkpoints (Ed25519) of the head let [`verify_store`] detect a cut tail or a
//! rewritten chain. [`AuditLayer`] records around the policy layers of a tower stack.
//!
//! ```
//! use audit_chain::{AuditWriter, WriterConfig, VerifyOptions, verify_store, db_path};
//! # let dir = tempfile::tempdir().unwrap();
//! let writer = AuditWriter::open(dir.path(), WriterConfig::default()).unwrap();
//! // … AuditLayer::new(writer.clone(), ctx) in the stack, or writer.append(&ex, &ctx).await
//! writer.close();
//! let report = verify_store(&db_path(dir.path()), &VerifyOptions::default()).unwrap();
//! assert!(report.is_intact());
//! ```

mod canonical;
mod checkpoint;
mod error;
mod event;
mod export;
mod layer;
mod redact;
mod store;
mod verify;
mod wal;
mod writer;

pub use canonical::{CanonicalError, GENESIS_PREV_HASH, chain_hash, to_canonical, write_canonical};
pub use checkpoint::{
    CHECKPOINT_DOMAIN, CheckpointSigner, KeyError, KeyPairFiles, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE,
    PublicKey, checkpoint_message, keygen,
};
pub use error::AuditError;
pub use event::{
    ApprovalEntry, AuditContext, AuditEvent, ContentRecord, EdgeRecord, FORMAT_VERSION,
    FindingEntry, OutcomeRecord, PackRecord, StreamRecord, ToolCallEntry, UsageRecord,
    VerdictEntry, format_time, normalize_time, outcome_from_status,
};
pub use export::{
    ExportError, ExportOptions, ExportSummary, TailOptions, export, export_with, open_events, tail,
    tail_with,
};
pub use layer::{Audit, AuditLayer, AuditResponseFuture};
pub use store::{
    ChainHead, Checkpoint, DB_FILE, EventBody, EventFilter, EventIter, EventStore, SqliteOptions,
    SqliteStore, StoreError, StoredEvent, SyncMode, db_path,
};
pub use verify::{
    BreakKind, BrokenLink, VerifyError, VerifyOptions, VerifyReport, verify_event_store,
    verify_jsonl, verify_jsonl_reader, verify_store,
};
pub use writer::{AuditWriter, CheckpointConfig, Receipt, WriterConfig};

/// Verifies the chain in `<data_dir>/palisade.db` (`palisade audit verify`), or the JSONL
/// export at `jsonl` when given (`palisade audit verify --jsonl FILE`).
pub fn verify(
    data_dir: &std::path::Path,
    jsonl: Option<&std::path::Path>,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    match jsonl {
        Some(p) => verify_jsonl(p, opts),
        None => verify_store(&db_path(data_dir), opts),
    }
}
