//! Conditional rules: compiled conditions and their evaluation against one subject (the
//! chat turn, one agent message or one tool call).

use std::borrow::Cow;

use exchange::Decision;
use regex_automata::meta::Regex;
use serde_yaml::Value;

use crate::compile::Ctx;
use crate::policies::Glob;
use crate::taint::{TaintHit, TaintSource};

/// What a subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    /// The chat turn as a whole.
    Chat,
    /// One tool call (in the request history or in the response).
    ToolCall,
    /// One message written by another agent.
    AgentMessage,
}

impl ActionType {
    fn parse(s: &str) -> Option<ActionType> {
        match s {
            "chat" => Some(ActionType::Chat),
            "tool_call" => Some(ActionType::ToolCall),
            "agent_message" => Some(ActionType::AgentMessage),
            _ => None,
        }
    }

    /// The pack spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Chat => "chat",
            ActionType::ToolCall => "tool_call",
            ActionType::AgentMessage => "agent_message",
        }
    }
}

/// Which phase(s) a rule is evaluated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RulePhase {
    /// Input: the request; output: the response's tool calls (default).
    Both,
    /// Only on the request.
    Input,
    /// Only on the response (also its content, as a `chat` subject).
    Output,
}

/// `action:` of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleAction {
    /// A human must approve (`CONSTRAIN`).
    pub require_approval: bool,
    /// How long to wait for the approval, in seconds.
    pub timeout_seconds: Option<u64>,
    /// `true` when a timeout allows the turn (`on_timeout: allow`); default deny.
    pub allow_on_timeout: bool,
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    pub condition: Cond,
    pub decision: Decision,
    pub reason: Option<String>,
    pub action: Option<RuleAction>,
    pub capture_fields: Vec<String>,
    pub phase: RulePhase,
}

/// A condition tree.
#[derive(Debug)]
pub(crate) enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Pred(Pred),
}

#[derive(Debug)]
pub(crate) enum ParamTest {
    Present,
    Pattern(Regex),
    Equals(serde_json::Value),
    In(Vec<serde_json::Value>),
}

#[derive(Debug)]
pub(crate) enum Pred {
    Agent(Vec<Glob>),
    Role(Vec<Glob>),
    Workflow(Vec<Glob>),
    Action(Vec<ActionType>),
    ToolName(Vec<Glob>),
    ToolCategory(Vec<Glob>),
    Sender(Vec<Glob>),
    Recipient(Vec<Glob>),
    Model(Vec<Glob>),
    Parameter {
        path: Vec<String>,
        test: ParamTest,
    },
    Content(Regex),
    Finding(Vec<String>),
    /// Tainted data from one of `from` reaches a tool whose category matches `to`.
    Taint {
        from: Vec<TaintSource>,
        to: Vec<Glob>,
    },
}

/// What a rule is tested against.
#[derive(Debug, Default)]
pub(crate) struct Subject<'a> {
    pub action: Option<ActionType>,
    pub agent: Option<&'a str>,
    pub role: Option<&'a str>,
    pub workflow: Option<&'a str>,
    pub model: &'a str,
    pub tool_name: Option<&'a str>,
    pub tool_category: Option<&'a str>,
    pub arguments: Option<&'a serde_json::Value>,
    pub sender: Option<&'a str>,
    pub recipient: Option<&'a str>,
    pub texts: Vec<Cow<'a, str>>,
    /// (detector, kind) of the findings that count for this subject.
    pub findings: Vec<(&'a str, &'a str)>,
    /// Where the subject sits (`messages[3].tool_calls[0]`), for reasons.
    pub location: String,
    /// Tool calls: tainted data found in the arguments.
    pub taint: Vec<TaintHit>,
    /// The exact tool call or message, shown in approval requests (built only when a rule
    /// asks for an approval).
    pub detail: Detail<'a>,
}

/// What an approval request shows of its subject, built on demand.
#[derive(Debug, Default)]
pub(crate) enum Detail<'a> {
    /// Nothing.
    #[default]
    None,
    /// A message: role, content and name.
    Message(&'a exchange::Message),
    /// A tool call: id, tool and parsed arguments.
    Call {
        name: &'a str,
        args: &'a serde_json::Value,
        id: &'a str,
    },
}

impl Detail<'_> {
    /// The JSON shown in the approval request.
    pub(crate) fn to_value(&self) -> serde_json::Value {
        match self {
            Detail::None => serde_json::Value::Null,
            Detail::Message(m) => crate::eval::message_detail(m),
            Detail::Call { name, args, id } => crate::eval::call_detail(name, args, id),
        }
    }
}

