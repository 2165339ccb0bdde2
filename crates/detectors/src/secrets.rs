//! Secrets: provider key formats, private keys, JWTs, connection-string passwords and
//! high-entropy values assigned to secret-like names.

use crate::engine::{Next, Rule, Table, class, set_back};
use crate::types::{BuildError, DetectorKind, Finding, Severity};

fn rules() -> Vec<Rule> {
    let mut v = base_rules();
    set_back(
        &mut v,
        "secrets.azure.client_secret",
        &["q~"],
        class::ident,
        4,
    );
    set_back(
        &mut v,
        "secrets.telegram.bot_token",
        &[":aa"],
        class::digit,
        10,
    );
    set_back(
        &mut v,
        "secrets.generic.assignment",
        &[
            "secret",
            "passwd",
            "password",
            "passphrase",
            "pwd",
            "token",
            "api_key",
            "api-key",
            "apikey",
            "access_key",
            "access-key",
            "accesskey",
            "auth_key",
            "auth-key",
            "authkey",
            "private_key",
            "private-key",
            "privatekey",
            "client_secret",
            "client-secret",
            "credential",
            "bearer",
        ],
        class::ident,
        40,
    );
    v
}

fn base_rules() -> Vec<Rule> {
    use Severity::{Critical, High};
    let r = crate::engine::rule;
    vec![
        r(
            "private_key",
            "secrets.private_key",
            r"-----BEGIN[ A-Z0-9]{0,20} PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s:,\-]*?-----END[ A-Z0-9]{0,20} PRIVATE KEY(?: BLOCK)?-----",
            0.99,
            Critical,
        ),
        r(
            "private_key",
            "secrets.private_key.header",
            r"-----BEGIN[ A-Z0-9]{0,20} PRIVATE KEY(?: BLOCK)?-----",
            0.95,
            Critical,
        ),
        r(
            "aws_access_key",
            "secrets.aws.access_key",
            r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}\b",
            0.95,
            Critical,
        ),
        r(
            "aws_secret_key",
            "secrets.aws.secret_key",
            r#"(?i:aws[A-Za-z0-9_.\-]{0,20}(?:secret|sk)[A-Za-z0-9_.\-]{0,20}["']?[ \t]*(?:=|:|:=|=>)[ \t]*["']?)(?P<v>[A-Za-z0-9/+]{40})\b"#,
            0.9,
            Critical,
        ),
        r(
            "gcp_api_key",
            "secrets.gcp.api_key",
            r"\bAIza[0-9A-Za-z_\-]{35}",
            0.95,
            High,
        ),
        r(
            "gcp_oauth_token",
            "secrets.gcp.oauth_token",
            r"\bya29\.[0-9A-Za-z_\-]{30,}",
            0.9,
            High,
        ),
        r(
            "gcp_service_account",
            "secrets.gcp.service_account",
            r#""type"[ \t]*:[ \t]*"service_account""#,
            0.8,
            High,
        ),
        r(
            "google_oauth_secret",
            "secrets.gcp.oauth_client_secret",
            r"\bGOCSPX-[0-9A-Za-z_\-]{28}",
            0.95,
            High,
        ),
        r(
            "azure_storage_key",
            "secrets.azure.storage_key",
            r"(?i:AccountKey=)(?P<v>[A-Za-z0-9+/]{86}==)",
            0.95,
            Critical,
        ),
        r(
            "azure_sas_token",
            "secrets.azure.sas_token",
            r"[?&]sv=\d{4}-\d{2}-\d{2}&[A-Za-z0-9%&=:._\-]*?\bsig=(?P<v>[A-Za-z0-9%+/=]{30,})",
            0.9,
            High,
        ),
        r(
            "azure_client_secret",
            "secrets.azure.client_secret",
            r"\b[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}\b",
            0.9,
            High,
        ),
        r(
            "github_token",
            "secrets.github.token",
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b",
            0.98,
            Critical,
        ),
        r(
            "github_token",
            "secrets.github.fine_grained",
            r"\bgithub_pat_[A-Za-z0-9_]{60,100}\b",
            0.98,
            Critical,
        ),
        r(
            "gitlab_token",
            "secrets.gitlab.token",
            r"\bgl(?:pat|ptt|dt|rt|cbt|soat|ffct|imt|agent)-[A-Za-z0-9_\-]{20,64}\b",
            0.95,
            Critical,
        ),
        r(
            "slack_token",
            "secrets.slack.token",
            r"\bxox[abposr]-(?:\d+-)?[A-Za-z0-9\-]{10,250}",
            0.95,
            High,
        ),
        r(
            "slack_webhook",
            "secrets.slack.webhook",
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]{20,}",
            0.9,
            High,
        ),
        r(
            "discord_webhook",
            "secrets.discord.webhook",
            r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]{40,}",
            0.9,
            High,
        ),
        r(
            "stripe_key",
            "secrets.stripe.key",
            r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,99}\b",
            0.97,
            Critical,
        ),
        r(
            "anthropic_key",
            "secrets.anthropic.key",
            r"\bsk-ant-(?:api|admin|sid)\d{2}-[A-Za-z0-9_\-]{32,128}",
            0.98,
            Critical,
        ),
        r(
            "openai_key",
            "secrets.openai.key",
            r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{16,}T3BlbkFJ[A-Za-z0-9_\-]{16,}",
            0.98,
            Critical,
        ),
        r(
            "openai_key",
            "secrets.openai.project_key",
            r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,200}",
            0.95,
            Critical,
        ),
        r(
            "openai_key",
            "secrets.openai.legacy_key",
            r"\bsk-[A-Za-z0-9]{48}\b",
            0.9,
            Critical,
        ),
        r(
            "huggingface_token",
            "secrets.huggingface.token",
            r"\bhf_[A-Za-z0-9]{34,40}\b",
            0.9,
            High,
        ),
        r(
            "npm_token",
            "secrets.npm.token",
            r"\bnpm_[A-Za-z0-9]{36}\b",
            0.95,
            High,
        ),
        r(
            "pypi_token",
            "secrets.pypi.token",
            r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}",
            0.98,
            High,
        ),
        r(
            "sendgrid_key",
            "secrets.sendgrid.key",
            r"\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}\b",
            0.97,
            High,
        ),
        r(
            "twilio_key",
            "secrets.twilio.key",
            r"\bSK[0-9a-f]{32}\b",
            0.7,
            High,
        ),
        r(
            "shopify_token",
            "secrets.shopify.token",
            r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b",
            0.95,
            High,
        ),
        r(
            "digitalocean_token",
            "secrets.digitalocean.token",
            r"\bdo[opr]_v1_[a-f0-9]{64}\b",
            0.95,
            High,
        ),
        r(
            "telegram_bot_token",
            "secrets.telegram.bot_token",
            r"\b\d{8,10}:AA[A-Za-z0-9_\-]{33}\b",
            0.9,
            High,
        ),
        r(
            "jwt",
            "secrets.jwt",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{0,512}",
            0.85,
            High,
        ),
        r(
            "connection_string_password",
            "secrets.connection_string",
            r"(?i:\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|jdbc:[a-z]+|ftps?|sftp|smtps?|ldaps?|clickhouse|cockroachdb|couchdb|neo4j)://[A-Za-z0-9._%+\-~]{1,64}:)(?P<v>[A-Za-z0-9!#$%^&*()_+=\-.~,;?<>\[\]{}|]{1,128})@",
            0.9,
            High,
        ),
        r(
            "password_assignment",
            "secrets.password_in_dsn",
            r"(?i:\b(?:password|pwd)[ \t]*=[ \t]*)(?P<v>[A-Za-z0-9!#$%^&()_+=\-.~,?<>\[\]{}|@]{4,128})(?:;|$)",
            0.6,
            High,
        ),
        r(
            "secret_assignment",
            "secrets.generic.assignment",
            r#"(?i:\b[A-Za-z0-9_.\-]{0,40}(?:secret|passwd|password|passphrase|pwd|token|api[_\-]?key|apikey|access[_\-]?key|auth[_\-]?key|private[_\-]?key|client[_\-]?secret|credentials?|bearer)[A-Za-z0-9_.\-]{0,20}["']?[ \t]*(?:=|:|:=|=>)[ \t]*["'`]?|\bbearer[ \t]+)(?P<v>[A-Za-z0-9+/=_\-.~!@#$%^&]{8,256})"#,
            0.75,
            High,
        ),
    ]
}

