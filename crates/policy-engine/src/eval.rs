//! Chain evaluation on the request (input phase) and on the response (output phase).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use detectors::redact::{PlaceholderMap, Strategy, redact, resolve_overlaps};
use detectors::{
    DetectorConfig, DetectorKind, DetectorMask, DetectorSet, Finding, ScanContext, Surface,
};
use exchange::{
    ChatRequest, ChatResponse, Content, Decision, Exchange, FindingRecord, Message, Phase, Role,
    Verdict,
};
use sha2::{Digest, Sha256};

use crate::approval::ApprovalNeed;
use crate::pack::CompiledPack;
use crate::policies::{CompiledPolicy, DetectorPolicy, FirewallPolicy};
use crate::rules::{ActionType, Detail, RulePhase, Subject};
use crate::scan_cache::CachedScanner;
use crate::state::PolicyState;
use crate::taint::{Provenance, TaintHit, TaintSource};

/// Something that scans text: the real [`DetectorSet`], or a fake in tests.
pub(crate) trait Scanner: Send + Sync {
    fn scan(&self, text: &str, ctx: &ScanContext) -> Vec<Finding>;
}

impl Scanner for DetectorSet {
    fn scan(&self, text: &str, ctx: &ScanContext) -> Vec<Finding> {
        DetectorSet::scan(self, text, ctx)
    }
}

/// A [`DetectorSet`] compiled on the first scan (packs that enforce nothing never build it).
pub(crate) struct LazyScanner {
    config: DetectorConfig,
    set: std::sync::OnceLock<Option<DetectorSet>>,
}

impl LazyScanner {
    pub(crate) fn new(config: DetectorConfig) -> LazyScanner {
        LazyScanner {
            config,
            set: std::sync::OnceLock::new(),
        }
    }
}

impl Scanner for LazyScanner {
    fn scan(&self, text: &str, ctx: &ScanContext) -> Vec<Finding> {
        // A lazy scanner belongs to a pack with no policy and no rule, so no decision rests
        // on its findings; its configuration names only entities and categories the compiler
        // already validated, so building cannot fail short of a bug in a pattern.
        let set = self.set.get_or_init(|| DetectorSet::new(&self.config).ok());
        match set {
            Some(set) => set.scan(text, ctx),
            None => Vec::new(),
        }
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
pub(crate) struct Scanned<'a> {
    /// Message index (input) or choice index (output).
    msg: usize,
    slot: Slot,
    location: Cow<'static, str>,
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
            // AutoGen names the human's task message `user`: that is a user prompt.
            Some("user") if m.role == Role::User => (Surface::UserPrompt, false),
            Some(n) if Some(n) != caller => (Surface::AgentMessage, true),
            _ => (Surface::UserPrompt, false),
        },
    }
}

/// Locations of the first messages and choices, formatted once (formatting them anew for
/// every message of every turn showed in profiles).
const TABLED_LOCATIONS: usize = 128;

