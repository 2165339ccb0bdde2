//! The compiled pack: what the gateway loads once and evaluates on every exchange.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use detectors::{DetectorKind, DetectorMask};
use exchange::{
    ApiError, ChatChunk, ChatResponse, Choice, ChunkChoice, Content, Decision, Delta, Exchange,
    Message, ResponseBody, Role, Usage,
};

use crate::compile::compile;
use crate::error::PackError;
use crate::eval::Scanner;
use crate::model::{BlockResponse, GatewaySettings, PackMeta};
use crate::policies::{CompiledPolicy, OversightSettings};
use crate::rules::{Rule, RuleAction};
use crate::state::PolicyState;

/// A validated, compiled policy pack. Immutable; share it behind an `Arc`
/// ([`crate::SharedPack`]) and swap the `Arc` to reload.
pub struct CompiledPack {
    /// Name, version, hash and source of the pack.
    pub meta: PackMeta,
    /// Everything the gateway reads beyond the chain (providers, auth, audit, cost, …).
    pub settings: GatewaySettings,
    description: Option<String>,
    chain: Vec<String>,
    policies: Vec<CompiledPolicy>,
    oversight: OversightSettings,
    rules: Vec<Rule>,
    tools: HashMap<String, String>,
    workflows: HashMap<String, Vec<String>>,
    scanner: Arc<dyn Scanner>,
    input_mask: DetectorMask,
    output_mask: DetectorMask,
    restores: bool,
    /// Stream modes of the output-phase policies.
    pub(crate) stream: crate::stream::StreamConfig,
}

impl std::fmt::Debug for CompiledPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPack")
            .field("meta", &self.meta)
            .field("chain", &self.chain)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// What `palisade policy validate` prints about a valid pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    /// `pack.name`.
    pub name: String,
    /// `pack.version`.
    pub version: String,
    /// The policy chain, in order.
    pub chain: Vec<String>,
    /// Number of conditional rules.
    pub rules: usize,
    /// Provider names, in pack order.
    pub providers: Vec<String>,
    /// Hex SHA-256 of the pack text.
    pub content_sha256: String,
}

impl std::fmt::Display for PackSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "policy pack `{}` {}: ok; chain: {}; {} rule{}; providers: {}",
            self.name,
            if self.version.is_empty() {
                "(no version)"
            } else {
                &self.version
            },
            if self.chain.is_empty() {
                "(empty)".to_owned()
            } else {
                self.chain.join(" -> ")
            },
            self.rules,
            if self.rules == 1 { "" } else { "s" },
            if self.providers.is_empty() {
                "(none)".to_owned()
            } else {
                self.providers.join(", ")
            },
        )
    }
}

/// Loads and validates the pack at `path` (for `palisade policy validate`).
pub fn validate_file(path: &Path) -> Result<PackSummary, PackError> {
    CompiledPack::load(path).map(|p| p.summary())
}

fn mask_of(kind: DetectorKind) -> DetectorMask {
    DetectorMask::of(kind)
}

