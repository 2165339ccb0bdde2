use std::path::PathBuf;

/// Why the cost engine or a report could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// The data directory could not be created.
    #[error("cost ledger directory `{path}`: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The ledger database failed.
    #[error("cost ledger `{path}`: {source}")]
    Ledger {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// `report` was asked for a ledger that does not exist.
    #[error(
        "cost ledger `{path}` does not exist (no traffic recorded yet, or a different data dir)"
    )]
    LedgerMissing {
        /// The database file.
        path: PathBuf,
    },
    /// The ledger writer thread could not be started or has stopped.
    #[error("cost ledger `{path}`: writer thread unavailable: {reason}")]
    Writer {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A price in the pack or the bundled table cannot be used.
    #[error("price for model `{model}`: {source}")]
    Price {
        /// The model entry.
        model: String,
        /// The cause.
        #[source]
        source: PriceError,
    },
    /// The bundled price table is malformed (a build defect).
    #[error("bundled price table: {0}")]
    BundledPrices(String),
}

/// Why one price entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// A per-1M-token price must be a whole number of picodollars per token.
    #[error(
        "{field} price `{amount}` per 1M tokens has more than 6 decimal places (a price per token must be a whole number of picodollars)"
    )]
    TooPrecise {
        /// `input`, `output` or `cached_input`.
        field: &'static str,
        /// The amount as written.
        amount: String,
    },
    /// A bundled amount is not a decimal number.
    #[error("{field} price `{amount}` is not a decimal amount of USD")]
    Invalid {
        /// `input`, `output` or `cached_input`.
        field: &'static str,
        /// The amount as written.
        amount: String,
    },
    /// A model pattern that cannot match anything.
    #[error("model pattern `{0}` is empty")]
    EmptyModel(String),
}
