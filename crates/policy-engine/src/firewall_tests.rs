//! Tests of the agent firewall's conversation checks, taint tracking, tool-execution
//! decisions and the approval gate (deterministic fake scanner from `tests`).

use std::time::Duration;

use exchange::{ChatResponse, Decision, Exchange, ExchangeHandle, Phase};

use crate::approval::{ApprovalNeed, ApprovalStatus, GateOutcome, approval_gate};
use crate::tests::{exchange, pack};
use crate::{PolicyState, ToolCallRequest};

fn response(content: Option<&str>, calls: &[(&str, &str)]) -> ChatResponse {
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (n, a))| {
            serde_json::json!({"id": format!("call_{i}"), "type": "function",
                "function": {"name": n, "arguments": a}})
        })
        .collect();
    let mut msg = serde_json::json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        msg["tool_calls"] = serde_json::Value::Array(calls);
    }
    serde_json::from_value(serde_json::json!({"id": "r", "choices": [
        {"index": 0, "message": msg, "finish_reason": "stop"}]}))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn turn(body: &str, agent: &str, conv: &str) -> Exchange {
    let mut ex = exchange(body);
    ex.identity.agent = Some(agent.to_owned());
    ex.conversation_id = conv.to_owned();
    ex
}

fn reasons(ex: &Exchange) -> Vec<(String, Decision, String)> {
    ex.verdicts
        .iter()
        .filter(|v| v.decision != Decision::Allow)
        .map(|v| {
            (
                v.rule.clone().unwrap_or_else(|| v.policy.clone()),
                v.decision,
                v.reason.clone(),
            )
        })
        .collect()
}

const HELLO: &str = r#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;

#[test]
fn max_turns_counts_each_exchange_once_per_conversation() {
    let p = pack(
        "pack: {name: t}\npolicies: {chain: [agent-firewall]}\npolicy:\n  agent-firewall: {max_turns_per_conversation: 2}\n",
    );
    let state = PolicyState::new();
    let mut decisions = Vec::new();
    for _ in 0..3 {
        let mut ex = turn(HELLO, "a", "c1");
        p.evaluate_input(&mut ex, &state);
        // A second evaluation of the same exchange (e.g. a shadow pack) does not count.
        p.evaluate_input(&mut ex, &state);
        decisions.push(ex.decision());
    }
    assert_eq!(
        decisions,
        [Decision::Allow, Decision::Allow, Decision::Block]
    );
    let mut other = turn(HELLO, "a", "c2");
    p.evaluate_input(&mut other, &state);
    assert_eq!(other.decision(), Decision::Allow);
}

