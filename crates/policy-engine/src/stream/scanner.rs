//! The stream scanner: a synchronous state machine fed with the upstream's SSE bytes,
//! answering with the bytes that may be released to the client.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use detectors::redact::{PlaceholderMap, Strategy, redact, resolve_overlaps};
use detectors::{DetectorKind, Finding, ScanContext, Surface};
use exchange::{
    ChatChunk, ChatResponse, Choice, ChunkChoice, Content, Decision, Delta, Exchange,
    ExchangeHandle, FunctionCall, FunctionCallDelta, Message, Outcome, Phase, Role, ToolCall,
    ToolCallDelta, ToolCallRecord, Verdict,
};
use sha2::{Digest, Sha256};

use super::sse::{Event, SseParser};
use super::{MAX_PLACEHOLDER_CHARS, StreamMode, StreamPlan};
use crate::pack::CompiledPack;
use crate::policies::{CompiledPolicy, DetectorPolicy};
use crate::state::PolicyState;

/// Policy name of the verdict that blocks a stream holding more than the pack allows.
const HOLD_LIMIT_POLICY: &str = "stream-hold-limit";
/// Policy name of the verdict that blocks a stream the gateway cannot read.
const STREAM_POLICY: &str = "stream";

/// One tool call being assembled.
#[derive(Debug, Default)]
struct CallState {
    index: u32,
    id: Option<String>,
    kind: Option<String>,
    name: String,
    args: String,
    complete: bool,
    judged: bool,
}

/// One choice of the response being assembled.
#[derive(Debug, Default)]
struct ChoiceState {
    /// Upstream content so far.
    text: String,
    /// Whether upstream sent a `content` field at all.
    has_content: bool,
    /// Byte offset in `text` up to which content was released.
    released: usize,
    /// Content bytes released to the client (after redaction).
    released_out: usize,
    calls: Vec<CallState>,
    released_calls: u32,
    notes: Vec<String>,
    finish: Option<String>,
    /// Byte offset in `text` where the last content scan started (see [`scan_start`]).
    scan_lo: usize,
    /// Findings of the last content scan (offsets into `text`).
    last_scan: Vec<Finding>,
    /// Prompt-injection findings that ended before the scan start: injection scores combine
    /// over the whole answer, so they are kept when the scan moves past them.
    settled: Vec<Finding>,
}

/// A block decided while streaming: the verdicts that decided it.
struct Block(Vec<Verdict>);

/// Scans an OpenAI chat-completions SSE stream under a pack's stream modes and releases
/// only what the verdicts covering it allow (see the module docs and `docs/streaming.md`).
///
/// Feed the upstream body with [`StreamScanner::push`], end it with [`StreamScanner::end`];
/// each returns the bytes to send to the client now. The scanner records its statistics,
/// verdicts and outcome in the exchange behind `handle` as it goes.
pub struct StreamScanner {
    pack: Arc<CompiledPack>,
    state: PolicyState,
    handle: ExchangeHandle,
    plan: StreamPlan,
    parser: SseParser,
    scratch: Exchange,
    base_verdicts: usize,
    restore_map: Option<PlaceholderMap>,
    map_r: PlaceholderMap,
    map_o: PlaceholderMap,
    choices: BTreeMap<u32, ChoiceState>,
    meta: Option<ChatChunk>,
    usage: Option<Bytes>,
    out: BytesMut,
    chunks: u64,
    released: u64,
    released_before_verdict: u64,
    saw_done: bool,
    finalized: bool,
    finished: bool,
    scan_completed: bool,
    content_scan: bool,
}

fn combined(findings: &[&Finding]) -> f32 {
    let mut keep = 1.0f32;
    for f in findings {
        keep *= 1.0 - f.score.clamp(0.0, 1.0);
    }
    (1.0 - keep).clamp(0.0, 1.0)
}

/// The findings policy `pol` acts on (same rule as the non-streamed evaluation).
fn hits<'f>(pol: &DetectorPolicy, findings: &'f [Finding]) -> Vec<&'f Finding> {
    let admitted: Vec<&Finding> = findings.iter().filter(|f| pol.admits(f)).collect();
    if pol.detector == DetectorKind::Injection
        && (admitted.is_empty() || combined(&admitted) < pol.threshold)
    {
        return Vec::new();
    }
    admitted
}