/// Shannon entropy in bits per character.
pub(crate) fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = n as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

fn classes(s: &str) -> usize {
    let l = s.bytes().any(|b| b.is_ascii_lowercase());
    let u = s.bytes().any(|b| b.is_ascii_uppercase());
    let d = s.bytes().any(|b| b.is_ascii_digit());
    let o = s.bytes().any(|b| !b.is_ascii_alphanumeric());
    [l, u, d, o].iter().filter(|x| **x).count()
}

const PLACEHOLDERS: &[&str] = &[
    "your",
    "xxxx",
    "example",
    "placeholder",
    "changeme",
    "redacted",
    "dummy",
    "sample",
    "<",
    "${",
    "{{",
    "env",
    "getenv",
    "process.",
    "os.",
    "config.",
    "settings.",
    "secrets.",
    "none",
    "null",
    "undefined",
    "true",
    "false",
    "password",
    "secret",
    "token",
    "string",
    "self.",
    "args.",
    "request.",
    "params",
    "input",
    "prompt",
    "****",
    "...",
];

fn looks_placeholder(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    PLACEHOLDERS
        .iter()
        .any(|p| l.starts_with(p) || l.contains("xxxx") || l.contains("****"))
        || v.bytes().all(|b| b == v.as_bytes()[0])
}

