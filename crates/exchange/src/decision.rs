use serde::{Deserialize, Serialize};

/// A policy decision. Ordered by severity: the most severe decision of a chain wins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    /// Nothing to do.
    #[default]
    Allow,
    /// Let through, record.
    Log,
    /// Let through after editing (redaction, stripping a tool).
    Redact,
    /// Let through only under a constraint (e.g. human approval).
    Constrain,
    /// Refuse.
    Block,
}

impl Decision {
    /// The upper-case name used in packs, audit records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "ALLOW",
            Decision::Log => "LOG",
            Decision::Redact => "REDACT",
            Decision::Constrain => "CONSTRAIN",
            Decision::Block => "BLOCK",
        }
    }

    /// Parses the upper-case name (case-insensitive).
    pub fn parse(s: &str) -> Option<Decision> {
        match s.to_ascii_uppercase().as_str() {
            "ALLOW" => Some(Decision::Allow),
            "LOG" => Some(Decision::Log),
            "REDACT" => Some(Decision::Redact),
            "CONSTRAIN" => Some(Decision::Constrain),
            "BLOCK" => Some(Decision::Block),
            _ => None,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which half of the exchange a verdict was reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// On the request, before the upstream call.
    #[default]
    Input,
    /// On the response.
    Output,
}

/// A detector finding as recorded on the exchange and in the audit chain: kind, place and
/// rule, never the matched text itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Detector family, e.g. `pii`, `injection`, `secrets`, `safety`, `code`.
    pub detector: String,
    /// Entity or technique, e.g. `EMAIL_ADDRESS`, `instruction_override`.
    pub kind: String,
    /// Id of the rule that matched, e.g. `pii.email`.
    pub rule: String,
    /// Where the text sits, e.g. `messages[2].content` or `choices[0].message.tool_calls[0].function.arguments`.
    pub location: String,
    /// Byte offset of the start within that text (UTF-8).
    pub start: usize,
    /// Byte offset of the end (exclusive).
    pub end: usize,
    /// Confidence in [0, 1].
    pub score: f32,
}

/// One policy's (or one rule's) decision with its reason and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The built-in policy name (`prompt-injection`, …) or `rule`.
    pub policy: String,
    /// The rule name for conditional rules and rule ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Input or output phase.
    pub phase: Phase,
    /// The decision.
    pub decision: Decision,
    /// Human-readable reason (never contains raw secrets or PII).
    pub reason: String,
    /// Evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    /// A score where the policy computes one (injection score, quality score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl Verdict {
    /// A verdict without findings.
    pub fn new(
        policy: impl Into<String>,
        phase: Phase,
        decision: Decision,
        reason: impl Into<String>,
    ) -> Self {
        Verdict {
            policy: policy.into(),
            rule: None,
            phase,
            decision,
            reason: reason.into(),
            findings: Vec::new(),
            score: None,
        }
    }
}
