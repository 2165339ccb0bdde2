//! Policy packs: YAML loaded, validated (every error, with file, line, column and key) and
//! compiled once into an immutable [`CompiledPack`]; the chain and conditional rules are
//! evaluated on each exchange; [`PolicyLayer`] puts that in a tower stack.
//!
//! ```
//! use policy_engine::CompiledPack;
//! let pack = CompiledPack::from_yaml(
//!     "pack: {name: demo, version: \"1\"}\npolicies:\n  chain: [prompt-injection]\n",
//!     "<inline>",
//! ).unwrap();
//! assert_eq!(pack.chain(), ["prompt-injection"]);
//!
//! let err = CompiledPack::from_yaml("pack: {name: demo, colour: red}\n", "demo.yaml").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "demo.yaml:1:20: pack.colour: unknown key (expected one of: name, version, description)"
//! );
//! ```

mod approval;
mod compile;
mod enforce;
mod error;
mod eval;
mod firewall;
mod layer;
mod location;
mod model;
mod pack;
mod policies;
mod quality;
mod raw;
mod rules;
mod scan_cache;
mod state;
mod stream;
mod taint;

pub mod scan;
pub mod testing;

#[cfg(test)]
mod firewall_tests;
#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;

pub use approval::{
    ApprovalError, ApprovalNeed, ApprovalRegistry, ApprovalStatus, ApprovalView, GateOutcome,
    HEADER_APPROVAL, approval_gate, approval_pending_response,
};
pub use enforce::ToolCallRequest;
pub use error::{PackError, PackIssue};
pub use layer::{
    InputPolicy, InputPolicyLayer, OutputPolicy, OutputPolicyLayer, Policy, PolicyLayer,
};
pub use model::*;
pub use pack::{CompiledPack, PackSummary, validate_file};
pub use policies::{BUILTIN_POLICIES, OversightSettings};
pub use rules::{ActionType, RuleAction};
pub use scan_cache::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, MIN_CACHED_LEN, ScanCache, ScanCacheStats,
};
pub use state::PolicyState;
pub use stream::{
    DEFAULT_WINDOW_CHARS, PolicyStreamMode, StreamMode, StreamPlan, StreamScanner, min_hold_back,
};
pub use taint::TaintSource;
