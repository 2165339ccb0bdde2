//! The OpenAI-compatible upstream and the router against the mock upstream on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use exchange::{ChatRequest, ExchangeHandle, Outcome, ResponseBody};
use http_body_util::BodyExt;
use policy_engine::{MissingKey, ProviderKind, ProviderSpec, SecretRef};
use provider_clients::mock_server::MockUpstream;
use provider_clients::{
    Backend, OpenAiUpstream, ProviderRouter, ProviderService, Secret, mock_response,
    mock_sse_events,
};
use tower::{Service, ServiceExt};

/// Upper bound for waiting on an explicit signal; reaching it is a test failure.
const GUARD: Duration = Duration::from_secs(10);

fn provider_key() -> String {
    format!("sk-test-{}", "p".repeat(32))
}

fn agent_key() -> String {
    format!("pal_{}", "a".repeat(32))
}

struct KeyFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn key_file() -> KeyFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openai.key");
    std::fs::write(&path, format!("{}\n", provider_key())).unwrap();
    KeyFile { _dir: dir, path }
}

fn spec(name: &str, base_url: &str, key: &KeyFile, request_timeout: Duration) -> ProviderSpec {
    ProviderSpec {
        name: name.to_owned(),
        kind: ProviderKind::OpenAi,
        base_url: base_url.to_owned(),
        models: vec!["*".to_owned()],
        secret_key_ref: Some(SecretRef::File(key.path.clone())),
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        on_missing_key: MissingKey::Fail,
    }
}

fn body_json(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "name": "planner", "content": "hello there upstream"}
        ]
    })
    .to_string()
}

fn request(body: String) -> (http::Request<Bytes>, ExchangeHandle) {
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri("/v1/chat/completions")
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", agent_key()),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-palisade-agent", "planner")
        .body(Bytes::from(body))
        .unwrap();
    let handle = ExchangeHandle::from_request(&mut req).unwrap();
    (req, handle)
}

async fn upstream(mock: &MockUpstream, key: &KeyFile, timeout: Duration) -> OpenAiUpstream {
    let s = spec("mockup", &mock.base_url(), key, timeout);
    let key = provider_clients::resolve_secret(s.secret_key_ref.as_ref().unwrap()).unwrap();
    OpenAiUpstream::new(&s, Some(key)).unwrap()
}

async fn collect(body: ResponseBody) -> Bytes {
    body.collect().await.unwrap().to_bytes()
}

async fn error_of(res: http::Response<ResponseBody>) -> (u16, String, String) {
    let status = res.status().as_u16();
    let v: serde_json::Value = serde_json::from_slice(&collect(res.into_body()).await).unwrap();
    (
        status,
        v["error"]["type"].as_str().unwrap().to_owned(),
        v["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn json_answer_passes_through_with_the_provider_key_only() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let body = body_json("gpt-4o", false);
    let (req, handle) = request(body.clone());
    let res = up.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.headers().get("content-length").is_none());
    let got: exchange::ChatResponse =
        serde_json::from_slice(&collect(res.into_body()).await).unwrap();
    let parsed: ChatRequest = serde_json::from_str(&body).unwrap();
    assert_eq!(got, mock_response(&parsed));
    assert_eq!(
        got.choices[0].message.text(),
        "Mock reply from gpt-4o to planner: hello there upstream"
    );

    // What the upstream saw: the body as is, the provider's key, none of the client's headers.
    assert_eq!(mock.last_request_body().unwrap(), Bytes::from(body));
    let headers = mock.last_request_headers().unwrap();
    assert_eq!(
        headers["authorization"],
        format!("Bearer {}", provider_key()).as_str()
    );
    assert!(headers.get("x-palisade-agent").is_none());
    assert_eq!(headers["content-type"], "application/json");

    let ex = handle.lock();
    assert_eq!(ex.provider.as_deref(), Some("mockup"));
    assert_eq!(ex.outcome, Outcome::Forwarded { status: 200 });
    assert!(ex.upstream_latency.is_some());
}

#[tokio::test]
async fn edited_request_is_reserialized_for_upstream() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let (req, handle) = request(body_json("gpt-4o", false));
    {
        let mut ex = handle.lock();
        ex.request.messages[1] =
            exchange::Message::text_message(exchange::Role::User, "mail me at [EMAIL_ADDRESS]");
        ex.request_modified = true;
    }
    let res = up.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = mock.last_request_json().unwrap();
    assert_eq!(seen["messages"][1]["content"], "mail me at [EMAIL_ADDRESS]");
}

