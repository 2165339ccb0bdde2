//! Content capture: `full`, `redacted` (every finding span masked) or `none`.

use std::collections::BTreeMap;

use exchange::{Exchange, Phase};
use policy_engine::ContentCapture;
use serde_json::Value;

use crate::event::{ContentRecord, capture_name};

/// The content record for `ex` under `capture`.
pub(crate) fn content_record(ex: &Exchange, capture: ContentCapture) -> Option<ContentRecord> {
    match capture {
        ContentCapture::None => None,
        ContentCapture::Full => Some(ContentRecord {
            mode: capture_name(capture).to_owned(),
            request: Some(String::from_utf8_lossy(&ex.original_body).into_owned()),
            request_forwarded: if ex.request_modified {
                serde_json::to_string(&ex.request).ok()
            } else {
                None
            },
            response: ex
                .response
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok()),
        }),
        ContentCapture::Redacted => Some(redacted(ex)),
    }
}

/// A span to mask inside the text at one location.
#[derive(Debug, Clone)]
struct Span {
    start: usize,
    end: usize,
    kind: String,
}

fn redacted(ex: &Exchange) -> ContentRecord {
    let mut input: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    let mut output: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for v in &ex.verdicts {
        for f in &v.findings {
            let (path, is_response) = split_location(&f.location, v.phase);
            let span = Span {
                start: f.start,
                end: f.end,
                kind: f.kind.clone(),
            };
            if is_response {
                output.entry(path.to_owned()).or_default().push(span);
            } else {
                input.entry(path.to_owned()).or_default().push(span);
            }
        }
    }
    let original: Option<Value> = serde_json::from_slice(&ex.original_body).ok();
    let request = match original {
        // Not JSON (a rejected body): nothing a policy looked at, keep nothing.
        None => None,
        Some(original) => serde_json::to_value(&ex.request).ok().and_then(|mut fwd| {
            let mut ok = true;
            for (path, spans) in &input {
                ok &= mask_at(&mut fwd, Some(&original), path, spans);
            }
            // A finding we could not place: keep no request content rather than leak it.
            if ok {
                serde_json::to_string(&fwd).ok()
            } else {
                None
            }
        }),
    };
    let response = ex.response.as_ref().and_then(|r| {
        let mut v = serde_json::to_value(r).ok()?;
        let mut ok = true;
        for (path, spans) in &output {
            ok &= mask_at(&mut v, None, path, spans);
        }
        if ok {
            serde_json::to_string(&v).ok()
        } else {
            None
        }
    });
    ContentRecord {
        mode: "redacted".to_owned(),
        request,
        request_forwarded: None,
        response,
    }
}

/// `(path, is_response)`: `response.` / `request.` prefixes are stripped; `choices…` paths
/// are in the response; otherwise the phase decides only for unprefixed non-request paths.
fn split_location(location: &str, phase: Phase) -> (&str, bool) {
    if let Some(rest) = location.strip_prefix("response.") {
        return (rest, true);
    }
    if let Some(rest) = location.strip_prefix("request.") {
        return (rest, false);
    }
    if location.starts_with("choices") {
        return (location, true);
    }
    if location.starts_with("messages") || location.starts_with("tools") {
        return (location, false);
    }
    (location, phase == Phase::Output)
}

#[derive(Debug, PartialEq, Eq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Parses `messages[2].content`, `choices[0].message.tool_calls[0].function.arguments`.
fn parse_path(path: &str) -> Option<Vec<Seg<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            out.push(Seg::Index(r[..close].parse().ok()?));
            rest = &r[close + 1..];
        }
        if key.is_empty() && out.is_empty() {
            return None;
        }
    }
    Some(out)
}

fn resolve<'v>(v: &'v Value, path: &[Seg<'_>]) -> Option<&'v Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get(*k)?,
            Seg::Index(i) => cur.get(*i)?,
        };
    }
    Some(cur)
}

fn resolve_mut<'v>(v: &'v mut Value, path: &[Seg<'_>]) -> Option<&'v mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get_mut(*k)?,
            Seg::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// Masks `spans` in the value at `path` of `target`. When the text at that place differs
/// from the original (a policy already edited it), the spans refer to the original text,
/// so the original is masked and put in its place. Returns false if the place is not found.
fn mask_at(target: &mut Value, original: Option<&Value>, path: &str, spans: &[Span]) -> bool {
    let Some(segs) = parse_path(path) else {
        return false;
    };
    let orig_text = original
        .and_then(|o| resolve(o, &segs))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(slot) = resolve_mut(target, &segs) else {
        // The place is gone from the forwarded request (a policy dropped it): nothing to mask.
        // Unknown everywhere: the location format is not understood, so fail safe.
        return original.is_some_and(|o| resolve(o, &segs).is_some());
    };
    match slot {
        Value::String(s) => {
            let source = match &orig_text {
                Some(o) if o != s => o.as_str(),
                _ => s.as_str(),
            };
            *s = mask_text(source, spans);
        }
        other => mask_all_strings(other),
    }
    true
}

/// Replaces every text-like string leaf under `v` with a mask.
fn mask_all_strings(v: &mut Value) {
    match v {
        Value::String(s) => *s = "[REDACTED]".to_owned(),
        Value::Array(a) => a.iter_mut().for_each(mask_all_strings),
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if !matches!(k.as_str(), "role" | "type" | "id" | "tool_call_id" | "name") {
                    mask_all_strings(val);
                }
            }
        }
        _ => {}
    }
}

/// `text` with each span (byte offsets, widened to char boundaries, merged when they
/// overlap) replaced by `[REDACTED:<kind>]`.
fn mask_text(text: &str, spans: &[Span]) -> String {
    let mut spans: Vec<(usize, usize, &str)> = spans
        .iter()
        .map(|s| {
            let mut start = s.start.min(text.len());
            let mut end = s.end.min(text.len()).max(start);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            while !text.is_char_boundary(end) {
                end += 1;
            }
            (start, end, s.kind.as_str())
        })
        .filter(|(s, e, _)| e > s)
        .collect();
    spans.sort_by_key(|&(s, e, _)| (s, e));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut i = 0;
    while i < spans.len() {
        let (start, mut end, kind) = spans[i];
        i += 1;
        while i < spans.len() && spans[i].0 < end {
            end = end.max(spans[i].1);
            i += 1;
        }
        let start = start.max(pos);
        out.push_str(&text[pos..start]);
        out.push_str("[REDACTED:");
        out.push_str(kind);
        out.push(']');
        pos = end.max(pos);
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize, kind: &str) -> Span {
        Span {
            start,
            end,
            kind: kind.to_owned(),
        }
    }

    #[test]
    fn masks_spans_merging_overlaps_and_widening_to_char_boundaries() {
        let text = "mail bob@example.com or é@x.io now";
        let got = mask_text(
            text,
            &[
                span(5, 20, "EMAIL"),
                span(10, 12, "X"),
                span(25, 31, "EMAIL"),
            ],
        );
        assert_eq!(got, "mail [REDACTED:EMAIL] or [REDACTED:EMAIL] now");
        assert_eq!(mask_text("abc", &[span(1, 99, "K")]), "a[REDACTED:K]");
    }

    #[test]
    fn parses_locations() {
        assert_eq!(
            parse_path("choices[0].message.tool_calls[1].function.arguments"),
            Some(vec![
                Seg::Key("choices"),
                Seg::Index(0),
                Seg::Key("message"),
                Seg::Key("tool_calls"),
                Seg::Index(1),
                Seg::Key("function"),
                Seg::Key("arguments"),
            ])
        );
        assert_eq!(parse_path("messages[x]"), None);
    }
}
