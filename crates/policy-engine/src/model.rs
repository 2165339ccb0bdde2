//! The compiled, immutable form of a policy pack: what every other crate reads.
//! Runtime code never sees the raw YAML structs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exchange::{Decision, UsdAmount};

/// Name, version and content hash of the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackMeta {
    /// `pack.name`.
    pub name: String,
    /// `pack.version`.
    pub version: String,
    /// Hex SHA-256 of the pack file's bytes.
    pub content_sha256: String,
    /// Where the pack was loaded from (`<inline>` for strings).
    pub source: String,
}

/// Where a secret comes from. The value is read at use, never stored in the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline trimmed).
    File(PathBuf),
}

/// Provider implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Any OpenAI-compatible HTTP API.
    OpenAi,
    /// The built-in deterministic mock.
    Mock,
}

/// One upstream provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Provider name.
    pub name: String,
    /// Kind (default `openai`).
    pub kind: ProviderKind,
    /// Base URL ending before `/chat/completions` (default `https://api.openai.com/v1`).
    pub base_url: String,
    /// Models served; the request's `model` picks the provider. `*` entries match any model.
    pub models: Vec<String>,
    /// API key reference.
    pub secret_key_ref: Option<SecretRef>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request / read timeout.
    pub request_timeout: Duration,
    /// What to do when `secret_key_ref` cannot be resolved (env var unset, file missing).
    pub on_missing_key: MissingKey,
}

/// `on_missing_key:` of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Refuse to start / reload (default).
    #[default]
    Fail,
    /// Serve this provider's models with the built-in mock instead (quickstart demos).
    Mock,
}

/// `auth: required | optional`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// A valid gateway key is required (default).
    #[default]
    Required,
    /// Keys are used when given; anonymous calls are allowed.
    Optional,
}

/// How a blocked turn is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockResponse {
    /// `403 {"error":{"type":"policy_violation",…}}` (default).
    #[default]
    Error,
    /// A normal completion whose content says what was blocked, so a group chat goes on.
    Completion,
}

/// Request limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body (default 4 MiB).
    pub max_body_bytes: usize,
    /// Most bytes a streamed response may hold back before release (`stream_mode: hold`,
    /// a pending tool call, a finding still growing); beyond it the stream is blocked
    /// (default 1 MiB).
    pub max_stream_hold_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_stream_hold_bytes: 1024 * 1024,
        }
    }
}

/// `audit.content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentCapture {
    /// Request and response stored verbatim.
    Full,
    /// Stored after redaction of findings (default).
    #[default]
    Redacted,
    /// Not stored.
    None,
}

/// `audit.durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A response is released only after its event is committed (default).
    #[default]
    Sync,
    /// Events are committed in the background.
    Async,
}

/// `on_audit_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnAuditFailure {
    /// Fail closed with 503 (default).
    #[default]
    Deny,
    /// Serve anyway.
    Allow,
}

/// Signed checkpoints of the chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// Sign after this many events.
    pub every_events: u64,
    /// Or after this long.
    pub every: Duration,
    /// Ed25519 signing key (from `palisade audit keygen`).
    pub signing_key_ref: SecretRef,
}

/// The `audit:` section and the `audit-logger` policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditSettings {
    /// What content is kept.
    pub content: ContentCapture,
    /// When a response may be released.
    pub durability: Durability,
    /// What to do when the store is unavailable.
    pub on_failure: OnAuditFailure,
    /// Signed checkpoints, if configured.
    pub checkpoint: Option<CheckpointSettings>,
    /// `audit-logger.tags`: attached to every event (only when `audit-logger` is in the chain).
    pub tags: Vec<(String, String)>,
    /// `audit-logger.capture_fields`: e.g. `sender_agents`, `recipient_agent`, `header:x-request-id`.
    pub capture_fields: Vec<String>,
}

/// Who a budget or rate limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Per calling agent.
    Agent,
    /// Per role.
    Role,
    /// Per workflow.
    Workflow,
    /// Per conversation.
    Conversation,
}

/// `match:` — a name, or `*` for each one separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeMatch {
    /// Exactly this name.
    Name(String),
    /// Each value of the scope gets its own budget.
    Each,
}

/// Budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Resets at 00:00 UTC.
    Day,
    /// Resets on the 1st, 00:00 UTC.
    Month,
    /// Never resets.
    Total,
}

/// One budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpec {
    /// Scope.
    pub scope: Scope,
    /// Match.
    pub matcher: ScopeMatch,
    /// Hard limit.
    pub limit: UsdAmount,
    /// Period.
    pub period: Period,
    /// Soft limit (log and alert).
    pub soft_limit: Option<UsdAmount>,
}

/// One rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Scope (agent in the issue; others accepted).
    pub scope: Scope,
    /// Match.
    pub matcher: ScopeMatch,
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
    /// Concurrent requests in flight.
    pub max_concurrent: Option<u32>,
}

/// A price entry (per 1M tokens) added or overridden by the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSpec {
    /// Model name (exact, or a prefix ending in `*`).
    pub model: String,
    /// Input price per 1M tokens.
    pub input_per_million: UsdAmount,
    /// Output price per 1M tokens.
    pub output_per_million: UsdAmount,
    /// Cached input price per 1M tokens (default: the input price).
    pub cached_input_per_million: Option<UsdAmount>,
}

/// The cost section: budgets, rate limits, prices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CostSettings {
    /// Budgets.
    pub budgets: Vec<BudgetSpec>,
    /// Rate limits.
    pub rate_limits: Vec<RateLimitSpec>,
    /// Price overrides.
    pub prices: Vec<PriceSpec>,
    /// Output tokens to reserve when a request sets no `max_tokens` (default 4096).
    pub default_max_tokens: u64,
}

/// Everything the gateway reads from a pack beyond the policy chain itself.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Auth mode.
    pub auth: AuthMode,
    /// Admin token reference (`admin: {token_ref: …}`); `PALISADE_ADMIN_TOKEN` is the fallback.
    pub admin_token_ref: Option<SecretRef>,
    /// How blocks are answered.
    pub block_response: BlockResponse,
    /// Limits.
    pub limits: Limits,
    /// Providers, in pack order.
    pub providers: Vec<ProviderSpec>,
    /// Audit settings.
    pub audit: AuditSettings,
    /// Cost settings.
    pub cost: CostSettings,
    /// The default decision for tools no rule or firewall entry allows.
    pub default_decision: Decision,
}

/// A shared, atomically swappable pack: the gateway reloads by storing a new `Arc`.
pub type SharedPack<P> = Arc<arc_swap::ArcSwap<P>>;
