//! Reading recorded events: the embedded SQLite store or a JSONL export, detected by
//! content, streamed in order with bounded memory.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use std::collections::VecDeque;

use audit_chain::{EventFilter, SqliteStore};

use super::error::ReplayError;

/// The kind of audit input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// The embedded store (`palisade.db`).
    Sqlite,
    /// A JSONL export (`palisade audit export`).
    Jsonl,
}

/// Where a record sits in the input, for error messages and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A row of the store.
    Seq(u64),
    /// A line of a JSONL file (from 1).
    Line(u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Seq(s) => write!(f, "event seq {s}"),
            Place::Line(l) => write!(f, "line {l}"),
        }
    }
}

/// The undecoded bytes of one event.
pub(crate) enum RawBody {
    /// Canonical event bytes from the store.
    Stored(Vec<u8>),
    /// One JSONL line; `complete` is false when the file ended without a newline.
    Line { bytes: Vec<u8>, complete: bool },
}

/// One record as read, before decoding (decoding happens on the workers).
pub(crate) struct RawRecord {
    /// Position in the input order (from 0).
    pub index: u64,
    /// Where it sits.
    pub place: Place,
    /// Hash of the conversation id: records of one conversation go to one worker.
    pub shard: u64,
    /// The bytes.
    pub body: RawBody,
}

/// Detects the input kind: a directory means `<dir>/palisade.db`; a file starting with the
/// SQLite header is a store; anything else is read as JSONL.
pub(crate) fn detect(path: &Path) -> Result<(PathBuf, InputKind), ReplayError> {
    let path = if path.is_dir() {
        audit_chain::db_path(path)
    } else {
        path.to_path_buf()
    };
    let mut f = File::open(&path).map_err(|source| ReplayError::Open {
        path: path.clone(),
        source,
    })?;
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(source) => return Err(ReplayError::Open { path, source }),
        }
    }
    let kind = if &head[..n] == b"SQLite format 3\0" {
        InputKind::Sqlite
    } else {
        InputKind::Jsonl
    };
    Ok((path, kind))
}

/// Store rows read per query.
const PAGE: usize = 1024;

fn shard_of(conversation: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    conversation.hash(&mut h);
    h.finish()
}

/// The conversation id of a canonical JSONL line, found without parsing the line (members
/// are in byte order and string values are escaped, so the first top-level
/// `"conversation":"` is the member). Only used to pick a worker.
fn conversation_bytes(line: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"conversation\":\"";
    let Some(start) = line.windows(KEY.len()).position(|w| w == KEY) else {
        return b"";
    };
    let rest = &line[start + KEY.len()..];
    let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
    &rest[..end]
}

/// The streaming reader.
pub(crate) enum Source {
    /// Pages of store rows (only the columns replay needs).
    Sqlite {
        path: PathBuf,
        store: Box<SqliteStore>,
        filter: EventFilter,
        /// The last sequence number read.
        after: u64,
        /// The store has no more rows.
        done: bool,
        /// Records read and not yet handed out.
        buf: VecDeque<RawRecord>,
        workflow: Option<String>,
        index: u64,
    },
    /// Lines of a JSONL file.
    Jsonl {
        reader: BufReader<File>,
        line: u64,
        index: u64,
        path: PathBuf,
    },
}

impl Source {
    /// Opens `path` (already detected as `kind`). `filter` applies to the store in SQL; a
    /// JSONL input is filtered after decoding.
    pub(crate) fn open(
        path: &Path,
        kind: InputKind,
        filter: EventFilter,
        workflow: Option<String>,
    ) -> Result<Source, ReplayError> {
        match kind {
            InputKind::Sqlite => {
                let store =
                    SqliteStore::open_read_only(path).map_err(|source| ReplayError::Store {
                        path: path.to_path_buf(),
                        after_seq: 0,
                        source,
                    })?;
                Ok(Source::Sqlite {
                    path: path.to_path_buf(),
                    store: Box::new(store),
                    filter,
                    after: 0,
                    done: false,
                    buf: VecDeque::with_capacity(PAGE),
                    workflow,
                    index: 0,
                })
            }
            InputKind::Jsonl => {
                let f = File::open(path).map_err(|source| ReplayError::Open {
                    path: path.to_path_buf(),
                    source,
                })?;
                Ok(Source::Jsonl {
                    reader: BufReader::with_capacity(1 << 20, f),
                    line: 0,
                    index: 0,
                    path: path.to_path_buf(),
                })
            }
        }
    }
}

impl Iterator for Source {
    type Item = Result<RawRecord, ReplayError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Source::Sqlite {
                path,
                store,
                filter,
                after,
                done,
                buf,
                workflow,
                index,
            } => loop {
                if let Some(rec) = buf.pop_front() {
                    return Some(Ok(rec));
                }
                if *done {
                    return None;
                }
                let from = *after;
                let read = store.visit_events(filter, from, PAGE, |row| {
                    *after = row.seq;
                    if let Some(w) = workflow.as_deref() {
                        if row.workflow != Some(w.as_bytes()) {
                            return;
                        }
                    }
                    buf.push_back(RawRecord {
                        index: *index,
                        place: Place::Seq(row.seq),
                        shard: shard_of(row.conversation),
                        body: RawBody::Stored(row.event.to_vec()),
                    });
                    *index += 1;
                });
                match read {
                    Ok(n) => *done = n < PAGE,
                    Err(source) => {
                        *done = true;
                        return Some(Err(ReplayError::Store {
                            path: path.clone(),
                            after_seq: from,
                            source,
                        }));
                    }
                }
            },
            Source::Jsonl {
                reader,
                line,
                index,
                path,
            } => loop {
                let mut buf = Vec::with_capacity(4096);
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => {
                        return Some(Err(ReplayError::Record {
                            input: path.display().to_string(),
                            record: Place::Line(*line + 1).to_string(),
                            message: format!("cannot read: {e}"),
                        }));
                    }
                }
                *line += 1;
                let complete = buf.last() == Some(&b'\n');
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if buf.starts_with(b"{\"checkpoint\":") {
                    continue;
                }
                let rec = RawRecord {
                    index: *index,
                    place: Place::Line(*line),
                    shard: shard_of(conversation_bytes(&buf)),
                    body: RawBody::Line {
                        bytes: buf,
                        complete,
                    },
                };
                *index += 1;
                return Some(Ok(rec));
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_conversation_without_parsing() {
        let line = br#"{"agent":"a","content":{"request":"{\"conversation\":\"x\"}"},"conversation":"conv-7","cost_unknown":false}"#;
        assert_eq!(conversation_bytes(line), b"conv-7");
        assert_eq!(conversation_bytes(b"{}"), b"");
    }
}
