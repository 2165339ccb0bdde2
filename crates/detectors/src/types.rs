//! The public vocabulary: detector kinds, surfaces, severities, findings.

use std::ops::BitOr;

/// Which detector family produced a finding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum DetectorKind {
    /// Prompt injection and jailbreaks.
    Injection,
    /// Personally identifiable information.
    Pii,
    /// Credentials, keys and tokens.
    Secrets,
    /// Harmful-content categories.
    Safety,
    /// Dangerous code and shell commands.
    Code,
}

impl DetectorKind {
    /// All kinds, in declaration order.
    pub const ALL: [DetectorKind; 5] = [
        DetectorKind::Injection,
        DetectorKind::Pii,
        DetectorKind::Secrets,
        DetectorKind::Safety,
        DetectorKind::Code,
    ];

    /// Stable lowercase name: `injection`, `pii`, `secrets`, `safety`, `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Injection => "injection",
            DetectorKind::Pii => "pii",
            DetectorKind::Secrets => "secrets",
            DetectorKind::Safety => "safety",
            DetectorKind::Code => "code",
        }
    }

    fn bit(self) -> u8 {
        match self {
            DetectorKind::Injection => 1,
            DetectorKind::Pii => 2,
            DetectorKind::Secrets => 4,
            DetectorKind::Safety => 8,
            DetectorKind::Code => 16,
        }
    }
}

/// Where a text sits in the conversation; drives injection sensitivity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Surface {
    /// A `user` message.
    UserPrompt,
    /// A `system` (or `developer`) message written by the operator.
    SystemPrompt,
    /// A `tool` message: output of a tool call (indirect injection risk).
    ToolOutput,
    /// A message from another agent (its `name` differs from the caller).
    AgentMessage,
    /// Retrieved document / RAG context.
    Document,
    /// Model output returned to the caller.
    AssistantOutput,
    /// Arguments of a tool call emitted by the model.
    ToolArguments,
}

