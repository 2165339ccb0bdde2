//! Incremental SSE framing: body frames in, complete events' `data` payloads out. An event
//! split across frames waits for the rest; `\n`, `\r\n` and `\r` line ends are accepted.

use bytes::{Buf, BytesMut};

/// One complete SSE event: its `data` lines joined with `\n` (empty when it had none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The joined `data` payload.
    pub data: String,
    /// Whether the event had at least one `data` line.
    pub has_data: bool,
    /// The raw bytes of the event, blank line included.
    pub raw: bytes::Bytes,
}

/// Splits a byte stream into SSE events.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: BytesMut,
}

/// End of the first event in `buf` (index just after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_empty = true;
    while i < buf.len() {
        let b = buf[i];
        if b == b'\n' || b == b'\r' {
            let mut next = i + 1;
            if b == b'\r' {
                if next >= buf.len() {
                    // A lone `\r` at the end may be the first half of `\r\n`.
                    return None;
                }
                if buf[next] == b'\n' {
                    next += 1;
                }
            }
            if line_empty {
                return Some(next);
            }
            line_empty = true;
            i = next;
        } else {
            line_empty = false;
            i += 1;
        }
    }
    None
}

fn parse_event(raw: &[u8]) -> (String, bool) {
    let text = String::from_utf8_lossy(raw);
    let mut data = String::new();
    let mut has_data = false;
    for line in text.split(['\n', '\r']) {
        let Some(rest) = line.strip_prefix("data") else {
            continue;
        };
        let value = match rest.strip_prefix(':') {
            Some(v) => v.strip_prefix(' ').unwrap_or(v),
            None if rest.is_empty() => "",
            None => continue,
        };
        if has_data {
            data.push('\n');
        }
        data.push_str(value);
        has_data = true;
    }
    (data, has_data)
}

impl SseParser {
    /// Adds `bytes` and returns the events completed by them.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let raw = self.buf.split_to(end).freeze();
            let (data, has_data) = parse_event(&raw);
            out.push(Event {
                data,
                has_data,
                raw,
            });
        }
        out
    }

    /// The unterminated tail at the end of the stream, as a last event (if it holds data).
    pub(crate) fn finish(&mut self) -> Option<Event> {
        if self.buf.is_empty() {
            return None;
        }
        let raw = self.buf.split_to(self.buf.len()).freeze();
        self.buf.advance(0);
        let (data, has_data) = parse_event(&raw);
        has_data.then_some(Event {
            data,
            has_data,
            raw,
        })
    }

    /// Bytes waiting for the end of their event.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datas(parser: &mut SseParser, parts: &[&str]) -> Vec<String> {
        parts
            .iter()
            .flat_map(|p| parser.push(p.as_bytes()))
            .map(|e| e.data)
            .collect()
    }

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let whole = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
        for cut in 0..=whole.len() {
            let mut p = SseParser::default();
            let got = datas(&mut p, &[&whole[..cut], &whole[cut..]]);
            assert_eq!(got, ["{\"a\":1}", "[DONE]"], "cut at {cut}");
            assert_eq!(p.pending(), 0);
        }
    }

    #[test]
    fn crlf_multiline_and_comments() {
        let mut p = SseParser::default();
        let got = datas(&mut p, &[": keepalive\r\n\r\ndata: a\r\ndata:b\r\n\r\n"]);
        assert_eq!(got, ["", "a\nb"]);
    }

    #[test]
    fn unterminated_tail_is_returned_at_finish() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: x").is_empty());
        assert_eq!(p.finish().map(|e| e.data).as_deref(), Some("x"));
    }
}
