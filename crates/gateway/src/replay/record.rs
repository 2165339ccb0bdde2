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
/// The record is checked to be UTF-8 once. A canonical event (members in byte order, no
/// blanks, as the audit writer writes it) is walked member by member ([`canonical_event`]):
/// - **content**: the request and response are JSON documents held as escaped strings,
///   the longest strings of the event; they are unescaped in one pass instead of the
///   generic decoder's per-escape restarts.
/// - **verdicts**: a recorded turn carries about fifteen verdicts, most of them ALLOW, and
///   the list is about half of the event's bytes ([`Verdicts::walk`]): an ALLOW verdict is
///   reduced from its text and only the others are decoded. Its other members (reason,
///   findings, scores) are skipped, not decoded: their integrity is what the chain hash
///   covers (`palisade audit verify`).
///
/// Anything else is decoded by the generic decoder, so a record that is not valid JSON, or
/// lacks a member, gets its error (pointing into the record as stored).
pub(crate) fn decode_event(bytes: &[u8]) -> Result<ReplayEvent, serde_json::Error> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return serde_json::from_slice::<ReplayEvent>(bytes);
    };
    if let Some(ev) = canonical_event(text) {
        return Ok(ev);
    }
    serde_json::from_str::<ReplayEvent>(text)
}

/// A position in a canonical event's text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.at..).unwrap_or_default()
    }

    /// Consumes `lit` if the text continues with it.
    fn lit(&mut self, lit: &str) -> Option<()> {
        self.rest().starts_with(lit.as_bytes()).then(|| {
            self.at += lit.len();
        })
    }

    /// Skips a JSON string (quotes included) without decoding it.
    fn skip_string(&mut self) -> Option<()> {
        self.lit("\"")?;
        loop {
            let rest = self.rest();
            let i = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[i] == b'"' {
                self.at += i + 1;
                return Some(());
            }
            // Skip the escaped byte: no escape ends with a quote or a backslash except
            // the two-byte ones, which this skips whole.
            self.at += i + 2;
        }
    }

    /// `null` or a string.
    fn nullable_string(&mut self) -> Option<Option<String>> {
        if self.lit("null").is_some() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// Decodes a JSON string. `None` on anything not valid JSON (a control character, an
    /// unknown escape, a lone surrogate), which the generic decoder then reports.
    ///
    /// The content strings are JSON documents, so an escaped quote comes every few bytes:
    /// the text is copied eight bytes per step (a whole word is stored, then the bytes
    /// after a quote, backslash or control character are dropped again), which costs no
    /// call per run.
    fn string(&mut self) -> Option<String> {
        self.lit("\"")?;
        let b = self.rest();
        // Most strings are short (names, ids); the content strings grow a few times.
        let mut out: Vec<u8> = Vec::with_capacity(b.len().min(256));
        let mut i = 0;
        loop {
            let special = loop {
                let Some(chunk) = b.get(i..i + 8) else {
                    // The last few bytes of the record, one at a time.
                    let c = *b.get(i)?;
                    if is_special(c) {
                        break c;
                    }
                    out.push(c);
                    i += 1;
                    continue;
                };
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                out.extend_from_slice(&word);
                let hit = special_bytes(u64::from_le_bytes(word));
                if hit != 0 {
                    let k = (hit.trailing_zeros() / 8) as usize;
                    out.truncate(out.len() - 8 + k);
                    i += k;
                    break b[i];
                }
                i += 8;
            };
            match special {
                b'"' => {
                    self.at += i + 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    // `\"` is nearly every escape of a JSON document held as a string.
                    if b.get(i + 1) == Some(&b'"') {
                        out.push(b'"');
                        i += 2;
                        continue;
                    }
                    let (ch, used) = unescape(b.get(i + 1..)?)?;
                    if ch.is_ascii() {
                        out.push(ch as u8);
                    } else {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    i += 1 + used;
                }
                _ => return None,
            }
        }
    }
}

/// Whether `c` ends a run of string text: a quote, a backslash or a control character.
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The bytes of `w` (little-endian) that end a run of string text ([`is_special`]): the
/// lowest set high bit marks the first one. Bits above it may be set spuriously (borrows),
/// so only the lowest is meaningful.
fn special_bytes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    zero(w ^ (ONES * u64::from(b'"')))
        | zero(w ^ (ONES * u64::from(b'\\')))
        | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
}

