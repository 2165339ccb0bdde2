//! Evaluates the detectors on a labelled JSONL set and prints precision/recall/F1 and FPR.
//!
//! ```text
//! cargo run --release -p detectors --example eval -- ../shared/datasets/pii_ext.jsonl
//! cargo run --release -p detectors --example eval -- FILE.jsonl [--threshold 0.5] [--misses N]
//! ```
//!
//! The schema is detected from the rows: rows with `spans` are PII span sets (offsets in Unicode
//! code points, converted to bytes here); rows with `label` are classification sets, scored by
//! the detector the file name names (`injection`, `code`, `safety`) or the `--detector` flag.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use detectors::{
    DetectorConfig, DetectorKind, DetectorMask, DetectorSet, ScanContext, Surface, injection_score,
};
use serde_json::Value;

#[derive(Default)]
struct Counts {
    tp: u32,
    fp: u32,
    tn: u32,
    fn_: u32,
}

impl Counts {
    fn add(&mut self, label: bool, pred: bool) {
        match (label, pred) {
            (true, true) => self.tp += 1,
            (true, false) => self.fn_ += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn line(&self, name: &str) -> String {
        let p = ratio(self.tp, self.tp + self.fp);
        let r = ratio(self.tp, self.tp + self.fn_);
        let f1 = match (p, r) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            _ => None,
        };
        let fpr = ratio(self.fp, self.fp + self.tn);
        format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            self.tp + self.fn_,
            self.fp + self.tn,
            fmt(p),
            fmt(r),
            fmt(f1),
            fmt(fpr),
            format_args!("{}/{}/{}/{}", self.tp, self.fp, self.tn, self.fn_)
        )
    }
}

fn ratio(a: u32, b: u32) -> Option<f64> {
    (b > 0).then(|| f64::from(a) / f64::from(b))
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("–".to_owned(), |v| format!("{v:.3}"))
}

const HEADER: &str = "| group | pos | neg | precision | recall/TPR | F1 | FPR | tp/fp/tn/fn |\n|---|---:|---:|---:|---:|---:|---:|---|";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: eval FILE.jsonl|--secrets [--threshold T] [--detector D] [--misses N]");
    if path == "--secrets" {
        let set = DetectorSet::new(&DetectorConfig::default()).expect("build detectors");
        secrets_eval(&set);
        return;
    }
    let mut threshold = 0.5f32;
    let mut detector: Option<String> = None;
    let mut misses = 0usize;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--threshold" => threshold = args[i + 1].parse().expect("threshold"),
            "--detector" => detector = Some(args[i + 1].clone()),
            "--misses" => misses = args[i + 1].parse().expect("misses"),
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    let data = std::fs::read_to_string(path).expect("read dataset");
    let rows: Vec<Value> = data
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    let set = DetectorSet::new(&DetectorConfig::default()).expect("build detectors");
    println!("file: {path} ({} rows)", rows.len());
    if rows.iter().any(|r| r.get("spans").is_some()) {
        pii(&set, &rows, misses);
    } else {
        let det = detector.unwrap_or_else(|| {
            let p = path.to_ascii_lowercase();
            if p.contains("inject") {
                "injection".into()
            } else if p.contains("code") {
                "code".into()
            } else if p.contains("safety") {
                "safety".into()
            } else {
                panic!("cannot tell the detector from the file name; pass --detector")
            }
        });
        classify(&set, &rows, &det, threshold, misses);
    }
}

fn surface_of(row: &Value) -> Surface {
    row.get("surface")
        .and_then(Value::as_str)
        .and_then(Surface::parse)
        .unwrap_or(Surface::UserPrompt)
}

