#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use cost_accounting::{CostEngine, CostLayer, GroupBy, ReportFormat, report_rows};
use exchange::{BoxError, Outcome, ResponseBody};
use policy_engine::{Period, Scope};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tower::{Layer, ServiceExt};

/// 200 requests from one agent in parallel against a budget that fits exactly 10 worst cases:
/// 10 reach the upstream (all held there at once), 190 get 429, committed spend = budget.
async fn parallel_requests_respect_the_budget(stream: bool) {
    let dir = tempfile::tempdir().unwrap();
    let limit = "0.00209"; // 10 × WORST
    let mut s = settings();
    s.budgets = vec![budget(Scope::Agent, "worker", limit, Period::Day)];
    let engine = CostEngine::open(dir.path(), s).unwrap();

    let arrived = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let (gate_tx, gate_rx) = watch::channel(false);

    let inner = {
        let arrived = arrived.clone();
        let progress = progress.clone();
        tower::service_fn(move |req: http::Request<Bytes>| {
            let arrived = arrived.clone();
            let progress = progress.clone();
            let mut gate = gate_rx.clone();
            async move {
                let sent: Value = serde_json::from_slice(req.body()).unwrap();
                if stream {
                    assert_eq!(sent["stream_options"]["include_usage"], true);
                }
                arrived.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
                gate.wait_for(|open| *open).await.unwrap();
                // Actual usage equals the worst case: prompt 9, completion 100.
                Ok::<_, BoxError>(if stream {
                    sse_answer(Some((9, 100)))
                } else {
                    json_answer(Some((9, 100)))
                })
            }
        })
    };
    let svc: tower::util::BoxCloneService<
        http::Request<Bytes>,
        http::Response<ResponseBody>,
        BoxError,
    > = tower::util::BoxCloneService::new(CostLayer::new(engine.clone()).layer(inner));

    let mut tasks = Vec::new();
    for i in 0..200 {
        let svc = svc.clone();
        let rejected = rejected.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let (req, handle) = request("worker", &format!("c{i}"), &chat_body(stream, None));
            let res = svc.oneshot(req).await.unwrap();
            let status = res.status();
            if status == http::StatusCode::TOO_MANY_REQUESTS {
                assert!(res.headers().contains_key("retry-after"));
                let body: Value = serde_json::from_str(&body_string(res).await).unwrap();
                assert_eq!(body["error"]["type"], "budget_exceeded");
                assert_eq!(body["error"]["code"], "budget_exceeded");
                assert_eq!(
                    handle.lock().outcome,
                    Outcome::Rejected {
                        status: 429,
                        code: "budget_exceeded".to_owned()
                    }
                );
                rejected.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
                (status, None)
            } else {
                let text = body_string(res).await;
                if stream {
                    assert!(!text.contains("prompt_tokens"), "usage chunk not stripped");
                }
                let cost = handle.lock().cost_usd.clone();
                (status, cost)
            }
        }));
    }
    // Wait until every request has either reached the upstream or been refused.
    while arrived.load(Ordering::SeqCst) + rejected.load(Ordering::SeqCst) < 200 {
        progress.notified().await;
    }
    assert_eq!(arrived.load(Ordering::SeqCst), 10);
    assert_eq!(rejected.load(Ordering::SeqCst), 190);
    gate_tx.send(true).unwrap();

    let mut ok = 0;
    for t in tasks {
        let (status, cost) = t.await.unwrap();
        if status == http::StatusCode::OK {
            ok += 1;
            assert_eq!(cost.as_deref(), Some(WORST));
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(
        engine.spent(Scope::Agent, "worker", Period::Day),
        Some(usd(limit))
    );
    let e = engine.clone();
    tokio::task::spawn_blocking(move || e.flush())
        .await
        .unwrap()
        .unwrap();
    let rows = report_rows(dir.path(), GroupBy::Agent, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].requests, 10);
    assert_eq!(rows[0].cost, usd(limit));
    assert!(rows[0].cost <= usd(limit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_requests_spend_at_most_the_budget() {
    parallel_requests_respect_the_budget(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_streams_spend_at_most_the_budget() {
    parallel_requests_respect_the_budget(true).await;
}

#[tokio::test]
async fn settles_to_actual_usage_and_frees_the_rest_of_the_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    // Worst case 0.000209, actual cost 0.000029: after n requests n × 0.000029 + 0.000209
    // must fit, so exactly 5 pass (0.000325 ≤ 0.00035 < 0.000354).
    s.budgets = vec![budget(Scope::Agent, "*", "0.00035", Period::Month)];
    let engine = CostEngine::open(dir.path(), s).unwrap();
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Ok::<_, BoxError>(json_answer(Some((9, 10))))
    }));
    for _ in 0..5 {
        let (req, h) = request("a", "c", &chat_body(false, None));
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
        body_string(res).await;
        assert_eq!(h.lock().cost_usd.as_deref(), Some("0.000029"));
    }
    // 5 × 0.000029 = 0.000145 committed; another worst case (0.000209) no longer fits.
    assert_eq!(
        engine.spent(Scope::Agent, "a", Period::Month),
        Some(usd("0.000145"))
    );
    let (req, _) = request("a", "c", &chat_body(false, None));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::TOO_MANY_REQUESTS);
    let body: Value = serde_json::from_str(&body_string(res).await).unwrap();
    let msg = body["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.starts_with("budget exceeded: agent budget for `a` (match `*`, period month) has a limit of 0.00035 USD; spent 0.000145 USD, in flight 0.00 USD, this request may cost up to 0.000209 USD; it resets at "),
        "{msg}"
    );
    assert!(msg.ends_with("-01T00:00:00Z"), "{msg}");
    // Another agent has its own budget (match "*": each agent separately).
    let (req, _) = request("b", "c", &chat_body(false, None));
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().status(),
        http::StatusCode::OK
    );
}

