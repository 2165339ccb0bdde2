//! AuditLayer with `tower::service_fn` inner services: no network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use audit_chain::{
    AuditContext, AuditEvent, AuditLayer, AuditWriter, ChainHead, Checkpoint, EventFilter,
    EventStore, OutcomeRecord, SqliteOptions, SqliteStore, StoreError, StoredEvent, SyncMode,
    WriterConfig, db_path,
};
use bytes::Bytes;
use exchange::{BoxError, ExchangeHandle, Outcome, ResponseBody};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use policy_engine::{ContentCapture, Durability, OnAuditFailure};
use tower::{Layer, Service, ServiceExt};

/// A store whose commits can be held (to observe ordering) or fail (disk full).
struct TestStore {
    inner: SqliteStore,
    fail: Arc<AtomicBool>,
    gated: Arc<AtomicBool>,
    commit_started: std::sync::mpsc::Sender<()>,
    gate: std::sync::mpsc::Receiver<()>,
}

impl EventStore for TestStore {
    fn begin(&mut self) -> Result<Option<ChainHead>, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Refused("database or disk is full".to_owned()));
        }
        self.inner.begin()
    }
    fn insert_event(&mut self, e: &StoredEvent) -> Result<(), StoreError> {
        self.inner.insert_event(e)
    }
    fn insert_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
        self.inner.insert_checkpoint(c)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        if self.gated.load(Ordering::SeqCst) {
            let _ = self.commit_started.send(());
            let _ = self.gate.recv();
        }
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback();
    }
    fn head(&mut self) -> Result<Option<ChainHead>, StoreError> {
        self.inner.head()
    }
    fn read_events(
        &mut self,
        f: &EventFilter,
        a: u64,
        l: usize,
        o: &mut Vec<StoredEvent>,
    ) -> Result<(), StoreError> {
        self.inner.read_events(f, a, l, o)
    }
    fn checkpoints(&mut self, from: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints(from)
    }
}

struct Harness {
    dir: tempfile::TempDir,
    writer: AuditWriter,
    fail: Arc<AtomicBool>,
    gated: Arc<AtomicBool>,
    commit_started: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
    ctx: Arc<ArcSwap<AuditContext>>,
}

fn harness(durability: Durability, on_failure: OnAuditFailure) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(
        &db_path(dir.path()),
        SqliteOptions {
            sync: SyncMode::Normal,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let fail = Arc::new(AtomicBool::new(false));
    let gated = Arc::new(AtomicBool::new(false));
    let store = TestStore {
        inner,
        fail: fail.clone(),
        gated: gated.clone(),
        commit_started: started_tx,
        gate: release_rx,
    };
    let writer = AuditWriter::with_store(store, WriterConfig::default()).unwrap();
    let mut ctx = common::ctx(ContentCapture::Redacted);
    ctx.settings.durability = durability;
    ctx.settings.on_failure = on_failure;
    Harness {
        dir,
        writer,
        fail,
        gated,
        commit_started: started_rx,
        release: release_tx,
        ctx: Arc::new(ArcSwap::from_pointee(ctx)),
    }
}

impl Harness {
    fn events(&self) -> Vec<AuditEvent> {
        self.writer.close();
        audit_chain::open_events(&db_path(self.dir.path()), EventFilter::default())
            .unwrap()
            .map(|e| e.unwrap().decode().unwrap())
            .collect()
    }
}

fn request(body: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("x-palisade-agent", "planner")
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

fn json_service() -> impl Service<
    http::Request<Bytes>,
    Response = http::Response<ResponseBody>,
    Error = BoxError,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: http::Request<Bytes>| async move {
        let h = req.extensions().get::<ExchangeHandle>().cloned().unwrap();
        h.lock().provider = Some("mock".to_owned());
        Ok::<_, BoxError>(exchange::json_response(
            http::StatusCode::OK,
            &serde_json::json!({"ok": true}),
        ))
    })
}

