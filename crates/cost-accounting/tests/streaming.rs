#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::*;
use cost_accounting::{CostEngine, CostLayer, GroupBy, count_text, report_rows};
use exchange::{BoxError, ResponseBody, TokenUsage};
use http_body::Body;
use http_body_util::BodyExt;
use policy_engine::{Period, Scope};
use serde_json::Value;
use tower::{Layer, ServiceExt};

fn engine_with_budget(dir: &std::path::Path) -> CostEngine {
    let mut s = settings();
    s.budgets = vec![budget(Scope::Agent, "*", "1", Period::Day)];
    CostEngine::open(dir, s).unwrap()
}

async fn turn(
    engine: &CostEngine,
    stream: bool,
    usage: Option<(u64, u64)>,
) -> (Option<String>, Option<TokenUsage>, String) {
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(move |_req| async move {
        Ok::<_, BoxError>(if stream {
            sse_answer(usage)
        } else {
            json_answer(usage)
        })
    }));
    let (req, h) = request("a", "c", &chat_body(stream, None));
    let res = svc.oneshot(req).await.unwrap();
    let text = body_string(res).await;
    let ex = h.lock();
    (ex.cost_usd.clone(), ex.usage, text)
}

#[tokio::test]
async fn streamed_and_non_streamed_turns_cost_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_budget(dir.path());
    // With provider usage.
    let json = turn(&engine, false, Some((12, 5))).await;
    let sse = turn(&engine, true, Some((12, 5))).await;
    assert_eq!(json.0.as_deref(), Some("0.000022"));
    assert_eq!(json.0, sse.0);
    assert_eq!(json.1, sse.1);
    assert_eq!(sse.1.map(|u| u.estimated), Some(false));
    // Without: both estimated by the tokenizer, to the same figures.
    let json = turn(&engine, false, None).await;
    let sse = turn(&engine, true, None).await;
    let completion = count_text("mock", &CONTENT.concat());
    assert_eq!(
        json.1,
        Some(TokenUsage {
            prompt_tokens: 9,
            completion_tokens: completion,
            cached_tokens: 0,
            estimated: true
        })
    );
    assert_eq!(json.1, sse.1);
    assert_eq!(json.0, sse.0);
    assert_eq!(
        json.0,
        Some(
            exchange::UsdAmount::from_picodollars(u128::from(9 + 2 * completion) * 1_000_000)
                .to_string()
        )
    );
}

#[tokio::test]
async fn stream_asks_upstream_for_usage_and_hides_it_from_a_client_that_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_budget(dir.path());
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(
        |req: http::Request<Bytes>| async move {
            let sent: Value = serde_json::from_slice(req.body()).unwrap();
            assert_eq!(sent["stream_options"]["include_usage"], true);
            assert_eq!(sent["messages"][0]["content"], "hello world");
            Ok::<_, BoxError>(sse_answer(Some((9, 4))))
        },
    ));
    let (req, h) = request("a", "c", &chat_body(true, None));
    let text = body_string(svc.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(text, sse_text(None));
    assert!(h.lock().request_modified);
    assert_eq!(h.lock().cost_usd.as_deref(), Some("0.000017"));

    // A client that asked for usage gets it, and its request goes up unchanged.
    let (req, h) = request("a", "c", &chat_body(true, Some(true)));
    let original = req.body().clone();
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(
        move |req: http::Request<Bytes>| {
            let original = original.clone();
            async move {
                assert_eq!(req.body(), &original);
                Ok::<_, BoxError>(sse_answer(Some((9, 4))))
            }
        },
    ));
    let text = body_string(svc.oneshot(req).await.unwrap()).await;
    assert_eq!(text, sse_text(Some((9, 4))));
    assert!(!h.lock().request_modified);
}

