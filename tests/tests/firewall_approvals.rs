//! End to end: human approvals (held turns approved and denied from the `palisade` CLI
//! binary, timeouts, the non-holding retry), `POST /v1/enforce` with cross-turn taint, and
//! the agent firewall's conversation limits — a real gateway and mock upstream on
//! 127.0.0.1:0.
//!
//! The CLI binary is `PALISADE_BIN` when set, else `target/debug/palisade` (built once per
//! test process with `cargo build -p palisade-cli --bin palisade`, a no-op when fresh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use palisade_tests::TestEnv;
use palisade_tests::palisade_bin;
use serde_json::{Value, json};

/// The admin token: the packs below read it from the upstream key file TestEnv writes.
const ADMIN_TOKEN: &str = "test-upstream-key";

/// Runs `palisade approvals <args> --gateway <env>` with the admin token.
async fn cli(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(palisade_bin());
    cmd.arg("approvals")
        .args(args)
        .args(["--gateway", &env.url("")])
        .env("PALISADE_ADMIN_TOKEN", ADMIN_TOKEN);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn audit_events(env: &TestEnv) -> Vec<Value> {
    let data = env.data_dir();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(palisade_bin())
            .args(["audit", "export", "--data-dir"])
            .arg(data)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn admin(
    env: &TestEnv,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, env.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits (bounded) until the gateway holds exactly one pending approval; returns it.
async fn pending_approval(env: &TestEnv) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = admin(
            env,
            reqwest::Method::GET,
            "/admin/approvals?status=pending",
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let list = v["approvals"].as_array().cloned().unwrap_or_default();
        if list.len() == 1 {
            return list[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no pending approval appeared: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chat(env: &TestEnv, key: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = palisade_tests::post_json(env.url("/v1/chat/completions"), key, body)
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

fn pack(oversight: &str, rules: &str) -> String {
    format!(
        r#"
pack: {{name: approvals, version: "1"}}
auth: required
admin: {{token_ref: {{file: "{{KEY_FILE}}"}}}}
providers:
  - {{name: upstream, kind: openai, base_url: "{{UPSTREAM}}", model: [gpt-4o], secret_key_ref: {{file: "{{KEY_FILE}}"}}}}
policies: {{chain: [human-oversight]}}
policy:
  human-oversight: {oversight}
tools:
  post_webhook: {{category: external_api}}
rules:
{rules}
"#
    )
}

const DEPLOY_RULE: &str = r#"  - name: approve-deploys
    condition: {content_matches: '(?i)deploy to production'}
    decision: CONSTRAIN
    action: {require_approval: true}
    reason: Production deploys need a human"#;

fn deploy_request(tag: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("Deploy to production now ({tag})")}]})
}

#[tokio::test]
async fn held_request_is_approved_from_the_cli() {
    tokio::task::spawn_blocking(palisade_bin).await.unwrap();
    let env = TestEnv::start(&pack("{timeout_seconds: 30}", DEPLOY_RULE))
        .await
        .unwrap();
    let key = env.key("deployer", "ops").unwrap();
    let body = deploy_request("approve");
    let held = {
        let (url, key, body) = (env.url("/v1/chat/completions"), key.clone(), body.clone());
        tokio::spawn(async move {
            let res = palisade_tests::post_json(url, key, &body).await.unwrap();
            let status = res.status().as_u16();
            let decision = res
                .headers()
                .get("x-palisade-decision")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, decision, res.json::<Value>().await.unwrap())
        })
    };
    let p = pending_approval(&env).await;
    assert_eq!(p["agent"], "deployer");
    assert_eq!(p["rule"], "approve-deploys");
    assert_eq!(p["reason"], "Production deploys need a human");
    assert_eq!(p["mode"], "hold");
    assert_eq!(
        p["subject"]["content"],
        "Deploy to production now (approve)"
    );
    let id = p["id"].as_str().unwrap().to_owned();

    let (code, list, _) = cli(&env, &["list"]).await;
    assert_eq!(code, 0);
    assert!(list.starts_with("ID "), "{list}");
    assert!(list.contains(&id) && list.contains("pending"), "{list}");

    let (code, out, err) = cli(
        &env,
        &["approve", &id, "--approver", "alice", "--note", "ok"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("approved {id} (rule `approve-deploys`, agent `deployer`) by alice\n")
    );

    let (status, decision, v) = held.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(decision.as_deref(), Some("CONSTRAIN"));
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply from gpt-4o to user: Deploy to production now (approve)"
    );
    // Deciding twice is refused (exit 1).
    let (code, _, err) = cli(&env, &["deny", &id]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("approvals: approval `{id}` is already approved\n")
    );

    let events = audit_events(&env).await;
    let ev = events.iter().find(|e| e["agent"] == "deployer").unwrap();
    assert_eq!(ev["approval"]["id"], id.as_str());
    assert_eq!(ev["approval"]["status"], "approved");
    assert_eq!(ev["approval"]["approver"], "alice");
    assert_eq!(ev["approval"]["rule"], "approve-deploys");
    assert!(ev["approval"]["waited_ms"].as_u64().is_some());
    assert_eq!(ev["outcome"]["kind"], "forwarded");
    assert_eq!(ev["decision"], "CONSTRAIN");
    env.gateway.shutdown().await;
}

#[tokio::test]
async fn held_request_is_denied_from_the_cli() {
    tokio::task::spawn_blocking(palisade_bin).await.unwrap();
    let env = TestEnv::start(&pack("{timeout_seconds: 30}", DEPLOY_RULE))
        .await
        .unwrap();
    let key = env.key("deployer", "ops").unwrap();
    let held = {
        let (url, key, body) = (
            env.url("/v1/chat/completions"),
            key.clone(),
            deploy_request("deny"),
        );
        tokio::spawn(async move {
            let res = palisade_tests::post_json(url, key, &body).await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    let id = pending_approval(&env).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, err) = cli(&env, &["deny", &id, "--approver", "bob"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("denied {id} (rule `approve-deploys`, agent `deployer`) by bob\n")
    );
    let (status, v) = held.await.unwrap();
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "human-oversight");
    assert_eq!(
        v["error"]["message"],
        format!(
            "blocked by policy `human-oversight`: approval `{id}` for rule `approve-deploys` denied by bob"
        )
    );
    assert_eq!(
        env.upstream.requests_received(),
        0,
        "a denied turn never reaches the upstream"
    );
    let events = audit_events(&env).await;
    let ev = events.iter().find(|e| e["agent"] == "deployer").unwrap();
    assert_eq!(ev["approval"]["status"], "denied");
    assert_eq!(ev["approval"]["approver"], "bob");
    assert_eq!(ev["decision"], "BLOCK");
    assert_eq!(ev["outcome"]["policy"], "human-oversight");
    // Unknown ids: exit 1 with the gateway's message.
    let (code, _, err) = cli(&env, &["show", "apr_nope"]).await;
    assert_eq!(
        (code, err.as_str()),
        (1, "approvals: approval `apr_nope` not found\n")
    );
    env.gateway.shutdown().await;
}

#[tokio::test]
async fn unanswered_approval_times_out_and_denies() {
    let rule = r#"  - name: approve-deploys
    condition: {content_matches: '(?i)deploy to production'}
    decision: CONSTRAIN
    action: {require_approval: true, timeout_seconds: 1}"#;
    let env = TestEnv::start(&pack("{timeout_seconds: 30}", rule))
        .await
        .unwrap();
    let key = env.key("deployer", "ops").unwrap();
    let started = Instant::now();
    let (status, _, v) = chat(&env, &key, &deploy_request("timeout")).await;
    let waited = started.elapsed();
    assert_eq!(status, 403, "{v}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.ends_with("for rule `approve-deploys` timed out after 1s (on_timeout: deny)"),
        "{msg}"
    );
    let events = audit_events(&env).await;
    assert_eq!(events[0]["approval"]["status"], "timed_out");
    assert_eq!(events[0]["approval"]["approver"], Value::Null);
    env.gateway.shutdown().await;
}

#[tokio::test]
async fn non_holding_retry_of_the_same_body_passes_once_approved() {
    let env = TestEnv::start(&pack(
        "{mode: non_holding, timeout_seconds: 60}",
        DEPLOY_RULE,
    ))
    .await
    .unwrap();
    let key = env.key("deployer", "ops").unwrap();
    let body = deploy_request("retry");
    let (status, headers, v) = chat(&env, &key, &body).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "approval_required");
    let id = headers["x-palisade-approval"].to_str().unwrap().to_owned();
    assert!(v["error"]["message"].as_str().unwrap().contains(&id), "{v}");
    // A retry before the decision names the same request.
    let (_, h2, _) = chat(&env, &key, &body).await;
    assert_eq!(h2["x-palisade-approval"].to_str().unwrap(), id);
    // A different body is a different request.
    let (_, h3, _) = chat(&env, &key, &deploy_request("other")).await;
    assert_ne!(h3["x-palisade-approval"].to_str().unwrap(), id);

    let (s, d) = admin(
        &env,
        reqwest::Method::POST,
        &format!("/admin/approvals/{id}/approve"),
        Some(json!({"approver": "carol"})),
    )
    .await;
    assert_eq!((s, d["status"].as_str()), (200, Some("approved")), "{d}");
    let (status, _, v) = chat(&env, &key, &body).await;
    assert_eq!(status, 200, "{v}");
    // The approval passes once: the next retry asks again.
    let (status, h4, _) = chat(&env, &key, &body).await;
    assert_eq!(status, 403);
    assert_ne!(h4["x-palisade-approval"].to_str().unwrap(), id);
    // Without the admin token the API is closed.
    let res = reqwest::Client::new()
        .get(env.url("/admin/approvals"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    env.gateway.shutdown().await;
}

#[tokio::test]
async fn held_tool_call_in_a_response_is_released_after_approval() {
    tokio::task::spawn_blocking(palisade_bin).await.unwrap();
    let rule = r#"  - name: approve-external-tools
    condition: {action_type: tool_call, tool_category: external_api}
    decision: CONSTRAIN
    action: {require_approval: true}"#;
    let env = TestEnv::start(&pack("{timeout_seconds: 30}", rule))
        .await
        .unwrap();
    let key = env.key("tool_agent", "executor").unwrap();
    let body = json!({"model": "gpt-4o",
        "messages": [{"role": "user", "content": "notify the team"}],
        "tools": [{"type": "function", "function": {"name": "post_webhook", "parameters": {
            "type": "object", "properties": {"channel": {"type": "string"}}, "required": ["channel"]}}}]});
    let held = {
        let (url, key) = (env.url("/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            let res = palisade_tests::post_json(url, key, &body).await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    let p = pending_approval(&env).await;
    assert_eq!(p["location"], "choices[0].message.tool_calls[0]");
    assert_eq!(p["subject"]["tool"], "post_webhook");
    assert_eq!(
        p["subject"]["arguments"],
        json!({"channel": "mock-channel"})
    );
    let id = p["id"].as_str().unwrap().to_owned();
    let (code, _, err) = cli(&env, &["approve", &id]).await;
    assert_eq!(code, 0, "{err}");
    let (status, v) = held.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "post_webhook"
    );
    env.gateway.shutdown().await;
}

const TAINT_PACK: &str = r#"
pack: {name: taint, version: "1"}
auth: required
providers:
  - {name: mock, kind: mock, model: [gpt-4o]}
policies: {chain: [prompt-injection, pii-detector, agent-firewall]}
policy:
  prompt-injection: {action: log}
  pii-detector: {action: log}
  agent-firewall:
    max_turns_per_conversation: 3
tools:
  lookup_customer: {category: crm}
  post_webhook: {category: external_api}
rules:
  - name: no-tainted-data-to-external-apis
    condition: {action_type: tool_call, taint: {from: tool_output, to: external_api}}
    decision: BLOCK
    reason: Data from a tool result may not leave through an external API
"#;

async fn enforce(env: &TestEnv, key: &str, conv: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(env.url("/v1/enforce"))
        .bearer_auth(key)
        .header("x-palisade-conversation", conv)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn enforce_blocks_a_webhook_call_carrying_a_tool_results_email() {
    let env = TestEnv::start(TAINT_PACK).await.unwrap();
    let researcher = env.key("researcher", "research").unwrap();
    let sender = env.key("sender", "notifier").unwrap();
    let email = format!("{}@{}", "jane.doe", "example.com");
    // Turn 1 (researcher): the CRM tool's result enters the conversation.
    let turn = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "Look up customer 42"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "lookup_customer", "arguments": "{\"id\":42}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": format!("Customer 42: {email}, plan gold")}
    ]});
    let res = reqwest::Client::new()
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(&researcher)
        .header("x-palisade-conversation", "conv-taint")
        .json(&turn)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let researcher_event = res.headers()["x-palisade-event"]
        .to_str()
        .unwrap()
        .to_owned();

    // Turn 2 (sender, another agent): the tool asks before posting.
    let (status, v) = enforce(
        &env,
        &sender,
        "conv-taint",
        json!({"tool": "post_webhook",
        "arguments": {"url": "https://hooks.example.net/in", "body": format!("contact {email}")}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["decision"], "BLOCK", "{v}");
    assert_eq!(v["allowed"], false);
    let reason = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "no-tainted-data-to-external-apis")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        reason,
        format!(
            "Data from a tool result may not leave through an external API [taint: EMAIL_ADDRESS from tool_output at messages[2].content, tool `lookup_customer` (event {researcher_event}) in the arguments of `post_webhook` (external_api) at tool]"
        )
    );
    // Clean arguments pass.
    let (_, ok) = enforce(
        &env,
        &sender,
        "conv-taint",
        json!({"tool": "post_webhook",
        "arguments": {"url": "https://hooks.example.net/in", "body": "all done"}}),
    )
    .await;
    assert_eq!(
        (ok["decision"].as_str(), ok["allowed"].as_bool()),
        (Some("ALLOW"), Some(true)),
        "{ok}"
    );
    // Another conversation knows nothing of that e-mail address.
    let (_, other) = enforce(
        &env,
        &sender,
        "conv-other",
        json!({"tool": "post_webhook",
        "arguments": {"body": format!("contact {email}")}}),
    )
    .await;
    // (the pii-detector logs the address; the taint rule does not fire)
    assert_eq!(
        (other["decision"].as_str(), other["allowed"].as_bool()),
        (Some("LOG"), Some(true)),
        "{other}"
    );
    assert!(!other.to_string().contains("no-tainted-data"), "{other}");

    let events = audit_events(&env).await;
    let blocked = events.iter().find(|e| e["id"] == v["event_id"]).unwrap();
    assert_eq!(blocked["request_kind"], "tool_enforce");
    assert_eq!(blocked["agent"], "sender");
    assert_eq!(blocked["decision"], "BLOCK");
    let taint = blocked["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "no-tainted-data-to-external-apis")
        .unwrap();
    assert_eq!(taint["findings"][0]["detector"], "taint");
    assert_eq!(taint["findings"][0]["kind"], "EMAIL_ADDRESS");
    assert_eq!(taint["findings"][0]["rule"], "taint.tool_output");
    // The source event is in the chain too, with the PII finding on the tool result.
    let source = events
        .iter()
        .find(|e| e["id"] == researcher_event.as_str())
        .unwrap();
    let pii = source["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["policy"] == "pii-detector")
        .unwrap();
    assert_eq!(pii["findings"][0]["location"], "messages[2].content");
    env.gateway.shutdown().await;
}

#[tokio::test]
async fn conversation_turn_limit_blocks_the_fourth_turn() {
    let env = TestEnv::start(TAINT_PACK).await.unwrap();
    let key = env.key("chatty", "talker").unwrap();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]});
    for turn in 1..=4 {
        let res = reqwest::Client::new()
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-palisade-conversation", "conv-turns")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap();
        if turn <= 3 {
            assert_eq!(status, 200, "turn {turn}: {v}");
        } else {
            assert_eq!(status, 403, "{v}");
            assert_eq!(
                v["error"]["message"],
                "blocked by policy `agent-firewall`: conversation has reached 4 turns, more than max_turns_per_conversation 3"
            );
        }
    }
    env.gateway.shutdown().await;
}