#[tokio::test]
async fn budget_counters_are_initialised_from_the_ledger_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.budgets = vec![budget(Scope::Agent, "worker", "0.000418", Period::Total)];
    let inner = tower::service_fn(|_req| async { Ok::<_, BoxError>(json_answer(Some((9, 100)))) });
    {
        let engine = CostEngine::open(dir.path(), s.clone()).unwrap();
        let svc = CostLayer::new(engine.clone()).layer(inner);
        for _ in 0..2 {
            let (req, _) = request("worker", "c", &chat_body(false, None));
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), http::StatusCode::OK);
            body_string(res).await;
        }
    } // dropping the last engine clone drains the ledger writer

    let engine = CostEngine::open(dir.path(), s).unwrap();
    assert_eq!(
        engine.spent(Scope::Agent, "worker", Period::Total),
        Some(usd("0.000418"))
    );
    let svc = CostLayer::new(engine.clone()).layer(inner);
    let (req, _) = request("worker", "c", &chat_body(false, None));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert!(
        !res.headers().contains_key("retry-after"),
        "a total budget never resets"
    );
    let body: Value = serde_json::from_str(&body_string(res).await).unwrap();
    assert_eq!(
        body["error"]["message"],
        "budget exceeded: agent budget for `worker` (match `worker`, period total) has a limit of 0.000418 USD; spent 0.000418 USD, in flight 0.00 USD, this request may cost up to 0.000209 USD; it does not reset"
    );
}

#[tokio::test]
async fn reload_keeps_spend_and_loads_new_budget_dimensions_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.budgets = vec![budget(Scope::Agent, "*", "1", Period::Day)];
    let engine = CostEngine::open(dir.path(), s.clone()).unwrap();
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Ok::<_, BoxError>(json_answer(Some((9, 100))))
    }));
    for conv in ["c1", "c1", "c2"] {
        let (req, _) = request("worker", conv, &chat_body(false, None));
        body_string(svc.clone().oneshot(req).await.unwrap()).await;
    }
    // A conversation budget appears on reload: its spend comes from the ledger.
    s.budgets
        .push(budget(Scope::Conversation, "*", "0.0005", Period::Total));
    let e = engine.clone();
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || e.reload(s2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        engine.spent(Scope::Agent, "worker", Period::Day),
        Some(usd("0.000627"))
    );
    assert_eq!(
        engine.spent(Scope::Conversation, "c1", Period::Total),
        Some(usd("0.000418"))
    );
    // c1 has 0.000418 of 0.0005: the next worst case does not fit; c2 still has room.
    let (req, _) = request("worker", "c1", &chat_body(false, None));
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().status(),
        http::StatusCode::TOO_MANY_REQUESTS
    );
    let (req, _) = request("worker", "c2", &chat_body(false, None));
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().status(),
        http::StatusCode::OK
    );
}