impl Surface {
    /// Stable snake_case name, e.g. `tool_output`.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::UserPrompt => "user_prompt",
            Surface::SystemPrompt => "system_prompt",
            Surface::ToolOutput => "tool_output",
            Surface::AgentMessage => "agent_message",
            Surface::Document => "document",
            Surface::AssistantOutput => "assistant_output",
            Surface::ToolArguments => "tool_arguments",
        }
    }

    /// Parses the name produced by [`Surface::as_str`].
    pub fn parse(s: &str) -> Option<Surface> {
        Some(match s {
            "user_prompt" => Surface::UserPrompt,
            "system_prompt" => Surface::SystemPrompt,
            "tool_output" => Surface::ToolOutput,
            "agent_message" => Surface::AgentMessage,
            "document" => Surface::Document,
            "assistant_output" => Surface::AssistantOutput,
            "tool_arguments" => Surface::ToolArguments,
            _ => return None,
        })
    }

    /// Multiplier applied to injection signal scores on this surface (capped at 1.0 after use).
    pub fn injection_weight(self) -> f32 {
        match self {
            Surface::ToolOutput | Surface::AgentMessage | Surface::Document => 1.0,
            Surface::ToolArguments => 0.9,
            Surface::UserPrompt => 0.85,
            Surface::AssistantOutput => 0.7,
            Surface::SystemPrompt => 0.4,
        }
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Severity {
    /// Informational.
    Low,
    /// Worth logging or redacting.
    Medium,
    /// Usually blocked.
    High,
    /// Always blocked by default packs.
    Critical,
}

impl Severity {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A set of detector kinds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DetectorMask(u8);

impl DetectorMask {
    /// No detector.
    pub const NONE: DetectorMask = DetectorMask(0);
    /// Prompt injection only.
    pub const INJECTION: DetectorMask = DetectorMask(1);
    /// PII only.
    pub const PII: DetectorMask = DetectorMask(2);
    /// Secrets only.
    pub const SECRETS: DetectorMask = DetectorMask(4);
    /// Safety only.
    pub const SAFETY: DetectorMask = DetectorMask(8);
    /// Dangerous code only.
    pub const CODE: DetectorMask = DetectorMask(16);
    /// Every detector.
    pub const ALL: DetectorMask = DetectorMask(31);

    /// Whether `k` is in the set.
    pub fn contains(self, k: DetectorKind) -> bool {
        self.0 & k.bit() != 0
    }

    /// The mask holding just `k`.
    pub fn of(k: DetectorKind) -> DetectorMask {
        DetectorMask(k.bit())
    }
}

impl BitOr for DetectorMask {
    type Output = DetectorMask;
    fn bitor(self, rhs: DetectorMask) -> DetectorMask {
        DetectorMask(self.0 | rhs.0)
    }
}

impl From<DetectorKind> for DetectorMask {
    fn from(k: DetectorKind) -> DetectorMask {
        DetectorMask::of(k)
    }
}

/// Per-scan context: where the text sits and which detectors to run.
#[derive(Clone, Debug)]
pub struct ScanContext {
    /// Where the text sits.
    pub surface: Surface,
    /// Which detectors run.
    pub detectors: DetectorMask,
}

impl ScanContext {
    /// All detectors on `surface`.
    pub fn new(surface: Surface) -> ScanContext {
        ScanContext {
            surface,
            detectors: DetectorMask::ALL,
        }
    }

    /// Only the detectors in `mask`.
    pub fn with_detectors(mut self, mask: DetectorMask) -> ScanContext {
        self.detectors = mask;
        self
    }
}

/// One detection: a byte span of the original text and the rule that fired.
///
/// Holds offsets only, never the matched text, so its `Debug` cannot leak a secret.
#[derive(Clone, PartialEq, Debug)]
pub struct Finding {
    /// Detector family.
    pub detector: DetectorKind,
    /// Entity type or category, e.g. `EMAIL_ADDRESS`, `instruction_override`.
    pub kind: &'static str,
    /// Stable rule id, e.g. `pii.email`.
    pub rule: &'static str,
    /// Start byte offset in the original text (char boundary).
    pub start: usize,
    /// End byte offset (exclusive, char boundary).
    pub end: usize,
    /// Confidence in 0..=1; for injection already weighted by the surface.
    pub score: f32,
    /// Severity.
    pub severity: Severity,
}

impl Finding {
    /// Span length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Build-time options.
#[derive(Clone, Debug, Default)]
pub struct DetectorConfig {
    /// PII entity types to report; `None` = all supported.
    pub pii_entities: Option<Vec<String>>,
    /// Safety categories to report; `None` = all supported.
    pub safety_categories: Option<Vec<String>>,
}

/// Why a [`crate::DetectorSet`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A PII entity name that is not supported.
    #[error("detector config: unknown pii entity `{0}`")]
    UnknownPiiEntity(String),
    /// A safety category name that is not supported.
    #[error("detector config: unknown safety category `{0}`")]
    UnknownSafetyCategory(String),
    /// An internal pattern failed to compile (a bug).
    #[error("detector `{detector}`: pattern failed to compile")]
    Pattern {
        /// Which detector.
        detector: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Combined injection score of one text's findings: `1 - Π(1 - s_r)` where `s_r` is the
/// highest score of each distinct injection rule (a rule repeated ten times counts once).
pub fn injection_score(findings: &[Finding]) -> f32 {
    let mut best: Vec<(&'static str, f32)> = Vec::new();
    for f in findings {
        if f.detector != DetectorKind::Injection {
            continue;
        }
        let s = f.score.clamp(0.0, 1.0);
        match best.iter_mut().find(|(r, _)| *r == f.rule) {
            Some(e) => e.1 = e.1.max(s),
            None => best.push((f.rule, s)),
        }
    }
    let keep: f32 = best.iter().map(|(_, s)| 1.0 - s).product();
    (1.0 - keep).clamp(0.0, 1.0)
}