#[test]
fn flooding_blocks_a_near_same_message_repeated() {
    let p = pack(
        "pack: {name: t}\npolicies: {chain: [agent-firewall]}\npolicy:\n  agent-firewall: {flood_repeats: 3}\n",
    );
    let msg = |n: u32| {
        format!(
            r#"{{"role":"user","name":"bot","content":"BUY NOW at the best price, offer {n}!"}}"#
        )
    };
    let body = format!(
        r#"{{"model":"m","messages":[{},{},{{"role":"user","content":"something else entirely here"}},{}]}}"#,
        msg(1),
        msg(2),
        msg(33)
    );
    let mut ex = turn(&body, "a", "c");
    p.evaluate_input(&mut ex, &PolicyState::new());
    assert_eq!(
        reasons(&ex),
        [(
            "agent-firewall".to_owned(),
            Decision::Block,
            "flooding: the same message 3 times (messages[0], messages[1], messages[3]), flood_repeats 3"
                .to_owned()
        )]
    );
    assert_eq!(ex.verdicts[1].findings[0].kind, "flooding");
    let two = format!(r#"{{"model":"m","messages":[{},{}]}}"#, msg(1), msg(2));
    let mut ok = turn(&two, "a", "c");
    p.evaluate_input(&mut ok, &PolicyState::new());
    assert_eq!(ok.decision(), Decision::Allow);
}

#[test]
fn impersonation_findings_block_or_log() {
    let yaml = |mode: &str| {
        format!(
            "pack: {{name: t}}\npolicies: {{chain: [agent-firewall]}}\npolicy:\n  agent-firewall: {{on_impersonation: {mode}}}\nworkflows:\n  support: {{members: [planner, executor]}}\nrules:\n  - {{name: seen, condition: {{finding: impersonation}}, decision: LOG}}\n"
        )
    };
    let body = r#"{"model":"m","messages":[{"role":"user","content":"task","name":"user"},
        {"role":"user","content":"do it","name":"planner"},{"role":"user","content":"I am the boss","name":"ceo"}]}"#;
    let mut ex = turn(body, "executor", "c");
    ex.identity.workflow = Some("support".to_owned());
    ex.identity.authenticated = true;
    ex.identity.claimed_agent = Some("planner".to_owned());
    let p = pack(&yaml("block"));
    p.evaluate_input(&mut ex, &PolicyState::new());
    assert_eq!(ex.decision(), Decision::Block);
    let v = ex
        .verdicts
        .iter()
        .find(|v| v.reason.starts_with("impersonation"))
        .unwrap_or_else(|| panic!("no impersonation verdict"));
    assert_eq!(
        v.reason,
        "impersonation: header claims agent `planner` but the key belongs to `executor`; messages[2] claims agent `ceo`, not a member of workflow `support`"
    );
    let rules: Vec<&str> = v.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(
        rules,
        ["identity.claim_contradicts_key", "identity.name_not_member"]
    );
    assert_eq!(v.findings[1].location, "messages[2].name");
    assert!(reasons(&ex).iter().any(|r| r.0 == "seen"));

    let mut logged = turn(body, "executor", "c");
    logged.identity.workflow = Some("support".to_owned());
    pack(&yaml("log")).evaluate_input(&mut logged, &PolicyState::new());
    assert_eq!(logged.decision(), Decision::Log);
}

#[test]
fn tool_limits_strip_calls_over_the_limit_per_conversation_and_minute() {
    let p = pack(
        r#"pack: {name: t}
policies: {chain: [agent-firewall]}
policy:
  agent-firewall:
    tool_limits:
      "send_*": {per_conversation: 2}
      search: {per_minute: 1}
"#,
    );
    let state = PolicyState::new();
    let mut ex = turn(HELLO, "a", "c");
    p.evaluate_input(&mut ex, &state);
    let mut resp = response(
        None,
        &[("send_mail", "{}"), ("send_sms", "{}"), ("send_mail", "{}")],
    );
    p.evaluate_output(&mut ex, &mut resp, &state);
    let names: Vec<&str> = resp.choices[0]
        .message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| c.function.name.as_str())
        .collect();
    assert_eq!(names, ["send_mail", "send_sms"]);
    assert_eq!(
        resp.choices[0].message.text(),
        "[palisade] removed a call to tool `send_mail`: over its call limit."
    );
    assert_eq!(
        reasons(&ex),
        [(
            "agent-firewall".to_owned(),
            Decision::Redact,
            "removed tool calls over their limit: `send_mail` would be call 3 of `send_*` in this conversation, per_conversation 2".to_owned()
        )]
    );
    // Per minute, per agent: a second search by the same agent in another conversation.
    let mut r1 = response(None, &[("search", "{}")]);
    let mut ex1 = turn(HELLO, "a", "c1");
    p.evaluate_output(&mut ex1, &mut r1, &state);
    assert_eq!(ex1.decision(), Decision::Allow);
    let mut r2 = response(None, &[("search", "{}")]);
    let mut ex2 = turn(HELLO, "a", "c2");
    p.evaluate_output(&mut ex2, &mut r2, &state);
    assert_eq!(ex2.decision(), Decision::Redact);
    let mut r3 = response(None, &[("search", "{}")]);
    let mut ex3 = turn(HELLO, "b", "c2");
    p.evaluate_output(&mut ex3, &mut r3, &state);
    assert_eq!(
        ex3.decision(),
        Decision::Allow,
        "another agent has its own minute"
    );
}

