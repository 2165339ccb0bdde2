//! The audit event: what one exchange leaves in the chain.

use std::collections::BTreeMap;
use std::time::SystemTime;

use exchange::{Decision, Exchange, FindingRecord, Outcome, Phase, RequestKind, Verdict};
use policy_engine::{AuditSettings, ContentCapture, PackMeta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{CanonicalError, chain_hash, to_canonical};

/// Version of the event format, written in every event as `v`.
pub const FORMAT_VERSION: u32 = 1;

/// What the audit layer needs besides the exchange: the pack's audit settings, the pack's
/// identity and this gateway instance. The gateway stores a new one on pack reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    /// The `audit:` settings of the active pack (and `audit-logger` tags / capture fields).
    pub settings: AuditSettings,
    /// Name, version and content hash of the active pack.
    pub pack: PackMeta,
    /// Id of this gateway instance (e.g. hostname + pid, or a UUID chosen at start).
    pub instance_id: String,
}

/// A sender → recipient edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// Agent that wrote the message.
    pub from: String,
    /// Agent it was delivered to.
    pub to: String,
}

/// Token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Cached prompt tokens.
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Counted by the gateway's tokenizer (the provider gave none).
    pub estimated: bool,
    /// Prompt tokens.
    pub prompt_tokens: u64,
}

/// The pack that governed the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    /// `pack.name`.
    pub name: String,
    /// Hex SHA-256 of the pack file.
    pub sha256: String,
    /// `pack.version`.
    pub version: String,
}

/// One finding: where and what, never the matched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingEntry {
    /// Detector family.
    pub detector: String,
    /// End byte offset (exclusive).
    pub end: u64,
    /// Entity or technique.
    pub kind: String,
    /// Where the text sits (`messages[2].content`, …).
    pub location: String,
    /// Rule id.
    pub rule: String,
    /// Confidence × 1,000,000, rounded (integers only in the hashed form).
    pub score_millionths: i64,
    /// Start byte offset (UTF-8) in that text.
    pub start: u64,
}

/// One policy's or rule's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictEntry {
    /// The decision.
    pub decision: Decision,
    /// Evidence.
    pub findings: Vec<FindingEntry>,
    /// `input` or `output`.
    pub phase: Phase,
    /// Policy name, or `rule`.
    pub policy: String,
    /// Reason (never raw secrets).
    pub reason: String,
    /// Rule name, if any.
    pub rule: Option<String>,
    /// The policy's score × 1,000,000, rounded, if it computes one.
    pub score_millionths: Option<i64>,
}

/// What became of the exchange (mirrors [`exchange::Outcome`]; fixed here so the hashed
/// format does not move with that type).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutcomeRecord {
    /// Not finished when recorded.
    Pending,
    /// Forwarded and answered.
    Forwarded {
        /// Status.
        status: u16,
    },
    /// Blocked by a policy.
    Blocked {
        /// Policy or rule.
        policy: String,
        /// Status sent.
        status: u16,
    },
    /// Refused before policy evaluation.
    Rejected {
        /// Status sent.
        status: u16,
        /// Error code.
        code: String,
    },
    /// Upstream failure.
    UpstreamError {
        /// Status sent.
        status: u16,
        /// Why.
        reason: String,
    },
    /// The client went away.
    ClientDisconnected,
}

/// Members in canonical (sorted) order, so that serde_json writes canonical bytes.
impl Serialize for OutcomeRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            OutcomeRecord::Pending => m.serialize_entry("kind", "pending")?,
            OutcomeRecord::Forwarded { status } => {
                m.serialize_entry("kind", "forwarded")?;
                m.serialize_entry("status", status)?;
            }
            OutcomeRecord::Blocked { policy, status } => {
                m.serialize_entry("kind", "blocked")?;
                m.serialize_entry("policy", policy)?;
                m.serialize_entry("status", status)?;
            }
            OutcomeRecord::Rejected { status, code } => {
                m.serialize_entry("code", code)?;
                m.serialize_entry("kind", "rejected")?;
                m.serialize_entry("status", status)?;
            }
            OutcomeRecord::UpstreamError { status, reason } => {
                m.serialize_entry("kind", "upstream_error")?;
                m.serialize_entry("reason", reason)?;
                m.serialize_entry("status", status)?;
            }
            OutcomeRecord::ClientDisconnected => {
                m.serialize_entry("kind", "client_disconnected")?
            }
        }
        m.end()
    }
}