fn classify(set: &DetectorSet, rows: &[Value], det: &str, threshold: f32, misses: usize) {
    let mask = match det {
        "injection" => DetectorMask::INJECTION,
        "code" => DetectorMask::CODE,
        "safety" => DetectorMask::SAFETY,
        other => panic!("unknown detector {other}"),
    };
    let mut overall = Counts::default();
    let mut no_ctx = Counts::default();
    let mut by_cat: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_surface: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_rule: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut missed = Vec::new();
    let mut false_pos = Vec::new();
    let start = std::time::Instant::now();
    let mut bytes = 0usize;
    for row in rows {
        let text = row["text"].as_str().unwrap_or("");
        bytes += text.len();
        let label = row["label"].as_i64() == Some(1);
        let surface = surface_of(row);
        let findings = set.scan(text, &ScanContext::new(surface).with_detectors(mask));
        let pred = match det {
            "injection" => injection_score(&findings) >= threshold,
            "code" => findings.iter().any(|f| f.detector == DetectorKind::Code),
            _ => findings.iter().any(|f| f.detector == DetectorKind::Safety),
        };
        if pred {
            for f in &findings {
                *by_rule.entry(f.rule).or_default() += 1;
            }
        }
        let cat = row["category"].as_str().unwrap_or("?").to_owned();
        overall.add(label, pred);
        if row.get("context_dependent").and_then(Value::as_bool) != Some(true) {
            no_ctx.add(label, pred);
        }
        by_cat.entry(cat.clone()).or_default().add(label, pred);
        let prefix = cat.splitn(3, '_').take(2).collect::<Vec<_>>().join("_");
        let group = if cat.starts_with("hard_negative") {
            "hard negatives (all)".to_owned()
        } else if cat.starts_with("benign") {
            "benign (all)".to_owned()
        } else {
            format!("prefix {prefix}")
        };
        by_cat.entry(group).or_default().add(label, pred);
        by_surface
            .entry(surface.as_str().to_owned())
            .or_default()
            .add(label, pred);
        if label && !pred {
            missed.push(format!(
                "[{cat}] {}",
                text.chars()
                    .take(160)
                    .collect::<String>()
                    .replace('\n', " ")
            ));
        }
        if !label && pred {
            let rules: Vec<_> = findings.iter().map(|f| f.rule).collect();
            false_pos.push(format!(
                "[{cat}] {rules:?} {}",
                text.chars()
                    .take(160)
                    .collect::<String>()
                    .replace('\n', " ")
            ));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "detector: {det}; decision: {}",
        if det == "injection" {
            format!("injection_score >= {threshold}")
        } else {
            "any finding".into()
        }
    );
    println!("\n{HEADER}");
    println!("{}", overall.line("**all**"));
    println!("{}", no_ctx.line("all, without context_dependent rows"));
    for (s, c) in &by_surface {
        println!("{}", c.line(&format!("surface {s}")));
    }
    for (s, c) in &by_cat {
        println!("{}", c.line(&format!("category {s}")));
    }
    println!("\nrules on flagged rows: {by_rule:?}");
    println!("scanned {bytes} bytes in {secs:.3}s");
    if misses > 0 {
        println!("\nmissed positives:");
        for m in missed.iter().take(misses) {
            println!("  {m}");
        }
        println!("\nfalse positives:");
        for m in false_pos.iter().take(misses) {
            println!("  {m}");
        }
    }
}

const PII_TYPES: &[&str] = &[
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "PERSON",
];

#[derive(Default)]
struct SpanCounts {
    gold: u32,
    pred: u32,
    exact_tp: u32,
    gold_hit: u32,
    pred_hit: u32,
}

fn cp_to_byte(text: &str, cp: usize) -> usize {
    text.char_indices().nth(cp).map_or(text.len(), |(b, _)| b)
}

fn pii(set: &DetectorSet, rows: &[Value], misses: usize) {
    let mut counts: BTreeMap<&str, SpanCounts> = BTreeMap::new();
    let mut fps = Vec::new();
    let mut fns = Vec::new();
    for row in rows {
        let text = row["text"].as_str().unwrap_or("");
        let gold: Vec<(usize, usize, String)> = row["spans"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let st = cp_to_byte(text, s["start"].as_u64().unwrap_or(0) as usize);
                        let en = cp_to_byte(text, s["end"].as_u64().unwrap_or(0) as usize);
                        (st, en, s["type"].as_str().unwrap_or("").to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let found = set.scan(
            text,
            &ScanContext::new(Surface::UserPrompt).with_detectors(DetectorMask::PII),
        );
        for t in PII_TYPES {
            let c = counts.entry(t).or_default();
            let g: Vec<_> = gold.iter().filter(|x| x.2 == *t).collect();
            let p: Vec<_> = found.iter().filter(|f| f.kind == *t).collect();
            c.gold += g.len() as u32;
            c.pred += p.len() as u32;
            for x in &g {
                if p.iter().any(|f| f.start == x.0 && f.end == x.1) {
                    c.exact_tp += 1;
                }
                if p.iter().any(|f| f.start < x.1 && x.0 < f.end) {
                    c.gold_hit += 1;
                } else {
                    fns.push(format!("{t}: {:?}", &text[x.0..x.1]));
                }
            }
            for f in &p {
                // any annotated span (of any type) overlapping counts for overlap precision
                // only if it has the same type
                if g.iter().any(|x| f.start < x.1 && x.0 < f.end) {
                    c.pred_hit += 1;
                } else {
                    let other: Vec<_> = gold
                        .iter()
                        .filter(|x| f.start < x.1 && x.0 < f.end)
                        .map(|x| x.2.as_str())
                        .collect();
                    fps.push(format!(
                        "{t} ({}) {:?} gold={other:?}",
                        f.rule,
                        &text[f.start..f.end]
                    ));
                }
            }
        }
    }
    println!(
        "\n| type | gold | predicted | P exact | R exact | F1 exact | P overlap | R overlap | F1 overlap |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut agg = SpanCounts::default();
    for t in PII_TYPES {
        let c = &counts[t];
        if *t != "PERSON" {
            agg.gold += c.gold;
            agg.pred += c.pred;
            agg.exact_tp += c.exact_tp;
            agg.gold_hit += c.gold_hit;
            agg.pred_hit += c.pred_hit;
        }
        println!("{}", span_line(t, c));
    }
    println!("{}", span_line("**structured (all but PERSON)**", &agg));
    if misses > 0 {
        println!("\nfalse positives:");
        for m in fps.iter().take(misses) {
            println!("  {m}");
        }
        println!("\nmissed:");
        for m in fns.iter().take(misses) {
            println!("  {m}");
        }
    }
}

fn span_line(t: &str, c: &SpanCounts) -> String {
    let pe = ratio(c.exact_tp, c.pred);
    let re = ratio(c.exact_tp, c.gold);
    let po = ratio(c.pred_hit, c.pred);
    let ro = ratio(c.gold_hit, c.gold);
    let f = |p: Option<f64>, r: Option<f64>| match (p, r) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        _ => None,
    };
    format!(
        "| {t} | {} | {} | {} | {} | {} | {} | {} | {} |",
        c.gold,
        c.pred,
        fmt(pe),
        fmt(re),
        fmt(f(pe, re)),
        fmt(po),
        fmt(ro),
        fmt(f(po, ro))
    )
}

/// Deterministic xorshift generator for the generated secrets set.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, alphabet: &str, n: usize) -> String {
        let a = alphabet.as_bytes();
        (0..n)
            .map(|_| a[(self.next() % a.len() as u64) as usize] as char)
            .collect()
    }
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64CH: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEXCH: &str = "0123456789abcdef";

/// Generated secrets evaluation: credential-shaped values are assembled here at run time
/// (nothing credential-shaped is stored in the repository), planted in chat, log, code and
/// config contexts, next to look-alike negatives.
fn secrets_eval(set: &DetectorSet) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let contexts = [
        "here is the key: {}",
        "export TOKEN={}",
        "config:\n  credential: \"{}\"\n",
        "I pasted {} into the settings, is that right?",
        "log line 2024-05-01T10:00:00Z auth ok with {} for user 17",
        "const client = new Client(\"{}\");",
    ];
    let mut pos: Vec<(String, String, &'static str)> = Vec::new();
    for i in 0..40 {
        let generated: Vec<(String, &'static str)> = vec![
            (format!("AKIA{}", rng.pick(UPPER32, 16)), "aws_access_key"),
            (format!("ghp_{}", rng.pick(ALNUM, 36)), "github"),
            (format!("github_pat_{}", rng.pick(ALNUM, 82)), "github_fine"),
            (format!("glpat-{}", rng.pick(ALNUM, 20)), "gitlab"),
            (
                format!(
                    "xoxb-{}-{}",
                    rng.pick("0123456789", 10),
                    rng.pick(ALNUM, 24)
                ),
                "slack",
            ),
            (format!("sk_live_{}", rng.pick(ALNUM, 24)), "stripe"),
            (
                format!(
                    "sk-proj-{}T3BlbkFJ{}",
                    rng.pick(ALNUM, 20),
                    rng.pick(ALNUM, 20)
                ),
                "openai",
            ),
            (format!("sk-ant-api03-{}", rng.pick(ALNUM, 90)), "anthropic"),
            (format!("AIza{}", rng.pick(ALNUM, 35)), "gcp"),
            (
                format!(
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI{}In0.{}",
                    rng.pick(ALNUM, 12),
                    rng.pick(ALNUM, 43)
                ),
                "jwt",
            ),
            (
                format!("AccountKey={}==", rng.pick(B64CH, 86)),
                "azure_storage",
            ),
        ];
        for (v, name) in generated {
            let ctx = contexts[(i + name.len()) % contexts.len()];
            pos.push((ctx.replace("{}", &v), v, name));
        }
        let pw = rng.pick(ALNUM, 18);
        pos.push((
            format!("DATABASE_URL=postgres://app:{pw}@db.internal:5432/prod"),
            pw,
            "dsn",
        ));
        let v = rng.pick(ALNUM, 32);
        pos.push((format!("api_key = \"{v}\""), v, "generic_assignment"));
        let pk = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----",
            rng.pick(B64CH, 64),
            rng.pick(B64CH, 64)
        );
        pos.push((format!("key file:\n{pk}\n"), pk, "private_key"));
    }
    let mut neg: Vec<String> = Vec::new();
    for _ in 0..40 {
        let uuid = format!(
            "{}-{}-4{}-a{}-{}",
            rng.pick(HEXCH, 8),
            rng.pick(HEXCH, 4),
            rng.pick(HEXCH, 3),
            rng.pick(HEXCH, 3),
            rng.pick(HEXCH, 12)
        );
        neg.push(format!("request id {uuid} finished in 35 ms"));
        neg.push(format!("merged commit {} into main", rng.pick(HEXCH, 40)));
        neg.push(format!(
            "sha256:{} is the image digest",
            rng.pick(HEXCH, 64)
        ));
        neg.push("api_key = \"your_api_key_here\"".to_owned());
        neg.push("password: ********".to_owned());
        neg.push("token = os.environ[\"GITHUB_TOKEN\"]".to_owned());
        neg.push("Set OPENAI_API_KEY=${OPENAI_API_KEY} in the CI settings".to_owned());
        neg.push("the password must be at least 12 characters long".to_owned());
        neg.push(format!(
            "see https://example.com/docs/{}",
            rng.pick("abcdefghij", 12)
        ));
        neg.push(format!(
            "function_name_{}() returns the secret_sauce_recipe",
            rng.pick("abcdefghij", 6)
        ));
        neg.push("postgres://app@db.internal:5432/prod".to_owned());
        neg.push(format!("AKIA{} is an example id in the docs", "EXAMPLE"));
    }
    let mut c = Counts::default();
    let mut by_kind: BTreeMap<&str, Counts> = BTreeMap::new();
    let ctx = ScanContext::new(Surface::UserPrompt).with_detectors(DetectorMask::SECRETS);
    let mut misses = Vec::new();
    for (text, value, name) in &pos {
        let vs = text.find(value.as_str()).unwrap_or(0);
        let ve = vs + value.len();
        let f = set.scan(text, &ctx);
        let hit = f.iter().any(|f| f.start < ve && vs < f.end);
        c.add(true, hit);
        by_kind.entry(name).or_default().add(true, hit);
        if !hit {
            misses.push(*name);
        }
    }
    let mut fps = Vec::new();
    for text in &neg {
        let f = set.scan(text, &ctx);
        let hit = !f.is_empty();
        c.add(false, hit);
        if hit {
            fps.push(f[0].rule);
        }
    }
    println!(
        "generated secrets set: {} positives, {} negatives (rows)",
        pos.len(),
        neg.len()
    );
    println!("\n{HEADER}");
    println!("{}", c.line("**all**"));
    for (k, v) in &by_kind {
        println!("{}", v.line(&format!("kind {k}")));
    }
    println!("\nmissed kinds: {misses:?}\nfalse-positive rules: {fps:?}");
}
