//! tiktoken's pre-tokenizer (the regex that splits text into pieces before the merges),
//! on `regex-automata` instead of `fancy-regex`.
//!
//! tiktoken's patterns are ordered alternations matched leftmost-first, as a backtracking
//! engine would. Two features have no `regex-automata` equivalent, and are replaced exactly:
//!
//! - possessive quantifiers (cl100k: `?+`, `++`, `*+`, `{1,3}+`): in these patterns the
//!   possessive and the greedy forms accept the same strings at the same priority (each one
//!   is followed by a disjoint class or by `$`, or ends its branch), so they become greedy;
//! - the branch `\s+(?!\S)`: at a whitespace run `p..q` it matches `p..q` when `q` is the
//!   end of the text, else `p..q-1char` when the run has at least two characters, else
//!   fails. It becomes the pattern `\s+\s` (a whole run of at least two characters, as the
//!   greedy `\s+` always reaches the end of the run), whose match loses its last character
//!   unless it ends the text. A one-character run at the end of the text, which tiktoken's
//!   branch would match, falls through to the next branch (`\s+` or `\s`) with the same span.
//!
//! The alternation is split into three patterns of one multi-pattern regex, in priority
//! order (leftmost-first, as the alternation): the branches before `\s+(?!\S)`, then
//! `\s+\s`, then the branches after.

use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;

use regex_automata::hybrid::BuildError;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input};

/// `o200k_base`: `tiktoken_rs::O200K_BASE_PAT_STR` in three parts.
pub(crate) const O200K_PATTERNS: [&str; 3] = [
    concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        "|",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        "|",
        r"\p{N}{1,3}",
        "|",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        "|",
        r"\s*[\r\n]+",
    ),
    r"\s+\s",
    r"\s+",
];

/// `cl100k_base`: tiktoken-rs's pattern
/// `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`
/// with greedy quantifiers, in three parts.
pub(crate) const CL100K_PATTERNS: [&str; 3] = [
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]",
    r"\s+\s",
    r"\s",
];

/// Index of the `\s+\s` pattern.
const TRIMMED: usize = 1;

/// Upper bound of one lazy-DFA cache (one per thread counting at the same time). The mixed
/// corpus of the measurements (5,321 texts in many scripts) needs a fraction of this.
const CACHE_CAPACITY: usize = 1 << 20;

type CachePool = Pool<Cache, Box<dyn Fn() -> Cache + Send + Sync + UnwindSafe + RefUnwindSafe>>;

/// Splits text into the pieces tiktoken's `find_iter` yields.
///
/// A forward lazy DFA, always anchored at the end of the previous piece: the start of a
/// match is known, so no reverse automaton is built (half the compile time and memory of a
/// `meta::Regex`). An unanchored search from `pos` finds the match whose start is the first
/// position from `pos` where an anchored search succeeds, and that same match; every
/// character starts a match of these patterns anyway.
pub(crate) struct Pretokenizer {
    dfa: Arc<DFA>,
    caches: CachePool,
}

impl std::fmt::Debug for Pretokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pretokenizer").finish_non_exhaustive()
    }
}

impl Pretokenizer {
    /// Compiles the three patterns (see the module docs).
    pub(crate) fn new(patterns: &[&str; 3]) -> Result<Self, BuildError> {
        // Defaults otherwise: leftmost-first, Unicode, UTF-8, and a search never gives up
        // (no minimum cache clear count, no quit bytes), so a search cannot fail.
        let dfa = Arc::new(
            DFA::builder()
                .configure(DFA::config().cache_capacity(CACHE_CAPACITY))
                .build_many(patterns)?,
        );
        let for_pool = Arc::clone(&dfa);
        let caches: CachePool = Pool::new(Box::new(move || for_pool.create_cache()));
        Ok(Self { dfa, caches })
    }

    /// Calls `f` with every piece of `text`, in order.
    pub(crate) fn for_each_piece(&self, text: &str, mut f: impl FnMut(&[u8])) {
        let bytes = text.as_bytes();
        let mut cache = self.caches.get();
        let mut pos = 0;
        while pos < bytes.len() {
            let input = Input::new(text).range(pos..).anchored(Anchored::Yes);
            let found = match self.dfa.try_search_fwd(&mut cache, &input) {
                Ok(found) => found,
                // Unreachable with this configuration; keep counting the rest as one piece.
                Err(_) => {
                    f(bytes.get(pos..).unwrap_or_default());
                    return;
                }
            };
            let Some(m) = found else {
                // No piece starts here: `find_iter` skips to the next match.
                pos += text
                    .get(pos..)
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                continue;
            };
            let mut end = m.offset();
            if m.pattern().as_usize() == TRIMMED && end < bytes.len() {
                let last = text
                    .get(..end)
                    .and_then(|s| s.chars().next_back())
                    .map_or(0, char::len_utf8);
                end -= last;
            }
            if end <= pos {
                // Unreachable: no branch matches the empty string and a trimmed `\s+\s`
                // keeps at least one character. Never loop.
                pos = m.offset().max(pos + 1);
                continue;
            }
            if let Some(piece) = bytes.get(pos..end) {
                f(piece);
            }
            pos = end;
        }
    }
}
