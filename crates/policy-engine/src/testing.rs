//! `palisade policy test PACK`: data-driven pack tests.
//!
//! Layout: for a pack file `policy-packs/quickstart.yaml` the cases live in
//! `policy-packs/quickstart/tests/*.yaml`; for a pack directory `DIR` the pack is
//! `DIR/pack.yaml` and the cases `DIR/tests/*.yaml`. A case file holds `cases:`, a list of:
//!
//! ```yaml
//! cases:
//!   - name: blocks_exfiltration_to_webhook      # required, unique in the file
//!     agent: tool_execution_agent                # optional identity of the caller
//!     role: executor
//!     workflow: support
//!     conversation: c-1                          # optional conversation id
//!     model: gpt-4o                              # default `test-model`
//!     messages:                                  # the request (required, non-empty)
//!       - {role: user, content: "hi", name: planner}
//!       - role: assistant
//!         tool_calls: [{name: send_http_request, arguments: {url: "https://hooks.slack.com/x"}}]
//!     tools: [send_http_request]                 # optional tools offered in the request
//!     response_format: {type: json_object}       # optional
//!     response:                                  # optional; evaluates the output phase
//!       content: "done"
//!       tool_calls: [{name: send_http_request, arguments: {url: "https://example.com"}}]
//!       finish_reason: stop
//!     expect:
//!       decision: BLOCK                          # required: the overall decision
//!       deciding: prevent-data-exfiltration      # optional: policy or rule that decided
//!       triggered: [prompt-injection]            # optional: ids with a non-ALLOW verdict
//!       not_triggered: [pii-detector]            # optional: ids without one
//!       request_contains: ["<EMAIL_1>"]          # optional: substrings of the forwarded request
//!       request_excludes: ["jane@example.com"]
//!       response_contains: ["jane@example.com"]  # optional: substrings of the final response
//!       response_excludes: []
//! ```
//!
//! Text fields may use `${repeat:TEXT:N}` (TEXT repeated N times) so credential-shaped test
//! inputs need not be written out literally.

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use exchange::{
    ChatRequest, ChatResponse, Choice, Content, Decision, Exchange, FunctionCall, FunctionDef,
    Message, Role, Tool, ToolCall,
};
use serde::Deserialize;
use serde_yaml::Value;

use crate::pack::CompiledPack;
use crate::state::PolicyState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseToolCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseMessage {
    role: Role,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<CaseToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseResponse {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<CaseToolCall>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    deciding: Option<String>,
    #[serde(default)]
    triggered: Vec<String>,
    #[serde(default)]
    not_triggered: Vec<String>,
    #[serde(default)]
    request_contains: Vec<String>,
    #[serde(default)]
    request_excludes: Vec<String>,
    #[serde(default)]
    response_contains: Vec<String>,
    #[serde(default)]
    response_excludes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    conversation: Option<String>,
    #[serde(default)]
    model: Option<String>,
    messages: Vec<CaseMessage>,
    #[serde(default)]
    tools: Vec<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    response: Option<CaseResponse>,
    expect: Expect,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case file.
    pub file: String,
    /// The case name.
    pub name: String,
    /// Why it failed (empty when it passed).
    pub failures: Vec<String>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The result of `palisade policy test`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    /// The pack tested.
    pub pack: String,
    /// Problems that kept cases from running (pack invalid, case file unreadable or invalid).
    pub errors: Vec<String>,
    /// Every case run, in file and case order.
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    /// Cases that passed.
    pub fn passed_count(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    /// Cases that failed.
    pub fn failed_count(&self) -> usize {
        self.cases.len() - self.passed_count()
    }

    /// True when no case failed, nothing went wrong, and at least one case ran.
    pub fn success(&self) -> bool {
        self.errors.is_empty() && self.failed_count() == 0 && !self.cases.is_empty()
    }
}

impl fmt::Display for TestReport {
    /// One line per failure (`FAIL file: case `name`: why`), errors, then
    /// `N passed, M failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for c in &self.cases {
            if c.passed() {
                writeln!(f, "ok   {}: {}", c.file, c.name)?;
            } else {
                for why in &c.failures {
                    writeln!(f, "FAIL {}: case `{}`: {why}", c.file, c.name)?;
                }
            }
        }
        if self.cases.is_empty() && self.errors.is_empty() {
            writeln!(f, "error: no test cases found for {}", self.pack)?;
        }
        write!(
            f,
            "{} passed, {} failed",
            self.passed_count(),
            self.failed_count()
        )
    }
}

/// Where the pack and its cases are, for a pack file or a pack directory.
pub fn layout(pack_path: &Path) -> (PathBuf, PathBuf) {
    if pack_path.is_dir() {
        return (pack_path.join("pack.yaml"), pack_path.join("tests"));
    }
    let dir = pack_path.parent().unwrap_or(Path::new("."));
    let stem = pack_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    (pack_path.to_path_buf(), dir.join(stem).join("tests"))
}