#[tokio::test]
async fn sse_events_arrive_one_by_one_without_buffering() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let body = body_json("step-stream", true);
    let expected = mock_sse_events(&serde_json::from_str(&body).unwrap());
    assert!(expected.len() >= 5, "{}", expected.len());
    let (req, handle) = request(body);
    // Headers come before any event is released.
    let res = tokio::time::timeout(GUARD, up.oneshot(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    for event in &expected {
        // Only this event is released: receiving it proves nothing waits for the rest.
        mock.release_events(1);
        let mut got = Vec::new();
        while got.len() < event.len() {
            let frame = tokio::time::timeout(GUARD, body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(Bytes::from(got), *event);
    }
    assert!(
        tokio::time::timeout(GUARD, body.frame())
            .await
            .unwrap()
            .is_none()
    );
    mock.wait_for(|c| c.completed == 1).await;
    assert_eq!(handle.lock().outcome, Outcome::Forwarded { status: 200 });
}

#[tokio::test]
async fn upstream_500_is_502_naming_status_and_message() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let (req, handle) = request(body_json("fault-500", false));
    let res = up.oneshot(req).await.unwrap();
    let (status, kind, message) = error_of(res).await;
    assert_eq!(status, 502);
    assert_eq!(kind, "upstream_error");
    assert_eq!(
        message,
        "upstream `mockup` answered 500 Internal Server Error: the mock upstream failed (fault-500)"
    );
    assert_eq!(
        handle.lock().outcome,
        Outcome::UpstreamError {
            status: 502,
            reason: message
        }
    );
}

#[tokio::test]
async fn upstream_503_is_502() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let (req, _) = request(body_json("fault-503", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (502, "upstream_error"));
    assert_eq!(
        message,
        "upstream `mockup` answered 503 Service Unavailable: the mock upstream is overloaded (fault-503)"
    );
}

#[tokio::test]
async fn connection_closed_without_answer_is_502() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let (req, handle) = request(body_json("fault-reset", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (502, "upstream_error"));
    assert_eq!(
        message,
        "upstream `mockup` closed the connection before answering: connection closed before message completed"
    );
    assert!(matches!(
        handle.lock().outcome,
        Outcome::UpstreamError { status: 502, .. }
    ));
}

#[tokio::test]
async fn malformed_answer_is_502() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let (req, _) = request(body_json("fault-malformed", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (502, "upstream_error"));
    assert_eq!(
        message,
        "upstream `mockup` sent a malformed response: the body is not json (expected ident at line 1 column 2)"
    );
}

#[tokio::test]
async fn refused_connection_is_502_naming_the_upstream() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let key = key_file();
    let s = spec(
        "openai",
        &format!("http://{addr}/v1"),
        &key,
        Duration::from_secs(5),
    );
    let up = OpenAiUpstream::new(&s, Some(Secret::new(provider_key()))).unwrap();
    let (req, handle) = request(body_json("gpt-4o", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (502, "upstream_error"));
    assert_eq!(
        message,
        "upstream `openai` refused the connection: Connection refused (os error 111)"
    );
    assert_eq!(handle.lock().provider.as_deref(), Some("openai"));
}

#[tokio::test]
async fn tls_handshake_failure_is_502() {
    // The mock speaks plain HTTP; an https base_url makes the handshake fail.
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let s = spec(
        "openai",
        &format!("https://{}/v1", mock.addr()),
        &key,
        Duration::from_secs(5),
    );
    let up = OpenAiUpstream::new(&s, None).unwrap();
    let (req, _) = request(body_json("gpt-4o", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (502, "upstream_error"));
    assert_eq!(
        message,
        "upstream `openai` tls handshake failed: received corrupt message of type InvalidContentType"
    );
    assert_eq!(mock.requests_received(), 0);
}

#[tokio::test]
async fn unresolvable_host_is_502() {
    let key = key_file();
    let s = spec(
        "openai",
        "http://palisade-test.invalid/v1",
        &key,
        Duration::from_secs(5),
    );
    let up = OpenAiUpstream::new(&s, None).unwrap();
    let (req, _) = request(body_json("gpt-4o", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (502, "upstream_error"));
    assert!(
        message.starts_with("upstream `openai` host could not be resolved: "),
        "{message}"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_and_the_upstream_call_is_cancelled() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_millis(200)).await;
    let (req, handle) = request(body_json("fault-slow-30000", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (504, "upstream_timeout"));
    assert_eq!(message, "upstream `mockup` did not answer within 200ms");
    assert_eq!(
        handle.lock().outcome,
        Outcome::UpstreamError {
            status: 504,
            reason: message
        }
    );
    let c = tokio::time::timeout(GUARD, mock.wait_for(|c| c.cancelled == 1))
        .await
        .unwrap();
    assert_eq!(c.requests, 1);
}

#[tokio::test]
async fn upstream_4xx_passes_through() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    // A wrong base path: the mock answers 404 itself.
    let s = spec(
        "mockup",
        &format!("http://{}/v2", mock.addr()),
        &key,
        Duration::from_secs(5),
    );
    let up = OpenAiUpstream::new(&s, None).unwrap();
    let (req, handle) = request(body_json("gpt-4o", false));
    let (status, kind, message) = error_of(up.oneshot(req).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (404, "not_found_error"));
    assert_eq!(message, "unknown route `/v2/chat/completions`");
    assert_eq!(handle.lock().outcome, Outcome::Forwarded { status: 404 });
}

#[tokio::test]
async fn silent_stream_hits_the_read_timeout() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_millis(200)).await;
    let (req, handle) = request(body_json("step-stream", true));
    let res = up.oneshot(req).await.unwrap();
    let mut body = res.into_body();
    mock.release_events(1);
    let first = tokio::time::timeout(GUARD, body.frame()).await.unwrap();
    assert!(first.unwrap().unwrap().is_data());
    // No further event is released: the idle read timeout ends the stream.
    let err = tokio::time::timeout(GUARD, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream `mockup` sent nothing for 200ms in the middle of the stream"
    );
    assert_eq!(
        handle.lock().outcome,
        Outcome::UpstreamError {
            status: 200,
            reason: err.to_string()
        }
    );
    drop(body);
    tokio::time::timeout(GUARD, mock.wait_for(|c| c.cancelled == 1))
        .await
        .unwrap();
}

#[tokio::test]
async fn cut_stream_is_a_body_error_and_recorded() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let (req, handle) = request(body_json("fault-cut-stream", true));
    handle.lock().stream = Some(exchange::StreamStats::default());
    let res = up.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut received = Vec::new();
    let err = loop {
        match tokio::time::timeout(GUARD, body.frame()).await.unwrap() {
            Some(Ok(f)) => received.extend_from_slice(&f.into_data().unwrap()),
            Some(Err(e)) => break e,
            None => panic!("the stream ended cleanly"),
        }
    };
    let events =
        mock_sse_events(&serde_json::from_str(&body_json("fault-cut-stream", true)).unwrap());
    assert_eq!(received, [events[0].clone(), events[1].clone()].concat());
    let reason = err.to_string();
    assert!(
        reason.starts_with("upstream `mockup` cut the stream: "),
        "{reason}"
    );
    let ex = handle.lock();
    assert_eq!(
        ex.outcome,
        Outcome::UpstreamError {
            status: 200,
            reason
        }
    );
    assert!(!ex.stream.as_ref().unwrap().completed);
}

#[tokio::test]
async fn dropping_the_response_future_cancels_the_upstream_request() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(60)).await;
    let (req, _) = request(body_json("fault-slow-60000", false));
    let call = tokio::spawn(up.oneshot(req));
    tokio::time::timeout(GUARD, mock.wait_for(|c| c.requests == 1))
        .await
        .unwrap();
    call.abort();
    let c = tokio::time::timeout(GUARD, mock.wait_for(|c| c.cancelled == 1))
        .await
        .unwrap();
    assert_eq!(c.completed, 0);
}