/// The character of one escape (`b` starts after the backslash) and the bytes it used.
fn unescape(b: &[u8]) -> Option<(char, usize)> {
    let simple = match *b.first()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(b.get(1..5)?)?;
            if !(0xD800..0xDC00).contains(&hi) {
                return Some((char::from_u32(hi)?, 5));
            }
            // A high surrogate must be followed by `\u` and a low one.
            if b.get(5..7)? != b"\\u" {
                return None;
            }
            let lo = hex4(b.get(7..11)?)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return None;
            }
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return Some((char::from_u32(c)?, 11));
        }
        _ => return None,
    };
    Some((simple, 1))
}

/// Four hex digits.
fn hex4(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

/// Decodes a canonical event member by member: members in byte order, no blanks, each
/// value written as the audit writer writes it. Strings are unescaped in one pass, the
/// content and verdicts as in [`decode_event`], and the structured members (edges,
/// outcome, usage, …) and the ignored ones are decoded or checked by the JSON decoder from
/// where they start. `None` as soon as anything differs (another order, an unknown member,
/// blanks, an escape it does not know), and the record is decoded the other ways.
fn canonical_event(text: &str) -> Option<ReplayEvent> {
    let mut c = Cursor { text, at: 0 };
    c.lit("{\"agent\":")?;
    let agent = c.string()?;
    let _approval = c.optional::<IgnoredAny>("approval")?.unwrap_or(IgnoredAny);
    let authenticated = c.member("authenticated")?;
    c.key("content")?;
    let content = c.content()?;
    let conversation = c.string_member("conversation")?;
    c.ignore("cost_unknown")?;
    c.key("cost_usd")?;
    let cost_usd = c.nullable_string()?;
    c.ignore("decision")?;
    let edges = c.member("edges")?;
    let _hash = c.optional::<IgnoredAny>("hash")?.unwrap_or(IgnoredAny);
    let id = c.string_member("id")?;
    c.ignore("instance")?;
    c.key("key_id")?;
    let key_id = c.nullable_string()?;
    c.ignore("latency_ms")?;
    let metadata = c.member("metadata")?;
    let model = c.string_member("model")?;
    let outcome = c.member("outcome")?;
    c.ignore("pack")?;
    let _prev_hash = c.optional::<IgnoredAny>("prev_hash")?.unwrap_or(IgnoredAny);
    c.key("provider")?;
    let provider = c.nullable_string()?;
    let request_kind = c.member("request_kind")?;
    c.key("role")?;
    let role = c.nullable_string()?;
    let sender_agents = c.member("sender_agents")?;
    c.ignore("seq")?;
    let shadow_verdicts = c
        .optional::<Verdicts>("shadow_verdicts")?
        .unwrap_or_default();
    let stream = c.member("stream")?;
    c.ignore("stream_stats")?;
    c.ignore("tags")?;
    let time = c.string_member("time")?;
    let tool_calls = c.member("tool_calls")?;
    c.ignore("upstream_latency_ms")?;
    let usage = c.member("usage")?;
    c.ignore("v")?;
    c.key("verdicts")?;
    let verdicts = Verdicts::walk(&mut c)?;
    c.key("workflow")?;
    let workflow = c.nullable_string()?;
    c.lit("}")?;
    (c.at == text.len()).then_some(())?;
    Some(ReplayEvent {
        agent,
        _approval,
        authenticated,
        content,
        conversation,
        _cost_unknown: IgnoredAny,
        cost_usd,
        _decision: IgnoredAny,
        edges,
        _hash,
        id,
        _instance: IgnoredAny,
        key_id,
        _latency_ms: IgnoredAny,
        metadata,
        model,
        outcome,
        _pack: IgnoredAny,
        _prev_hash,
        provider,
        request_kind,
        role,
        sender_agents,
        _seq: IgnoredAny,
        shadow_verdicts,
        stream,
        _stream_stats: IgnoredAny,
        _tags: IgnoredAny,
        time,
        tool_calls,
        _upstream_latency_ms: IgnoredAny,
        usage,
        _v: IgnoredAny,
        verdicts,
        workflow,
    })
}

impl<'a> Cursor<'a> {
    /// Consumes `,"name":`.
    fn key(&mut self, name: &str) -> Option<()> {
        let rest = self.rest();
        let n = name.len();
        let ok = rest.len() > n + 3
            && rest[0] == b','
            && rest[1] == b'"'
            && &rest[2..2 + n] == name.as_bytes()
            && rest[2 + n] == b'"'
            && rest[3 + n] == b':';
        ok.then(|| self.at += n + 4)
    }

    /// The value of the optional member `name` when it comes next (`Some(None)` when it
    /// does not); `None` when it is there and does not decode.
    fn optional<T: Deserialize<'a>>(&mut self, name: &str) -> Option<Option<T>> {
        if self.key(name).is_none() {
            return Some(None);
        }
        self.value().map(Some)
    }

    /// The member `name` (next), decoded as `T`.
    fn member<T: Deserialize<'a>>(&mut self, name: &str) -> Option<T> {
        self.key(name)?;
        self.value()
    }

    /// The member `name` (next), a string.
    fn string_member(&mut self, name: &str) -> Option<String> {
        self.key(name)?;
        self.string()
    }

    /// The member `name` (next), checked and skipped.
    fn ignore(&mut self, name: &str) -> Option<()> {
        self.member::<IgnoredAny>(name).map(|_| ())
    }

    /// One JSON value decoded as `T` from here (the decoder checks it whole).
    fn value<T: Deserialize<'a>>(&mut self) -> Option<T> {
        let rest = self.text.get(self.at..)?;
        let mut one = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        let v = one.next()?.ok()?;
        self.at += one.byte_offset();
        Some(v)
    }

    /// The `content` member's value: `null` or
    /// `{"mode":…,"request":…,"request_forwarded":…,"response":…}`.
    fn content(&mut self) -> Option<Option<ContentRecord>> {
        if self.lit("null").is_some() {
            return Some(None);
        }
        self.lit("{\"mode\":")?;
        let mode = self.string()?;
        self.key("request")?;
        let request = self.nullable_string()?;
        self.key("request_forwarded")?;
        let request_forwarded = self.nullable_string()?;
        self.key("response")?;
        let response = self.nullable_string()?;
        self.lit("}")?;
        Some(Some(ContentRecord {
            mode,
            request,
            request_forwarded,
            response,
        }))
    }
}

