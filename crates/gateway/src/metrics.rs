//! Prometheus text metrics: requests, decisions by policy and outcome, upstream latency,
//! tokens. Lock-free counters on the hot path; labelled series behind a short mutex.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds (seconds) of the upstream latency histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The gateway's metrics registry.
#[derive(Default)]
pub struct Metrics {
    // Keys are looked up without allocating: static labels, and policy names by `&str`.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    decisions: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    outcome: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl Metrics {
    /// Counts a finished request.
    pub fn request(&self, route: &'static str, status: u16) {
        *self.requests.lock().entry((route, status)).or_default() += 1;
    }

    /// Counts one verdict and the overall decision of an exchange.
    pub fn exchange(&self, ex: &exchange::Exchange) {
        {
            let mut d = self.decisions.lock();
            for v in &ex.verdicts {
                let per_policy = match d.get_mut(v.policy.as_str()) {
                    Some(m) => m,
                    None => d.entry(v.policy.clone()).or_default(),
                };
                *per_policy.entry(v.decision.as_str()).or_default() += 1;
            }
        }
        *self
            .outcome
            .lock()
            .entry(ex.decision().as_str())
            .or_default() += 1;
        if let Some(lat) = ex.upstream_latency {
            self.upstream_latency(lat);
        }
        if let Some(u) = ex.usage {
            self.prompt_tokens
                .fetch_add(u.prompt_tokens, Ordering::Relaxed);
            self.completion_tokens
                .fetch_add(u.completion_tokens, Ordering::Relaxed);
        }
    }

    fn upstream_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts a pack reload.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP palisade_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE palisade_requests_total counter");
        for ((route, status), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "palisade_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP palisade_policy_decisions_total Verdicts by policy and decision."
        );
        let _ = writeln!(out, "# TYPE palisade_policy_decisions_total counter");
        for (policy, by_decision) in self.decisions.lock().iter() {
            for (decision, n) in by_decision {
                let _ = writeln!(
                    out,
                    "palisade_policy_decisions_total{{policy=\"{}\",decision=\"{decision}\"}} {n}",
                    escape(policy)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP palisade_exchanges_total Exchanges by overall decision."
        );
        let _ = writeln!(out, "# TYPE palisade_exchanges_total counter");
        for (decision, n) in self.outcome.lock().iter() {
            let _ = writeln!(
                out,
                "palisade_exchanges_total{{decision=\"{decision}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP palisade_upstream_latency_seconds Upstream latency to response headers."
        );
        let _ = writeln!(out, "# TYPE palisade_upstream_latency_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "palisade_upstream_latency_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "palisade_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "palisade_upstream_latency_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "palisade_upstream_latency_seconds_count {count}");
        let _ = writeln!(out, "# HELP palisade_tokens_total Tokens by kind.");
        let _ = writeln!(out, "# TYPE palisade_tokens_total counter");
        let _ = writeln!(
            out,
            "palisade_tokens_total{{kind=\"prompt\"}} {}",
            self.prompt_tokens.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "palisade_tokens_total{{kind=\"completion\"}} {}",
            self.completion_tokens.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP palisade_pack_reloads_total Pack reloads by result."
        );
        let _ = writeln!(out, "# TYPE palisade_pack_reloads_total counter");
        let _ = writeln!(
            out,
            "palisade_pack_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "palisade_pack_reloads_total{{result=\"failed\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
