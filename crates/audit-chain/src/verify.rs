//! Verification: recompute every link, name the first broken one, check signed checkpoints.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{GENESIS_PREV_HASH, chain_hash, to_canonical};
use crate::checkpoint::PublicKey;
use crate::store::{Checkpoint, EventFilter, EventStore, SqliteStore, StoreError};

/// Verification options.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Start at this sequence number, trusting its `prev_hash` (default: from the genesis).
    pub from_seq: Option<u64>,
    /// Public key for checkpoint signatures. Without it checkpoints are still compared with
    /// the chain, but their signatures are not checked.
    pub public_key: Option<PublicKey>,
}

/// What kind of break was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The event's content no longer matches its hash.
    Edited,
    /// One or more events are missing.
    Deleted,
    /// An event that is not part of the chain was added.
    Inserted,
    /// Events are out of order.
    Reordered,
    /// The chain ends before a signed checkpoint: its tail was cut.
    Truncated,
    /// The chain disagrees with a signed checkpoint: it was rewritten and rehashed.
    Rewritten,
    /// A checkpoint's signature does not verify with the public key.
    BadSignature,
    /// An event or line cannot be read at all.
    Malformed,
}

impl BreakKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Inserted => "inserted",
            BreakKind::Reordered => "reordered",
            BreakKind::Truncated => "truncated",
            BreakKind::Rewritten => "rewritten",
            BreakKind::BadSignature => "bad_signature",
            BreakKind::Malformed => "malformed",
        }
    }
}

