//! Validation and compilation: raw YAML → every problem collected with its position →
//! the immutable compiled parts of a [`crate::CompiledPack`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use detectors::redact::Strategy;
use detectors::{DetectorConfig, DetectorKind, DetectorSet, Severity};
use exchange::{Decision, UsdAmount};
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::error::PackIssue;
use crate::location::{LocationIndex, join_key};
use crate::model::*;
use crate::policies::*;
use crate::raw::*;
use crate::rules::{Rule, RuleAction, RulePhase, kind_of, parse_condition};

/// Collects issues with positions while validating.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    index: LocationIndex,
    pub(crate) issues: Vec<PackIssue>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str, text: &str) -> Ctx<'a> {
        Ctx {
            file,
            index: LocationIndex::build(text),
            issues: Vec::new(),
        }
    }

    fn push(&mut self, line: usize, column: usize, key: &str, message: String) {
        self.issues.push(PackIssue {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message,
        });
    }

    /// A problem with the key itself (unknown key, key needs another key).
    pub(crate) fn key_error(&mut self, path: &str, message: String) {
        let p = self.index.key(path);
        self.push(p.line, p.column, path, message);
    }

    /// A problem with the value at `path`.
    pub(crate) fn value_error(&mut self, path: &str, message: String) {
        let p = self.index.value(path);
        self.push(p.line, p.column, path, message);
    }

    /// Deserializes `v` (found at `path`) into a raw struct, reporting a failure with the
    /// key path and position of the offending key.
    fn de<T: DeserializeOwned>(&mut self, v: Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let mut p = path.to_owned();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Seq { index } => {
                            p.push_str(&format!("[{index}]"));
                        }
                        serde_path_to_error::Segment::Map { key } => p = join_key(&p, key),
                        serde_path_to_error::Segment::Enum { variant } => p = join_key(&p, variant),
                        serde_path_to_error::Segment::Unknown => {}
                    }
                }
                let raw = e.into_inner().to_string();
                self.serde_issue(&p, &raw);
                None
            }
        }
    }

    fn serde_issue(&mut self, path: &str, raw: &str) {
        // serde_yaml appends " at line L column C" when it knows a position; we have ours.
        let raw = match raw.find(" at line ") {
            Some(i) => &raw[..i],
            None => raw,
        };
        if let Some(rest) = raw.strip_prefix("unknown field `") {
            let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
            let key = if path.ends_with(&format!(".{name}")) || path == name {
                path.to_owned()
            } else {
                join_key(path, name)
            };
            let expected = tail
                .trim_start_matches(", expected ")
                .trim_start_matches("one of ")
                .replace('`', "");
            let msg = if expected.is_empty() || expected.starts_with("there are no") {
                "unknown key".to_owned()
            } else {
                format!("unknown key (expected one of: {expected})")
            };
            self.key_error(&key, msg);
        } else if let Some(rest) = raw.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or(rest);
            let p = self.index.first_key(path);
            let key = join_key(path, name);
            self.push(p.line, p.column, &key, "missing required key".to_owned());
        } else if let Some(rest) = raw
            .strip_prefix("invalid type: ")
            .or_else(|| raw.strip_prefix("invalid value: "))
        {
            let msg = match rest.rsplit_once(", expected ") {
                Some((found, expected)) => {
                    format!("expected {}, found {}", friendly(expected), found)
                }
                None => rest.to_owned(),
            };
            self.value_error(path, msg);
        } else {
            self.value_error(path, raw.to_owned());
        }
    }
}

fn friendly(expected: &str) -> String {
    match expected {
        "f64" | "f32" => "a number".to_owned(),
        "u64" | "u32" | "u16" | "usize" => "a non-negative integer".to_owned(),
        "i64" | "i32" => "an integer".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a boolean" | "a string" => expected.to_owned(),
        "a string or a list of strings" => expected.to_owned(),
        e if e.starts_with("struct ") || e == "a map" => "a mapping".to_owned(),
        e => e.to_owned(),
    }
}

