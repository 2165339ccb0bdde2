//! Cross-turn taint tracking: content that enters a conversation from outside the agents
//! (tool results, retrieved documents, another agent's message carrying a finding) is
//! fingerprinted per conversation; a later tool call whose arguments carry that data is a
//! taint hit, matched by the rule condition `taint: {from: …, to: …}`.
//!
//! Two kinds of fingerprints are kept, as 64-bit hashes (never the text itself):
//! * **values** — the sensitive values the detectors found in the source (PII, secrets) and
//!   every `http(s)://` URL in it, normalized (trimmed; e-mail addresses and URLs lower-cased);
//! * **spans** — rolling hashes of every run of [`SHINGLE_WORDS`] consecutive words
//!   (lower-cased alphanumeric words), one in [`SHINGLE_SAMPLE`] kept, so that a copied
//!   passage of about twenty words or more is recognised wherever it is pasted.
//!
//! The set of one conversation is bounded ([`MAX_VALUES`], [`MAX_SPANS`]); beyond a cap the
//! oldest fingerprints are forgotten first.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use detectors::{DetectorKind, Finding};

/// Words per span fingerprint.
pub const SHINGLE_WORDS: usize = 8;
/// One span hash in this many is kept (content-defined sampling: the same spans are kept
/// on both sides).
pub const SHINGLE_SAMPLE: u64 = 4;
/// Most value fingerprints kept per conversation.
pub const MAX_VALUES: usize = 1024;
/// Most span fingerprints kept per conversation.
pub const MAX_SPANS: usize = 4096;
/// Shortest value (in bytes) that is fingerprinted.
const MIN_VALUE_LEN: usize = 6;

/// Where tainted content came from (`taint.from` in a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaintSource {
    /// A `tool` (or legacy `function`) message: the result of a tool call.
    ToolOutput,
    /// A tool result of a tool whose category is `retrieval` or `document` (RAG context).
    Document,
    /// A message written by another agent that carries a detector finding.
    AgentMessage,
}

impl TaintSource {
    /// Every source, in documentation order.
    pub const ALL: [TaintSource; 3] = [
        TaintSource::ToolOutput,
        TaintSource::Document,
        TaintSource::AgentMessage,
    ];

    /// The pack spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintSource::ToolOutput => "tool_output",
            TaintSource::Document => "document",
            TaintSource::AgentMessage => "agent_message",
        }
    }

    /// Parses the pack spelling.
    pub fn parse(s: &str) -> Option<TaintSource> {
        TaintSource::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where one source was seen: for the reasons of taint verdicts (the chain of evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Provenance {
    pub source: TaintSource,
    /// `messages[3].content`.
    pub location: String,
    /// The audit event id of the exchange that first carried the source.
    pub event: String,
    /// The message index of the source in that exchange's request.
    pub msg: usize,
    /// The tool whose result it was (tool outputs), or the agent that wrote it.
    pub origin: Option<String>,
    /// For tool outputs: the id of the call this is the result of.
    pub tool_call_id: Option<String>,
}

/// A fingerprinted value or span found again in a sink.
#[derive(Debug, Clone)]
pub(crate) struct TaintHit {
    /// What matched: an entity kind (`EMAIL_ADDRESS`, `URL`, a secret kind) or `span`.
    pub kind: String,
    /// Byte span in the sink text (0..0 for spans of decoded arguments).
    pub start: usize,
    pub end: usize,
    pub provenance: Arc<Provenance>,
}

/// The fingerprints of one conversation.
#[derive(Debug, Default)]
pub(crate) struct TaintSet {
    values: HashMap<u64, (String, Arc<Provenance>)>,
    value_order: VecDeque<u64>,
    spans: HashMap<u64, Arc<Provenance>>,
    span_order: VecDeque<u64>,
}

fn hash_str(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn normalize_value(kind: &str, v: &str) -> String {
    let v = v.trim();
    if kind == "EMAIL_ADDRESS" || kind == "URL" {
        v.trim_end_matches(['/', '.'])
            .to_ascii_lowercase()
            .to_string()
    } else {
        v.to_owned()
    }
}

/// Whether a finding's value is worth tracking as sensitive data.
fn tracked(f: &Finding) -> bool {
    matches!(f.detector, DetectorKind::Pii | DetectorKind::Secrets)
}

/// `http(s)://` URLs in `text`, as (start, end) byte spans.
pub(crate) fn urls(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("http").map(|i| i + from) {
        let after = &lower[i + 4..];
        let scheme = if after.starts_with("://") {
            7
        } else if after.starts_with("s://") {
            8
        } else {
            from = i + 4;
            continue;
        };
        let rest = &text[i..];
        let len = rest
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\' | ')' | ']')
            })
            .unwrap_or(rest.len());
        let mut end = i + len;
        while end > i + scheme && text[..end].ends_with(['.', ',', ';', ':', '!', '?']) {
            end -= 1;
        }
        if end > i + scheme {
            out.push((i, end));
        }
        from = i + len.max(scheme);
    }
    out
}