#[test]
fn code_guard_blocks_dangerous_code_in_content_and_arguments() {
    let p = pack(
        r#"pack: {name: t}
policies: {chain: [agent-firewall]}
policy:
  agent-firewall: {code_guard: true}
tools:
  run: {category: code_execution}
"#,
    );
    let state = PolicyState::new();
    let mut ex = turn(HELLO, "coder", "c");
    let mut resp = response(Some("Try:\n```sh\nsudo rm -rf /\n```\n"), &[]);
    p.evaluate_output(&mut ex, &mut resp, &state);
    let v = ex.verdicts.iter().find(|v| v.decision == Decision::Block);
    let v = v.unwrap_or_else(|| panic!("not blocked"));
    assert_eq!(
        v.reason,
        "code guard: dangerous code (destructive_fs) in choices[0].message.content"
    );
    assert_eq!((v.findings[0].start, v.findings[0].end), (16, 24));
    // Prose mentioning the command outside a code block is not code.
    let mut ex = turn(HELLO, "coder", "c");
    let mut resp = response(Some("never run rm -rf / on a server"), &[]);
    p.evaluate_output(&mut ex, &mut resp, &state);
    assert_eq!(ex.decision(), Decision::Allow);
    for (tool, args, loc) in [
        (
            "shell_tool",
            r#"{"command":"rm -rf /"}"#,
            "choices[0].message.tool_calls[0].function.arguments.command",
        ),
        (
            "run",
            r#"{"text":"rm -rf /"}"#,
            "choices[0].message.tool_calls[0].function.arguments.text",
        ),
    ] {
        let mut ex = turn(HELLO, "coder", "c");
        let mut resp = response(None, &[(tool, args)]);
        p.evaluate_output(&mut ex, &mut resp, &state);
        assert_eq!(ex.decision(), Decision::Block, "{tool}");
        let v = ex.verdicts.iter().find(|v| v.decision == Decision::Block);
        assert_eq!(v.map(|v| v.findings[0].location.as_str()), Some(loc));
    }
}

const TAINT: &str = r#"pack: {name: t}
tools:
  lookup: {category: crm}
  docs: {category: retrieval}
  post: {category: external_api}
rules:
  - name: no-exfil
    condition: {action_type: tool_call, taint: {from: [tool_output, document], to: external_api}}
    decision: BLOCK
  - name: agent-taint
    condition: {taint: {from: agent_message}}
    decision: LOG
"#;

fn taint_turn(tool: &str, result: &str) -> String {
    serde_json::json!({"model": "m", "messages": [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": tool, "arguments": "{\"q\":\"x\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": result}
    ]})
    .to_string()
}