#[tokio::test]
async fn buffered_response_carries_event_and_chain_headers() {
    let h = harness(Durability::Sync, OnAuditFailure::Deny);
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone()).layer(json_service());
    let res = svc.oneshot(request(CHAT)).await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-palisade-event"]
        .to_str()
        .unwrap()
        .to_owned();
    let chain = res.headers()["x-palisade-chain"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, id);
    assert_eq!(chain, format!("1:{}", events[0].hash));
    assert_eq!(events[0].outcome, OutcomeRecord::Forwarded { status: 200 });
    assert_eq!(events[0].provider.as_deref(), Some("mock"));
    assert_eq!(events[0].agent, "planner");
    assert_eq!(events[0].tags["team"], "research");
    assert!(events[0].latency_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_durability_releases_the_response_only_after_commit() {
    let h = harness(Durability::Sync, OnAuditFailure::Deny);
    h.gated.store(true, Ordering::SeqCst);
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone()).layer(json_service());
    let call = tokio::spawn(svc.oneshot(request(CHAT)));
    // The writer is inside commit, held: the response must not be out yet.
    tokio::task::spawn_blocking({
        let rx = std::mem::replace(&mut { h.commit_started }, std::sync::mpsc::channel().1);
        move || rx.recv().unwrap()
    })
    .await
    .unwrap();
    tokio::task::yield_now().await;
    assert!(!call.is_finished());
    h.release.send(()).unwrap();
    let res = call.await.unwrap().unwrap();
    assert!(res.headers().contains_key("x-palisade-chain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_durability_releases_before_commit() {
    let mut h = harness(Durability::Async, OnAuditFailure::Deny);
    h.gated.store(true, Ordering::SeqCst);
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone()).layer(json_service());
    let res = svc.oneshot(request(CHAT)).await.unwrap();
    assert_eq!(
        res.headers()["x-palisade-chain"]
            .to_str()
            .unwrap()
            .split(':')
            .next(),
        Some("1")
    );
    // The commit is still held.
    let started = std::mem::replace(&mut h.commit_started, std::sync::mpsc::channel().1);
    tokio::task::spawn_blocking(move || started.recv().unwrap())
        .await
        .unwrap();
    h.release.send(()).unwrap();
    assert_eq!(h.events().len(), 1);
}

#[tokio::test]
async fn store_failure_fails_closed_with_503() {
    let h = harness(Durability::Sync, OnAuditFailure::Deny);
    h.fail.store(true, Ordering::SeqCst);
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone()).layer(json_service());
    let res = svc.oneshot(request(CHAT)).await.unwrap();
    assert_eq!(res.status(), 503);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["error"]["message"],
        "audit store unavailable: audit store: database or disk is full"
    );
    assert_eq!(v["error"]["type"], "service_unavailable");
}

#[tokio::test]
async fn store_failure_with_on_failure_allow_serves_without_a_receipt() {
    let h = harness(Durability::Sync, OnAuditFailure::Allow);
    h.fail.store(true, Ordering::SeqCst);
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone()).layer(json_service());
    let res = svc.oneshot(request(CHAT)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-palisade-event"));
    assert!(!res.headers().contains_key("x-palisade-chain"));
}

#[tokio::test]
async fn unparseable_request_is_answered_400_and_recorded() {
    let h = harness(Durability::Sync, OnAuditFailure::Deny);
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone()).layer(json_service());
    let res = svc.oneshot(request(r#"{"model":"gpt-4o"}"#)).await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().contains_key("x-palisade-chain"));
    let events = h.events();
    assert_eq!(
        events[0].outcome,
        OutcomeRecord::Rejected {
            status: 400,
            code: "invalid_request_error".to_owned()
        }
    );
    assert_eq!(
        (events[0].model.as_str(), events[0].agent.as_str()),
        ("gpt-4o", "planner")
    );
}

#[tokio::test]
async fn outcome_from_status_when_no_layer_set_it() {
    let h = harness(Durability::Sync, OnAuditFailure::Deny);
    let inner = tower::service_fn(|_req: http::Request<Bytes>| async move {
        Ok::<_, BoxError>(exchange::ApiError::bad_gateway("upstream refused").into_response())
    });
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone()).layer(inner);
    let res = svc.oneshot(request(CHAT)).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        h.events()[0].outcome,
        OutcomeRecord::UpstreamError {
            status: 502,
            reason: "status 502".to_owned()
        }
    );
}

