//! Output quality score: observable signals, each with a weight subtracted from 1.0.

use exchange::{ChatRequest, ChatResponse, Content};

use crate::policies::QualityWeights;

/// One signal that fired.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Signal {
    pub name: &'static str,
    pub weight: f64,
    pub detail: String,
}

const REFUSALS: [&str; 10] = [
    "i'm sorry, but i can't",
    "i am sorry, but i can't",
    "i'm sorry, but i cannot",
    "i cannot help with",
    "i can't help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help",
    "i am unable to help",
    "as an ai language model",
];

/// Whether `text` contains a refusal phrase, case-insensitively: one automaton over all
/// the phrases, built once (was a lower-cased copy of the text and one search per phrase).
fn reads_as_refusal(text: &str) -> bool {
    static RE: std::sync::OnceLock<Option<regex_automata::meta::Regex>> =
        std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        let alternation = REFUSALS
            .iter()
            .map(|p| regex_syntax::escape(p))
            .collect::<Vec<_>>()
            .join("|");
        regex_automata::meta::Regex::new(&format!("(?i:{alternation})")).ok()
    });
    match re {
        Some(re) => re.is_match(text),
        None => {
            let lower = text.to_lowercase();
            REFUSALS.iter().any(|r| lower.contains(r))
        }
    }
}

/// Whether some line or sentence of ≥ 20 chars repeats 3+ times, or one word fills a long text.
fn degenerate_repetition(text: &str) -> bool {
    // Pieces are cut at ASCII delimiters, which never occur inside a multi-byte character,
    // and counted in a short list (a response has few sentences of ≥ 20 chars; comparing
    // them is cheaper than hashing each).
    const LISTED: usize = 32;
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut map: Option<std::collections::HashMap<&str, usize>> = None;
    let mut start = 0;
    let bytes = text.as_bytes();
    for end in (0..=bytes.len()).filter(|&i| {
        bytes
            .get(i)
            .is_none_or(|c| matches!(c, b'\n' | b'.' | b'!' | b'?'))
    }) {
        let p = text.get(start..end).unwrap_or_default().trim();
        start = end + 1;
        if p.len() < 20 {
            continue;
        }
        let c = match map.as_mut() {
            Some(map) => map.entry(p).or_insert(0),
            None => match counts.iter().position(|(q, _)| *q == p) {
                Some(at) => &mut counts[at].1,
                None if counts.len() < LISTED => {
                    let at = counts.len();
                    counts.push((p, 0));
                    &mut counts[at].1
                }
                None => {
                    // Many sentences: a map keeps the count linear.
                    let m = map.insert(counts.drain(..).collect());
                    m.entry(p).or_insert(0)
                }
            },
        };
        *c += 1;
        if *c >= 3 {
            return true;
        }
    }
    // One word holding more than half of a long text: the majority-vote candidate (Boyer–Moore)
    // is the only word that can, so count it once more; no map, no allocation.
    let mut candidate = "";
    let mut lead = 0usize;
    let mut n = 0usize;
    for w in text.split_whitespace() {
        n += 1;
        if lead == 0 {
            candidate = w;
            lead = 1;
        } else if w == candidate {
            lead += 1;
        } else {
            lead -= 1;
        }
    }
    if n >= 30 && lead > 0 {
        let count = text.split_whitespace().filter(|w| *w == candidate).count();
        if count * 2 > n {
            return true;
        }
    }
    false
}

/// Checks `value` against the top level of a JSON schema: `type`, `required`, and
/// `additionalProperties: false`. Returns the first violation.
fn schema_violation(value: &serde_json::Value, schema: &serde_json::Value) -> Option<String> {
    let ty = schema.get("type").and_then(|t| t.as_str());
    let ok_type = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("number") => value.is_number(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok_type {
        return Some(format!("expected a JSON {}", ty.unwrap_or("value")));
    }
    let obj = value.as_object()?;
    if let Some(req) = schema.get("required").and_then(|r| r.as_array()) {
        for r in req.iter().filter_map(|r| r.as_str()) {
            if !obj.contains_key(r) {
                return Some(format!("missing required property `{r}`"));
            }
        }
    }
    let props = schema.get("properties").and_then(|p| p.as_object());
    if schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
        if let Some(props) = props {
            if let Some(k) = obj.keys().find(|k| !props.contains_key(*k)) {
                return Some(format!("unexpected property `{k}`"));
            }
        }
    }
    if let Some(props) = props {
        for (k, v) in obj {
            if let Some(ps) = props.get(k) {
                if let Some(inner) = schema_violation(v, ps) {
                    return Some(format!("property `{k}`: {inner}"));
                }
            }
        }
    }
    None
}

