//! The streaming probe: sends `stream: true` requests and times, per request, the first
//! content-bearing SSE event (time to first token, from just before the request is sent)
//! and the gaps between consecutive content-bearing events (inter-chunk latency).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// `http://host:port/v1/chat/completions`.
    pub url: http::Uri,
    /// The streamed request body.
    pub body: Bytes,
    /// Extra headers (`Name: value`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Requests in all.
    pub requests: usize,
    /// Concurrent request loops.
    pub concurrency: usize,
}

/// Timings of one streamed request.
#[derive(Debug, Default, Clone)]
struct One {
    ttft: Option<Duration>,
    gaps: Vec<Duration>,
    total: Duration,
    events: usize,
    ok: bool,
}

/// Summary over all requests (milliseconds).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// Requests sent.
    pub requests: usize,
    /// Requests that failed (status, transport, no content, no `[DONE]`).
    pub errors: usize,
    /// Time to first token, p50.
    pub ttft_p50_ms: f64,
    /// Time to first token, p90.
    pub ttft_p90_ms: f64,
    /// Time to first token, p99.
    pub ttft_p99_ms: f64,
    /// Gap between content events, p50.
    pub inter_chunk_p50_ms: f64,
    /// Gap between content events, p99.
    pub inter_chunk_p99_ms: f64,
    /// Whole stream, p50.
    pub total_p50_ms: f64,
    /// Content events per stream (mean).
    pub content_events_mean: f64,
}

/// Nearest-rank percentile of sorted millisecond values (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether an SSE `data:` payload carries content (text or a tool call delta).
fn has_content(payload: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return false;
    };
    let Some(choices) = v.get("choices").and_then(|c| c.as_array()) else {
        return false;
    };
    choices.iter().any(|c| {
        let d = c.get("delta");
        let text = d
            .and_then(|d| d.get("content"))
            .and_then(|t| t.as_str())
            .is_some_and(|t| !t.is_empty());
        let tools = d
            .and_then(|d| d.get("tool_calls"))
            .is_some_and(|t| !t.is_null());
        text || tools
    })
}

async fn one(client: &Client<HttpConnector, Full<Bytes>>, cfg: &ProbeConfig) -> One {
    let mut req = http::Request::new(Full::new(cfg.body.clone()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = cfg.url.clone();
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (n, v) in &cfg.headers {
        req.headers_mut().insert(n.clone(), v.clone());
    }
    let start = Instant::now();
    let mut out = One::default();
    let Ok(res) = client.request(req).await else {
        return out;
    };
    if res.status() != http::StatusCode::OK {
        let _ = res.into_body().collect().await;
        return out;
    }
    let mut body = res.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut last: Option<Instant> = None;
    let mut done = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return out };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..pos + 2).collect();
            for line in event.split(|b| *b == b'\n') {
                let Some(payload) = line.strip_prefix(b"data: ") else {
                    continue;
                };
                if payload == b"[DONE]" {
                    done = true;
                } else if has_content(payload) {
                    out.events += 1;
                    match last {
                        None => out.ttft = Some(now - start),
                        Some(prev) => out.gaps.push(now - prev),
                    }
                    last = Some(now);
                }
            }
        }
    }
    out.total = start.elapsed();
    out.ok = done && out.ttft.is_some();
    out
}

/// Runs the probe.
pub async fn run(cfg: ProbeConfig) -> ProbeReport {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let conc = cfg.concurrency.max(1);
    let per = cfg.requests.div_ceil(conc);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let client = client.clone();
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let mut v = Vec::with_capacity(per);
            for _ in 0..per {
                v.push(one(&client, &cfg).await);
            }
            v
        });
    }
    let mut all: Vec<One> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(v) = r {
            all.extend(v);
        }
    }
    summarize(&all)
}

fn summarize(all: &[One]) -> ProbeReport {
    let ok: Vec<&One> = all.iter().filter(|o| o.ok).collect();
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let ttft = sorted(ok.iter().filter_map(|o| o.ttft.map(ms)).collect());
    let gaps = sorted(
        ok.iter()
            .flat_map(|o| o.gaps.iter().copied().map(ms))
            .collect(),
    );
    let total = sorted(ok.iter().map(|o| ms(o.total)).collect());
    let events: usize = ok.iter().map(|o| o.events).sum();
    ProbeReport {
        requests: all.len(),
        errors: all.len() - ok.len(),
        ttft_p50_ms: percentile(&ttft, 50.0),
        ttft_p90_ms: percentile(&ttft, 90.0),
        ttft_p99_ms: percentile(&ttft, 99.0),
        inter_chunk_p50_ms: percentile(&gaps, 50.0),
        inter_chunk_p99_ms: percentile(&gaps, 99.0),
        total_p50_ms: percentile(&total, 50.0),
        content_events_mean: if ok.is_empty() {
            0.0
        } else {
            events as f64 / ok.len() as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[7.0], 1.0), 7.0);
    }

    #[test]
    fn content_events_are_text_or_tool_call_deltas() {
        assert!(has_content(
            br#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#
        ));
        assert!(!has_content(
            br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(has_content(
            br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}"#
        ));
        assert!(!has_content(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
    }
}