impl Cursor<'_> {
    /// Skips `null` or an integer.
    fn skip_int_or_null(&mut self) -> Option<()> {
        if self.lit("null").is_some() {
            return Some(());
        }
        let _ = self.lit("-");
        let digits = self
            .rest()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        (digits > 0).then(|| self.at += digits)
    }

    /// An ALLOW verdict written the canonical way with no findings:
    /// `{"decision":"ALLOW","findings":[],"phase":…,"policy":…,"reason":…,"rule":…,"score_millionths":…}`.
    /// Returns whether it is an output-phase verdict of a policy other than `budget`;
    /// `None` (and the cursor unmoved) for anything else.
    fn allow_verdict(&mut self) -> Option<bool> {
        let from = self.at;
        let read = self.allow_verdict_members();
        if read.is_none() {
            self.at = from;
        }
        read
    }

    fn allow_verdict_members(&mut self) -> Option<bool> {
        self.lit("{\"decision\":\"ALLOW\",\"findings\":[],\"phase\":\"")?;
        let output = match self.lit("input\"") {
            Some(()) => false,
            None => {
                self.lit("output\"")?;
                true
            }
        };
        self.lit(",\"policy\":\"")?;
        let rest = self.rest();
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[len] != b'"' {
            return None;
        }
        let budget = &rest[..len] == b"budget";
        self.at += len + 1;
        self.lit(",\"reason\":")?;
        self.skip_string()?;
        self.lit(",\"rule\":")?;
        if self.lit("null").is_none() {
            self.skip_string()?;
        }
        self.lit(",\"score_millionths\":")?;
        self.skip_int_or_null()?;
        self.lit("}")?;
        Some(output && !budget)
    }
}