impl CompiledPack {
    /// Reads, validates and compiles the pack file at `path`.
    pub fn load(path: &Path) -> Result<CompiledPack, PackError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PackError::io(&source, e))?;
        CompiledPack::from_yaml(&text, &source)
    }

    /// Validates and compiles pack `text`; `source` names it in errors (a path or `<inline>`).
    pub fn from_yaml(text: &str, source: &str) -> Result<CompiledPack, PackError> {
        let c = compile(text, source).map_err(PackError::new)?;
        let scanner: Arc<dyn Scanner> = match c.detectors {
            Some(set) => Arc::new(set),
            None => Arc::new(crate::eval::LazyScanner::new(c.detector_config)),
        };
        let stream = c.stream;
        let mut pack = CompiledPack::assemble(
            c.meta,
            c.settings,
            c.description,
            c.chain,
            c.policies,
            c.oversight,
            c.rules,
            c.tools,
            c.workflows,
            scanner,
        );
        pack.stream = stream;
        Ok(pack)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        meta: PackMeta,
        settings: GatewaySettings,
        description: Option<String>,
        chain: Vec<String>,
        policies: Vec<CompiledPolicy>,
        oversight: OversightSettings,
        rules: Vec<Rule>,
        tools: HashMap<String, String>,
        workflows: HashMap<String, Vec<String>>,
        scanner: Arc<dyn Scanner>,
    ) -> CompiledPack {
        let mut input_mask = DetectorMask::NONE;
        let mut output_mask = DetectorMask::NONE;
        let mut restores = false;
        for p in &policies {
            if let CompiledPolicy::Detector(d) = p {
                if d.direction.input {
                    input_mask = input_mask | mask_of(d.detector);
                }
                if d.direction.output {
                    output_mask = output_mask | mask_of(d.detector);
                }
                restores |= d.restore && d.direction.input;
            }
        }
        if rules.iter().any(|r| r.condition.uses_findings()) {
            input_mask = DetectorMask::ALL;
            output_mask = DetectorMask::ALL;
        }
        CompiledPack {
            meta,
            settings,
            description,
            chain,
            policies,
            oversight,
            rules,
            tools,
            workflows,
            scanner,
            input_mask,
            output_mask,
            restores,
            stream: Default::default(),
        }
    }

    /// Replaces the scanner (tests use a deterministic fake).
    #[cfg(test)]
    pub(crate) fn with_scanner(mut self, scanner: Arc<dyn Scanner>) -> CompiledPack {
        self.scanner = scanner;
        self
    }

    /// The policy names of the chain, in evaluation order.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// `pack.description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Names of the conditional rules, in pack order.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// The `action:` of rule `name` (approval settings for `CONSTRAIN` rules).
    pub fn rule_action(&self, name: &str) -> Option<&RuleAction> {
        self.rules
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.action.as_ref())
    }

    /// `policy.human-oversight` settings (defaults when not configured).
    pub fn oversight(&self) -> &OversightSettings {
        &self.oversight
    }

    /// The category of a tool declared under `tools:`.
    pub fn tool_category(&self, tool: &str) -> Option<&str> {
        self.tools.get(tool).map(String::as_str)
    }

    /// Members of a workflow declared under `workflows:`.
    pub fn workflow_members(&self, workflow: &str) -> Option<&[String]> {
        self.workflows.get(workflow).map(Vec::as_slice)
    }

    /// A one-line summary.
    pub fn summary(&self) -> PackSummary {
        PackSummary {
            name: self.meta.name.clone(),
            version: self.meta.version.clone(),
            chain: self.chain.clone(),
            rules: self.rules.len(),
            providers: self
                .settings
                .providers
                .iter()
                .map(|p| p.name.clone())
                .collect(),
            content_sha256: self.meta.content_sha256.clone(),
        }
    }

    pub(crate) fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub(crate) fn scanner(&self) -> &dyn Scanner {
        self.scanner.as_ref()
    }

    pub(crate) fn input_mask(&self) -> DetectorMask {
        self.input_mask
    }

    pub(crate) fn output_mask(&self) -> DetectorMask {
        self.output_mask
    }

    pub(crate) fn restores(&self) -> bool {
        self.restores
    }

    /// Input phase: every chain policy and matching rule pushes a [`exchange::Verdict`]
    /// (`Phase::Input`); redaction edits `ex.request` and sets `ex.request_modified`.
    pub fn evaluate_input(&self, ex: &mut Exchange, state: &PolicyState) {
        self.run_input(ex, state);
    }

    /// Output phase: verdicts on `response` (`Phase::Output`); redacts the response and
    /// restores placeholders of `restore: true` policies.
    pub fn evaluate_output(
        &self,
        ex: &mut Exchange,
        response: &mut ChatResponse,
        state: &PolicyState,
    ) {
        self.run_output(ex, response, state);
    }

    /// The policy (or rule) that decided, and the message shown for a block.
    pub fn block_message(&self, ex: &Exchange) -> (String, String) {
        match ex.deciding_verdict() {
            Some(v) => {
                let code = v.rule.clone().unwrap_or_else(|| v.policy.clone());
                let what = if v.rule.is_some() { "rule" } else { "policy" };
                (
                    code.clone(),
                    format!("blocked by {what} `{code}`: {}", v.reason),
                )
            }
            None => ("policy".to_owned(), "blocked by policy".to_owned()),
        }
    }

    /// The answer to a blocked turn, per `on_block`: a 403 `policy_violation` error whose
    /// `code` is the deciding policy (or rule), or a 200 completion saying what was blocked
    /// (`finish_reason: content_filter`) — an SSE stream when the request asked for one.
    pub fn blocked_response(&self, ex: &Exchange) -> http::Response<ResponseBody> {
        let (code, message) = self.block_message(ex);
        let mut res = match self.settings.block_response {
            BlockResponse::Error => ApiError::policy_violation(code, message).into_response(),
            BlockResponse::Completion => completion_response(ex, &format!("[palisade] {message}")),
        };
        res.headers_mut().insert(
            exchange::HEADER_DECISION,
            http::HeaderValue::from_static("BLOCK"),
        );
        res
    }

    /// The HTTP status `blocked_response` answers with.
    pub fn blocked_status(&self) -> u16 {
        match self.settings.block_response {
            BlockResponse::Error => 403,
            BlockResponse::Completion => 200,
        }
    }

    /// The overall decision of an exchange (most severe verdict).
    pub fn decision(ex: &Exchange) -> Decision {
        ex.decision()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn completion_response(ex: &Exchange, text: &str) -> http::Response<ResponseBody> {
    let id = format!("chatcmpl-palisade-{}", ex.id.simple());
    let created = now_secs();
    let model = ex.request.model.clone();
    if ex.request.is_stream() {
        let first = ChatChunk {
            id: id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: Some(Role::Assistant),
                    content: Some(text.to_owned()),
                    ..Delta::default()
                },
                finish_reason: None,
                extra: Default::default(),
            }],
            usage: None,
            extra: Default::default(),
        };
        let last = ChatChunk {
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta::default(),
                finish_reason: Some("content_filter".to_owned()),
                extra: Default::default(),
            }],
            ..first.clone()
        };
        let mut body = String::new();
        for chunk in [&first, &last] {
            body.push_str("data: ");
            body.push_str(&serde_json::to_string(chunk).unwrap_or_default());
            body.push_str("\n\n");
        }
        let wants_usage = ex
            .request
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        if wants_usage {
            let usage = ChatChunk {
                choices: Vec::new(),
                usage: Some(Usage::default()),
                ..first.clone()
            };
            body.push_str("data: ");
            body.push_str(&serde_json::to_string(&usage).unwrap_or_default());
            body.push_str("\n\n");
        }
        body.push_str("data: [DONE]\n\n");
        let mut res = http::Response::new(exchange::full_body(body));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        res.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        return res;
    }
    let resp = ChatResponse {
        id,
        object: "chat.completion".to_owned(),
        created,
        model,
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: Role::Assistant,
                content: Some(Content::Text(text.to_owned())),
                name: None,
                tool_calls: None,
                tool_call_id: None,
                extra: Default::default(),
            },
            finish_reason: Some("content_filter".to_owned()),
            extra: Default::default(),
        }],
        usage: Some(Usage::default()),
        extra: Default::default(),
    };
    exchange::json_response(http::StatusCode::OK, &resp)
}
