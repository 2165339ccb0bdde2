//! The replay report: aggregation in record order, and its stable JSON form.

use std::collections::{BTreeMap, BTreeSet};

use exchange::{Decision, UsdAmount};
use serde::Serialize;

use super::evaluate::{Meta, Processed, Replayed, Side, Stage, VerdictSummary};
use super::failon::{FailOn, Metric, crosses};
use super::input::{InputKind, Place};
use super::simulate::CostSim;

/// Version of the JSON report format, written as `schema`.
pub const REPORT_SCHEMA: &str = "palisade-replay/1";

/// Most unreplayable records listed one by one (all are counted by reason).
pub const MAX_UNREPLAYABLE_LISTED: usize = 100;

/// The decisions in severity order (the matrix's row and column order).
pub const DECISIONS: [Decision; 5] = [
    Decision::Allow,
    Decision::Log,
    Decision::Redact,
    Decision::Constrain,
    Decision::Block,
];

/// The input that was replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputInfo {
    /// `sqlite` or `jsonl`.
    pub kind: InputKind,
    /// The path as given.
    pub path: String,
    /// `--since`, in the stored form (RFC 3339 UTC), if given.
    pub since: Option<String>,
    /// `--agent`, if given.
    pub agent: Option<String>,
    /// `--workflow`, if given.
    pub workflow: Option<String>,
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideInfo {
    /// `recorded` (the decisions in the audit chain), `pack` (re-evaluated), or `shadow`
    /// (the recorded shadow verdicts).
    pub source: String,
    /// Pack name (`pack` only).
    pub name: Option<String>,
    /// Pack version (`pack` only).
    pub version: Option<String>,
    /// Hex SHA-256 of the pack file (`pack` only).
    pub sha256: Option<String>,
    /// Whether budgets and rate limits of this side were simulated.
    pub cost_simulated: bool,
}

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Records read after filters.
    pub records: u64,
    /// Records replayed.
    pub replayed: u64,
    /// Records that could not be replayed.
    pub unreplayable: u64,
    /// Replayed records whose decision changed.
    pub changed: u64,
    /// Replayed records whose decision did not change.
    pub unchanged: u64,
    /// Changed to a more severe decision.
    pub more_severe: u64,
    /// Changed to a less severe decision.
    pub less_severe: u64,
    /// Replayed from redacted content or an edited response (see docs/replay.md).
    pub approximate: u64,
}

/// A row of the transition matrix: baseline decision → count per candidate decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MatrixRow {
    /// Baseline decision of the row.
    pub baseline: String,
    /// → ALLOW.
    #[serde(rename = "ALLOW")]
    pub allow: u64,
    /// → LOG.
    #[serde(rename = "LOG")]
    pub log: u64,
    /// → REDACT.
    #[serde(rename = "REDACT")]
    pub redact: u64,
    /// → CONSTRAIN.
    #[serde(rename = "CONSTRAIN")]
    pub constrain: u64,
    /// → BLOCK.
    #[serde(rename = "BLOCK")]
    pub block: u64,
}

impl MatrixRow {
    fn cell(&mut self, d: Decision) -> &mut u64 {
        match d {
            Decision::Allow => &mut self.allow,
            Decision::Log => &mut self.log,
            Decision::Redact => &mut self.redact,
            Decision::Constrain => &mut self.constrain,
            Decision::Block => &mut self.block,
        }
    }

    /// The count for candidate decision `d`.
    pub fn get(&self, d: Decision) -> u64 {
        match d {
            Decision::Allow => self.allow,
            Decision::Log => self.log,
            Decision::Redact => self.redact,
            Decision::Constrain => self.constrain,
            Decision::Block => self.block,
        }
    }
}

/// A non-empty off-diagonal cell of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Baseline decision.
    pub from: Decision,
    /// Candidate decision.
    pub to: Decision,
    /// Records.
    pub count: u64,
    /// Percent of the replayed records, rounded to 2 decimals.
    pub percent: f64,
}

