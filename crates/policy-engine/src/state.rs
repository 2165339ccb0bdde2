//! Cross-turn policy state: per conversation, the placeholder maps (for `restore: true`),
//! the turn count, tool-call counts and the taint fingerprints; per agent and tool, the call
//! times of the last minute; and the approval registry. Shared across pack reloads; bounded
//! by a cap on conversations, caps per conversation and an idle expiry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use detectors::redact::PlaceholderMap;
use parking_lot::Mutex;

use crate::approval::ApprovalRegistry;
use crate::scan_cache::ScanCache;
use crate::taint::TaintSet;

/// Most conversations kept at once; when a new one would exceed it, the least recently used
/// tenth is dropped.
pub const MAX_CONVERSATIONS: usize = 10_000;
/// Most distinct redacted values kept per conversation; beyond it the map starts afresh.
pub const MAX_VALUES_PER_CONVERSATION: usize = 4_096;
/// A conversation idle this long is forgotten (looked for at most once a minute).
pub const IDLE_EXPIRY: Duration = Duration::from_secs(6 * 3600);
/// Most tool-call ids remembered per conversation (so a call is counted once).
pub const MAX_CALL_IDS_PER_CONVERSATION: usize = 4_096;
/// Most (agent, tool) per-minute windows kept.
pub const MAX_RATE_WINDOWS: usize = 20_000;

pub(crate) struct Entry {
    /// Placeholders of policies with `restore: true` (put back into responses).
    pub restorable: PlaceholderMap,
    /// Placeholders of the other policies (never put back).
    pub other: PlaceholderMap,
    /// Chat turns seen.
    pub turns: u64,
    /// The exchange that counted the last turn.
    pub last_turn_event: String,
    /// Calls per tool name.
    pub tool_calls: HashMap<String, u64>,
    /// Keys of the calls counted (`<event>:<choice>:<call>:<limit>`), so a call counts once.
    pub counted_calls: HashSet<String>,
    /// Ids of the tool calls emitted in responses (a `/v1/enforce` naming one is not
    /// counted again).
    pub emitted_calls: HashSet<String>,
    /// Taint fingerprints.
    pub taint: TaintSet,
    last_used: Instant,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            restorable: PlaceholderMap::new(),
            other: PlaceholderMap::new(),
            turns: 0,
            last_turn_event: String::new(),
            tool_calls: HashMap::new(),
            counted_calls: HashSet::new(),
            emitted_calls: HashSet::new(),
            taint: TaintSet::default(),
            last_used: now,
        }
    }
}

#[derive(Default)]
struct Inner {
    conversations: HashMap<String, Entry>,
    /// When idle conversations were last dropped (`None`: never).
    last_sweep: Option<Instant>,
    /// (agent, tool) → call times in the last minute.
    minute: HashMap<(String, String), VecDeque<Instant>>,
    /// agent → (its latest conversation, when).
    latest: HashMap<String, (String, Instant)>,
}

/// How often, at most, idle conversations are looked for (on a new conversation).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// When the cap is reached, this share of the conversations (the least recently used) is
/// dropped at once, so the scan that finds them runs once per that many new conversations.
const EVICT_DIVISOR: usize = 10;

impl Inner {
    /// Before a new conversation is added: drops idle conversations (at most every
    /// [`SWEEP_EVERY`]) and, at the cap, the least recently used tenth. Both scan the whole
    /// map, so neither runs on every new conversation (it did: two scans of up to 10,000
    /// entries under the lock for each new conversation).
    fn sweep_conversations(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
        if due {
            self.last_sweep = Some(now);
            self.conversations
                .retain(|_, e| now.saturating_duration_since(e.last_used) < IDLE_EXPIRY);
        }
        if self.conversations.len() >= MAX_CONVERSATIONS {
            let mut used: Vec<Instant> = self.conversations.values().map(|e| e.last_used).collect();
            let k = (MAX_CONVERSATIONS / EVICT_DIVISOR).min(used.len() - 1);
            let (_, cutoff, _) = used.select_nth_unstable(k);
            let cutoff = *cutoff;
            self.conversations.retain(|_, e| e.last_used > cutoff);
        }
    }
}

/// State that outlives one exchange and one pack: `Clone` shares it (an `Arc` inside).
#[derive(Clone, Default)]
pub struct PolicyState {
    inner: Arc<Mutex<Inner>>,
    approvals: ApprovalRegistry,
    scan_cache: ScanCache,
}

impl std::fmt::Debug for PolicyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyState")
            .field("conversations", &self.inner.lock().conversations.len())
            .field("approvals", &self.approvals)
            .finish()
    }
}

impl PolicyState {
    /// Empty state.
    pub fn new() -> PolicyState {
        PolicyState::default()
    }

    /// This state with `cache` as its detector findings cache (e.g. one cache shared by
    /// many states, or [`ScanCache::disabled`]).
    pub fn with_scan_cache(mut self, cache: ScanCache) -> PolicyState {
        self.scan_cache = cache;
        self
    }

    /// The detector findings cache (shared by the clones of this state).
    pub fn scan_cache(&self) -> &ScanCache {
        &self.scan_cache
    }

    /// Number of conversations with state.
    pub fn conversations(&self) -> usize {
        self.inner.lock().conversations.len()
    }

    /// The approval requests (shared with the admin API).
    pub fn approvals(&self) -> &ApprovalRegistry {
        &self.approvals
    }