/// `messages[i].content`, or `choices[i].message.content` when `choice`.
fn content_location(i: usize, choice: bool) -> Cow<'static, str> {
    fn make(i: usize, choice: bool) -> String {
        if choice {
            format!("choices[{i}].message.content")
        } else {
            format!("messages[{i}].content")
        }
    }
    static TABLES: std::sync::LazyLock<[Vec<String>; 2]> = std::sync::LazyLock::new(|| {
        [false, true].map(|choice| (0..TABLED_LOCATIONS).map(|i| make(i, choice)).collect())
    });
    match TABLES[usize::from(choice)].get(i) {
        Some(s) => Cow::Borrowed(s.as_str()),
        None => Cow::Owned(make(i, choice)),
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
                content_location(i, false),
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
                            Cow::Owned(format!("messages[{i}].content[{j}].text")),
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
                Cow::Owned(format!("messages[{i}].tool_calls[{k}].function.arguments")),
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
                content_location(i, true),
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
                            Cow::Owned(format!("choices[{i}].message.content[{j}].text")),
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
                Cow::Owned(format!(
                    "choices[{i}].message.tool_calls[{k}].function.arguments"
                )),
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
    location: Cow<'static, str>,
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
pub(crate) struct Edit {
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

/// `{:.2}` of a score, without the float formatter on the hot path (it takes the slow exact
/// path for two decimals). A score is in [0, 1]: `x × 100` is within one rounding of the
/// exact product, so away from a tie (`… .5`) rounding it gives the digits `{:.2}` prints
/// (checked against it in the tests). Near a tie, and for other values, `{:.2}` itself.
struct Fixed2(f64);

impl From<f32> for Fixed2 {
    fn from(x: f32) -> Fixed2 {
        Fixed2(f64::from(x))
    }
}

impl std::fmt::Display for Fixed2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let x = self.0;
        let h = x * 100.0;
        if !(0.0..=1.0).contains(&x) || (h - h.floor() - 0.5).abs() < 1e-6 {
            return write!(f, "{x:.2}");
        }
        let hundredths = h.round() as u32;
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

pub(crate) fn detector_verdict(
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
                "injection score {} >= threshold {} ({}) in {}; {}",
                Fixed2::from(best),
                Fixed2::from(pol.threshold),
                kinds.join(", "),
                locations.join(", "),
                verb(decision)
            )
        } else {
            // Every turn gets this reason; `write!` into a sized string is cheaper than
            // `format!`.
            let mut r = String::with_capacity(48);
            let _ = write!(
                r,
                "injection score {} below threshold {}",
                Fixed2::from(best),
                Fixed2::from(pol.threshold)
            );
            r
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
        let mut r = String::with_capacity(det.len() + 12);
        r.push_str("no ");
        r.push_str(det);
        r.push_str(" findings");
        r
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

pub(crate) fn tool_allowed(
    fw: &FirewallPolicy,
    agent: Option<&str>,
    role: Option<&str>,
    tool: &str,
) -> bool {
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

/// A standalone scanned text (tool-execution requests).
pub(crate) fn scanned_text<'a>(
    text: &'a str,
    findings: Vec<Finding>,
    location: &str,
) -> Scanned<'a> {
    Scanned {
        msg: 0,
        slot: Slot::ToolArgs(0),
        location: Cow::Owned(location.to_owned()),
        text: Cow::Borrowed(text),
        findings,
        agent_message: false,
    }
}

/// A response holding one tool call (so response checks can run on a tool execution).
pub(crate) fn single_call_response(tool: &str, args: &str) -> ChatResponse {
    ChatResponse {
        id: String::new(),
        object: "chat.completion".to_owned(),
        created: 0,
        model: String::new(),
        choices: vec![exchange::Choice {
            index: 0,
            message: Message {
                role: Role::Assistant,
                content: None,
                name: None,
                tool_calls: Some(vec![exchange::ToolCall {
                    id: String::new(),
                    kind: "function".to_owned(),
                    function: exchange::FunctionCall {
                        name: tool.to_owned(),
                        arguments: args.to_owned(),
                    },
                }]),
                tool_call_id: None,
                extra: Default::default(),
            },
            finish_reason: None,
            extra: Default::default(),
        }],
        usage: None,
        extra: Default::default(),
    }
}

/// The exact message, for approval requests.
pub(crate) fn message_detail(m: &Message) -> serde_json::Value {
    let mut v = serde_json::json!({"role": m.role.as_str(), "content": m.text()});
    if let Some(n) = &m.name {
        v["name"] = serde_json::Value::String(n.clone());
    }
    v
}

/// The exact tool call, for approval requests.
pub(crate) fn call_detail(name: &str, args: &serde_json::Value, id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "tool": name, "arguments": args})
}

/// `EMAIL_ADDRESS from tool_output messages[3].content (tool `lookup`, event …) to `post` at …`.
fn taint_description(s: &Subject<'_>, h: &TaintHit) -> String {
    let p = &h.provenance;
    let origin = match (&p.origin, p.source) {
        (Some(o), TaintSource::AgentMessage) => format!(", agent `{o}`"),
        (Some(o), _) => format!(", tool `{o}`"),
        (None, _) => String::new(),
    };
    format!(
        "{} from {} at {}{} (event {}) in the arguments of `{}`{} at {}",
        h.kind,
        p.source.as_str(),
        p.location,
        origin,
        p.event,
        s.tool_name.unwrap_or("?"),
        s.tool_category
            .filter(|c| !c.is_empty())
            .map(|c| format!(" ({c})"))
            .unwrap_or_default(),
        s.location
    )
}