impl From<&Outcome> for OutcomeRecord {
    fn from(o: &Outcome) -> Self {
        match o {
            Outcome::Pending => OutcomeRecord::Pending,
            Outcome::Forwarded { status } => OutcomeRecord::Forwarded { status: *status },
            Outcome::Blocked { policy, status } => OutcomeRecord::Blocked {
                policy: policy.clone(),
                status: *status,
            },
            Outcome::Rejected { status, code } => OutcomeRecord::Rejected {
                status: *status,
                code: code.clone(),
            },
            Outcome::UpstreamError { status, reason } => OutcomeRecord::UpstreamError {
                status: *status,
                reason: reason.clone(),
            },
            Outcome::ClientDisconnected => OutcomeRecord::ClientDisconnected,
        }
    }
}

/// A tool call in the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallEntry {
    /// Hex SHA-256 of the arguments string.
    pub arguments_sha256: String,
    /// Tool name.
    pub name: String,
}

/// Streaming statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Bytes released to the client.
    pub bytes_released: u64,
    /// Bytes released before the output verdict covering them.
    pub bytes_released_before_verdict: u64,
    /// SSE events received from upstream.
    pub chunks_received: u64,
    /// Whether upstream ended the stream with `[DONE]`.
    pub completed: bool,
    /// Whether the output scan saw the whole response.
    pub output_scan_completed: bool,
}

/// Request / response content as the pack's `audit.content` says. Each body is a JSON
/// document held as a string, so the hashed form never contains a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    /// `full` or `redacted`.
    pub mode: String,
    /// `full`: the request body as received. `redacted`: the request as forwarded with
    /// every input finding span masked. `None` when the body was not JSON (redacted mode).
    pub request: Option<String>,
    /// `full` only: the request as forwarded, when a policy changed it.
    pub request_forwarded: Option<String>,
    /// The response after output policies (`redacted`: output finding spans masked).
    pub response: Option<String>,
}

/// The human approval a turn or tool call waited for (members in canonical order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalEntry {
    /// Who decided (admin API / CLI), if anyone.
    pub approver: Option<String>,
    /// Approval request id.
    pub id: String,
    /// The rule(s) that asked for approval.
    pub rule: String,
    /// `approved`, `denied`, `timed_out`, `cancelled` or `pending` (non-holding mode).
    pub status: String,
    /// Milliseconds between the request and the decision.
    pub waited_ms: u64,
}

/// One audit event. Serialized with every member present (`null` for absent values); the
/// hash covers the canonical bytes of everything except `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Calling agent (`anonymous` when unknown).
    pub agent: String,
    /// The human approval the exchange waited for. Omitted when none, so events without
    /// one keep their canonical bytes and hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalEntry>,
    /// Whether a gateway key authenticated the call.
    pub authenticated: bool,
    /// Content, per `audit.content` (`None` for `content: none`).
    pub content: Option<ContentRecord>,
    /// Conversation id.
    pub conversation: String,
    /// True when the model has no known price.
    pub cost_unknown: bool,
    /// Cost in USD, exact decimal string.
    pub cost_usd: Option<String>,
    /// The most severe decision.
    pub decision: Decision,
    /// Sender → recipient edges.
    pub edges: Vec<EdgeRecord>,
    /// Hex `SHA-256(prev_hash ‖ canonical bytes)`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// Event id (the exchange's UUID v7).
    pub id: String,
    /// Gateway instance that recorded it.
    pub instance: String,
    /// Public id of the key used.
    pub key_id: Option<String>,
    /// Total latency in milliseconds.
    pub latency_ms: Option<u64>,
    /// Exchange metadata and `audit-logger` captured fields.
    pub metadata: BTreeMap<String, String>,
    /// Requested model.
    pub model: String,
    /// What became of the exchange.
    pub outcome: OutcomeRecord,
    /// The pack that governed the call.
    pub pack: PackRecord,
    /// Hex SHA-256 hash of the previous event (64 zeros for the first).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prev_hash: String,
    /// Provider that served the call.
    pub provider: Option<String>,
    /// Kind of call.
    pub request_kind: RequestKind,
    /// Role bound to the key.
    pub role: Option<String>,
    /// Agents that wrote messages in the request.
    pub sender_agents: Vec<String>,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Verdicts of the shadow (candidate) pack, evaluated log-only beside the active pack
    /// (`palisade gateway run --shadow-policy`). Omitted when empty, so events recorded
    /// without a shadow pack keep their canonical bytes and hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow_verdicts: Vec<VerdictEntry>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Streaming statistics.
    pub stream_stats: Option<StreamRecord>,
    /// `audit-logger` tags.
    pub tags: BTreeMap<String, String>,
    /// Receive time, RFC 3339 UTC with microseconds (`2025-01-02T03:04:05.123456Z`).
    pub time: String,
    /// Tool calls in the response.
    pub tool_calls: Vec<ToolCallEntry>,
    /// Upstream latency in milliseconds.
    pub upstream_latency_ms: Option<u64>,
    /// Token usage.
    pub usage: Option<UsageRecord>,
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// Every verdict, in evaluation order.
    pub verdicts: Vec<VerdictEntry>,
    /// Workflow id.
    pub workflow: Option<String>,
}