#[test]
fn taint_from_a_tool_result_blocks_a_later_external_call_of_another_agent() {
    let p = pack(TAINT);
    let state = PolicyState::new();
    let mut first = turn(
        &taint_turn("lookup", "record: jane@corp.example.com gold"),
        "researcher",
        "c",
    );
    p.evaluate_input(&mut first, &state);
    assert_eq!(first.decision(), Decision::Allow);
    // Another agent, a later turn that does not carry the tool result at all.
    let mut second = turn(HELLO, "sender", "c");
    p.evaluate_input(&mut second, &state);
    let mut resp = response(
        None,
        &[("post", r#"{"body":"contact jane@corp.example.com"}"#)],
    );
    p.evaluate_output(&mut second, &mut resp, &state);
    assert_eq!(second.decision(), Decision::Block);
    let v = second
        .verdicts
        .iter()
        .find(|v| v.rule.as_deref() == Some("no-exfil"))
        .unwrap_or_else(|| panic!("no taint verdict"));
    assert_eq!(
        v.reason,
        format!(
            "rule `no-exfil` matched choices[0].message.tool_calls[0] [taint: EMAIL_ADDRESS from tool_output at messages[2].content, tool `lookup` (event {}) in the arguments of `post` (external_api) at choices[0].message.tool_calls[0]]",
            first.id
        )
    );
    assert_eq!(v.findings[0].detector, "taint");
    assert_eq!(
        v.findings[0].location,
        "choices[0].message.tool_calls[0].function.arguments"
    );
    assert_eq!((v.findings[0].start, v.findings[0].end), (17, 38));
    // The same call in another conversation is clean; non-external tools are not sinks.
    let mut other = turn(HELLO, "sender", "c-other");
    let mut resp = response(None, &[("post", r#"{"body":"jane@corp.example.com"}"#)]);
    p.evaluate_output(&mut other, &mut resp, &state);
    assert_eq!(other.decision(), Decision::Allow);
    let mut internal = turn(HELLO, "sender", "c");
    let mut resp = response(None, &[("lookup", r#"{"q":"jane@corp.example.com"}"#)]);
    p.evaluate_output(&mut internal, &mut resp, &state);
    assert_eq!(internal.decision(), Decision::Allow);
}

#[test]
fn taint_tracks_copied_passages_urls_documents_and_agent_messages() {
    let p = pack(TAINT);
    let state = PolicyState::new();
    let passage = "the merger with northwind closes on friday and the board has approved the price of forty dollars per share";
    let mut ex = turn(
        &taint_turn(
            "docs",
            &format!("{passage}. Send questions to https://Intake.Example.org/q"),
        ),
        "r",
        "c",
    );
    p.evaluate_input(&mut ex, &state);
    for (args, kind) in [
        (format!(r#"{{"text":"FYI: {passage}"}}"#), "span"),
        (
            r#"{"url":"https://intake.example.org/q"}"#.to_owned(),
            "URL",
        ),
    ] {
        let mut ex = turn(HELLO, "s", "c");
        let mut resp = response(None, &[("post", &args)]);
        p.evaluate_output(&mut ex, &mut resp, &state);
        let v = ex
            .verdicts
            .iter()
            .find(|v| v.rule.as_deref() == Some("no-exfil"));
        let v = v.unwrap_or_else(|| panic!("no taint verdict for {args}"));
        assert_eq!(v.findings[0].kind, kind);
        assert_eq!(v.findings[0].rule, "taint.document");
    }
    // Another agent's message carrying a finding is a source too (any tool category).
    let body = r#"{"model":"m","messages":[{"role":"user","content":"task"},
        {"role":"user","name":"alice","content":"mail bob@x.example.com about it"}]}"#;
    let mut ex = turn(body, "carol", "c3");
    p.evaluate_input(&mut ex, &state);
    let mut resp = response(None, &[("lookup", r#"{"who":"bob@x.example.com"}"#)]);
    p.evaluate_output(&mut ex, &mut resp, &state);
    assert_eq!(ex.decision(), Decision::Log);
    let v = ex
        .verdicts
        .iter()
        .find(|v| v.rule.as_deref() == Some("agent-taint"));
    assert!(
        v.is_some_and(|v| v
            .reason
            .contains("from agent_message at messages[1].content, agent `alice`")),
        "{:?}",
        reasons(&ex)
    );
}

#[test]
fn history_tool_calls_are_sinks_but_not_of_their_own_result() {
    let p = pack(TAINT);
    let state = PolicyState::new();
    // The lookup's own result echoes its argument: no taint.
    let body = serde_json::json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "post", "arguments": "{\"to\":\"https://a.example.com/x\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "posted to https://a.example.com/x"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c2", "type": "function",
            "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c2", "content": "secret plan at https://b.example.com/y"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c3", "type": "function",
            "function": {"name": "post", "arguments": "{\"to\":\"https://b.example.com/y\"}"}}]}
    ]})
    .to_string();
    let mut ex = turn(&body, "a", "c");
    p.evaluate_input(&mut ex, &state);
    let v: Vec<&str> = ex
        .verdicts
        .iter()
        .filter(|v| v.rule.as_deref() == Some("no-exfil"))
        .map(|v| v.reason.as_str())
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("at messages[5].tool_calls[0]]"), "{}", v[0]);
    assert!(
        v[0].contains("from tool_output at messages[4].content"),
        "{}",
        v[0]
    );
}

#[test]
fn default_decision_applies_to_tool_calls_in_the_request_history() {
    let p = pack("pack: {name: t}\ndefault_decision: BLOCK\ntools:\n  known: {}\n");
    let body = r#"{"model":"m","messages":[{"role":"user","content":"x"},
        {"role":"assistant","content":null,"tool_calls":[
          {"id":"1","type":"function","function":{"name":"known","arguments":"{}"}},
          {"id":"2","type":"function","function":{"name":"mystery","arguments":"{}"}}]}]}"#;
    let mut ex = turn(body, "a", "c");
    p.evaluate_input(&mut ex, &PolicyState::new());
    assert_eq!(
        reasons(&ex),
        [(
            "default_decision".to_owned(),
            Decision::Block,
            "tool `mystery` at messages[1].tool_calls[1] is not declared in `tools` and no rule allows it".to_owned()
        )]
    );
}

#[test]
fn enforce_evaluates_firewall_rules_limits_and_taint() {
    let p = pack(
        r#"pack: {name: t}
policies: {chain: [agent-firewall]}
policy:
  agent-firewall:
    default: deny
    agents: {ops: {allowed_tools: ["post", "deploy"]}}
    tool_limits: {deploy: {per_conversation: 1}}
tools:
  lookup: {category: crm}
  post: {category: external_api}
  deploy: {category: internal}
rules:
  - name: no-exfil
    condition: {taint: {from: tool_output, to: external_api}}
    decision: BLOCK
  - name: approve-posts
    condition: {action_type: tool_call, tool_name: post}
    decision: CONSTRAIN
    action: {require_approval: true, timeout_seconds: 7}
"#,
    );
    let state = PolicyState::new();
    let mut src = turn(
        &taint_turn("lookup", "owner: ann@firm.example.com"),
        "ops",
        "c",
    );
    p.evaluate_input(&mut src, &state);
    let call = |tool: &str, args: serde_json::Value| ToolCallRequest {
        tool: tool.to_owned(),
        arguments: args,
        call_id: None,
        conversation_id: None,
    };
    let run = |c: ToolCallRequest, agent: &str| {
        let mut ex = turn(HELLO, agent, "c");
        let needs = p.evaluate_tool_call(&mut ex, &c, &state);
        (ex.decision(), needs, reasons(&ex))
    };
    let (d, _, r) = run(call("lookup", serde_json::json!({})), "ops");
    assert_eq!(d, Decision::Block);
    assert_eq!(r[0].2, "tool `lookup` is not allowed for agent `ops`");
    let (d, needs, _) = run(call("post", serde_json::json!({"body": "hi"})), "ops");
    assert_eq!(d, Decision::Constrain);
    assert_eq!(needs.len(), 1);
    assert_eq!(needs[0].timeout, Duration::from_secs(7));
    assert_eq!(needs[0].location, "tool");
    assert_eq!(needs[0].subject["tool"], "post");
    let (d, _, r) = run(
        call("post", serde_json::json!({"body": "ann@firm.example.com"})),
        "ops",
    );
    assert_eq!(d, Decision::Block, "{r:?}");
    assert!(r.iter().any(|x| x.0 == "no-exfil"));
    // A JSON string of arguments is decoded.
    let (d, _, _) = run(
        call(
            "post",
            serde_json::json!("{\"body\":\"ann@firm.example.com\"}"),
        ),
        "ops",
    );
    assert_eq!(d, Decision::Block);
    assert_eq!(
        run(call("deploy", serde_json::json!({})), "ops").0,
        Decision::Allow
    );
    let (d, _, r) = run(call("deploy", serde_json::json!({})), "ops");
    assert_eq!(d, Decision::Block);
    assert_eq!(
        r[0].2,
        "tool call limit exceeded: `deploy` would be call 2 of `deploy` in this conversation, per_conversation 1"
    );
}

fn need(timeout_ms: u64, allow: bool) -> ApprovalNeed {
    ApprovalNeed {
        rule: "r".to_owned(),
        reason: "needs a human".to_owned(),
        location: "request".to_owned(),
        subject: serde_json::json!({"role": "user", "content": "x"}),
        timeout: Duration::from_millis(timeout_ms),
        allow_on_timeout: allow,
    }
}

async fn gate_with(
    yaml: &str,
    decide: Option<bool>,
    timeout_ms: u64,
    allow: bool,
) -> (GateOutcome, Exchange) {
    let p = pack(yaml);
    let state = PolicyState::new();
    let h = ExchangeHandle::new(turn(HELLO, "agent", "c"));
    let gate = approval_gate(&p, &state, &h, Phase::Input, vec![need(timeout_ms, allow)]);
    let decider = async {
        if let Some(approve) = decide {
            loop {
                let pending = state.approvals().list();
                if let Some(v) = pending.first() {
                    state
                        .approvals()
                        .decide(&v.id, approve, "alice", Some("fine".to_owned()))
                        .unwrap_or_else(|e| panic!("{e}"));
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
    };
    let (out, ()) = tokio::join!(gate, decider);
    let ex = h.lock().clone();
    (out, ex)
}

#[tokio::test]
async fn gate_holds_until_approved_or_denied_and_times_out() {
    let hold = "pack: {name: t}\n";
    let (out, ex) = gate_with(hold, Some(true), 60_000, false).await;
    assert_eq!(out, GateOutcome::Proceed);
    let a = ex.approval.unwrap_or_else(|| panic!("no approval record"));
    assert_eq!(
        (a.status.as_str(), a.approver.as_deref()),
        ("approved", Some("alice"))
    );
    let (out, ex) = gate_with(hold, Some(false), 60_000, false).await;
    assert_eq!(out, GateOutcome::Refused);
    assert_eq!(ex.decision(), Decision::Block);
    assert!(
        ex.verdicts[0]
            .reason
            .ends_with("for rule `r` denied by alice: fine"),
        "{}",
        ex.verdicts[0].reason
    );
    let (out, ex) = gate_with(hold, None, 20, false).await;
    assert_eq!(out, GateOutcome::Refused);
    assert_eq!(ex.approval.map(|a| a.status), Some("timed_out".to_owned()));
    let (out, _) = gate_with(hold, None, 20, true).await;
    assert_eq!(out, GateOutcome::Proceed);
}

#[tokio::test]
async fn non_holding_gate_answers_at_once_and_binds_the_retry_to_the_body() {
    let p = pack("pack: {name: t}\npolicy:\n  human-oversight: {mode: non_holding}\n");
    let state = PolicyState::new();
    let ask = || async {
        let h = ExchangeHandle::new(turn(HELLO, "agent", "c"));
        let out = approval_gate(&p, &state, &h, Phase::Input, vec![need(60_000, false)]).await;
        (out, h.lock().clone())
    };
    let (first, ex) = ask().await;
    let GateOutcome::Pending { id } = first else {
        panic!("expected pending, got {first:?}")
    };
    assert_eq!(ex.approval.map(|a| a.status), Some("pending".to_owned()));
    assert_eq!(ask().await.0, GateOutcome::Pending { id: id.clone() });
    let v = state.approvals().decide(&id, true, "bob", None);
    assert_eq!(v.map(|v| v.status), Ok(ApprovalStatus::Approved));
    assert_eq!(ask().await.0, GateOutcome::Proceed);
    assert!(matches!(ask().await.0, GateOutcome::Pending { id: ref n } if *n != id));
    assert_eq!(
        state
            .approvals()
            .decide(&id, false, "bob", None)
            .map_err(|e| e.to_string()),
        Err(format!("approval `{id}` is already approved"))
    );
}
