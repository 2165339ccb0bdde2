//! Chain evaluation on the request (input phase) and on the response (output phase).

use std::borrow::Cow;
use std::collections::BTreeSet;

use detectors::redact::{PlaceholderMap, Strategy, redact, resolve_overlaps};
use detectors::{DetectorKind, DetectorMask, DetectorSet, Finding, ScanContext, Surface};
use exchange::{
    ChatRequest, ChatResponse, Content, Decision, Exchange, FindingRecord, Message, Phase, Role,
    Verdict,
};
use sha2::{Digest, Sha256};

use crate::pack::CompiledPack;
use crate::policies::{CompiledPolicy, DetectorPolicy, FirewallPolicy};
use crate::rules::{ActionType, RulePhase, Subject};
use crate::state::PolicyState;

/// Something that scans text: the real [`DetectorSet`], or a fake in tests.
pub(crate) trait Scanner: Send + Sync {
    fn scan(&self, text: &str, ctx: &ScanContext) -> Vec<Finding>;
}

impl Scanner for DetectorSet {
    fn scan(&self, text: &str, ctx: &ScanContext) -> Vec<Finding> {
        DetectorSet::scan(self, text, ctx)
    }
}

/// Which text of a message (or choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Content,
    Part(usize),
    ToolArgs(usize),
}

/// One scanned text of the phase.
struct Scanned<'a> {
    /// Message index (input) or choice index (output).
    msg: usize,
    slot: Slot,
    location: String,
    text: Cow<'a, str>,
    findings: Vec<Finding>,
    /// Whether the message is another agent's.
    agent_message: bool,
}

fn surface_of(m: &Message, caller: Option<&str>) -> (Surface, bool) {
    match m.role {
        Role::System | Role::Developer => (Surface::SystemPrompt, false),
        Role::Tool | Role::Function => (Surface::ToolOutput, false),
        Role::User | Role::Assistant => match m.name.as_deref() {
            Some(n) if Some(n) != caller => (Surface::AgentMessage, true),
            _ => (Surface::UserPrompt, false),
        },
    }
}

fn collect_request<'a>(
    req: &'a ChatRequest,
    caller: Option<&str>,
    scanner: &dyn Scanner,
    mask: DetectorMask,
) -> Vec<Scanned<'a>> {
    let mut out = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (surface, agent_message) = surface_of(m, caller);
        match &m.content {
            Some(Content::Text(s)) => out.push(scan_one(
                scanner,
                mask,
                surface,
                i,
                Slot::Content,
                format!("messages[{i}].content"),
                Cow::Borrowed(s.as_str()),
                agent_message,
            )),
            Some(Content::Parts(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    if let Some(t) = &p.text {
                        out.push(scan_one(
                            scanner,
                            mask,
                            surface,
                            i,
                            Slot::Part(j),
                            format!("messages[{i}].content[{j}].text"),
                            Cow::Borrowed(t.as_str()),
                            agent_message,
                        ));
                    }
                }
            }
            None => {}
        }
        for (k, call) in m.tool_calls.as_deref().unwrap_or(&[]).iter().enumerate() {
            out.push(scan_one(
                scanner,
                mask,
                Surface::ToolArguments,
                i,
                Slot::ToolArgs(k),
                format!("messages[{i}].tool_calls[{k}].function.arguments"),
                Cow::Borrowed(call.function.arguments.as_str()),
                false,
            ));
        }
    }
    out
}

fn collect_response<'a>(
    resp: &'a ChatResponse,
    scanner: &dyn Scanner,
    mask: DetectorMask,
) -> Vec<Scanned<'a>> {
    let mut out = Vec::new();
    for (i, c) in resp.choices.iter().enumerate() {
        match &c.message.content {
            Some(Content::Text(s)) => out.push(scan_one(
                scanner,
                mask,
                Surface::AssistantOutput,
                i,
                Slot::Content,
                format!("choices[{i}].message.content"),
                Cow::Borrowed(s.as_str()),
                false,
            )),
            Some(Content::Parts(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    if let Some(t) = &p.text {
                        out.push(scan_one(
                            scanner,
                            mask,
                            Surface::AssistantOutput,
                            i,
                            Slot::Part(j),
                            format!("choices[{i}].message.content[{j}].text"),
                            Cow::Borrowed(t.as_str()),
                            false,
                        ));
                    }
                }
            }
            None => {}
        }
        for (k, call) in c
            .message
            .tool_calls
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            out.push(scan_one(
                scanner,
                mask,
                Surface::ToolArguments,
                i,
                Slot::ToolArgs(k),
                format!("choices[{i}].message.tool_calls[{k}].function.arguments"),
                Cow::Borrowed(call.function.arguments.as_str()),
                false,
            ));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn scan_one<'a>(
    scanner: &dyn Scanner,
    mask: DetectorMask,
    surface: Surface,
    msg: usize,
    slot: Slot,
    location: String,
    text: Cow<'a, str>,
    agent_message: bool,
) -> Scanned<'a> {
    let findings = if mask == DetectorMask::NONE || text.is_empty() {
        Vec::new()
    } else {
        scanner.scan(
            &text,
            &ScanContext {
                surface,
                detectors: mask,
            },
        )
    };
    Scanned {
        msg,
        slot,
        location,
        text,
        findings,
        agent_message,
    }
}