/// What one policy or rule newly does under the candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    /// Policy name (`rule` for conditional rules, `budget` for budgets / rate limits).
    pub policy: String,
    /// Rule name, if any.
    pub rule: Option<String>,
    /// Turns it newly blocks (it decided the candidate's BLOCK, the baseline did not block).
    pub newly_blocked: u64,
    /// Turns it newly constrains.
    pub newly_constrained: u64,
    /// Turns it newly redacts.
    pub newly_redacted: u64,
    /// Turns it newly logs.
    pub newly_logged: u64,
    /// Turns it decided in the baseline that the candidate lets through with a milder decision.
    pub newly_let_through: u64,
}

/// Changes for one agent or workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupChange {
    /// Agent or workflow (`(none)` for records without a workflow).
    pub name: String,
    /// Replayed records.
    pub replayed: u64,
    /// Changed records.
    pub changed: u64,
    /// Changed to a more severe decision.
    pub more_severe: u64,
    /// Changed to a less severe decision.
    pub less_severe: u64,
    /// Newly BLOCK.
    pub newly_blocked: u64,
    /// BLOCK in the baseline, not in the candidate.
    pub newly_unblocked: u64,
}

/// Money that would have been spent or saved (exact decimal USD strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CostSummary {
    /// Recorded cost of the replayed records.
    pub recorded_usd: String,
    /// Recorded cost of turns the candidate refuses before the upstream call while the
    /// baseline let them reach it: what the candidate would have saved.
    pub saved_usd: String,
    /// Number of those turns.
    pub saved_records: u64,
    /// Turns the baseline refused before the upstream call that the candidate lets
    /// through: new spend, whose amount the record cannot tell (it was never paid).
    pub newly_forwarded_records: u64,
    /// Replayed records with no known cost (no usage, or a model without a price).
    pub unknown_cost_records: u64,
}

/// A tool call the candidate lets through where the baseline did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolChange {
    /// Tool name.
    pub tool: String,
    /// Records.
    pub records: u64,
    /// Calling agents, sorted.
    pub agents: Vec<String>,
}

/// An excerpt of the text at a deciding finding, with every finding span masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excerpt {
    /// Where the text sits.
    pub location: String,
    /// The text (masked, at most 160 characters).
    pub text: String,
}

/// One example record of a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// `event seq N` or `line N`.
    pub record: String,
    /// Event id.
    pub id: String,
    /// Event time.
    pub time: String,
    /// Agent.
    pub agent: String,
    /// Workflow.
    pub workflow: Option<String>,
    /// Conversation.
    pub conversation: String,
    /// Model.
    pub model: String,
    /// The verdicts that decided the baseline (empty for ALLOW).
    pub baseline: Vec<VerdictSummary>,
    /// The verdicts that decided the candidate (empty for ALLOW).
    pub candidate: Vec<VerdictSummary>,
    /// Masked excerpts of the text at the deciding findings.
    pub excerpts: Vec<Excerpt>,
    /// Replayed from redacted content or an edited response.
    pub approximate: bool,
}

/// Up to N examples of one transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransitionExamples {
    /// Baseline decision.
    pub from: Decision,
    /// Candidate decision.
    pub to: Decision,
    /// The first records of the transition, in input order.
    pub examples: Vec<Example>,
}

/// Count of unreplayable records for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// Reason code (`content_not_stored`, `request_not_stored`, `request_unparsable`,
    /// `unknown_model`, `no_shadow_verdicts`).
    pub reason: String,
    /// Records.
    pub count: u64,
}

/// One unreplayable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreplayableRecord {
    /// `event seq N` or `line N`.
    pub record: String,
    /// Event id.
    pub id: String,
    /// Reason code.
    pub reason: String,
    /// Detail.
    pub detail: String,
}

/// Records that could not be replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnreplayableSummary {
    /// Counts by reason, sorted by reason.
    pub by_reason: Vec<ReasonCount>,
    /// The first [`MAX_UNREPLAYABLE_LISTED`] records, in input order.
    pub records: Vec<UnreplayableRecord>,
}

/// The outcome of one `--fail-on` condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailOnResult {
    /// The condition as written.
    pub condition: String,
    /// The measured count.
    pub value: u64,
    /// The denominator of percentages (replayed records; all records for `unreplayable`).
    pub total: u64,
    /// Whether it was crossed.
    pub crossed: bool,
}