#[tokio::test]
async fn client_disconnect_mid_stream_settles_on_what_was_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_budget(dir.path());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let rx = std::sync::Mutex::new(Some(rx));
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(move |_req| {
        let rx = rx.lock().unwrap().take().unwrap();
        async move {
            Ok::<_, BoxError>(
                http::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(ChannelBody(rx).boxed_unsync())
                    .unwrap(),
            )
        }
    }));
    let (req, h) = request("a", "c", &chat_body(true, None));
    let res = svc.oneshot(req).await.unwrap();
    let full = sse_text(None);
    let events: Vec<&str> = full.split_inclusive("\n\n").collect();
    // First event split in two frames, second whole; the rest never comes.
    let (a, b) = events[0].split_at(10);
    tx.send(Bytes::copy_from_slice(a.as_bytes())).unwrap();
    tx.send(Bytes::copy_from_slice(b.as_bytes())).unwrap();
    tx.send(Bytes::copy_from_slice(events[1].as_bytes()))
        .unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, Bytes::copy_from_slice(events[0].as_bytes()));
    assert!(h.lock().usage.is_none());
    drop(body); // the client goes away
    let completion = count_text("mock", "Hello the");
    assert_eq!(
        h.lock().usage,
        Some(TokenUsage {
            prompt_tokens: 9,
            completion_tokens: completion,
            cached_tokens: 0,
            estimated: true
        })
    );
    assert_eq!(
        engine.spent(Scope::Agent, "a", Period::Day),
        Some(exchange::UsdAmount::from_picodollars(
            u128::from(9 + 2 * completion) * 1_000_000
        ))
    );
}

#[tokio::test]
async fn stream_cut_by_upstream_error_is_charged_for_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_budget(dir.path());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    struct Failing(ChannelBody);
    impl Body for Failing {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
            match Pin::new(&mut self.0).poll_frame(cx) {
                Poll::Ready(None) => Poll::Ready(Some(Err("connection reset".into()))),
                other => other,
            }
        }
    }
    let rx = std::sync::Mutex::new(Some(rx));
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(move |_req| {
        let rx = rx.lock().unwrap().take().unwrap();
        async move {
            Ok::<_, BoxError>(
                http::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Failing(ChannelBody(rx)).boxed_unsync())
                    .unwrap(),
            )
        }
    }));
    let (req, h) = request("a", "c", &chat_body(true, None));
    let res = svc.oneshot(req).await.unwrap();
    let full = sse_text(None);
    tx.send(Bytes::copy_from_slice(
        full.split_inclusive("\n\n").next().unwrap().as_bytes(),
    ))
    .unwrap();
    drop(tx);
    let err = res.into_body().collect().await.err().unwrap();
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(
        h.lock()
            .usage
            .map(|u| (u.prompt_tokens, u.completion_tokens, u.estimated)),
        Some((9, count_text("mock", "Hel"), true))
    );
}

#[tokio::test]
async fn failed_upstream_call_releases_the_reservation_without_charge() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_budget(dir.path());
    // 502 without usage: nothing charged, no ledger row.
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Ok::<_, BoxError>(
            exchange::ApiError::bad_gateway("upstream refused the connection").into_response(),
        )
    }));
    let (req, h) = request("a", "c", &chat_body(false, None));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::BAD_GATEWAY);
    body_string(res).await;
    assert_eq!(h.lock().usage, None);
    // Inner error: released too.
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| async {
        Err::<http::Response<ResponseBody>, BoxError>("store down".into())
    }));
    let (req, _) = request("a", "c", &chat_body(false, None));
    assert!(svc.oneshot(req).await.is_err());
    assert_eq!(engine.spent(Scope::Agent, "a", Period::Day), Some(usd("0")));
    let e = engine.clone();
    tokio::task::spawn_blocking(move || e.flush())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        report_rows(dir.path(), GroupBy::Agent, None).unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn caller_gone_before_the_answer_is_charged_the_prompt_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_budget(dir.path());
    let svc = CostLayer::new(engine.clone()).layer(tower::service_fn(|_req| {
        std::future::pending::<Result<http::Response<ResponseBody>, BoxError>>()
    }));
    let (req, h) = request("a", "c", &chat_body(false, None));
    let mut fut = Box::pin(svc.oneshot(req));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    drop(fut);
    assert_eq!(
        h.lock().usage,
        Some(TokenUsage {
            prompt_tokens: 9,
            completion_tokens: 0,
            cached_tokens: 0,
            estimated: true
        })
    );
    assert_eq!(h.lock().cost_usd.as_deref(), Some("0.000009"));
}