/// The first broken link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenLink {
    /// Sequence number of the first event that does not verify.
    pub seq: u64,
    /// What is wrong.
    pub kind: BreakKind,
    /// One line saying what was found (`event 17: content does not match its hash`).
    pub message: String,
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Events whose links verified.
    pub events_verified: u64,
    /// First verified sequence number.
    pub first_seq: Option<u64>,
    /// Last verified sequence number.
    pub last_seq: Option<u64>,
    /// Hex hash of the last verified event.
    pub head_hash: Option<String>,
    /// Whether verification started at the genesis (else at a trusted `prev_hash`).
    pub from_genesis: bool,
    /// Checkpoints that matched the chain (and, with a key, carried a valid signature).
    pub checkpoints_verified: u64,
    /// Whether checkpoint signatures were checked (a public key was given).
    pub signatures_checked: bool,
    /// Sequence number of the last matching checkpoint.
    pub last_checkpoint_seq: Option<u64>,
    /// Events after the last matching checkpoint (not covered by a signature).
    pub unsigned_tail: u64,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// True when nothing is broken.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Why verification could not run (as opposed to finding a broken chain).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The JSONL file could not be read.
    #[error("audit export `{path}`: {source}")]
    Io {
        /// File.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One entry to check: the hashed bytes and the chain fields.
struct Entry {
    /// Position claimed by the container (store `seq` column, or the event's own `seq`).
    seq: u64,
    /// `seq` inside the event, `None` if unreadable.
    body_seq: Option<u64>,
    /// Why it is unreadable.
    malformed: Option<String>,
    prev_hash: [u8; 32],
    prev_ok: bool,
    hash_ok: bool,
    hash: [u8; 32],
}

struct Chain {
    expected: Option<u64>,
    prev: Option<[u8; 32]>,
    checkpoints: BTreeMap<u64, Checkpoint>,
    key: Option<PublicKey>,
    report: VerifyReport,
    from_seq: Option<u64>,
}

fn broken(seq: u64, kind: BreakKind, message: String) -> BrokenLink {
    BrokenLink { seq, kind, message }
}

impl Chain {
    fn new(opts: &VerifyOptions, checkpoints: Vec<Checkpoint>) -> Chain {
        Chain {
            expected: Some(opts.from_seq.unwrap_or(1)),
            prev: None,
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            key: opts.public_key,
            report: VerifyReport {
                signatures_checked: opts.public_key.is_some(),
                ..VerifyReport::default()
            },
            from_seq: opts.from_seq,
        }
    }

    /// Checks `e`; `next_seq` is the following entry's claimed seq (lookahead).
    fn feed(&mut self, e: &Entry, next_body_seq: Option<u64>) -> Result<(), BrokenLink> {
        let expected = self.expected.unwrap_or(e.seq);
        let Some(body_seq) = e.body_seq else {
            let at = if e.seq == 0 { expected } else { e.seq };
            let why = e.malformed.clone().unwrap_or_default();
            return Err(broken(
                at,
                BreakKind::Malformed,
                format!("event {at}: {why}"),
            ));
        };
        if e.seq != expected {
            if e.seq > expected {
                if next_body_seq == Some(expected) {
                    return Err(broken(
                        expected,
                        BreakKind::Reordered,
                        format!(
                            "event {expected}: found event {} in its place; events are out of order",
                            e.seq
                        ),
                    ));
                }
                let msg = if e.seq == expected + 1 {
                    format!("event {expected} is missing (next is event {})", e.seq)
                } else {
                    format!("events {expected} to {} are missing", e.seq - 1)
                };
                return Err(broken(expected, BreakKind::Deleted, msg));
            }
            return Err(broken(
                e.seq,
                BreakKind::Inserted,
                format!(
                    "event {} appears again after event {}: an event was inserted",
                    e.seq,
                    expected.saturating_sub(1)
                ),
            ));
        }
        if body_seq != e.seq {
            let (kind, msg) = if body_seq > e.seq {
                if next_body_seq == Some(e.seq) {
                    (
                        BreakKind::Reordered,
                        format!(
                            "event {}: stored in place of event {}; events are out of order",
                            body_seq, e.seq
                        ),
                    )
                } else {
                    (
                        BreakKind::Deleted,
                        format!("event {}: missing; its place holds event {body_seq}", e.seq),
                    )
                }
            } else {
                (
                    BreakKind::Inserted,
                    format!(
                        "event {}: its place holds event {body_seq}; an event was inserted before it",
                        e.seq
                    ),
                )
            };
            return Err(broken(e.seq, kind, msg));
        }
        if !e.hash_ok {
            return Err(broken(
                e.seq,
                BreakKind::Edited,
                format!("event {}: content does not match its hash", e.seq),
            ));
        }
        match self.prev {
            Some(prev) => {
                if !e.prev_ok || e.prev_hash != prev {
                    return Err(broken(
                        e.seq,
                        BreakKind::Inserted,
                        format!(
                            "event {}: prev_hash does not match the hash of event {}; an event was inserted or replaced",
                            e.seq,
                            e.seq - 1
                        ),
                    ));
                }
            }
            None => {
                let genesis = e.seq == 1 && self.from_seq.is_none_or(|f| f <= 1);
                if genesis && (!e.prev_ok || e.prev_hash != GENESIS_PREV_HASH) {
                    return Err(broken(
                        1,
                        BreakKind::Inserted,
                        "event 1: prev_hash is not the genesis value (64 zeros)".to_owned(),
                    ));
                }
                self.report.from_genesis = genesis;
                self.report.first_seq = Some(e.seq);
            }
        }
        self.check_checkpoint(e.seq, &e.hash)?;
        self.prev = Some(e.hash);
        self.expected = Some(e.seq + 1);
        self.report.events_verified += 1;
        self.report.last_seq = Some(e.seq);
        Ok(())
    }

    fn check_checkpoint(&mut self, seq: u64, hash: &[u8; 32]) -> Result<(), BrokenLink> {
        let Some(cp) = self.checkpoints.remove(&seq) else {
            return Ok(());
        };
        if let Some(key) = &self.key {
            if !key.verifies(&cp) {
                return Err(broken(
                    seq,
                    BreakKind::BadSignature,
                    format!(
                        "checkpoint at event {seq}: signature does not verify with the public key"
                    ),
                ));
            }
        }
        if cp.hash != hash.as_slice() {
            return Err(broken(
                seq,
                BreakKind::Rewritten,
                format!(
                    "event {seq}: hash differs from the checkpoint signed at {}; the chain was rewritten",
                    cp.time
                ),
            ));
        }
        self.report.checkpoints_verified += 1;
        self.report.last_checkpoint_seq = Some(seq);
        Ok(())
    }

    fn add_checkpoint(&mut self, cp: Checkpoint) {
        self.checkpoints.insert(cp.seq, cp);
    }

    fn finish(mut self, err: Option<BrokenLink>) -> VerifyReport {
        self.report.head_hash = self.prev.map(hex::encode);
        let last = self.report.last_seq.unwrap_or(0);
        self.report.unsigned_tail = last.saturating_sub(
            self.report
                .last_checkpoint_seq
                .unwrap_or(self.report.first_seq.map_or(0, |f| f.saturating_sub(1))),
        );
        if err.is_none() {
            // A checkpoint beyond the head: the tail was cut.
            let beyond = self
                .checkpoints
                .values()
                .find(|c| c.seq > last && self.key.is_none_or(|k| k.verifies(c)))
                .cloned();
            if let Some(cp) = beyond {
                let next = last + 1;
                self.report.broken = Some(broken(
                    next,
                    BreakKind::Truncated,
                    format!(
                        "chain ends at event {last} but a checkpoint signed event {} at {}; events from {next} are missing",
                        cp.seq, cp.time
                    ),
                ));
                return self.report;
            }
        }
        self.report.broken = err;
        self.report
    }
}

#[derive(Deserialize)]
struct BodySeq {
    seq: u64,
}

/// The top-level `seq` of canonical event bytes. Fast path: the first `,"seq":<digits>`
/// (a `"` inside a JSON string is always escaped, and the only maps with free-form keys
/// hold strings, so digits after such a key can only be the top-level member); falls back
/// to a JSON parse. The hash covers every byte, so this only has to locate `seq`.
fn body_seq(event: &[u8]) -> Result<u64, String> {
    const KEY: &[u8] = b",\"seq\":";
    if let Some(p) = event.windows(KEY.len()).position(|w| w == KEY) {
        let rest = &event[p + KEY.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && matches!(rest.get(digits), Some(b',' | b'}')) {
            if let Some(n) = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
            {
                return Ok(n);
            }
        }
    }
    serde_json::from_slice::<BodySeq>(event)
        .map(|b| b.seq)
        .map_err(|e| format!("event is not readable JSON: {e}"))
}

fn arr32(b: &[u8]) -> Option<[u8; 32]> {
    b.try_into().ok()
}

fn entry_of(row: &crate::store::StoredEvent) -> Entry {
    let (body_seq, malformed) = match body_seq(&row.event) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let prev = arr32(&row.prev_hash);
    let hash = arr32(&row.hash);
    let computed = chain_hash(&prev.unwrap_or(GENESIS_PREV_HASH), &row.event);
    Entry {
        seq: row.seq,
        body_seq,
        malformed,
        prev_hash: prev.unwrap_or(GENESIS_PREV_HASH),
        prev_ok: prev.is_some(),
        hash_ok: prev.is_some() && hash == Some(computed),
        hash: computed,
    }
}

/// Verifies the store at `db` (e.g. `<data_dir>/palisade.db`), streaming.
pub fn verify_store(db: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let store = SqliteStore::open_read_only(db)?;
    verify_event_store(store, opts)
}

/// Verifies any [`EventStore`].
pub fn verify_event_store<S: EventStore>(
    mut store: S,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let from = opts.from_seq.unwrap_or(1);
    let cps = store.checkpoints(from)?;
    let mut chain = Chain::new(opts, cps);
    let filter = EventFilter {
        from_seq: Some(from),
        ..EventFilter::default()
    };
    const PAGE: usize = 4096;
    let mut page = Vec::with_capacity(PAGE);
    let mut next_page = Vec::with_capacity(PAGE);
    let mut after = from.saturating_sub(1);
    store.read_events(&filter, after, PAGE, &mut page)?;
    let mut entries: Vec<Entry> = Vec::new();
    while !page.is_empty() {
        after = page.last().map_or(after, |e| e.seq);
        next_page.clear();
        if page.len() == PAGE {
            store.read_events(&filter, after, PAGE, &mut next_page)?;
        }
        entries.clear();
        entries.extend(page.iter().map(entry_of));
        let lookahead = next_page.first().and_then(|r| body_seq(&r.event).ok());
        for i in 0..entries.len() {
            let next = match entries.get(i + 1) {
                Some(n) => n.body_seq,
                None => lookahead,
            };
            if let Err(b) = chain.feed(&entries[i], next) {
                return Ok(chain.finish(Some(b)));
            }
        }
        std::mem::swap(&mut page, &mut next_page);
    }
    Ok(chain.finish(None))
}

/// A JSONL line that carries a checkpoint instead of an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointLine {
    pub(crate) checkpoint: CheckpointJson,
}

/// JSON form of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointJson {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) time: String,
    pub(crate) key_id: String,
    pub(crate) signature: String,
}

