//! The price table: bundled list prices, pack overrides, model-name normalisation and exact
//! integer cost arithmetic.

use std::collections::HashMap;
use std::sync::OnceLock;

use exchange::{TokenUsage, UsdAmount};
use policy_engine::PriceSpec;
use serde::Deserialize;

use crate::error::{CostError, PriceError};

/// The bundled table, USD per 1M tokens (see the file's `note`).
const BUNDLED_JSON: &str = include_str!("prices.json");

/// Picodollars per USD per 1M tokens: a price per 1M tokens in micro-dollars is a price per
/// token in picodollars, so per-token prices are per-million picodollars / 10⁶.
const PER_MILLION: u128 = 1_000_000;

/// Price of one token, in picodollars (10⁻¹² USD). Exact: cost is integer multiplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Price {
    /// Uncached input (prompt) token.
    pub input: u128,
    /// Cached input token.
    pub cached_input: u128,
    /// Output (completion) token.
    pub output: u128,
}

impl Price {
    /// A price from amounts per 1M tokens; the cached price defaults to the input price.
    /// Fails when an amount has more than 6 decimal places (not a whole picodollar per token).
    pub fn per_million(
        input: UsdAmount,
        output: UsdAmount,
        cached_input: Option<UsdAmount>,
    ) -> Result<Price, PriceError> {
        let per_token = |field: &'static str, a: UsdAmount| {
            if a.picodollars % PER_MILLION != 0 {
                Err(PriceError::TooPrecise {
                    field,
                    amount: a.to_string(),
                })
            } else {
                Ok(a.picodollars / PER_MILLION)
            }
        };
        let input_pt = per_token("input", input)?;
        Ok(Price {
            input: input_pt,
            output: per_token("output", output)?,
            cached_input: match cached_input {
                Some(c) => per_token("cached_input", c)?,
                None => input_pt,
            },
        })
    }

    /// The exact cost of `usage`: uncached prompt × input + cached × cached input + completion ×
    /// output. Cached tokens above the prompt count are capped at it. Saturates instead of
    /// overflowing (only reachable with absurd prices: u64 tokens × u64 picodollars fits u128).
    pub fn cost(&self, usage: &TokenUsage) -> UsdAmount {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let pico = u128::from(uncached)
            .saturating_mul(self.input)
            .saturating_add(u128::from(cached).saturating_mul(self.cached_input))
            .saturating_add(u128::from(usage.completion_tokens).saturating_mul(self.output));
        UsdAmount::from_picodollars(pico)
    }

    /// The worst-case cost of a request: every prompt token uncached, `max_output` produced.
    pub fn worst_case(&self, prompt_tokens: u64, max_output: u64) -> UsdAmount {
        self.cost(&TokenUsage {
            prompt_tokens,
            completion_tokens: max_output,
            cached_tokens: 0,
            estimated: true,
        })
    }

    /// Input price per 1M tokens.
    pub fn input_per_million(&self) -> UsdAmount {
        UsdAmount::from_picodollars(self.input.saturating_mul(PER_MILLION))
    }

    /// Output price per 1M tokens.
    pub fn output_per_million(&self) -> UsdAmount {
        UsdAmount::from_picodollars(self.output.saturating_mul(PER_MILLION))
    }

    /// Cached input price per 1M tokens.
    pub fn cached_input_per_million(&self) -> UsdAmount {
        UsdAmount::from_picodollars(self.cached_input.saturating_mul(PER_MILLION))
    }
}

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The bundled table.
    Bundled,
    /// The pack's `prices:`.
    Pack,
}

