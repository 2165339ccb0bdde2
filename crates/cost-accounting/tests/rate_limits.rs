#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use cost_accounting::{CostEngine, CostLayer};
use exchange::{BoxError, ResponseBody};
use serde_json::Value;
use tower::{Layer, ServiceExt};

type Svc = tower::util::BoxCloneService<
    http::Request<bytes::Bytes>,
    http::Response<ResponseBody>,
    BoxError,
>;

fn service(engine: &CostEngine, usage: (u64, u64)) -> Svc {
    tower::util::BoxCloneService::new(CostLayer::new(engine.clone()).layer(tower::service_fn(
        move |_req| async move { Ok::<_, BoxError>(json_answer(Some(usage))) },
    )))
}

/// Status, Retry-After, error message.
async fn call(svc: &Svc, agent: &str) -> (u16, Option<String>, Option<String>) {
    let (req, _) = request(agent, "c", &chat_body(false, None));
    let res = svc.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = body_string(res).await;
    let msg = if status == 429 {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_exceeded");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        v["error"]["message"].as_str().map(str::to_owned)
    } else {
        None
    };
    (status, retry, msg)
}

#[tokio::test(start_paused = true)]
async fn requests_per_minute_refill_continuously() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.rate_limits = vec![rate_limit(Some(2), None, None)];
    let engine = CostEngine::open(dir.path(), s).unwrap();
    let svc = service(&engine, (9, 1));
    assert_eq!(call(&svc, "a").await.0, 200);
    assert_eq!(call(&svc, "a").await.0, 200);
    assert_eq!(
        call(&svc, "a").await,
        (
            429,
            Some("30".to_owned()),
            Some("rate limit exceeded: agent `a` (match `*`) is limited to 2 requests per minute; retry after 30 s".to_owned())
        )
    );
    // Each agent has its own bucket.
    assert_eq!(call(&svc, "b").await.0, 200);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(call(&svc, "a").await.1.as_deref(), Some("1"));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(call(&svc, "a").await.0, 200);
    assert_eq!(call(&svc, "a").await.0, 429);
    let mut out = String::new();
    engine.render_prometheus(&mut out);
    assert!(out.contains(
        "palisade_rate_limit_rejections_total{scope=\"agent\",match=\"*\",limit=\"requests_per_minute\"} 3\n"
    ), "{out}");
}

#[tokio::test(start_paused = true)]
async fn tokens_per_minute_charge_actual_usage() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.rate_limits = vec![rate_limit(None, Some(120), None)];
    let engine = CostEngine::open(dir.path(), s).unwrap();
    // Each call: 9 prompt tokens estimated up front, 9 + 100 actually used.
    let svc = service(&engine, (9, 100));
    assert_eq!(call(&svc, "a").await.0, 200);
    // 120 - 109 = 11 left: the next prompt (9) fits.
    assert_eq!(call(&svc, "a").await.0, 200);
    // 11 - 109 = -98: 9 more need (9 + 98) × 60 / 120 = 53.5 s.
    let (status, retry, msg) = call(&svc, "a").await;
    assert_eq!((status, retry.as_deref()), (429, Some("54")));
    assert_eq!(
        msg.as_deref(),
        Some(
            "rate limit exceeded: agent `a` (match `*`) is limited to 120 tokens per minute; retry after 54 s"
        )
    );
    tokio::time::advance(Duration::from_secs(54)).await;
    assert_eq!(call(&svc, "a").await.0, 200);
}

#[tokio::test(start_paused = true)]
async fn max_concurrent_permit_is_held_until_the_body_ends_or_drops() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.rate_limits = vec![rate_limit(None, None, Some(1))];
    let engine = CostEngine::open(dir.path(), s).unwrap();
    let svc = service(&engine, (9, 1));
    let (req, _) = request("a", "c", &chat_body(false, None));
    let first = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(first.status(), 200);
    // The first body is not finished: a second request is refused.
    assert_eq!(
        call(&svc, "a").await,
        (
            429,
            Some("1".to_owned()),
            Some("rate limit exceeded: agent `a` (match `*`) is limited to 1 concurrent requests; retry after 1 s".to_owned())
        )
    );
    assert_eq!(call(&svc, "b").await.0, 200);
    drop(first);
    assert_eq!(call(&svc, "a").await.0, 200);
    // Finished bodies release their permit too.
    assert_eq!(call(&svc, "a").await.0, 200);
}