/// Parses an enumerated value case-insensitively; reports the accepted values otherwise.
fn choice<T: Copy>(ctx: &mut Ctx, path: &str, value: &str, options: &[(&str, T)]) -> Option<T> {
    let lower = value.to_ascii_lowercase();
    if let Some((_, t)) = options.iter().find(|(n, _)| *n == lower) {
        return Some(*t);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    ctx.value_error(
        path,
        format!(
            "unknown value `{value}` (expected one of: {})",
            names.join(", ")
        ),
    );
    None
}

fn decision(ctx: &mut Ctx, path: &str, value: &str, allowed: &[Decision]) -> Option<Decision> {
    let opts: Vec<(&str, Decision)> = allowed
        .iter()
        .map(|d| {
            let n: &str = match d {
                Decision::Allow => "allow",
                Decision::Log => "log",
                Decision::Redact => "redact",
                Decision::Constrain => "constrain",
                Decision::Block => "block",
            };
            (n, *d)
        })
        .collect();
    choice(ctx, path, value, &opts)
}

/// A rule-style decision (`ALLOW | LOG | REDACT | CONSTRAIN | BLOCK`, any case).
fn rule_decision(ctx: &mut Ctx, path: &str, value: &str) -> Option<Decision> {
    let d = Decision::parse(value);
    if d.is_none() {
        ctx.value_error(
            path,
            format!(
                "unknown decision `{value}` (expected one of: ALLOW, LOG, REDACT, CONSTRAIN, BLOCK)"
            ),
        );
    }
    d
}

/// The compiled pieces, assembled into a `CompiledPack` by `pack.rs`.
pub(crate) struct Compiled {
    pub meta: PackMeta,
    pub description: Option<String>,
    pub settings: GatewaySettings,
    pub chain: Vec<String>,
    pub policies: Vec<CompiledPolicy>,
    /// Settings of policies configured under `policy:` (even when not in the chain).
    pub oversight: OversightSettings,
    pub rules: Vec<Rule>,
    pub tools: HashMap<String, String>,
    pub workflows: HashMap<String, Vec<String>>,
    /// The detectors, built now when the chain or the rules can use them; `None` for a pack
    /// with an empty chain and no rules (built on first use: `/v1/enforce`, shadow scans).
    pub detectors: Option<DetectorSet>,
    /// The configuration `detectors` was (or will be) built from.
    pub detector_config: DetectorConfig,
    /// Stream modes of the output-phase policies (`stream_mode`, `window_chars`).
    pub stream: crate::stream::StreamConfig,
}

const TOP_KEYS: [&str; 17] = [
    "pack",
    "providers",
    "policies",
    "policy",
    "rules",
    "default_decision",
    "tools",
    "workflows",
    "auth",
    "admin",
    "limits",
    "on_block",
    "audit",
    "budgets",
    "rate_limits",
    "prices",
    "cost",
];

fn secret(ctx: &mut Ctx, r: RawSecretRef, path: &str) -> Option<SecretRef> {
    match (r.env, r.file) {
        (Some(e), None) if !e.is_empty() => Some(SecretRef::Env(e)),
        (None, Some(f)) if !f.is_empty() => Some(SecretRef::File(PathBuf::from(f))),
        (Some(_), Some(_)) => {
            ctx.value_error(path, "give either `env` or `file`, not both".to_owned());
            None
        }
        _ => {
            ctx.value_error(path, "needs `env: NAME` or `file: PATH`".to_owned());
            None
        }
    }
}

fn usd(ctx: &mut Ctx, s: &Scalar, path: &str) -> Option<UsdAmount> {
    let text = if s.0.contains(['e', 'E']) {
        match s.0.parse::<f64>() {
            Ok(f) => format!("{f:.12}"),
            Err(_) => s.0.clone(),
        }
    } else {
        s.0.clone()
    };
    match UsdAmount::parse(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.value_error(path, e.to_string());
            None
        }
    }
}

fn seconds(ctx: &mut Ctx, v: Option<f64>, default: u64, path: &str) -> Duration {
    match v {
        None => Duration::from_secs(default),
        Some(s) if s.is_finite() && s > 0.0 && s < 86_400.0 * 365.0 => Duration::from_secs_f64(s),
        Some(s) => {
            ctx.value_error(
                path,
                format!("must be a positive number of seconds, found {s}"),
            );
            Duration::from_secs(default)
        }
    }
}

fn scope(ctx: &mut Ctx, s: &str, path: &str) -> Option<Scope> {
    choice(
        ctx,
        path,
        s,
        &[
            ("agent", Scope::Agent),
            ("role", Scope::Role),
            ("workflow", Scope::Workflow),
            ("conversation", Scope::Conversation),
        ],
    )
}

fn scope_match(m: Option<String>) -> ScopeMatch {
    match m {
        None => ScopeMatch::Each,
        Some(s) if s == "*" => ScopeMatch::Each,
        Some(s) => ScopeMatch::Name(s),
    }
}

const CAPTURE_FIELDS: [&str; 9] = [
    "sender_agents",
    "recipient_agent",
    "agent",
    "role",
    "workflow",
    "conversation_id",
    "model",
    "tool_calls",
    "header:NAME",
];

fn capture_fields(ctx: &mut Ctx, fields: Vec<String>, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, f) in fields.into_iter().enumerate() {
        let ok = match f.strip_prefix("header:") {
            Some(h) => !h.is_empty(),
            None => CAPTURE_FIELDS[..8].contains(&f.as_str()),
        };
        if ok {
            out.push(f.to_ascii_lowercase());
        } else {
            ctx.value_error(
                &format!("{path}[{i}]"),
                format!(
                    "unknown capture field `{f}` (expected one of: {})",
                    CAPTURE_FIELDS.join(", ")
                ),
            );
        }
    }
    out
}

fn unit_interval(ctx: &mut Ctx, v: Option<f64>, default: f64, path: &str) -> f64 {
    match v {
        None => default,
        Some(t) if (0.0..=1.0).contains(&t) => t,
        Some(t) => {
            ctx.value_error(path, format!("must be between 0 and 1, found {t}"));
            default
        }
    }
}

fn strategy(ctx: &mut Ctx, s: &str, path: &str) -> Option<Strategy> {
    choice(
        ctx,
        path,
        s,
        &[
            ("placeholder", Strategy::Placeholder),
            ("mask", Strategy::Mask),
            ("hash", Strategy::Hash),
            ("remove", Strategy::Remove),
        ],
    )
}