/// A resolved price: the table entry that matched a model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceMatch {
    /// The entry's model name (or pattern, e.g. `gpt-4o*`).
    pub entry: String,
    /// The price.
    pub price: Price,
    /// Where it came from.
    pub source: PriceSource,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundledFile {
    #[allow(dead_code)]
    unit: String,
    #[allow(dead_code)]
    as_of: String,
    #[allow(dead_code)]
    note: String,
    models: Vec<BundledEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundledEntry {
    model: String,
    #[allow(dead_code)]
    provider: String,
    input: String,
    output: String,
    #[serde(default)]
    cached_input: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

/// Exact names and `prefix*` patterns.
#[derive(Debug, Clone, Default)]
struct Entries {
    exact: HashMap<String, (String, Price)>,
    /// `(prefix, pattern as written, price)`, longest prefix first.
    prefixes: Vec<(String, String, Price)>,
}

impl Entries {
    fn insert(&mut self, pattern: &str, price: Price) {
        let key = pattern.trim().to_ascii_lowercase();
        if let Some(prefix) = key.strip_suffix('*') {
            self.prefixes.retain(|(p, _, _)| p != prefix);
            self.prefixes
                .push((prefix.to_owned(), pattern.trim().to_owned(), price));
            self.prefixes
                .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        } else {
            self.exact.insert(key, (pattern.trim().to_owned(), price));
        }
    }

    fn get(&self, candidate: &str) -> Option<(&str, Price)> {
        if let Some((name, price)) = self.exact.get(candidate) {
            return Some((name.as_str(), *price));
        }
        self.prefixes
            .iter()
            .find(|(prefix, _, _)| candidate.starts_with(prefix.as_str()))
            .map(|(_, pattern, price)| (pattern.as_str(), *price))
    }
}

/// Prices per model: the bundled table plus the pack's overrides. Cheap to look up; built
/// once per pack (re)load.
#[derive(Debug, Clone)]
pub struct PriceTable {
    bundled: Entries,
    pack: Entries,
}

fn bundled_entries() -> Result<&'static Entries, CostError> {
    static BUNDLED: OnceLock<Result<Entries, String>> = OnceLock::new();
    match BUNDLED.get_or_init(|| parse_bundled().map_err(|e| e.to_string())) {
        Ok(entries) => Ok(entries),
        Err(reason) => Err(CostError::BundledPrices(reason.clone())),
    }
}

fn parse_bundled() -> Result<Entries, CostError> {
    let file: BundledFile =
        serde_json::from_str(BUNDLED_JSON).map_err(|e| CostError::BundledPrices(e.to_string()))?;
    let mut entries = Entries::default();
    for e in file.models {
        let amount = |field: &'static str, s: &str| {
            UsdAmount::parse(s).map_err(|_| CostError::Price {
                model: e.model.clone(),
                source: PriceError::Invalid {
                    field,
                    amount: s.to_owned(),
                },
            })
        };
        let input = amount("input", &e.input)?;
        let output = amount("output", &e.output)?;
        let cached = match &e.cached_input {
            Some(c) => Some(amount("cached_input", c)?),
            None => None,
        };
        let price =
            Price::per_million(input, output, cached).map_err(|source| CostError::Price {
                model: e.model.clone(),
                source,
            })?;
        entries.insert(&e.model, price);
        for alias in &e.aliases {
            entries
                .exact
                .insert(alias.to_ascii_lowercase(), (e.model.clone(), price));
        }
    }
    Ok(entries)
}

impl PriceTable {
    /// The bundled table alone.
    pub fn bundled() -> Result<PriceTable, CostError> {
        Ok(PriceTable {
            bundled: bundled_entries()?.clone(),
            pack: Entries::default(),
        })
    }

    /// The bundled table with the pack's entries on top (they win over bundled ones).
    pub fn with_overrides(overrides: &[PriceSpec]) -> Result<PriceTable, CostError> {
        let mut table = PriceTable::bundled()?;
        for spec in overrides {
            let pattern = spec.model.trim();
            if pattern.is_empty() {
                return Err(CostError::Price {
                    model: spec.model.clone(),
                    source: PriceError::EmptyModel(spec.model.clone()),
                });
            }
            let price = Price::per_million(
                spec.input_per_million,
                spec.output_per_million,
                spec.cached_input_per_million,
            )
            .map_err(|source| CostError::Price {
                model: spec.model.clone(),
                source,
            })?;
            table.pack.insert(pattern, price);
        }
        Ok(table)
    }