/// Bytes of already released content that each content scan re-reads before the release
/// point: the context a PII rule reads before its match (48 bytes) plus the longest
/// ordinary value. A match longer than this that emerges only after its start was released
/// (a long injection phrase) is no longer seen mid-stream; the final verdict over the whole
/// answer still judges it.
pub(crate) const SCAN_LOOKBACK: usize = 256;
/// How far [`scan_start`] looks back for whitespace to start the scan on a word boundary.
const SCAN_ALIGN: usize = 64;

/// Where the content scan of a step starts: `SCAN_LOOKBACK` bytes before `from` (the
/// release point), moved back to just after a whitespace character when one is near, so
/// that a scan never starts inside a word (a `\b` at the scan start means what it means in
/// the whole text). Never before `floor` (the previous scan start), so it only moves forward.
fn scan_start(text: &str, from: usize, floor: usize) -> usize {
    let target = from.saturating_sub(SCAN_LOOKBACK);
    if target <= floor {
        return floor;
    }
    let bytes = text.as_bytes();
    let lo = target.saturating_sub(SCAN_ALIGN).max(floor);
    let aligned = (lo..target)
        .rev()
        .find(|&i| bytes[i].is_ascii_whitespace())
        .map_or(target, |i| i + 1);
    let mut at = aligned;
    while at > floor && !text.is_char_boundary(at) {
        at -= 1;
    }
    at.max(floor)
}

/// Byte index of the character `n` characters before the end of `text` (0 when shorter).
fn chars_back(text: &str, n: usize) -> usize {
    if n == 0 {
        return text.len();
    }
    text.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i)
}

fn sse(json: &[u8], out: &mut BytesMut) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

impl StreamScanner {
    /// A scanner for one response of the exchange behind `handle`.
    pub fn new(pack: Arc<CompiledPack>, state: PolicyState, handle: ExchangeHandle) -> Self {
        let plan = pack.stream_plan();
        let scratch = handle.lock().clone();
        let restore_map = if plan.restores {
            state.restorable_map(&crate::eval::conversation_key(&scratch))
        } else {
            None
        };
        let content_scan = plan.content_rules
            || pack.chain().iter().zip(pack.policies()).any(|(n, p)| {
                matches!(p, CompiledPolicy::Detector(d) if d.direction.output
                    && plan.scans(n)
                    && matches!(d.action, Decision::Block | Decision::Redact))
            });
        let base_verdicts = scratch.verdicts.len();
        let s = StreamScanner {
            pack,
            state,
            handle,
            plan,
            parser: SseParser::default(),
            scratch,
            base_verdicts,
            restore_map,
            map_r: PlaceholderMap::new(),
            map_o: PlaceholderMap::new(),
            choices: BTreeMap::new(),
            meta: None,
            usage: None,
            out: BytesMut::new(),
            chunks: 0,
            released: 0,
            released_before_verdict: 0,
            saw_done: false,
            finalized: false,
            finished: false,
            scan_completed: false,
            content_scan,
        };
        s.sync_stats();
        s
    }

    /// The plan the scanner follows.
    pub fn plan(&self) -> &StreamPlan {
        &self.plan
    }

    /// Whether the stream is over for the client (ended, or blocked): stop reading upstream.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Feeds upstream body bytes; returns what may be released now.
    pub fn push(&mut self, bytes: &[u8]) -> Bytes {
        if !self.finished {
            for ev in self.parser.push(bytes) {
                if self.finished {
                    break;
                }
                self.on_event(ev);
            }
            self.sync_stats();
        }
        self.out.split().freeze()
    }

    /// The upstream body ended; returns the rest to release.
    pub fn end(&mut self) -> Bytes {
        if !self.finished {
            if let Some(ev) = self.parser.finish() {
                self.on_event(ev);
            }
            if !self.finished {
                self.finalize();
                self.finished = true;
            }
            self.sync_stats();
        }
        self.out.split().freeze()
    }

    /// The upstream body failed: nothing more is released; the exchange records an
    /// incomplete scan.
    pub fn fail(&mut self) {
        self.finished = true;
        self.sync_stats();
    }

