use crate::engine::CostEngine;

use super::Cost;

/// Tower layer for cost accounting, budgets and rate limits.
///
/// Before the inner service: rate limits (requests/tokens per minute, concurrency) and a
/// budget reservation of the worst-case cost; a refusal is a `429` OpenAI-style error
/// (`budget_exceeded` or `rate_limit_exceeded`) with `Retry-After`, and the inner service is
/// not called. For `stream: true` it asks upstream for usage (`stream_options.include_usage`)
/// and removes the usage chunk again if the client did not ask for it. After the response
/// body ends (or is dropped): usage from the exchange, the body or the stream — estimated
/// with a tokenizer when absent — its exact cost on the exchange, the reservation settled,
/// and one ledger row.
#[derive(Clone, Debug)]
pub struct CostLayer {
    engine: CostEngine,
}

impl CostLayer {
    /// A layer sharing `engine`'s counters and ledger.
    pub fn new(engine: CostEngine) -> Self {
        CostLayer { engine }
    }
}

impl<S> tower::Layer<S> for CostLayer {
    type Service = Cost<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cost::new(inner, self.engine.clone())
    }
}