    /// The price of `model`, trying the name as given and then its normalised forms (provider
    /// prefix removed, dated snapshot or `-latest` suffix removed); pack entries first.
    /// `None`: the price is unknown — the cost must be recorded as unknown, not as zero.
    pub fn lookup(&self, model: &str) -> Option<PriceMatch> {
        let candidates = candidates(model);
        for (entries, source) in [
            (&self.pack, PriceSource::Pack),
            (&self.bundled, PriceSource::Bundled),
        ] {
            for c in &candidates {
                if let Some((entry, price)) = entries.get(c) {
                    return Some(PriceMatch {
                        entry: entry.to_owned(),
                        price,
                        source,
                    });
                }
            }
        }
        None
    }
}

/// The forms of a model name to look up, most specific first:
/// `OpenAI/gpt-4o-2024-08-06` → `openai/gpt-4o-2024-08-06`, `gpt-4o-2024-08-06`, `gpt-4o`.
pub fn candidates(model: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    let lower = model.trim().to_ascii_lowercase();
    push(&lower);
    // Provider / organisation prefixes: `openai/`, `models/`, `meta-llama/`, `anthropic.`.
    let mut base = lower.rsplit('/').next().unwrap_or(&lower).to_owned();
    for p in [
        "us.anthropic.",
        "eu.anthropic.",
        "apac.anthropic.",
        "anthropic.",
    ] {
        if let Some(rest) = base.strip_prefix(p) {
            base = rest.to_owned();
            break;
        }
    }
    push(&base);
    let mut current = base;
    while let Some(shorter) = strip_version_suffix(&current) {
        push(&shorter);
        current = shorter;
    }
    out
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Removes one version suffix: `:latest`, `:free`, `-latest`, `-YYYY-MM-DD`, `-YYYYMMDD`,
/// `@YYYYMMDD`, `-MM-DD`, `-dddd` (`gpt-4-0613`, `mistral-large-2411`), `-0dd`
/// (`gemini-1.5-pro-002`), `-vN:M` (Bedrock), `-preview`.
fn strip_version_suffix(s: &str) -> Option<String> {
    for suffix in [":latest", ":free", ":beta", "-latest", "-preview"] {
        if let Some(rest) = s.strip_suffix(suffix)
            && !rest.is_empty()
        {
            return Some(rest.to_owned());
        }
    }
    // Bedrock `-v2:0`.
    if let Some((rest, ver)) = s.rsplit_once("-v")
        && let Some((major, minor)) = ver.split_once(':')
        && all_digits(major)
        && all_digits(minor)
    {
        return Some(rest.to_owned());
    }
    // -YYYY-MM-DD
    if s.len() > 11 {
        let (rest, tail) = s.split_at(s.len() - 11);
        let t = tail.as_bytes();
        if t[0] == b'-'
            && t[5] == b'-'
            && t[8] == b'-'
            && all_digits(&tail[1..5])
            && all_digits(&tail[6..8])
            && all_digits(&tail[9..11])
        {
            return Some(rest.to_owned());
        }
    }
    // -YYYYMMDD / @YYYYMMDD
    if s.len() > 9 {
        let (rest, tail) = s.split_at(s.len() - 9);
        if (tail.starts_with('-') || tail.starts_with('@')) && all_digits(&tail[1..]) {
            return Some(rest.to_owned());
        }
    }
    // -MM-DD (gemini previews)
    if s.len() > 6 {
        let (rest, tail) = s.split_at(s.len() - 6);
        let t = tail.as_bytes();
        if t[0] == b'-' && t[3] == b'-' && all_digits(&tail[1..3]) && all_digits(&tail[4..6]) {
            return Some(rest.to_owned());
        }
    }
    if let Some((rest, tail)) = s.rsplit_once('-')
        && !rest.is_empty()
        && all_digits(tail)
        && (tail.len() == 4 || (tail.len() == 3 && tail.starts_with('0')))
    {
        return Some(rest.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> UsdAmount {
        UsdAmount::parse(s).unwrap()
    }

    #[test]
    fn bundled_table_loads_and_prices_gpt_4o() {
        let t = PriceTable::bundled().unwrap();
        let m = t.lookup("gpt-4o").unwrap();
        assert_eq!(m.entry, "gpt-4o");
        assert_eq!(m.price.input, 2_500_000);
        assert_eq!(m.price.cached_input, 1_250_000);
        assert_eq!(m.price.output, 10_000_000);
        assert_eq!(m.price.input_per_million().to_string(), "2.50");
        assert_eq!(m.source, PriceSource::Bundled);
    }

    #[test]
    fn normalises_model_names() {
        let t = PriceTable::bundled().unwrap();
        let cases = [
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("openai/gpt-4o-mini", "gpt-4o-mini"),
            ("GPT-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
            ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
            ("anthropic/claude-sonnet-4-20250514", "claude-sonnet-4"),
            (
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "claude-3-5-sonnet",
            ),
            ("claude-sonnet-4@20250514", "claude-sonnet-4"),
            ("models/gemini-1.5-pro-002", "gemini-1.5-pro"),
            ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
            ("mistral-large-2411", "mistral-large"),
            ("mistral-large-latest", "mistral-large"),
            ("gpt-4-0613", "gpt-4"),
            ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
            ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama-3.3-70b"),
            ("deepseek-chat", "deepseek-chat"),
            ("mock", "mock"),
        ];
        for (model, entry) in cases {
            assert_eq!(
                t.lookup(model).map(|m| m.entry),
                Some(entry.to_owned()),
                "{model}"
            );
        }
    }

    #[test]
    fn unknown_models_have_no_price() {
        let t = PriceTable::bundled().unwrap();
        for model in ["my-finetune", "gpt-4o-audio-preview", "", "gpt"] {
            assert_eq!(t.lookup(model), None, "{model}");
        }
    }

    #[test]
    fn pack_overrides_win_exact_and_prefix() {
        let spec = |model: &str, i: &str, o: &str| PriceSpec {
            model: model.to_owned(),
            input_per_million: usd(i),
            output_per_million: usd(o),
            cached_input_per_million: None,
        };
        let t = PriceTable::with_overrides(&[
            spec("gpt-4o", "1.00", "2.00"),
            spec("acme-*", "0.30", "0.60"),
            spec("acme-big*", "3.00", "6.00"),
        ])
        .unwrap();
        let m = t.lookup("gpt-4o-2024-08-06").unwrap();
        assert_eq!((m.entry.as_str(), m.source), ("gpt-4o", PriceSource::Pack));
        assert_eq!(m.price.cached_input, 1_000_000);
        assert_eq!(t.lookup("acme-small-v1").unwrap().entry, "acme-*");
        assert_eq!(t.lookup("acme-big-2").unwrap().entry, "acme-big*");
        assert_eq!(
            t.lookup("gpt-4o-mini").unwrap().source,
            PriceSource::Bundled
        );
    }

    #[test]
    fn rejects_prices_finer_than_a_picodollar_per_token() {
        let err = PriceTable::with_overrides(&[PriceSpec {
            model: "x".to_owned(),
            input_per_million: usd("0.0000001"),
            output_per_million: usd("1"),
            cached_input_per_million: None,
        }])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "price for model `x`: input price `0.0000001` per 1M tokens has more than 6 decimal places (a price per token must be a whole number of picodollars)"
        );
    }

    #[test]
    fn cost_is_exact() {
        let t = PriceTable::bundled().unwrap();
        let p = t.lookup("gpt-4o").unwrap().price;
        let c = p.cost(&TokenUsage {
            prompt_tokens: 1000,
            completion_tokens: 500,
            cached_tokens: 200,
            estimated: false,
        });
        // 800 × 2.5e-6 + 200 × 1.25e-6 + 500 × 10e-6 = 0.002 + 0.00025 + 0.005
        assert_eq!(c.to_string(), "0.00725");
    }
}