fn record(f: &Finding, location: &str) -> FindingRecord {
    FindingRecord {
        detector: f.detector.as_str().to_owned(),
        kind: f.kind.to_owned(),
        rule: f.rule.to_owned(),
        location: location.to_owned(),
        start: f.start,
        end: f.end,
        score: f.score,
    }
}

fn combined(findings: &[&Finding]) -> f32 {
    let mut keep = 1.0f32;
    for f in findings {
        keep *= 1.0 - f.score.clamp(0.0, 1.0);
    }
    (1.0 - keep).clamp(0.0, 1.0)
}

fn verb(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allowed",
        Decision::Log => "logged",
        Decision::Redact => "redacted",
        Decision::Constrain => "constrained",
        Decision::Block => "blocked",
    }
}

/// A planned edit: finding `f` of text `ti`, rewritten with `strategy`.
struct Edit {
    text: usize,
    finding: Finding,
    strategy: Strategy,
    restorable: bool,
}

/// The findings of text `ti` that a detector policy acts on (empty when it does not trigger).
fn triggered<'f>(pol: &DetectorPolicy, t: &'f Scanned<'_>) -> (Vec<&'f Finding>, f32) {
    let admitted: Vec<&Finding> = t.findings.iter().filter(|f| pol.admits(f)).collect();
    if pol.detector == DetectorKind::Injection {
        let score = combined(&admitted);
        if !admitted.is_empty() && score >= pol.threshold {
            (admitted, score)
        } else {
            (Vec::new(), score)
        }
    } else {
        let max = admitted.iter().map(|f| f.score).fold(0.0f32, f32::max);
        (admitted, max)
    }
}

fn detector_verdict(
    name: &str,
    pol: &DetectorPolicy,
    phase: Phase,
    texts: &[Scanned<'_>],
    edits: &mut Vec<Edit>,
) -> Verdict {
    let mut records = Vec::new();
    let mut kinds = BTreeSet::new();
    let mut locations = Vec::new();
    let mut best = 0.0f32;
    for (ti, t) in texts.iter().enumerate() {
        let (hits, score) = triggered(pol, t);
        best = best.max(score);
        if hits.is_empty() {
            continue;
        }
        locations.push(t.location.clone());
        for f in hits {
            kinds.insert(f.kind);
            records.push(record(f, &t.location));
            if pol.action == Decision::Redact {
                edits.push(Edit {
                    text: ti,
                    finding: f.clone(),
                    strategy: pol.strategy_for(f.kind),
                    restorable: pol.restore,
                });
            }
        }
    }
    let det = pol.detector.as_str();
    let hit = !records.is_empty();
    let decision = if hit { pol.action } else { Decision::Allow };
    let kinds: Vec<&str> = kinds.into_iter().collect();
    let reason = if pol.detector == DetectorKind::Injection {
        if hit {
            format!(
                "injection score {best:.2} >= threshold {:.2} ({}) in {}; {}",
                pol.threshold,
                kinds.join(", "),
                locations.join(", "),
                verb(decision)
            )
        } else {
            format!(
                "injection score {best:.2} below threshold {:.2}",
                pol.threshold
            )
        }
    } else if hit {
        format!(
            "{} {det} finding{} ({}) in {}; {}",
            records.len(),
            if records.len() == 1 { "" } else { "s" },
            kinds.join(", "),
            locations.join(", "),
            verb(decision)
        )
    } else {
        format!("no {det} findings")
    };
    let mut v = Verdict::new(name, phase, decision, reason);
    v.findings = records;
    if pol.detector == DetectorKind::Injection {
        v.score = Some(f64::from((best * 1000.0).round() / 1000.0));
    }
    v
}

/// Rewrites `text` per `edits` (offsets into `text`). Placeholders go to `restorable` or
/// `other`; segments between edits pass through `between` (used to restore placeholders
/// in responses without touching what this call redacts).
fn apply(
    text: &str,
    edits: &[&Edit],
    restorable: &mut PlaceholderMap,
    other: &mut PlaceholderMap,
    between: Option<&PlaceholderMap>,
) -> String {
    let findings: Vec<Finding> = edits.iter().map(|e| e.finding.clone()).collect();
    let chosen = resolve_overlaps(text, &findings);
    let pass = |s: &str| match between {
        Some(m) => m.restore(s),
        None => s.to_owned(),
    };
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, i) in chosen {
        let edit = edits[i];
        out.push_str(&pass(&text[at..s]));
        let mut shifted = edit.finding.clone();
        shifted.start = 0;
        shifted.end = e - s;
        let map = if edit.restorable {
            &mut *restorable
        } else {
            &mut *other
        };
        out.push_str(&redact(&text[s..e], &[shifted], |_| edit.strategy, map));
        at = e;
    }
    out.push_str(&pass(&text[at..]));
    out
}

