//! A location index over a YAML document: the line and column of every key and value,
//! addressed by key path (`providers[0].model`, `policy.pii-detector.action`).
//!
//! Why a second parse: `serde_yaml` reports a position only for its own (first) error and
//! keeps none in `serde_yaml::Value`, so semantic errors found later (a bad regex, an
//! unknown policy name) would have no line. `yaml-rust2`'s marked event parser gives the
//! position of every event for the cost of one more pass over a small file; the typed
//! deserialization stays with `serde_yaml`, the index only answers "where is this key".

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: Option<Pos>,
    value: Option<Pos>,
    /// For mappings: where their first key is.
    first_key: Option<Pos>,
}

/// Positions of keys and values by path.
#[derive(Debug, Default)]
pub(crate) struct LocationIndex {
    entries: HashMap<String, Entry>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    entries: HashMap<String, Entry>,
    /// Depth of a complex (non-scalar) mapping key being skipped.
    skipping: usize,
}

fn pos(m: Marker) -> Pos {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// Path of the node about to be read as a value, or `None` when it is a mapping key.
    fn value_path(&mut self, ev_is_scalar_key: Option<&str>, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join_key(path, &k)),
                None => {
                    // This node is a key.
                    let k = ev_is_scalar_key.unwrap_or("?").to_owned();
                    let parent = self.entries.entry(path.clone()).or_default();
                    if parent.first_key.is_none() {
                        parent.first_key = Some(pos(mark));
                    }
                    let full = join_key(path, &k);
                    self.entries.entry(full).or_default().key = Some(pos(mark));
                    *key = Some(k);
                    None
                }
            },
        }
    }

    fn finish_value(&mut self) {
        if let Some(Frame::Seq { index, .. }) = self.stack.last_mut() {
            *index += 1;
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.skipping > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skipping += 1,
                Event::MappingEnd | Event::SequenceEnd => self.skipping -= 1,
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(s, ..) => {
                if let Some(p) = self.value_path(Some(&s), mark) {
                    self.entries.entry(p).or_default().value = Some(pos(mark));
                    self.finish_value();
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.value_path(None, mark) {
                    self.entries.entry(p).or_default().value = Some(pos(mark));
                    self.finish_value();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.value_path(None, mark) {
                    Some(p) => {
                        self.entries.entry(p.clone()).or_default().value = Some(pos(mark));
                        self.stack.push(if is_map {
                            Frame::Map { path: p, key: None }
                        } else {
                            Frame::Seq { path: p, index: 0 }
                        });
                    }
                    None => self.skipping = 1,
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.finish_value();
            }
            _ => {}
        }
    }
}

impl LocationIndex {
    /// Indexes `text`; a document that does not parse gives an empty index (the syntax
    /// error itself is reported by serde_yaml).
    pub(crate) fn build(text: &str) -> LocationIndex {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        LocationIndex { entries: b.entries }
    }

    fn find(&self, path: &str, prefer_key: bool) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.get(p) {
                let found = if prefer_key {
                    e.key.or(e.value)
                } else {
                    e.value.or(e.key)
                };
                if found.is_some() {
                    return found;
                }
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }

    /// Position of the key at `path` (or its value, or the nearest ancestor's).
    pub(crate) fn key(&self, path: &str) -> Pos {
        self.find(path, true).unwrap_or(Pos { line: 1, column: 1 })
    }

    /// Position of the first key of the mapping at `path` (or of its value).
    pub(crate) fn first_key(&self, path: &str) -> Pos {
        match self.entries.get(path).and_then(|e| e.first_key) {
            Some(p) => p,
            None => self.value(path),
        }
    }

    /// Position of the value at `path` (or its key, or the nearest ancestor's).
    pub(crate) fn value(&self, path: &str) -> Pos {
        self.find(path, false).unwrap_or(Pos { line: 1, column: 1 })
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
fn parent(path: &str) -> &str {
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    &path[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_values_and_sequence_items() {
        let text = "pack: {name: a}\nproviders:\n  - name: openai\n    model: [x, y]\nrules:\n  - name: r\n    condition:\n      tool_name: t\n";
        let idx = LocationIndex::build(text);
        assert_eq!(idx.key("pack.name"), Pos { line: 1, column: 8 });
        assert_eq!(
            idx.value("pack.name"),
            Pos {
                line: 1,
                column: 14
            }
        );
        assert_eq!(idx.key("providers[0].model"), Pos { line: 4, column: 5 });
        assert_eq!(
            idx.value("providers[0].model[1]"),
            Pos {
                line: 4,
                column: 16
            }
        );
        assert_eq!(
            idx.key("rules[0].condition.tool_name"),
            Pos { line: 8, column: 7 }
        );
        assert_eq!(
            idx.key("rules[0].condition.nope"),
            Pos { line: 7, column: 5 }
        );
    }
}
