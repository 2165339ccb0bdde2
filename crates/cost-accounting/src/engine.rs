//! The cost engine: prices, budget counters (reservation-based), rate limits, the ledger
//! writer and metrics, shared by every clone of [`CostEngine`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use exchange::{ApiError, TokenUsage, UsdAmount};
use http::{HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use policy_engine::{BudgetSpec, CostSettings, RateLimitSpec, Scope, ScopeMatch};
use tokio::time::Instant;

use crate::error::CostError;
use crate::ledger::{self, LEDGER_FILE, LedgerRow, LedgerWriter};
use crate::metrics::Metrics;
use crate::period::{PeriodKey, rfc3339};
use crate::prices::{Price, PriceMatch, PriceTable};

/// Output tokens reserved when neither the request nor the pack sets a limit.
pub const FALLBACK_MAX_TOKENS: u64 = 4096;

/// The compiled cost settings of one pack.
struct Config {
    prices: PriceTable,
    budgets: Vec<BudgetSpec>,
    rate_limits: Vec<RateLimitSpec>,
    default_max_tokens: u64,
}

impl Config {
    fn compile(settings: CostSettings) -> Result<Config, CostError> {
        Ok(Config {
            prices: PriceTable::with_overrides(&settings.prices)?,
            default_max_tokens: if settings.default_max_tokens == 0 {
                FALLBACK_MAX_TOKENS
            } else {
                settings.default_max_tokens
            },
            budgets: settings.budgets,
            rate_limits: settings.rate_limits,
        })
    }

    fn dims(&self) -> HashSet<Dim> {
        self.budgets
            .iter()
            .map(|b| Dim {
                scope: b.scope,
                period: b.period.into(),
            })
            .collect()
    }
}

/// Who spent: the attribution of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribution {
    pub event_id: String,
    pub ts_ms: i64,
    pub agent: String,
    pub role: Option<String>,
    pub workflow: Option<String>,
    pub conversation: Option<String>,
    pub model: String,
    pub key_id: Option<String>,
}

impl Attribution {
    pub(crate) fn value(&self, scope: Scope) -> Option<&str> {
        match scope {
            Scope::Agent => Some(self.agent.as_str()),
            Scope::Role => self.role.as_deref(),
            Scope::Workflow => self.workflow.as_deref(),
            Scope::Conversation => self.conversation.as_deref(),
        }
    }
}

pub(crate) fn scope_str(scope: Scope) -> &'static str {
    match scope {
        Scope::Agent => "agent",
        Scope::Role => "role",
        Scope::Workflow => "workflow",
        Scope::Conversation => "conversation",
    }
}

fn match_str(m: &ScopeMatch) -> &str {
    match m {
        ScopeMatch::Name(n) => n.as_str(),
        ScopeMatch::Each => "*",
    }
}