/// The whole report. Its JSON form is documented in `docs/replay.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// [`REPORT_SCHEMA`].
    pub schema: &'static str,
    /// The input.
    pub input: InputInfo,
    /// `packs` or `shadow`.
    pub mode: &'static str,
    /// The baseline side.
    pub baseline: SideInfo,
    /// The candidate side.
    pub candidate: SideInfo,
    /// Totals.
    pub totals: Totals,
    /// Rows ALLOW, LOG, REDACT, CONSTRAIN, BLOCK (baseline) × the same columns (candidate).
    pub matrix: Vec<MatrixRow>,
    /// Non-empty off-diagonal cells, baseline severity then candidate severity.
    pub transitions: Vec<Transition>,
    /// Per policy and rule, sorted by policy then rule; only those with a change.
    pub by_policy: Vec<PolicyChange>,
    /// Per agent, sorted by name.
    pub by_agent: Vec<GroupChange>,
    /// Per workflow, sorted by name.
    pub by_workflow: Vec<GroupChange>,
    /// Cost.
    pub cost: CostSummary,
    /// Tools newly let through, sorted by name.
    pub new_allowed_tools: Vec<ToolChange>,
    /// Examples per transition (same order as `transitions`).
    pub examples: Vec<TransitionExamples>,
    /// Unreplayable records.
    pub unreplayable: UnreplayableSummary,
    /// `--fail-on` outcomes, in the order given.
    pub fail_on: Vec<FailOnResult>,
}

impl ReplayReport {
    /// True when a `--fail-on` condition was crossed (exit code 1).
    pub fn failed(&self) -> bool {
        self.fail_on.iter().any(|f| f.crossed)
    }

    /// Records moving from `from` to `to`.
    pub fn transition(&self, from: Decision, to: Decision) -> u64 {
        self.matrix
            .iter()
            .find(|r| r.baseline == from.as_str())
            .map_or(0, |r| r.get(to))
    }

    /// The stable JSON form (pretty, 2 spaces, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

fn percent(n: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let hundredths = (u128::from(n) * 10_000 + u128::from(total) / 2) / u128::from(total);
    hundredths as f64 / 100.0
}

/// Aggregates processed records in input order.
pub(crate) struct Aggregator {
    examples_per_transition: usize,
    totals: Totals,
    matrix: [[u64; 5]; 5],
    by_policy: BTreeMap<(String, Option<String>), PolicyChange>,
    by_agent: BTreeMap<String, GroupChange>,
    by_workflow: BTreeMap<String, GroupChange>,
    recorded: u128,
    saved: u128,
    cost: CostSummary,
    tools: BTreeMap<String, (u64, BTreeSet<String>)>,
    examples: BTreeMap<(Decision, Decision), Vec<Example>>,
    reasons: BTreeMap<String, u64>,
    unreplayable: Vec<UnreplayableRecord>,
    pub(crate) cand_sim: Option<CostSim>,
    pub(crate) base_sim: Option<CostSim>,
}

fn sev(d: Decision) -> usize {
    d as usize
}

fn place_label(p: Place) -> String {
    p.to_string()
}

impl Aggregator {
    pub(crate) fn new(
        examples_per_transition: usize,
        cand_sim: Option<CostSim>,
        base_sim: Option<CostSim>,
    ) -> Aggregator {
        Aggregator {
            examples_per_transition,
            totals: Totals::default(),
            matrix: [[0; 5]; 5],
            by_policy: BTreeMap::new(),
            by_agent: BTreeMap::new(),
            by_workflow: BTreeMap::new(),
            recorded: 0,
            saved: 0,
            cost: CostSummary::default(),
            tools: BTreeMap::new(),
            examples: BTreeMap::new(),
            reasons: BTreeMap::new(),
            unreplayable: Vec::new(),
            cand_sim,
            base_sim,
        }
    }

    /// Adds one record (in input order).
    pub(crate) fn add(&mut self, p: Processed) {
        match p {
            Processed::Skipped | Processed::Failed(_) => {}
            Processed::Unreplayable {
                meta,
                reason,
                detail,
            } => {
                self.totals.records += 1;
                self.totals.unreplayable += 1;
                *self.reasons.entry(reason.to_owned()).or_insert(0) += 1;
                if self.unreplayable.len() < MAX_UNREPLAYABLE_LISTED {
                    self.unreplayable.push(UnreplayableRecord {
                        record: place_label(meta.place),
                        id: meta.id,
                        reason: reason.to_owned(),
                        detail,
                    });
                }
            }
            Processed::Replayed(r) => self.add_replayed(*r),
        }
    }

