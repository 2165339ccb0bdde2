//! One record: decode, rebuild the exchange from the stored content, evaluate the
//! baseline and the candidate, keep what the report needs.

use std::sync::Arc;

use bytes::Bytes;
use exchange::{ChatRequest, ChatResponse, Decision, Exchange, Identity, Outcome, Phase, Verdict};
use policy_engine::{CompiledPack, PolicyState, ScanCache};

use super::error::ReplayError;
use super::input::{Place, RawBody, RawRecord};
use super::record::{ReplayEvent, Verdicts, decode_event};

/// Longest excerpt shown in an example, in characters.
const EXCERPT_CHARS: usize = 160;

/// A finding as the report shows it: kind and place, never the matched text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct FindingSummary {
    /// Detector family.
    pub detector: String,
    /// Entity or technique.
    pub kind: String,
    /// Rule id.
    pub rule: String,
    /// Where the text sits.
    pub location: String,
    /// Start byte offset.
    pub start: u64,
    /// End byte offset.
    pub end: u64,
}

/// A non-ALLOW verdict, reduced to what the report needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerdictSummary {
    /// Policy name (`rule` for conditional rules, `budget` for simulated budget refusals).
    pub policy: String,
    /// Rule name, if any.
    pub rule: Option<String>,
    /// `input` or `output`.
    pub phase: Phase,
    /// The decision.
    pub decision: Decision,
    /// The reason.
    pub reason: String,
    /// Evidence (kinds and spans only).
    pub findings: Vec<FindingSummary>,
}

impl VerdictSummary {
    fn of_verdict(v: &Verdict) -> VerdictSummary {
        VerdictSummary {
            policy: v.policy.clone(),
            rule: v.rule.clone(),
            phase: v.phase,
            decision: v.decision,
            reason: v.reason.clone(),
            findings: v
                .findings
                .iter()
                .map(|f| FindingSummary {
                    detector: f.detector.clone(),
                    kind: f.kind.clone(),
                    rule: f.rule.clone(),
                    location: f.location.clone(),
                    start: f.start as u64,
                    end: f.end as u64,
                })
                .collect(),
        }
    }

    /// `(policy, rule)`: the key of per-policy statistics.
    pub(crate) fn key(&self) -> (String, Option<String>) {
        (self.policy.clone(), self.rule.clone())
    }
}

/// Where a side refused the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Before the upstream call (input policies, budgets, rate limits): nothing was spent.
    BeforeUpstream,
    /// On the response: the upstream call was paid for.
    AfterUpstream,
}

/// One side's (baseline or candidate) view of a turn.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    /// Overall decision.
    pub decision: Decision,
    /// Where a BLOCK happened.
    pub blocked_at: Option<Stage>,
    /// Non-ALLOW verdicts, in evaluation order.
    pub verdicts: Vec<VerdictSummary>,
    /// Tool calls of the response this side lets through.
    pub allowed_tools: Vec<String>,
}

impl Side {
    /// The decision of `policy`/`rule` on this side (ALLOW when it has no non-ALLOW verdict).
    pub(crate) fn decision_of(&self, key: &(String, Option<String>)) -> Decision {
        self.verdicts
            .iter()
            .filter(|v| v.policy == key.0 && v.rule == key.1)
            .map(|v| v.decision)
            .max()
            .unwrap_or(Decision::Allow)
    }

    /// The verdicts at the overall decision.
    pub(crate) fn deciding(&self) -> impl Iterator<Item = &VerdictSummary> {
        self.verdicts
            .iter()
            .filter(move |v| v.decision == self.decision && v.decision != Decision::Allow)
    }

    /// Refuses the turn before the upstream call (simulated budget / rate limit).
    pub(crate) fn refuse(&mut self, code: &str, reason: String) {
        self.decision = Decision::Block;
        self.blocked_at = Some(Stage::BeforeUpstream);
        self.allowed_tools.clear();
        self.verdicts.push(VerdictSummary {
            policy: "budget".to_owned(),
            rule: Some(code.to_owned()),
            phase: Phase::Input,
            decision: Decision::Block,
            reason,
            findings: Vec::new(),
        });
    }
}

