//! Cost metrics in the Prometheus text format. Labels carry agent, model, scope, match and
//! period names only — never keys, conversation ids or content.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use exchange::{TokenUsage, UsdAmount};
use parking_lot::Mutex;

#[derive(Default)]
struct State {
    spend: BTreeMap<(String, String), u128>,
    requests: BTreeMap<(String, String), u64>,
    tokens: BTreeMap<(String, String, &'static str), u64>,
    estimated: BTreeMap<(String, String), u64>,
    unknown_price: BTreeMap<String, u64>,
    budget_rejections: BTreeMap<(String, String, String), u64>,
    rate_limit_rejections: BTreeMap<(String, String, String), u64>,
    soft_limit_alerts: BTreeMap<(String, String, String), u64>,
}

/// The engine's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    state: Mutex<State>,
    pub(crate) ledger_write_errors: Arc<AtomicU64>,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, by: u64) {
    *map.entry(key).or_insert(0) += by;
}

impl Metrics {
    pub(crate) fn record_request(
        &self,
        agent: &str,
        model: &str,
        usage: &TokenUsage,
        cost: Option<UsdAmount>,
    ) {
        let mut s = self.state.lock();
        let key = (agent.to_owned(), model.to_owned());
        bump(&mut s.requests, key.clone(), 1);
        for (kind, n) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cached", usage.cached_tokens),
        ] {
            bump(&mut s.tokens, (key.0.clone(), key.1.clone(), kind), n);
        }
        if usage.estimated {
            bump(&mut s.estimated, key.clone(), 1);
        }
        match cost {
            Some(c) => {
                let e = s.spend.entry(key).or_insert(0);
                *e = e.saturating_add(c.picodollars);
            }
            None => bump(&mut s.unknown_price, model.to_owned(), 1),
        }
    }

    pub(crate) fn budget_rejected(&self, scope: &str, matcher: &str, period: &str) {
        bump(
            &mut self.state.lock().budget_rejections,
            (scope.to_owned(), matcher.to_owned(), period.to_owned()),
            1,
        );
    }

    pub(crate) fn rate_limited(&self, scope: &str, matcher: &str, limit: &str) {
        bump(
            &mut self.state.lock().rate_limit_rejections,
            (scope.to_owned(), matcher.to_owned(), limit.to_owned()),
            1,
        );
    }

    pub(crate) fn soft_limit_alert(&self, scope: &str, matcher: &str, period: &str) {
        bump(
            &mut self.state.lock().soft_limit_alerts,
            (scope.to_owned(), matcher.to_owned(), period.to_owned()),
            1,
        );
    }

    pub(crate) fn render(&self, out: &mut String) {
        let s = self.state.lock();
        header(
            out,
            "palisade_cost_usd_total",
            "counter",
            "Spend in USD attributed to each agent and model (exact decimal).",
        );
        for ((agent, model), pico) in &s.spend {
            let _ = writeln!(
                out,
                "palisade_cost_usd_total{{agent=\"{}\",model=\"{}\"}} {}",
                esc(agent),
                esc(model),
                UsdAmount::from_picodollars(*pico)
            );
        }
        header(
            out,
            "palisade_cost_requests_total",
            "counter",
            "Requests accounted per agent and model.",
        );
        two_labels(out, "palisade_cost_requests_total", &s.requests);
        header(
            out,
            "palisade_cost_tokens_total",
            "counter",
            "Tokens per agent, model and kind (prompt, completion, cached).",
        );
        for ((agent, model, kind), n) in &s.tokens {
            let _ = writeln!(
                out,
                "palisade_cost_tokens_total{{agent=\"{}\",model=\"{}\",kind=\"{kind}\"}} {n}",
                esc(agent),
                esc(model)
            );
        }
        header(
            out,
            "palisade_cost_estimated_usage_total",
            "counter",
            "Requests whose usage was estimated by the gateway's tokenizer.",
        );
        two_labels(out, "palisade_cost_estimated_usage_total", &s.estimated);
        header(
            out,
            "palisade_cost_unknown_price_total",
            "counter",
            "Requests to models without a known price (cost recorded as unknown).",
        );
        for (model, n) in &s.unknown_price {
            let _ = writeln!(
                out,
                "palisade_cost_unknown_price_total{{model=\"{}\"}} {n}",
                esc(model)
            );
        }
        header(
            out,
            "palisade_budget_rejections_total",
            "counter",
            "Requests refused with 429 budget_exceeded, per budget.",
        );
        three_labels(
            out,
            "palisade_budget_rejections_total",
            ["scope", "match", "period"],
            &s.budget_rejections,
        );
        header(
            out,
            "palisade_rate_limit_rejections_total",
            "counter",
            "Requests refused with 429 rate_limit_exceeded, per limit.",
        );
        three_labels(
            out,
            "palisade_rate_limit_rejections_total",
            ["scope", "match", "limit"],
            &s.rate_limit_rejections,
        );
        header(
            out,
            "palisade_budget_soft_limit_alerts_total",
            "counter",
            "Times a budget's spend crossed its soft limit.",
        );
        three_labels(
            out,
            "palisade_budget_soft_limit_alerts_total",
            ["scope", "match", "period"],
            &s.soft_limit_alerts,
        );
        header(
            out,
            "palisade_cost_ledger_write_errors_total",
            "counter",
            "Ledger rows that could not be written.",
        );
        let _ = writeln!(
            out,
            "palisade_cost_ledger_write_errors_total {}",
            self.ledger_write_errors.load(Ordering::Relaxed)
        );
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn two_labels(out: &mut String, name: &str, map: &BTreeMap<(String, String), u64>) {
    for ((agent, model), n) in map {
        let _ = writeln!(
            out,
            "{name}{{agent=\"{}\",model=\"{}\"}} {n}",
            esc(agent),
            esc(model)
        );
    }
}

fn three_labels(
    out: &mut String,
    name: &str,
    labels: [&str; 3],
    map: &BTreeMap<(String, String, String), u64>,
) {
    for ((a, b, c), n) in map {
        let _ = writeln!(
            out,
            "{name}{{{}=\"{}\",{}=\"{}\",{}=\"{}\"}} {n}",
            labels[0],
            esc(a),
            labels[1],
            esc(b),
            labels[2],
            esc(c)
        );
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}