    fn add_replayed(&mut self, mut r: Replayed) {
        if let Some(sim) = self.cand_sim.as_mut() {
            sim.apply(&r.meta, &mut r.cand);
        }
        if let Some(sim) = self.base_sim.as_mut() {
            sim.apply(&r.meta, &mut r.base);
        }
        let (b, c) = (r.base.decision, r.cand.decision);
        self.totals.records += 1;
        self.totals.replayed += 1;
        if r.approximate {
            self.totals.approximate += 1;
        }
        self.matrix[sev(b)][sev(c)] += 1;
        let changed = b != c;
        if changed {
            self.totals.changed += 1;
            if c > b {
                self.totals.more_severe += 1;
            } else {
                self.totals.less_severe += 1;
            }
        } else {
            self.totals.unchanged += 1;
        }
        let workflow = r
            .meta
            .workflow
            .clone()
            .unwrap_or_else(|| "(none)".to_owned());
        for (map, name) in [
            (&mut self.by_agent, r.meta.agent.clone()),
            (&mut self.by_workflow, workflow),
        ] {
            let g = map.entry(name.clone()).or_insert_with(|| GroupChange {
                name,
                ..GroupChange::default()
            });
            g.replayed += 1;
            if changed {
                g.changed += 1;
                if c > b {
                    g.more_severe += 1;
                } else {
                    g.less_severe += 1;
                }
                if c == Decision::Block {
                    g.newly_blocked += 1;
                }
                if b == Decision::Block {
                    g.newly_unblocked += 1;
                }
            }
        }
        if changed {
            self.attribute(&r.base, &r.cand);
        }
        // Cost.
        match r.meta.cost {
            Some(cost) => self.recorded += cost.picodollars,
            None => self.cost.unknown_cost_records += 1,
        }
        let base_before = r.base.blocked_at == Some(Stage::BeforeUpstream);
        let cand_before = r.cand.blocked_at == Some(Stage::BeforeUpstream);
        if cand_before && !base_before {
            self.cost.saved_records += 1;
            self.saved += r.meta.cost.map_or(0, |c| c.picodollars);
        }
        if base_before && !cand_before {
            self.cost.newly_forwarded_records += 1;
        }
        // Tools.
        for t in &r.cand.allowed_tools {
            if !r.base.allowed_tools.contains(t) {
                let e = self.tools.entry(t.clone()).or_default();
                e.0 += 1;
                e.1.insert(r.meta.agent.clone());
            }
        }
        // Examples.
        if changed && self.examples_per_transition > 0 {
            let list = self.examples.entry((b, c)).or_default();
            if list.len() < self.examples_per_transition {
                list.push(example(&r));
            }
        }
    }

    /// Credits the policies that made the difference.
    fn attribute(&mut self, base: &Side, cand: &Side) {
        let mut seen: BTreeSet<(String, Option<String>)> = BTreeSet::new();
        if cand.decision > base.decision {
            for v in cand.deciding() {
                let key = v.key();
                if base.decision_of(&key) >= cand.decision || !seen.insert(key.clone()) {
                    continue;
                }
                let e = self.entry(key);
                match cand.decision {
                    Decision::Block => e.newly_blocked += 1,
                    Decision::Constrain => e.newly_constrained += 1,
                    Decision::Redact => e.newly_redacted += 1,
                    Decision::Log => e.newly_logged += 1,
                    Decision::Allow => {}
                }
            }
        } else {
            for v in base.deciding() {
                let key = v.key();
                if cand.decision_of(&key) >= base.decision || !seen.insert(key.clone()) {
                    continue;
                }
                self.entry(key).newly_let_through += 1;
            }
        }
    }

    fn entry(&mut self, key: (String, Option<String>)) -> &mut PolicyChange {
        self.by_policy
            .entry(key.clone())
            .or_insert_with(|| PolicyChange {
                policy: key.0,
                rule: key.1,
                ..PolicyChange::default()
            })
    }

