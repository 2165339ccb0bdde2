//! The policy-aware service stack, built in one place.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use exchange::{BoxError, ResponseBody};
use policy_engine::{CompiledPack, SharedPack};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::GatewayError;
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
    /// The shadow (candidate) pack of `--shadow-policy`, evaluated log-only; `None`: off.
    pub shadow: Option<crate::replay::ShadowPack>,
}

/// The audit context of `pack` for the gateway instance `instance_id`.
pub(crate) fn audit_context(pack: &CompiledPack, instance_id: &str) -> audit_chain::AuditContext {
    audit_chain::AuditContext {
        settings: pack.settings.audit.clone(),
        pack: pack.meta.clone(),
        instance_id: instance_id.to_owned(),
    }
}

impl StackParts {
    /// Opens every part for `pack`, with the stores (keys, audit chain, cost ledger) in
    /// `data_dir` (which must exist). `instance_id` names this gateway in audit events.
    /// The gateway server and the stack bench build their stacks through this.
    pub fn open(
        pack: CompiledPack,
        data_dir: &Path,
        instance_id: &str,
    ) -> Result<StackParts, GatewayError> {
        let provider = provider_clients::ProviderService::new(&pack.settings.providers)
            .map_err(GatewayError::Provider)?;
        let cost = cost_accounting::CostEngine::open(data_dir, pack.settings.cost.clone())
            .map_err(GatewayError::Cost)?;
        let checkpoint = match &pack.settings.audit.checkpoint {
            Some(c) => Some(
                audit_chain::CheckpointConfig::from_settings(c)
                    .map_err(GatewayError::CheckpointKey)?,
            ),
            None => None,
        };
        let audit = audit_chain::AuditWriter::open(
            data_dir,
            audit_chain::WriterConfig {
                checkpoint,
                ..audit_chain::WriterConfig::default()
            },
        )
        .map_err(GatewayError::Audit)?;
        let audit_ctx = Arc::new(arc_swap::ArcSwap::from_pointee(audit_context(
            &pack,
            instance_id,
        )));
        let keys = Arc::new(KeyStore::open(data_dir)?);
        Ok(StackParts {
            pack: Arc::new(arc_swap::ArcSwap::from_pointee(pack)),
            policy_state: policy_engine::PolicyState::default(),
            keys,
            audit,
            audit_ctx,
            cost,
            provider,
            shadow: None,
        })
    }

    /// Builds the request path. The order is the design's, outermost first:
    ///
    /// 1. Identity — key → agent/role/workflow; 401 before anything is recorded.
    /// 2. Audit — outermost policy-aware layer, so blocked exchanges are recorded too.
    /// 3. Policy[in] — detectors, rules, redaction of the request; may block.
    /// 4. Cost — rate limits and budget reservation before spending; attribution after.
    /// 5. Policy[out] — output scanning, tool-call firewall, placeholder restore, quality.
    /// 6. Provider — routes by model to the upstream (or the mock).
    ///
    /// With a shadow pack, ShadowIn sits between 2 and 3 (it sees the request as received)
    /// and ShadowOut between 5 and 6 (it sees the upstream answer); both only record
    /// verdicts in `Exchange::shadow_verdicts` and never change the request or response.
    pub fn build(&self) -> PolicyStack {
        let svc = ServiceBuilder::new()
            .layer(IdentityLayer::new(self.keys.clone(), self.pack.clone()))
            .layer(audit_chain::AuditLayer::new(
                self.audit.clone(),
                self.audit_ctx.clone(),
            ))
            .option_layer(
                self.shadow
                    .clone()
                    .map(crate::replay::ShadowInputLayer::new),
            )
            .layer(policy_engine::InputPolicyLayer::new(
                self.pack.clone(),
                self.policy_state.clone(),
            ))
            .layer(cost_accounting::CostLayer::new(self.cost.clone()))
            .layer(policy_engine::OutputPolicyLayer::new(
                self.pack.clone(),
                self.policy_state.clone(),
            ))
            .option_layer(
                self.shadow
                    .clone()
                    .map(crate::replay::ShadowOutputLayer::new),
            )
            .service(self.provider.clone());
        BoxCloneSyncService::new(svc)
    }
}