fn detector_policy(
    ctx: &mut Ctx,
    name: &str,
    raw: RawDetectorPolicy,
    path: &str,
    cfg: &mut DetectorConfig,
) -> DetectorPolicy {
    let (detector, default_action) = match name {
        "prompt-injection" => (DetectorKind::Injection, Decision::Block),
        "pii-detector" => (DetectorKind::Pii, Decision::Redact),
        "secrets-detector" => (DetectorKind::Secrets, Decision::Redact),
        _ => (DetectorKind::Safety, Decision::Block),
    };
    let action = raw
        .action
        .as_deref()
        .and_then(|a| {
            decision(
                ctx,
                &format!("{path}.action"),
                a,
                &[
                    Decision::Block,
                    Decision::Redact,
                    Decision::Log,
                    Decision::Allow,
                ],
            )
        })
        .unwrap_or(default_action);
    let threshold = unit_interval(ctx, raw.threshold, 0.5, &format!("{path}.threshold")) as f32;
    let direction = raw
        .direction
        .as_deref()
        .and_then(|d| {
            choice(
                ctx,
                &format!("{path}.direction"),
                d,
                &[
                    (
                        "input",
                        Direction {
                            input: true,
                            output: false,
                        },
                    ),
                    (
                        "output",
                        Direction {
                            input: false,
                            output: true,
                        },
                    ),
                    (
                        "both",
                        Direction {
                            input: true,
                            output: true,
                        },
                    ),
                ],
            )
        })
        .unwrap_or(Direction {
            input: true,
            output: true,
        });
    let mut entities = None;
    if let Some(list) = raw.entities {
        if detector != DetectorKind::Pii {
            ctx.key_error(
                &format!("{path}.entities"),
                "applies only to `pii-detector`".to_owned(),
            );
        } else {
            let supported = DetectorSet::supported_pii_entities();
            let mut ok = Vec::new();
            for (i, e) in list.into_iter().enumerate() {
                if supported.contains(&e.as_str()) {
                    ok.push(e);
                } else {
                    ctx.value_error(
                        &format!("{path}.entities[{i}]"),
                        format!(
                            "unknown pii entity `{e}` (expected one of: {})",
                            supported.join(", ")
                        ),
                    );
                }
            }
            cfg.pii_entities = Some(ok.clone());
            entities = Some(ok.into_iter().collect::<HashSet<_>>());
        }
    }
    let mut categories = None;
    if let Some(list) = raw.categories {
        if detector != DetectorKind::Safety {
            ctx.key_error(
                &format!("{path}.categories"),
                "applies only to `safety-filter`".to_owned(),
            );
        } else {
            let supported = DetectorSet::supported_safety_categories();
            let mut ok = Vec::new();
            for (i, c) in list.into_iter().enumerate() {
                if supported.contains(&c.as_str()) {
                    ok.push(c);
                } else {
                    ctx.value_error(
                        &format!("{path}.categories[{i}]"),
                        format!(
                            "unknown safety category `{c}` (expected one of: {})",
                            supported.join(", ")
                        ),
                    );
                }
            }
            cfg.safety_categories = Some(ok.clone());
            categories = Some(ok.into_iter().collect::<HashSet<_>>());
        }
    }
    let min_severity = raw
        .min_severity
        .as_deref()
        .and_then(|s| {
            choice(
                ctx,
                &format!("{path}.min_severity"),
                s,
                &[
                    ("low", Severity::Low),
                    ("medium", Severity::Medium),
                    ("high", Severity::High),
                    ("critical", Severity::Critical),
                ],
            )
        })
        .unwrap_or(if detector == DetectorKind::Safety {
            Severity::Medium
        } else {
            Severity::Low
        });
    let strat = raw
        .strategy
        .as_deref()
        .and_then(|s| strategy(ctx, s, &format!("{path}.strategy")))
        .unwrap_or(
            if detector == DetectorKind::Pii || detector == DetectorKind::Secrets {
                Strategy::Placeholder
            } else {
                Strategy::Remove
            },
        );
    let mut strategies = HashMap::new();
    for (k, v) in raw.strategies.unwrap_or_default() {
        let kp = format!("{path}.strategies.{k}");
        if detector == DetectorKind::Pii
            && !DetectorSet::supported_pii_entities().contains(&k.as_str())
        {
            ctx.key_error(
                &kp,
                format!(
                    "unknown pii entity `{k}` (expected one of: {})",
                    DetectorSet::supported_pii_entities().join(", ")
                ),
            );
            continue;
        }
        if let Some(s) = strategy(ctx, &v, &kp) {
            strategies.insert(k, s);
        }
    }
    let restore = raw.restore.unwrap_or(false);
    if restore
        && (strat != Strategy::Placeholder
            || strategies.values().any(|s| *s != Strategy::Placeholder))
    {
        ctx.value_error(
            &format!("{path}.restore"),
            "`restore: true` needs the `placeholder` strategy".to_owned(),
        );
    }
    DetectorPolicy {
        detector,
        action,
        threshold,
        direction,
        entities,
        categories,
        min_severity,
        strategy: strat,
        strategies,
        restore,
    }
}

fn access(ctx: &mut Ctx, raw: RawToolAccess, _path: &str) -> ToolAccess {
    let _ = ctx;
    ToolAccess {
        allowed: raw.allowed_tools.map(|v| v.into_iter().map(Glob).collect()),
        denied: raw
            .denied_tools
            .unwrap_or_default()
            .into_iter()
            .map(Glob)
            .collect(),
    }
}