fn set_request_text(req: &mut ChatRequest, msg: usize, slot: Slot, new: String) {
    let Some(m) = req.messages.get_mut(msg) else {
        return;
    };
    set_message_text(m, slot, new);
}

fn set_message_text(m: &mut Message, slot: Slot, new: String) {
    match slot {
        Slot::Content => m.content = Some(Content::Text(new)),
        Slot::Part(j) => {
            if let Some(Content::Parts(parts)) = &mut m.content {
                if let Some(p) = parts.get_mut(j) {
                    p.text = Some(new);
                }
            }
        }
        Slot::ToolArgs(k) => {
            if let Some(c) = m.tool_calls.as_mut().and_then(|c| c.get_mut(k)) {
                c.function.arguments = new;
            }
        }
    }
}

/// The key under which cross-turn state of this exchange's conversation is kept: the
/// conversation id, or (when no layer set one) `fp:` + a digest of the first two messages.
pub(crate) fn conversation_key(ex: &Exchange) -> String {
    if !ex.conversation_id.is_empty() {
        return ex.conversation_id.clone();
    }
    let mut h = Sha256::new();
    for m in ex.request.messages.iter().take(2) {
        h.update(m.role.as_str().as_bytes());
        h.update([0]);
        h.update(m.text().as_bytes());
        h.update([0]);
    }
    format!("fp:{}", hex::encode(&h.finalize()[..12]))
}

fn tool_allowed(fw: &FirewallPolicy, agent: Option<&str>, role: Option<&str>, tool: &str) -> bool {
    let access = agent
        .and_then(|a| fw.agents.get(a))
        .or_else(|| role.and_then(|r| fw.roles.get(r)));
    match access {
        None => !fw.default_deny,
        Some(acc) => {
            if acc.denied.iter().any(|g| g.matches(tool)) {
                return false;
            }
            match &acc.allowed {
                Some(list) => list.iter().any(|g| g.matches(tool)),
                None => !fw.default_deny,
            }
        }
    }
}