#[tokio::test]
async fn soft_limit_logs_and_counts_before_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    let mut b = budget(Scope::Conversation, "*", "0.50", Period::Total);
    b.soft_limit = Some(usd("0.0004"));
    s.budgets = vec![b];
    let engine = CostEngine::open(dir.path(), s).unwrap();
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Ok::<_, BoxError>(json_answer(Some((9, 100))))
    }));
    for _ in 0..3 {
        let (req, _) = request("a", "conv-1", &chat_body(false, None));
        // Dropped unread: the buffered answer is still accounted from the provider's usage.
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap().status(),
            http::StatusCode::OK
        );
    }
    let mut out = String::new();
    engine.render_prometheus(&mut out);
    assert!(
        out.contains(
            "palisade_budget_soft_limit_alerts_total{scope=\"conversation\",match=\"*\",period=\"total\"} 1\n"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn unknown_model_cost_is_unknown_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.budgets = vec![budget(Scope::Agent, "*", "0.000001", Period::Day)];
    let engine = CostEngine::open(dir.path(), s).unwrap();
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Ok::<_, BoxError>(json_answer(Some((9, 100))))
    }));
    let mut body = chat_body(false, None);
    body["model"] = "my-private-finetune".into();
    let (req, h) = request("a", "c", &body);
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    body_string(res).await;
    {
        let ex = h.lock();
        assert!(ex.cost_unknown);
        assert_eq!(ex.cost_usd, None);
        assert_eq!(ex.usage.map(|u| u.completion_tokens), Some(100));
    }
    let mut out = String::new();
    engine.render_prometheus(&mut out);
    assert!(
        out.contains("palisade_cost_unknown_price_total{model=\"my-private-finetune\"} 1\n"),
        "{out}"
    );
    let e = engine.clone();
    tokio::task::spawn_blocking(move || e.flush())
        .await
        .unwrap()
        .unwrap();
    let rows = report_rows(dir.path(), GroupBy::Model, None).unwrap();
    assert_eq!(rows[0].unknown_cost_requests, 1);
    assert_eq!(rows[0].cost, usd("0"));
    let table =
        cost_accounting::report(dir.path(), GroupBy::Model, None, ReportFormat::Table).unwrap();
    assert!(table.contains("my-private-finetune"), "{table}");
}

#[tokio::test]
async fn works_alone_with_identity_from_header_claims() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.budgets = vec![budget(Scope::Workflow, "nightly", "0.0003", Period::Day)];
    let engine = CostEngine::open(dir.path(), s).unwrap();
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Ok::<_, BoxError>(json_answer(Some((9, 100))))
    }));
    let req = || {
        http::Request::post("/v1/chat/completions")
            .header("x-palisade-agent", "embedded")
            .header("x-palisade-workflow", "nightly")
            .header("x-palisade-conversation", "conv-9")
            .body(Bytes::from(chat_body(false, None).to_string()))
            .unwrap()
    };
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    body_string(res).await;
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::TOO_MANY_REQUESTS);
    // A body that is not a chat request is answered 400 without calling the inner service.
    let bad = http::Request::post("/v1/chat/completions")
        .body(Bytes::from_static(b"{\"model\": 1}"))
        .unwrap();
    let res = svc.clone().oneshot(bad).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::BAD_REQUEST);
    let e = engine.clone();
    tokio::task::spawn_blocking(move || e.flush())
        .await
        .unwrap()
        .unwrap();
    let csv =
        cost_accounting::report(dir.path(), GroupBy::Workflow, None, ReportFormat::Csv).unwrap();
    assert_eq!(csv.lines().nth(1), Some("nightly,1,9,100,0,0,0.000209,0"));
    let csv = cost_accounting::report(dir.path(), GroupBy::Conversation, None, ReportFormat::Csv)
        .unwrap();
    assert_eq!(csv.lines().nth(1), Some("conv-9,1,9,100,0,0,0.000209,0"));
}