/// A value that is plausibly a real secret (not code, not a word).
fn secret_like(v: &str) -> bool {
    let v = v.trim_end_matches(['.', ',', ';', ')']);
    if v.len() < 8 || looks_placeholder(v) {
        return false;
    }
    // identifiers like some_function_name or dotted code paths
    if v.contains('.')
        && v.split('.')
            .all(|p| p.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
    {
        return false;
    }
    if v.chars()
        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-')
    {
        return false;
    }
    entropy(v) >= 3.0 && classes(v) >= 2
}

/// Compiled secrets detector.
pub(crate) struct Secrets {
    pub(crate) table: Table,
    pub(crate) generic: Table,
}

impl Secrets {
    pub fn new() -> Result<Secrets, BuildError> {
        let mut specific = rules();
        let generic: Vec<Rule> = specific.split_off(specific.len() - 2);
        Ok(Secrets {
            table: Table::new(DetectorKind::Secrets, specific)?,
            generic: Table::new(DetectorKind::Secrets, generic)?,
        })
    }

    #[cfg(test)]
    pub fn tables(&self) -> Vec<&Table> {
        vec![&self.table, &self.generic]
    }

    pub fn scan(&self, text: &str, cands: &mut [Vec<(u32, u16)>], out: &mut Vec<Finding>) {
        let first = out.len();
        let (a, b) = cands.split_at_mut(1);
        self.scan_table(&self.table, text, &mut a[0], out);
        let specific_end = out.len();
        let mut generic = Vec::new();
        self.scan_table(&self.generic, text, &mut b[0], &mut generic);
        for g in generic {
            let overlaps = out[first..specific_end]
                .iter()
                .any(|f| f.start < g.end && g.start < f.end);
            if !overlaps {
                out.push(g);
            }
        }
    }

    fn scan_table(
        &self,
        table: &Table,
        text: &str,
        cands: &mut Vec<(u32, u16)>,
        out: &mut Vec<Finding>,
    ) {
        table.each(text, cands, |h| {
            let r = &table.rules[h.idx];
            let v = &text[h.start..h.end];
            let mut end = h.end;
            let ok = match r.rule {
                "secrets.generic.assignment" | "secrets.password_in_dsn" => {
                    let t = v.trim_end_matches(['.', ',', ';', ')']);
                    end = h.start + t.len();
                    secret_like(v)
                }
                "secrets.connection_string" => !looks_placeholder(v) && v.len() >= 3,
                "secrets.jwt" => v.len() >= 36,
                "secrets.openai.legacy_key"
                | "secrets.twilio.key"
                | "secrets.azure.client_secret" => entropy(v) >= 3.5,
                _ => true,
            };
            if !ok {
                return Next::Retry;
            }
            out.push(Finding {
                detector: DetectorKind::Secrets,
                kind: r.kind,
                rule: r.rule,
                start: h.start,
                end,
                score: r.score,
                severity: r.severity,
            });
            Next::Accept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets_det() -> &'static Secrets {
        static D: std::sync::OnceLock<Secrets> = std::sync::OnceLock::new();
        D.get_or_init(|| Secrets::new().unwrap())
    }

    fn scan(text: &str) -> Vec<(String, &'static str, &'static str)> {
        let s = secrets_det();
        let mut out = Vec::new();
        let mut c = crate::engine::test_cands(&s.tables(), text);
        s.scan(text, &mut c, &mut out);
        out.iter()
            .map(|f| (text[f.start..f.end].to_owned(), f.kind, f.rule))
            .collect()
    }

    fn mix(n: usize) -> String {
        // deterministic mixed-case alphanumerics, never a real key
        let a = b"aB3dE5gH7jK9mN2pQ4sT6vW8yZ0cF1hJ";
        (0..n)
            .map(|i| a[(i * 7 + i / 3) % a.len()] as char)
            .collect()
    }

    #[test]
    fn positives() {
        let aws = format!("AKIA{}", "QWERTYUIOPASDFGH");
        let gh = format!("ghp_{}", mix(36));
        let fine = format!("github_pat_{}", mix(82));
        let gl = format!("glpat-{}", mix(20));
        let slack = format!("xoxb-{}-{}", "1234567890", mix(24));
        let stripe = format!("sk_live_{}", mix(24));
        let oai = format!("sk-proj-{}T3BlbkFJ{}", mix(20), mix(20));
        let ant = format!("sk-ant-api03-{}", mix(90));
        let gcp = format!("AIza{}", mix(35));
        let jwt = format!(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}",
            mix(43)
        );
        let pk = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
            mix(64)
        );
        let pw = mix(20);
        let dsn = format!("postgres://app:{pw}@db.internal:5432/prod");
        let assign = format!("API_KEY = \"{}\"", mix(32));
        let azure = format!("AccountKey={}==;", mix(86));
        let cases: Vec<(String, String, &str, &str)> = vec![
            (
                format!("key {aws} here"),
                aws.clone(),
                "aws_access_key",
                "secrets.aws.access_key",
            ),
            (
                format!("token={gh}"),
                gh.clone(),
                "github_token",
                "secrets.github.token",
            ),
            (
                format!("t {fine}"),
                fine.clone(),
                "github_token",
                "secrets.github.fine_grained",
            ),
            (
                format!("t {gl}"),
                gl.clone(),
                "gitlab_token",
                "secrets.gitlab.token",
            ),
            (
                format!("t {slack}"),
                slack.clone(),
                "slack_token",
                "secrets.slack.token",
            ),
            (
                format!("t {stripe}"),
                stripe.clone(),
                "stripe_key",
                "secrets.stripe.key",
            ),
            (
                format!("t {oai}"),
                oai.clone(),
                "openai_key",
                "secrets.openai.key",
            ),
            (
                format!("t {ant}"),
                ant.clone(),
                "anthropic_key",
                "secrets.anthropic.key",
            ),
            (
                format!("t {gcp}"),
                gcp.clone(),
                "gcp_api_key",
                "secrets.gcp.api_key",
            ),
            (
                format!("Authorization: {jwt}"),
                jwt.clone(),
                "jwt",
                "secrets.jwt",
            ),
            (
                format!("x\n{pk}\ny"),
                pk.clone(),
                "private_key",
                "secrets.private_key",
            ),
            (
                dsn.clone(),
                pw.clone(),
                "connection_string_password",
                "secrets.connection_string",
            ),
            (
                assign.clone(),
                mix(32),
                "secret_assignment",
                "secrets.generic.assignment",
            ),
            (
                azure.clone(),
                format!("{}==", mix(86)),
                "azure_storage_key",
                "secrets.azure.storage_key",
            ),
        ];
        let mut bad = Vec::new();
        for (text, span, kind, rule) in &cases {
            let got = scan(text);
            if !got.contains(&(span.clone(), *kind, *rule)) {
                bad.push(format!(
                    "rule {rule}: got {:?}",
                    got.iter().map(|g| g.2).collect::<Vec<_>>()
                ));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn look_alike_negatives() {
        let cases: Vec<String> = vec![
            "password = \"your_password_here\"".into(),
            "api_key = os.environ[\"OPENAI_API_KEY\"]".into(),
            "token: ${GITHUB_TOKEN}".into(),
            "postgres://user:${DB_PASSWORD}@localhost/db".into(),
            "the password is stored in vault".into(),
            "secret = get_secret_from_manager".into(),
            format!("AKIA{}", "lowercase_not_key"),
            "commit 3f786850e387550fdab836ed7e6dc881de23001b".into(),
            "sk-short".into(),
            "password: ********".into(),
            "password: <SECRET_1>".into(),
        ];
        let bad: Vec<String> = cases
            .iter()
            .filter(|t| !scan(t).is_empty())
            .map(|t| {
                format!(
                    "{t:?}: {:?}",
                    scan(t).iter().map(|g| g.2).collect::<Vec<_>>()
                )
            })
            .collect();
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