fn matches(m: &ScopeMatch, value: &str) -> bool {
    match m {
        ScopeMatch::Name(n) => n == value,
        ScopeMatch::Each => true,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A budget dimension: spend of each value of `scope` in the current `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Dim {
    scope: Scope,
    period: PeriodKey,
}

/// Spend of one value in one dimension, in the period starting at `period_start`.
#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    period_start: i64,
    committed: u128,
    reserved: u128,
}

impl Counter {
    /// Rolls over to the period starting at `start` when it is newer.
    fn roll(&mut self, start: i64) {
        if self.period_start < start {
            *self = Counter {
                period_start: start,
                committed: 0,
                reserved: 0,
            };
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LimitKind {
    Requests,
    Tokens,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    scope: Scope,
    matcher: Option<String>,
    value: String,
    kind: LimitKind,
}

/// A token bucket holding up to one minute's allowance, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    per_minute: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_minute: f64, now: Instant) -> Bucket {
        Bucket {
            level: per_minute,
            per_minute,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + secs * self.per_minute / 60.0).min(self.per_minute);
        self.last = now;
    }

    /// Seconds until `need` (capped at the capacity) is available; 0 when it is now.
    fn wait_secs(&self, need: f64) -> u64 {
        let need = need.min(self.per_minute);
        if self.level >= need {
            return 0;
        }
        let secs = (need - self.level) * 60.0 / self.per_minute;
        (secs.ceil() as u64).max(1)
    }
}

#[derive(Default)]
struct State {
    spend: HashMap<Dim, HashMap<String, Counter>>,
    buckets: HashMap<BucketKey, Bucket>,
    inflight: HashMap<(Scope, String), u32>,
    /// The bucket count above which idle buckets are pruned next (at least
    /// [`MAX_IDLE_BUCKETS`]; twice what a pruning kept, so that many active buckets are
    /// not rescanned on every request).
    prune_buckets_at: usize,
}

/// Buckets are pruned when there are more than this many and they are full (idle).
const MAX_IDLE_BUCKETS: usize = 10_000;

struct Inner {
    db_path: PathBuf,
    config: ArcSwap<Config>,
    state: Mutex<State>,
    metrics: Metrics,
    writer: LedgerWriter,
}

/// The cost engine: price table, budgets, rate limits, attribution ledger and metrics.
/// Cheap to clone (an `Arc` inside); every clone shares the same counters.
#[derive(Clone)]
pub struct CostEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CostEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostEngine")
            .field("ledger", &self.inner.db_path)
            .finish_non_exhaustive()
    }
}

impl CostEngine {
    /// Opens (creating if needed) `<data_dir>/ledger.db`, compiles `settings` and initialises
    /// the budget counters from the ledger (spend in each budget's current period).
    pub fn open(data_dir: &Path, settings: CostSettings) -> Result<CostEngine, CostError> {
        std::fs::create_dir_all(data_dir).map_err(|source| CostError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let db_path = data_dir.join(LEDGER_FILE);
        // The tokenizer (~45 MB) is only needed up front when a budget or a tokens/min limit
        // estimates prompts before the call; otherwise it loads lazily, if a provider ever
        // returns no usage.
        let estimates_up_front = !settings.budgets.is_empty()
            || settings
                .rate_limits
                .iter()
                .any(|r| r.tokens_per_minute.is_some());
        let config = Config::compile(settings)?;
        let conn = ledger::open_rw(&db_path)?;
        let mut state = State::default();
        let dims: Vec<Dim> = config.dims().into_iter().collect();
        load_dims(&conn, &db_path, &dims, &mut state, now_ms())?;
        let metrics = Metrics::default();
        let writer = LedgerWriter::start(&db_path, conn, metrics.ledger_write_errors.clone())?;
        if estimates_up_front {
            // Load the tokenizer off the request path.
            let _ = std::thread::Builder::new()
                .name("palisade-tokenizer-warmup".to_owned())
                .spawn(crate::tokens::warm_up);
        }
        Ok(CostEngine {
            inner: Arc::new(Inner {
                db_path,
                config: ArcSwap::from_pointee(config),
                state: Mutex::new(state),
                metrics,
                writer,
            }),
        })
    }

    /// Swaps in new settings. Budget spend, rate-limit buckets and in-flight counts are kept;
    /// a budget on a new scope/period is initialised from the ledger. On error the old
    /// settings stay in force. When a new scope/period appears this blocks briefly (it flushes
    /// and reads the ledger; it cannot deadlock, the writer is its own thread): from async
    /// code prefer `spawn_blocking`.
    pub fn reload(&self, settings: CostSettings) -> Result<(), CostError> {
        let config = Config::compile(settings)?;
        let dims = config.dims();
        let mut state = self.inner.state.lock();
        let missing: Vec<Dim> = dims
            .iter()
            .filter(|d| !state.spend.contains_key(d))
            .copied()
            .collect();
        if !missing.is_empty() {
            // Every settled request enqueued its row while holding the state lock, so after
            // this flush the ledger holds all spend the new dimensions must count.
            self.inner.writer.flush()?;
            let conn = ledger::open_ro(&self.inner.db_path)?;
            load_dims(&conn, &self.inner.db_path, &missing, &mut state, now_ms())?;
        }
        state.spend.retain(|d, _| dims.contains(d));
        let live: HashSet<(Scope, Option<String>)> = config
            .rate_limits
            .iter()
            .map(|r| (r.scope, matcher_key(&r.matcher)))
            .collect();
        state
            .buckets
            .retain(|k, _| live.contains(&(k.scope, k.matcher.clone())));
        self.inner.config.store(Arc::new(config));
        Ok(())
    }

    /// Blocks until every ledger row recorded so far is committed (tests, shutdown). Call it
    /// outside the async runtime's worker threads (e.g. in `spawn_blocking`).
    pub fn flush(&self) -> Result<(), CostError> {
        self.inner.writer.flush()
    }

    /// The ledger file.
    pub fn ledger_path(&self) -> &Path {
        &self.inner.db_path
    }

    /// The price the engine uses for `model` (`None`: unknown, cost recorded as unknown).
    pub fn price_of(&self, model: &str) -> Option<PriceMatch> {
        self.inner.config.load().prices.lookup(model)
    }

    /// Committed spend (settled requests) of `value` in `scope` for the current `period`.
    /// Only tracked for scope/period pairs some budget uses; `None` otherwise.
    pub fn spent(
        &self,
        scope: Scope,
        value: &str,
        period: policy_engine::Period,
    ) -> Option<UsdAmount> {
        let dim = Dim {
            scope,
            period: period.into(),
        };
        let start = dim.period.start_ms(now_ms());
        let state = self.inner.state.lock();
        let counters = state.spend.get(&dim)?;
        Some(UsdAmount::from_picodollars(
            counters
                .get(value)
                .filter(|c| c.period_start >= start)
                .map(|c| c.committed)
                .unwrap_or(0),
        ))
    }

    /// Appends the engine's metrics in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        self.inner.metrics.render(out);
    }

    /// Checks rate limits and reserves the worst-case cost against every budget that applies.
    /// `prompt_tokens` is called at most once, only when a budget or token limit needs it.
    pub(crate) fn admit(
        &self,
        attr: Attribution,
        prompt_tokens: &mut dyn FnMut() -> u64,
        output_limit: Option<u64>,
    ) -> Result<Admission, ApiError> {
        let config = self.inner.config.load_full();
        let price = config.prices.lookup(&attr.model).map(|m| m.price);
        let budgets: Vec<(&BudgetSpec, &str)> = config
            .budgets
            .iter()
            .filter_map(|b| {
                attr.value(b.scope)
                    .filter(|v| matches(&b.matcher, v))
                    .map(|v| (b, v))
            })
            .collect();
        let limits: Vec<(&RateLimitSpec, &str)> = config
            .rate_limits
            .iter()
            .filter_map(|r| {
                attr.value(r.scope)
                    .filter(|v| matches(&r.matcher, v))
                    .map(|v| (r, v))
            })
            .collect();
        let needs_prompt = (!budgets.is_empty() && price.is_some())
            || limits.iter().any(|(r, _)| r.tokens_per_minute.is_some());
        let prompt_estimate = needs_prompt.then(prompt_tokens);
        let max_output = output_limit.unwrap_or(config.default_max_tokens);
        let worst = price.map(|p| p.worst_case(prompt_estimate.unwrap_or(0), max_output));
        if price.is_none() && !budgets.is_empty() {
            tracing::warn!(model = %attr.model, agent = %attr.agent, "no price for model: budgets cannot reserve its cost");
        }
        let now = Instant::now();
        let now_wall = now_ms();

        let mut state = self.inner.state.lock();
        // 1. Rate limits: check all before consuming any.
        for (spec, value) in &limits {
            let checks = [
                (
                    LimitKind::Requests,
                    spec.requests_per_minute.map(f64::from),
                    1.0,
                ),
                (
                    LimitKind::Tokens,
                    spec.tokens_per_minute.map(|t| t as f64),
                    prompt_estimate.unwrap_or(0) as f64,
                ),
            ];
            for (kind, per_minute, need) in checks {
                let Some(per_minute) = per_minute else {
                    continue;
                };
                let key = bucket_key(spec, value, kind);
                let bucket = state
                    .buckets
                    .entry(key)
                    .or_insert_with(|| Bucket::new(per_minute, now));
                bucket.per_minute = per_minute;
                bucket.refill(now);
                let wait = bucket.wait_secs(need);
                if wait > 0 {
                    drop(state);
                    let (limit_name, unit) = match kind {
                        LimitKind::Requests => ("requests_per_minute", "requests"),
                        LimitKind::Tokens => ("tokens_per_minute", "tokens"),
                    };
                    self.inner.metrics.rate_limited(
                        scope_str(spec.scope),
                        match_str(&spec.matcher),
                        limit_name,
                    );
                    return Err(rate_limit_error(
                        spec,
                        value,
                        &format!("{} {unit} per minute", per_minute as u64),
                        wait,
                    ));
                }
            }
            if let Some(max) = spec.max_concurrent {
                let n = state
                    .inflight
                    .get(&(spec.scope, (*value).to_owned()))
                    .copied()
                    .unwrap_or(0);
                if n >= max {
                    drop(state);
                    self.inner.metrics.rate_limited(
                        scope_str(spec.scope),
                        match_str(&spec.matcher),
                        "max_concurrent",
                    );
                    return Err(rate_limit_error(
                        spec,
                        value,
                        &format!("{max} concurrent requests"),
                        1,
                    ));
                }
            }
        }
        // 2. Budgets: committed + in flight + this request's worst case must fit.
        if let Some(worst) = worst {
            for (b, value) in &budgets {
                let dim = Dim {
                    scope: b.scope,
                    period: b.period.into(),
                };
                let start = dim.period.start_ms(now_wall);
                // Dimensions exist from `open`/`reload` on (initialised from the ledger).
                let Some(counters) = state.spend.get_mut(&dim) else {
                    continue;
                };
                let counter = counters.entry((*value).to_owned()).or_insert(Counter {
                    period_start: start,
                    ..Counter::default()
                });
                counter.roll(start);
                let total = counter
                    .committed
                    .saturating_add(counter.reserved)
                    .saturating_add(worst.picodollars);
                if total > b.limit.picodollars {
                    let c = *counter;
                    drop(state);
                    self.inner.metrics.budget_rejected(
                        scope_str(b.scope),
                        match_str(&b.matcher),
                        dim.period.as_str(),
                    );
                    return Err(budget_error(b, value, dim.period, &c, worst));
                }
            }
        }
        // 3. All checks passed: consume and reserve.
        let mut reservations: Vec<Reservation> = Vec::new();
        let mut token_debits: Vec<(BucketKey, f64)> = Vec::new();
        let mut permits: Vec<(Scope, String)> = Vec::new();
        for (spec, value) in &limits {
            if spec.requests_per_minute.is_some()
                && let Some(b) =
                    state
                        .buckets
                        .get_mut(&bucket_key(spec, value, LimitKind::Requests))
            {
                b.level -= 1.0;
            }
            if spec.tokens_per_minute.is_some() {
                let key = bucket_key(spec, value, LimitKind::Tokens);
                let need = prompt_estimate.unwrap_or(0) as f64;
                if let Some(b) = state.buckets.get_mut(&key) {
                    b.level -= need;
                }
                token_debits.push((key, need));
            }
            if spec.max_concurrent.is_some() {
                let k = (spec.scope, (*value).to_owned());
                if !permits.contains(&k) {
                    *state.inflight.entry(k.clone()).or_insert(0) += 1;
                    permits.push(k);
                }
            }
        }
        if let Some(worst) = worst {
            for (b, value) in &budgets {
                let dim = Dim {
                    scope: b.scope,
                    period: b.period.into(),
                };
                if reservations
                    .iter()
                    .any(|r| r.dim == dim && r.value == *value)
                {
                    continue;
                }
                if let Some(c) = state.spend.get_mut(&dim).and_then(|m| m.get_mut(*value)) {
                    c.reserved = c.reserved.saturating_add(worst.picodollars);
                    reservations.push(Reservation {
                        dim,
                        value: (*value).to_owned(),
                        period_start: c.period_start,
                        amount: worst.picodollars,
                    });
                }
            }
        }
        if state.buckets.len() > state.prune_buckets_at.max(MAX_IDLE_BUCKETS) {
            state.buckets.retain(|_, b| {
                let mut b = *b;
                b.refill(now);
                b.level < b.per_minute
            });
            state.prune_buckets_at = state.buckets.len().saturating_mul(2);
        }
        drop(state);
        Ok(Admission {
            engine: self.clone(),
            attr,
            price,
            prompt_estimate,
            reservations,
            token_debits,
            permits,
            done: false,
        })
    }

    /// Settles an admission to `usage` (or releases it when `None`): replaces the reservation
    /// with the actual cost, corrects token buckets, writes the ledger row and metrics.
    /// Returns the cost (`None`: unknown price, or nothing to charge).
    fn settle(&self, adm: &mut Admission, usage: Option<TokenUsage>) -> Option<UsdAmount> {
        adm.done = true;
        let cost = match (&usage, adm.price) {
            (Some(u), Some(p)) => Some(p.cost(u)),
            _ => None,
        };
        let config = self.inner.config.load_full();
        let now_wall = now_ms();
        let mut alerts: Vec<(BudgetSpec, String, UsdAmount)> = Vec::new();
        {
            let mut state = self.inner.state.lock();
            release_locked(&mut state, adm);
            if let Some(u) = &usage {
                let add = cost.map(|c| c.picodollars).unwrap_or(0);
                let dims: Vec<Dim> = state.spend.keys().copied().collect();
                for dim in dims {
                    let Some(value) = adm.attr.value(dim.scope) else {
                        continue;
                    };
                    let row_start = dim.period.start_ms(adm.attr.ts_ms);
                    let now_start = dim.period.start_ms(now_wall);
                    let Some(counters) = state.spend.get_mut(&dim) else {
                        continue;
                    };
                    let c = counters.entry(value.to_owned()).or_insert(Counter {
                        period_start: now_start,
                        ..Counter::default()
                    });
                    c.roll(now_start);
                    if c.period_start != row_start {
                        continue;
                    }
                    let before = c.committed;
                    c.committed = c.committed.saturating_add(add);
                    for b in &config.budgets {
                        if b.scope == dim.scope
                            && PeriodKey::from(b.period) == dim.period
                            && matches(&b.matcher, value)
                            && let Some(soft) = b.soft_limit
                            && before < soft.picodollars
                            && c.committed >= soft.picodollars
                        {
                            alerts.push((
                                b.clone(),
                                value.to_owned(),
                                UsdAmount::from_picodollars(c.committed),
                            ));
                        }
                    }
                }
                let actual = (u.prompt_tokens.saturating_add(u.completion_tokens)) as f64;
                for (key, debited) in &adm.token_debits {
                    if let Some(b) = state.buckets.get_mut(key) {
                        b.level = (b.level - (actual - debited)).min(b.per_minute);
                    }
                }
                // Enqueued under the state lock: `reload` relies on it (see there).
                self.inner.writer.append(LedgerRow {
                    event_id: adm.attr.event_id.clone(),
                    ts_ms: adm.attr.ts_ms,
                    agent: adm.attr.agent.clone(),
                    role: adm.attr.role.clone(),
                    workflow: adm.attr.workflow.clone(),
                    conversation: adm.attr.conversation.clone(),
                    model: adm.attr.model.clone(),
                    key_id: adm.attr.key_id.clone(),
                    prompt_tokens: u.prompt_tokens,
                    completion_tokens: u.completion_tokens,
                    cached_tokens: u.cached_tokens,
                    estimated: u.estimated,
                    cost_pico: cost.map(|c| c.picodollars),
                });
            }
        }
        if let Some(u) = &usage {
            self.inner
                .metrics
                .record_request(&adm.attr.agent, &adm.attr.model, u, cost);
            if cost.is_none() {
                tracing::warn!(model = %adm.attr.model, agent = %adm.attr.agent, "no price for model: cost recorded as unknown");
            }
        }
        for (b, value, spent) in alerts {
            let period = PeriodKey::from(b.period);
            self.inner.metrics.soft_limit_alert(
                scope_str(b.scope),
                match_str(&b.matcher),
                period.as_str(),
            );
            tracing::warn!(
                scope = scope_str(b.scope),
                value = %value,
                matcher = match_str(&b.matcher),
                period = period.as_str(),
                spent = %spent,
                soft_limit = %b.soft_limit.unwrap_or_default(),
                limit = %b.limit,
                "budget soft limit crossed"
            );
        }
        cost
    }
}

fn matcher_key(m: &ScopeMatch) -> Option<String> {
    match m {
        ScopeMatch::Name(n) => Some(n.clone()),
        ScopeMatch::Each => None,
    }
}

fn bucket_key(spec: &RateLimitSpec, value: &str, kind: LimitKind) -> BucketKey {
    BucketKey {
        scope: spec.scope,
        matcher: matcher_key(&spec.matcher),
        value: value.to_owned(),
        kind,
    }
}

/// Adds the ledger's spend in each dimension's current period.
fn load_dims(
    conn: &rusqlite::Connection,
    path: &Path,
    dims: &[Dim],
    state: &mut State,
    now: i64,
) -> Result<(), CostError> {
    if dims.is_empty() {
        return Ok(());
    }
    let starts: Vec<(Dim, i64)> = dims.iter().map(|d| (*d, d.period.start_ms(now))).collect();
    let since = starts.iter().map(|(_, s)| *s).min().unwrap_or(i64::MIN);
    for (d, _) in &starts {
        state.spend.insert(*d, HashMap::new());
    }
    ledger::scan_spend(conn, path, since, |row| {
        let attr_value = |scope: Scope| match scope {
            Scope::Agent => Some(row.agent.as_str()),
            Scope::Role => row.role.as_deref(),
            Scope::Workflow => row.workflow.as_deref(),
            Scope::Conversation => row.conversation.as_deref(),
        };
        for (d, start) in &starts {
            if row.ts_ms < *start {
                continue;
            }
            let Some(value) = attr_value(d.scope) else {
                continue;
            };
            if let Some(counters) = state.spend.get_mut(d) {
                let c = counters.entry(value.to_owned()).or_insert(Counter {
                    period_start: *start,
                    ..Counter::default()
                });
                c.committed = c.committed.saturating_add(row.cost_pico.unwrap_or(0));
            }
        }
    })
}

fn release_locked(state: &mut State, adm: &mut Admission) {
    for r in adm.reservations.drain(..) {
        if let Some(c) = state
            .spend
            .get_mut(&r.dim)
            .and_then(|m| m.get_mut(&r.value))
            && c.period_start == r.period_start
        {
            c.reserved = c.reserved.saturating_sub(r.amount);
        }
    }
    for k in adm.permits.drain(..) {
        if let Some(n) = state.inflight.get_mut(&k) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.inflight.remove(&k);
            }
        }
    }
}

fn budget_error(
    b: &BudgetSpec,
    value: &str,
    period: PeriodKey,
    c: &Counter,
    worst: UsdAmount,
) -> ApiError {
    let reset = period.reset_ms(c.period_start);
    let resets = match reset {
        Some(ms) => format!("resets at {}", rfc3339(ms)),
        None => "does not reset".to_owned(),
    };
    let message = format!(
        "budget exceeded: {} budget for `{value}` (match `{}`, period {}) has a limit of {} USD; spent {} USD, in flight {} USD, this request may cost up to {} USD; it {resets}",
        scope_str(b.scope),
        match_str(&b.matcher),
        period.as_str(),
        b.limit,
        UsdAmount::from_picodollars(c.committed),
        UsdAmount::from_picodollars(c.reserved),
        worst,
    );
    let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "budget_exceeded", message)
        .with_code("budget_exceeded");
    if let Some(ms) = reset {
        let secs = (ms - now_ms()).max(0) as u64;
        err = err.with_header(
            HeaderName::from_static("retry-after"),
            HeaderValue::from(secs.div_ceil(1000).max(1)),
        );
    }
    err
}

fn rate_limit_error(spec: &RateLimitSpec, value: &str, limit: &str, wait: u64) -> ApiError {
    let message = format!(
        "rate limit exceeded: {} `{value}` (match `{}`) is limited to {limit}; retry after {wait} s",
        scope_str(spec.scope),
        match_str(&spec.matcher),
    );
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        message,
    )
    .with_code("rate_limit_exceeded")
    .with_header(
        HeaderName::from_static("retry-after"),
        HeaderValue::from(wait),
    )
}

#[derive(Debug)]
struct Reservation {
    dim: Dim,
    value: String,
    period_start: i64,
    amount: u128,
}

/// An admitted request: its reservations, token debits and concurrency permits. Settle it
/// with [`Admission::settle`]; dropping it unsettled releases everything without charge.
pub(crate) struct Admission {
    engine: CostEngine,
    attr: Attribution,
    price: Option<Price>,
    prompt_estimate: Option<u64>,
    reservations: Vec<Reservation>,
    token_debits: Vec<(BucketKey, f64)>,
    permits: Vec<(Scope, String)>,
    done: bool,
}

impl Admission {
    /// The prompt-token estimate made for the reservation, if one was needed.
    pub(crate) fn prompt_estimate(&self) -> Option<u64> {
        self.prompt_estimate
    }

    /// Settles to `usage` (ledger row, metrics, counters); returns the exact cost, `None`
    /// when the price is unknown.
    pub(crate) fn settle(mut self, usage: TokenUsage) -> Option<UsdAmount> {
        let engine = self.engine.clone();
        engine.settle(&mut self, Some(usage))
    }

    /// Releases reservations and permits without charging anything.
    pub(crate) fn release(mut self) {
        let engine = self.engine.clone();
        engine.settle(&mut self, None);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.done {
            let engine = self.engine.clone();
            engine.settle(self, None);
        }
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    fn attr(conversation: String) -> Attribution {
        Attribution {
            event_id: conversation.clone(),
            ts_ms: 0,
            agent: "a".to_owned(),
            role: None,
            workflow: None,
            conversation: Some(conversation),
            model: "gpt-4o-mini".to_owned(),
            key_id: None,
        }
    }

    /// Many active buckets (none idle, nothing to prune) are not rescanned on every request:
    /// after a pruning pass the next one waits until the map has doubled.
    #[test]
    fn active_buckets_are_not_rescanned_on_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let settings = CostSettings {
            budgets: Vec::new(),
            rate_limits: vec![RateLimitSpec {
                scope: Scope::Conversation,
                matcher: ScopeMatch::Each,
                // One request a minute: each bucket stays active (not yet refilled) for
                // 60 s, far longer than the test runs, even unoptimised.
                requests_per_minute: Some(1),
                tokens_per_minute: None,
                max_concurrent: None,
            }],
            prices: Vec::new(),
            default_max_tokens: 16,
        };
        let engine = CostEngine::open(dir.path(), settings).unwrap();
        let mut held = Vec::new();
        for i in 0..=MAX_IDLE_BUCKETS {
            held.push(
                engine
                    .admit(attr(format!("c{i}")), &mut || 0, None)
                    .unwrap(),
            );
        }
        // The first pass found every bucket active and kept them all.
        let at = engine.inner.state.lock().prune_buckets_at;
        assert_eq!(at, 2 * (MAX_IDLE_BUCKETS + 1));
        for i in 0..MAX_IDLE_BUCKETS / 2 {
            held.push(
                engine
                    .admit(attr(format!("d{i}")), &mut || 0, None)
                    .unwrap(),
            );
        }
        let state = engine.inner.state.lock();
        assert_eq!(state.prune_buckets_at, at, "no pass below the doubled size");
        assert_eq!(
            state.buckets.len(),
            MAX_IDLE_BUCKETS + 1 + MAX_IDLE_BUCKETS / 2
        );
    }
}
