//! The policy-aware service stack, built in one place.

use std::sync::Arc;

use bytes::Bytes;
use exchange::{BoxError, ResponseBody};
use policy_engine::{CompiledPack, SharedPack};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::identity::IdentityLayer;
use crate::keys::KeyStore;

/// The whole stack as one cloneable service over buffered requests.
pub type PolicyStack =
    BoxCloneSyncService<http::Request<Bytes>, http::Response<ResponseBody>, BoxError>;

/// What the stack is made of. Every part is cheap to clone and reload-aware.
#[derive(Clone)]
pub struct StackParts {
    /// The live pack.
    pub pack: SharedPack<CompiledPack>,
    /// Cross-turn policy state (survives reloads).
    pub policy_state: policy_engine::PolicyState,
    /// Virtual keys.
    pub keys: Arc<KeyStore>,
    /// Audit writer.
    pub audit: audit_chain::AuditWriter,
    /// Audit context (settings and pack identity; swapped on reload).
    pub audit_ctx: Arc<arc_swap::ArcSwap<audit_chain::AuditContext>>,
    /// Cost engine.
    pub cost: cost_accounting::CostEngine,
    /// Upstream providers.
    pub provider: provider_clients::ProviderService,
}

impl StackParts {
    /// Builds the request path. The order is the design's, outermost first:
    ///
    /// 1. Identity — key → agent/role/workflow; 401 before anything is recorded.
    /// 2. Audit — outermost policy-aware layer, so blocked exchanges are recorded too.
    /// 3. Policy[in] — detectors, rules, redaction of the request; may block.
    /// 4. Cost — rate limits and budget reservation before spending; attribution after.
    /// 5. Policy[out] — output scanning, tool-call firewall, placeholder restore, quality.
    /// 6. Provider — routes by model to the upstream (or the mock).
    pub fn build(&self) -> PolicyStack {
        let svc = ServiceBuilder::new()
            .layer(IdentityLayer::new(self.keys.clone(), self.pack.clone()))
            .layer(audit_chain::AuditLayer::new(
                self.audit.clone(),
                self.audit_ctx.clone(),
            ))
            .layer(policy_engine::InputPolicyLayer::new(
                self.pack.clone(),
                self.policy_state.clone(),
            ))
            .layer(cost_accounting::CostLayer::new(self.cost.clone()))
            .layer(policy_engine::OutputPolicyLayer::new(
                self.pack.clone(),
                self.policy_state.clone(),
            ))
            .service(self.provider.clone());
        BoxCloneSyncService::new(svc)
    }
}
