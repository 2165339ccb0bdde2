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

use cost_accounting::{Price, PriceTable};
use exchange::{Decision, UsdAmount};
use policy_engine::{BudgetSpec, CostSettings, Period, RateLimitSpec, Scope, ScopeMatch};

use super::evaluate::{Meta, Side, Stage};

/// The simulation state of one side.
pub(crate) struct CostSim {
    budgets: Vec<BudgetSpec>,
    rates: Vec<RateLimitSpec>,
    prices: Option<PriceTable>,
    /// Prices found per model name (a lookup tries several forms of the name).
    price_of: HashMap<String, Option<Price>>,
    /// Per budget (by index): spent per scope value and period.
    spent: Vec<HashMap<String, HashMap<String, u128>>>,
    /// Per rate limit (by index): the window per scope value.
    windows: Vec<HashMap<String, VecDeque<(i64, u64)>>>,
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
            prices: PriceTable::with_overrides(&settings.prices).ok(),
            price_of: HashMap::new(),
            spent: vec![HashMap::new(); settings.budgets.len()],
            windows: vec![HashMap::new(); rates.len()],
            rates,
        })
    }

    fn cost_of(&mut self, meta: &Meta) -> u128 {
        let priced = match (&self.prices, &meta.usage) {
            (Some(t), Some(u)) => {
                let price = match self.price_of.get(&meta.model) {
                    Some(p) => *p,
                    None => {
                        let p = t.lookup(&meta.model).map(|m| m.price);
                        self.price_of.insert(meta.model.clone(), p);
                        p
                    }
                };
                price.map(|p| p.cost(u))
            }
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
            // No turn counted yet for this value: an empty window.
            let mut empty = VecDeque::new();
            let w = match self.windows.get_mut(i).and_then(|m| m.get_mut(v)) {
                Some(w) => w,
                None => &mut empty,
            };
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
            let spent = self
                .spent
                .get(i)
                .and_then(|m| m.get(v))
                .and_then(|m| m.get(period))
                .copied()
                .unwrap_or(0);
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
            keys.push((i, v, period));
        }
        for (i, v, period) in keys {
            let Some(by_value) = self.spent.get_mut(i) else {
                continue;
            };
            let by_period = match by_value.get_mut(v) {
                Some(m) => m,
                None => by_value.entry(v.to_owned()).or_default(),
            };
            match by_period.get_mut(period) {
                Some(spent) => *spent += cost,
                None => {
                    by_period.insert(period.to_owned(), cost);
                }
            }
        }
        for (i, r) in self.rates.iter().enumerate() {
            if let Some(v) = applies(r.scope, &r.matcher, meta) {
                let Some(by_value) = self.windows.get_mut(i) else {
                    continue;
                };
                match by_value.get_mut(v) {
                    Some(w) => w.push_back((now, meta.tokens)),
                    None => {
                        by_value.insert(v.to_owned(), VecDeque::from([(now, meta.tokens)]));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::input::Place;

    fn meta(agent: &str, time: &str, cost: &str, tokens: u64) -> Meta {
        Meta {
            place: Place::Seq(1),
            id: "e".to_owned(),
            time: time.to_owned(),
            agent: agent.to_owned(),
            role: None,
            workflow: None,
            conversation: "c".to_owned(),
            model: "no-such-model".to_owned(),
            cost: Some(UsdAmount::parse(cost).unwrap()),
            tokens,
            usage: None,
        }
    }

    fn side() -> Side {
        Side {
            decision: Decision::Allow,
            blocked_at: None,
            verdicts: Vec::new(),
            allowed_tools: Vec::new(),
        }
    }

    /// Which of `turns` the simulation refuses, and with which code.
    fn refused(sim: &mut CostSim, turns: &[Meta]) -> Vec<Option<String>> {
        turns
            .iter()
            .map(|m| {
                let mut s = side();
                sim.apply(m, &mut s);
                (s.decision == Decision::Block).then(|| s.verdicts[0].rule.clone().unwrap())
            })
            .collect()
    }

    fn settings(budgets: Vec<BudgetSpec>, rate_limits: Vec<RateLimitSpec>) -> CostSettings {
        CostSettings {
            budgets,
            rate_limits,
            prices: Vec::new(),
            default_max_tokens: 4096,
        }
    }

    #[test]
    fn a_daily_budget_per_agent_refuses_the_turn_that_would_exceed_it() {
        let budget = BudgetSpec {
            scope: Scope::Agent,
            matcher: ScopeMatch::Each,
            limit: UsdAmount::parse("0.25").unwrap(),
            period: Period::Day,
            soft_limit: None,
        };
        let mut sim = CostSim::new(&settings(vec![budget], Vec::new())).unwrap();
        let t = |agent, time| meta(agent, time, "0.10", 10);
        let got = refused(
            &mut sim,
            &[
                t("a", "2025-01-01T10:00:00Z"),
                t("a", "2025-01-01T11:00:00Z"),
                // 0.30 > 0.25: refused, and spends nothing
                t("a", "2025-01-01T12:00:00Z"),
                // another agent has its own budget
                t("b", "2025-01-01T12:00:00Z"),
                // a new day starts a new period
                t("a", "2025-01-02T00:00:00Z"),
            ],
        );
        let budget = Some("budget_exceeded".to_owned());
        assert_eq!(got, vec![None, None, budget, None, None]);
    }

    #[test]
    fn rate_limits_count_a_sliding_minute_of_recorded_time() {
        let rpm = RateLimitSpec {
            scope: Scope::Agent,
            matcher: ScopeMatch::Name("a".to_owned()),
            requests_per_minute: Some(2),
            tokens_per_minute: Some(1000),
            max_concurrent: None,
        };
        let mut sim = CostSim::new(&settings(Vec::new(), vec![rpm])).unwrap();
        let t = |agent, time, tokens| meta(agent, time, "0", tokens);
        let got = refused(
            &mut sim,
            &[
                // one turn over the token limit on its own, with an empty window
                t("a", "2025-01-01T10:00:00Z", 1001),
                t("a", "2025-01-01T10:00:10Z", 10),
                t("a", "2025-01-01T10:00:20Z", 10),
                // a third request within the minute
                t("a", "2025-01-01T10:00:30Z", 10),
                // other agents are not limited
                t("b", "2025-01-01T10:00:30Z", 5000),
                // the first counted turn has left the window
                t("a", "2025-01-01T10:01:15Z", 10),
            ],
        );
        let rate = Some("rate_limit_exceeded".to_owned());
        assert_eq!(got, vec![rate.clone(), None, None, rate, None, None]);
    }
}