/// Taint hits of a tool call's arguments in the conversation's state: values found by the
/// detectors in the raw arguments (offsets into them) and in their decoded strings, URLs,
/// and copied passages. `restored` is the arguments text with placeholders put back
/// (output phase, `restore: true`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_taint(
    scanner: &dyn Scanner,
    state: &PolicyState,
    conv: &str,
    args_text: &str,
    findings: &[Finding],
    args: &serde_json::Value,
    restored: Option<&str>,
    skip: impl Fn(&Provenance) -> bool,
) -> Vec<TaintHit> {
    let scan = |t: &str| {
        scanner.scan(
            t,
            &ScanContext {
                surface: Surface::ToolArguments,
                detectors: DetectorMask::PII | DetectorMask::SECRETS,
            },
        )
    };
    let decode = |v: &serde_json::Value, raw: &str| {
        let mut d = String::new();
        crate::taint::json_strings(v, &mut d);
        if d.is_empty() { raw.to_owned() } else { d }
    };
    let decoded = decode(args, args_text);
    let decoded_findings = scan(&decoded);
    let restored = restored.map(|r| {
        let v = serde_json::from_str::<serde_json::Value>(r).unwrap_or(serde_json::Value::Null);
        let d = decode(&v, r);
        let f = scan(&d);
        (d, f)
    });
    state.with_entry(conv, |e| {
        if e.taint.is_empty() {
            return Vec::new();
        }
        let mut hits = e.taint.check(args_text, findings, "", &skip);
        let mut extra = e.taint.check(&decoded, &decoded_findings, &decoded, &skip);
        if let Some((d, f)) = &restored {
            extra.extend(e.taint.check(d, f, d, &skip));
        }
        for h in extra {
            if !hits
                .iter()
                .any(|x| x.kind == h.kind && std::sync::Arc::ptr_eq(&x.provenance, &h.provenance))
            {
                // Offsets of decoded or restored text do not point into the raw arguments.
                hits.push(TaintHit {
                    start: 0,
                    end: 0,
                    ..h
                });
            }
        }
        hits
    })
}

/// Checks one call of `tool` against the firewall's `tool_limits` and, when `key` (which
/// makes counting idempotent) is given and no limit is exceeded, counts it. Returns the
/// exceeded limits, described.
pub(crate) fn tool_limit_check(
    fw: &FirewallPolicy,
    state: &PolicyState,
    conv: &str,
    agent: &str,
    tool: &str,
    key: Option<&str>,
    now: std::time::Instant,
) -> Vec<String> {
    let limits: Vec<&crate::policies::ToolLimit> = crate::firewall::limits_for(fw, tool).collect();
    if limits.is_empty() {
        return Vec::new();
    }
    let mut exceeded = Vec::new();
    let mut to_count = Vec::new();
    for l in &limits {
        let pattern = l.tool.0.as_str();
        let k = key.map(|k| format!("{k}:{pattern}"));
        let (seen, count) = state.with_entry(conv, |e| {
            (
                k.as_ref().is_some_and(|k| e.counted_calls.contains(k)),
                e.tool_calls.get(pattern).copied().unwrap_or(0),
            )
        });
        if seen {
            continue;
        }
        if let Some(max) = l.per_conversation {
            if count + 1 > max {
                exceeded.push(format!(
                    "`{tool}` would be call {} of `{pattern}` in this conversation, per_conversation {max}",
                    count + 1
                ));
            }
        }
        if let Some(max) = l.per_minute {
            let n = state.calls_in_last_minute(agent, pattern, now, true);
            if n > max {
                exceeded.push(format!(
                    "`{tool}` would be call {n} of `{pattern}` by `{agent}` in the last minute, per_minute {max}"
                ));
            }
        }
        to_count.push((pattern, k));
    }
    if exceeded.is_empty() {
        for (pattern, k) in to_count {
            let Some(k) = k else { continue };
            state.with_entry(conv, |e| {
                if e.counted_calls.len() >= crate::state::MAX_CALL_IDS_PER_CONVERSATION {
                    e.counted_calls.clear();
                }
                e.counted_calls.insert(k);
                *e.tool_calls.entry(pattern.to_owned()).or_insert(0) += 1;
            });
            state.calls_in_last_minute(agent, pattern, now, false);
        }
    }
    exceeded
}

