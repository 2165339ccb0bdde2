//! Compiled built-in policies (immutable; built by `compile`).

use std::collections::{HashMap, HashSet};

use detectors::redact::Strategy;
use detectors::{DetectorKind, Severity};
use exchange::Decision;

/// The built-in policy names, in documentation order.
pub const BUILTIN_POLICIES: [&str; 9] = [
    "prompt-injection",
    "pii-detector",
    "secrets-detector",
    "safety-filter",
    "agent-firewall",
    "quality-scorer",
    "human-oversight",
    "audit-logger",
    "budget",
];

/// Which half of the exchange a detector policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Direction {
    pub input: bool,
    pub output: bool,
}

/// prompt-injection, pii-detector, secrets-detector, safety-filter.
#[derive(Debug, Clone)]
pub(crate) struct DetectorPolicy {
    pub detector: DetectorKind,
    /// What a hit does: BLOCK, REDACT, LOG or ALLOW.
    pub action: Decision,
    /// Injection: minimum combined score of one text; others: minimum finding score.
    pub threshold: f32,
    pub direction: Direction,
    pub entities: Option<HashSet<String>>,
    pub categories: Option<HashSet<String>>,
    pub min_severity: Severity,
    pub strategy: Strategy,
    pub strategies: HashMap<String, Strategy>,
    pub restore: bool,
}

impl DetectorPolicy {
    pub(crate) fn strategy_for(&self, kind: &str) -> Strategy {
        if self.restore {
            return Strategy::Placeholder;
        }
        self.strategies.get(kind).copied().unwrap_or(self.strategy)
    }

    /// Whether a single finding of this policy's detector counts (before the injection score).
    pub(crate) fn admits(&self, f: &detectors::Finding) -> bool {
        if f.detector != self.detector {
            return false;
        }
        if let Some(e) = &self.entities {
            if !e.contains(f.kind) {
                return false;
            }
        }
        if let Some(c) = &self.categories {
            if !c.contains(f.kind) {
                return false;
            }
        }
        if f.severity < self.min_severity {
            return false;
        }
        self.detector == DetectorKind::Injection || f.score >= self.threshold
    }
}

/// Weights of the quality signals (penalties subtracted from 1.0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QualityWeights {
    pub empty: f64,
    pub truncated: f64,
    pub refusal: f64,
    pub repetition: f64,
    pub invalid_json: f64,
    pub schema_mismatch: f64,
    pub invalid_tool_arguments: f64,
    pub tool_arguments_mismatch: f64,
}

impl Default for QualityWeights {
    fn default() -> Self {
        QualityWeights {
            empty: 1.0,
            truncated: 0.4,
            refusal: 0.5,
            repetition: 0.4,
            invalid_json: 0.6,
            schema_mismatch: 0.3,
            invalid_tool_arguments: 0.6,
            tool_arguments_mismatch: 0.3,
        }
    }
}

/// The names of the quality signals, as used in `weights:`.
pub(crate) const QUALITY_SIGNALS: [&str; 8] = [
    "empty",
    "truncated",
    "refusal",
    "repetition",
    "invalid_json",
    "schema_mismatch",
    "invalid_tool_arguments",
    "tool_arguments_mismatch",
];

impl QualityWeights {
    pub(crate) fn set(&mut self, name: &str, w: f64) -> bool {
        let slot = match name {
            "empty" => &mut self.empty,
            "truncated" => &mut self.truncated,
            "refusal" => &mut self.refusal,
            "repetition" => &mut self.repetition,
            "invalid_json" => &mut self.invalid_json,
            "schema_mismatch" => &mut self.schema_mismatch,
            "invalid_tool_arguments" => &mut self.invalid_tool_arguments,
            "tool_arguments_mismatch" => &mut self.tool_arguments_mismatch,
            _ => return false,
        };
        *slot = w;
        true
    }
}

/// quality-scorer.
#[derive(Debug, Clone)]
pub(crate) struct QualityPolicy {
    pub threshold: f64,
    pub action: Decision,
    pub weights: QualityWeights,
}

/// Allowed / denied tool globs.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolAccess {
    pub allowed: Option<Vec<Glob>>,
    pub denied: Vec<Glob>,
}

/// Limits on the calls of the tools matching a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolLimit {
    pub tool: Glob,
    /// Most calls per conversation.
    pub per_conversation: Option<u64>,
    /// Most calls per minute by one agent.
    pub per_minute: Option<u64>,
}

/// agent-firewall (see docs/configuration.md and docs/multi-agent.md).
#[derive(Debug, Clone, Default)]
pub(crate) struct FirewallPolicy {
    pub default_deny: bool,
    pub block_on_violation: bool,
    pub roles: HashMap<String, ToolAccess>,
    pub agents: HashMap<String, ToolAccess>,
    pub max_message_chars: Option<u64>,
    pub max_turns_per_conversation: Option<u64>,
    pub tool_limits: Vec<ToolLimit>,
    /// The same or near-same message this many times in a request's conversation: flooding.
    pub flood_repeats: Option<u64>,
    /// Scan code blocks of assistant content and code arguments of tool calls.
    pub code_guard: bool,
    /// Impersonation findings are only logged (`on_impersonation: log`); default: block.
    pub log_impersonation: bool,
}

/// audit-logger.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditLoggerPolicy {
    pub tags: Vec<(String, String)>,
    pub capture_fields: Vec<String>,
}

/// One compiled chain entry.
#[derive(Debug, Clone)]
pub(crate) enum CompiledPolicy {
    Detector(DetectorPolicy),
    Quality(QualityPolicy),
    AuditLogger(AuditLoggerPolicy),
    Budget,
    Firewall(FirewallPolicy),
    Oversight,
}

/// `human-oversight` settings, read by the approval flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversightSettings {
    /// How long a held turn waits for a decision (default 300 s).
    pub timeout_seconds: u64,
    /// What a timeout decides: `false` = deny (default), `true` = allow.
    pub allow_on_timeout: bool,
    /// `true` = answer at once with the approval id (`mode: non_holding`); default hold.
    pub non_holding: bool,
}

impl Default for OversightSettings {
    fn default() -> Self {
        OversightSettings {
            timeout_seconds: 300,
            allow_on_timeout: false,
            non_holding: false,
        }
    }
}

/// A `*`-glob over names (`plan_*`, `*`); no other metacharacters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob(pub String);

impl Glob {
    pub(crate) fn matches(&self, s: &str) -> bool {
        glob_match(&self.0, s)
    }
}

/// Iterative `*` glob match (linear-ish, no recursion).
pub(crate) fn glob_match(pattern: &str, s: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == s;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = s;
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == last {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_star_only() {
        let cases = [
            ("plan_*", "plan_trip", true),
            ("plan_*", "xplan_trip", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXc", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*_shell", "execute_shell", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob_match(p, s), want, "{p} vs {s}");
        }
    }
}
