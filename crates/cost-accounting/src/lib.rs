//! Cost accounting for Palisade: a bundled price table (pack-overridable), usage from the
//! provider or a real tokenizer, an attribution ledger per agent / role / workflow /
//! conversation / model / key (`<data_dir>/ledger.db`), reservation-based budgets, token-bucket
//! rate limits and concurrency caps, all as one tower layer, [`CostLayer`].
//!
//! ```
//! use cost_accounting::{CostEngine, CostLayer, GroupBy, ReportFormat, report};
//! use policy_engine::CostSettings;
//!
//! let dir = std::env::temp_dir().join(format!("palisade-cost-doc-{}", std::process::id()));
//! let engine = CostEngine::open(&dir, CostSettings::default()).unwrap();
//! let price = engine.price_of("openai/gpt-4o-2024-08-06").unwrap();
//! assert_eq!(price.entry, "gpt-4o");
//! assert_eq!(price.price.input_per_million().to_string(), "2.50");
//! let _layer = CostLayer::new(engine.clone());
//! // `palisade cost report --by agent --format csv`:
//! let csv = report(&dir, GroupBy::Agent, None, ReportFormat::Csv).unwrap();
//! assert!(csv.starts_with("agent,requests,"));
//! # drop(engine);
//! # let _ = std::fs::remove_dir_all(&dir);
//! ```
//!
//! Costs are exact: a price per 1M tokens in micro-dollars is a price per token in
//! picodollars ([`exchange::UsdAmount`]), so a cost is integer arithmetic and never drifts.
//! A model without a known price has its cost recorded as unknown (`NULL` in the ledger,
//! `cost_unknown` on the exchange, `palisade_cost_unknown_price_total` in metrics), never 0.
//! The built-in mock provider's model `mock` is priced at 1.00 / 2.00 / 0.50 USD per 1M
//! input / output / cached tokens so tests and demos exercise the accounting.

mod cost;
mod engine;
mod error;
mod ledger;
mod metrics;
mod period;
mod prices;
mod report;
mod sse;
mod tokens;

pub use cost::{Cost, CostLayer, ResponseFuture};
pub use engine::{CostEngine, FALLBACK_MAX_TOKENS};
pub use error::{CostError, PriceError};
pub use ledger::LEDGER_FILE;
pub use prices::{Price, PriceMatch, PriceSource, PriceTable, candidates as model_name_candidates};
pub use report::{GroupBy, ReportFormat, ReportRow, render as render_report, report, report_rows};
pub use tokens::{count_text, estimate_prompt_tokens};