/// The firewall's conversation checks on the request: turns, flooding, impersonation.
fn firewall_checks_input(
    name: &str,
    fw: &FirewallPolicy,
    ex: &Exchange,
    turns: u64,
    impersonation: &[(FindingRecord, String)],
    verdicts: &mut Vec<Verdict>,
) {
    if let Some(max) = fw.max_turns_per_conversation {
        if turns > max {
            verdicts.push(Verdict::new(
                name,
                Phase::Input,
                Decision::Block,
                format!(
                    "conversation has reached {turns} turns, more than max_turns_per_conversation {max}"
                ),
            ));
        }
    }
    if let Some(n) = fw.flood_repeats {
        if let Some(idx) = crate::firewall::flooding(ex, n) {
            let at: Vec<String> = idx.iter().map(|i| format!("messages[{i}]")).collect();
            let mut v = Verdict::new(
                name,
                Phase::Input,
                Decision::Block,
                format!(
                    "flooding: the same message {} times ({}), flood_repeats {n}",
                    idx.len(),
                    at.join(", ")
                ),
            );
            v.findings = idx
                .iter()
                .map(|i| FindingRecord {
                    detector: "firewall".to_owned(),
                    kind: "flooding".to_owned(),
                    rule: "firewall.flood_repeats".to_owned(),
                    location: format!("messages[{i}].content"),
                    start: 0,
                    end: 0,
                    score: 1.0,
                })
                .collect();
            verdicts.push(v);
        }
    }
    if !impersonation.is_empty() {
        let reasons: Vec<&str> = impersonation.iter().map(|(_, r)| r.as_str()).collect();
        let decision = if fw.log_impersonation {
            Decision::Log
        } else {
            Decision::Block
        };
        let mut v = Verdict::new(
            name,
            Phase::Input,
            decision,
            format!("impersonation: {}", reasons.join("; ")),
        );
        v.findings = impersonation.iter().map(|(f, _)| f.clone()).collect();
        verdicts.push(v);
    }
}

impl CompiledPack {
    fn detector_policies(&self) -> impl Iterator<Item = &DetectorPolicy> {
        self.policies().iter().filter_map(|p| match p {
            CompiledPolicy::Detector(d) => Some(d),
            _ => None,
        })
    }