/// Validates and compiles `text`; every problem is returned.
pub(crate) fn compile(text: &str, source: &str) -> Result<Compiled, Vec<PackIssue>> {
    let mut ctx = Ctx::new(source, text);
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let msg = e.to_string();
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_owned(),
                None => msg,
            };
            ctx.push(line, column, "", format!("invalid yaml: {msg}"));
            return Err(ctx.issues);
        }
    };
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => {
            ctx.push(1, 1, "", "policy pack is empty".to_owned());
            return Err(ctx.issues);
        }
        other => {
            ctx.push(
                1,
                1,
                "",
                format!("policy pack must be a mapping, found {}", kind_of(&other)),
            );
            return Err(ctx.issues);
        }
    };

    let mut sections: HashMap<String, Value> = HashMap::new();
    for (k, v) in map {
        let Value::String(key) = k else {
            ctx.push(1, 1, "", "top-level keys must be strings".to_owned());
            continue;
        };
        if TOP_KEYS.contains(&key.as_str()) {
            sections.insert(key, v);
        } else {
            ctx.key_error(
                &key,
                format!("unknown key (expected one of: {})", TOP_KEYS.join(", ")),
            );
        }
    }
    let mut take = |k: &str| sections.remove(k).filter(|v| !v.is_null());

    // pack
    let mut meta = PackMeta {
        name: String::new(),
        version: String::new(),
        content_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
        source: source.to_owned(),
    };
    let mut description = None;
    match take("pack") {
        None => ctx.push(1, 1, "pack", "missing required key".to_owned()),
        Some(v) => {
            if let Some(m) = ctx.de::<RawMeta>(v, "pack") {
                if m.name.trim().is_empty() {
                    ctx.value_error("pack.name", "must not be empty".to_owned());
                }
                meta.name = m.name;
                meta.version = m.version.map(|s| s.0).unwrap_or_default();
                description = m.description;
            }
        }
    }

    // providers
    let mut providers = Vec::new();
    if let Some(v) = take("providers") {
        match v {
            Value::Sequence(items) => {
                let mut seen = HashSet::new();
                for (i, item) in items.into_iter().enumerate() {
                    let path = format!("providers[{i}]");
                    let Some(p) = ctx.de::<RawProvider>(item, &path) else {
                        continue;
                    };
                    if !seen.insert(p.name.clone()) {
                        ctx.value_error(
                            &format!("{path}.name"),
                            format!("duplicate provider `{}`", p.name),
                        );
                    }
                    let kind = p
                        .kind
                        .as_deref()
                        .and_then(|k| {
                            choice(
                                &mut ctx,
                                &format!("{path}.kind"),
                                k,
                                &[
                                    ("openai", ProviderKind::OpenAi),
                                    ("mock", ProviderKind::Mock),
                                ],
                            )
                        })
                        .unwrap_or(ProviderKind::OpenAi);
                    let models = match p.model {
                        Some(m) if !m.0.is_empty() => m.0,
                        Some(_) => {
                            ctx.value_error(
                                &format!("{path}.model"),
                                "needs at least one model".to_owned(),
                            );
                            Vec::new()
                        }
                        None if kind == ProviderKind::Mock => vec!["mock".to_owned()],
                        None => {
                            let pos = ctx.index.first_key(&path);
                            ctx.push(
                                pos.line,
                                pos.column,
                                &format!("{path}.model"),
                                "missing required key".to_owned(),
                            );
                            Vec::new()
                        }
                    };
                    let base_url = match (kind, p.base_url) {
                        (_, Some(u)) => {
                            if !(u.starts_with("http://") || u.starts_with("https://")) {
                                ctx.value_error(
                                    &format!("{path}.base_url"),
                                    format!("`{u}` is not an http:// or https:// url"),
                                );
                            }
                            u.trim_end_matches('/').to_owned()
                        }
                        (ProviderKind::OpenAi, None) => "https://api.openai.com/v1".to_owned(),
                        (ProviderKind::Mock, None) => String::new(),
                    };
                    let secret_key_ref = p
                        .secret_key_ref
                        .and_then(|r| secret(&mut ctx, r, &format!("{path}.secret_key_ref")));
                    let request_timeout = seconds(
                        &mut ctx,
                        p.timeout_seconds,
                        60,
                        &format!("{path}.timeout_seconds"),
                    );
                    let connect_timeout = seconds(
                        &mut ctx,
                        p.connect_timeout_seconds,
                        10,
                        &format!("{path}.connect_timeout_seconds"),
                    );
                    let on_missing_key = p
                        .on_missing_key
                        .as_deref()
                        .and_then(|s| {
                            choice(
                                &mut ctx,
                                &format!("{path}.on_missing_key"),
                                s,
                                &[("fail", MissingKey::Fail), ("mock", MissingKey::Mock)],
                            )
                        })
                        .unwrap_or_default();
                    providers.push(ProviderSpec {
                        name: p.name,
                        kind,
                        base_url,
                        models,
                        secret_key_ref,
                        connect_timeout,
                        request_timeout,
                        on_missing_key,
                    });
                }
            }
            other => ctx.value_error(
                "providers",
                format!("expected a list, found {}", kind_of(&other)),
            ),
        }
    }

    // policy configs
    let mut configs: Vec<(String, Value)> = Vec::new();
    if let Some(v) = take("policy") {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let Value::String(name) = k else { continue };
                    if BUILTIN_POLICIES.contains(&name.as_str()) {
                        configs.push((name, v));
                    } else {
                        ctx.key_error(
                            &format!("policy.{name}"),
                            format!(
                                "unknown policy (expected one of: {})",
                                BUILTIN_POLICIES.join(", ")
                            ),
                        );
                    }
                }
            }
            other => ctx.value_error(
                "policy",
                format!("expected a mapping, found {}", kind_of(&other)),
            ),
        }
    }

    // chain
    let chain: Vec<String> = match take("policies") {
        Some(v) => match ctx.de::<RawPolicies>(v, "policies") {
            Some(p) => {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for (i, name) in p.chain.into_iter().enumerate() {
                    let path = format!("policies.chain[{i}]");
                    if !BUILTIN_POLICIES.contains(&name.as_str()) {
                        ctx.value_error(
                            &path,
                            format!(
                                "unknown policy `{name}` (expected one of: {})",
                                BUILTIN_POLICIES.join(", ")
                            ),
                        );
                    } else if !seen.insert(name.clone()) {
                        ctx.value_error(&path, format!("policy `{name}` is listed twice"));
                    } else {
                        out.push(name);
                    }
                }
                out
            }
            None => Vec::new(),
        },
        None => configs.iter().map(|(n, _)| n.clone()).collect(),
    };

    let mut det_cfg = DetectorConfig::default();
    let mut compiled_configs: HashMap<String, CompiledPolicy> = HashMap::new();
    let mut oversight = OversightSettings::default();
    let mut audit_logger = AuditLoggerPolicy::default();
    let mut stream = crate::stream::StreamConfig::default();
    for (name, v) in configs {
        let path = format!("policy.{name}");
        let v = if v.is_null() {
            Value::Mapping(Default::default())
        } else {
            v
        };
        let compiled = match name.as_str() {
            "prompt-injection" | "pii-detector" | "secrets-detector" | "safety-filter" => {
                ctx.de::<RawDetectorPolicy>(v, &path).map(|r| {
                    stream_keys(&mut ctx, &mut stream, &name, &r.stream_mode, r.window_chars);
                    CompiledPolicy::Detector(detector_policy(
                        &mut ctx,
                        &name,
                        r,
                        &path,
                        &mut det_cfg,
                    ))
                })
            }
            "quality-scorer" => ctx.de::<RawQuality>(v, &path).map(|r| {
                stream_keys(&mut ctx, &mut stream, &name, &r.stream_mode, r.window_chars);
                let threshold =
                    unit_interval(&mut ctx, r.threshold, 0.5, &format!("{path}.threshold"));
                let action = r
                    .action
                    .as_deref()
                    .and_then(|a| {
                        decision(
                            &mut ctx,
                            &format!("{path}.action"),
                            a,
                            &[Decision::Block, Decision::Log, Decision::Allow],
                        )
                    })
                    .unwrap_or(Decision::Log);
                let mut weights = QualityWeights::default();
                for (k, w) in r.weights.unwrap_or_default() {
                    let kp = format!("{path}.weights.{k}");
                    if !(0.0..=1.0).contains(&w) {
                        ctx.value_error(&kp, format!("must be between 0 and 1, found {w}"));
                    } else if !weights.set(&k, w) {
                        ctx.key_error(
                            &kp,
                            format!(
                                "unknown quality signal (expected one of: {})",
                                QUALITY_SIGNALS.join(", ")
                            ),
                        );
                    }
                }
                CompiledPolicy::Quality(QualityPolicy {
                    threshold,
                    action,
                    weights,
                })
            }),
            "audit-logger" => ctx.de::<RawAuditLogger>(v, &path).map(|r| {
                audit_logger = AuditLoggerPolicy {
                    tags: r
                        .tags
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                    capture_fields: capture_fields(
                        &mut ctx,
                        r.capture_fields.unwrap_or_default(),
                        &format!("{path}.capture_fields"),
                    ),
                };
                CompiledPolicy::AuditLogger(audit_logger.clone())
            }),
            "budget" => ctx.de::<RawBudgetPolicy>(v, &path).map(|r| {
                if let Some(a) = r.action.as_deref() {
                    decision(
                        &mut ctx,
                        &format!("{path}.action"),
                        a,
                        &[Decision::Block, Decision::Log],
                    );
                }
                CompiledPolicy::Budget
            }),
            "agent-firewall" => ctx.de::<RawFirewall>(v, &path).map(|r| {
                stream_keys(&mut ctx, &mut stream, &name, &r.stream_mode, r.window_chars);
                let default_deny = r
                    .default
                    .as_deref()
                    .and_then(|d| {
                        choice(
                            &mut ctx,
                            &format!("{path}.default"),
                            d,
                            &[("allow", false), ("deny", true)],
                        )
                    })
                    .unwrap_or(false);
                let block_on_violation = r
                    .on_violation
                    .as_deref()
                    .and_then(|d| {
                        choice(
                            &mut ctx,
                            &format!("{path}.on_violation"),
                            d,
                            &[("strip", false), ("block", true)],
                        )
                    })
                    .unwrap_or(false);
                let mut roles = HashMap::new();
                for (k, a) in r.roles.unwrap_or_default() {
                    let acc = access(&mut ctx, a, &format!("{path}.roles.{k}"));
                    roles.insert(k, acc);
                }
                let mut agents = HashMap::new();
                for (k, a) in r.agents.unwrap_or_default() {
                    let acc = access(&mut ctx, a, &format!("{path}.agents.{k}"));
                    agents.insert(k, acc);
                }
                let mut tool_limits = Vec::new();
                for (tool, l) in r.tool_limits.unwrap_or_default() {
                    let lp = format!("{path}.tool_limits.{tool}");
                    if l.per_conversation.is_none() && l.per_minute.is_none() {
                        ctx.value_error(&lp, "needs `per_conversation` or `per_minute`".to_owned());
                    }
                    for (k, v) in [
                        ("per_conversation", l.per_conversation),
                        ("per_minute", l.per_minute),
                    ] {
                        if v == Some(0) {
                            ctx.value_error(&format!("{lp}.{k}"), "must be positive".to_owned());
                        }
                    }
                    tool_limits.push(ToolLimit {
                        tool: Glob(tool),
                        per_conversation: l.per_conversation,
                        per_minute: l.per_minute,
                    });
                }
                for (k, v) in [
                    ("max_turns_per_conversation", r.max_turns_per_conversation),
                    ("max_message_chars", r.max_message_chars),
                ] {
                    if v == Some(0) {
                        ctx.value_error(&format!("{path}.{k}"), "must be positive".to_owned());
                    }
                }
                if let Some(n) = r.flood_repeats {
                    if n < 2 {
                        ctx.value_error(
                            &format!("{path}.flood_repeats"),
                            format!("must be at least 2, found {n}"),
                        );
                    }
                }
                let log_impersonation = r
                    .on_impersonation
                    .as_deref()
                    .and_then(|d| {
                        choice(
                            &mut ctx,
                            &format!("{path}.on_impersonation"),
                            d,
                            &[("block", false), ("log", true)],
                        )
                    })
                    .unwrap_or(false);
                CompiledPolicy::Firewall(FirewallPolicy {
                    default_deny,
                    block_on_violation,
                    roles,
                    agents,
                    max_message_chars: r.max_message_chars,
                    max_turns_per_conversation: r.max_turns_per_conversation,
                    tool_limits,
                    flood_repeats: r.flood_repeats,
                    code_guard: r.code_guard.unwrap_or(false),
                    log_impersonation,
                })
            }),
            _ => ctx.de::<RawOversight>(v, &path).map(|r| {
                let allow_on_timeout = r
                    .on_timeout
                    .as_deref()
                    .and_then(|d| {
                        choice(
                            &mut ctx,
                            &format!("{path}.on_timeout"),
                            d,
                            &[("deny", false), ("allow", true)],
                        )
                    })
                    .unwrap_or(false);
                let non_holding = r
                    .mode
                    .as_deref()
                    .and_then(|d| {
                        choice(
                            &mut ctx,
                            &format!("{path}.mode"),
                            d,
                            &[("hold", false), ("non_holding", true)],
                        )
                    })
                    .unwrap_or(false);
                oversight = OversightSettings {
                    timeout_seconds: match r.timeout_seconds {
                        Some(0) => {
                            ctx.value_error(
                                &format!("{path}.timeout_seconds"),
                                "must be positive".to_owned(),
                            );
                            300
                        }
                        Some(t) => t,
                        None => 300,
                    },
                    allow_on_timeout,
                    non_holding,
                };
                CompiledPolicy::Oversight
            }),
        };
        if let Some(c) = compiled {
            compiled_configs.insert(name, c);
        }
    }
    let mut det_cfg_for_defaults = DetectorConfig::default();
    let policies: Vec<CompiledPolicy> = chain
        .iter()
        .map(|name| {
            compiled_configs
                .get(name)
                .cloned()
                .unwrap_or_else(|| default_policy(name, &mut det_cfg_for_defaults))
        })
        .collect();

    // rules
    let mut rules = Vec::new();
    if let Some(v) = take("rules") {
        match v {
            Value::Sequence(items) => {
                let mut seen = HashSet::new();
                for (i, item) in items.into_iter().enumerate() {
                    let path = format!("rules[{i}]");
                    let Some(r) = ctx.de::<RawRule>(item, &path) else {
                        continue;
                    };
                    if r.name.trim().is_empty() {
                        ctx.value_error(&format!("{path}.name"), "must not be empty".to_owned());
                    } else if !seen.insert(r.name.clone()) {
                        ctx.value_error(
                            &format!("{path}.name"),
                            format!("duplicate rule `{}`", r.name),
                        );
                    }
                    let condition =
                        parse_condition(&mut ctx, &r.condition, &format!("{path}.condition"));
                    let dec = rule_decision(&mut ctx, &format!("{path}.decision"), &r.decision);
                    let phase = r
                        .phase
                        .as_deref()
                        .and_then(|p| {
                            choice(
                                &mut ctx,
                                &format!("{path}.phase"),
                                p,
                                &[
                                    ("both", RulePhase::Both),
                                    ("input", RulePhase::Input),
                                    ("output", RulePhase::Output),
                                ],
                            )
                        })
                        .unwrap_or(RulePhase::Both);
                    let action = r.action.map(|a| {
                        let allow_on_timeout = a
                            .on_timeout
                            .as_deref()
                            .and_then(|d| {
                                choice(
                                    &mut ctx,
                                    &format!("{path}.action.on_timeout"),
                                    d,
                                    &[("deny", false), ("allow", true)],
                                )
                            })
                            .unwrap_or(oversight.allow_on_timeout);
                        if a.timeout_seconds == Some(0) {
                            ctx.value_error(
                                &format!("{path}.action.timeout_seconds"),
                                "must be positive".to_owned(),
                            );
                        }
                        RuleAction {
                            require_approval: a.require_approval.unwrap_or(false),
                            timeout_seconds: a.timeout_seconds,
                            allow_on_timeout,
                        }
                    });
                    if let (Some(a), Some(d)) = (&action, dec) {
                        if a.require_approval && d != Decision::Constrain {
                            ctx.value_error(
                                &format!("{path}.action.require_approval"),
                                format!("needs `decision: CONSTRAIN`, found `{}`", d.as_str()),
                            );
                        }
                    }
                    let capture = capture_fields(
                        &mut ctx,
                        r.capture_fields.unwrap_or_default(),
                        &format!("{path}.capture_fields"),
                    );
                    if let (Some(condition), Some(decision)) = (condition, dec) {
                        rules.push(Rule {
                            name: r.name,
                            condition,
                            decision,
                            reason: r.reason,
                            action,
                            capture_fields: capture,
                            phase,
                        });
                    }
                }
            }
            other => ctx.value_error(
                "rules",
                format!("expected a list, found {}", kind_of(&other)),
            ),
        }
    }

    let default_decision = match take("default_decision") {
        None => Decision::Allow,
        Some(Value::String(s)) => {
            rule_decision(&mut ctx, "default_decision", &s).unwrap_or(Decision::Allow)
        }
        Some(other) => {
            ctx.value_error(
                "default_decision",
                format!("expected a string, found {}", kind_of(&other)),
            );
            Decision::Allow
        }
    };

    let mut tools = HashMap::new();
    if let Some(v) = take("tools") {
        if let Some(m) = ctx.de::<std::collections::BTreeMap<String, Value>>(v, "tools") {
            for (name, tv) in m {
                let tv = if tv.is_null() {
                    Value::Mapping(Default::default())
                } else {
                    tv
                };
                if let Some(t) = ctx.de::<RawTool>(tv, &format!("tools.{name}")) {
                    tools.insert(name, t.category.unwrap_or_default());
                }
            }
        }
    }
    let mut workflows = HashMap::new();
    if let Some(v) = take("workflows") {
        if let Some(m) = ctx.de::<std::collections::BTreeMap<String, Value>>(v, "workflows") {
            for (name, wv) in m {
                if let Some(w) = ctx.de::<RawWorkflow>(wv, &format!("workflows.{name}")) {
                    workflows.insert(name, w.members);
                }
            }
        }
    }

    let auth = match take("auth") {
        None => AuthMode::Required,
        Some(Value::String(s)) => choice(
            &mut ctx,
            "auth",
            &s,
            &[
                ("required", AuthMode::Required),
                ("optional", AuthMode::Optional),
            ],
        )
        .unwrap_or_default(),
        Some(other) => {
            ctx.value_error(
                "auth",
                format!("expected a string, found {}", kind_of(&other)),
            );
            AuthMode::Required
        }
    };
    let admin_token_ref = take("admin")
        .and_then(|v| ctx.de::<RawAdmin>(v, "admin"))
        .and_then(|a| a.token_ref)
        .and_then(|r| secret(&mut ctx, r, "admin.token_ref"));
    let mut limits = Limits::default();
    if let Some(l) = take("limits").and_then(|v| ctx.de::<RawLimits>(v, "limits")) {
        match l.max_body_bytes {
            Some(0) => ctx.value_error("limits.max_body_bytes", "must be positive".to_owned()),
            Some(n) => limits.max_body_bytes = usize::try_from(n).unwrap_or(usize::MAX),
            None => {}
        }
        match l.max_stream_hold_bytes {
            Some(0) => ctx.value_error(
                "limits.max_stream_hold_bytes",
                "must be positive".to_owned(),
            ),
            Some(n) => limits.max_stream_hold_bytes = usize::try_from(n).unwrap_or(usize::MAX),
            None => {}
        }
    }
    let block_response = match take("on_block") {
        None => BlockResponse::Error,
        Some(Value::String(s)) => choice(
            &mut ctx,
            "on_block",
            &s,
            &[
                ("error", BlockResponse::Error),
                ("completion", BlockResponse::Completion),
            ],
        )
        .unwrap_or_default(),
        Some(other) => {
            ctx.value_error(
                "on_block",
                format!("expected a string, found {}", kind_of(&other)),
            );
            BlockResponse::Error
        }
    };
    let mut audit = AuditSettings::default();
    if let Some(a) = take("audit").and_then(|v| ctx.de::<RawAudit>(v, "audit")) {
        if let Some(c) = a.content.as_deref() {
            audit.content = choice(
                &mut ctx,
                "audit.content",
                c,
                &[
                    ("full", ContentCapture::Full),
                    ("redacted", ContentCapture::Redacted),
                    ("none", ContentCapture::None),
                ],
            )
            .unwrap_or_default();
        }
        if let Some(d) = a.durability.as_deref() {
            audit.durability = choice(
                &mut ctx,
                "audit.durability",
                d,
                &[("sync", Durability::Sync), ("async", Durability::Async)],
            )
            .unwrap_or_default();
        }
        if let Some(f) = a.on_audit_failure.as_deref() {
            audit.on_failure = choice(
                &mut ctx,
                "audit.on_audit_failure",
                f,
                &[
                    ("deny", OnAuditFailure::Deny),
                    ("allow", OnAuditFailure::Allow),
                ],
            )
            .unwrap_or_default();
        }
        if let Some(cp) = a.checkpoint {
            if let Some(key) = secret(
                &mut ctx,
                cp.signing_key_ref,
                "audit.checkpoint.signing_key_ref",
            ) {
                audit.checkpoint = Some(CheckpointSettings {
                    every_events: cp.every_events.unwrap_or(1000).max(1),
                    every: Duration::from_secs(cp.every_seconds.unwrap_or(60).max(1)),
                    signing_key_ref: key,
                });
            }
        }
    }
    if chain.iter().any(|c| c == "audit-logger") {
        audit.tags = audit_logger.tags;
        audit.capture_fields = audit_logger.capture_fields;
    }

    let mut cost = CostSettings {
        default_max_tokens: 4096,
        ..CostSettings::default()
    };
    if let Some(v) = take("budgets") {
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    let path = format!("budgets[{i}]");
                    let Some(b) = ctx.de::<RawBudget>(item, &path) else {
                        continue;
                    };
                    let sc = scope(&mut ctx, &b.scope, &format!("{path}.scope"));
                    let limit = usd(&mut ctx, &b.limit_usd, &format!("{path}.limit_usd"));
                    let soft = b
                        .soft_limit_usd
                        .as_ref()
                        .and_then(|s| usd(&mut ctx, s, &format!("{path}.soft_limit_usd")));
                    let period = b
                        .period
                        .as_deref()
                        .and_then(|p| {
                            choice(
                                &mut ctx,
                                &format!("{path}.period"),
                                p,
                                &[
                                    ("day", Period::Day),
                                    ("month", Period::Month),
                                    ("total", Period::Total),
                                ],
                            )
                        })
                        .unwrap_or(Period::Day);
                    if let (Some(s), Some(l)) = (soft, limit) {
                        if s > l {
                            ctx.value_error(
                                &format!("{path}.soft_limit_usd"),
                                format!("soft limit {s} is above the limit {l}"),
                            );
                        }
                    }
                    if let (Some(scope), Some(limit)) = (sc, limit) {
                        cost.budgets.push(BudgetSpec {
                            scope,
                            matcher: scope_match(b.matcher),
                            limit,
                            period,
                            soft_limit: soft,
                        });
                    }
                }
            }
            other => ctx.value_error(
                "budgets",
                format!("expected a list, found {}", kind_of(&other)),
            ),
        }
    }
    if let Some(v) = take("rate_limits") {
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    let path = format!("rate_limits[{i}]");
                    let Some(r) = ctx.de::<RawRateLimit>(item, &path) else {
                        continue;
                    };
                    let sc = scope(&mut ctx, &r.scope, &format!("{path}.scope"));
                    if r.requests_per_minute.is_none()
                        && r.tokens_per_minute.is_none()
                        && r.max_concurrent.is_none()
                    {
                        ctx.value_error(
                            &path,
                            "needs at least one of requests_per_minute, tokens_per_minute, max_concurrent".to_owned(),
                        );
                    }
                    if let Some(scope) = sc {
                        cost.rate_limits.push(RateLimitSpec {
                            scope,
                            matcher: scope_match(r.matcher),
                            requests_per_minute: r.requests_per_minute,
                            tokens_per_minute: r.tokens_per_minute,
                            max_concurrent: r.max_concurrent,
                        });
                    }
                }
            }
            other => ctx.value_error(
                "rate_limits",
                format!("expected a list, found {}", kind_of(&other)),
            ),
        }
    }
    if let Some(v) = take("prices") {
        if let Some(m) = ctx.de::<std::collections::BTreeMap<String, Value>>(v, "prices") {
            for (model, pv) in m {
                let path = format!("prices.{model}");
                let Some(p) = ctx.de::<RawPrice>(pv, &path) else {
                    continue;
                };
                let input = usd(&mut ctx, &p.input, &format!("{path}.input"));
                let output = usd(&mut ctx, &p.output, &format!("{path}.output"));
                let cached = p
                    .cached_input
                    .as_ref()
                    .and_then(|c| usd(&mut ctx, c, &format!("{path}.cached_input")));
                if let (Some(input_per_million), Some(output_per_million)) = (input, output) {
                    cost.prices.push(PriceSpec {
                        model,
                        input_per_million,
                        output_per_million,
                        cached_input_per_million: cached,
                    });
                }
            }
        }
    }
    if let Some(c) = take("cost").and_then(|v| ctx.de::<RawCost>(v, "cost")) {
        if let Some(n) = c.default_max_tokens {
            cost.default_max_tokens = n;
        }
    }

    // A pack that enforces nothing (empty chain, no rules) does not pay for compiling every
    // pattern (tens of MB of automata) until something scans.
    let eager = !chain.is_empty() || !rules.is_empty();
    let detectors = if eager {
        match DetectorSet::new(&det_cfg) {
            Ok(d) => Some(d),
            Err(e) => {
                ctx.push(1, 1, "policy", format!("cannot build detectors: {e}"));
                None
            }
        }
    } else {
        None
    };

    if !ctx.issues.is_empty() {
        return Err(ctx.issues);
    }
    if eager && detectors.is_none() {
        return Err(ctx.issues);
    }
    Ok(Compiled {
        meta,
        description,
        settings: GatewaySettings {
            auth,
            admin_token_ref,
            block_response,
            limits,
            providers,
            audit,
            cost,
            default_decision,
        },
        chain,
        policies,
        oversight,
        rules,
        tools,
        workflows,
        detectors,
        detector_config: det_cfg,
        stream,
    })
}