/// An SSE body fed through a channel, so the test controls every frame.
struct ChanBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn sse_service(
    rx: Arc<parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>>>,
) -> impl Service<
    http::Request<Bytes>,
    Response = http::Response<ResponseBody>,
    Error = BoxError,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: http::Request<Bytes>| {
        let rx = rx.lock().take().unwrap();
        async move {
            let h = req.extensions().get::<ExchangeHandle>().cloned().unwrap();
            h.lock().outcome = Outcome::Forwarded { status: 200 };
            let mut res = http::Response::new(ChanBody(rx).boxed_unsync());
            res.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("text/event-stream"),
            );
            Ok::<_, BoxError>(res)
        }
    })
}

const STREAM: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_holds_the_final_frame_until_commit_and_sends_the_receipt() {
    let mut h = harness(Durability::Sync, OnAuditFailure::Deny);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone())
        .layer(sse_service(Arc::new(parking_lot::Mutex::new(Some(rx)))));
    let res = svc.oneshot(request(STREAM)).await.unwrap();
    let id = res.headers()["x-palisade-event"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!res.headers().contains_key("x-palisade-chain"));
    let mut body = res.into_body();
    tx.send(Bytes::from_static(b"data: {\"choices\":[]}\n\n"))
        .unwrap();
    let f1 = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&f1[..], b"data: {\"choices\":[]}\n\n");
    h.gated.store(true, Ordering::SeqCst);
    tx.send(Bytes::from_static(b"data: {\"x\":1}\n\ndata: [DONE]\n\n"))
        .unwrap();
    drop(tx);
    let f2 = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&f2[..], b"data: {\"x\":1}\n\n");
    let next = tokio::spawn(async move {
        let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
        (f, body.frame().await.is_none())
    });
    let started = std::mem::replace(&mut h.commit_started, std::sync::mpsc::channel().1);
    tokio::task::spawn_blocking(move || started.recv().unwrap())
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert!(!next.is_finished());
    h.release.send(()).unwrap();
    let (last, ended) = next.await.unwrap();
    assert!(ended);
    let events = h.events();
    assert_eq!(events[0].id, id);
    assert_eq!(
        String::from_utf8(last.to_vec()).unwrap(),
        format!(
            ": x-palisade-chain: 1:{}\n\ndata: [DONE]\n\n",
            events[0].hash
        )
    );
    assert_eq!(events[0].outcome, OutcomeRecord::Forwarded { status: 200 });
    assert!(events[0].stream);
}

#[tokio::test]
async fn dropped_stream_is_recorded_as_client_disconnected() {
    let h = harness(Durability::Sync, OnAuditFailure::Deny);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone())
        .layer(sse_service(Arc::new(parking_lot::Mutex::new(Some(rx)))));
    let res = svc.oneshot(request(STREAM)).await.unwrap();
    let mut body = res.into_body();
    tx.send(Bytes::from_static(b"data: {}\n\n")).unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body);
    h.writer.flush().await.unwrap();
    assert_eq!(h.events()[0].outcome, OutcomeRecord::ClientDisconnected);
}

#[tokio::test]
async fn stream_store_failure_ends_with_an_error_event_instead_of_done() {
    let h = harness(Durability::Sync, OnAuditFailure::Deny);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = AuditLayer::new(h.writer.clone(), h.ctx.clone())
        .layer(sse_service(Arc::new(parking_lot::Mutex::new(Some(rx)))));
    let res = svc.oneshot(request(STREAM)).await.unwrap();
    h.fail.store(true, Ordering::SeqCst);
    tx.send(Bytes::from_static(b"data: {}\n\ndata: [DONE]\n\n"))
        .unwrap();
    drop(tx);
    let all = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(all.to_vec()).unwrap();
    assert_eq!(
        text,
        "data: {}\n\ndata: {\"error\":{\"message\":\"audit store unavailable: audit store: database or disk is full\",\"type\":\"service_unavailable\",\"param\":null,\"code\":null}}\n\n"
    );
}