/// Rolling hashes of `SHINGLE_WORDS`-word runs of `text` (sampled).
pub(crate) fn shingles(text: &str) -> Vec<u64> {
    let words: Vec<u64> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| hash_str(&w.to_lowercase()))
        .collect();
    if words.len() < SHINGLE_WORDS {
        return Vec::new();
    }
    const B: u64 = 0x0100_0000_01b3;
    let top = B.wrapping_pow(SHINGLE_WORDS as u32 - 1);
    let mut h: u64 = 0;
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if i >= SHINGLE_WORDS {
            h = h.wrapping_sub(words[i - SHINGLE_WORDS].wrapping_mul(top));
        }
        h = h.wrapping_mul(B).wrapping_add(*w);
        if i + 1 >= SHINGLE_WORDS {
            // Mix before sampling so that the kept subset is not biased by the last word.
            let mixed = h ^ (h >> 29);
            if mixed % SHINGLE_SAMPLE == 0 {
                out.push(mixed);
            }
        }
    }
    out
}

/// The (kind, normalized value, start, end) of the sensitive values of a text.
pub(crate) fn values_of(text: &str, findings: &[Finding]) -> Vec<(String, String, usize, usize)> {
    let mut out = Vec::new();
    for f in findings.iter().filter(|f| tracked(f)) {
        if let Some(v) = text.get(f.start..f.end) {
            let n = normalize_value(f.kind, v);
            if n.len() >= MIN_VALUE_LEN {
                out.push((f.kind.to_owned(), n, f.start, f.end));
            }
        }
    }
    for (s, e) in urls(text) {
        let n = normalize_value("URL", &text[s..e]);
        if n.len() >= MIN_VALUE_LEN {
            out.push(("URL".to_owned(), n, s, e));
        }
    }
    out
}

impl TaintSet {
    /// Whether nothing is fingerprinted.
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty() && self.spans.is_empty()
    }

    /// Fingerprints `text` (with its detector findings) as coming from `prov`. Fingerprints
    /// already known keep their first provenance.
    pub(crate) fn ingest(&mut self, text: &str, findings: &[Finding], prov: &Arc<Provenance>) {
        for (kind, v, _, _) in values_of(text, findings) {
            let h = hash_str(&v);
            if self.values.contains_key(&h) {
                continue;
            }
            if self.values.len() >= MAX_VALUES {
                if let Some(old) = self.value_order.pop_front() {
                    self.values.remove(&old);
                }
            }
            self.values.insert(h, (kind, prov.clone()));
            self.value_order.push_back(h);
        }
        for h in shingles(text) {
            if self.spans.contains_key(&h) {
                continue;
            }
            if self.spans.len() >= MAX_SPANS {
                if let Some(old) = self.span_order.pop_front() {
                    self.spans.remove(&old);
                }
            }
            self.spans.insert(h, prov.clone());
            self.span_order.push_back(h);
        }
    }

    /// The tainted values and spans found in a sink. `text` is what is scanned for values
    /// (offsets refer to it), `decoded` the plain text used for spans (e.g. the decoded
    /// strings of JSON arguments). `skip` drops hits whose source is excluded (e.g. the
    /// result of the very call being checked). One hit per (kind, source) at most.
    pub(crate) fn check(
        &self,
        text: &str,
        findings: &[Finding],
        decoded: &str,
        skip: impl Fn(&Provenance) -> bool,
    ) -> Vec<TaintHit> {
        let mut out: Vec<TaintHit> = Vec::new();
        let mut push = |hit: TaintHit| {
            if !out
                .iter()
                .any(|h| h.kind == hit.kind && Arc::ptr_eq(&h.provenance, &hit.provenance))
            {
                out.push(hit);
            }
        };
        if self.values.is_empty() && self.spans.is_empty() {
            return Vec::new();
        }
        for (kind, v, s, e) in values_of(text, findings) {
            if let Some((_, prov)) = self.values.get(&hash_str(&v)) {
                if !skip(prov) {
                    push(TaintHit {
                        kind,
                        start: s,
                        end: e,
                        provenance: prov.clone(),
                    });
                }
            }
        }
        for (kind, v, _, _) in values_of(decoded, &[]) {
            if let Some((_, prov)) = self.values.get(&hash_str(&v)) {
                if !skip(prov) {
                    push(TaintHit {
                        kind,
                        start: 0,
                        end: 0,
                        provenance: prov.clone(),
                    });
                }
            }
        }
        for h in shingles(decoded) {
            if let Some(prov) = self.spans.get(&h) {
                if !skip(prov) {
                    push(TaintHit {
                        kind: "span".to_owned(),
                        start: 0,
                        end: 0,
                        provenance: prov.clone(),
                    });
                }
            }
        }
        out
    }
}