    /// The conversation `agent` was last seen in within `max_age`, if any (for tool
    /// enforcement requests that name no conversation).
    pub fn latest_conversation(&self, agent: &str, max_age: Duration) -> Option<String> {
        let inner = self.inner.lock();
        inner
            .latest
            .get(agent)
            .filter(|(_, t)| t.elapsed() <= max_age)
            .map(|(c, _)| c.clone())
    }

    /// Runs `f` on the state of `conversation` (created when absent).
    pub(crate) fn with_entry<R>(&self, conversation: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if !inner.conversations.contains_key(conversation) {
            inner.sweep_conversations(now);
        }
        let entry = inner
            .conversations
            .entry(conversation.to_owned())
            .or_insert_with(|| Entry::new(now));
        entry.last_used = now;
        f(entry)
    }

    /// Runs `f` on the (restorable, other) placeholder maps of `conversation` (created when absent).
    pub(crate) fn with_maps<R>(
        &self,
        conversation: &str,
        f: impl FnOnce(&mut PlaceholderMap, &mut PlaceholderMap) -> R,
    ) -> R {
        self.with_entry(conversation, |entry| {
            if entry.restorable.len() >= MAX_VALUES_PER_CONVERSATION {
                entry.restorable = PlaceholderMap::new();
            }
            if entry.other.len() >= MAX_VALUES_PER_CONVERSATION {
                entry.other = PlaceholderMap::new();
            }
            f(&mut entry.restorable, &mut entry.other)
        })
    }

    /// A copy of the restorable map of `conversation`, if any.
    pub(crate) fn restorable_map(&self, conversation: &str) -> Option<PlaceholderMap> {
        self.inner
            .lock()
            .conversations
            .get(conversation)
            .map(|e| e.restorable.clone())
    }

    /// Remembers that `agent` is active in `conversation`.
    pub(crate) fn touch_agent(&self, agent: &str, conversation: &str) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if inner.latest.len() >= MAX_CONVERSATIONS && !inner.latest.contains_key(agent) {
            inner
                .latest
                .retain(|_, (_, t)| now.duration_since(*t) < IDLE_EXPIRY);
            if inner.latest.len() >= MAX_CONVERSATIONS {
                return;
            }
        }
        inner
            .latest
            .insert(agent.to_owned(), (conversation.to_owned(), now));
    }

    /// Records a call of `tool` by `agent` at `now` and returns the calls in the 60 s
    /// ending at `now` (this one included). `dry` only counts.
    pub(crate) fn calls_in_last_minute(
        &self,
        agent: &str,
        tool: &str,
        now: Instant,
        dry: bool,
    ) -> u64 {
        let mut inner = self.inner.lock();
        let key = (agent.to_owned(), tool.to_owned());
        if !inner.minute.contains_key(&key) && inner.minute.len() >= MAX_RATE_WINDOWS {
            inner.minute.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < Duration::from_secs(60))
            });
            if inner.minute.len() >= MAX_RATE_WINDOWS {
                let oldest = inner
                    .minute
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    inner.minute.remove(&k);
                }
            }
        }
        let q = inner.minute.entry(key).or_default();
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            q.pop_front();
        }
        if !dry {
            q.push_back(now);
            // A window never needs more entries than a minute can hold at the highest limit.
            while q.len() > 100_000 {
                q.pop_front();
            }
        }
        q.len() as u64 + u64::from(dry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_window_slides() {
        let s = PolicyState::new();
        let t0 = Instant::now();
        assert_eq!(s.calls_in_last_minute("a", "t", t0, false), 1);
        assert_eq!(
            s.calls_in_last_minute("a", "t", t0 + Duration::from_secs(30), false),
            2
        );
        assert_eq!(
            s.calls_in_last_minute("a", "t", t0 + Duration::from_secs(30), true),
            3
        );
        assert_eq!(
            s.calls_in_last_minute("a", "t", t0 + Duration::from_secs(61), false),
            2
        );
        assert_eq!(s.calls_in_last_minute("b", "t", t0, false), 1);
    }

    #[test]
    fn state_is_kept_per_conversation_and_bounded_by_conversations() {
        let s = PolicyState::new();
        s.with_entry("c1", |e| e.turns += 1);
        s.with_entry("c1", |e| e.turns += 1);
        assert_eq!(s.with_entry("c1", |e| e.turns), 2);
        assert_eq!(s.with_entry("c2", |e| e.turns), 0);
        assert_eq!(s.conversations(), 2);
    }

    #[test]
    fn at_the_cap_the_least_recently_used_tenth_goes_at_once() {
        let s = PolicyState::new();
        for i in 0..MAX_CONVERSATIONS {
            s.with_entry(&format!("c{i}"), |e| e.turns = 1);
        }
        assert_eq!(s.conversations(), MAX_CONVERSATIONS);
        // c0 is used again: it is now among the most recent.
        s.with_entry("c0", |e| e.turns += 1);
        s.with_entry("new", |_| ());
        // The oldest MAX / 10 + 1 go (c1 ..= c1001); "new" comes in.
        let gone = MAX_CONVERSATIONS / EVICT_DIVISOR + 1;
        assert_eq!(s.conversations(), MAX_CONVERSATIONS - gone + 1);
        assert_eq!(s.with_entry("c0", |e| e.turns), 2, "recently used: kept");
        let inner = s.inner.lock();
        for i in 1..=gone {
            assert!(
                !inner.conversations.contains_key(&format!("c{i}")),
                "c{i}: least recently used"
            );
        }
        assert!(inner.conversations.contains_key(&format!("c{}", gone + 1)));
        assert!(inner.conversations.contains_key("new"));
    }
}