    /// The report.
    pub(crate) fn finish(
        mut self,
        input: InputInfo,
        mode: &'static str,
        baseline: SideInfo,
        candidate: SideInfo,
        fail_on: &[FailOn],
    ) -> ReplayReport {
        let replayed = self.totals.replayed;
        let matrix: Vec<MatrixRow> = DECISIONS
            .iter()
            .map(|&from| {
                let mut row = MatrixRow {
                    baseline: from.as_str().to_owned(),
                    ..MatrixRow::default()
                };
                for &to in &DECISIONS {
                    *row.cell(to) = self.matrix[sev(from)][sev(to)];
                }
                row
            })
            .collect();
        let mut transitions = Vec::new();
        for &from in &DECISIONS {
            for &to in &DECISIONS {
                let n = self.matrix[sev(from)][sev(to)];
                if from != to && n > 0 {
                    transitions.push(Transition {
                        from,
                        to,
                        count: n,
                        percent: percent(n, replayed),
                    });
                }
            }
        }
        let examples = transitions
            .iter()
            .map(|t| TransitionExamples {
                from: t.from,
                to: t.to,
                examples: self.examples.remove(&(t.from, t.to)).unwrap_or_default(),
            })
            .collect();
        self.cost.recorded_usd = UsdAmount::from_picodollars(self.recorded).to_string();
        self.cost.saved_usd = UsdAmount::from_picodollars(self.saved).to_string();
        let new_allowed_tools: Vec<ToolChange> = self
            .tools
            .into_iter()
            .map(|(tool, (records, agents))| ToolChange {
                tool,
                records,
                agents: agents.into_iter().collect(),
            })
            .collect();
        let fail_on = fail_on
            .iter()
            .map(|f| match f {
                FailOn::NewAllowedTool => {
                    let value: u64 = new_allowed_tools.iter().map(|t| t.records).sum();
                    FailOnResult {
                        condition: f.text(),
                        value,
                        total: replayed,
                        crossed: value > 0,
                    }
                }
                FailOn::Threshold {
                    metric,
                    cmp,
                    threshold,
                    ..
                } => {
                    let (value, total) = match metric {
                        Metric::Changed => (self.totals.changed, replayed),
                        Metric::Unreplayable => (self.totals.unreplayable, self.totals.records),
                        Metric::Transition { from, to } => {
                            let mut n = 0;
                            for &a in &DECISIONS {
                                for &b in &DECISIONS {
                                    if a != b
                                        && from.is_none_or(|f| f == a)
                                        && to.is_none_or(|t| t == b)
                                    {
                                        n += self.matrix[sev(a)][sev(b)];
                                    }
                                }
                            }
                            (n, replayed)
                        }
                    };
                    FailOnResult {
                        condition: f.text(),
                        value,
                        total,
                        crossed: crosses(*cmp, *threshold, value, total),
                    }
                }
            })
            .collect();
        ReplayReport {
            schema: REPORT_SCHEMA,
            input,
            mode,
            baseline,
            candidate,
            totals: self.totals,
            matrix,
            transitions,
            by_policy: self.by_policy.into_values().collect(),
            by_agent: self.by_agent.into_values().collect(),
            by_workflow: self.by_workflow.into_values().collect(),
            cost: self.cost,
            new_allowed_tools,
            examples,
            unreplayable: UnreplayableSummary {
                by_reason: self
                    .reasons
                    .into_iter()
                    .map(|(reason, count)| ReasonCount { reason, count })
                    .collect(),
                records: self.unreplayable,
            },
            fail_on,
        }
    }
}

fn example(r: &Replayed) -> Example {
    let m: &Meta = &r.meta;
    Example {
        record: place_label(m.place),
        id: m.id.clone(),
        time: m.time.clone(),
        agent: m.agent.clone(),
        workflow: m.workflow.clone(),
        conversation: m.conversation.clone(),
        model: m.model.clone(),
        baseline: r.base.deciding().cloned().collect(),
        candidate: r.cand.deciding().cloned().collect(),
        excerpts: r
            .excerpts
            .iter()
            .map(|(location, text)| Excerpt {
                location: location.clone(),
                text: text.clone(),
            })
            .collect(),
        approximate: r.approximate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_half_up_to_two_decimals() {
        assert_eq!(percent(1, 3), 33.33);
        assert_eq!(percent(2, 3), 66.67);
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(5, 5), 100.0);
    }
}
