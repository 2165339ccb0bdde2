//! Budgets and rate limits simulated in recorded order.
//!
//! The gateway refuses a turn before the upstream call when a rate limit or a budget of
//! the pack is exhausted. Replay simulates that per side whose pack has budgets or rate
//! limits, over the records in input (chain) order, which is recorded time order:
//!
//! * a turn's cost is its recorded usage priced with the pack's price table (bundled
//!   prices plus the pack's `prices:`), or its recorded cost when the model has no price;
//! * a budget refuses a turn when the amount already spent in its period (UTC day, month,
//!   or total) plus the turn's cost exceeds the limit. The gateway reserves the worst case
//!   before the call and so can refuse earlier than this simulation;
//! * `requests_per_minute` / `tokens_per_minute` are checked over a sliding 60-second
//!   window of recorded times (the gateway uses token buckets: bursts can differ);
//! * `max_concurrent` is not simulated (recorded latencies do not say what overlapped);
//! * a turn the side refuses (by policy at input, or here) spends nothing and does not
//!   count against rate limits; a turn blocked on output was paid for and counts.

use std::collections::{HashMap, VecDeque};

use cost_accounting::PriceTable;
use exchange::{Decision, UsdAmount};
use policy_engine::{BudgetSpec, CostSettings, Period, RateLimitSpec, Scope, ScopeMatch};

use super::evaluate::{Meta, Side, Stage};

/// The simulation state of one side.
pub(crate) struct CostSim {
    budgets: Vec<BudgetSpec>,
    rates: Vec<RateLimitSpec>,
    prices: Option<PriceTable>,
    spent: HashMap<(usize, String, String), u128>,
    windows: HashMap<(usize, String), VecDeque<(i64, u64)>>,
}

fn scope_value(scope: Scope, meta: &Meta) -> Option<&str> {
    match scope {
        Scope::Agent => Some(meta.agent.as_str()),
        Scope::Role => meta.role.as_deref(),
        Scope::Workflow => meta.workflow.as_deref(),
        Scope::Conversation => Some(meta.conversation.as_str()),
    }
}

fn applies<'m>(scope: Scope, matcher: &ScopeMatch, meta: &'m Meta) -> Option<&'m str> {
    let v = scope_value(scope, meta)?;
    match matcher {
        ScopeMatch::Each => Some(v),
        ScopeMatch::Name(n) if n == v => Some(v),
        ScopeMatch::Name(_) => None,
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Agent => "agent",
        Scope::Role => "role",
        Scope::Workflow => "workflow",
        Scope::Conversation => "conversation",
    }
}

fn unix_seconds(time: &str) -> i64 {
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or(0)
}

impl CostSim {
    /// A simulation for `settings`, or `None` when the pack has no budgets or rate limits
    /// that replay simulates.
    pub(crate) fn new(settings: &CostSettings) -> Option<CostSim> {
        let rates: Vec<RateLimitSpec> = settings
            .rate_limits
            .iter()
            .filter(|r| r.requests_per_minute.is_some() || r.tokens_per_minute.is_some())
            .cloned()
            .collect();
        if settings.budgets.is_empty() && rates.is_empty() {
            return None;
        }
        Some(CostSim {
            budgets: settings.budgets.clone(),
            rates,
            prices: PriceTable::with_overrides(&settings.prices).ok(),
            spent: HashMap::new(),
            windows: HashMap::new(),
        })
    }

    fn cost_of(&self, meta: &Meta) -> u128 {
        let priced = match (&self.prices, &meta.usage) {
            (Some(t), Some(u)) => t.lookup(&meta.model).map(|m| m.price.cost(u)),
            _ => None,
        };
        priced.or(meta.cost).unwrap_or(UsdAmount::ZERO).picodollars
    }

    /// Applies the turn to the simulation; refuses it on `side` when a limit is exhausted.
    pub(crate) fn apply(&mut self, meta: &Meta, side: &mut Side) {
        if side.decision == Decision::Block && side.blocked_at == Some(Stage::BeforeUpstream) {
            return;
        }
        let now = if self.rates.is_empty() {
            0
        } else {
            unix_seconds(&meta.time)
        };
        for (i, r) in self.rates.iter().enumerate() {
            let Some(v) = applies(r.scope, &r.matcher, meta) else {
                continue;
            };
            let w = self.windows.entry((i, v.to_owned())).or_default();
            while w.front().is_some_and(|&(t, _)| t <= now - 60) {
                w.pop_front();
            }
            if let Some(rpm) = r.requests_per_minute {
                if w.len() as u64 >= u64::from(rpm) {
                    side.refuse(
                        "rate_limit_exceeded",
                        format!(
                            "simulated: {} `{v}` over {rpm} requests per minute",
                            scope_name(r.scope)
                        ),
                    );
                    return;
                }
            }
            if let Some(tpm) = r.tokens_per_minute {
                let used: u64 = w.iter().map(|&(_, t)| t).sum();
                if used.saturating_add(meta.tokens) > tpm {
                    side.refuse(
                        "rate_limit_exceeded",
                        format!(
                            "simulated: {} `{v}` over {tpm} tokens per minute",
                            scope_name(r.scope)
                        ),
                    );
                    return;
                }
            }
        }
        let cost = self.cost_of(meta);
        let mut keys = Vec::new();
        for (i, b) in self.budgets.iter().enumerate() {
            let Some(v) = applies(b.scope, &b.matcher, meta) else {
                continue;
            };
            let period = match b.period {
                Period::Day => meta.time.get(..10).unwrap_or(""),
                Period::Month => meta.time.get(..7).unwrap_or(""),
                Period::Total => "",
            };
            let key = (i, v.to_owned(), period.to_owned());
            let spent = self.spent.get(&key).copied().unwrap_or(0);
            if spent >= b.limit.picodollars || spent.saturating_add(cost) > b.limit.picodollars {
                side.refuse(
                    "budget_exceeded",
                    format!(
                        "simulated: {} `{v}` budget of {} USD exhausted ({} USD spent)",
                        scope_name(b.scope),
                        b.limit,
                        UsdAmount::from_picodollars(spent)
                    ),
                );
                return;
            }
            keys.push(key);
        }
        for key in keys {
            *self.spent.entry(key).or_insert(0) += cost;
        }
        for (i, r) in self.rates.iter().enumerate() {
            if let Some(v) = applies(r.scope, &r.matcher, meta) {
                self.windows
                    .entry((i, v.to_owned()))
                    .or_default()
                    .push_back((now, meta.tokens));
            }
        }
    }
}
