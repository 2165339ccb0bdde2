//! Redaction: replace finding spans with placeholders, masks, hashes, or nothing.
//!
//! Placeholder format: `<LABEL_N>` where `LABEL` is the entity label (see [`label_for`]:
//! `EMAIL_ADDRESS` → `EMAIL`, `PHONE_NUMBER` → `PHONE`, `CREDIT_CARD` → `CREDIT_CARD`,
//! `IBAN_CODE` → `IBAN`, `US_SSN` → `US_SSN`, `IP_ADDRESS` → `IP_ADDRESS`, `PERSON` → `PERSON`,
//! any other kind upper-cased, e.g. `aws_access_key` → `AWS_ACCESS_KEY`) and `N` counts distinct
//! values of that label within one [`PlaceholderMap`] starting at 1. The same value always gets
//! the same token in one map, so a conversation keeps one map and the model sees consistent
//! references; [`PlaceholderMap::restore`] puts the originals back.
//!
//! Mask format: `****` followed by the last four characters when the value has more than
//! eight characters, otherwise `****`. Hash format: `<LABEL:hhhhhhhhhhhh>` (first 12 hex
//! digits of SHA-256 of the value). Remove: the span is deleted.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::types::Finding;

/// How one finding's span is rewritten.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Strategy {
    /// Typed placeholder stable within the map, e.g. `<EMAIL_1>`.
    Placeholder,
    /// Partial mask keeping the last four characters, e.g. `****1234`.
    Mask,
    /// Stable hash, e.g. `<EMAIL:3f1a9c0b2d4e>`.
    Hash,
    /// Delete the span.
    Remove,
}

impl Strategy {
    /// Parses `placeholder`, `mask`, `hash` or `remove`.
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "placeholder" => Strategy::Placeholder,
            "mask" => Strategy::Mask,
            "hash" => Strategy::Hash,
            "remove" => Strategy::Remove,
            _ => return None,
        })
    }

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Placeholder => "placeholder",
            Strategy::Mask => "mask",
            Strategy::Hash => "hash",
            Strategy::Remove => "remove",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Strategy, UnknownStrategy> {
        Strategy::parse(s).ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

/// A redaction strategy name that is not one of the four supported ones.
#[derive(Debug, thiserror::Error)]
#[error("redaction strategy: unknown strategy `{0}` (expected placeholder, mask, hash or remove)")]
pub struct UnknownStrategy(pub String);

/// The placeholder label used for a finding kind, e.g. `EMAIL_ADDRESS` → `EMAIL`.
pub fn label_for(kind: &str) -> String {
    match kind {
        "EMAIL_ADDRESS" => "EMAIL".to_owned(),
        "PHONE_NUMBER" => "PHONE".to_owned(),
        "IBAN_CODE" => "IBAN".to_owned(),
        other => other
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect(),
    }
}

/// Conversation-stable mapping between original values and typed placeholders.
#[derive(Default, Clone)]
pub struct PlaceholderMap {
    by_value: HashMap<(String, String), usize>,
    by_token: HashMap<String, usize>,
    entries: Vec<(String, String)>,
    counters: HashMap<String, usize>,
}

impl fmt::Debug for PlaceholderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaceholderMap")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl PlaceholderMap {
    /// An empty map.
    pub fn new() -> PlaceholderMap {
        PlaceholderMap::default()
    }

    /// Number of distinct values mapped.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no value is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token for `value` of entity `kind`, creating one if new.
    pub fn token_for(&mut self, kind: &str, value: &str) -> String {
        let label = label_for(kind);
        let key = (label.clone(), value.to_owned());
        if let Some(&i) = self.by_value.get(&key) {
            return self.entries[i].0.clone();
        }
        let n = self.counters.entry(label.clone()).or_insert(0);
        *n += 1;
        let token = format!("<{label}_{n}>");
        let i = self.entries.len();
        self.entries.push((token.clone(), value.to_owned()));
        self.by_value.insert(key, i);
        self.by_token.insert(token.clone(), i);
        token
    }

    /// Replaces every known placeholder token in `text` with its original value.
    pub fn restore(&self, text: &str) -> String {
        if self.entries.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(lt) = rest.find('<') {
            out.push_str(&rest[..lt]);
            let tail = &rest[lt..];
            let close = tail[1..].find(['>', '<']).map(|i| i + 1);
            match close {
                Some(gt) if tail.as_bytes()[gt] == b'>' => {
                    let tok = &tail[..=gt];
                    if let Some(&i) = self.by_token.get(tok) {
                        out.push_str(&self.entries[i].1);
                    } else {
                        out.push_str(tok);
                    }
                    rest = &tail[gt + 1..];
                }
                Some(next) => {
                    out.push_str(&tail[..next]);
                    rest = &tail[next..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n > 8 {
        let tail: String = value.chars().skip(n - 4).collect();
        format!("****{tail}")
    } else {
        "****".to_owned()
    }
}

fn hash(kind: &str, value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let hexed = hex::encode(&digest[..6]);
    format!("<{}:{hexed}>", label_for(kind))
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Chooses non-overlapping findings: longest span first, then highest severity, then earliest.
/// Spans are widened to char boundaries and clamped to the text. Result sorted by start.
pub fn resolve_overlaps(text: &str, findings: &[Finding]) -> Vec<(usize, usize, usize)> {
    let mut cands: Vec<(usize, usize, usize)> = findings
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let s = floor_boundary(text, f.start);
            let e = ceil_boundary(text, f.end);
            (s < e).then_some((s, e, i))
        })
        .collect();
    cands.sort_by(|a, b| {
        (b.1 - b.0)
            .cmp(&(a.1 - a.0))
            .then(findings[b.2].severity.cmp(&findings[a.2].severity))
            .then(a.0.cmp(&b.0))
    });
    let mut chosen: Vec<(usize, usize, usize)> = Vec::new();
    for c in cands {
        let pos = chosen.partition_point(|x| x.0 < c.0);
        let clash_prev = pos > 0 && chosen[pos - 1].1 > c.0;
        let clash_next = pos < chosen.len() && chosen[pos].0 < c.1;
        if !clash_prev && !clash_next {
            chosen.insert(pos, c);
        }
    }
    chosen
}

/// Rewrites `text`, replacing each chosen finding span according to `strategy`.
///
/// Overlapping findings are resolved first (longest, then most severe wins); spans never
/// split a UTF-8 character. Redacting an already redacted text (and rescanning it) changes
/// nothing, because the replacement formats are never detected themselves.
pub fn redact(
    text: &str,
    findings: &[Finding],
    strategy: impl Fn(&Finding) -> Strategy,
    map: &mut PlaceholderMap,
) -> String {
    let chosen = resolve_overlaps(text, findings);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, i) in chosen {
        let f = &findings[i];
        out.push_str(&text[at..s]);
        let value = &text[s..e];
        match strategy(f) {
            Strategy::Placeholder => out.push_str(&map.token_for(f.kind, value)),
            Strategy::Mask => out.push_str(&mask(value)),
            Strategy::Hash => out.push_str(&hash(f.kind, value)),
            Strategy::Remove => {}
        }
        at = e;
    }
    out.push_str(&text[at..]);
    out
}
