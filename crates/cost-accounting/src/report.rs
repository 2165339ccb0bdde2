//! `palisade cost report`: spend from the ledger grouped by agent, role, workflow,
//! conversation, model or key, as a table, JSON or CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exchange::UsdAmount;
use rusqlite::params;
use serde_json::json;

use crate::error::CostError;
use crate::ledger::{LEDGER_FILE, open_ro, sql_err};

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// Calling agent.
    Agent,
    /// Role of the key.
    Role,
    /// Workflow.
    Workflow,
    /// Conversation id.
    Conversation,
    /// Model as requested.
    Model,
    /// Public id of the virtual key.
    Key,
}

impl GroupBy {
    /// The name used on the command line and as the key column of the report.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Agent => "agent",
            GroupBy::Role => "role",
            GroupBy::Workflow => "workflow",
            GroupBy::Conversation => "conversation",
            GroupBy::Model => "model",
            GroupBy::Key => "key",
        }
    }

    fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "key_id",
            other => other.as_str(),
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent" => Ok(GroupBy::Agent),
            "role" => Ok(GroupBy::Role),
            "workflow" => Ok(GroupBy::Workflow),
            "conversation" => Ok(GroupBy::Conversation),
            "model" => Ok(GroupBy::Model),
            "key" => Ok(GroupBy::Key),
            other => Err(format!(
                "unknown grouping `{other}` (expected agent, role, workflow, conversation, model or key)"
            )),
        }
    }
}

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReportFormat {
    /// Aligned columns for a terminal (default).
    #[default]
    Table,
    /// One JSON document: `{"group_by", "since", "rows": [...], "total": {...}}`.
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

impl std::str::FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(ReportFormat::Table),
            "json" => Ok(ReportFormat::Json),
            "csv" => Ok(ReportFormat::Csv),
            other => Err(format!(
                "unknown report format `{other}` (expected table, json or csv)"
            )),
        }
    }
}

/// One group of a report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportRow {
    /// The group's value (`None`: requests without one, e.g. no workflow).
    pub key: Option<String>,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached prompt tokens.
    pub cached_tokens: u64,
    /// Requests whose usage was estimated by the gateway's tokenizer.
    pub estimated_requests: u64,
    /// Spend of the requests with a known price.
    pub cost: UsdAmount,
    /// Requests whose model had no known price (their cost is not in `cost`).
    pub unknown_cost_requests: u64,
}

impl ReportRow {
    fn add(&mut self, other: &ReportRow) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.estimated_requests += other.estimated_requests;
        self.cost = self.cost.saturating_add(other.cost);
        self.unknown_cost_requests += other.unknown_cost_requests;
    }
}