/// Formats a wall-clock time the way events store it: RFC 3339, UTC, 6 fraction digits.
pub fn format_time(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t).to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    dt.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned())
}

/// Parses an RFC 3339 time (any offset) into the stored form, for `since` filters.
pub fn normalize_time(rfc3339: &str) -> Option<String> {
    let dt = time::OffsetDateTime::parse(
        rfc3339.trim(),
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some(format_time(dt.into()))
}

fn millionths(x: f64) -> Option<i64> {
    if x.is_finite() {
        Some((x * 1_000_000.0).round().clamp(-9.0e15, 9.0e15) as i64)
    } else {
        None
    }
}

fn finding_entry(f: &FindingRecord) -> FindingEntry {
    FindingEntry {
        detector: f.detector.clone(),
        kind: f.kind.clone(),
        rule: f.rule.clone(),
        location: f.location.clone(),
        start: f.start as u64,
        end: f.end as u64,
        score_millionths: millionths(f64::from(f.score)).unwrap_or(0),
    }
}

fn verdict_entry(v: &Verdict) -> VerdictEntry {
    VerdictEntry {
        policy: v.policy.clone(),
        rule: v.rule.clone(),
        phase: v.phase,
        decision: v.decision,
        reason: v.reason.clone(),
        score_millionths: v.score.and_then(millionths),
        findings: v.findings.iter().map(finding_entry).collect(),
    }
}

fn duration_ms(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl AuditEvent {
    /// The event for `ex` before it has a place in the chain (`seq` 0, no hashes).
    /// Applies `audit.content` and the `audit-logger` tags and capture fields of `ctx`.
    pub fn draft(ex: &Exchange, ctx: &AuditContext) -> AuditEvent {
        let mut metadata = ex.metadata.clone();
        for field in &ctx.settings.capture_fields {
            match field.as_str() {
                "sender_agents" => {
                    metadata.insert(field.clone(), ex.senders.join(","));
                }
                "recipient_agent" => {
                    metadata.insert(field.clone(), ex.identity.agent_or_anonymous().to_owned());
                }
                other => {
                    if let Some(name) = other.strip_prefix("header:") {
                        let name = name.trim().to_ascii_lowercase();
                        if let Some(v) = ex.captured_headers.get(&name) {
                            metadata.insert(format!("header:{name}"), v.clone());
                        }
                    }
                }
            }
        }
        let tags = ctx.settings.tags.iter().cloned().collect();
        AuditEvent {
            v: FORMAT_VERSION,
            id: ex.id.to_string(),
            time: format_time(ex.received_at),
            seq: 0,
            instance: ctx.instance_id.clone(),
            workflow: ex.identity.workflow.clone(),
            conversation: ex.conversation_id.clone(),
            agent: ex.identity.agent_or_anonymous().to_owned(),
            approval: ex.approval.as_ref().map(|a| ApprovalEntry {
                approver: a.approver.clone(),
                id: a.id.clone(),
                rule: a.rule.clone(),
                status: a.status.clone(),
                waited_ms: a.waited_ms,
            }),
            role: ex.identity.role.clone(),
            key_id: ex.identity.key_id.clone(),
            authenticated: ex.identity.authenticated,
            sender_agents: ex.senders.clone(),
            edges: ex
                .edges
                .iter()
                .map(|e| EdgeRecord {
                    from: e.from.clone(),
                    to: e.to.clone(),
                })
                .collect(),
            request_kind: ex.kind,
            stream: ex.request.is_stream(),
            provider: ex.provider.clone(),
            model: ex.request.model.clone(),
            usage: ex.usage.map(|u| UsageRecord {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cached_tokens: u.cached_tokens,
                estimated: u.estimated,
            }),
            cost_usd: ex.cost_usd.clone(),
            cost_unknown: ex.cost_unknown,
            pack: PackRecord {
                name: ctx.pack.name.clone(),
                version: ctx.pack.version.clone(),
                sha256: ctx.pack.content_sha256.clone(),
            },
            verdicts: ex.verdicts.iter().map(verdict_entry).collect(),
            shadow_verdicts: ex.shadow_verdicts.iter().map(verdict_entry).collect(),
            decision: ex.decision(),
            outcome: OutcomeRecord::from(&ex.outcome),
            tool_calls: ex
                .tool_calls
                .iter()
                .map(|t| ToolCallEntry {
                    name: t.name.clone(),
                    arguments_sha256: t.arguments_sha256.clone(),
                })
                .collect(),
            latency_ms: duration_ms(ex.total_latency),
            upstream_latency_ms: duration_ms(ex.upstream_latency),
            stream_stats: ex.stream.as_ref().map(|s| StreamRecord {
                chunks_received: s.chunks_received,
                bytes_released: s.bytes_released,
                bytes_released_before_verdict: s.bytes_released_before_verdict,
                output_scan_completed: s.output_scan_completed,
                completed: s.completed,
            }),
            metadata,
            tags,
            content: crate::redact::content_record(ex, ctx.settings.content),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The sealed event for `ex` at `seq` after `prev_hash`: [`AuditEvent::draft`] then
    /// [`AuditEvent::seal`].
    pub fn from_exchange(
        ex: &Exchange,
        ctx: &AuditContext,
        seq: u64,
        prev_hash: [u8; 32],
    ) -> Result<AuditEvent, CanonicalError> {
        let mut ev = AuditEvent::draft(ex, ctx);
        ev.seal(seq, prev_hash)?;
        Ok(ev)
    }

    /// Places the event at `seq` after `prev_hash` and computes its hash; returns the
    /// canonical bytes that were hashed.
    pub fn seal(&mut self, seq: u64, prev_hash: [u8; 32]) -> Result<Vec<u8>, CanonicalError> {
        self.seal_hashed(seq, prev_hash).map(|(bytes, _)| bytes)
    }

    /// [`AuditEvent::seal`], also returning the event's hash (so callers need not hash the
    /// bytes a second time).
    pub fn seal_hashed(
        &mut self,
        seq: u64,
        prev_hash: [u8; 32],
    ) -> Result<(Vec<u8>, [u8; 32]), CanonicalError> {
        self.seq = seq;
        self.prev_hash.clear();
        self.hash.clear();
        let bytes = self.fast_canonical()?;
        let hash = chain_hash(&prev_hash, &bytes);
        self.prev_hash = hex::encode(prev_hash);
        self.hash = hex::encode(hash);
        Ok((bytes, hash))
    }

    /// The canonical bytes: every member except `prev_hash` and `hash`.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        if self.prev_hash.is_empty() && self.hash.is_empty() {
            return self.fast_canonical();
        }
        let mut unsealed = self.clone();
        unsealed.prev_hash.clear();
        unsealed.hash.clear();
        unsealed.fast_canonical()
    }

    /// The canonical bytes by the generic route (serde value, then [`to_canonical`]); the
    /// same bytes as [`AuditEvent::canonical_bytes`], only slower. For tests and tools.
    pub fn canonical_bytes_slow(&self) -> Result<Vec<u8>, CanonicalError> {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("prev_hash");
            m.remove("hash");
        }
        to_canonical(&v)
    }

    /// Every struct here declares its members in canonical (byte-sorted) order, maps are
    /// `BTreeMap<String, _>` (byte order), there are no floats, and serde_json escapes
    /// strings as RFC 8785 does: so compact serde_json output *is* the canonical form.
    /// Tests compare it with the generic route ([`AuditEvent::canonical_bytes_slow`]).
    fn fast_canonical(&self) -> Result<Vec<u8>, CanonicalError> {
        let mut out = Vec::with_capacity(2048);
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => Ok(out),
            Err(_) => self.canonical_bytes_slow(),
        }
    }

    /// The canonical JSON of the whole event, `prev_hash` and `hash` included: one JSONL line.
    pub fn to_json_line(&self) -> Result<Vec<u8>, CanonicalError> {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        to_canonical(&v)
    }
}

/// The outcome implied by a response status, for exchanges no layer finished.
pub fn outcome_from_status(status: http::StatusCode) -> Outcome {
    let s = status.as_u16();
    if status.is_success() {
        Outcome::Forwarded { status: s }
    } else if status.is_server_error() {
        Outcome::UpstreamError {
            status: s,
            reason: format!("status {s}"),
        }
    } else {
        Outcome::Rejected {
            status: s,
            code: format!("http_{s}"),
        }
    }
}

/// Convenience: the capture mode name.
pub(crate) fn capture_name(c: ContentCapture) -> &'static str {
    match c {
        ContentCapture::Full => "full",
        ContentCapture::Redacted => "redacted",
        ContentCapture::None => "none",
    }
}
