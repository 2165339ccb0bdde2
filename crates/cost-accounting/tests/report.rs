#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use cost_accounting::{CostEngine, CostError, CostLayer, GroupBy, ReportFormat, report};
use exchange::BoxError;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

/// A group chat of three agents in one conversation: planner ×2, coder ×1, critic ×1 (mock
/// prices: prompt 9 tokens, completion 100 → 0.000209 each; the critic used `gpt-4o`).
async fn record_group_chat(dir: &std::path::Path) -> CostEngine {
    let engine = CostEngine::open(dir, settings()).unwrap();
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Ok::<_, BoxError>(json_answer(Some((9, 100))))
    }));
    for (agent, model) in [
        ("planner", "mock"),
        ("coder", "mock"),
        ("critic", "gpt-4o-2024-08-06"),
        ("planner", "mock"),
    ] {
        let mut body = chat_body(false, None);
        body["model"] = json!(model);
        let (req, h) = request(agent, "chat-42", &body);
        h.lock().identity.role = Some(format!("{agent}-role"));
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        body_string(res).await;
    }
    let e = engine.clone();
    tokio::task::spawn_blocking(move || e.flush())
        .await
        .unwrap()
        .unwrap();
    engine
}

#[tokio::test]
async fn report_by_agent_as_table_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let _engine = record_group_chat(dir.path()).await;
    // gpt-4o: 9 × 2.5e-6 + 100 × 10e-6 = 0.0010225
    let table = report(dir.path(), GroupBy::Agent, None, ReportFormat::Table).unwrap();
    assert_eq!(
        table,
        "\
AGENT    REQUESTS  PROMPT_TOKENS  COMPLETION_TOKENS  CACHED_TOKENS  ESTIMATED   COST_USD  UNKNOWN_COST
critic          1              9                100              0          0  0.0010225             0
planner         2             18                200              0          0   0.000418             0
coder           1              9                100              0          0   0.000209             0
TOTAL           4             36                400              0          0  0.0016495             0
"
    );
    let csv = report(dir.path(), GroupBy::Agent, None, ReportFormat::Csv).unwrap();
    assert_eq!(
        csv,
        "\
agent,requests,prompt_tokens,completion_tokens,cached_tokens,estimated_requests,cost_usd,unknown_cost_requests
critic,1,9,100,0,0,0.0010225,0
planner,2,18,200,0,0,0.000418,0
coder,1,9,100,0,0,0.000209,0
"
    );
    let v: Value = serde_json::from_str(
        &report(dir.path(), GroupBy::Agent, None, ReportFormat::Json).unwrap(),
    )
    .unwrap();
    assert_eq!(v["group_by"], "agent");
    assert_eq!(v["since_seconds"], Value::Null);
    assert_eq!(
        v["rows"][1],
        json!({"agent": "planner", "requests": 2, "prompt_tokens": 18, "completion_tokens": 200,
               "cached_tokens": 0, "estimated_requests": 0, "cost_usd": "0.000418", "unknown_cost_requests": 0})
    );
    assert_eq!(v["total"]["cost_usd"], "0.0016495");
    assert_eq!(v["total"]["requests"], 4);
}

#[tokio::test]
async fn report_attributes_all_turns_to_one_conversation_and_groups_other_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let _engine = record_group_chat(dir.path()).await;
    let csv = report(
        dir.path(),
        GroupBy::Conversation,
        Some(Duration::from_secs(24 * 3600)),
        ReportFormat::Csv,
    )
    .unwrap();
    assert_eq!(csv.lines().nth(1), Some("chat-42,4,36,400,0,0,0.0016495,0"));
    assert_eq!(csv.lines().count(), 2);
    let csv = report(dir.path(), GroupBy::Model, None, ReportFormat::Csv).unwrap();
    assert_eq!(
        csv.lines().skip(1).collect::<Vec<_>>(),
        [
            "gpt-4o-2024-08-06,1,9,100,0,0,0.0010225,0",
            "mock,3,27,300,0,0,0.000627,0"
        ]
    );
    let csv = report(dir.path(), GroupBy::Role, None, ReportFormat::Csv).unwrap();
    assert_eq!(
        csv.lines().nth(2),
        Some("planner-role,2,18,200,0,0,0.000418,0")
    );
    // No workflow was set: one group without a value.
    let table = report(dir.path(), GroupBy::Workflow, None, ReportFormat::Table).unwrap();
    assert!(
        table.lines().nth(1).unwrap().starts_with("(none)"),
        "{table}"
    );
    let v: Value = serde_json::from_str(
        &report(dir.path(), GroupBy::Workflow, None, ReportFormat::Json).unwrap(),
    )
    .unwrap();
    assert_eq!(v["rows"][0]["workflow"], Value::Null);
}

#[tokio::test]
async fn metrics_show_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let engine = record_group_chat(dir.path()).await;
    let mut out = String::new();
    engine.render_prometheus(&mut out);
    for line in [
        "palisade_cost_usd_total{agent=\"planner\",model=\"mock\"} 0.000418",
        "palisade_cost_usd_total{agent=\"critic\",model=\"gpt-4o-2024-08-06\"} 0.0010225",
        "palisade_cost_requests_total{agent=\"planner\",model=\"mock\"} 2",
        "palisade_cost_tokens_total{agent=\"coder\",model=\"mock\",kind=\"completion\"} 100",
        "palisade_cost_ledger_write_errors_total 0",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
    }
}

#[test]
fn report_on_a_missing_ledger_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = report(dir.path(), GroupBy::Agent, None, ReportFormat::Table).unwrap_err();
    assert!(matches!(err, CostError::LedgerMissing { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "cost ledger `{}` does not exist (no traffic recorded yet, or a different data dir)",
            dir.path().join("ledger.db").display()
        )
    );
    assert_eq!("agent".parse::<GroupBy>(), Ok(GroupBy::Agent));
    assert_eq!(
        "team".parse::<GroupBy>(),
        Err(
            "unknown grouping `team` (expected agent, role, workflow, conversation, model or key)"
                .to_owned()
        )
    );
    assert_eq!("csv".parse::<ReportFormat>(), Ok(ReportFormat::Csv));
}
