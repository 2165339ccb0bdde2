//! Stream scanning: output policies applied to `text/event-stream` responses.
//!
//! Each output-phase policy of the chain (the detector policies whose `direction` includes
//! output, `quality-scorer`, `agent-firewall`) declares a `stream_mode`:
//!
//! - `pass-through`: the policy does not look at the stream;
//! - `window` (default): content is scanned as it arrives and released once it is more than
//!   `window_chars` characters (default [`DEFAULT_WINDOW_CHARS`]) behind the newest byte, no
//!   finding straddles the release point and no placeholder (`<EMAIL_1>`) is cut by it;
//! - `hold`: nothing is released before the whole response is judged.
//!
//! Tool calls are assembled per index and released only once their name and complete
//! arguments passed the firewall and the rules. A block mid-stream ends the stream with a
//! `finish_reason: "content_filter"` chunk carrying the explanation, then `data: [DONE]`.
//! The guarantee: no byte is released before the verdict that covers it. See
//! `docs/streaming.md`.

mod body;
mod scanner;
mod sse;

use std::collections::HashMap;
use std::sync::Arc;

use exchange::{ExchangeHandle, ResponseBody};

use crate::pack::CompiledPack;
use crate::policies::CompiledPolicy;
use crate::rules::RulePhase;
use crate::state::PolicyState;

pub use scanner::StreamScanner;

/// Hold-back of `stream_mode: window` when `window_chars` is not given.
pub const DEFAULT_WINDOW_CHARS: u64 = 128;
/// Smallest accepted `window_chars`.
pub(crate) const MIN_WINDOW_CHARS: u64 = 16;
/// Largest accepted `window_chars`.
pub(crate) const MAX_WINDOW_CHARS: u64 = 65_536;
/// Longest placeholder token restoration may meet (`<CREDIT_CARD_12>` is 16).
pub(crate) const MAX_PLACEHOLDER_CHARS: usize = 64;

/// The least hold-back a detector's patterns need: the longest text a built-in pattern must
/// see before it can match (an e-mail needs its domain, a self-harm phrase its last word).
/// `window_chars` below it is raised to it.
pub fn min_hold_back(detector: detectors::DetectorKind) -> usize {
    use detectors::DetectorKind as K;
    match detector {
        K::Pii => 64,
        K::Secrets => 96,
        _ => 160,
    }
}

/// How an output-phase policy treats a streamed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// No output scanning of the stream.
    PassThrough,
    /// Scan with a hold-back window; release what no pattern can still reach.
    Window,
    /// Release only after the whole response is judged.
    Hold,
}

impl StreamMode {
    /// The pack spelling: `pass-through`, `window`, `hold`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::PassThrough => "pass-through",
            StreamMode::Window => "window",
            StreamMode::Hold => "hold",
        }
    }
}

/// `stream_mode` / `window_chars` as written under `policy.<name>` (validated).
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamConfig {
    per_policy: HashMap<String, (Option<StreamMode>, Option<u64>)>,
}

impl StreamConfig {
    pub(crate) fn set(&mut self, policy: &str, mode: Option<StreamMode>, window: Option<u64>) {
        self.per_policy.insert(policy.to_owned(), (mode, window));
    }

    fn get(&self, policy: &str) -> (StreamMode, Option<u64>) {
        match self.per_policy.get(policy) {
            Some((m, w)) => (m.unwrap_or(StreamMode::Window), *w),
            None => (StreamMode::Window, None),
        }
    }
}

/// The stream mode of one output-phase policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStreamMode {
    /// Policy name (as in the chain).
    pub policy: String,
    /// Its mode.
    pub mode: StreamMode,
    /// Its hold-back in characters (window mode of a detector policy; 0 otherwise).
    pub window_chars: usize,
}

/// What streaming does under a pack: derived once from the compiled pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Every output-phase policy of the chain, in chain order, with its mode.
    pub policies: Vec<PolicyStreamMode>,
    /// How content is released: `Hold` when any policy holds; `PassThrough` when nothing
    /// looks at the stream (events are forwarded byte for byte); `Window` otherwise.
    pub content: StreamMode,
    /// Hold-back of `Window` in characters: the largest window of the scanning policies.
    pub window_chars: usize,
    /// Whether placeholders (`<EMAIL_1>`) are restored in the output.
    pub restores: bool,
    /// Whether rules look at the response content (`phase: output`).
    pub content_rules: bool,
    /// Most bytes a stream may hold back before it is blocked (`limits.max_stream_hold_bytes`).
    pub max_hold_bytes: usize,
}

impl StreamPlan {
    /// The mode of policy `name` (`PassThrough` when it is not an output-phase policy).
    pub fn mode_of(&self, name: &str) -> StreamMode {
        self.policies
            .iter()
            .find(|p| p.policy == name)
            .map_or(StreamMode::PassThrough, |p| p.mode)
    }