/// Expands `${repeat:TEXT:N}`.
fn expand(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${repeat:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "${repeat:".len()..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &after[..end];
        match inner
            .rsplit_once(':')
            .and_then(|(t, n)| n.parse::<usize>().ok().map(|n| (t, n)))
        {
            Some((t, n)) if n <= 10_000 => out.push_str(&t.repeat(n)),
            _ => out.push_str(&rest[i..i + "${repeat:".len() + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn tool_call(i: usize, c: CaseToolCall) -> ToolCall {
    let arguments = match c.arguments {
        None => "{}".to_owned(),
        Some(Value::String(s)) => expand(&s),
        Some(v) => expand(&serde_json::to_string(&v).unwrap_or_default()),
    };
    ToolCall {
        id: c.id.unwrap_or_else(|| format!("call_{i}")),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: c.name,
            arguments,
        },
    }
}

fn build_request(case: &mut Case) -> Result<ChatRequest, String> {
    if case.messages.is_empty() {
        return Err("`messages` must not be empty".to_owned());
    }
    let mut n = 0;
    let messages = std::mem::take(&mut case.messages)
        .into_iter()
        .map(|m| Message {
            role: m.role,
            content: m.content.map(|c| Content::Text(expand(&c))),
            name: m.name,
            tool_calls: m.tool_calls.map(|calls| {
                calls
                    .into_iter()
                    .map(|c| {
                        n += 1;
                        tool_call(n, c)
                    })
                    .collect()
            }),
            tool_call_id: m.tool_call_id,
            extra: Default::default(),
        })
        .collect();
    let mut tools = Vec::new();
    for t in std::mem::take(&mut case.tools) {
        let (name, parameters) = match t {
            Value::String(s) => (s, None),
            Value::Mapping(m) => {
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("a tool needs `name`")?
                    .to_owned();
                let params = m
                    .get("parameters")
                    .map(|p| serde_json::to_value(p).unwrap_or_default());
                (name, params)
            }
            _ => return Err("`tools` entries are names or {name, parameters}".to_owned()),
        };
        tools.push(Tool {
            kind: "function".to_owned(),
            function: FunctionDef {
                name,
                description: None,
                parameters,
                extra: Default::default(),
            },
        });
    }
    Ok(ChatRequest {
        model: case
            .model
            .clone()
            .unwrap_or_else(|| "test-model".to_owned()),
        messages,
        stream: None,
        stream_options: None,
        tools: if tools.is_empty() { None } else { Some(tools) },
        tool_choice: None,
        max_tokens: None,
        max_completion_tokens: None,
        response_format: case
            .response_format
            .as_ref()
            .map(|v| serde_json::to_value(v).unwrap_or_default()),
        extra: Default::default(),
    })
}

fn build_response(model: &str, r: CaseResponse) -> ChatResponse {
    let calls: Option<Vec<ToolCall>> = r.tool_calls.map(|c| {
        c.into_iter()
            .enumerate()
            .map(|(i, c)| tool_call(100 + i, c))
            .collect()
    });
    let finish = r.finish_reason.unwrap_or_else(|| {
        if calls.is_some() {
            "tool_calls".to_owned()
        } else {
            "stop".to_owned()
        }
    });
    ChatResponse {
        id: "chatcmpl-test".to_owned(),
        object: "chat.completion".to_owned(),
        created: 0,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: Role::Assistant,
                content: r.content.map(|c| Content::Text(expand(&c))),
                name: None,
                tool_calls: calls,
                tool_call_id: None,
                extra: Default::default(),
            },
            finish_reason: Some(finish),
            extra: Default::default(),
        }],
        usage: None,
        extra: Default::default(),
    }
}

fn verdict_summary(ex: &Exchange) -> String {
    let parts: Vec<String> = ex
        .verdicts
        .iter()
        .map(|v| {
            format!(
                "{}={} ({})",
                v.rule.as_deref().unwrap_or(&v.policy),
                v.decision,
                v.reason
            )
        })
        .collect();
    parts.join("; ")
}

fn run_case(pack: &CompiledPack, mut case: Case) -> Vec<String> {
    let mut failures = Vec::new();
    let want = match Decision::parse(&case.expect.decision) {
        Some(d) => d,
        None => {
            return vec![format!(
                "expect.decision: unknown decision `{}` (expected one of: ALLOW, LOG, REDACT, CONSTRAIN, BLOCK)",
                case.expect.decision
            )];
        }
    };
    let request = match build_request(&mut case) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let mut ex = Exchange::new(request, Bytes::from(body));
    ex.identity.agent = case.agent.clone();
    ex.identity.role = case.role.clone();
    ex.identity.workflow = case.workflow.clone();
    ex.conversation_id = case
        .conversation
        .clone()
        .unwrap_or_else(|| format!("test:{}", case.name));
    let state = PolicyState::new();
    pack.evaluate_input(&mut ex, &state);
    let mut final_response = None;
    if ex.decision() != Decision::Block {
        if let Some(r) = case.response.take() {
            let mut resp = build_response(&ex.request.model, r);
            pack.evaluate_output(&mut ex, &mut resp, &state);
            final_response = Some(resp);
        }
    }
    let got = ex.decision();
    if got != want {
        failures.push(format!(
            "expected decision {want}, got {got}; verdicts: {}",
            verdict_summary(&ex)
        ));
    }
    if let Some(d) = &case.expect.deciding {
        let deciding = ex
            .deciding_verdict()
            .map(|v| v.rule.clone().unwrap_or_else(|| v.policy.clone()));
        if deciding.as_deref() != Some(d.as_str()) {
            failures.push(format!(
                "expected `{d}` to decide, got {}",
                deciding
                    .map(|x| format!("`{x}`"))
                    .unwrap_or_else(|| "none".to_owned())
            ));
        }
    }
    let hit = |id: &str| {
        ex.verdicts.iter().any(|v| {
            v.decision != Decision::Allow
                && (v.rule.as_deref() == Some(id) || (v.rule.is_none() && v.policy == id))
        })
    };
    for id in &case.expect.triggered {
        if !hit(id) {
            failures.push(format!(
                "expected `{id}` to trigger, it did not; verdicts: {}",
                verdict_summary(&ex)
            ));
        }
    }
    for id in &case.expect.not_triggered {
        if hit(id) {
            failures.push(format!(
                "expected `{id}` not to trigger, it did; verdicts: {}",
                verdict_summary(&ex)
            ));
        }
    }
    let req_text = ex
        .request
        .messages
        .iter()
        .map(|m| {
            let mut s = m.text().into_owned();
            for c in m.tool_calls.as_deref().unwrap_or(&[]) {
                s.push('\n');
                s.push_str(&c.function.arguments);
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n");
    for s in &case.expect.request_contains {
        let s = expand(s);
        if !req_text.contains(&s) {
            failures.push(format!("forwarded request does not contain {s:?}"));
        }
    }
    for s in &case.expect.request_excludes {
        let s = expand(s);
        if req_text.contains(&s) {
            failures.push(format!("forwarded request contains {s:?}"));
        }
    }
    let resp_text = final_response
        .as_ref()
        .map(|r| {
            r.choices
                .iter()
                .map(|c| c.message.text().into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    if (!case.expect.response_contains.is_empty() || !case.expect.response_excludes.is_empty())
        && final_response.is_none()
    {
        failures.push("response expectations given but no response was evaluated".to_owned());
    }
    for s in &case.expect.response_contains {
        let s = expand(s);
        if !resp_text.contains(&s) {
            failures.push(format!("final response does not contain {s:?}"));
        }
    }
    for s in &case.expect.response_excludes {
        let s = expand(s);
        if resp_text.contains(&s) {
            failures.push(format!("final response contains {s:?}"));
        }
    }
    failures
}

/// Runs the cases of one case file against `pack`.
pub fn run_case_file(pack: &CompiledPack, file: &Path, report: &mut TestReport) {
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!("{shown}: cannot read: {e}"));
            return;
        }
    };
    let parsed: CaseFile = match serde_yaml::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            report
                .errors
                .push(format!("{shown}: invalid case file: {e}"));
            return;
        }
    };
    let mut names = std::collections::HashSet::new();
    for case in parsed.cases {
        let name = case.name.clone();
        let mut failures = if names.insert(name.clone()) {
            Vec::new()
        } else {
            vec!["duplicate case name".to_owned()]
        };
        failures.extend(run_case(pack, case));
        report.cases.push(CaseResult {
            file: shown.clone(),
            name,
            failures,
        });
    }
}

/// Loads the pack at `pack_path` and runs every case file of its tests directory
/// (see the module docs for the layout), in file-name order.
pub fn run_pack_tests(pack_path: &Path) -> TestReport {
    let (pack_file, tests_dir) = layout(pack_path);
    let mut report = TestReport {
        pack: pack_file.display().to_string(),
        ..TestReport::default()
    };
    let pack = match CompiledPack::load(&pack_file) {
        Ok(p) => p,
        Err(e) => {
            report
                .errors
                .extend(e.to_string().lines().map(str::to_owned));
            return report;
        }
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&tests_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) => {
            report.errors.push(format!(
                "{}: cannot read tests directory: {e}",
                tests_dir.display()
            ));
            return report;
        }
    };
    files.sort();
    for f in files {
        run_case_file(&pack, &f, &mut report);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expands_repeat() {
        assert_eq!(expand("x${repeat:ab:3}y"), "xabababy");
        assert_eq!(expand("${repeat:a:bad}"), "${repeat:a:bad}");
        assert_eq!(expand("no marker"), "no marker");
    }
}
