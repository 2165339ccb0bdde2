//! Text (terminal) and Markdown (pull-request comment) renderings of a report.

use std::fmt::Write;

use super::report::{DECISIONS, ReplayReport, SideInfo};

/// Output format of `palisade-replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Plain text for a terminal (default).
    #[default]
    Text,
    /// The stable JSON report (see docs/replay.md).
    Json,
    /// Markdown for a pull-request comment.
    Markdown,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "markdown" | "md" => Ok(Format::Markdown),
            other => Err(format!(
                "unknown format `{other}` (expected text, json or markdown)"
            )),
        }
    }
}

fn side(s: &SideInfo) -> String {
    match (&s.name, &s.version) {
        (Some(n), Some(v)) => format!("pack `{n}` {v}"),
        (Some(n), None) => format!("pack `{n}`"),
        _ => format!("{} decisions", s.source),
    }
}

/// Renders `report` in `format`.
pub fn render(report: &ReplayReport, format: Format) -> String {
    match format {
        Format::Json => report.to_json(),
        Format::Text => text(report),
        Format::Markdown => markdown(report),
    }
}

fn policy_name(policy: &str, rule: Option<&str>) -> String {
    match rule {
        Some(r) => format!("{policy}:{r}"),
        None => policy.to_owned(),
    }
}

