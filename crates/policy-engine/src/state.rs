//! Cross-turn policy state: placeholder maps per conversation (for `restore: true`).
//! Shared across pack reloads; bounded by a cap on conversations, a cap on values per
//! conversation and an idle expiry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use detectors::redact::PlaceholderMap;
use parking_lot::Mutex;

/// Most conversations kept at once; the least recently used is dropped beyond it.
pub const MAX_CONVERSATIONS: usize = 10_000;
/// Most distinct redacted values kept per conversation; beyond it the map starts afresh.
pub const MAX_VALUES_PER_CONVERSATION: usize = 4_096;
/// A conversation idle this long is forgotten.
pub const IDLE_EXPIRY: Duration = Duration::from_secs(6 * 3600);

struct Entry {
    /// Placeholders of policies with `restore: true` (put back into responses).
    restorable: PlaceholderMap,
    /// Placeholders of the other policies (never put back).
    other: PlaceholderMap,
    last_used: Instant,
}

#[derive(Default)]
struct Inner {
    conversations: HashMap<String, Entry>,
}

/// State that outlives one exchange and one pack: `Clone` shares it (an `Arc` inside).
#[derive(Clone, Default)]
pub struct PolicyState {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for PolicyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyState")
            .field("conversations", &self.inner.lock().conversations.len())
            .finish()
    }
}

impl PolicyState {
    /// Empty state.
    pub fn new() -> PolicyState {
        PolicyState::default()
    }

    /// Number of conversations holding placeholder maps.
    pub fn conversations(&self) -> usize {
        self.inner.lock().conversations.len()
    }

    /// Runs `f` on the (restorable, other) placeholder maps of `conversation` (created when absent).
    pub(crate) fn with_maps<R>(
        &self,
        conversation: &str,
        f: impl FnOnce(&mut PlaceholderMap, &mut PlaceholderMap) -> R,
    ) -> R {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if !inner.conversations.contains_key(conversation) {
            inner
                .conversations
                .retain(|_, e| now.duration_since(e.last_used) < IDLE_EXPIRY);
            if inner.conversations.len() >= MAX_CONVERSATIONS {
                let oldest = inner
                    .conversations
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    inner.conversations.remove(&k);
                }
            }
        }
        let entry = inner
            .conversations
            .entry(conversation.to_owned())
            .or_insert_with(|| Entry {
                restorable: PlaceholderMap::new(),
                other: PlaceholderMap::new(),
                last_used: now,
            });
        if entry.restorable.len() >= MAX_VALUES_PER_CONVERSATION {
            entry.restorable = PlaceholderMap::new();
        }
        if entry.other.len() >= MAX_VALUES_PER_CONVERSATION {
            entry.other = PlaceholderMap::new();
        }
        entry.last_used = now;
        f(&mut entry.restorable, &mut entry.other)
    }

    /// A copy of the restorable map of `conversation`, if any.
    pub(crate) fn restorable_map(&self, conversation: &str) -> Option<PlaceholderMap> {
        self.inner
            .lock()
            .conversations
            .get(conversation)
            .map(|e| e.restorable.clone())
    }
}
