//! Raw pack structs: exactly the YAML shape, `deny_unknown_fields` everywhere. Enumerated
//! values stay strings here; validation parses them (case-insensitively where documented)
//! so that a bad value is reported with its position and the accepted values.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

/// `pack:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMeta {
    pub name: String,
    #[serde(default)]
    pub version: Option<Scalar>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A string, number or boolean scalar, kept as text (`version: 1.0` and `"1.0"` both work).
#[derive(Debug, Clone)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) => Ok(Scalar(s)),
            Value::Number(n) => Ok(Scalar(n.to_string())),
            Value::Bool(b) => Ok(Scalar(b.to_string())),
            _ => Err(serde::de::Error::custom(
                "invalid type: expected a string or a number",
            )),
        }
    }
}

/// One name or a list of names.
#[derive(Debug, Clone)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) => Ok(OneOrMany(vec![s])),
            Value::Sequence(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    _ => Err(serde::de::Error::custom(
                        "invalid type: expected a string in the list",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(OneOrMany),
            _ => Err(serde::de::Error::custom(
                "invalid type: expected a string or a list of strings",
            )),
        }
    }
}

/// `secret_key_ref: {env: NAME}` or `{file: PATH}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecretRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
}

/// `providers[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub model: Option<OneOrMany>,
    #[serde(default)]
    pub secret_key_ref: Option<RawSecretRef>,
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    #[serde(default)]
    pub connect_timeout_seconds: Option<f64>,
    #[serde(default)]
    pub on_missing_key: Option<String>,
}

/// `policies:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicies {
    #[serde(default)]
    pub chain: Vec<String>,
}

/// `policy.<detector policy>`: prompt-injection, pii-detector, secrets-detector, safety-filter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetectorPolicy {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub entities: Option<Vec<String>>,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub strategies: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub restore: Option<bool>,
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Stream scanning mode (`pass-through`, `window`, `hold`); see docs/streaming.md.
    #[serde(default)]
    pub stream_mode: Option<String>,
    /// Hold-back of `stream_mode: window`, in characters.
    #[serde(default)]
    pub window_chars: Option<u64>,
}

/// `policy.quality-scorer`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuality {
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub weights: Option<BTreeMap<String, f64>>,
    /// Stream scanning mode (`pass-through`, `window`, `hold`); see docs/streaming.md.
    #[serde(default)]
    pub stream_mode: Option<String>,
    /// Hold-back of `stream_mode: window`, in characters.
    #[serde(default)]
    pub window_chars: Option<u64>,
}

/// `policy.audit-logger`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuditLogger {
    #[serde(default)]
    pub tags: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub capture_fields: Option<Vec<String>>,
}

/// `policy.budget` (budgets themselves live in `budgets:`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudgetPolicy {
    #[serde(default)]
    pub action: Option<String>,
}

/// Allowed / denied tools of one role or agent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToolAccess {
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    #[serde(default)]
    pub denied_tools: Option<Vec<String>>,
}

/// Per-tool call limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToolLimit {
    #[serde(default)]
    pub per_conversation: Option<u64>,
    #[serde(default)]
    pub per_minute: Option<u64>,
}

/// `policy.agent-firewall` (issue 6 shape).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFirewall {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub on_violation: Option<String>,
    #[serde(default)]
    pub roles: Option<BTreeMap<String, RawToolAccess>>,
    #[serde(default)]
    pub agents: Option<BTreeMap<String, RawToolAccess>>,
    #[serde(default)]
    pub tool_limits: Option<BTreeMap<String, RawToolLimit>>,
    #[serde(default)]
    pub max_turns_per_conversation: Option<u64>,
    #[serde(default)]
    pub max_message_chars: Option<u64>,
    #[serde(default)]
    pub flood_repeats: Option<u64>,
    #[serde(default)]
    pub code_guard: Option<bool>,
    #[serde(default)]
    pub on_impersonation: Option<String>,
    /// Stream scanning mode (`pass-through`, `window`, `hold`); see docs/streaming.md.
    #[serde(default)]
    pub stream_mode: Option<String>,
    /// Hold-back of `stream_mode: window`, in characters.
    #[serde(default)]
    pub window_chars: Option<u64>,
}

/// `policy.human-oversight`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOversight {
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub on_timeout: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// `action:` of a rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuleAction {
    #[serde(default)]
    pub require_approval: Option<bool>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub on_timeout: Option<String>,
}

/// `rules[]` (the condition is parsed by hand: it nests).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub name: String,
    pub condition: Value,
    pub decision: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub action: Option<RawRuleAction>,
    #[serde(default)]
    pub capture_fields: Option<Vec<String>>,
    #[serde(default)]
    pub phase: Option<String>,
}

/// `tools.<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTool {
    #[serde(default)]
    pub category: Option<String>,
}

/// `workflows.<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    #[serde(default)]
    pub members: Vec<String>,
}

/// `admin:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    #[serde(default)]
    pub token_ref: Option<RawSecretRef>,
}

/// `limits:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Cap on what a stream may hold back (`stream_mode: hold`, pending tool calls).
    #[serde(default)]
    pub max_stream_hold_bytes: Option<u64>,
}

/// `audit.checkpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheckpoint {
    #[serde(default)]
    pub every_events: Option<u64>,
    #[serde(default)]
    pub every_seconds: Option<u64>,
    pub signing_key_ref: RawSecretRef,
}

/// `audit:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub durability: Option<String>,
    #[serde(default)]
    pub on_audit_failure: Option<String>,
    #[serde(default)]
    pub checkpoint: Option<RawCheckpoint>,
}

/// `budgets[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub scope: String,
    #[serde(rename = "match", default)]
    pub matcher: Option<String>,
    pub limit_usd: Scalar,
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub soft_limit_usd: Option<Scalar>,
}

/// `rate_limits[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub scope: String,
    #[serde(rename = "match", default)]
    pub matcher: Option<String>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// `prices.<model>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrice {
    pub input: Scalar,
    pub output: Scalar,
    #[serde(default)]
    pub cached_input: Option<Scalar>,
}

/// `cost:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCost {
    #[serde(default)]
    pub default_max_tokens: Option<u64>,
}
