//! What every Palisade layer shares, and nothing else: the OpenAI wire types, the
//! [`Exchange`] that travels through the layers in the request extensions, the caller's
//! [`Identity`], policy [`Decision`]s and [`Verdict`]s, token [`TokenUsage`], and the
//! OpenAI-style [`ApiError`] body. This crate does no I/O.
//!
//! ```
//! use exchange::{ChatRequest, Decision};
//! let req: ChatRequest = serde_json::from_str(
//!     r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
//! ).unwrap();
//! assert_eq!(req.messages[0].text(), "hi");
//! assert!(Decision::Block > Decision::Redact);
//! ```

mod body;
mod decision;
mod error;
mod exchange;
mod identity;
mod money;
mod wire;

pub use body::{BoxError, ResponseBody, empty_body, full_body, json_response};
pub use decision::{Decision, FindingRecord, Phase, Verdict};
pub use error::ApiError;
pub(crate) use exchange::claims_from_headers as identity_from_headers;
pub use exchange::{
    ApprovalRecord, Edge, Exchange, ExchangeHandle, Outcome, RequestKind, StreamStats, TokenUsage,
    ToolCallRecord,
};
pub use identity::Identity;
pub use money::{UsdAmount, UsdParseError};
pub use wire::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Content, ContentPart, Delta,
    FunctionCall, FunctionCallDelta, FunctionDef, Message, Role, StreamOptions, Tool, ToolCall,
    ToolCallDelta, Usage, UsageDetails,
};

/// Header a client may set to name its conversation explicitly.
pub const HEADER_CONVERSATION: &str = "x-palisade-conversation";
/// Header claim: the calling agent (development; contradicting the key is a finding).
pub const HEADER_AGENT: &str = "x-palisade-agent";
/// Header claim: the workflow the call belongs to.
pub const HEADER_WORKFLOW: &str = "x-palisade-workflow";
/// Response header: the audit event id of this exchange.
pub const HEADER_EVENT: &str = "x-palisade-event";
/// Response header: `<seq>:<hash>` of the audit chain head that includes this exchange.
pub const HEADER_CHAIN: &str = "x-palisade-chain";
/// Response header: the overall decision of the policy chain.
pub const HEADER_DECISION: &str = "x-palisade-decision";
