//! Why a replay could not run.

use std::path::PathBuf;

/// Why a replay failed. Every variant is "bad input" (exit code 2 in `palisade-replay`).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A policy pack could not be loaded.
    #[error("replay: {what} pack: {source}")]
    Pack {
        /// `candidate` or `baseline`.
        what: &'static str,
        /// The load / validation error (names file, line and key).
        #[source]
        source: policy_engine::PackError,
    },
    /// The audit input could not be opened.
    #[error("replay: cannot open audit input `{path}`: {source}")]
    Open {
        /// The input path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded store could not be read.
    #[error("replay: audit store `{path}`: reading after event {after_seq}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// The last event read successfully (0: none).
        after_seq: u64,
        /// The store error.
        #[source]
        source: audit_chain::StoreError,
    },
    /// A record could not be decoded (corrupt or truncated input).
    #[error("replay: {input}: {record}: {message}")]
    Record {
        /// The input path.
        input: String,
        /// `event seq 17` (store) or `line 42` (JSONL).
        record: String,
        /// What is wrong with it.
        message: String,
    },
    /// A command-line value is invalid (`--since`, `--fail-on`, missing `--policy`).
    #[error("replay: {0}")]
    Usage(String),
    /// A worker thread could not be started or died.
    #[error("replay: worker thread: {0}")]
    Thread(String),
}
