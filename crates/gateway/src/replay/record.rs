//! The recorded event as replay decodes it: only the members replay reads, and the
//! verdicts reduced while they are parsed.
//!
//! A recorded AutoGen turn carries about fifteen verdicts, most of them ALLOW with a
//! reason string; decoding them into [`audit_chain::VerdictEntry`] values (three or four
//! strings each) was the largest single cost of a replayed record. Here an ALLOW verdict
//! is parsed without allocating (its strings borrow from the input when they hold no
//! escapes) and only what replay needs from it is kept: whether the output phase ran.
//! Members replay does not read are checked for presence and skipped.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use audit_chain::{
    ContentRecord, EdgeRecord, FindingEntry, OutcomeRecord, ToolCallEntry, UsageRecord,
};
use exchange::{Decision, Phase, RequestKind};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::evaluate::{FindingSummary, VerdictSummary};

/// One recorded event (the members of [`audit_chain::AuditEvent`] replay reads).
#[derive(Debug, Deserialize)]
pub(crate) struct ReplayEvent {
    pub agent: String,
    #[serde(default, rename = "approval")]
    _approval: IgnoredAny,
    pub authenticated: bool,
    pub content: Option<ContentRecord>,
    pub conversation: String,
    #[serde(rename = "cost_unknown")]
    _cost_unknown: IgnoredAny,
    pub cost_usd: Option<String>,
    #[serde(rename = "decision")]
    _decision: IgnoredAny,
    pub edges: Vec<EdgeRecord>,
    #[serde(default, rename = "hash")]
    _hash: IgnoredAny,
    pub id: String,
    #[serde(rename = "instance")]
    _instance: IgnoredAny,
    pub key_id: Option<String>,
    #[serde(rename = "latency_ms")]
    _latency_ms: IgnoredAny,
    pub metadata: BTreeMap<String, String>,
    pub model: String,
    pub outcome: OutcomeRecord,
    #[serde(rename = "pack")]
    _pack: IgnoredAny,
    #[serde(default, rename = "prev_hash")]
    _prev_hash: IgnoredAny,
    pub provider: Option<String>,
    pub request_kind: RequestKind,
    pub role: Option<String>,
    pub sender_agents: Vec<String>,
    #[serde(rename = "seq")]
    _seq: IgnoredAny,
    #[serde(default)]
    pub shadow_verdicts: Verdicts,
    pub stream: bool,
    #[serde(rename = "stream_stats")]
    _stream_stats: IgnoredAny,
    #[serde(rename = "tags")]
    _tags: IgnoredAny,
    pub time: String,
    pub tool_calls: Vec<ToolCallEntry>,
    #[serde(rename = "upstream_latency_ms")]
    _upstream_latency_ms: IgnoredAny,
    pub usage: Option<UsageRecord>,
    #[serde(rename = "v")]
    _v: IgnoredAny,
    pub verdicts: Verdicts,
    pub workflow: Option<String>,
}

/// A recorded verdict list, reduced while it is parsed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Verdicts {
    /// The non-ALLOW verdicts, in evaluation order.
    pub kept: Vec<VerdictSummary>,
    /// The most severe decision (ALLOW for an empty list).
    pub decision: Decision,
    /// How many verdicts the list held.
    pub len: usize,
    /// Whether a policy other than `budget` gave an output-phase verdict (the response was
    /// evaluated when it was recorded).
    pub output_evaluated: bool,
}

/// One verdict as it is parsed: strings borrow from the input where they can.
#[derive(Deserialize)]
struct VerdictLite<'a> {
    decision: Decision,
    findings: Vec<FindingEntry>,
    phase: Phase,
    #[serde(borrow)]
    policy: Cow<'a, str>,
    #[serde(borrow)]
    reason: Cow<'a, str>,
    #[serde(borrow)]
    rule: Option<Cow<'a, str>>,
    #[serde(rename = "score_millionths")]
    _score_millionths: Option<i64>,
}

impl Verdicts {
    fn push(&mut self, v: VerdictLite<'_>) {
        self.len += 1;
        self.decision = self.decision.max(v.decision);
        if v.phase == Phase::Output && v.policy != "budget" {
            self.output_evaluated = true;
        }
        if v.decision == Decision::Allow {
            return;
        }
        self.kept.push(VerdictSummary {
            policy: v.policy.into_owned(),
            rule: v.rule.map(Cow::into_owned),
            phase: v.phase,
            decision: v.decision,
            reason: v.reason.into_owned(),
            findings: v
                .findings
                .into_iter()
                .map(|f| FindingSummary {
                    detector: f.detector,
                    kind: f.kind,
                    rule: f.rule,
                    location: f.location,
                    start: f.start,
                    end: f.end,
                })
                .collect(),
        });
    }
}