/// What every report line needs about a record.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub place: Place,
    pub id: String,
    pub time: String,
    pub agent: String,
    pub role: Option<String>,
    pub workflow: Option<String>,
    pub conversation: String,
    pub model: String,
    /// Recorded cost (exact), `None` when unknown or not spent.
    pub cost: Option<exchange::UsdAmount>,
    /// Prompt + completion tokens recorded.
    pub tokens: u64,
    /// Recorded usage, if any.
    pub usage: Option<exchange::TokenUsage>,
}

/// A replayed record.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub meta: Meta,
    pub base: Side,
    pub cand: Side,
    /// Stored content was redacted or the response was edited by output policies: the
    /// re-evaluation sees masked / edited text.
    pub approximate: bool,
    /// Excerpts of the texts at the deciding findings (masked), for examples.
    pub excerpts: Vec<(String, String)>,
}

/// The result of processing one record.
#[derive(Debug)]
pub(crate) enum Processed {
    /// Filtered out (JSONL `--since` / `--agent` / `--workflow`).
    Skipped,
    /// Could not be replayed, with a reason code and a detail.
    Unreplayable {
        meta: Meta,
        reason: &'static str,
        detail: String,
    },
    /// Replayed.
    Replayed(Box<Replayed>),
    /// Corrupt input: stops the replay.
    Failed(ReplayError),
}

/// Filters applied to decoded records (JSONL input).
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordFilter {
    pub since: Option<String>,
    pub agent: Option<String>,
    pub workflow: Option<String>,
}

/// What is replayed against what.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Recorded (or `baseline`) vs the candidate pack.
    Packs {
        candidate: Arc<CompiledPack>,
        baseline: Option<Arc<CompiledPack>>,
    },
    /// Recorded real decisions vs recorded shadow verdicts.
    Shadow,
}

/// A conversation idle this long in recorded time is forgotten (the gateway's
/// `policy_engine` idle expiry).
const IDLE_EXPIRY_SECS: i64 = 6 * 3600;
/// Most conversations a worker keeps state for; beyond it the least recently seen half is
/// dropped (the gateway keeps 10,000 per process).
const MAX_CONVERSATIONS: usize = 20_000;
/// Records between two sweeps of idle conversations.
const SWEEP_EVERY: u32 = 4096;

/// Cross-turn policy state per conversation, one fresh [`PolicyState`] per side and
/// conversation, expired by *recorded* time (replay runs much faster than the traffic did).
/// All of them share the worker's detector findings cache (its keys name the pack, so the
/// two sides never mix).
#[derive(Default)]
pub(crate) struct ConversationStates {
    map: std::collections::HashMap<String, (PolicyState, PolicyState, String)>,
    since_sweep: u32,
    cache: ScanCache,
}

impl ConversationStates {
    /// No conversation yet; a findings cache of `entries` texts (0: none).
    pub(crate) fn with_scan_cache(entries: usize) -> ConversationStates {
        ConversationStates {
            map: Default::default(),
            since_sweep: 0,
            cache: ScanCache::new(
                entries,
                entries.saturating_mul(policy_engine::DEFAULT_MAX_BYTES)
                    / policy_engine::DEFAULT_MAX_ENTRIES,
            ),
        }
    }

    fn state(&self) -> PolicyState {
        PolicyState::new().with_scan_cache(self.cache.clone())
    }