#[tokio::test]
async fn dropping_a_stream_body_cancels_the_upstream_stream() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(60)).await;
    let (req, _) = request(body_json("step-stream", true));
    let res = up.oneshot(req).await.unwrap();
    let mut body = res.into_body();
    mock.release_events(1);
    let first = tokio::time::timeout(GUARD, body.frame()).await.unwrap();
    assert!(first.unwrap().unwrap().is_data());
    drop(body);
    let c = tokio::time::timeout(GUARD, mock.wait_for(|c| c.cancelled == 1))
        .await
        .unwrap();
    assert_eq!(c.completed, 0);
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let mut up = upstream(&mock, &key, Duration::from_secs(5)).await;
    for stream in [false, true, false, true] {
        let (req, _) = request(body_json("gpt-4o", stream));
        let res = up.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), 200);
        collect(res.into_body()).await;
    }
    let c = mock.counters();
    assert_eq!((c.requests, c.completed, c.connections), (4, 4, 1));
}

#[tokio::test]
async fn secrets_never_appear_in_debug_output() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let up = upstream(&mock, &key, Duration::from_secs(5)).await;
    let dbg = format!("{up:?}");
    assert!(!dbg.contains(&provider_key()), "{dbg}");
    assert!(dbg.contains("*****"), "{dbg}");
    let router = ProviderRouter::new(&[spec(
        "mockup",
        &mock.base_url(),
        &key,
        Duration::from_secs(5),
    )])
    .unwrap();
    let dbg = format!("{router:?}");
    assert!(!dbg.contains(&provider_key()), "{dbg}");
}