impl<'de> Deserialize<'de> for Verdicts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Verdicts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of verdicts")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Verdicts, A::Error> {
                let mut out = Verdicts::default();
                while let Some(v) = seq.next_element::<VerdictLite<'de>>()? {
                    out.push(v);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Decodes one recorded event.
///
/// Most recorded turns are ALLOW on every policy, and their verdict list is about half of
/// the event's bytes. When the `verdicts` member of a canonical event holds only ALLOW
/// verdicts, the list is reduced from its raw bytes ([`Verdicts::all_allow`]) and the rest
/// of the event is decoded without it; otherwise the whole event is decoded. Either way a
/// record that is not valid JSON, or lacks a member, is an error (decoded again as a whole,
/// so the message points into the record as stored). On the shortcut, the ALLOW verdicts'
/// other members (reason, findings, scores) are skipped, not decoded: their integrity is
/// what the chain hash covers (`palisade audit verify`).
pub(crate) fn decode_event(bytes: &[u8]) -> Result<ReplayEvent, serde_json::Error> {
    if let Some((start, end)) = verdicts_span(bytes) {
        if let Some(fast) = Verdicts::all_allow(&bytes[start..end]) {
            let mut rest = Vec::with_capacity(bytes.len() - (end - start) + 2);
            rest.extend_from_slice(&bytes[..start]);
            rest.extend_from_slice(b"[]");
            rest.extend_from_slice(&bytes[end..]);
            if let Ok(mut ev) = serde_json::from_slice::<ReplayEvent>(&rest) {
                ev.verdicts = fast;
                return Ok(ev);
            }
        }
    }
    serde_json::from_slice::<ReplayEvent>(bytes)
}

/// The byte span of the top-level `verdicts` array (brackets included) of a canonical
/// event, or `None` when it cannot be found that way.
///
/// `"verdicts":[` can only be that member: text inside strings has its quotes escaped,
/// `shadow_verdicts` has a `_` before its name, and the string maps (`metadata`, `tags`)
/// hold strings, not arrays. In canonical order `workflow` is the last member and
/// `verdicts` the one before it, so the array ends at the last `],"workflow":`. On a
/// record that is not in canonical order the span may be wrong; then the rest of the
/// record lacks members and fails to decode, and [`decode_event`] decodes it whole.
fn verdicts_span(b: &[u8]) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"\"verdicts\":[";
    const NEXT: &[u8] = b"],\"workflow\":";
    let start = memchr::memmem::find(b, KEY)? + KEY.len() - 1;
    let end = memchr::memmem::rfind(b, NEXT)? + 1;
    (start < end).then_some((start, end))
}

/// `rest` (what follows a quoted name) from its `:` when the name is a member name (blanks
/// before the `:` allowed), or `None` when the quoted text was a value.
fn member_value(rest: &[u8]) -> Option<&[u8]> {
    let blanks = rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    let rest = &rest[blanks..];
    (rest.first() == Some(&b':')).then_some(rest)
}