fn since_ms(since: Option<Duration>) -> i64 {
    let Some(d) = since else { return i64::MIN };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let start = now.saturating_sub(d);
    i64::try_from(start.as_millis()).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The report's groups, most expensive first (ties by key), from `<data_dir>/ledger.db`,
/// counting requests received within `since` of now (all when `None`).
pub fn report_rows(
    data_dir: &Path,
    by: GroupBy,
    since: Option<Duration>,
) -> Result<Vec<ReportRow>, CostError> {
    let path = data_dir.join(LEDGER_FILE);
    let conn = open_ro(&path)?;
    let err = sql_err(&path);
    let sql = format!(
        "SELECT {}, prompt_tokens, completion_tokens, cached_tokens, estimated, cost_pico FROM ledger WHERE ts_ms >= ?1",
        by.column()
    );
    let mut stmt = conn.prepare(&sql).map_err(&err)?;
    let mut rows = stmt.query(params![since_ms(since)]).map_err(&err)?;
    let mut groups: BTreeMap<Option<String>, ReportRow> = BTreeMap::new();
    while let Some(r) = rows.next().map_err(&err)? {
        let key: Option<String> = r.get(0).map_err(&err)?;
        let cost: Option<i64> = r.get(5).map_err(&err)?;
        let estimated: bool = r.get(4).map_err(&err)?;
        let one = ReportRow {
            key: key.clone(),
            requests: 1,
            prompt_tokens: u64_of(r.get(1).map_err(&err)?),
            completion_tokens: u64_of(r.get(2).map_err(&err)?),
            cached_tokens: u64_of(r.get(3).map_err(&err)?),
            estimated_requests: u64::from(estimated),
            cost: UsdAmount::from_picodollars(
                cost.map(|c| u128::try_from(c).unwrap_or(0)).unwrap_or(0),
            ),
            unknown_cost_requests: u64::from(cost.is_none()),
        };
        groups
            .entry(key.clone())
            .or_insert_with(|| ReportRow {
                key,
                ..ReportRow::default()
            })
            .add(&one);
    }
    let mut out: Vec<ReportRow> = groups.into_values().collect();
    out.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    Ok(out)
}

/// The report as text in `format` (see [`ReportFormat`]); the lines of `palisade cost report
/// --by … [--since …] [--format …]`.
pub fn report(
    data_dir: &Path,
    by: GroupBy,
    since: Option<Duration>,
    format: ReportFormat,
) -> Result<String, CostError> {
    let rows = report_rows(data_dir, by, since)?;
    Ok(render(&rows, by, since, format))
}

/// Renders report rows (exposed for callers that filter rows themselves).
pub fn render(
    rows: &[ReportRow],
    by: GroupBy,
    since: Option<Duration>,
    format: ReportFormat,
) -> String {
    let mut total = ReportRow::default();
    for r in rows {
        total.add(r);
    }
    match format {
        ReportFormat::Table => render_table(rows, &total, by),
        ReportFormat::Json => render_json(rows, &total, by, since),
        ReportFormat::Csv => render_csv(rows, by),
    }
}

const NONE_SHOWN: &str = "(none)";

fn cells(r: &ReportRow, key: &str) -> [String; 8] {
    [
        key.to_owned(),
        r.requests.to_string(),
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        r.cached_tokens.to_string(),
        r.estimated_requests.to_string(),
        r.cost.to_string(),
        r.unknown_cost_requests.to_string(),
    ]
}

fn render_table(rows: &[ReportRow], total: &ReportRow, by: GroupBy) -> String {
    let header = [
        by.as_str().to_ascii_uppercase(),
        "REQUESTS".to_owned(),
        "PROMPT_TOKENS".to_owned(),
        "COMPLETION_TOKENS".to_owned(),
        "CACHED_TOKENS".to_owned(),
        "ESTIMATED".to_owned(),
        "COST_USD".to_owned(),
        "UNKNOWN_COST".to_owned(),
    ];
    let mut lines: Vec<[String; 8]> = vec![header];
    for r in rows {
        lines.push(cells(r, r.key.as_deref().unwrap_or(NONE_SHOWN)));
    }
    lines.push(cells(total, "TOTAL"));
    let mut widths = [0usize; 8];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, (c, w)) in l.iter().zip(widths.iter()).enumerate() {
            if i == 0 {
                let _ = write!(line, "{c:<w$}");
            } else {
                let _ = write!(line, "  {c:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn json_row(r: &ReportRow) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("requests".into(), json!(r.requests));
    m.insert("prompt_tokens".into(), json!(r.prompt_tokens));
    m.insert("completion_tokens".into(), json!(r.completion_tokens));
    m.insert("cached_tokens".into(), json!(r.cached_tokens));
    m.insert("estimated_requests".into(), json!(r.estimated_requests));
    m.insert("cost_usd".into(), json!(r.cost.to_string()));
    m.insert(
        "unknown_cost_requests".into(),
        json!(r.unknown_cost_requests),
    );
    m
}

fn render_json(
    rows: &[ReportRow],
    total: &ReportRow,
    by: GroupBy,
    since: Option<Duration>,
) -> String {
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            m.insert(by.as_str().into(), json!(r.key));
            m.extend(json_row(r));
            serde_json::Value::Object(m)
        })
        .collect();
    let doc = json!({
        "group_by": by.as_str(),
        "since_seconds": since.map(|d| d.as_secs()),
        "rows": list,
        "total": serde_json::Value::Object(json_row(total)),
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn render_csv(rows: &[ReportRow], by: GroupBy) -> String {
    let mut out = format!(
        "{},requests,prompt_tokens,completion_tokens,cached_tokens,estimated_requests,cost_usd,unknown_cost_requests\n",
        by.as_str()
    );
    for r in rows {
        let c = cells(r, &csv_field(r.key.as_deref().unwrap_or("")));
        out.push_str(&c.join(","));
        out.push('\n');
    }
    out
}