impl From<&Checkpoint> for CheckpointJson {
    fn from(c: &Checkpoint) -> Self {
        CheckpointJson {
            seq: c.seq,
            hash: hex::encode(&c.hash),
            time: c.time.clone(),
            key_id: c.key_id.clone(),
            signature: hex::encode(&c.signature),
        }
    }
}

enum Line {
    Event(Entry),
    Checkpoint(Checkpoint),
}

fn parse_line(line: &[u8], line_no: u64) -> Line {
    let bad = |why: String| {
        Line::Event(Entry {
            seq: 0,
            body_seq: None,
            malformed: Some(format!("line {line_no}: {why}")),
            prev_hash: GENESIS_PREV_HASH,
            prev_ok: false,
            hash_ok: false,
            hash: GENESIS_PREV_HASH,
        })
    };
    // Fast path: a format-v1 event line (typed parse; serde output is canonical).
    if let Some(e) = parse_event_line_fast(line) {
        return Line::Event(e);
    }
    let mut v: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return bad(format!("not JSON: {e}")),
    };
    let canonical_full = match to_canonical(&v) {
        Ok(b) => b,
        Err(e) => return bad(e.to_string()),
    };
    if canonical_full != line {
        return bad("not in canonical form (edited)".to_owned());
    }
    if let Some(cp) = v.get("checkpoint") {
        let Ok(cp) = serde_json::from_value::<CheckpointJson>(cp.clone()) else {
            return bad("unreadable checkpoint".to_owned());
        };
        return Line::Checkpoint(Checkpoint {
            seq: cp.seq,
            hash: hex::decode(&cp.hash).unwrap_or_default(),
            time: cp.time,
            key_id: cp.key_id,
            signature: hex::decode(&cp.signature).unwrap_or_default(),
        });
    }
    let Some(obj) = v.as_object_mut() else {
        return bad("not a JSON object".to_owned());
    };
    let hash_hex = obj.remove("hash");
    let prev_hex = obj.remove("prev_hash");
    let seq = obj.get("seq").and_then(Value::as_u64);
    let (Some(Value::String(hash_hex)), Some(Value::String(prev_hex)), Some(seq)) =
        (hash_hex, prev_hex, seq)
    else {
        return bad("missing `seq`, `prev_hash` or `hash`".to_owned());
    };
    let rest = match to_canonical(&v) {
        Ok(b) => b,
        Err(e) => return bad(e.to_string()),
    };
    let prev = hex::decode(&prev_hex)
        .ok()
        .and_then(|b| arr32(&b))
        .filter(|p| hex::encode(p) == prev_hex);
    let computed = chain_hash(&prev.unwrap_or(GENESIS_PREV_HASH), &rest);
    Line::Event(Entry {
        seq,
        body_seq: Some(seq),
        malformed: None,
        prev_hash: prev.unwrap_or(GENESIS_PREV_HASH),
        prev_ok: prev.is_some(),
        hash_ok: prev.is_some() && hex::encode(computed) == hash_hex,
        hash: computed,
    })
}