const CONDITION_KEYS: [&str; 19] = [
    "agent_name",
    "role",
    "workflow",
    "action_type",
    "tool_name",
    "tool_category",
    "parameter",
    "matches_pattern",
    "equals",
    "in",
    "sender_agent",
    "recipient_agent",
    "content_matches",
    "finding",
    "taint",
    "model",
    "all",
    "any",
    "not",
];

fn names(ctx: &mut Ctx, v: &Value, path: &str) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        ctx.value_error(
                            &format!("{path}[{i}]"),
                            format!("expected a string, found {}", kind_of(other)),
                        );
                        return None;
                    }
                }
            }
            Some(out)
        }
        other => {
            ctx.value_error(
                path,
                format!(
                    "expected a string or a list of strings, found {}",
                    kind_of(other)
                ),
            );
            None
        }
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn globs(ctx: &mut Ctx, v: &Value, path: &str) -> Option<Vec<Glob>> {
    names(ctx, v, path).map(|n| n.into_iter().map(Glob).collect())
}

pub(crate) fn compile_regex(ctx: &mut Ctx, v: &Value, path: &str) -> Option<Regex> {
    let Value::String(p) = v else {
        ctx.value_error(
            path,
            format!("expected a regular expression string, found {}", kind_of(v)),
        );
        return None;
    };
    match Regex::new(p) {
        Ok(r) => Some(r),
        Err(e) => {
            let detail = e
                .syntax_error()
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string());
            let last = detail.lines().last().unwrap_or("").trim();
            let first = last.strip_prefix("error: ").unwrap_or(last).to_owned();
            ctx.value_error(path, format!("invalid regular expression: {first}"));
            None
        }
    }
}