fn routed_specs(mock: &MockUpstream, key: &KeyFile) -> Vec<ProviderSpec> {
    let mut openai = spec("openai", &mock.base_url(), key, Duration::from_secs(5));
    openai.models = vec!["gpt-4o".into(), "gpt-4o-mini".into(), "o3-*".into()];
    let mut local = spec(
        "local",
        "http://127.0.0.1:9/v1",
        key,
        Duration::from_secs(5),
    );
    local.kind = ProviderKind::Mock;
    local.models = vec!["llama-3".into(), "gpt-4o".into()];
    vec![openai, local]
}

#[tokio::test]
async fn router_picks_provider_by_exact_name_then_pattern() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let router = ProviderRouter::new(&routed_specs(&mock, &key)).unwrap();
    let name = |m: &str| router.route(m).map(|p| p.name.clone());
    assert_eq!(name("gpt-4o").as_deref(), Some("openai"));
    assert_eq!(name("llama-3").as_deref(), Some("local"));
    assert_eq!(name("o3-mini").as_deref(), Some("openai"));
    assert_eq!(name("o3"), None);
    let models: Vec<(String, String)> = router
        .models()
        .into_iter()
        .map(|m| (m.id, m.provider))
        .collect();
    assert_eq!(
        models,
        vec![
            ("gpt-4o".to_owned(), "openai".to_owned()),
            ("gpt-4o-mini".to_owned(), "openai".to_owned()),
            ("llama-3".to_owned(), "local".to_owned()),
        ]
    );
    let json = router.models_response_json();
    assert_eq!(json["object"], "list");
    assert_eq!(json["data"][2]["id"], "llama-3");
    assert_eq!(json["data"][2]["owned_by"], "local");
    assert_eq!(json["data"][2]["object"], "model");
}

#[tokio::test]
async fn provider_service_routes_and_answers_unknown_model_with_404() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let svc = ProviderService::new(&routed_specs(&mock, &key)).unwrap();

    let (req, handle) = request(body_json("llama-3", false));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(handle.lock().provider.as_deref(), Some("local"));
    assert_eq!(mock.requests_received(), 0);

    let (req, handle) = request(body_json("gpt-4o", false));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(handle.lock().provider.as_deref(), Some("openai"));
    assert_eq!(mock.requests_received(), 1);

    let (req, handle) = request(body_json("gpt-5-turbo", false));
    let res = svc.clone().oneshot(req).await.unwrap();
    let (status, kind, message) = error_of(res).await;
    assert_eq!((status, kind.as_str()), (404, "invalid_request_error"));
    assert_eq!(
        message,
        "model `gpt-5-turbo` is not served by this gateway; available: `gpt-4o`, `gpt-4o-mini`, `llama-3`"
    );
    assert_eq!(
        handle.lock().outcome,
        Outcome::Rejected {
            status: 404,
            code: "model_not_found".to_owned()
        }
    );
}

#[tokio::test]
async fn missing_key_falls_back_to_mock_or_fails_naming_the_variable() {
    let key = key_file();
    let mut s = spec(
        "openai",
        "https://api.openai.com/v1",
        &key,
        Duration::from_secs(5),
    );
    s.models = vec!["gpt-4o".into()];
    s.secret_key_ref = Some(SecretRef::Env("PALISADE_TEST_UNSET_OPENAI_KEY_9431".into()));
    s.on_missing_key = MissingKey::Mock;
    let router = ProviderRouter::new(std::slice::from_ref(&s)).unwrap();
    let p = router.route("gpt-4o").unwrap();
    assert!(matches!(p.backend, Backend::Mock(_)));
    assert_eq!(p.name, "openai");

    let svc = ProviderService::from_router(router);
    let (req, handle) = request(body_json("gpt-4o", false));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(handle.lock().provider.as_deref(), Some("openai"));

    s.on_missing_key = MissingKey::Fail;
    let err = ProviderRouter::new(std::slice::from_ref(&s)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider `openai`: cannot resolve its key: environment variable `PALISADE_TEST_UNSET_OPENAI_KEY_9431` is not set"
    );
}

#[tokio::test]
async fn bad_reload_keeps_the_old_router() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = key_file();
    let svc = ProviderService::new(&routed_specs(&mock, &key)).unwrap();
    let mut bad = spec(
        "broken",
        "ftp://example.invalid",
        &key,
        Duration::from_secs(5),
    );
    bad.models = vec!["x".into()];
    let err = svc.reload(&[bad]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider `broken`: invalid base_url `ftp://example.invalid`: the scheme must be http or https"
    );
    assert!(svc.router().route("llama-3").is_some());

    let mut only = spec("solo", &mock.base_url(), &key, Duration::from_secs(5));
    only.models = vec!["solo-model".into()];
    svc.reload(&[only]).unwrap();
    assert!(svc.router().route("llama-3").is_none());
    assert_eq!(svc.router().route("solo-model").unwrap().name, "solo");
}

#[tokio::test]
async fn mock_server_serves_models_and_404() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains(r#""id":"gpt-4o""#), "{out}");
}
