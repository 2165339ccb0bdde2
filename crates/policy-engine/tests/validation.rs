#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Pack validation: every problem, with file:line:column: key: message, exactly.

use policy_engine::CompiledPack;

fn errors(yaml: &str) -> String {
    match CompiledPack::from_yaml(yaml, "pack.yaml") {
        Ok(_) => panic!("pack unexpectedly valid:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn reports_exact_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown top-level key",
            "pack: {name: a}\nfoo: 1\n",
            "pack.yaml:2:1: foo: unknown key (expected one of: pack, providers, policies, policy, rules, default_decision, tools, workflows, auth, admin, limits, on_block, audit, budgets, rate_limits, prices, cost)",
        ),
        (
            "unknown provider key",
            "pack: {name: a}\nproviders:\n  - name: openai\n    modle: gpt-4o\n",
            "pack.yaml:4:5: providers[0].modle: unknown key (expected one of: name, kind, base_url, model, secret_key_ref, timeout_seconds, connect_timeout_seconds, on_missing_key)",
        ),
        (
            "wrong type",
            "pack: {name: a}\nproviders:\n  - name: x\n    timeout_seconds: \"slow\"\n",
            "pack.yaml:4:22: providers[0].timeout_seconds: expected a number, found string \"slow\"",
        ),
        (
            "negative integer",
            "pack: {name: a}\nlimits: {max_body_bytes: -5}\n",
            "pack.yaml:2:26: limits.max_body_bytes: expected a non-negative integer, found integer `-5`",
        ),
        (
            "bad enum value",
            "pack: {name: a}\npolicy:\n  prompt-injection: {action: blok}\n",
            "pack.yaml:3:30: policy.prompt-injection.action: unknown value `blok` (expected one of: block, redact, log, allow)",
        ),
        (
            "bad decision",
            "pack: {name: a}\nrules:\n  - name: r\n    condition: {tool_name: t}\n    decision: MAYBE\n",
            "pack.yaml:5:15: rules[0].decision: unknown decision `MAYBE` (expected one of: ALLOW, LOG, REDACT, CONSTRAIN, BLOCK)",
        ),
        (
            "bad regex",
            "pack: {name: a}\nrules:\n  - name: r\n    condition: {tool_name: t, parameter: url, matches_pattern: '(unclosed'}\n    decision: BLOCK\n",
            "pack.yaml:4:64: rules[0].condition.matches_pattern: invalid regular expression: unclosed group",
        ),
        (
            "missing required key",
            "pack: {name: a}\nproviders:\n  - kind: openai\n",
            "pack.yaml:3:5: providers[0].name: missing required key",
        ),
        (
            "missing pack",
            "policies: {chain: []}\n",
            "pack.yaml:1:1: pack: missing required key",
        ),
        (
            "invalid yaml",
            "pack: {name: a\n",
            "pack.yaml:2:1: invalid yaml: did not find expected ',' or '}'",
        ),
        (
            "unknown policy in chain",
            "pack: {name: a}\npolicies:\n  chain: [prompt-injection, pii]\n",
            "pack.yaml:3:29: policies.chain[1]: unknown policy `pii` (expected one of: prompt-injection, pii-detector, secrets-detector, safety-filter, agent-firewall, quality-scorer, human-oversight, audit-logger, budget)",
        ),
        (
            "unknown pii entity",
            "pack: {name: a}\npolicy:\n  pii-detector: {entities: [EMAIL_ADDRESS, SHOE_SIZE]}\n",
            "pack.yaml:3:44: policy.pii-detector.entities[1]: unknown pii entity `SHOE_SIZE` (expected one of: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, US_SSN, IP_ADDRESS, PERSON)",
        ),
        (
            "approval needs constrain",
            "pack: {name: a}\nrules:\n  - name: r\n    condition: {tool_name: t}\n    decision: BLOCK\n    action: {require_approval: true}\n",
            "pack.yaml:6:32: rules[0].action.require_approval: needs `decision: CONSTRAIN`, found `BLOCK`",
        ),
        (
            "pattern without parameter",
            "pack: {name: a}\nrules:\n  - name: r\n    condition: {tool_name: t, matches_pattern: x}\n    decision: LOG\n",
            "pack.yaml:4:31: rules[0].condition.matches_pattern: needs `parameter` in the same condition",
        ),
        (
            "bad usd amount",
            "pack: {name: a}\nbudgets:\n  - {scope: agent, limit_usd: abc}\n",
            "pack.yaml:3:31: budgets[0].limit_usd: `abc` is not a non-negative decimal amount of USD",
        ),
        (
            "restore needs placeholder",
            "pack: {name: a}\npolicy:\n  pii-detector: {strategy: mask, restore: true}\n",
            "pack.yaml:3:43: policy.pii-detector.restore: `restore: true` needs the `placeholder` strategy",
        ),
        (
            "secret ref needs env or file",
            "pack: {name: a}\nproviders:\n  - {name: p, model: m, secret_key_ref: {}}\n",
            "pack.yaml:3:41: providers[0].secret_key_ref: needs `env: NAME` or `file: PATH`",
        ),
    ];
    let mut bad = Vec::new();
    for (what, yaml, want) in cases {
        let got = errors(yaml);
        if &got != want {
            bad.push(format!("{what}:\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn collects_every_error_in_file_order() {
    let yaml = "\
pack: {name: a}
colour: red
providers:
  - name: openai
    modle: gpt-4o
policy:
  prompt-injection: {action: blok}
  pii-detector: {strategies: {EMAIL_ADDRESS: scramble}}
rules:
  - name: r
    condition: {tool: x}
    decision: BLOCK
on_block: maybe
";
    let err = CompiledPack::from_yaml(yaml, "multi.yaml").unwrap_err();
    assert_eq!(err.issues().len(), 6);
    assert_eq!(
        err.to_string(),
        "\
multi.yaml:2:1: colour: unknown key (expected one of: pack, providers, policies, policy, rules, default_decision, tools, workflows, auth, admin, limits, on_block, audit, budgets, rate_limits, prices, cost)
multi.yaml:5:5: providers[0].modle: unknown key (expected one of: name, kind, base_url, model, secret_key_ref, timeout_seconds, connect_timeout_seconds, on_missing_key)
multi.yaml:7:30: policy.prompt-injection.action: unknown value `blok` (expected one of: block, redact, log, allow)
multi.yaml:8:46: policy.pii-detector.strategies.EMAIL_ADDRESS: unknown value `scramble` (expected one of: placeholder, mask, hash, remove)
multi.yaml:11:17: rules[0].condition.tool: unknown condition `tool` (expected one of: agent_name, role, workflow, action_type, tool_name, tool_category, parameter, matches_pattern, equals, in, sender_agent, recipient_agent, content_matches, finding, taint, model, all, any, not)
multi.yaml:13:11: on_block: unknown value `maybe` (expected one of: error, completion)"
    );
    let first = &err.issues()[0];
    assert_eq!(
        (first.line, first.column, first.key.as_str()),
        (2, 1, "colour")
    );
}

#[test]
fn accepts_every_documented_key() {
    let yaml = r#"
pack: {name: full, version: 2, description: every key}
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1/
    model: [gpt-4o, gpt-4o-mini]
    secret_key_ref: {env: OPENAI_API_KEY}
    timeout_seconds: 30
    connect_timeout_seconds: 2.5
    on_missing_key: mock
  - {name: local, kind: mock}
  - {name: f, model: "*", secret_key_ref: {file: /run/secrets/key}}
policies:
  chain: [prompt-injection, pii-detector, secrets-detector, safety-filter, agent-firewall, quality-scorer, human-oversight, audit-logger, budget]
policy:
  prompt-injection: {action: BLOCK, threshold: 0.7, direction: input}
  pii-detector: {action: redact, entities: [EMAIL_ADDRESS, PHONE_NUMBER], strategy: placeholder, strategies: {PHONE_NUMBER: placeholder}, restore: true, direction: both}
  secrets-detector: {action: redact, strategy: hash}
  safety-filter: {action: block, categories: [violence, malware], min_severity: high, direction: output}
  agent-firewall:
    default: deny
    on_violation: strip
    roles:
      planner: {allowed_tools: ["plan_*", "search_*"]}
      executor: {allowed_tools: ["execute_*"], denied_tools: ["execute_shell"]}
    agents:
      auditor: {allowed_tools: []}
    tool_limits: {execute_query: {per_conversation: 10, per_minute: 5}}
    max_turns_per_conversation: 40
    max_message_chars: 20000
    flood_repeats: 5
    code_guard: true
  quality-scorer: {threshold: 0.6, action: log, weights: {refusal: 0.2}}
  human-oversight: {timeout_seconds: 120, on_timeout: allow, mode: non_holding}
  audit-logger: {tags: {team: core, tier: 1}, capture_fields: [sender_agents, "header:x-request-id"]}
  budget: {action: block}
rules:
  - name: r1
    condition: {all: [{agent_name: [a, b]}, {not: {role: admin}}], any: [{model: "gpt-*"}, {finding: pii}]}
    decision: LOG
    capture_fields: [workflow]
    phase: input
  - name: r2
    condition: {action_type: agent_message, sender_agent: x, recipient_agent: y, content_matches: "(?i)secret"}
    decision: CONSTRAIN
    reason: check
    action: {require_approval: true, timeout_seconds: 60, on_timeout: deny}
default_decision: block
tools:
  send_http_request: {category: external_api}
workflows:
  support: {members: [planner, executor]}
auth: optional
admin: {token_ref: {env: PALISADE_ADMIN_TOKEN}}
limits: {max_body_bytes: 1048576}
on_block: completion
audit:
  content: full
  durability: async
  on_audit_failure: allow
  checkpoint: {every_events: 500, every_seconds: 30, signing_key_ref: {file: keys/audit.pem}}
budgets:
  - {scope: agent, match: worker, limit_usd: 5.00, period: day}
  - {scope: conversation, match: "*", limit_usd: 0.50, period: total, soft_limit_usd: 0.40}
rate_limits:
  - {scope: agent, match: "*", requests_per_minute: 600, tokens_per_minute: 200000, max_concurrent: 16}
prices:
  gpt-4o: {input: 2.50, output: 10.00, cached_input: 1.25}
  my-model: {input: "0.000001", output: 1e-6}
cost: {default_max_tokens: 1024}
"#;
    let p = CompiledPack::from_yaml(yaml, "full.yaml").unwrap_or_else(|e| panic!("{e}"));
    use exchange::UsdAmount;
    use policy_engine::*;
    let s = &p.settings;
    assert_eq!(p.meta.version, "2");
    assert_eq!(p.description(), Some("every key"));
    assert_eq!(s.providers.len(), 3);
    assert_eq!(s.providers[0].base_url, "https://api.openai.com/v1");
    assert_eq!(s.providers[0].on_missing_key, MissingKey::Mock);
    assert_eq!(
        s.providers[0].connect_timeout,
        std::time::Duration::from_millis(2500)
    );
    assert_eq!(s.providers[1].kind, ProviderKind::Mock);
    assert_eq!(s.providers[1].models, ["mock"]);
    assert_eq!(s.providers[1].base_url, "");
    assert_eq!(
        s.providers[2].secret_key_ref,
        Some(SecretRef::File("/run/secrets/key".into()))
    );
    assert_eq!(s.auth, AuthMode::Optional);
    assert_eq!(
        s.admin_token_ref,
        Some(SecretRef::Env("PALISADE_ADMIN_TOKEN".into()))
    );
    assert_eq!(s.block_response, BlockResponse::Completion);
    assert_eq!(s.limits.max_body_bytes, 1_048_576);
    assert_eq!(s.default_decision, exchange::Decision::Block);
    assert_eq!(s.audit.content, ContentCapture::Full);
    assert_eq!(s.audit.durability, Durability::Async);
    assert_eq!(s.audit.on_failure, OnAuditFailure::Allow);
    assert_eq!(
        s.audit.checkpoint.as_ref().map(|c| c.every_events),
        Some(500)
    );
    assert_eq!(
        s.audit.tags,
        [
            ("team".to_owned(), "core".to_owned()),
            ("tier".to_owned(), "1".to_owned())
        ]
    );
    assert_eq!(
        s.audit.capture_fields,
        ["sender_agents", "header:x-request-id"]
    );
    assert_eq!(s.cost.budgets[0].limit, UsdAmount::parse("5").unwrap());
    assert_eq!(s.cost.budgets[0].matcher, ScopeMatch::Name("worker".into()));
    assert_eq!(s.cost.budgets[1].matcher, ScopeMatch::Each);
    assert_eq!(
        s.cost.budgets[1].soft_limit,
        Some(UsdAmount::parse("0.4").unwrap())
    );
    assert_eq!(s.cost.rate_limits[0].max_concurrent, Some(16));
    assert_eq!(s.cost.prices[0].model, "gpt-4o");
    assert_eq!(
        s.cost.prices[0].cached_input_per_million,
        Some(UsdAmount::parse("1.25").unwrap())
    );
    assert_eq!(
        s.cost.prices[1].output_per_million,
        UsdAmount::parse("0.000001").unwrap()
    );
    assert_eq!(s.cost.default_max_tokens, 1024);
    assert_eq!(p.tool_category("send_http_request"), Some("external_api"));
    assert_eq!(p.workflow_members("support").map(<[String]>::len), Some(2));
    assert_eq!(p.oversight().timeout_seconds, 120);
    assert!(p.oversight().non_holding);
    assert_eq!(p.rule_names(), ["r1", "r2"]);
}

#[test]
fn load_reports_missing_file() {
    let err = CompiledPack::load(std::path::Path::new("/nonexistent/pack.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/pack.yaml:0:0: cannot read policy pack: "),
        "{err}"
    );
}