impl Verdicts {
    /// The reduced list when `b` (a JSON array) holds only ALLOW
    /// verdicts written the canonical way (`"decision":"ALLOW"`, `"phase":"…","policy":"…"`
    /// with no blanks); `None` when it cannot tell, and the caller decodes the list.
    ///
    /// Sound because, in valid JSON, a `"` that is not escaped always delimits a string,
    /// so `"decision":` can only be a member name: text inside a string has its quotes
    /// escaped. A string *value* equal to `decision` is followed by `,`, `}` or `]`, not `:`.
    /// A member name followed by blanks before its `:` counts as a name too, and then the
    /// value must still be written the canonical way (`:"ALLOW"`), or the list is decoded.
    fn all_allow(b: &[u8]) -> Option<Verdicts> {
        let mut out = Verdicts::default();
        for at in memchr::memmem::find_iter(b, b"\"decision\"") {
            let Some(rest) = member_value(&b[at + 10..]) else {
                continue;
            };
            if !rest.starts_with(b":\"ALLOW\"") {
                return None;
            }
            out.len += 1;
        }
        let mut phases = 0usize;
        for at in memchr::memmem::find_iter(b, b"\"phase\"") {
            let Some(rest) = member_value(&b[at + 7..]) else {
                continue;
            };
            phases += 1;
            if rest.starts_with(b":\"input\",") {
                continue;
            }
            let policy = rest.strip_prefix(b":\"output\",\"policy\":\"")?;
            let end = memchr::memchr(b'"', policy)?;
            if &policy[..end] != b"budget" {
                out.output_evaluated = true;
            }
        }
        (phases == out.len).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lean decoding keeps exactly what the full one gives replay.
    #[test]
    fn reduces_verdicts_like_the_full_event() {
        let json = r#"[
          {"decision":"ALLOW","findings":[],"phase":"input","policy":"pii-detector","reason":"no pii findings","rule":null,"score_millionths":null},
          {"decision":"REDACT","findings":[{"detector":"pii","end":12,"kind":"EMAIL_ADDRESS","location":"messages[1].content","rule":"pii.email","score_millionths":950000,"start":3}],"phase":"input","policy":"pii-detector","reason":"redacted \"1\" entity","rule":null,"score_millionths":null},
          {"decision":"ALLOW","findings":[],"phase":"output","policy":"budget","reason":"within budget","rule":"b","score_millionths":null},
          {"decision":"LOG","findings":[],"phase":"input","policy":"rule","reason":"tagged","rule":"tag-it","score_millionths":1}
        ]"#;
        let v: Verdicts = serde_json::from_str(json).unwrap();
        assert_eq!(v.len, 4);
        assert_eq!(v.decision, Decision::Redact);
        assert!(
            !v.output_evaluated,
            "a budget verdict alone is not an output evaluation"
        );
        assert_eq!(v.kept.len(), 2);
        assert_eq!(v.kept[0].reason, "redacted \"1\" entity");
        assert_eq!(
            v.kept[0].findings,
            vec![FindingSummary {
                detector: "pii".into(),
                kind: "EMAIL_ADDRESS".into(),
                rule: "pii.email".into(),
                location: "messages[1].content".into(),
                start: 3,
                end: 12,
            }]
        );
        assert_eq!(v.kept[1].rule.as_deref(), Some("tag-it"));
        assert_eq!(v.kept[1].decision, Decision::Log);

        let out: Verdicts = serde_json::from_str(
            r#"[{"decision":"ALLOW","findings":[],"phase":"output","policy":"safety-filter","reason":"","rule":null,"score_millionths":null}]"#,
        )
        .unwrap();
        assert!(out.output_evaluated);
        assert!(out.kept.is_empty());
        assert_eq!(out.decision, Decision::Allow);
    }

    #[test]
    fn the_raw_text_shortcut_agrees_with_decoding() {
        let allow = |phase: &str, policy: &str| {
            format!(
                r#"{{"decision":"ALLOW","findings":[],"phase":"{phase}","policy":"{policy}","reason":"r","rule":null,"score_millionths":null}}"#
            )
        };
        let cases = [
            (format!("[{}]", allow("input", "pii-detector")), true),
            (format!("[{},{}]", allow("input", "a"), allow("output", "budget")), true),
            (format!("[{},{}]", allow("input", "a"), allow("output", "safety-filter")), true),
            ("[]".to_owned(), true),
            // a reason that names the members is still text
            (
                r#"[{"decision":"ALLOW","findings":[],"phase":"input","policy":"p","reason":"\"decision\":\"BLOCK\" \"phase\":","rule":"decision","score_millionths":null}]"#.to_owned(),
                true,
            ),
            // blanks before a `:`: still a member name; a BLOCK behind it is seen
            (
                r#"[{"decision" : "BLOCK","findings":[],"phase" :"input","policy":"p","reason":"r","rule":null,"score_millionths":null}]"#.to_owned(),
                false,
            ),
            (
                r#"[{"decision" :"ALLOW","findings":[],"phase" : "input","policy":"p","reason":"r","rule":null,"score_millionths":null}]"#.to_owned(),
                false,
            ),
            // blanks: not the canonical form, decoded instead
            (
                r#"[{"decision": "ALLOW","findings":[],"phase":"input","policy":"p","reason":"r","rule":null,"score_millionths":null}]"#.to_owned(),
                false,
            ),
            (
                r#"[{"decision":"BLOCK","findings":[],"phase":"input","policy":"p","reason":"r","rule":null,"score_millionths":null}]"#.to_owned(),
                false,
            ),
        ];
        for (json, shortcut) in cases {
            let fast = Verdicts::all_allow(json.as_bytes());
            assert_eq!(fast.is_some(), shortcut, "{json}");
            let mut slow = Verdicts::default();
            let lite: Vec<VerdictLite<'_>> = serde_json::from_str(&json).unwrap();
            for v in lite {
                slow.push(v);
            }
            if let Some(fast) = fast {
                assert_eq!(fast, slow, "{json}");
            }
            let decoded: Verdicts = serde_json::from_str(&json).unwrap();
            assert_eq!(decoded, slow, "{json}");
        }
    }

