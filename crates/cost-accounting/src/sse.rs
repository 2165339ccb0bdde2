//! Incremental scanner for an OpenAI chat-completions SSE stream: finds the usage chunk,
//! collects the streamed text (for estimates when no usage comes), and removes the
//! usage-only chunk when the client did not ask for it. Tolerates events split across
//! body chunks (only complete events are released; a partial tail waits for the rest).

use bytes::{Bytes, BytesMut};
use exchange::Usage;
use serde::Deserialize;

#[derive(Deserialize)]
struct ChunkLite {
    #[serde(default)]
    choices: Vec<ChoiceLite>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChoiceLite {
    #[serde(default)]
    delta: Option<DeltaLite>,
}

#[derive(Deserialize)]
struct DeltaLite {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallLite>>,
}

#[derive(Deserialize)]
struct ToolCallLite {
    #[serde(default)]
    function: Option<FunctionLite>,
}

#[derive(Deserialize)]
struct FunctionLite {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// What an event means to the scanner.
enum Verdict {
    Keep,
    Drop,
    Replace(Bytes),
}

/// The scanner's state for one stream.
#[derive(Debug, Default)]
pub(crate) struct SseScanner {
    buf: BytesMut,
    strip_usage: bool,
    /// The last non-null `usage` seen.
    pub(crate) usage: Option<Usage>,
    /// Streamed content and tool-call text, in order.
    pub(crate) text: String,
    /// `data: [DONE]` seen.
    pub(crate) done: bool,
}

/// End of the first event in `buf[from..]` (index after its blank line).
fn event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut line_start = from;
    while let Some(nl) = memchr(b'\n', &buf[line_start..]) {
        let end = line_start + nl;
        let line = &buf[line_start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Some(end + 1);
        }
        line_start = end + 1;
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

/// The `data:` payload of an event (lines joined with `\n`), if any.
fn data_of(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_owned()),
            }
        }
    }
    data
}

impl SseScanner {
    /// A scanner; `strip_usage` removes usage chunks from what the client receives.
    pub(crate) fn new(strip_usage: bool) -> Self {
        SseScanner {
            strip_usage,
            ..SseScanner::default()
        }
    }

    /// Feeds a body chunk; returns the bytes to release now (complete events only).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.buf.extend_from_slice(chunk);
        let mut events: Vec<(usize, usize, Verdict)> = Vec::new();
        let mut pos = 0;
        while let Some(end) = event_end(&self.buf, pos) {
            let verdict = self.inspect(pos, end);
            events.push((pos, end, verdict));
            pos = end;
        }
        if pos == 0 {
            return Bytes::new();
        }
        let complete = self.buf.split_to(pos).freeze();
        if events.iter().all(|(_, _, v)| matches!(v, Verdict::Keep)) {
            return complete;
        }
        let mut out = BytesMut::with_capacity(complete.len());
        for (start, end, verdict) in events {
            match verdict {
                Verdict::Keep => out.extend_from_slice(&complete[start..end]),
                Verdict::Drop => {}
                Verdict::Replace(b) => out.extend_from_slice(&b),
            }
        }
        out.freeze()
    }

    /// The end of the stream: releases (and inspects) whatever partial event is left.
    pub(crate) fn finish(&mut self) -> Bytes {
        if self.buf.is_empty() {
            return Bytes::new();
        }
        let len = self.buf.len();
        match self.inspect(0, len) {
            Verdict::Drop => {
                self.buf.clear();
                Bytes::new()
            }
            Verdict::Replace(b) => {
                self.buf.clear();
                b
            }
            Verdict::Keep => self.buf.split().freeze(),
        }
    }

    fn inspect(&mut self, start: usize, end: usize) -> Verdict {
        let Some(data) = data_of(&self.buf[start..end]) else {
            return Verdict::Keep;
        };
        if data.trim() == "[DONE]" {
            self.done = true;
            return Verdict::Keep;
        }
        let Ok(chunk) = serde_json::from_str::<ChunkLite>(&data) else {
            return Verdict::Keep;
        };
        for choice in &chunk.choices {
            let Some(delta) = &choice.delta else { continue };
            if let Some(c) = &delta.content {
                self.text.push_str(c);
            }
            for call in delta.tool_calls.iter().flatten() {
                if let Some(f) = &call.function {
                    if let Some(n) = &f.name {
                        self.text.push_str(n);
                    }
                    if let Some(a) = &f.arguments {
                        self.text.push_str(a);
                    }
                }
            }
        }
        let Some(usage) = chunk.usage else {
            return Verdict::Keep;
        };
        self.usage = Some(usage);
        if !self.strip_usage {
            return Verdict::Keep;
        }
        if chunk.choices.is_empty() {
            return Verdict::Drop;
        }
        // Usage riding on a content chunk: keep the chunk, drop the field.
        match serde_json::from_str::<serde_json::Value>(&data) {
            Ok(mut v) => {
                if let Some(obj) = v.as_object_mut() {
                    obj.remove("usage");
                }
                match serde_json::to_string(&v) {
                    Ok(s) => Verdict::Replace(Bytes::from(format!("data: {s}\n\n"))),
                    Err(_) => Verdict::Keep,
                }
            }
            Err(_) => Verdict::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run(strip: bool, split_every: usize) -> (String, SseScanner) {
        let mut s = SseScanner::new(strip);
        let mut out = Vec::new();
        for piece in STREAM.as_bytes().chunks(split_every) {
            out.extend_from_slice(&s.push(piece));
        }
        out.extend_from_slice(&s.finish());
        (String::from_utf8(out).unwrap(), s)
    }

    #[test]
    fn finds_usage_and_text_in_any_split() {
        for split in [1, 2, 3, 7, 13, 64, 1000] {
            let (out, s) = run(false, split);
            assert_eq!(out, STREAM, "split {split}");
            assert_eq!(s.usage.as_ref().map(|u| u.prompt_tokens), Some(5));
            assert_eq!(s.usage.as_ref().map(|u| u.completion_tokens), Some(2));
            assert_eq!(s.text, "Hello");
            assert!(s.done);
        }
    }

    #[test]
    fn strips_usage_chunk_when_client_did_not_ask() {
        for split in [1, 5, 1000] {
            let (out, s) = run(true, split);
            assert!(!out.contains("prompt_tokens"), "split {split}: {out}");
            assert!(out.ends_with("data: [DONE]\n\n"));
            assert_eq!(out.matches("data: ").count(), 3);
            assert_eq!(s.usage.as_ref().map(|u| u.total_tokens), Some(7));
        }
    }

    #[test]
    fn strips_usage_field_riding_on_a_content_chunk() {
        let mut s = SseScanner::new(true);
        let out = s.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\r\n\r\n");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
        );
        assert_eq!(s.usage.map(|u| u.total_tokens), Some(2));
    }
}