/// Values of capture fields, for audit-logger and LOG rules.
fn capture(ex: &Exchange, field: &str) -> Option<String> {
    match field {
        "sender_agents" => {
            let mut names: Vec<&str> = ex.senders.iter().map(String::as_str).collect();
            if names.is_empty() {
                for m in &ex.request.messages {
                    if let Some(n) = m.name.as_deref() {
                        if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                }
            }
            Some(names.join(","))
        }
        "recipient_agent" | "agent" => ex.identity.agent.clone(),
        "role" => ex.identity.role.clone(),
        "workflow" => ex.identity.workflow.clone(),
        "conversation_id" => Some(ex.conversation_id.clone()),
        "model" => Some(ex.request.model.clone()),
        "tool_calls" => {
            let names: Vec<&str> = ex
                .request
                .messages
                .iter()
                .flat_map(|m| m.tool_calls.as_deref().unwrap_or(&[]))
                .map(|c| c.function.name.as_str())
                .collect();
            Some(names.join(","))
        }
        f => f
            .strip_prefix("header:")
            .and_then(|h| ex.captured_headers.get(h).cloned()),
    }
}

/// Parsed tool-call arguments (Null when they do not parse).
fn parse_args(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

impl CompiledPack {
    fn detector_policies(&self) -> impl Iterator<Item = &DetectorPolicy> {
        self.policies().iter().filter_map(|p| match p {
            CompiledPolicy::Detector(d) => Some(d),
            _ => None,
        })
    }

    /// (detector, kind) of the findings of a text that count for rules' `finding:`.
    fn counted(&self, t: &Scanned<'_>, phase: Phase) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        for kind in DetectorKind::ALL {
            let pol = self.detector_policies().find(|p| {
                p.detector == kind
                    && match phase {
                        Phase::Input => p.direction.input,
                        Phase::Output => p.direction.output,
                    }
            });
            let hits: Vec<&Finding> = match pol {
                Some(p) => triggered(p, t).0,
                None => {
                    let of_kind: Vec<&Finding> =
                        t.findings.iter().filter(|f| f.detector == kind).collect();
                    if kind == DetectorKind::Injection {
                        if combined(&of_kind) >= 0.5 {
                            of_kind
                        } else {
                            Vec::new()
                        }
                    } else {
                        of_kind.into_iter().filter(|f| f.score >= 0.5).collect()
                    }
                }
            };
            out.extend(hits.into_iter().map(|f| (f.detector.as_str(), f.kind)));
        }
        out
    }

    fn rule_verdicts(
        &self,
        phase: Phase,
        subjects: &[Subject<'_>],
        verdicts: &mut Vec<Verdict>,
        captures: &mut Vec<(String, String)>,
    ) -> Vec<bool> {
        let mut allowed = vec![false; subjects.len()];
        for rule in self.rules() {
            let mut matched = Vec::new();
            for (si, s) in subjects.iter().enumerate() {
                let applies = !matches!(
                    (phase, rule.phase, s.action),
                    (Phase::Input, RulePhase::Output, _)
                        | (Phase::Output, RulePhase::Input, _)
                        | (Phase::Output, RulePhase::Both, Some(ActionType::Chat))
                );
                if applies && rule.condition.matches(s) {
                    matched.push(s.location.clone());
                    if rule.decision == Decision::Allow {
                        allowed[si] = true;
                    }
                }
            }
            if matched.is_empty() {
                continue;
            }
            let reason = match &rule.reason {
                Some(r) => r.clone(),
                None => {
                    let mut r = format!("rule `{}` matched {}", rule.name, matched.join(", "));
                    if let Some(a) = rule.action.as_ref().filter(|a| a.require_approval) {
                        r.push_str("; approval required");
                        if let Some(t) = a.timeout_seconds {
                            r.push_str(&format!(" (timeout {t}s)"));
                        }
                    }
                    r
                }
            };
            let mut v = Verdict::new("rule", phase, rule.decision, reason);
            v.rule = Some(rule.name.clone());
            verdicts.push(v);
            for f in &rule.capture_fields {
                captures.push((format!("rule.{}.{f}", rule.name), f.clone()));
            }
        }
        allowed
    }

    /// Input phase: pushes verdicts and applies redaction / tool stripping to `ex.request`.
    pub(crate) fn run_input(&self, ex: &mut Exchange, state: &PolicyState) {
        let caller = ex.identity.agent.clone();
        let conv = conversation_key(ex);
        if ex.conversation_id.is_empty() {
            // Embedded use without an identity layer: fix the id now, before redaction
            // changes the messages it is derived from, so the output phase finds the state.
            ex.conversation_id = conv.clone();
        }
        let mut verdicts = Vec::new();
        let mut edits = Vec::new();
        let mut captures: Vec<(String, String)> = Vec::new();
        let mut metadata: Vec<(String, String)> = Vec::new();
        let mut strip_tools: Vec<String> = Vec::new();
        let mut text_edits: Vec<(usize, Slot, String)> = Vec::new();
        {
            let req = &ex.request;
            let texts = collect_request(req, caller.as_deref(), self.scanner(), self.input_mask());
            for (name, pol) in self.chain().iter().zip(self.policies()) {
                match pol {
                    CompiledPolicy::Detector(d) if d.direction.input => {
                        verdicts.push(detector_verdict(name, d, Phase::Input, &texts, &mut edits));
                    }
                    CompiledPolicy::Detector(_) | CompiledPolicy::Quality(_) => {}
                    CompiledPolicy::AuditLogger(a) => {
                        for (k, v) in &a.tags {
                            metadata.push((format!("tag.{k}"), v.clone()));
                        }
                        for f in &a.capture_fields {
                            captures.push((format!("capture.{f}"), f.clone()));
                        }
                        verdicts.push(Verdict::new(
                            name,
                            Phase::Input,
                            Decision::Allow,
                            "exchange recorded in the audit chain",
                        ));
                    }
                    CompiledPolicy::Budget => verdicts.push(Verdict::new(
                        name,
                        Phase::Input,
                        Decision::Allow,
                        "budgets and rate limits are enforced by the cost layer",
                    )),
                    CompiledPolicy::Oversight => verdicts.push(Verdict::new(
                        name,
                        Phase::Input,
                        Decision::Allow,
                        "no approval required by the chain",
                    )),
                    CompiledPolicy::Firewall(fw) => {
                        verdicts.push(self.firewall_input(name, fw, ex, &mut strip_tools));
                    }
                }
            }
            // Rules.
            let mut subjects = Vec::new();
            let workflow = ex.identity.workflow.as_deref();
            let role = ex.identity.role.as_deref();
            let counted: Vec<Vec<(&str, &str)>> = texts
                .iter()
                .map(|t| self.counted(t, Phase::Input))
                .collect();
            subjects.push(Subject {
                action: Some(ActionType::Chat),
                agent: caller.as_deref(),
                role,
                workflow,
                model: &req.model,
                texts: texts
                    .iter()
                    .map(|t| Cow::Borrowed(t.text.as_ref()))
                    .collect(),
                findings: counted.iter().flatten().copied().collect(),
                location: "request".to_owned(),
                ..Subject::default()
            });
            for (i, m) in req.messages.iter().enumerate() {
                let of_msg: Vec<usize> =
                    (0..texts.len()).filter(|&ti| texts[ti].msg == i).collect();
                if texts.iter().any(|t| t.msg == i && t.agent_message) {
                    subjects.push(Subject {
                        action: Some(ActionType::AgentMessage),
                        agent: caller.as_deref(),
                        role,
                        workflow,
                        model: &req.model,
                        sender: m.name.as_deref(),
                        recipient: caller.as_deref(),
                        texts: of_msg
                            .iter()
                            .filter(|&&ti| !matches!(texts[ti].slot, Slot::ToolArgs(_)))
                            .map(|&ti| Cow::Borrowed(texts[ti].text.as_ref()))
                            .collect(),
                        findings: of_msg.iter().flat_map(|&ti| counted[ti].clone()).collect(),
                        location: format!("messages[{i}]"),
                        ..Subject::default()
                    });
                }
            }
            let parsed: Vec<(usize, usize, serde_json::Value)> = req
                .messages
                .iter()
                .enumerate()
                .flat_map(|(i, m)| {
                    m.tool_calls
                        .as_deref()
                        .unwrap_or(&[])
                        .iter()
                        .enumerate()
                        .map(move |(k, c)| (i, k, parse_args(&c.function.arguments)))
                })
                .collect();
            for (i, k, args) in &parsed {
                let m = &req.messages[*i];
                let Some(call) = m.tool_calls.as_ref().and_then(|c| c.get(*k)) else {
                    continue;
                };
                let ti = texts
                    .iter()
                    .position(|t| t.msg == *i && t.slot == Slot::ToolArgs(*k));
                subjects.push(Subject {
                    action: Some(ActionType::ToolCall),
                    agent: caller.as_deref(),
                    role,
                    workflow,
                    model: &req.model,
                    tool_name: Some(&call.function.name),
                    tool_category: self.tool_category(&call.function.name),
                    arguments: Some(args),
                    sender: m.name.as_deref(),
                    recipient: None,
                    texts: vec![Cow::Borrowed(call.function.arguments.as_str())],
                    findings: ti.map(|ti| counted[ti].clone()).unwrap_or_default(),
                    location: format!("messages[{i}].tool_calls[{k}]"),
                });
            }
            self.rule_verdicts(Phase::Input, &subjects, &mut verdicts, &mut captures);

            // Redaction edits (computed while the request is borrowed).
            if !edits.is_empty() {
                state.with_maps(&conv, |restorable, other| {
                    for (ti, t) in texts.iter().enumerate() {
                        let mine: Vec<&Edit> = edits.iter().filter(|e| e.text == ti).collect();
                        if mine.is_empty() {
                            continue;
                        }
                        let new = apply(&t.text, &mine, restorable, other, None);
                        if new != t.text {
                            text_edits.push((t.msg, t.slot, new));
                        }
                    }
                });
            }
        }
        for (msg, slot, new) in text_edits {
            set_request_text(&mut ex.request, msg, slot, new);
            ex.request_modified = true;
        }
        if !strip_tools.is_empty() {
            if let Some(tools) = ex.request.tools.as_mut() {
                tools.retain(|t| !strip_tools.contains(&t.function.name));
                if tools.is_empty() {
                    ex.request.tools = None;
                    ex.request.tool_choice = None;
                }
            }
            ex.request_modified = true;
        }
        for (k, v) in metadata {
            ex.metadata.insert(k, v);
        }
        for (k, field) in captures {
            if let Some(v) = capture(ex, &field) {
                ex.metadata.insert(k, v);
            }
        }
        ex.verdicts.extend(verdicts);
    }

    fn firewall_input(
        &self,
        name: &str,
        fw: &FirewallPolicy,
        ex: &Exchange,
        strip: &mut Vec<String>,
    ) -> Verdict {
        let agent = ex.identity.agent.as_deref();
        let role = ex.identity.role.as_deref();
        if let Some(max) = fw.max_message_chars {
            for (i, m) in ex.request.messages.iter().enumerate() {
                let n = m.text().chars().count() as u64;
                if n > max {
                    return Verdict::new(
                        name,
                        Phase::Input,
                        Decision::Block,
                        format!(
                            "messages[{i}] has {n} characters, more than max_message_chars {max}"
                        ),
                    );
                }
            }
        }
        let denied: Vec<String> = ex
            .request
            .tools
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|t| t.function.name.clone())
            .filter(|t| !tool_allowed(fw, agent, role, t))
            .collect();
        if denied.is_empty() {
            return Verdict::new(
                name,
                Phase::Input,
                Decision::Allow,
                "all offered tools are allowed",
            );
        }
        let who = agent.unwrap_or("anonymous");
        if fw.block_on_violation {
            Verdict::new(
                name,
                Phase::Input,
                Decision::Block,
                format!("tools not allowed for agent `{who}`: {}", denied.join(", ")),
            )
        } else {
            let v = Verdict::new(
                name,
                Phase::Input,
                Decision::Redact,
                format!(
                    "removed tools not allowed for agent `{who}`: {}",
                    denied.join(", ")
                ),
            );
            strip.extend(denied);
            v
        }
    }

    /// Output phase: verdicts on the response; redaction and placeholder restore.
    pub(crate) fn run_output(
        &self,
        ex: &mut Exchange,
        response: &mut ChatResponse,
        state: &PolicyState,
    ) {
        let caller = ex.identity.agent.clone();
        let conv = conversation_key(ex);
        let restore_map = if self.restores() {
            state.restorable_map(&conv)
        } else {
            None
        };
        let mut verdicts = Vec::new();
        let mut edits = Vec::new();
        let mut captures = Vec::new();
        let mut text_edits: Vec<(usize, Slot, String)> = Vec::new();
        let mut strip_calls: Vec<(usize, usize, String)> = Vec::new();
        {
            let resp = &*response;
            let texts = collect_response(resp, self.scanner(), self.output_mask());
            for (name, pol) in self.chain().iter().zip(self.policies()) {
                match pol {
                    CompiledPolicy::Detector(d) if d.direction.output => {
                        verdicts.push(detector_verdict(name, d, Phase::Output, &texts, &mut edits));
                    }
                    CompiledPolicy::Quality(q) => {
                        let (score, signals) = crate::quality::score(&ex.request, resp, &q.weights);
                        let below = score < q.threshold;
                        let decision = if below { q.action } else { Decision::Allow };
                        let detail: Vec<String> = signals
                            .iter()
                            .map(|s| format!("{} -{:.2} ({})", s.name, s.weight, s.detail))
                            .collect();
                        let reason = if detail.is_empty() {
                            format!(
                                "quality {score:.2} >= threshold {:.2}; no signals",
                                q.threshold
                            )
                        } else {
                            format!(
                                "quality {score:.2} {} threshold {:.2}: {}",
                                if below { "<" } else { ">=" },
                                q.threshold,
                                detail.join("; ")
                            )
                        };
                        let mut v = Verdict::new(name, Phase::Output, decision, reason);
                        v.score = Some((score * 1000.0).round() / 1000.0);
                        verdicts.push(v);
                    }
                    CompiledPolicy::Firewall(fw) => {
                        let agent = caller.as_deref();
                        let role = ex.identity.role.as_deref();
                        let mut denied = Vec::new();
                        for (i, c) in resp.choices.iter().enumerate() {
                            for (k, call) in c
                                .message
                                .tool_calls
                                .as_deref()
                                .unwrap_or(&[])
                                .iter()
                                .enumerate()
                            {
                                if !tool_allowed(fw, agent, role, &call.function.name) {
                                    denied.push((i, k, call.function.name.clone()));
                                }
                            }
                        }
                        let who = agent.unwrap_or("anonymous");
                        let names: Vec<&str> = denied.iter().map(|d| d.2.as_str()).collect();
                        let v = if denied.is_empty() {
                            Verdict::new(
                                name,
                                Phase::Output,
                                Decision::Allow,
                                "no forbidden tool calls",
                            )
                        } else if fw.block_on_violation {
                            Verdict::new(
                                name,
                                Phase::Output,
                                Decision::Block,
                                format!(
                                    "tool calls not allowed for agent `{who}`: {}",
                                    names.join(", ")
                                ),
                            )
                        } else {
                            Verdict::new(
                                name,
                                Phase::Output,
                                Decision::Redact,
                                format!(
                                    "removed tool calls not allowed for agent `{who}`: {}",
                                    names.join(", ")
                                ),
                            )
                        };
                        if !fw.block_on_violation {
                            strip_calls.extend(denied);
                        }
                        verdicts.push(v);
                    }
                    _ => {}
                }
            }
            // Rules over the response's tool calls (and its content for `phase: output`).
            let counted: Vec<Vec<(&str, &str)>> = texts
                .iter()
                .map(|t| self.counted(t, Phase::Output))
                .collect();
            let role = ex.identity.role.as_deref();
            let workflow = ex.identity.workflow.as_deref();
            let model = ex.request.model.as_str();
            let mut subjects = vec![Subject {
                action: Some(ActionType::Chat),
                agent: caller.as_deref(),
                role,
                workflow,
                model,
                texts: texts
                    .iter()
                    .filter(|t| !matches!(t.slot, Slot::ToolArgs(_)))
                    .map(|t| Cow::Borrowed(t.text.as_ref()))
                    .collect(),
                findings: counted.iter().flatten().copied().collect(),
                location: "response".to_owned(),
                ..Subject::default()
            }];
            let parsed: Vec<(usize, usize, serde_json::Value)> = resp
                .choices
                .iter()
                .enumerate()
                .flat_map(|(i, c)| {
                    c.message
                        .tool_calls
                        .as_deref()
                        .unwrap_or(&[])
                        .iter()
                        .enumerate()
                        .map(move |(k, call)| (i, k, parse_args(&call.function.arguments)))
                })
                .collect();
            for (i, k, args) in &parsed {
                let Some(call) = resp.choices[*i]
                    .message
                    .tool_calls
                    .as_ref()
                    .and_then(|c| c.get(*k))
                else {
                    continue;
                };
                let ti = texts
                    .iter()
                    .position(|t| t.msg == *i && t.slot == Slot::ToolArgs(*k));
                subjects.push(Subject {
                    action: Some(ActionType::ToolCall),
                    agent: caller.as_deref(),
                    role,
                    workflow,
                    model,
                    tool_name: Some(&call.function.name),
                    tool_category: self.tool_category(&call.function.name),
                    arguments: Some(args),
                    sender: caller.as_deref(),
                    recipient: None,
                    texts: vec![Cow::Borrowed(call.function.arguments.as_str())],
                    findings: ti.map(|ti| counted[ti].clone()).unwrap_or_default(),
                    location: format!("choices[{i}].message.tool_calls[{k}]"),
                });
            }
            let allowed =
                self.rule_verdicts(Phase::Output, &subjects, &mut verdicts, &mut captures);
            let default = self.settings.default_decision;
            if default != Decision::Allow {
                for (si, s) in subjects.iter().enumerate() {
                    let Some(tool) = s.tool_name else { continue };
                    if allowed[si] || self.tool_category(tool).is_some() {
                        continue;
                    }
                    let mut v = Verdict::new(
                        "default_decision",
                        Phase::Output,
                        default,
                        format!(
                            "tool `{tool}` at {} is not declared in `tools` and no rule allows it",
                            s.location
                        ),
                    );
                    v.rule = None;
                    verdicts.push(v);
                }
            }
            // Redaction of the response, then placeholder restore around it.
            let mut scratch_r = PlaceholderMap::new();
            let mut scratch_o = PlaceholderMap::new();
            for (ti, t) in texts.iter().enumerate() {
                let mine: Vec<&Edit> = edits.iter().filter(|e| e.text == ti).collect();
                if mine.is_empty() && restore_map.is_none() {
                    continue;
                }
                let new = apply(
                    &t.text,
                    &mine,
                    &mut scratch_r,
                    &mut scratch_o,
                    restore_map.as_ref(),
                );
                if new != t.text {
                    text_edits.push((t.msg, t.slot, new));
                }
            }
        }
        let mut modified = false;
        for (choice, slot, new) in text_edits {
            if let Some(c) = response.choices.get_mut(choice) {
                set_message_text(&mut c.message, slot, new);
                modified = true;
            }
        }
        // Strip forbidden calls, last index first.
        strip_calls.sort_by_key(|c| std::cmp::Reverse((c.0, c.1)));
        for (i, k, name) in strip_calls {
            if let Some(c) = response.choices.get_mut(i) {
                if let Some(calls) = c.message.tool_calls.as_mut() {
                    if k < calls.len() {
                        calls.remove(k);
                        modified = true;
                    }
                    if calls.is_empty() {
                        c.message.tool_calls = None;
                        if c.finish_reason.as_deref() == Some("tool_calls") {
                            c.finish_reason = Some("stop".to_owned());
                        }
                    }
                }
                let note = format!(
                    "[palisade] removed a call to tool `{name}`: not allowed for this agent."
                );
                let text = match c.message.content.take() {
                    Some(Content::Text(s)) if !s.is_empty() => format!("{s}\n{note}"),
                    Some(other) => {
                        c.message.content = Some(other);
                        continue;
                    }
                    _ => note,
                };
                c.message.content = Some(Content::Text(text));
            }
        }
        if modified {
            ex.metadata
                .insert("response_modified".to_owned(), "true".to_owned());
        }
        for (k, field) in captures {
            if let Some(v) = capture(ex, &field) {
                ex.metadata.insert(k, v);
            }
        }
        ex.verdicts.extend(verdicts);
    }
}

/// Result of evaluating the pack's detector policies on one standalone text.
pub(crate) struct TextVerdict {
    /// Findings that count under the pack, with the policy that counted them.
    pub findings: Vec<(String, Finding)>,
    /// Most severe action of the triggered policies.
    pub decision: Decision,
    /// The text after the redacting policies' edits.
    pub redacted: String,
}

impl CompiledPack {
    /// Runs the pack's detector policies on `text` sitting on `surface` (for `palisade scan`).
    pub(crate) fn evaluate_text(&self, text: &str, surface: Surface) -> TextVerdict {
        let mut mask = self.input_mask() | self.output_mask();
        if mask == DetectorMask::NONE {
            mask = DetectorMask::ALL;
        }
        let scanned = scan_one(
            self.scanner(),
            mask,
            surface,
            0,
            Slot::Content,
            "text".to_owned(),
            Cow::Borrowed(text),
            surface == Surface::AgentMessage,
        );
        let mut findings = Vec::new();
        let mut decision = Decision::Allow;
        let mut edits = Vec::new();
        for (name, pol) in self.chain().iter().zip(self.policies()) {
            let CompiledPolicy::Detector(d) = pol else {
                continue;
            };
            let (hits, _) = triggered(d, &scanned);
            if hits.is_empty() {
                continue;
            }
            decision = decision.max(d.action);
            for f in hits {
                findings.push((name.clone(), f.clone()));
                if d.action == Decision::Redact {
                    edits.push(Edit {
                        text: 0,
                        finding: f.clone(),
                        strategy: d.strategy_for(f.kind),
                        restorable: false,
                    });
                }
            }
        }
        findings.sort_by_key(|(_, f)| (f.start, f.end));
        let refs: Vec<&Edit> = edits.iter().collect();
        let redacted = if refs.is_empty() {
            text.to_owned()
        } else {
            let mut a = PlaceholderMap::new();
            let mut b = PlaceholderMap::new();
            apply(text, &refs, &mut a, &mut b, None)
        };
        TextVerdict {
            findings,
            decision,
            redacted,
        }
    }
}