fn text(r: &ReplayReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(
        o,
        "replay of {} ({}): {} vs {}",
        r.input.path,
        serde_json::to_value(r.input.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        side(&r.baseline),
        side(&r.candidate)
    );
    let _ = writeln!(
        o,
        "records {}  replayed {}  unreplayable {}  changed {} ({} stricter, {} looser)  approximate {}",
        t.records,
        t.replayed,
        t.unreplayable,
        t.changed,
        t.more_severe,
        t.less_severe,
        t.approximate
    );
    let _ = writeln!(o, "\ntransitions (baseline -> candidate):");
    if r.transitions.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for tr in &r.transitions {
        let _ = writeln!(
            o,
            "  {:>9} -> {:<9} {:>8}  {:>6.2}%",
            tr.from.as_str(),
            tr.to.as_str(),
            tr.count,
            tr.percent
        );
    }
    let _ = writeln!(o, "\nmatrix (rows baseline, columns candidate):");
    let _ = write!(o, "  {:>9}", "");
    for d in DECISIONS {
        let _ = write!(o, " {:>9}", d.as_str());
    }
    let _ = writeln!(o);
    for row in &r.matrix {
        let _ = write!(o, "  {:>9}", row.baseline);
        for d in DECISIONS {
            let _ = write!(o, " {:>9}", row.get(d));
        }
        let _ = writeln!(o);
    }
    if !r.by_policy.is_empty() {
        let _ = writeln!(
            o,
            "\nby policy / rule: newly blocked, constrained, redacted, logged, let through"
        );
        for p in &r.by_policy {
            let _ = writeln!(
                o,
                "  {:<40} {:>6} {:>6} {:>6} {:>6} {:>6}",
                policy_name(&p.policy, p.rule.as_deref()),
                p.newly_blocked,
                p.newly_constrained,
                p.newly_redacted,
                p.newly_logged,
                p.newly_let_through
            );
        }
    }
    for (title, groups) in [("agent", &r.by_agent), ("workflow", &r.by_workflow)] {
        let changed: Vec<_> = groups.iter().filter(|g| g.changed > 0).collect();
        if changed.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "\nby {title}: replayed, changed, stricter, looser, newly blocked, newly unblocked"
        );
        for g in changed {
            let _ = writeln!(
                o,
                "  {:<24} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
                g.name,
                g.replayed,
                g.changed,
                g.more_severe,
                g.less_severe,
                g.newly_blocked,
                g.newly_unblocked
            );
        }
    }
    let c = &r.cost;
    let _ = writeln!(
        o,
        "\ncost: recorded {} USD; saved {} USD over {} turns refused before the upstream; {} turns newly forwarded (cost not recorded); {} records of unknown cost",
        c.recorded_usd,
        c.saved_usd,
        c.saved_records,
        c.newly_forwarded_records,
        c.unknown_cost_records
    );
    if !r.new_allowed_tools.is_empty() {
        let _ = writeln!(o, "\nnewly allowed tool calls:");
        for tc in &r.new_allowed_tools {
            let _ = writeln!(
                o,
                "  {} ({} turns; agents: {})",
                tc.tool,
                tc.records,
                tc.agents.join(", ")
            );
        }
    }
    for group in &r.examples {
        if group.examples.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "\nexamples {} -> {}:",
            group.from.as_str(),
            group.to.as_str()
        );
        for e in &group.examples {
            let _ = writeln!(
                o,
                "  {} {} agent {} model {}{}",
                e.record,
                e.time,
                e.agent,
                e.model,
                if e.approximate { " (approximate)" } else { "" }
            );
            for (label, vs) in [("baseline", &e.baseline), ("candidate", &e.candidate)] {
                for v in vs.iter() {
                    let kinds: Vec<String> = v
                        .findings
                        .iter()
                        .map(|f| format!("{} at {}[{}..{}]", f.kind, f.location, f.start, f.end))
                        .collect();
                    let _ = writeln!(
                        o,
                        "    {label}: {} {} — {}{}",
                        v.decision.as_str(),
                        policy_name(&v.policy, v.rule.as_deref()),
                        v.reason,
                        if kinds.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", kinds.join("; "))
                        }
                    );
                }
            }
            for x in &e.excerpts {
                let _ = writeln!(o, "    {}: {}", x.location, x.text);
            }
        }
    }
    if r.totals.unreplayable > 0 {
        let _ = writeln!(o, "\nnot replayable:");
        for rc in &r.unreplayable.by_reason {
            let _ = writeln!(o, "  {:<22} {}", rc.reason, rc.count);
        }
        for u in &r.unreplayable.records {
            let _ = writeln!(o, "  {}: {} ({})", u.record, u.reason, u.detail);
        }
    }
    if !r.fail_on.is_empty() {
        let _ = writeln!(o, "\nfail-on:");
        for f in &r.fail_on {
            let _ = writeln!(
                o,
                "  {:<28} value {} of {}: {}",
                f.condition,
                f.value,
                f.total,
                if f.crossed { "CROSSED" } else { "ok" }
            );
        }
    }
    o
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(r: &ReplayReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(
        o,
        "### Policy replay: {} vs {}\n",
        md_escape(&side(&r.baseline)),
        md_escape(&side(&r.candidate))
    );
    let crossed: Vec<&str> = r
        .fail_on
        .iter()
        .filter(|f| f.crossed)
        .map(|f| f.condition.as_str())
        .collect();
    if !crossed.is_empty() {
        let _ = writeln!(
            o,
            "**Failed:** `{}`\n",
            crossed.join("`, `").replace('`', "'")
        );
    }
    let _ = writeln!(
        o,
        "**{}** records replayed, **{}** changed ({} stricter, {} looser), {} not replayable, {} approximate.\n",
        t.replayed, t.changed, t.more_severe, t.less_severe, t.unreplayable, t.approximate
    );
    if !r.transitions.is_empty() {
        let _ = writeln!(o, "| baseline → candidate | turns | % |\n|---|---:|---:|");
        for tr in &r.transitions {
            let _ = writeln!(
                o,
                "| {} → {} | {} | {:.2} |",
                tr.from.as_str(),
                tr.to.as_str(),
                tr.count,
                tr.percent
            );
        }
        let _ = writeln!(o);
    }
    if !r.by_policy.is_empty() {
        let _ = writeln!(
            o,
            "| policy / rule | newly blocked | constrained | redacted | logged | let through |\n|---|---:|---:|---:|---:|---:|"
        );
        for p in &r.by_policy {
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {} |",
                md_escape(&policy_name(&p.policy, p.rule.as_deref())),
                p.newly_blocked,
                p.newly_constrained,
                p.newly_redacted,
                p.newly_logged,
                p.newly_let_through
            );
        }
        let _ = writeln!(o);
    }
    let changed_agents: Vec<_> = r.by_agent.iter().filter(|g| g.changed > 0).collect();
    if !changed_agents.is_empty() {
        let _ = writeln!(
            o,
            "| agent | replayed | changed | newly blocked | newly unblocked |\n|---|---:|---:|---:|---:|"
        );
        for g in changed_agents {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                md_escape(&g.name),
                g.replayed,
                g.changed,
                g.newly_blocked,
                g.newly_unblocked
            );
        }
        let _ = writeln!(o);
    }
    let c = &r.cost;
    let _ = writeln!(
        o,
        "Cost: recorded {} USD; the candidate would save {} USD ({} turns refused before the upstream); {} turns newly forwarded.\n",
        c.recorded_usd, c.saved_usd, c.saved_records, c.newly_forwarded_records
    );
    if !r.new_allowed_tools.is_empty() {
        let names: Vec<String> = r
            .new_allowed_tools
            .iter()
            .map(|t| format!("`{}` ({})", md_escape(&t.tool), t.records))
            .collect();
        let _ = writeln!(o, "Newly allowed tool calls: {}\n", names.join(", "));
    }
    let any_examples = r.examples.iter().any(|g| !g.examples.is_empty());
    if any_examples {
        let _ = writeln!(o, "<details><summary>Examples</summary>\n");
        for g in &r.examples {
            for e in &g.examples {
                let why: Vec<String> = e
                    .candidate
                    .iter()
                    .chain(&e.baseline)
                    .take(2)
                    .map(|v| {
                        format!(
                            "`{}`: {}",
                            md_escape(&policy_name(&v.policy, v.rule.as_deref())),
                            md_escape(&v.reason)
                        )
                    })
                    .collect();
                let _ = writeln!(
                    o,
                    "- {} → {} · {} · agent `{}` · {}",
                    g.from.as_str(),
                    g.to.as_str(),
                    e.record,
                    md_escape(&e.agent),
                    why.join("; ")
                );
                for x in &e.excerpts {
                    let _ = writeln!(
                        o,
                        "  - `{}`: {}",
                        md_escape(&x.location),
                        md_escape(&x.text)
                    );
                }
            }
        }
        let _ = writeln!(o, "\n</details>\n");
    }
    if !r.unreplayable.by_reason.is_empty() {
        let reasons: Vec<String> = r
            .unreplayable
            .by_reason
            .iter()
            .map(|rc| format!("{} {}", rc.reason, rc.count))
            .collect();
        let _ = writeln!(o, "Not replayable: {}\n", reasons.join(", "));
    }
    o
}