    fn sync_stats(&self) {
        let mut ex = self.handle.lock();
        let s = ex.stream.get_or_insert_with(Default::default);
        s.chunks_received = self.chunks;
        s.bytes_released = self.released;
        s.bytes_released_before_verdict = self.released_before_verdict;
        s.output_scan_completed = self.scan_completed;
        s.completed = self.saw_done;
    }

    fn count_release(&mut self, n: usize) {
        self.released += n as u64;
        if !self.finalized {
            self.released_before_verdict += n as u64;
        }
    }

    fn on_event(&mut self, ev: Event) {
        if !ev.has_data {
            return;
        }
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.saw_done = true;
            if !self.finalized {
                self.finalize();
            }
            if !self.finished {
                self.out.extend_from_slice(b"data: [DONE]\n\n");
                self.finished = true;
            }
            return;
        }
        self.chunks += 1;
        if self.plan.content == StreamMode::PassThrough {
            if let Ok(chunk) = serde_json::from_str::<ChatChunk>(data) {
                let n: usize = chunk
                    .choices
                    .iter()
                    .map(|c| {
                        c.delta.content.as_deref().map_or(0, str::len)
                            + c.delta
                                .tool_calls
                                .as_deref()
                                .unwrap_or(&[])
                                .iter()
                                .map(|t| {
                                    t.function
                                        .as_ref()
                                        .and_then(|f| f.arguments.as_deref())
                                        .map_or(0, str::len)
                                })
                                .sum::<usize>()
                    })
                    .sum();
                self.count_release(n);
            }
            self.out.extend_from_slice(&ev.raw);
            return;
        }
        let chunk = match serde_json::from_str::<ChatChunk>(data) {
            Ok(c) => c,
            Err(_) => {
                let is_error = serde_json::from_str::<serde_json::Value>(data)
                    .ok()
                    .is_some_and(|v| v.get("error").is_some());
                if is_error {
                    // An upstream error event carries no model output: pass it on.
                    self.out.extend_from_slice(&ev.raw);
                } else {
                    self.block(
                        vec![Verdict::new(
                            STREAM_POLICY,
                            Phase::Output,
                            Decision::Block,
                            "upstream sent an event that is not a chat.completion.chunk",
                        )],
                        false,
                    );
                }
                return;
            }
        };
        if let Err(Block(v)) = self.on_chunk(chunk, &ev.raw) {
            self.block(v, false);
        }
    }

    fn on_chunk(&mut self, chunk: ChatChunk, raw: &Bytes) -> Result<(), Block> {
        let mut template = chunk.clone();
        template.choices = Vec::new();
        template.usage = None;
        self.meta = Some(template.clone());
        if let Some(u) = chunk.usage.clone() {
            let usage = ChatChunk {
                usage: Some(u),
                ..template.clone()
            };
            let bytes = serde_json::to_vec(&usage).unwrap_or_default();
            let mut b = BytesMut::new();
            sse(&bytes, &mut b);
            if self.finalized && chunk.choices.is_empty() {
                self.out.extend_from_slice(raw);
                return Ok(());
            }
            self.usage = Some(b.freeze());
        }
        if self.finalized {
            return Ok(());
        }
        let hold = self.plan.content == StreamMode::Hold;
        let mut out_choices = Vec::new();
        let mut verbatim = chunk.usage.is_none();
        for cc in &chunk.choices {
            let st = self.choices.entry(cc.index).or_default();
            if let Some(c) = &cc.delta.content {
                st.text.push_str(c);
                st.has_content = true;
            }
            for tc in cc.delta.tool_calls.as_deref().unwrap_or(&[]) {
                if !st.calls.iter().any(|c| c.index == tc.index) {
                    for c in &mut st.calls {
                        c.complete = true;
                    }
                    st.calls.push(CallState {
                        index: tc.index,
                        ..CallState::default()
                    });
                }
                if let Some(call) = st.calls.iter_mut().find(|c| c.index == tc.index) {
                    if tc.id.is_some() {
                        call.id.clone_from(&tc.id);
                    }
                    if tc.kind.is_some() {
                        call.kind.clone_from(&tc.kind);
                    }
                    if let Some(f) = &tc.function {
                        if let Some(n) = &f.name {
                            call.name.push_str(n);
                        }
                        if let Some(a) = &f.arguments {
                            call.args.push_str(a);
                        }
                    }
                }
            }
            if cc.finish_reason.is_some() {
                st.finish.clone_from(&cc.finish_reason);
                for c in &mut st.calls {
                    c.complete = true;
                }
            }
            let was_empty = st.text.is_empty();
            let content = if hold {
                String::new()
            } else {
                self.release_content(cc.index, false)?
            };
            let calls = if hold {
                Vec::new()
            } else {
                self.release_calls(cc.index)?
            };
            let upstream_content = cc.delta.content.as_deref();
            let content_out = if !content.is_empty() {
                Some(content)
            } else if upstream_content == Some("") && was_empty {
                Some(String::new())
            } else {
                None
            };
            if content_out.as_deref() != upstream_content
                || cc.delta.tool_calls.is_some()
                || cc.finish_reason.is_some()
            {
                verbatim = false;
            }
            let delta = Delta {
                role: cc.delta.role,
                content: content_out,
                tool_calls: (!calls.is_empty()).then_some(calls),
                extra: cc.delta.extra.clone(),
            };
            if delta != Delta::default() || !cc.extra.is_empty() {
                out_choices.push(ChunkChoice {
                    index: cc.index,
                    delta,
                    finish_reason: None,
                    extra: cc.extra.clone(),
                });
            }
        }
        self.check_hold_limit()?;
        if verbatim && out_choices.len() == chunk.choices.len() && !chunk.choices.is_empty() {
            self.out.extend_from_slice(raw);
        } else if !out_choices.is_empty() {
            let c = ChatChunk {
                choices: out_choices,
                ..template
            };
            sse(&serde_json::to_vec(&c).unwrap_or_default(), &mut self.out);
        }
        if !self.choices.is_empty() && self.choices.values().all(|c| c.finish.is_some()) {
            self.finalize();
        }
        Ok(())
    }

    fn check_hold_limit(&self) -> Result<(), Block> {
        let held: usize = self
            .choices
            .values()
            .map(|c| {
                c.text.len() - c.released
                    + c.calls
                        .iter()
                        .filter(|k| !k.judged)
                        .map(|k| k.args.len() + k.name.len())
                        .sum::<usize>()
            })
            .sum();
        if held > self.plan.max_hold_bytes {
            return Err(Block(vec![Verdict::new(
                HOLD_LIMIT_POLICY,
                Phase::Output,
                Decision::Block,
                format!(
                    "the stream holds more than limits.max_stream_hold_bytes ({}) bytes awaiting a verdict",
                    self.plan.max_hold_bytes
                ),
            )]));
        }
        Ok(())
    }

    /// Evaluates the output phase on `resp`; returns the new verdicts and the edited response.
    fn evaluate(&mut self, mut resp: ChatResponse) -> (Vec<Verdict>, ChatResponse) {
        self.pack
            .evaluate_output(&mut self.scratch, &mut resp, &self.state);
        let v = self.scratch.verdicts.split_off(self.base_verdicts);
        (v, resp)
    }

    /// Whether verdict `v` applies to the stream (`complete`: the whole response was seen).
    fn applies(&self, v: &Verdict, complete: bool) -> bool {
        if v.rule.is_some() || v.policy == "default_decision" {
            return true;
        }
        let quality = self
            .pack
            .chain()
            .iter()
            .zip(self.pack.policies())
            .any(|(n, p)| *n == v.policy && matches!(p, CompiledPolicy::Quality(_)));
        self.plan.scans(&v.policy) && (complete || !quality)
    }

    fn snapshot(&self, index: u32, message: Message, finish: Option<&str>) -> ChatResponse {
        let meta = self.meta.clone();
        ChatResponse {
            id: meta.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
            object: "chat.completion".to_owned(),
            created: meta.as_ref().map_or(0, |m| m.created),
            model: meta.as_ref().map(|m| m.model.clone()).unwrap_or_default(),
            choices: vec![Choice {
                index,
                message,
                finish_reason: finish.map(str::to_owned),
                extra: Default::default(),
            }],
            usage: None,
            extra: Default::default(),
        }
    }

    /// Releases what the window allows of choice `index`'s content (all of it when `last`).
    fn release_content(&mut self, index: u32, last: bool) -> Result<String, Block> {
        let window = self.plan.window_chars;
        let Some(st) = self.choices.get(&index) else {
            return Ok(String::new());
        };
        let len = st.text.len();
        let from = st.released;
        let mut r = if last {
            len
        } else {
            chars_back(&st.text, window)
        };
        if r <= from {
            return Ok(String::new());
        }
        let findings = if self.content_scan {
            // Only a bounded tail is scanned: what is not released yet, plus
            // `SCAN_LOOKBACK` bytes before it (so each step costs O(window), not O(answer)).
            let lo = scan_start(&st.text, from, st.scan_lo);
            let mut tail = self.pack.scanner().scan(
                &st.text[lo..],
                &ScanContext {
                    surface: Surface::AssistantOutput,
                    detectors: self.pack.output_mask(),
                },
            );
            for f in &mut tail {
                f.start += lo;
                f.end += lo;
            }
            let Some(st) = self.choices.get_mut(&index) else {
                return Ok(String::new());
            };
            let previous = std::mem::replace(&mut st.last_scan, tail.clone());
            st.settled.extend(
                previous
                    .into_iter()
                    .filter(|f| f.end <= lo && f.detector == DetectorKind::Injection),
            );
            st.scan_lo = lo;
            let mut all = st.settled.clone();
            all.extend(tail);
            all
        } else {
            Vec::new()
        };
        let Some(st) = self.choices.get(&index) else {
            return Ok(String::new());
        };
        if !last {
            loop {
                let mut moved = false;
                for f in &findings {
                    if f.start < r && f.end > r && f.start >= from {
                        r = f.start;
                        moved = true;
                    }
                }
                if self.plan.restores {
                    let lo = r.saturating_sub(MAX_PLACEHOLDER_CHARS);
                    let lo = (lo..=r).find(|&i| st.text.is_char_boundary(i)).unwrap_or(r);
                    if let Some(lt) = st.text[lo..r].rfind('<') {
                        if !st.text[lo + lt..r].contains('>') && lo + lt < r {
                            r = lo + lt;
                            moved = true;
                        }
                    }
                }
                if !moved || r <= from {
                    break;
                }
            }
            if r <= from {
                return Ok(String::new());
            }
        }
        // Decisions covering the bytes about to go out.
        let mut edits: Vec<(Finding, Strategy, bool)> = Vec::new();
        let mut blocking = false;
        for (name, pol) in self.pack.chain().iter().zip(self.pack.policies()) {
            let CompiledPolicy::Detector(d) = pol else {
                continue;
            };
            if !d.direction.output || !self.plan.scans(name) {
                continue;
            }
            let h = hits(d, &findings);
            match d.action {
                Decision::Block if !last && h.iter().any(|f| f.start < r) => {
                    blocking = true;
                }
                Decision::Redact => {
                    for f in h {
                        edits.push((f.clone(), d.strategy_for(f.kind), d.restore));
                    }
                }
                _ => {}
            }
        }
        if (blocking || self.plan.content_rules) && !last {
            let text = st.text.clone();
            let snap = self.snapshot(index, Message::text_message(Role::Assistant, text), None);
            let (verdicts, _) = self.evaluate(snap);
            let counted: Vec<Verdict> = verdicts
                .into_iter()
                .filter(|v| v.decision == Decision::Block && self.applies(v, false))
                .filter(|v| blocking || v.rule.is_some())
                .collect();
            if !counted.is_empty() {
                return Err(Block(counted));
            }
        }
        let Some(st) = self.choices.get_mut(&index) else {
            return Ok(String::new());
        };
        let found: Vec<Finding> = edits.iter().map(|e| e.0.clone()).collect();
        let chosen = resolve_overlaps(&st.text, &found);
        let pass = |s: &str| match &self.restore_map {
            Some(m) => m.restore(s),
            None => s.to_owned(),
        };
        let mut out = String::new();
        let mut at = from;
        for (s, e, i) in chosen {
            if e <= from || s >= r {
                continue;
            }
            let s = s.max(from);
            let (f, strategy, restorable) = &edits[i];
            out.push_str(&pass(&st.text[at..s]));
            let mut shifted = f.clone();
            shifted.start = 0;
            shifted.end = e - s;
            let map = if *restorable {
                &mut self.map_r
            } else {
                &mut self.map_o
            };
            out.push_str(&redact(&st.text[s..e], &[shifted], |_| *strategy, map));
            at = e;
        }
        if at < r {
            out.push_str(&pass(&st.text[at..r]));
        }
        st.released = r.max(at);
        st.released_out += out.len();
        let n = out.len();
        self.count_release(n);
        Ok(out)
    }

    /// Judges the complete, unjudged tool calls of choice `index`; returns those released.
    fn release_calls(&mut self, index: u32) -> Result<Vec<ToolCallDelta>, Block> {
        let mut released = Vec::new();
        while let Some(call) = self
            .choices
            .get_mut(&index)
            .and_then(|st| st.calls.iter_mut().find(|c| c.complete && !c.judged))
        {
            call.judged = true;
            let tool = ToolCall {
                id: call.id.clone().unwrap_or_default(),
                kind: call.kind.clone().unwrap_or_else(|| "function".to_owned()),
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: call.args.clone(),
                },
            };
            let message = Message {
                role: Role::Assistant,
                content: None,
                name: None,
                tool_calls: Some(vec![tool.clone()]),
                tool_call_id: None,
                extra: Default::default(),
            };
            let snap = self.snapshot(index, message, Some("tool_calls"));
            let (verdicts, resp) = self.evaluate(snap);
            let blocks: Vec<Verdict> = verdicts
                .iter()
                .filter(|v| v.decision == Decision::Block && self.applies(v, false))
                .cloned()
                .collect();
            if !blocks.is_empty() {
                return Err(Block(blocks));
            }
            let kept = resp
                .choices
                .first()
                .and_then(|c| c.message.tool_calls.as_ref())
                .and_then(|c| c.first())
                .cloned();
            let firewall_scans = self
                .pack
                .chain()
                .iter()
                .zip(self.pack.policies())
                .any(|(n, p)| matches!(p, CompiledPolicy::Firewall(_)) && self.plan.scans(n));
            let Some(st) = self.choices.get_mut(&index) else {
                break;
            };
            let out = match kept {
                Some(k) => k,
                None if !firewall_scans => tool,
                None => {
                    st.notes.push(format!(
                        "[palisade] removed a call to tool `{}`: not allowed for this agent.",
                        tool.function.name
                    ));
                    continue;
                }
            };
            let at = st.released_calls;
            st.released_calls += 1;
            let n = out.function.arguments.len();
            released.push(ToolCallDelta {
                index: at,
                id: Some(out.id),
                kind: Some(out.kind),
                function: Some(FunctionCallDelta {
                    name: Some(out.function.name),
                    arguments: Some(out.function.arguments),
                }),
            });
            self.count_release(n);
        }
        Ok(released)
    }

    /// The response as upstream sent it, assembled.
    fn assembled(&self) -> ChatResponse {
        let mut resp = self.snapshot(0, Message::text_message(Role::Assistant, ""), None);
        resp.choices = self
            .choices
            .iter()
            .map(|(&index, st)| {
                let calls: Vec<ToolCall> = st
                    .calls
                    .iter()
                    .map(|c| ToolCall {
                        id: c.id.clone().unwrap_or_default(),
                        kind: c.kind.clone().unwrap_or_else(|| "function".to_owned()),
                        function: FunctionCall {
                            name: c.name.clone(),
                            arguments: c.args.clone(),
                        },
                    })
                    .collect();
                Choice {
                    index,
                    message: Message {
                        role: Role::Assistant,
                        content: (st.has_content || calls.is_empty())
                            .then(|| Content::Text(st.text.clone())),
                        name: None,
                        tool_calls: (!calls.is_empty()).then_some(calls),
                        tool_call_id: None,
                        extra: Default::default(),
                    },
                    finish_reason: st.finish.clone(),
                    extra: Default::default(),
                }
            })
            .collect();
        resp
    }

    fn pass_through_verdicts(&self) -> Vec<Verdict> {
        self.plan
            .policies
            .iter()
            .filter(|p| p.mode == StreamMode::PassThrough)
            .map(|p| {
                Verdict::new(
                    &p.policy,
                    Phase::Output,
                    Decision::Allow,
                    "stream_mode pass-through: the streamed output was not scanned",
                )
            })
            .collect()
    }

    fn record_modes(&self, ex: &mut Exchange) {
        for p in &self.plan.policies {
            let mode = match p.mode {
                StreamMode::Window => format!("window:{}", p.window_chars),
                m => m.as_str().to_owned(),
            };
            let before = match p.mode {
                StreamMode::Hold => 0,
                StreamMode::Window => self.released_before_verdict,
                StreamMode::PassThrough => self.released,
            };
            ex.metadata
                .insert(format!("stream.{}.mode", p.policy), mode);
            ex.metadata.insert(
                format!("stream.{}.bytes_released_before_verdict", p.policy),
                before.to_string(),
            );
        }
    }

    /// The whole response was seen: final verdict, then the held rest.
    fn finalize(&mut self) {
        if self.finalized {
            return;
        }
        if self.plan.content == StreamMode::PassThrough {
            self.finalized = true;
            let v = self.pass_through_verdicts();
            let mut ex = self.handle.lock();
            ex.verdicts.extend(v);
            self.record_modes(&mut ex);
            return;
        }
        let hold = self.plan.content == StreamMode::Hold;
        if !hold {
            let indexes: Vec<u32> = self.choices.keys().copied().collect();
            for i in &indexes {
                if let Some(st) = self.choices.get_mut(i) {
                    for c in &mut st.calls {
                        c.complete = true;
                    }
                }
            }
        }
        let (verdicts, resp) = self.evaluate(self.assembled());
        let mut counted: Vec<Verdict> = verdicts
            .into_iter()
            .filter(|v| self.applies(v, true))
            .collect();
        counted.extend(self.pass_through_verdicts());
        self.scan_completed = true;
        if counted.iter().any(|v| v.decision == Decision::Block) {
            self.block(counted, true);
            return;
        }
        self.finalized = true;
        let Some(template) = self.meta.clone() else {
            return;
        };
        let indexes: Vec<u32> = self.choices.keys().copied().collect();
        for (pos, i) in indexes.iter().enumerate() {
            let mut choices = Vec::new();
            if hold {
                let Some(c) = resp.choices.get(pos) else {
                    continue;
                };
                let text = c.message.text().into_owned();
                let calls: Vec<ToolCallDelta> = c
                    .message
                    .tool_calls
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .enumerate()
                    .map(|(k, t)| ToolCallDelta {
                        index: u32::try_from(k).unwrap_or(u32::MAX),
                        id: Some(t.id.clone()),
                        kind: Some(t.kind.clone()),
                        function: Some(FunctionCallDelta {
                            name: Some(t.function.name.clone()),
                            arguments: Some(t.function.arguments.clone()),
                        }),
                    })
                    .collect();
                let n = text.len()
                    + calls
                        .iter()
                        .map(|c| {
                            c.function
                                .as_ref()
                                .and_then(|f| f.arguments.as_deref())
                                .map_or(0, str::len)
                        })
                        .sum::<usize>();
                self.count_release(n);
                if !text.is_empty() || !calls.is_empty() {
                    choices.push(ChunkChoice {
                        index: *i,
                        delta: Delta {
                            content: (!text.is_empty()).then_some(text),
                            tool_calls: (!calls.is_empty()).then_some(calls),
                            ..Delta::default()
                        },
                        finish_reason: None,
                        extra: Default::default(),
                    });
                }
            } else {
                let mut text = self.release_content(*i, true).unwrap_or_default();
                let calls = self.release_calls(*i).unwrap_or_default();
                if let Some(st) = self.choices.get_mut(i) {
                    for note in st.notes.iter().rev() {
                        if st.released_out > 0 || !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(note);
                    }
                    st.released_out += text.len();
                }
                if !text.is_empty() || !calls.is_empty() {
                    choices.push(ChunkChoice {
                        index: *i,
                        delta: Delta {
                            content: (!text.is_empty()).then_some(text),
                            tool_calls: (!calls.is_empty()).then_some(calls),
                            ..Delta::default()
                        },
                        finish_reason: None,
                        extra: Default::default(),
                    });
                }
            }
            if !choices.is_empty() {
                let c = ChatChunk {
                    choices,
                    ..template.clone()
                };
                sse(&serde_json::to_vec(&c).unwrap_or_default(), &mut self.out);
            }
        }
        // Finish chunks, then the usage chunk.
        let finishes: Vec<ChunkChoice> = resp
            .choices
            .iter()
            .zip(&indexes)
            .filter_map(|(c, i)| {
                c.finish_reason.as_ref().map(|f| ChunkChoice {
                    index: *i,
                    delta: Delta::default(),
                    finish_reason: Some(f.clone()),
                    extra: Default::default(),
                })
            })
            .collect();
        if !finishes.is_empty() {
            let c = ChatChunk {
                choices: finishes,
                ..template
            };
            sse(&serde_json::to_vec(&c).unwrap_or_default(), &mut self.out);
        }
        if let Some(u) = self.usage.take() {
            self.out.extend_from_slice(&u);
        }
        let mut ex = self.handle.lock();
        ex.verdicts.extend(counted);
        ex.tool_calls = tool_records(&resp);
        if resp != self.assembled() {
            ex.metadata
                .insert("response_modified".to_owned(), "true".to_owned());
        }
        ex.response = Some(resp);
        self.record_modes(&mut ex);
    }

    /// Ends the stream with a `content_filter` chunk explaining the block, then `[DONE]`.
    fn block(&mut self, verdicts: Vec<Verdict>, complete: bool) {
        self.finalized = true;
        self.finished = true;
        self.scan_completed = complete;
        let message = {
            let mut ex = self.handle.lock();
            ex.verdicts.extend(verdicts);
            let (policy, message) = self.pack.block_message(&ex);
            ex.outcome = Outcome::Blocked {
                policy,
                status: 200,
            };
            ex.response = None;
            self.record_modes(&mut ex);
            message
        };
        let template = self.meta.clone().unwrap_or_else(|| ChatChunk {
            id: format!("chatcmpl-palisade-{}", self.scratch.id.simple()),
            object: "chat.completion.chunk".to_owned(),
            created: 0,
            model: self.scratch.request.model.clone(),
            choices: Vec::new(),
            usage: None,
            extra: Default::default(),
        });
        let mut indexes: Vec<u32> = self.choices.keys().copied().collect();
        if indexes.is_empty() {
            indexes.push(0);
        }
        let choices = indexes
            .iter()
            .map(|i| {
                let released = self.choices.get(i).is_some_and(|c| c.released_out > 0);
                ChunkChoice {
                    index: *i,
                    delta: Delta {
                        content: Some(format!(
                            "{}[palisade] {message}",
                            if released { "\n" } else { "" }
                        )),
                        ..Delta::default()
                    },
                    finish_reason: Some("content_filter".to_owned()),
                    extra: Default::default(),
                }
            })
            .collect();
        let c = ChatChunk {
            choices,
            ..template
        };
        sse(&serde_json::to_vec(&c).unwrap_or_default(), &mut self.out);
        self.out.extend_from_slice(b"data: [DONE]\n\n");
        self.sync_stats();
    }
}

fn tool_records(resp: &ChatResponse) -> Vec<ToolCallRecord> {
    resp.choices
        .iter()
        .flat_map(|c| c.message.tool_calls.as_deref().unwrap_or(&[]))
        .map(|c| ToolCallRecord {
            name: c.function.name.clone(),
            arguments_sha256: hex::encode(Sha256::digest(c.function.arguments.as_bytes())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_start_is_bounded_aligned_and_monotone() {
        let words = "word ".repeat(100);
        assert_eq!(scan_start(&words, 100, 0), 0, "short: from the start");
        assert_eq!(
            scan_start(&words, 400, 0),
            140,
            "just after the last blank before 400 - 256"
        );
        assert_eq!(scan_start(&words, 400, 200), 200, "never before the floor");
        let solid = "a".repeat(500);
        assert_eq!(scan_start(&solid, 400, 0), 144, "no blank near: 400 - 256");
        let euros = "€".repeat(200);
        assert_eq!(scan_start(&euros, 450, 0), 192, "on a char boundary");
    }
}