/// Scores a response in [0, 1]; returns the score and the signals that fired.
pub(crate) fn score(
    request: &ChatRequest,
    response: &ChatResponse,
    weights: &QualityWeights,
) -> (f64, Vec<Signal>) {
    let mut signals = Vec::new();
    let mut push = |name: &'static str, weight: f64, detail: String| {
        if !signals.iter().any(|s: &Signal| s.name == name) {
            signals.push(Signal {
                name,
                weight,
                detail,
            });
        }
    };
    let wants_json = request
        .response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(|t| t.as_str())
        .filter(|t| *t == "json_object" || *t == "json_schema");
    let schema = request
        .response_format
        .as_ref()
        .and_then(|f| f.pointer("/json_schema/schema"));
    if response.choices.is_empty() {
        push("empty", weights.empty, "no choices".to_owned());
    }
    for (i, choice) in response.choices.iter().enumerate() {
        let text: std::borrow::Cow<'_, str> = match &choice.message.content {
            Some(Content::Text(s)) => std::borrow::Cow::Borrowed(s.as_str()),
            Some(c) => c.text(),
            None => std::borrow::Cow::Borrowed(""),
        };
        let calls = choice.message.tool_calls.as_deref().unwrap_or(&[]);
        if text.trim().is_empty() && calls.is_empty() {
            push(
                "empty",
                weights.empty,
                format!("choices[{i}] has no content"),
            );
        }
        if choice.finish_reason.as_deref() == Some("length") {
            push(
                "truncated",
                weights.truncated,
                format!("choices[{i}] finish_reason is length"),
            );
        }
        if reads_as_refusal(&text) {
            push(
                "refusal",
                weights.refusal,
                format!("choices[{i}] reads as a refusal"),
            );
        }
        if degenerate_repetition(&text) {
            push(
                "repetition",
                weights.repetition,
                format!("choices[{i}] repeats itself"),
            );
        }
        if wants_json.is_some() && calls.is_empty() {
            match serde_json::from_str::<serde_json::Value>(text.trim()) {
                Err(_) => push(
                    "invalid_json",
                    weights.invalid_json,
                    format!("choices[{i}] content is not valid JSON"),
                ),
                Ok(v) => {
                    if let Some(why) = schema.and_then(|s| schema_violation(&v, s)) {
                        push(
                            "schema_mismatch",
                            weights.schema_mismatch,
                            format!("choices[{i}] content: {why}"),
                        );
                    }
                }
            }
        }
        for (k, call) in calls.iter().enumerate() {
            let args = call.function.arguments.trim();
            let parsed = if args.is_empty() {
                Ok(serde_json::Value::Object(Default::default()))
            } else {
                serde_json::from_str::<serde_json::Value>(args)
            };
            match parsed {
                Err(_) => push(
                    "invalid_tool_arguments",
                    weights.invalid_tool_arguments,
                    format!("choices[{i}].message.tool_calls[{k}] arguments are not valid JSON"),
                ),
                Ok(v) => {
                    let declared = request
                        .tools
                        .as_deref()
                        .unwrap_or(&[])
                        .iter()
                        .find(|t| t.function.name == call.function.name);
                    match declared {
                        None if request.tools.is_some() => push(
                            "tool_arguments_mismatch",
                            weights.tool_arguments_mismatch,
                            format!(
                                "choices[{i}].message.tool_calls[{k}] calls undeclared tool `{}`",
                                call.function.name
                            ),
                        ),
                        Some(t) => {
                            if let Some(why) = t
                                .function
                                .parameters
                                .as_ref()
                                .and_then(|s| schema_violation(&v, s))
                            {
                                push(
                                    "tool_arguments_mismatch",
                                    weights.tool_arguments_mismatch,
                                    format!(
                                        "choices[{i}].message.tool_calls[{k}] arguments: {why}"
                                    ),
                                );
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }
    let penalty: f64 = signals.iter().map(|s| s.weight).sum();
    ((1.0 - penalty).clamp(0.0, 1.0), signals)
}

#[cfg(test)]
mod tests {
    use super::{degenerate_repetition, reads_as_refusal};

    #[test]
    fn refusal_phrases_match_in_any_case() {
        for (text, refusal) in [
            ("I'm sorry, but I can't share that.", true),
            ("AS AN AI LANGUAGE MODEL, I do not browse.", true),
            (
                "Sure. I can't help with the weather, but here is the report.",
                true,
            ),
            ("I'm sorry for the delay; here is the report.", false),
            ("The model cannot assist users who are offline.", false),
            ("", false),
        ] {
            assert_eq!(reads_as_refusal(text), refusal, "{text}");
        }
    }

    #[test]
    fn repetition_cases() {
        let long_line = "the same sentence comes back again";
        let cases: Vec<(String, bool)> = vec![
            // A ≥ 20-char sentence three times.
            (format!("{long_line}. {long_line}. {long_line}."), true),
            // Twice is not degenerate.
            (
                format!("{long_line}. {long_line}. Something else entirely here."),
                false,
            ),
            // One word is more than half of 40 words.
            (format!("{} {}", "ok ".repeat(21), "word ".repeat(19)), true),
            // Exactly half is not more than half.
            (
                (0..40)
                    .map(|i| if i % 2 == 0 { "ok" } else { "no" })
                    .collect::<Vec<_>>()
                    .join(" "),
                false,
            ),
            // A majority in a short text (< 30 words) does not count.
            ("ok ".repeat(20), false),
            // Many distinct sentences (past the short list), then one three times.
            (
                (0..80)
                    .map(|i| format!("distinct sentence number {i} here."))
                    .chain((0..3).map(|_| format!("{long_line}!")))
                    .collect::<String>(),
                true,
            ),
            // Many sentences, each twice: never three times.
            (
                (0..80)
                    .chain(0..80)
                    .map(|i| format!("distinct sentence number {i} here?\n"))
                    .collect::<String>(),
                false,
            ),
            // Multi-byte text around the delimiters.
            ("é — the same line comes back é.\n".repeat(3), true),
            // Ordinary prose.
            (
                "Palisade checks every agent turn against the pack: detectors, rules, \
                 the firewall and the budget, then records the exchange in the audit chain \
                 with a receipt that any auditor can verify later without the gateway."
                    .to_owned(),
                false,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(degenerate_repetition(&text), want, "{text}");
        }
    }
}