    /// The (candidate, baseline) states of `conversation`, seen at recorded `time`.
    fn get(&mut self, conversation: &str, time: &str) -> (PolicyState, PolicyState) {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.sweep(time);
        }
        if let Some(e) = self.map.get_mut(conversation) {
            if e.2.as_str() < time {
                e.2 = time.to_owned();
            }
            return (e.0.clone(), e.1.clone());
        }
        let e = (self.state(), self.state(), time.to_owned());
        let out = (e.0.clone(), e.1.clone());
        self.map.insert(conversation.to_owned(), e);
        out
    }

    fn sweep(&mut self, now: &str) {
        if let Ok(t) =
            time::OffsetDateTime::parse(now, &time::format_description::well_known::Rfc3339)
        {
            let cutoff =
                audit_chain::format_time((t - time::Duration::seconds(IDLE_EXPIRY_SECS)).into());
            self.map.retain(|_, e| e.2 >= cutoff);
        }
        if self.map.len() > MAX_CONVERSATIONS {
            let mut times: Vec<&str> = self.map.values().map(|e| e.2.as_str()).collect();
            times.sort_unstable();
            let median = times[times.len() / 2].to_owned();
            self.map.retain(|_, e| e.2 >= median);
        }
    }
}

/// Per-worker state: the packs and the conversations' policy state.
pub(crate) struct Worker {
    pub mode: Mode,
    pub filter: RecordFilter,
    pub input_name: String,
    pub states: ConversationStates,
}

fn decode(raw: &RawRecord, input: &str) -> Result<ReplayEvent, ReplayError> {
    let (bytes, complete) = match &raw.body {
        RawBody::Stored(b) => (b.as_slice(), true),
        RawBody::Line { bytes, complete } => (bytes.as_slice(), *complete),
    };
    decode_event(bytes).map_err(|e| {
        let message = if !complete && e.is_eof() {
            format!("truncated record (the input ends inside it): {e}")
        } else if e.is_eof() {
            format!("truncated record: {e}")
        } else {
            format!("not a valid audit event: {e}")
        };
        ReplayError::Record {
            input: input.to_owned(),
            record: raw.place.to_string(),
            message,
        }
    })
}

fn meta_of(ev: &ReplayEvent, place: Place) -> Meta {
    Meta {
        place,
        id: ev.id.clone(),
        time: ev.time.clone(),
        agent: ev.agent.clone(),
        role: ev.role.clone(),
        workflow: ev.workflow.clone(),
        conversation: ev.conversation.clone(),
        model: ev.model.clone(),
        cost: ev
            .cost_usd
            .as_deref()
            .and_then(|c| exchange::UsdAmount::parse(c).ok()),
        tokens: ev
            .usage
            .map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens)),
        usage: ev.usage.map(|u| exchange::TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.cached_tokens,
            estimated: u.estimated,
        }),
    }
}

/// Tool names stripped by a firewall verdict (`removed tool calls not allowed …: a, b`).
fn stripped_tools(verdicts: &[VerdictSummary]) -> Vec<&str> {
    verdicts
        .iter()
        .filter(|v| v.decision == Decision::Redact && v.reason.starts_with("removed tool calls"))
        .filter_map(|v| v.reason.rsplit_once(": ").map(|(_, names)| names))
        .flat_map(|names| names.split(", "))
        .collect()
}