    fn event(verdicts: serde_json::Value, metadata: serde_json::Value) -> Vec<u8> {
        // serde_json's map is ordered by key: the canonical member order.
        serde_json::to_vec(&serde_json::json!({
            "agent": "planner", "authenticated": true,
            "content": {"mode": "full", "request": "{\"messages\":[]}", "request_forwarded": null, "response": null},
            "conversation": "c1", "cost_unknown": false, "cost_usd": "0.001", "decision": "ALLOW",
            "edges": [{"from": "a", "to": "b"}], "hash": "00", "id": "e1", "instance": "gw",
            "key_id": null, "latency_ms": 3, "metadata": metadata, "model": "gpt-4o-mini",
            "outcome": {"kind": "forwarded", "status": 200},
            "pack": {"name": "p", "sha256": "00", "version": "1"}, "prev_hash": "00",
            "provider": "mock", "request_kind": "chat_completion", "role": null, "sender_agents": ["a"],
            "seq": 1, "stream": false, "stream_stats": null, "tags": {}, "time": "2025-01-01T00:00:00.000000Z",
            "tool_calls": [], "upstream_latency_ms": 1, "usage": null, "v": 1,
            "verdicts": verdicts, "workflow": "w"
        }))
        .unwrap()
    }

    #[test]
    fn decoding_with_and_without_the_shortcut_agree() {
        let allow = serde_json::json!({"decision": "ALLOW", "findings": [], "phase": "output",
            "policy": "safety-filter", "reason": "a \"quoted\" ] reason {", "rule": null, "score_millionths": null});
        let block = serde_json::json!({"decision": "BLOCK", "findings": [], "phase": "input",
            "policy": "prompt-injection", "reason": "score 0.91", "rule": null, "score_millionths": 910000});
        let cases = [
            (
                serde_json::json!([allow.clone(), allow.clone()]),
                serde_json::json!({}),
                true,
            ),
            // a metadata entry named `verdicts` holds a string, never the list
            (
                serde_json::json!([allow.clone()]),
                serde_json::json!({"verdicts": "x"}),
                true,
            ),
            (
                serde_json::json!([allow.clone(), block]),
                serde_json::json!({}),
                false,
            ),
        ];
        for (verdicts, metadata, shortcut) in cases {
            let bytes = event(verdicts, metadata);
            let span = verdicts_span(&bytes).unwrap();
            assert!(bytes[span.0..span.1].starts_with(b"[{\"decision\""));
            assert!(bytes[span.1..].starts_with(b",\"workflow\""));
            assert_eq!(
                Verdicts::all_allow(&bytes[span.0..span.1]).is_some(),
                shortcut
            );
            let fast = decode_event(&bytes).unwrap();
            let slow = serde_json::from_slice::<ReplayEvent>(&bytes).unwrap();
            assert_eq!(fast.verdicts, slow.verdicts);
            assert_eq!((fast.id, fast.workflow), (slow.id, slow.workflow));
        }
        // A broken record is an error on either path, with the stored record's position.
        let mut broken = event(serde_json::json!([allow]), serde_json::json!({}));
        let at = memchr::memmem::find(&broken, b"\"workflow\"").unwrap();
        broken.truncate(at + 5);
        assert!(decode_event(&broken).unwrap_err().is_eof());
    }

    #[test]
    fn a_malformed_verdict_is_an_error() {
        let err = serde_json::from_str::<Verdicts>(r#"[{"decision":"MAYBE"}]"#).unwrap_err();
        assert!(err.to_string().contains("MAYBE"), "{err}");
        let err = serde_json::from_str::<Verdicts>(r#"[{"decision":"ALLOW","findings":[]}]"#)
            .unwrap_err();
        assert!(err.to_string().contains("missing field `phase`"), "{err}");
    }
}