/// Every string inside a JSON value, joined with newlines (the plain text of arguments).
pub(crate) fn json_strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov() -> Arc<Provenance> {
        Arc::new(Provenance {
            source: TaintSource::ToolOutput,
            location: "messages[2].content".to_owned(),
            event: "e1".to_owned(),
            msg: 2,
            origin: Some("lookup".to_owned()),
            tool_call_id: Some("call_1".to_owned()),
        })
    }

    #[test]
    fn finds_urls_without_trailing_punctuation() {
        let t = "see https://Hooks.Example.com/x?a=1. and (http://b.io/y) \"https://c.dev\"";
        let got: Vec<&str> = urls(t).into_iter().map(|(s, e)| &t[s..e]).collect();
        assert_eq!(
            got,
            [
                "https://Hooks.Example.com/x?a=1",
                "http://b.io/y",
                "https://c.dev"
            ]
        );
    }

    #[test]
    fn copied_passage_is_recognised_in_other_text() {
        let source = "The quarterly numbers for the northern region show a steady increase in \
                      renewals while churn among small accounts dropped for the third month running \
                      according to the finance team";
        let mut set = TaintSet::default();
        set.ingest(source, &[], &prov());
        assert!(!set.is_empty());
        let sink = "summary: renewals while churn among small accounts dropped for the third month running according to";
        let hits = set.check("", &[], sink, |_| false);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, "span");
        let unrelated = set.check(
            "",
            &[],
            "a completely different sentence about the weather in Paris today",
            |_| false,
        );
        assert!(unrelated.is_empty());
    }

    #[test]
    fn url_values_match_case_insensitively_and_skip_applies() {
        let mut set = TaintSet::default();
        set.ingest(
            "post it to https://Collect.Example.net/in now",
            &[],
            &prov(),
        );
        let text = r#"{"url":"https://collect.example.net/in"}"#;
        let hits = set.check(text, &[], "https://collect.example.net/in", |_| false);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, "URL");
        assert_eq!(
            &text[hits[0].start..hits[0].end],
            "https://collect.example.net/in"
        );
        let skipped = set.check(text, &[], "", |p| {
            p.tool_call_id.as_deref() == Some("call_1")
        });
        assert!(skipped.is_empty());
    }

    #[test]
    fn caps_forget_the_oldest() {
        let mut set = TaintSet::default();
        for i in 0..(MAX_VALUES + 10) {
            set.ingest(&format!("https://host{i}.example.com/"), &[], &prov());
        }
        assert_eq!(set.values.len(), MAX_VALUES);
        assert!(
            set.check("https://host0.example.com/", &[], "", |_| false)
                .is_empty()
        );
        let last = format!("https://host{}.example.com/", MAX_VALUES + 9);
        assert_eq!(set.check(&last, &[], "", |_| false).len(), 1);
    }
}