fn yaml_to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Parses a condition mapping (fields are ANDed).
pub(crate) fn parse_condition(ctx: &mut Ctx, v: &Value, path: &str) -> Option<Cond> {
    let Value::Mapping(map) = v else {
        ctx.value_error(
            path,
            format!("expected a mapping of conditions, found {}", kind_of(v)),
        );
        return None;
    };
    let mut preds = Vec::new();
    let mut ok = true;
    let get = |k: &str| map.get(Value::String(k.to_owned()));
    for (k, val) in map {
        let Value::String(key) = k else {
            ctx.value_error(path, "condition keys must be strings".to_owned());
            ok = false;
            continue;
        };
        let kp = format!("{path}.{key}");
        let pred = match key.as_str() {
            "agent_name" => globs(ctx, val, &kp).map(Pred::Agent).map(Cond::Pred),
            "role" => globs(ctx, val, &kp).map(Pred::Role).map(Cond::Pred),
            "workflow" => globs(ctx, val, &kp).map(Pred::Workflow).map(Cond::Pred),
            "tool_name" => globs(ctx, val, &kp).map(Pred::ToolName).map(Cond::Pred),
            "tool_category" => globs(ctx, val, &kp).map(Pred::ToolCategory).map(Cond::Pred),
            "sender_agent" => globs(ctx, val, &kp).map(Pred::Sender).map(Cond::Pred),
            "recipient_agent" => globs(ctx, val, &kp).map(Pred::Recipient).map(Cond::Pred),
            "model" => globs(ctx, val, &kp).map(Pred::Model).map(Cond::Pred),
            "action_type" => names(ctx, val, &kp).and_then(|ns| {
                let mut out = Vec::new();
                for n in ns {
                    match ActionType::parse(&n) {
                        Some(a) => out.push(a),
                        None => {
                            ctx.value_error(
                                &kp,
                                format!("unknown action type `{n}` (expected one of: chat, tool_call, agent_message)"),
                            );
                            return None;
                        }
                    }
                }
                Some(Cond::Pred(Pred::Action(out)))
            }),
            "finding" => names(ctx, val, &kp).map(|ns| Cond::Pred(Pred::Finding(ns))),
            "taint" => parse_taint(ctx, val, &kp).map(Cond::Pred),
            "content_matches" => {
                compile_regex(ctx, val, &kp).map(|r| Cond::Pred(Pred::Content(r)))
            }
            "parameter" => {
                let Value::String(p) = val else {
                    ctx.value_error(&kp, format!("expected a string, found {}", kind_of(val)));
                    ok = false;
                    continue;
                };
                let segs: Vec<String> = p.split('.').map(str::to_owned).collect();
                if p.is_empty() || segs.iter().any(String::is_empty) {
                    ctx.value_error(&kp, format!("invalid parameter path `{p}`"));
                    ok = false;
                    continue;
                }
                let mut tests = Vec::new();
                if let Some(pv) = get("matches_pattern") {
                    if let Some(r) = compile_regex(ctx, pv, &format!("{path}.matches_pattern")) {
                        tests.push(ParamTest::Pattern(r));
                    } else {
                        ok = false;
                    }
                }
                if let Some(ev) = get("equals") {
                    tests.push(ParamTest::Equals(yaml_to_json(ev)));
                }
                if let Some(iv) = get("in") {
                    match iv {
                        Value::Sequence(items) => {
                            tests.push(ParamTest::In(items.iter().map(yaml_to_json).collect()));
                        }
                        other => {
                            ctx.value_error(
                                &format!("{path}.in"),
                                format!("expected a list, found {}", kind_of(other)),
                            );
                            ok = false;
                        }
                    }
                }
                if tests.is_empty() {
                    tests.push(ParamTest::Present);
                }
                let conds: Vec<Cond> = tests
                    .into_iter()
                    .map(|test| {
                        Cond::Pred(Pred::Parameter {
                            path: segs.clone(),
                            test,
                        })
                    })
                    .collect();
                Some(Cond::All(conds))
            }
            "matches_pattern" | "equals" | "in" => {
                if get("parameter").is_none() {
                    ctx.key_error(&kp, "needs `parameter` in the same condition".to_owned());
                    ok = false;
                }
                continue;
            }
            "all" | "any" => match val {
                Value::Sequence(items) if !items.is_empty() => {
                    let mut subs = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match parse_condition(ctx, item, &format!("{kp}[{i}]")) {
                            Some(c) => subs.push(c),
                            None => ok = false,
                        }
                    }
                    Some(if key == "all" { Cond::All(subs) } else { Cond::Any(subs) })
                }
                other => {
                    ctx.value_error(
                        &kp,
                        format!("expected a non-empty list of conditions, found {}", kind_of(other)),
                    );
                    None
                }
            },
            "not" => parse_condition(ctx, val, &kp).map(|c| Cond::Not(Box::new(c))),
            other => {
                ctx.key_error(
                    &kp,
                    format!(
                        "unknown condition `{other}` (expected one of: {})",
                        CONDITION_KEYS.join(", ")
                    ),
                );
                None
            }
        };
        match pred {
            Some(p) => preds.push(p),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if preds.is_empty() {
        ctx.value_error(path, "condition is empty".to_owned());
        return None;
    }
    Some(if preds.len() == 1 {
        preds.remove(0)
    } else {
        Cond::All(preds)
    })
}

/// `taint: {from: SOURCE | [SOURCE…], to: CATEGORY | [CATEGORY…]}` (both optional: any
/// source, any category), or `taint: true`.
fn parse_taint(ctx: &mut Ctx, v: &Value, path: &str) -> Option<Pred> {
    let all = || Pred::Taint {
        from: TaintSource::ALL.to_vec(),
        to: vec![Glob("*".to_owned())],
    };
    let map = match v {
        Value::Bool(true) => return Some(all()),
        Value::Mapping(m) => m,
        other => {
            ctx.value_error(
                path,
                format!(
                    "expected a mapping `{{from: …, to: …}}` or `true`, found {}",
                    kind_of(other)
                ),
            );
            return None;
        }
    };
    let mut from = TaintSource::ALL.to_vec();
    let mut to = vec![Glob("*".to_owned())];
    let mut ok = true;
    for (k, val) in map {
        let key = k.as_str().unwrap_or("");
        let kp = format!("{path}.{key}");
        match key {
            "from" => match names(ctx, val, &kp) {
                Some(ns) => {
                    from.clear();
                    for n in ns {
                        if n == "any" || n == "*" {
                            from = TaintSource::ALL.to_vec();
                            break;
                        }
                        match TaintSource::parse(&n) {
                            Some(t) => from.push(t),
                            None => {
                                ctx.value_error(
                                    &kp,
                                    format!(
                                        "unknown taint source `{n}` (expected one of: tool_output, document, agent_message, any)"
                                    ),
                                );
                                ok = false;
                            }
                        }
                    }
                }
                None => ok = false,
            },
            "to" => match globs(ctx, val, &kp) {
                Some(g) => to = g,
                None => ok = false,
            },
            _ => {
                ctx.key_error(&kp, "unknown key (expected one of: from, to)".to_owned());
                ok = false;
            }
        }
    }
    ok.then_some(Pred::Taint { from, to })
}

fn any_glob(globs: &[Glob], v: Option<&str>) -> bool {
    v.is_some_and(|v| globs.iter().any(|g| g.matches(v)))
}

fn lookup<'v>(args: &'v serde_json::Value, path: &[String]) -> Option<&'v serde_json::Value> {
    let mut cur = args;
    for seg in path {
        cur = match cur {
            serde_json::Value::Object(m) => m.get(seg)?,
            serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn as_text(v: &serde_json::Value) -> Cow<'_, str> {
    match v {
        serde_json::Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn loosely_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    a == b || as_text(a) == as_text(b)
}

impl Cond {
    pub(crate) fn matches(&self, s: &Subject<'_>) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.matches(s)),
            Cond::Any(cs) => cs.iter().any(|c| c.matches(s)),
            Cond::Not(c) => !c.matches(s),
            Cond::Pred(p) => p.matches(s),
        }
    }
}

impl Pred {
    fn matches(&self, s: &Subject<'_>) -> bool {
        match self {
            Pred::Agent(g) => any_glob(g, s.agent),
            Pred::Role(g) => any_glob(g, s.role),
            Pred::Workflow(g) => any_glob(g, s.workflow),
            Pred::Action(a) => s.action.is_some_and(|x| a.contains(&x)),
            Pred::ToolName(g) => any_glob(g, s.tool_name),
            Pred::ToolCategory(g) => any_glob(g, s.tool_category),
            Pred::Sender(g) => any_glob(g, s.sender),
            Pred::Recipient(g) => any_glob(g, s.recipient),
            Pred::Model(g) => any_glob(g, Some(s.model)),
            Pred::Content(r) => s.texts.iter().any(|t| r.is_match(t.as_ref())),
            Pred::Finding(kinds) => s
                .findings
                .iter()
                .any(|(d, k)| kinds.iter().any(|want| want == d || want == k)),
            Pred::Taint { from, to } => {
                s.action == Some(ActionType::ToolCall)
                    && to.iter().any(|g| g.matches(s.tool_category.unwrap_or("")))
                    && s.taint.iter().any(|h| from.contains(&h.provenance.source))
            }
            Pred::Parameter { path, test } => {
                let Some(v) = s.arguments.and_then(|a| lookup(a, path)) else {
                    return false;
                };
                match test {
                    ParamTest::Present => true,
                    ParamTest::Pattern(r) => r.is_match(as_text(v).as_ref()),
                    ParamTest::Equals(want) => loosely_equal(v, want),
                    ParamTest::In(list) => list.iter().any(|w| loosely_equal(v, w)),
                }
            }
        }
    }
}

impl Cond {
    /// Whether any predicate of the tree looks at findings (the phase then runs every detector).
    pub(crate) fn uses_findings(&self) -> bool {
        match self {
            Cond::All(cs) | Cond::Any(cs) => cs.iter().any(Cond::uses_findings),
            Cond::Not(c) => c.uses_findings(),
            Cond::Pred(Pred::Finding(_)) | Cond::Pred(Pred::Taint { .. }) => true,
            Cond::Pred(_) => false,
        }
    }

    /// Whether any predicate of the tree is a `taint` condition.
    pub(crate) fn uses_taint(&self) -> bool {
        match self {
            Cond::All(cs) | Cond::Any(cs) => cs.iter().any(Cond::uses_taint),
            Cond::Not(c) => c.uses_taint(),
            Cond::Pred(Pred::Taint { .. }) => true,
            Cond::Pred(_) => false,
        }
    }

    /// The taint hits of `s` that this condition tree relies on (for the verdict's evidence).
    pub(crate) fn taint_evidence<'s>(&self, s: &'s Subject<'_>) -> Vec<&'s TaintHit> {
        fn walk<'s>(c: &Cond, s: &'s Subject<'_>, out: &mut Vec<&'s TaintHit>) {
            match c {
                Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| walk(c, s, out)),
                Cond::Not(_) => {}
                Cond::Pred(Pred::Taint { from, .. }) => {
                    for h in &s.taint {
                        if from.contains(&h.provenance.source)
                            && !out.iter().any(|o| std::ptr::eq(*o, h))
                        {
                            out.push(h);
                        }
                    }
                }
                Cond::Pred(_) => {}
            }
        }
        let mut out = Vec::new();
        walk(self, s, &mut out);
        out
    }
}