impl Verdicts {
    /// Walks a canonical verdict list from its `[` to after its `]`, reducing it on the
    /// way, or `None` when it cannot, and the caller decodes the list.
    ///
    /// An ALLOW verdict with no findings, written the canonical way, is read off its text
    /// member by member ([`Cursor::allow_verdict`]: the whole verdict is checked, so no
    /// second `decision` can hide behind it); its reason and score are skipped. Any other
    /// verdict is decoded from where it starts to where it ends.
    fn walk(c: &mut Cursor<'_>) -> Option<Verdicts> {
        let mut out = Verdicts::default();
        c.lit("[")?;
        if c.lit("]").is_some() {
            return Some(out);
        }
        loop {
            match c.allow_verdict() {
                Some(output) => {
                    out.len += 1;
                    out.output_evaluated |= output;
                }
                None => {
                    let rest = c.text.get(c.at..)?;
                    let mut one =
                        serde_json::Deserializer::from_str(rest).into_iter::<VerdictLite<'_>>();
                    let v = one.next()?.ok()?;
                    c.at += one.byte_offset();
                    out.push(v);
                }
            }
            if c.lit(",").is_none() {
                c.lit("]")?;
                return Some(out);
            }
        }
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
    fn walking_the_raw_text_agrees_with_decoding() {
        let allow = |phase: &str, policy: &str| {
            format!(
                r#"{{"decision":"ALLOW","findings":[],"phase":"{phase}","policy":"{policy}","reason":"r","rule":null,"score_millionths":null}}"#
            )
        };
        let block = r#"{"decision":"BLOCK","findings":[{"detector":"pii","end":12,"kind":"EMAIL_ADDRESS","location":"messages[1].content","rule":"pii.email","score_millionths":950000,"start":3}],"phase":"input","policy":"p","reason":"r","rule":null,"score_millionths":-1}"#;
        // (list, whether the walk reduces it, whether its first verdict is read off the text)
        let cases = [
            (format!("[{}]", allow("input", "pii-detector")), true, true),
            (format!("[{},{}]", allow("input", "a"), allow("output", "budget")), true, true),
            (format!("[{},{}]", allow("input", "a"), allow("output", "safety-filter")), true, true),
            (format!("[{block},{},{block}]", allow("output", "q")), true, false),
            ("[]".to_owned(), true, false),
            // a reason that names the members is still text
            (
                r#"[{"decision":"ALLOW","findings":[],"phase":"input","policy":"p","reason":"\"decision\":\"BLOCK\" \"phase\":","rule":"decision","score_millionths":7}]"#.to_owned(),
                true,
                true,
            ),
            // blanks: not the canonical form, so the verdict is decoded; a BLOCK is seen
            (
                r#"[{"decision" : "BLOCK","findings":[],"phase" :"input","policy":"p","reason":"r","rule":null,"score_millionths":null}]"#.to_owned(),
                true,
                false,
            ),
            (
                r#"[{"decision": "ALLOW","findings":[],"phase":"input","policy":"p","reason":"r","rule":null,"score_millionths":null}]"#.to_owned(),
                true,
                false,
            ),
            // an ALLOW with findings is decoded
            (
                format!("[{}]", block.replace("BLOCK", "ALLOW").replace("input", "output")),
                true,
                false,
            ),
            // blanks between verdicts: not walked
            (format!("[ {} ]", allow("input", "a")), false, false),
        ];
        for (json, walks, read_off) in cases {
            let fast = Verdicts::walk(&mut Cursor { text: &json, at: 0 });
            assert_eq!(fast.is_some(), walks, "{json}");
            let first = Cursor { text: &json, at: 1 }.allow_verdict();
            assert_eq!(first.is_some(), read_off, "{json}");
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
        // A second `decision` behind an ALLOW is not hidden: the verdict is decoded, which
        // refuses the duplicate member.
        let hidden = format!(
            "[{}]",
            allow("input", "p").replace("null}", "null,\"decision\":\"BLOCK\"}")
        );
        let mut c = Cursor {
            text: &hidden,
            at: 1,
        };
        assert_eq!(c.allow_verdict(), None);
        assert_eq!(c.at, 1, "a failed read leaves the cursor where it was");
        assert!(
            Verdicts::walk(&mut Cursor {
                text: &hidden,
                at: 0
            })
            .is_none()
        );
        assert!(serde_json::from_str::<Verdicts>(&hidden).is_err());
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
            ),
            // a metadata entry named `verdicts` holds a string, never the list
            (
                serde_json::json!([allow.clone()]),
                serde_json::json!({"verdicts": "x"}),
            ),
            (
                serde_json::json!([allow.clone(), block]),
                serde_json::json!({}),
            ),
        ];
        for (verdicts, metadata) in cases {
            let bytes = event(verdicts, metadata);
            let text = std::str::from_utf8(&bytes).unwrap();
            let fast = decode_event(&bytes).unwrap();
            let slow = serde_json::from_slice::<ReplayEvent>(&bytes).unwrap();
            assert!(canonical_event(text).is_some(), "walked member by member");
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
        // A broken record is an error on either path, with the stored record's position.
        let mut broken = event(serde_json::json!([allow]), serde_json::json!({}));
        let at = memchr::memmem::find(&broken, b"\"workflow\"").unwrap();
        broken.truncate(at + 5);
        assert!(decode_event(&broken).unwrap_err().is_eof());
    }

    /// The member-by-member walk decodes exactly what the generic decoder does, and gives
    /// way on anything that is not written the canonical way.
    #[test]
    fn the_member_walk_agrees_with_decoding() {
        let allow = serde_json::json!({"decision": "ALLOW", "findings": [], "phase": "input",
            "policy": "pii-detector", "reason": "r", "rule": null, "score_millionths": null});
        let base = || {
            let bytes = event(
                serde_json::json!([allow.clone()]),
                serde_json::json!({"k": "v \"q\" é"}),
            );
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = base();
            f(&mut v);
            serde_json::to_string(&v).unwrap()
        };
        // (record, whether the walk takes it)
        let cases = [
            (with(&|_| {}), true),
            (
                with(&|v| {
                    v["approval"] = serde_json::json!({"approver": "ops", "id": "a1",
                        "rule": "r", "status": "approved", "waited_ms": 12});
                    v["shadow_verdicts"] = serde_json::json!([allow.clone()]);
                    v["usage"] = serde_json::json!({"cached_tokens": 0, "completion_tokens": 5,
                        "estimated": false, "prompt_tokens": 7});
                    v["content"] = serde_json::json!({"mode": "redacted",
                        "request": "{\"a\":\"\\u00e9\\ud83d\\ude00\\n\"}", "request_forwarded": null,
                        "response": "{}"});
                    v["workflow"] = serde_json::Value::Null;
                    v["tool_calls"] =
                        serde_json::json!([{"arguments_sha256": "00", "id": "c", "name": "t"}]);
                }),
                true,
            ),
            (with(&|v| v["content"] = serde_json::Value::Null), true),
            // an unknown member, and a member out of order: decoded the generic way
            (with(&|v| v["zzz"] = serde_json::json!(1)), false),
            (
                with(&|_| {})
                    .replace("\"stream\":false,", "")
                    .replace("\"v\":1,", "\"stream\":false,\"v\":1,"),
                false,
            ),
            // blanks
            (
                with(&|_| {}).replace(",\"authenticated\":", ", \"authenticated\":"),
                false,
            ),
        ];
        for (json, walks) in cases {
            assert_eq!(canonical_event(&json).is_some(), walks, "{json}");
            let fast = decode_event(json.as_bytes()).unwrap();
            let slow = serde_json::from_str::<ReplayEvent>(&json).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{json}");
        }
        // A control character or a broken escape inside a string is not taken by the walk,
        // and the generic decoder reports it.
        for bad in ["\"k\":\"v\\x\"", "\"k\":\"v\u{1}\"", "\"k\":\"\\ud800\""] {
            let json = with(&|_| {}).replace("\"k\":\"v \\\"q\\\" é\"", bad);
            assert!(json.contains(bad), "{json}");
            assert!(canonical_event(&json).is_none(), "{json}");
            assert!(decode_event(json.as_bytes()).is_err(), "{json}");
        }
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