/// Validates `policy.<name>.stream_mode` / `window_chars` and records them in `stream`.
fn stream_keys(
    ctx: &mut Ctx,
    stream: &mut crate::stream::StreamConfig,
    name: &str,
    mode: &Option<String>,
    window_chars: Option<u64>,
) {
    use crate::stream::{MAX_WINDOW_CHARS, MIN_WINDOW_CHARS, StreamMode};
    let path = format!("policy.{name}");
    let parsed = mode.as_deref().and_then(|m| {
        choice(
            ctx,
            &format!("{path}.stream_mode"),
            m,
            &[
                ("pass-through", StreamMode::PassThrough),
                ("window", StreamMode::Window),
                ("hold", StreamMode::Hold),
            ],
        )
    });
    if let Some(n) = window_chars {
        if parsed.is_some_and(|m| m != StreamMode::Window) {
            ctx.key_error(
                &format!("{path}.window_chars"),
                "`window_chars` needs `stream_mode: window`".to_owned(),
            );
        } else if !(MIN_WINDOW_CHARS..=MAX_WINDOW_CHARS).contains(&n) {
            ctx.value_error(
                &format!("{path}.window_chars"),
                format!("must be between {MIN_WINDOW_CHARS} and {MAX_WINDOW_CHARS}, found {n}"),
            );
        }
    }
    stream.set(name, parsed, window_chars);
}

/// The compiled defaults of a policy named in the chain without a `policy:` entry.
fn default_policy(name: &str, cfg: &mut DetectorConfig) -> CompiledPolicy {
    match name {
        "prompt-injection" | "pii-detector" | "secrets-detector" | "safety-filter" => {
            // No issues can arise from an empty config; use a throwaway context.
            let mut ctx = Ctx::new("<defaults>", "");
            CompiledPolicy::Detector(detector_policy(
                &mut ctx,
                name,
                RawDetectorPolicy::default(),
                "",
                cfg,
            ))
        }
        "quality-scorer" => CompiledPolicy::Quality(QualityPolicy {
            threshold: 0.5,
            action: Decision::Log,
            weights: QualityWeights::default(),
        }),
        "audit-logger" => CompiledPolicy::AuditLogger(AuditLoggerPolicy::default()),
        "budget" => CompiledPolicy::Budget,
        "agent-firewall" => CompiledPolicy::Firewall(FirewallPolicy::default()),
        _ => CompiledPolicy::Oversight,
    }
}