    /// (detector, kind) of the findings of a text that count for rules' `finding:`.
    pub(crate) fn counted(
        &self,
        t: &Scanned<'_>,
        phase: Phase,
    ) -> Vec<(&'static str, &'static str)> {
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

    pub(crate) fn rule_verdicts(
        &self,
        phase: Phase,
        subjects: &[Subject<'_>],
        verdicts: &mut Vec<Verdict>,
        captures: &mut Vec<(String, String)>,
        needs: &mut Vec<ApprovalNeed>,
    ) -> Vec<bool> {
        let mut allowed = vec![false; subjects.len()];
        for rule in self.rules() {
            let mut matched = Vec::new();
            let mut evidence: Vec<(&Subject<'_>, &TaintHit)> = Vec::new();
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
                    for h in rule.condition.taint_evidence(s) {
                        evidence.push((s, h));
                    }
                    if let Some(a) = rule.action.as_ref().filter(|a| a.require_approval) {
                        if rule.decision == Decision::Constrain {
                            needs.push(ApprovalNeed {
                                rule: rule.name.clone(),
                                reason: rule.reason.clone().unwrap_or_else(|| {
                                    format!("rule `{}` matched {}", rule.name, s.location)
                                }),
                                location: s.location.clone(),
                                subject: s.detail.to_value(),
                                timeout: std::time::Duration::from_secs(
                                    a.timeout_seconds
                                        .unwrap_or(self.oversight().timeout_seconds),
                                ),
                                allow_on_timeout: a.allow_on_timeout,
                            });
                        }
                    }
                }
            }
            if matched.is_empty() {
                continue;
            }
            let mut reason = match &rule.reason {
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
            let mut findings = Vec::new();
            if !evidence.is_empty() {
                let described: Vec<String> = evidence
                    .iter()
                    .map(|(s, h)| taint_description(s, h))
                    .collect();
                reason.push_str(&format!(" [taint: {}]", described.join("; ")));
                for (s, h) in &evidence {
                    findings.push(FindingRecord {
                        detector: "taint".to_owned(),
                        kind: h.kind.clone(),
                        rule: format!("taint.{}", h.provenance.source.as_str()),
                        location: format!("{}.function.arguments", s.location),
                        start: h.start,
                        end: h.end,
                        score: 1.0,
                    });
                }
            }
            let mut v = Verdict::new("rule", phase, rule.decision, reason);
            v.rule = Some(rule.name.clone());
            v.findings = findings;
            verdicts.push(v);
            for f in &rule.capture_fields {
                captures.push((format!("rule.{}.{f}", rule.name), f.clone()));
            }
        }
        allowed
    }

    /// Whether any rule uses a `taint` condition (then sources are fingerprinted).
    pub(crate) fn uses_taint(&self) -> bool {
        self.rules().iter().any(|r| r.condition.uses_taint())
    }

    /// The pack's scanner through the findings cache of `state`. The cache key names the
    /// detectors by the pack text's digest (the detectors are compiled from it alone) and
    /// the scanner's address (distinct for packs alive at once).
    fn cached_scanner<'s>(&'s self, state: &'s PolicyState) -> CachedScanner<'s> {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&self.meta.content_sha256, &mut h);
        let addr = std::ptr::from_ref(self.scanner()).cast::<()>().addr();
        std::hash::Hasher::write_usize(&mut h, addr);
        CachedScanner {
            inner: self.scanner(),
            cache: state.scan_cache(),
            identity: std::hash::Hasher::finish(&h),
        }
    }

    /// Input phase: pushes verdicts and applies redaction / tool stripping to `ex.request`;
    /// returns the approvals the matching `CONSTRAIN` rules require.
    pub(crate) fn run_input(&self, ex: &mut Exchange, state: &PolicyState) -> Vec<ApprovalNeed> {
        let caller = ex.identity.agent.clone();
        let conv = conversation_key(ex);
        if ex.conversation_id.is_empty() {
            // Embedded use without an identity layer: fix the id now, before redaction
            // changes the messages it is derived from, so the output phase finds the state.
            ex.conversation_id = conv.clone();
        }
        let event = ex.id.to_string();
        let turns = state.with_entry(&conv, |e| {
            // Counted once per exchange (a shadow evaluation must not count twice).
            if e.last_turn_event != event {
                e.last_turn_event = event.clone();
                e.turns += 1;
            }
            e.turns
        });
        if let Some(a) = caller.as_deref() {
            state.touch_agent(a, &conv);
        }
        let uses_taint = self.uses_taint();
        let mut verdicts = Vec::new();
        let mut edits = Vec::new();
        let mut captures: Vec<(String, String)> = Vec::new();
        let mut metadata: Vec<(String, String)> = Vec::new();
        let mut strip_tools: Vec<String> = Vec::new();
        let mut text_edits: Vec<(usize, Slot, String)> = Vec::new();
        let mut needs = Vec::new();
        let impersonation = crate::firewall::impersonation(
            ex,
            ex.identity
                .workflow
                .as_deref()
                .and_then(|w| self.workflow_members(w)),
        );
        {
            let req = &ex.request;
            let cached = self.cached_scanner(state);
            let texts = collect_request(req, caller.as_deref(), &cached, self.input_mask());
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
                        firewall_checks_input(name, fw, ex, turns, &impersonation, &mut verdicts);
                    }
                }
            }
            // Taint sources: tool results, documents, other agents' messages with findings.
            let counted: Vec<Vec<(&str, &str)>> = texts
                .iter()
                .map(|t| self.counted(t, Phase::Input))
                .collect();
            if uses_taint {
                self.ingest_taint(ex, &texts, &counted, state, &conv);
            }
            // Rules.
            let mut subjects = Vec::new();
            let workflow = ex.identity.workflow.as_deref();
            let role = ex.identity.role.as_deref();
            let mut chat_findings: Vec<(&str, &str)> = counted.iter().flatten().copied().collect();
            if !impersonation.is_empty() {
                chat_findings.push(("identity", "impersonation"));
            }
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
                findings: chat_findings,
                location: "request".to_owned(),
                detail: req.messages.last().map_or(Detail::None, Detail::Message),
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
                        detail: Detail::Message(m),
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
                let taint = if uses_taint {
                    let findings = ti.map(|ti| texts[ti].findings.as_slice()).unwrap_or(&[]);
                    let call_id = call.id.as_str();
                    let msg = *i;
                    check_taint(
                        self.scanner(),
                        state,
                        &conv,
                        &call.function.arguments,
                        findings,
                        args,
                        None,
                        |p| {
                            p.tool_call_id.as_deref() == Some(call_id)
                                || (p.event == event && p.msg >= msg)
                        },
                    )
                } else {
                    Vec::new()
                };
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
                    taint,
                    detail: Detail::Call {
                        name: &call.function.name,
                        args,
                        id: &call.id,
                    },
                });
            }
            let allowed = self.rule_verdicts(
                Phase::Input,
                &subjects,
                &mut verdicts,
                &mut captures,
                &mut needs,
            );
            self.default_decision_verdicts(Phase::Input, &subjects, &allowed, &mut verdicts);

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
        needs
    }

    /// `default_decision` for the tool calls among `subjects` that no `ALLOW` rule matched
    /// and that are not declared under `tools:`.
    pub(crate) fn default_decision_verdicts(
        &self,
        phase: Phase,
        subjects: &[Subject<'_>],
        allowed: &[bool],
        verdicts: &mut Vec<Verdict>,
    ) {
        let default = self.settings.default_decision;
        if default == Decision::Allow {
            return;
        }
        for (si, s) in subjects.iter().enumerate() {
            let Some(tool) = s.tool_name else { continue };
            if allowed[si] || self.tool_category(tool).is_some() {
                continue;
            }
            verdicts.push(Verdict::new(
                "default_decision",
                phase,
                default,
                format!(
                    "tool `{tool}` at {} is not declared in `tools` and no rule allows it",
                    s.location
                ),
            ));
        }
    }

    /// Fingerprints the request's taint sources into the conversation's state.
    fn ingest_taint(
        &self,
        ex: &Exchange,
        texts: &[Scanned<'_>],
        counted: &[Vec<(&str, &str)>],
        state: &PolicyState,
        conv: &str,
    ) {
        let req = &ex.request;
        let event = ex.id.to_string();
        let mut sources: Vec<(usize, std::sync::Arc<Provenance>)> = Vec::new();
        for (ti, t) in texts.iter().enumerate() {
            if matches!(t.slot, Slot::ToolArgs(_)) {
                continue;
            }
            let Some(m) = req.messages.get(t.msg) else {
                continue;
            };
            let (source, origin, call_id) = match m.role {
                Role::Tool | Role::Function => {
                    let call_id = m.tool_call_id.clone();
                    let tool = call_id.as_deref().and_then(|id| {
                        req.messages[..t.msg]
                            .iter()
                            .flat_map(|m| m.tool_calls.as_deref().unwrap_or(&[]))
                            .find(|c| c.id == id)
                            .map(|c| c.function.name.clone())
                    });
                    let tool = tool.or_else(|| m.name.clone());
                    let document = tool
                        .as_deref()
                        .and_then(|n| self.tool_category(n))
                        .is_some_and(|c| c == "retrieval" || c == "document");
                    let source = if document {
                        TaintSource::Document
                    } else {
                        TaintSource::ToolOutput
                    };
                    (source, tool, call_id)
                }
                _ if t.agent_message && !counted[ti].is_empty() => {
                    (TaintSource::AgentMessage, m.name.clone(), None)
                }
                _ => continue,
            };
            sources.push((
                ti,
                std::sync::Arc::new(Provenance {
                    source,
                    location: t.location.to_string(),
                    event: event.clone(),
                    msg: t.msg,
                    origin,
                    tool_call_id: call_id,
                }),
            ));
        }
        if sources.is_empty() {
            return;
        }
        state.with_entry(conv, |e| {
            for (ti, prov) in &sources {
                e.taint.ingest(&texts[*ti].text, &texts[*ti].findings, prov);
            }
        });
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

    /// The firewall's checks on the response: the code-execution guard and tool limits.
    #[allow(clippy::too_many_arguments)]
    fn firewall_checks_output(
        &self,
        name: &str,
        fw: &FirewallPolicy,
        resp: &ChatResponse,
        agent: &str,
        conv: &str,
        event: &str,
        state: &PolicyState,
        stripped: &[(usize, usize, String, &'static str)],
        verdicts: &mut Vec<Verdict>,
        strip: &mut Vec<(usize, usize, String, &'static str)>,
    ) {
        if fw.code_guard {
            let v = self.code_guard(name, Phase::Output, resp);
            if let Some(v) = v {
                verdicts.push(v);
            }
        }
        let mut over = Vec::new();
        let now = std::time::Instant::now();
        for (i, c) in resp.choices.iter().enumerate() {
            for (k, call) in c
                .message
                .tool_calls
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                if stripped.iter().any(|s| s.0 == i && s.1 == k) {
                    continue;
                }
                state.with_entry(conv, |e| {
                    if e.emitted_calls.len() >= crate::state::MAX_CALL_IDS_PER_CONVERSATION {
                        e.emitted_calls.clear();
                    }
                    e.emitted_calls.insert(call.id.clone());
                });
                let key = format!("{event}:{i}:{k}");
                let exceeded =
                    tool_limit_check(fw, state, conv, agent, &call.function.name, Some(&key), now);
                if !exceeded.is_empty() {
                    over.push((i, k, call.function.name.clone(), exceeded.join("; ")));
                }
            }
        }
        if over.is_empty() {
            return;
        }
        let detail: Vec<&str> = over.iter().map(|o| o.3.as_str()).collect();
        if fw.block_on_violation {
            verdicts.push(Verdict::new(
                name,
                Phase::Output,
                Decision::Block,
                format!("tool call limit exceeded: {}", detail.join("; ")),
            ));
        } else {
            verdicts.push(Verdict::new(
                name,
                Phase::Output,
                Decision::Redact,
                format!("removed tool calls over their limit: {}", detail.join("; ")),
            ));
            strip.extend(
                over.into_iter()
                    .map(|(i, k, n, _)| (i, k, n, "over its call limit")),
            );
        }
    }

    /// The code-execution guard on a response: code blocks of the content and code
    /// arguments of the tool calls through the dangerous-code detector. `None` when clean.
    pub(crate) fn code_guard(
        &self,
        name: &str,
        phase: Phase,
        resp: &ChatResponse,
    ) -> Option<Verdict> {
        let scan = |text: &str, surface: Surface| {
            self.scanner().scan(
                text,
                &ScanContext {
                    surface,
                    detectors: DetectorMask::CODE,
                },
            )
        };
        let mut records = Vec::new();
        let mut kinds = BTreeSet::new();
        for (i, c) in resp.choices.iter().enumerate() {
            let text = c.message.text();
            for (s, e) in crate::firewall::code_spans(&text) {
                for f in scan(&text[s..e], Surface::AssistantOutput) {
                    kinds.insert(f.kind);
                    let mut r = record(&f, &format!("choices[{i}].message.content"));
                    r.start += s;
                    r.end += s;
                    records.push(r);
                }
            }
            for (k, call) in c
                .message
                .tool_calls
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                let all = self
                    .tool_category(&call.function.name)
                    .is_some_and(|cat| crate::firewall::CODE_CATEGORIES.contains(&cat));
                let args = parse_args(&call.function.arguments);
                for (path, code) in crate::firewall::code_arguments(&args, all) {
                    for f in scan(&code, Surface::ToolArguments) {
                        kinds.insert(f.kind);
                        records.push(record(
                            &f,
                            &format!(
                                "choices[{i}].message.tool_calls[{k}].function.arguments.{path}"
                            ),
                        ));
                    }
                }
            }
        }
        if records.is_empty() {
            return None;
        }
        let locations: BTreeSet<&str> = records.iter().map(|r| r.location.as_str()).collect();
        let kinds: Vec<&str> = kinds.into_iter().collect();
        let mut v = Verdict::new(
            name,
            phase,
            Decision::Block,
            format!(
                "code guard: dangerous code ({}) in {}",
                kinds.join(", "),
                locations.into_iter().collect::<Vec<_>>().join(", ")
            ),
        );
        v.findings = records;
        Some(v)
    }

    /// Output phase: verdicts on the response; redaction and placeholder restore.
    pub(crate) fn run_output(
        &self,
        ex: &mut Exchange,
        response: &mut ChatResponse,
        state: &PolicyState,
    ) -> Vec<ApprovalNeed> {
        let caller = ex.identity.agent.clone();
        let conv = conversation_key(ex);
        let event = ex.id.to_string();
        let uses_taint = self.uses_taint();
        let mut needs = Vec::new();
        let restore_map = if self.restores() {
            state.restorable_map(&conv)
        } else {
            None
        };
        let mut verdicts = Vec::new();
        let mut edits = Vec::new();
        let mut captures = Vec::new();
        let mut text_edits: Vec<(usize, Slot, String)> = Vec::new();
        let mut strip_calls: Vec<(usize, usize, String, &'static str)> = Vec::new();
        let mut strip_calls_extra: Vec<(usize, usize, String, &'static str)> = Vec::new();
        {
            let resp = &*response;
            let cached = self.cached_scanner(state);
            let texts = collect_response(resp, &cached, self.output_mask());
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
                            .map(|s| format!("{} -{} ({})", s.name, Fixed2(s.weight), s.detail))
                            .collect();
                        let reason = if detail.is_empty() {
                            format!(
                                "quality {} >= threshold {}; no signals",
                                Fixed2(score),
                                Fixed2(q.threshold)
                            )
                        } else {
                            format!(
                                "quality {} {} threshold {}: {}",
                                Fixed2(score),
                                if below { "<" } else { ">=" },
                                Fixed2(q.threshold),
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
                            strip_calls.extend(
                                denied
                                    .into_iter()
                                    .map(|(i, k, n)| (i, k, n, "not allowed for this agent")),
                            );
                        }
                        verdicts.push(v);
                        self.firewall_checks_output(
                            name,
                            fw,
                            resp,
                            agent.unwrap_or("anonymous"),
                            &conv,
                            &event,
                            state,
                            &strip_calls,
                            &mut verdicts,
                            &mut strip_calls_extra,
                        );
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
                detail: resp
                    .choices
                    .first()
                    .map_or(Detail::None, |c| Detail::Message(&c.message)),
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
                let taint = if uses_taint {
                    let findings = ti.map(|ti| texts[ti].findings.as_slice()).unwrap_or(&[]);
                    let restored = restore_map
                        .as_ref()
                        .map(|m| m.restore(&call.function.arguments))
                        .filter(|r| *r != call.function.arguments);
                    check_taint(
                        self.scanner(),
                        state,
                        &conv,
                        &call.function.arguments,
                        findings,
                        args,
                        restored.as_deref(),
                        |_| false,
                    )
                } else {
                    Vec::new()
                };
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
                    taint,
                    detail: Detail::Call {
                        name: &call.function.name,
                        args,
                        id: &call.id,
                    },
                });
            }
            let allowed = self.rule_verdicts(
                Phase::Output,
                &subjects,
                &mut verdicts,
                &mut captures,
                &mut needs,
            );
            self.default_decision_verdicts(Phase::Output, &subjects, &allowed, &mut verdicts);
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
        strip_calls.extend(strip_calls_extra);
        strip_calls.sort_by_key(|c| std::cmp::Reverse((c.0, c.1)));
        strip_calls.dedup_by_key(|c| (c.0, c.1));
        for (i, k, name, why) in strip_calls {
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
                let note = format!("[palisade] removed a call to tool `{name}`: {why}.");
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
        needs
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
        let mask = self.input_mask() | self.output_mask();
        if mask == DetectorMask::NONE {
            // No detector policy in the chain and no rule on findings: nothing could report
            // a finding, so nothing is scanned.
            return TextVerdict {
                findings: Vec::new(),
                decision: Decision::Allow,
                redacted: text.to_owned(),
            };
        }
        let scanned = scan_one(
            self.scanner(),
            mask,
            surface,
            0,
            Slot::Content,
            Cow::Borrowed("text"),
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

#[cfg(test)]
mod fixed2_tests {
    use super::Fixed2;

    #[test]
    fn prints_what_the_float_formatter_prints() {
        for x in [
            0.0f32,
            0.005,
            0.015,
            0.125,
            0.375,
            0.5,
            0.625,
            0.995,
            1.0,
            -0.5,
            1.5,
            f32::NAN,
        ] {
            assert_eq!(Fixed2::from(x).to_string(), format!("{x:.2}"), "{x}");
        }
        // Every 4099th f32 in [0, 1].
        let mut x = 0.0f32;
        while x <= 1.0 {
            assert_eq!(Fixed2::from(x).to_string(), format!("{x:.2}"), "{x}");
            x = f32::from_bits(x.to_bits() + 4099);
        }
        // f64 scores (quality): sums and products of weights, thousandths, ties and
        // neighbours of ties, and a sweep over the bits of [0, 1].
        let mut cases = vec![
            0.1 + 0.2,
            1.0 - 0.35 - 0.15,
            0.7 * 0.3,
            0.005,
            0.015,
            0.045,
            0.675,
        ];
        for i in 0..=1000 {
            let t = f64::from(i) / 1000.0;
            cases.extend([
                t,
                t.next_up(),
                t.next_down(),
                t + 0.005,
                (t + 0.005).next_down(),
            ]);
        }
        let mut x = 0.0f64;
        while x <= 1.0 {
            cases.push(x);
            x = f64::from_bits(x.to_bits() + (1 << 42) + 12_345);
        }
        for x in cases {
            assert_eq!(Fixed2(x).to_string(), format!("{x:.2}"), "{x:e}");
        }
    }
}