fn allowed_tools(decision: Decision, verdicts: &[VerdictSummary], tools: &[String]) -> Vec<String> {
    if decision == Decision::Block {
        return Vec::new();
    }
    let stripped = stripped_tools(verdicts);
    let mut out: Vec<String> = tools
        .iter()
        .filter(|t| !stripped.contains(&t.as_str()))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The recorded side: decisions as the gateway took them (a budget or rate-limit refusal
/// counts as BLOCK by `budget`).
fn recorded_side(ev: &ReplayEvent, verdicts: Verdicts, tools: &[String]) -> Side {
    let summaries = verdicts.kept;
    let decision = verdicts.decision;
    let blocked_at = if decision == Decision::Block {
        if summaries
            .iter()
            .any(|v| v.decision == Decision::Block && v.phase == Phase::Input)
        {
            Some(Stage::BeforeUpstream)
        } else {
            Some(Stage::AfterUpstream)
        }
    } else {
        None
    };
    let mut side = Side {
        decision,
        blocked_at,
        allowed_tools: allowed_tools(decision, &summaries, tools),
        verdicts: summaries,
    };
    if let audit_chain::OutcomeRecord::Rejected { code, status } = &ev.outcome {
        if matches!(code.as_str(), "budget_exceeded" | "rate_limit_exceeded") {
            side.refuse(code, format!("refused by the gateway ({status} {code})"));
        }
    }
    side
}

/// Runs `pack` on a copy of the rebuilt exchange: the input phase, then (unless it blocks)
/// the output phase on the recorded response.
fn evaluated_side(
    pack: &CompiledPack,
    state: &PolicyState,
    mut ex: Exchange,
    response: Option<&ChatResponse>,
    tools: &[String],
) -> Side {
    pack.evaluate_input(&mut ex, state);
    let mut blocked_at = None;
    if ex.decision() == Decision::Block {
        blocked_at = Some(Stage::BeforeUpstream);
    } else if let Some(resp) = response {
        let mut resp = resp.clone();
        pack.evaluate_output(&mut ex, &mut resp, state);
        if ex.decision() == Decision::Block {
            blocked_at = Some(Stage::AfterUpstream);
        }
    }
    let decision = ex.decision();
    let verdicts: Vec<VerdictSummary> = ex
        .verdicts
        .iter()
        .filter(|v| v.decision != Decision::Allow)
        .map(VerdictSummary::of_verdict)
        .collect();
    Side {
        decision,
        blocked_at,
        allowed_tools: allowed_tools(decision, &verdicts, tools),
        verdicts,
    }
}

/// Whether the candidate pack has a provider for `model` (no providers: every model).
fn serves_model(pack: &CompiledPack, model: &str) -> bool {
    let providers = &pack.settings.providers;
    providers.is_empty()
        || providers.iter().any(|p| {
            p.models.is_empty()
                || p.models.iter().any(|m| match m.strip_suffix('*') {
                    Some(prefix) => model.starts_with(prefix),
                    None => m == model,
                })
        })
}

fn rebuild_exchange(ev: &ReplayEvent, request: ChatRequest, body: Bytes) -> Exchange {
    let mut ex = Exchange::new(request, body);
    let anonymous = ev.agent == "anonymous" && !ev.authenticated;
    ex.identity = Identity {
        agent: (!anonymous).then(|| ev.agent.clone()),
        role: ev.role.clone(),
        workflow: ev.workflow.clone(),
        key_id: ev.key_id.clone(),
        authenticated: ev.authenticated,
        claimed_agent: None,
        claimed_workflow: None,
    };
    ex.conversation_id = ev.conversation.clone();
    ex.kind = ev.request_kind;
    ex.senders = ev.sender_agents.clone();
    ex.edges = ev
        .edges
        .iter()
        .map(|e| exchange::Edge {
            from: e.from.clone(),
            to: e.to.clone(),
        })
        .collect();
    ex.provider = ev.provider.clone();
    ex.outcome = Outcome::Pending;
    ex
}

/// The text at a finding location (`messages[i].content`, `choices[i].message.content`).
fn text_at(location: &str, req: &ChatRequest, resp: Option<&ChatResponse>) -> Option<String> {
    let location = location
        .strip_prefix("request.")
        .or_else(|| location.strip_prefix("response."))
        .unwrap_or(location);
    let index = |s: &str, prefix: &str| -> Option<usize> {
        let rest = s.strip_prefix(prefix)?;
        let end = rest.find(']')?;
        rest[..end].parse().ok()
    };
    if location.starts_with("messages[") && location.ends_with("].content") {
        let i = index(location, "messages[")?;
        return req.messages.get(i).map(|m| m.text().into_owned());
    }
    if location.starts_with("choices[") && location.ends_with("].message.content") {
        let i = index(location, "choices[")?;
        return resp?.choices.get(i).map(|c| c.message.text().into_owned());
    }
    None
}

/// `text` with every span masked as `[KIND]`, cut to [`EXCERPT_CHARS`] around `focus`.
fn excerpt(text: &str, spans: &[(u64, u64, &str)], focus: u64) -> String {
    let mut spans: Vec<(usize, usize, &str)> = spans
        .iter()
        .map(|&(s, e, k)| {
            let mut s = (s as usize).min(text.len());
            let mut e = (e as usize).min(text.len()).max(s);
            while !text.is_char_boundary(s) {
                s -= 1;
            }
            while !text.is_char_boundary(e) {
                e += 1;
            }
            (s, e, k)
        })
        .collect();
    spans.sort_unstable();
    let mut out = String::new();
    let mut pos = 0;
    let mut focus_at = 0;
    for (s, e, k) in spans {
        if e <= pos {
            continue;
        }
        let s = s.max(pos);
        out.push_str(&text[pos..s]);
        if s as u64 <= focus {
            focus_at = out.chars().count();
        }
        out.push_str("[REDACTED:");
        out.push_str(k);
        out.push(']');
        pos = e;
    }
    out.push_str(&text[pos..]);
    let chars: Vec<char> = out.chars().collect();
    if chars.len() <= EXCERPT_CHARS {
        return out;
    }
    let start = focus_at.saturating_sub(EXCERPT_CHARS / 3);
    let start = start.min(chars.len() - EXCERPT_CHARS);
    let mut cut: String = chars[start..start + EXCERPT_CHARS].iter().collect();
    if start > 0 {
        cut.insert(0, '…');
    }
    if start + EXCERPT_CHARS < chars.len() {
        cut.push('…');
    }
    cut
}

fn excerpts_for(
    base: &Side,
    cand: &Side,
    req: &ChatRequest,
    resp: Option<&ChatResponse>,
) -> Vec<(String, String)> {
    let severe = if cand.decision > base.decision {
        cand
    } else {
        base
    };
    let all: Vec<&FindingSummary> = base
        .verdicts
        .iter()
        .chain(&cand.verdicts)
        .flat_map(|v| &v.findings)
        .collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for f in severe.deciding().flat_map(|v| &v.findings) {
        if out.len() >= 3 || out.iter().any(|(l, _)| *l == f.location) {
            continue;
        }
        let Some(text) = text_at(&f.location, req, resp) else {
            continue;
        };
        let spans: Vec<(u64, u64, &str)> = all
            .iter()
            .filter(|g| g.location == f.location)
            .map(|g| (g.start, g.end, g.kind.as_str()))
            .collect();
        out.push((f.location.clone(), excerpt(&text, &spans, f.start)));
    }
    out
}

impl Worker {
    /// Processes one record.
    pub(crate) fn process(&mut self, raw: &RawRecord) -> Processed {
        let mut ev = match decode(raw, &self.input_name) {
            Ok(ev) => ev,
            Err(e) => return Processed::Failed(e),
        };
        if let Some(since) = &self.filter.since {
            if ev.time.as_str() < since.as_str() {
                return Processed::Skipped;
            }
        }
        if let Some(agent) = &self.filter.agent {
            if &ev.agent != agent {
                return Processed::Skipped;
            }
        }
        if let Some(w) = &self.filter.workflow {
            if ev.workflow.as_ref() != Some(w) {
                return Processed::Skipped;
            }
        }
        let meta = meta_of(&ev, raw.place);
        let unreplayable =
            |meta: Meta, reason: &'static str, detail: String| Processed::Unreplayable {
                meta,
                reason,
                detail,
            };
        let (candidate, baseline) = match &self.mode {
            Mode::Shadow => {
                if ev.shadow_verdicts.len == 0 {
                    return unreplayable(
                        meta,
                        "no_shadow_verdicts",
                        "recorded without a shadow pack".to_owned(),
                    );
                }
                let tools: Vec<String> = ev.tool_calls.iter().map(|t| t.name.clone()).collect();
                let (verdicts, shadow) = (
                    std::mem::take(&mut ev.verdicts),
                    std::mem::take(&mut ev.shadow_verdicts),
                );
                let base = recorded_side(&ev, verdicts, &tools);
                let cand = recorded_side(&ev, shadow, &tools);
                return Processed::Replayed(Box::new(Replayed {
                    meta,
                    base,
                    cand,
                    approximate: false,
                    excerpts: Vec::new(),
                }));
            }
            Mode::Packs {
                candidate,
                baseline,
            } => (candidate, baseline),
        };
        let Some(mut content) = ev.content.take() else {
            return unreplayable(
                meta,
                "content_not_stored",
                "recorded with `audit.content: none`".to_owned(),
            );
        };
        let Some(request_text) = content.request.take() else {
            return unreplayable(
                meta,
                "request_not_stored",
                format!(
                    "content mode `{}` kept no request (the body was not JSON)",
                    content.mode
                ),
            );
        };
        if !serves_model(candidate, &ev.model) {
            return unreplayable(
                meta,
                "unknown_model",
                format!(
                    "model `{}` is not served by any provider of the candidate pack",
                    ev.model
                ),
            );
        }
        let request: ChatRequest = match serde_json::from_str(&request_text) {
            Ok(r) => r,
            Err(_) => match Exchange::parse(Bytes::from(request_text.clone())) {
                Ok(ex) => ex.request,
                Err(e) => {
                    return unreplayable(meta, "request_unparsable", e.message);
                }
            },
        };
        let evaluate_output = !ev.stream || ev.verdicts.output_evaluated;
        let response: Option<ChatResponse> = match (&content.response, evaluate_output) {
            (Some(r), true) => serde_json::from_str(r).ok(),
            _ => None,
        };
        let tools: Vec<String> = match &response {
            Some(r) => r
                .choices
                .iter()
                .flat_map(|c| c.message.tool_calls.as_deref().unwrap_or(&[]))
                .map(|c| c.function.name.clone())
                .collect(),
            None => ev.tool_calls.iter().map(|t| t.name.clone()).collect(),
        };
        let approximate = content.mode != "full"
            || ev.metadata.get("response_modified").map(String::as_str) == Some("true");
        let body = Bytes::from(request_text.into_bytes());
        let template = rebuild_exchange(&ev, request, body.clone());
        let (cand_state, base_state) = self.states.get(&ev.conversation, &ev.time);
        let base = match baseline {
            Some(b) => evaluated_side(b, &base_state, template.clone(), response.as_ref(), &tools),
            None => {
                let verdicts = std::mem::take(&mut ev.verdicts);
                recorded_side(&ev, verdicts, &tools)
            }
        };
        let cand = evaluated_side(candidate, &cand_state, template, response.as_ref(), &tools);
        // Excerpts only for changed records, from the request as recorded (before redaction).
        let excerpts = if base.decision != cand.decision {
            serde_json::from_slice::<ChatRequest>(&body)
                .map(|req| excerpts_for(&base, &cand, &req, response.as_ref()))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Processed::Replayed(Box::new(Replayed {
            meta,
            base,
            cand,
            approximate,
            excerpts,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_masks_spans_and_cuts_around_the_finding() {
        let text = "write to bob@example.com today";
        assert_eq!(
            excerpt(text, &[(9, 24, "EMAIL_ADDRESS")], 9),
            "write to [REDACTED:EMAIL_ADDRESS] today"
        );
        let long = format!("{}secret here{}", "a".repeat(300), "b".repeat(300));
        let got = excerpt(&long, &[(300, 306, "X")], 300);
        assert!(got.starts_with('…') && got.ends_with('…'), "{got}");
        assert!(got.contains("[REDACTED:X] here"), "{got}");
    }

    #[test]
    fn stripped_tools_are_not_allowed() {
        let v = VerdictSummary {
            policy: "agent-firewall".to_owned(),
            rule: None,
            phase: Phase::Output,
            decision: Decision::Redact,
            reason: "removed tool calls not allowed for agent `a`: rm, curl".to_owned(),
            findings: Vec::new(),
        };
        let tools = vec!["rm".to_owned(), "ls".to_owned()];
        assert_eq!(allowed_tools(Decision::Redact, &[v], &tools), ["ls"]);
        assert!(allowed_tools(Decision::Block, &[], &tools).is_empty());
    }
}