fn parse_event_line_fast(line: &[u8]) -> Option<Entry> {
    let mut ev: crate::event::AuditEvent = serde_json::from_slice(line).ok()?;
    if serde_json::to_vec(&ev).ok()? != line {
        return None;
    }
    let hash_hex = std::mem::take(&mut ev.hash);
    let prev_hex = std::mem::take(&mut ev.prev_hash);
    let rest = serde_json::to_vec(&ev).ok()?;
    let prev = hex::decode(&prev_hex)
        .ok()
        .and_then(|b| arr32(&b))
        .filter(|p| hex::encode(p) == prev_hex);
    let computed = chain_hash(&prev.unwrap_or(GENESIS_PREV_HASH), &rest);
    Some(Entry {
        seq: ev.seq,
        body_seq: Some(ev.seq),
        malformed: None,
        prev_hash: prev.unwrap_or(GENESIS_PREV_HASH),
        prev_ok: prev.is_some(),
        hash_ok: prev.is_some() && hex::encode(computed) == hash_hex,
        hash: computed,
    })
}

/// Verifies a JSONL export (one canonical event per line; `{"checkpoint":…}` lines
/// optional). Without `from_seq`, a file that does not start at event 1 is verified from
/// its first event, trusting that event's `prev_hash` (`from_genesis` is then false).
pub fn verify_jsonl(path: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    verify_jsonl_reader(std::io::BufReader::with_capacity(1 << 20, file), opts).map_err(|source| {
        VerifyError::Io {
            path: path.display().to_string(),
            source,
        }
    })
}

/// Verifies JSONL from any reader.
pub fn verify_jsonl_reader<R: BufRead>(
    mut reader: R,
    opts: &VerifyOptions,
) -> std::io::Result<VerifyReport> {
    let mut chain = Chain::new(opts, Vec::new());
    if opts.from_seq.is_none() {
        chain.expected = None;
    }
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut pending: Option<Entry> = None;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        let eof = n == 0;
        let next = if eof {
            None
        } else {
            line_no += 1;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if line.is_empty() {
                continue;
            }
            match parse_line(line, line_no) {
                Line::Checkpoint(cp) => {
                    // Compare once the event it covers has been checked.
                    if let Some(p) = pending.take() {
                        if let Err(b) = chain.feed(&p, Some(p.seq + 1)) {
                            return Ok(chain.finish(Some(b)));
                        }
                    }
                    let last = chain.report.last_seq;
                    let seq = cp.seq;
                    if last.is_none_or(|l| seq >= l) {
                        chain.add_checkpoint(cp);
                    }
                    if let (Some(l), Some(h)) = (last, chain.prev) {
                        if l == seq {
                            if let Err(b) = chain.check_checkpoint(seq, &h) {
                                return Ok(chain.finish(Some(b)));
                            }
                        }
                    }
                    continue;
                }
                Line::Event(e) => Some(e),
            }
        };
        if let Some(p) = pending.take() {
            let lookahead = next.as_ref().and_then(|n| n.body_seq);
            if let Err(b) = chain.feed(&p, lookahead) {
                return Ok(chain.finish(Some(b)));
            }
        }
        if eof {
            break;
        }
        pending = next;
    }
    Ok(chain.finish(None))
}