    /// Whether policy `name` is an output-phase policy that scans the stream.
    pub(crate) fn scans(&self, name: &str) -> bool {
        self.policies
            .iter()
            .any(|p| p.policy == name && p.mode != StreamMode::PassThrough)
    }
}

impl CompiledPack {
    /// The stream modes of this pack's output-phase policies and what follows from them.
    pub fn stream_plan(&self) -> StreamPlan {
        let mut policies = Vec::new();
        let mut restores = false;
        for (name, pol) in self.chain().iter().zip(self.policies()) {
            let (mode, window) = self.stream.get(name);
            let window = usize::try_from(window.unwrap_or(DEFAULT_WINDOW_CHARS)).unwrap_or(0);
            match pol {
                CompiledPolicy::Detector(d) => {
                    if d.restore && d.direction.input && mode != StreamMode::PassThrough {
                        restores = true;
                    }
                    if d.direction.output {
                        policies.push(PolicyStreamMode {
                            policy: name.clone(),
                            mode,
                            window_chars: if mode == StreamMode::Window {
                                window.max(min_hold_back(d.detector))
                            } else {
                                0
                            },
                        });
                    }
                }
                CompiledPolicy::Quality(_) | CompiledPolicy::Firewall(_) => {
                    policies.push(PolicyStreamMode {
                        policy: name.clone(),
                        mode,
                        window_chars: 0,
                    })
                }
                _ => {}
            }
        }
        let restores = restores && self.restores();
        let content_rules = self.rules().iter().any(|r| r.phase == RulePhase::Output);
        let tool_rules = self.rules().iter().any(|r| r.phase != RulePhase::Input)
            || self.settings.default_decision != exchange::Decision::Allow;
        let active: Vec<&PolicyStreamMode> = policies
            .iter()
            .filter(|p| p.mode != StreamMode::PassThrough)
            .collect();
        let mut window_chars = active.iter().map(|p| p.window_chars).max().unwrap_or(0);
        if content_rules && window_chars == 0 {
            window_chars = usize::try_from(DEFAULT_WINDOW_CHARS).unwrap_or(0);
        }
        let content = if active.iter().any(|p| p.mode == StreamMode::Hold) {
            StreamMode::Hold
        } else if active.is_empty() && !restores && !content_rules && !tool_rules {
            StreamMode::PassThrough
        } else {
            StreamMode::Window
        };
        StreamPlan {
            policies,
            content,
            window_chars,
            restores,
            content_rules,
            max_hold_bytes: self.settings.limits.max_stream_hold_bytes,
        }
    }
}

/// Whether `res` is an SSE stream.
pub(crate) fn is_event_stream(res: &http::Response<ResponseBody>) -> bool {
    res.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Wraps an SSE response so that its body is released under the pack's stream modes.
pub(crate) fn scan_stream(
    res: http::Response<ResponseBody>,
    handle: ExchangeHandle,
    pack: Arc<CompiledPack>,
    state: PolicyState,
) -> http::Response<ResponseBody> {
    let (mut parts, inner) = res.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let scanner = StreamScanner::new(pack, state, handle);
    let body = body::ScannedBody::new(inner, scanner);
    http::Response::from_parts(parts, http_body_util::BodyExt::boxed_unsync(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(policy: &str) -> Result<StreamPlan, String> {
        let yaml = format!(
            "pack: {{name: s, version: \"1\"}}\npolicies:\n  chain: [pii-detector, quality-scorer]\npolicy:\n  pii-detector: {policy}\n"
        );
        CompiledPack::from_yaml(&yaml, "s.yaml")
            .map(|p| p.stream_plan())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn modes_default_to_window_and_hold_wins() {
        let p = plan("{action: redact}").unwrap();
        assert_eq!(p.content, StreamMode::Window);
        assert_eq!(p.window_chars, 128);
        assert_eq!(p.mode_of("quality-scorer"), StreamMode::Window);
        let p = plan("{action: redact, stream_mode: hold}").unwrap();
        assert_eq!(p.content, StreamMode::Hold);
        let p = plan("{action: redact, stream_mode: window, window_chars: 16}").unwrap();
        assert_eq!(p.window_chars, 64, "raised to the PII hold-back");
        assert_eq!(p.max_hold_bytes, 1024 * 1024);
    }

    #[test]
    fn bad_stream_keys_are_refused_with_their_position() {
        assert_eq!(
            plan("{action: redact, stream_mode: buffer}").unwrap_err(),
            "s.yaml:5:47: policy.pii-detector.stream_mode: unknown value `buffer` (expected one of: pass-through, window, hold)"
        );
        let e = plan("{action: redact, stream_mode: hold, window_chars: 64}").unwrap_err();
        assert!(
            e.contains(
                "policy.pii-detector.window_chars: `window_chars` needs `stream_mode: window`"
            ),
            "{e}"
        );
        let e = plan("{action: redact, window_chars: 3}").unwrap_err();
        assert!(e.contains("must be between 16 and 65536, found 3"), "{e}");
    }
}
