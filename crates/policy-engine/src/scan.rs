//! `palisade scan`: run a pack's detector policies over standalone texts.
//!
//! Input: JSON Lines `{"id", "text", "role"?, "name"?}` (blank lines skipped). Output: one
//! line per input, `{"id", "findings":[{"detector","kind","start","end","score","rule"}],
//! "decision", "redacted"}`, offsets in bytes of the UTF-8 text. The surface follows the
//! role: `system`/`developer` → system prompt, `tool` → tool output, `assistant` →
//! assistant output, a message with a `name` → another agent's message, else user prompt.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use detectors::Surface;
use serde::{Deserialize, Serialize};

use crate::pack::CompiledPack;

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading input or writing output failed.
    #[error("scan: i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// An input line is not a valid record.
    #[error("scan: line {line}: invalid record: {source}")]
    Record {
        /// 1-based input line.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Counts of a finished scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Records scanned.
    pub records: usize,
    /// Findings written.
    pub findings: usize,
    /// Records per decision (`ALLOW`, `REDACT`, `BLOCK`, …).
    pub decisions: BTreeMap<String, usize>,
}

#[derive(Deserialize)]
struct Record {
    id: serde_json::Value,
    text: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct OutFinding<'a> {
    detector: &'a str,
    kind: &'a str,
    start: usize,
    end: usize,
    score: f32,
    rule: &'a str,
}

#[derive(Serialize)]
struct OutRecord<'a> {
    id: &'a serde_json::Value,
    findings: Vec<OutFinding<'a>>,
    decision: &'a str,
    redacted: &'a str,
}

fn surface(role: Option<&str>, name: Option<&str>) -> Surface {
    match role {
        Some("system") | Some("developer") => Surface::SystemPrompt,
        Some("tool") | Some("function") => Surface::ToolOutput,
        Some("assistant") if name.is_none() => Surface::AssistantOutput,
        Some("document") => Surface::Document,
        _ if name.is_some() => Surface::AgentMessage,
        _ => Surface::UserPrompt,
    }
}

/// Scans every JSONL record of `input` with `pack` and writes one result line per record.
pub fn scan_jsonl(
    pack: &CompiledPack,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<ScanStats, ScanError> {
    let mut stats = ScanStats::default();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_str(&line).map_err(|source| ScanError::Record {
            line: i + 1,
            source,
        })?;
        let v = pack.evaluate_text(&rec.text, surface(rec.role.as_deref(), rec.name.as_deref()));
        let out = OutRecord {
            id: &rec.id,
            findings: v
                .findings
                .iter()
                .map(|(_, f)| OutFinding {
                    detector: f.detector.as_str(),
                    kind: f.kind,
                    start: f.start,
                    end: f.end,
                    score: (f.score * 1000.0).round() / 1000.0,
                    rule: f.rule,
                })
                .collect(),
            decision: v.decision.as_str(),
            redacted: &v.redacted,
        };
        serde_json::to_writer(&mut output, &out).map_err(std::io::Error::from)?;
        output.write_all(b"\n")?;
        stats.records += 1;
        stats.findings += v.findings.len();
        *stats
            .decisions
            .entry(v.decision.as_str().to_owned())
            .or_insert(0) += 1;
    }
    output.flush()?;
    Ok(stats)
}

/// A human-readable table of the findings in `text` (scanned as a user prompt), the
/// decision and the redacted text. Secret values are never shown: their excerpt is masked.
pub fn scan_text_table(pack: &CompiledPack, text: &str) -> String {
    let v = pack.evaluate_text(text, Surface::UserPrompt);
    let mut rows: Vec<[String; 7]> = vec![[
        "POLICY".into(),
        "DETECTOR".into(),
        "KIND".into(),
        "RULE".into(),
        "SPAN".into(),
        "SCORE".into(),
        "TEXT".into(),
    ]];
    for (policy, f) in &v.findings {
        let excerpt = if f.detector == detectors::DetectorKind::Secrets {
            "****".to_owned()
        } else {
            let s = text.get(f.start..f.end).unwrap_or("");
            let mut e: String = s.chars().take(40).collect();
            if s.chars().count() > 40 {
                e.push('…');
            }
            e.replace('\n', " ")
        };
        rows.push([
            policy.clone(),
            f.detector.as_str().to_owned(),
            f.kind.to_owned(),
            f.rule.to_owned(),
            format!("{}..{}", f.start, f.end),
            format!("{:.2}", f.score),
            excerpt,
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    if v.findings.is_empty() {
        out.push_str("no findings\n");
    } else {
        for r in &rows {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(widths.iter()).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out.push_str(&format!("decision: {}\n", v.decision));
    if v.redacted != text {
        out.push_str(&format!("redacted: {}\n", v.redacted));
    }
    out
}
