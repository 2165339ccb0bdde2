//! Rule tables and the shared literal prefilter.
//!
//! Every rule compiles to its own Thompson NFA, shared by a forward lazy DFA, a PikeVM and
//! (rules with a `v` group) a bounded backtracker; no `meta::Regex` is kept. At build
//! time the literal prefixes every match must start with are extracted from the rule's
//! pattern (`regex-syntax` literal extraction, ASCII case folded, cut to eight bytes), and
//! every rule gets a *gate condition* over longer literals it must contain (see
//! [`crate::gate`]). A scan walks the text once with the shared [`Scanner`]
//! ([`Prefilter::collect`]): it learns which literals occur and where the prefixes, trigger
//! words and ASCII digit runs occur. Rules whose gate condition fails cannot match and get no
//! candidates; the others are tried only *anchored* at the positions where one of their
//! prefixes occurs, where the pattern's first assertion (word boundary, line start) holds
//! there, and where the next two bytes can begin a match (read off the rule's lazy DFA at
//! build time). Rules whose matches have no usable prefix (a pattern that starts with
//! `^[ \t]*` or a character class) name trigger words and a walk-back class instead
//! ([`Back`]), or start at digit runs. Candidates are replayed in position order, rule order
//! breaking ties, which reproduces leftmost-first semantics of one multi-pattern regex. Any
//! superset of a rule's possible match starts gives the same hits, which is what lets the
//! gate, the cut prefixes and the start filters skip work without changing a finding.
//!
//! A candidate is checked by walking the rule's lazy DFA from its anchored start state (no
//! per-call set-up of `meta::Regex`); the PikeVM answers only where the DFA cannot (it gave
//! up, or quit next to a Unicode word boundary), and the backtracker finds the `v` capture
//! group inside a hit's span (what `meta::Regex` does after its DFA found the span).
//!
//! Scratch buffers come from a thread-local pool and DFA caches from a per-table pool, so a
//! scan allocates nothing in steady state beyond the findings it returns.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;

use regex_automata::hybrid::dfa::{Cache as LazyCache, DFA as LazyDfa};
use regex_automata::nfa::thompson::backtrack::{BoundedBacktracker, Cache as BacktrackCache};
use regex_automata::nfa::thompson::pikevm::{Cache as PikeCache, PikeVM};
use regex_automata::nfa::thompson::{self, NFA, WhichCaptures};
use regex_automata::util::captures::Captures;
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::Hir;

/// One look-behind of each kind anchored start states tell apart: text start, after `\n`,
/// after `\r`, after a word byte, after another byte.
const LOOK_BEHINDS: [Option<u8>; 5] = [None, Some(b'\n'), Some(b'\r'), Some(b'a'), Some(b' ')];

/// A fresh cache and the anchored start configuration of `dfa`, for reading start bytes
/// off it at build time; `None` when the DFA quits at a start after a non-ASCII byte
/// (Unicode word boundaries, where the PikeVM decides), and nothing can be restricted.
fn anchored_cache(dfa: &LazyDfa) -> Option<(LazyCache, regex_automata::util::start::Config)> {
    let mut cache = LazyCache::new(dfa);
    let anchored = regex_automata::util::start::Config::new().anchored(Anchored::Yes);
    dfa.start_state(&mut cache, &anchored.clone().look_behind(Some(0xC3)))
        .ok()?;
    Some((cache, anchored))
}

use crate::gate::{self, Bytes, Gate, HitFilter, Lits, Scanner, has};
use crate::types::{BuildError, DetectorKind, Severity};

/// Trigger words and a window for a rule whose matches have no literal prefix.
///
/// `triggers == DIGITS` means "the start of every run of ASCII digits" (numbers, IBANs):
/// candidates are the `back + 1` positions ending at the run start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// ASCII-case-insensitive words one of which every match contains.
    pub triggers: &'static [&'static str],
    /// Bytes before a trigger where a match may start.
    pub back: usize,
    /// Bytes after a trigger where a match may end.
    pub fwd: usize,
}

/// One pattern rule. If the pattern has a capture group named `v`, the finding's span is that
/// group; otherwise it is the whole match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    pub kind: &'static str,
    pub rule: &'static str,
    pub pattern: &'static str,
    pub score: f32,
    pub severity: Severity,
    pub window: Option<Window>,
    pub back: Option<Back>,
}

/// Sets manual trigger words for rule `id`: each trigger occurrence yields one anchored
/// candidate at the position reached by walking back from the trigger over at most `max`
/// bytes for which `class` holds (e.g. name characters before `@`, blanks before `#`).
pub(crate) fn set_back(
    rules: &mut [Rule],
    id: &str,
    triggers: &'static [&'static str],
    class: fn(u8) -> bool,
    max: usize,
) {
    for r in rules.iter_mut().filter(|r| r.rule == id) {
        r.back = Some(Back {
            triggers,
            class,
            max,
        });
    }
}

/// Manual triggers with a walk-back class (see [`set_back`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Back {
    pub triggers: &'static [&'static str],
    pub class: fn(u8) -> bool,
    pub max: usize,
}

/// Walk-back classes for [`set_back`].
pub(crate) mod class {
    /// Space or tab.
    pub fn blank(c: u8) -> bool {
        c == b' ' || c == b'\t'
    }
    /// Anything on the same line.
    pub fn line(c: u8) -> bool {
        c != b'\n'
    }
    /// E-mail local-part characters.
    pub fn email_local(c: u8) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
    }
    /// Hex digits.
    pub fn hex(c: u8) -> bool {
        c.is_ascii_hexdigit()
    }
    /// Identifier characters (`a-z0-9_.-`).
    pub fn ident(c: u8) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
    }
    /// ASCII digits.
    pub fn digit(c: u8) -> bool {
        c.is_ascii_digit()
    }
    /// ASCII letters or blanks.
    pub fn word_blank(c: u8) -> bool {
        c.is_ascii_alphabetic() || c == b' ' || c == b'\t'
    }
    /// Never (anchored exactly at the trigger).
    pub fn none(_: u8) -> bool {
        false
    }
}

/// Trigger list meaning "every run of ASCII digits".
pub(crate) const DIGITS: &[&str] = &["<digit-run>"];

/// Builds a rule without a window (literal prefixes are extracted from the pattern).
pub(crate) fn rule(
    kind: &'static str,
    rule: &'static str,
    pattern: &'static str,
    score: f32,
    severity: Severity,
) -> Rule {
    Rule {
        kind,
        rule,
        pattern,
        score,
        severity,
        window: None,
        back: None,
    }
}

/// Sets the trigger window of the rule with id `id`.
pub(crate) fn set_window(
    rules: &mut [Rule],
    id: &str,
    triggers: &'static [&'static str],
    back: usize,
    fwd: usize,
) {
    for r in rules.iter_mut().filter(|r| r.rule == id) {
        r.window = Some(Window {
            triggers,
            back,
            fwd,
        });
    }
}

/// How a rule's candidates are found.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Anchored at every occurrence of an extracted prefix literal.
    Prefix,
    /// Unanchored in a window around trigger words.
    Window { back: usize, fwd: usize },
    /// Anchored after walking back from a manual trigger (and at the start of the text).
    /// (`class` is the walk-back class as a byte set, tested without a call.)
    Back { class: ByteSet, max: usize },
    /// Anchored at (and up to `back` bytes before) the start of every ASCII digit run.
    DigitRun { back: usize },
    /// Unanchored over the whole text (no usable literal; avoided).
    Full,
}

/// A set of bytes (256 bits).
#[derive(Clone, Copy, Debug)]
struct ByteSet([u64; 4]);

impl ByteSet {
    /// The bytes for which `f` holds.
    fn of(f: fn(u8) -> bool) -> ByteSet {
        let mut set = [0u64; 4];
        for c in 0..=255u8 {
            if f(c) {
                set[usize::from(c >> 6)] |= 1 << (c & 63);
            }
        }
        ByteSet(set)
    }

    #[inline]
    fn has(&self, c: u8) -> bool {
        self.0[usize::from(c >> 6)] & (1 << (c & 63)) != 0
    }
}

/// What must hold where a match starts (from the pattern's first assertion).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Start {
    /// Nothing known.
    Any,
    /// An ASCII word boundary (`(?-u:\b)`).
    WordBoundary,
    /// A line start (`(?mR)^`).
    Line,
    /// The start of the text (`\A`).
    Text,
}

impl Start {
    fn of(h: &Hir) -> Start {
        use regex_syntax::hir::{HirKind, Look};
        match h.kind() {
            HirKind::Look(Look::WordAscii) => Start::WordBoundary,
            HirKind::Look(Look::StartCRLF) => Start::Line,
            HirKind::Look(Look::Start) => Start::Text,
            HirKind::Concat(v) => v.first().map_or(Start::Any, Start::of),
            HirKind::Capture(c) => Start::of(&c.sub),
            HirKind::Repetition(r) if r.min >= 1 => Start::of(&r.sub),
            HirKind::Alternation(v) => {
                let first = v.first().map_or(Start::Any, Start::of);
                if v.iter().all(|b| Start::of(b) == first) {
                    first
                } else {
                    Start::Any
                }
            }
            _ => Start::Any,
        }
    }

    /// Whether a match may start at `p` (the assertion's exact condition).
    #[inline]
    fn holds(self, b: &[u8], p: usize) -> bool {
        fn word(c: u8) -> bool {
            c.is_ascii_alphanumeric() || c == b'_'
        }
        match self {
            Start::Any => true,
            Start::WordBoundary => {
                let before = p > 0 && word(b[p - 1]);
                let after = p < b.len() && word(b[p]);
                before != after
            }
            Start::Line => {
                p == 0
                    || b[p - 1] == b'\n'
                    || (b[p - 1] == b'\r' && b.get(p).is_none_or(|&c| c != b'\n'))
            }
            Start::Text => p == 0,
        }
    }
}

/// Longest prefix literal of a rule the scanner looks for (the longest literal
/// [`gate::prefix_literals`] extracts).
const PREFIX_LEN: usize = 8;

/// Most rules a table can hold for [`Table::each_overlapping`] (beyond it, hits never
/// overlap).
const MAX_RULES: usize = 128;

/// Per-thread search state of a table: one lazy DFA cache per rule (for the anchored
/// candidate checks), and PikeVM / backtracker caches and capture slots (all created on
/// first use: most rules never get a candidate, and only rules with a `v` group and the
/// rare fallbacks need the others).
struct Caches {
    dfa: Vec<Option<DfaCache>>,
    vm: Vec<Option<PikeCache>>,
    bt: Vec<Option<BacktrackCache>>,
    caps: Vec<Option<Captures>>,
}

/// A rule's lazy DFA cache, with the anchored start states already looked up for each
/// ASCII look-behind class (valid while the cache has not been cleared since).
struct DfaCache {
    cache: LazyCache,
    /// `cache.clear_count()` when `starts` was filled.
    clears: usize,
    /// By look-behind: none (text start), `\n`, `\r`, ASCII word byte, other ASCII byte.
    starts: [Option<regex_automata::hybrid::LazyStateID>; 5],
}

impl DfaCache {
    fn new(dfa: &LazyDfa) -> DfaCache {
        DfaCache {
            cache: LazyCache::new(dfa),
            clears: 0,
            starts: [None; 5],
        }
    }

    /// The anchored start state for a match starting at `start` in `text` (`Err` where the
    /// lazy DFA cannot answer). The start state depends only on the class of the byte
    /// before (as in `regex-automata`'s start byte map); non-ASCII bytes take the full path.
    #[inline]
    fn start(
        &mut self,
        dfa: &LazyDfa,
        text: &[u8],
        start: usize,
    ) -> Result<regex_automata::hybrid::LazyStateID, ()> {
        let lb = start.checked_sub(1).and_then(|i| text.get(i)).copied();
        let class = match lb {
            None => 0,
            Some(b'\n') => 1,
            Some(b'\r') => 2,
            Some(c) if c.is_ascii_alphanumeric() || c == b'_' => 3,
            Some(c) if c.is_ascii() => 4,
            Some(_) => {
                let config = regex_automata::util::start::Config::new()
                    .anchored(Anchored::Yes)
                    .look_behind(lb);
                return dfa.start_state(&mut self.cache, &config).map_err(drop);
            }
        };
        if self.clears != self.cache.clear_count() {
            self.starts = [None; 5];
            self.clears = self.cache.clear_count();
        }
        if let Some(sid) = self.starts[class] {
            return Ok(sid);
        }
        let config = regex_automata::util::start::Config::new()
            .anchored(Anchored::Yes)
            .look_behind(lb);
        let sid = dfa.start_state(&mut self.cache, &config).map_err(drop)?;
        if self.clears != self.cache.clear_count() {
            self.starts = [None; 5];
            self.clears = self.cache.clear_count();
        }
        self.starts[class] = Some(sid);
        Ok(sid)
    }
}

/// Creates a table's [`Caches`].
type CachesFn = Box<dyn Fn() -> Caches + Send + Sync + UnwindSafe + RefUnwindSafe>;

/// Syntax options of every rule pattern.
fn syntax_config() -> syntax::Config {
    syntax::Config::new().multi_line(true).crlf(true)
}

/// Compiles a (normalised) rule pattern to its Thompson NFA, with capture states only where
/// a `v` group has to be reported (`captures`), otherwise just the implicit match group.
fn compile_nfa(pattern: &str, captures: bool) -> Result<NFA, thompson::BuildError> {
    thompson::Compiler::new()
        .syntax(syntax_config())
        .configure(
            thompson::Config::new()
                .nfa_size_limit(Some(32 * (1 << 20)))
                .which_captures(if captures {
                    WhichCaptures::All
                } else {
                    WhichCaptures::Implicit
                }),
        )
        .build(pattern)
}

/// Builds the forward lazy DFA of a rule's NFA, configured like the lazy DFA inside
/// `meta::Regex` (it gives up or quits in the same situations; the caller then falls back
/// to the PikeVM). `None` if it cannot be built.
fn lazy_dfa_of(nfa: &NFA) -> Option<LazyDfa> {
    LazyDfa::builder()
        .configure(
            LazyDfa::config()
                .match_kind(regex_automata::MatchKind::LeftmostFirst)
                .unicode_word_boundary(true)
                .cache_capacity(2 * (1 << 20))
                .skip_cache_capacity_check(false)
                .minimum_cache_clear_count(Some(3))
                .minimum_bytes_per_state(Some(10)),
        )
        .build_from_nfa(nfa.clone())
        .ok()
}

/// [`lazy_dfa_of`] a pattern (tests).
#[cfg(test)]
fn lazy_dfa(pattern: &str) -> Option<LazyDfa> {
    lazy_dfa_of(&compile_nfa(pattern, false).ok()?)
}

/// Whether `h` has a capture group named `name`.
fn has_named_group(h: &Hir, name: &str) -> bool {
    use regex_syntax::hir::HirKind;
    match h.kind() {
        HirKind::Capture(c) => c.name.as_deref() == Some(name) || has_named_group(&c.sub, name),
        HirKind::Repetition(r) => has_named_group(&r.sub, name),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().any(|x| has_named_group(x, name)),
        _ => false,
    }
}

/// For a pattern whose `v` group ends it (`…X(?P<v>C+)`, `C` one character class, any
/// repetition of at least one) where every match of the part `X` before the group ends
/// with a character outside `C`: the class `C`. In every match, the group then is exactly
/// the longest run of `C` characters ending at the match's end (the character before the
/// group ends `X`, so it is not in `C`), whatever the priorities of the repetitions.
/// `None` for other shapes.
fn v_tail_class(h: &Hir) -> Option<regex_syntax::hir::ClassUnicode> {
    use regex_syntax::hir::{Class, HirKind};
    let HirKind::Concat(parts) = h.kind() else {
        return None;
    };
    let [.., before, last] = parts.as_slice() else {
        return None;
    };
    let HirKind::Capture(cap) = last.kind() else {
        return None;
    };
    if cap.name.as_deref() != Some("v") || has_named_group(before, "v") {
        return None;
    }
    let HirKind::Repetition(rep) = cap.sub.kind() else {
        return None;
    };
    if rep.min == 0 {
        return None;
    }
    let HirKind::Class(Class::Unicode(c)) = rep.sub.kind() else {
        return None;
    };
    let mut both = last_chars(before)?;
    both.intersect(c);
    both.ranges().is_empty().then(|| c.clone())
}

/// The characters every non-empty match of `h` can end with, or `None` when `h` can
/// match the empty string or this is not known.
fn last_chars(h: &Hir) -> Option<regex_syntax::hir::ClassUnicode> {
    use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, HirKind};
    match h.kind() {
        HirKind::Literal(l) => {
            let c = std::str::from_utf8(&l.0).ok()?.chars().next_back()?;
            Some(ClassUnicode::new([ClassUnicodeRange::new(c, c)]))
        }
        HirKind::Class(Class::Unicode(c)) if !c.ranges().is_empty() => Some(c.clone()),
        HirKind::Class(Class::Bytes(c)) if !c.ranges().is_empty() => c.to_unicode_class(),
        HirKind::Repetition(r) if r.min >= 1 => last_chars(&r.sub),
        HirKind::Capture(c) => last_chars(&c.sub),
        HirKind::Concat(v) => last_chars(v.last()?),
        HirKind::Alternation(v) => {
            let mut out = ClassUnicode::empty();
            for b in v {
                out.union(&last_chars(b)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// The line cap of a pattern `^[ \t]*X[ \t]*$` (multi-line anchors, `\n` or, in CRLF
/// mode, `\r` ending a line) whose `X` cannot match a line feed and matches at most `C`
/// characters: `Some(C)`. A match starting at
/// `pos` then covers the rest of its line, so where that line, leading blanks skipped, has
/// more than `C` characters before its trailing blanks, no match starts at `pos`
/// ([`beyond_line_cap`]) — found by a byte search instead of a walk of the DFA to the
/// end of the line or to the end of `X`'s bounded repetition (`[^\n]{3,200}`).
fn line_cap(h: &Hir) -> Option<usize> {
    use regex_syntax::hir::{HirKind, Look};
    let HirKind::Concat(parts) = h.kind() else {
        return None;
    };
    let [rest @ .., blanks, eol] = parts.as_slice() else {
        return None;
    };
    if !matches!(eol.kind(), HirKind::Look(Look::EndLF | Look::EndCRLF)) || !is_blank_run(blanks) {
        return None;
    }
    // a leading `^[ \t]*` is skipped by the check
    let rest = match rest {
        [sol, blanks, x @ ..]
            if matches!(sol.kind(), HirKind::Look(Look::StartLF | Look::StartCRLF))
                && is_blank_run(blanks) =>
        {
            x
        }
        _ => rest,
    };
    if !rest.iter().all(never_newline) {
        return None;
    }
    rest.iter()
        .try_fold(0usize, |a, h| a.checked_add(max_chars(h)?))
}

/// Whether `h` is `[ \t]*`.
fn is_blank_run(h: &Hir) -> bool {
    let regex_syntax::hir::HirKind::Repetition(r) = h.kind() else {
        return false;
    };
    r.min == 0 && r.max.is_none() && gate::is_blank_class(&r.sub)
}

/// Whether no match of `h` contains a line feed.
fn never_newline(h: &Hir) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(l) => !l.0.contains(&b'\n'),
        HirKind::Class(Class::Unicode(c)) => !c
            .ranges()
            .iter()
            .any(|r| r.start() <= '\n' && '\n' <= r.end()),
        HirKind::Class(Class::Bytes(c)) => !c
            .ranges()
            .iter()
            .any(|r| r.start() <= b'\n' && b'\n' <= r.end()),
        HirKind::Repetition(r) => never_newline(&r.sub),
        HirKind::Capture(c) => never_newline(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().all(never_newline),
    }
}

/// The most characters a match of `h` can have (`None`: unbounded). A byte class counts
/// as one character: the cap is only applied to ASCII text.
fn max_chars(h: &Hir) -> Option<usize> {
    use regex_syntax::hir::HirKind;
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(0),
        HirKind::Literal(l) => {
            Some(std::str::from_utf8(&l.0).map_or(l.0.len(), |t| t.chars().count()))
        }
        HirKind::Class(_) => Some(1),
        HirKind::Repetition(r) => max_chars(&r.sub)?.checked_mul(usize::try_from(r.max?).ok()?),
        HirKind::Capture(c) => max_chars(&c.sub),
        HirKind::Concat(v) => v
            .iter()
            .try_fold(0usize, |a, h| a.checked_add(max_chars(h)?)),
        HirKind::Alternation(v) => v.iter().try_fold(0usize, |a, h| Some(a.max(max_chars(h)?))),
    }
}

/// Whether a rule with line cap `cap` (see [`line_cap`]) cannot match at `pos`: after the
/// blanks at `pos`, the next `cap` bytes are ASCII (so `cap` characters) without a line
/// end (`\n`, `\r`), and the first byte past them that is not a blank is not one either — the
/// line goes on past anything the pattern's `X` can match. `false` where this is not known
/// (non-ASCII text, more than 64 blanks): the DFA decides.
#[inline]
fn beyond_line_cap(text: &[u8], pos: usize, cap: usize) -> bool {
    let blank = |c: &u8| *c == b' ' || *c == b'\t';
    let Some(rest) = text.get(pos..) else {
        return false;
    };
    let Some(lead) = rest.iter().take(64).position(|c| !blank(c)) else {
        return false;
    };
    let Some(span) = rest.get(lead..lead + cap) else {
        return false;
    };
    let eol = |c: &u8| *c == b'\n' || *c == b'\r';
    // one pass without an early exit (it vectorises): non-ASCII or a line end
    let stop = span
        .iter()
        .fold(false, |a, &c| a | (c >= 0x80) | (c == b'\n') | (c == b'\r'));
    if stop {
        return false;
    }
    rest.get(lead + cap..)
        .unwrap_or(&[])
        .iter()
        .take(64)
        .find(|c| !blank(c))
        .is_some_and(|c| !eol(c))
}

/// The class of a `v` group that ends its pattern (see [`v_tail_class`]), with its ASCII
/// members as a byte set.
#[derive(Clone, Debug)]
struct TailClass {
    class: regex_syntax::hir::ClassUnicode,
    ascii: ByteSet,
}

impl TailClass {
    fn new(class: regex_syntax::hir::ClassUnicode) -> TailClass {
        let mut set = [0u64; 4];
        for c in 0..128u8 {
            if class_has(&class, char::from(c)) {
                set[usize::from(c >> 6)] |= 1 << (c & 63);
            }
        }
        TailClass {
            class,
            ascii: ByteSet(set),
        }
    }
}

/// The start of the longest run of `class` characters ending at `end` (not before
/// `start`): ASCII bytes by the byte set, other characters by the class.
fn class_run_start(class: &TailClass, text: &str, start: usize, end: usize) -> usize {
    let b = text.as_bytes();
    let mut p = end;
    while p > start {
        let c = b[p - 1];
        if c.is_ascii() {
            if !class.ascii.has(c) {
                return p;
            }
            p -= 1;
            continue;
        }
        match text[start..p].chars().next_back() {
            Some(ch) if class_has(&class.class, ch) => p -= ch.len_utf8(),
            _ => return p,
        }
    }
    p
}

/// Whether `c` is in `class`.
fn class_has(class: &regex_syntax::hir::ClassUnicode, c: char) -> bool {
    class
        .ranges()
        .binary_search_by(|r| {
            if r.end() < c {
                std::cmp::Ordering::Less
            } else if r.start() > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// End of the leftmost-first match of `dfa` anchored at `start` in `text`. The same walk as `hybrid::dfa::DFA::try_search_fwd` without its
/// per-call set-up: matches are delayed by one byte, so a match state reached on the byte at
/// `at` means a match ending at `at`. `Err` where the lazy DFA cannot answer (quit byte,
/// cache gave up); the caller then asks the PikeVM.
#[inline]
#[cfg(test)]
fn dfa_anchored_end(
    dfa: &LazyDfa,
    cache: &mut LazyCache,
    text: &[u8],
    start: usize,
) -> Result<Option<usize>, ()> {
    let config = regex_automata::util::start::Config::new()
        .anchored(Anchored::Yes)
        .look_behind(start.checked_sub(1).and_then(|i| text.get(i)).copied());
    let sid = dfa.start_state(cache, &config).map_err(drop)?;
    dfa_walk(dfa, cache, text, start, sid)
}

/// The walk of [`dfa_anchored_end`] from the anchored start state `sid` for `start`.
#[inline]
fn dfa_walk(
    dfa: &LazyDfa,
    cache: &mut LazyCache,
    text: &[u8],
    start: usize,
    mut sid: regex_automata::hybrid::LazyStateID,
) -> Result<Option<usize>, ()> {
    if sid.is_dead() {
        return Ok(None);
    }
    if sid.is_quit() {
        return Err(());
    }
    let mut last = None;
    let mut at = start;
    loop {
        // fast path: cached transitions between untagged states
        if !sid.is_tagged() {
            while let Some(&b) = text.get(at) {
                let next = dfa.next_state_untagged(cache, sid, b);
                if next.is_tagged() {
                    break;
                }
                sid = next;
                at += 1;
            }
        }
        let Some(&b) = text.get(at) else {
            break;
        };
        // untagged states take the cached transition without the unknown-state check
        let mut next = if sid.is_tagged() {
            dfa.next_state(cache, sid, b).map_err(drop)?
        } else {
            dfa.next_state_untagged(cache, sid, b)
        };
        if next.is_tagged() {
            if next.is_unknown() {
                next = dfa.next_state(cache, sid, b).map_err(drop)?;
            }
            if next.is_dead() {
                return Ok(last);
            }
            if next.is_quit() {
                return Err(());
            }
            if next.is_match() {
                last = Some(at);
            }
        }
        sid = next;
        at += 1;
    }
    sid = dfa.next_eoi_state(cache, sid).map_err(drop)?;
    if sid.is_match() {
        last = Some(text.len());
    }
    Ok(last)
}

/// The first two bytes a match of a rule can start with, from its lazy DFA.
#[derive(Clone, Debug)]
struct StartBytes {
    /// Bit set of possible first bytes.
    first: [u64; 4],
    /// For each first byte, the index in `second` of the possible second bytes.
    second_of: [u8; 256],
    /// Bit sets of second bytes; entry 0 allows every byte.
    second: Vec<[u64; 4]>,
}

impl StartBytes {
    /// No restriction.
    fn any() -> StartBytes {
        StartBytes {
            first: [u64::MAX; 4],
            second_of: [0; 256],
            second: vec![[u64::MAX; 4]],
        }
    }

    /// Whether a match may start at `b[p..]` (`p <= b.len()`).
    #[inline]
    fn allows(&self, b: &[u8], p: usize) -> bool {
        let has = |set: &[u64; 4], c: u8| set[usize::from(c >> 6)] & (1 << (c & 63)) != 0;
        let Some(&c) = b.get(p) else {
            return true;
        };
        if !has(&self.first, c) {
            return false;
        }
        match (
            b.get(p + 1),
            self.second.get(usize::from(self.second_of[usize::from(c)])),
        ) {
            (Some(&c2), Some(set)) => has(set, c2),
            _ => true,
        }
    }

    /// Computed from the anchored start states of `dfa` for every kind of look-behind (text
    /// start, after `\n`, after `\r`, after a word byte, after another byte): a byte is
    /// excluded only where every path goes to the dead state (match and quit states are not
    /// dead, so empty and one-byte matches and quit bytes are kept). No restriction when the
    /// DFA may quit at a start (Unicode word boundaries next to non-ASCII text, where the
    /// PikeVM decides) or anything fails.
    fn of(dfa: &LazyDfa) -> StartBytes {
        let Some((mut cache, anchored)) = anchored_cache(dfa) else {
            return StartBytes::any();
        };
        let mut first = [0u64; 4];
        let mut second_sets = vec![[0u64; 4]; 256];
        for lb in LOOK_BEHINDS {
            let Ok(sid) = dfa.start_state(&mut cache, &anchored.clone().look_behind(lb)) else {
                return StartBytes::any();
            };
            for c in 0..=255u8 {
                let s1 = match dfa.next_state(&mut cache, sid, c) {
                    Ok(n) if n.is_dead() => continue,
                    Ok(n) => n,
                    Err(_) => return StartBytes::any(),
                };
                first[usize::from(c >> 6)] |= 1 << (c & 63);
                let set = &mut second_sets[usize::from(c)];
                if s1.is_match() || s1.is_quit() {
                    *set = [u64::MAX; 4];
                    continue;
                }
                for c2 in 0..=255u8 {
                    match dfa.next_state(&mut cache, s1, c2) {
                        Ok(n) if n.is_dead() => {}
                        Ok(_) => set[usize::from(c2 >> 6)] |= 1 << (c2 & 63),
                        Err(_) => return StartBytes::any(),
                    }
                }
            }
        }
        let mut second = vec![[u64::MAX; 4]];
        let mut second_of = [0u8; 256];
        for (c, set) in second_sets.iter().enumerate() {
            let idx = match second.iter().position(|s| s == set) {
                Some(i) => i,
                None if second.len() < 255 => {
                    second.push(*set);
                    second.len() - 1
                }
                None => 0,
            };
            second_of[c] = idx as u8;
        }
        StartBytes {
            first,
            second_of,
            second,
        }
    }
}

/// The bytes a match of a rule can continue with after a given two-byte start: for the
/// rule's two-byte trigger and prefix literals (the usual candidate starts, e.g. `. ` or
/// `%0`), in both ASCII cases, the third bytes that do not lead its lazy DFA to the dead
/// state. Starts not listed are not restricted.
#[derive(Clone, Debug, Default)]
struct ThirdBytes {
    /// (first byte, second byte, index in `sets`).
    pairs: Vec<(u8, u8, u16)>,
    /// Bit sets of third bytes.
    sets: Vec<[u64; 4]>,
}

impl ThirdBytes {
    /// Whether a match may start at `b[p..]`, as far as its third byte tells.
    #[inline]
    fn allows(&self, b: &[u8], p: usize) -> bool {
        if self.pairs.is_empty() {
            return true;
        }
        let (Some(&c1), Some(&c2), Some(&c3)) = (b.get(p), b.get(p + 1), b.get(p + 2)) else {
            return true;
        };
        for &(x, y, k) in &self.pairs {
            if x == c1 && y == c2 {
                return self
                    .sets
                    .get(usize::from(k))
                    .is_none_or(|set| set[usize::from(c3 >> 6)] & (1 << (c3 & 63)) != 0);
            }
        }
        true
    }

    /// Computed like [`StartBytes::of`], from the anchored start states for every kind of
    /// look-behind: a third byte is excluded only where every path goes to the dead state;
    /// a start after which the DFA matches or quits within two bytes is not restricted,
    /// and nothing is restricted when the DFA may quit at a start or its cache is cleared
    /// meanwhile.
    fn of(dfa: &LazyDfa, lits: &[Vec<u8>]) -> ThirdBytes {
        let mut out = ThirdBytes::default();
        if !lits.iter().any(|l| l.len() == 2) {
            return out;
        }
        let Some((mut cache, anchored)) = anchored_cache(dfa) else {
            return out;
        };
        let clears = cache.clear_count();
        let cases = |c: u8| {
            let (l, u) = (c.to_ascii_lowercase(), c.to_ascii_uppercase());
            if l == u { vec![l] } else { vec![l, u] }
        };
        for l in lits.iter().filter(|l| l.len() == 2) {
            for c1 in cases(l[0]) {
                for c2 in cases(l[1]) {
                    if out.pairs.iter().any(|&(x, y, _)| x == c1 && y == c2) {
                        continue;
                    }
                    let Some(set) = Self::set_after(dfa, &mut cache, &anchored, c1, c2) else {
                        continue;
                    };
                    let k = match out.sets.iter().position(|s| *s == set) {
                        Some(k) => k,
                        None => {
                            out.sets.push(set);
                            out.sets.len() - 1
                        }
                    };
                    let Ok(k) = u16::try_from(k) else {
                        continue;
                    };
                    out.pairs.push((c1, c2, k));
                }
            }
        }
        if cache.clear_count() != clears {
            return ThirdBytes::default();
        }
        out
    }

    /// The possible third bytes after `c1 c2` over all look-behinds, or `None` if they are
    /// not restricted.
    fn set_after(
        dfa: &LazyDfa,
        cache: &mut LazyCache,
        anchored: &regex_automata::util::start::Config,
        c1: u8,
        c2: u8,
    ) -> Option<[u64; 4]> {
        let mut set = [0u64; 4];
        for lb in LOOK_BEHINDS {
            let s0 = dfa
                .start_state(cache, &anchored.clone().look_behind(lb))
                .ok()?;
            let s1 = dfa.next_state(cache, s0, c1).ok()?;
            if s1.is_dead() {
                continue;
            }
            if s1.is_match() || s1.is_quit() || s1.is_unknown() {
                return None;
            }
            let s2 = dfa.next_state(cache, s1, c2).ok()?;
            if s2.is_dead() {
                continue;
            }
            if s2.is_match() || s2.is_quit() || s2.is_unknown() {
                return None;
            }
            for c3 in 0..=255u8 {
                let s3 = dfa.next_state(cache, s2, c3).ok()?;
                if !s3.is_dead() {
                    set[usize::from(c3 >> 6)] |= 1 << (c3 & 63);
                }
            }
        }
        Some(set)
    }
}

/// The byte classes of a lazy DFA (bytes in one class have the same transitions): a
/// representative of each class and the bytes of the class.
fn dfa_classes(dfa: &LazyDfa) -> Vec<(u8, Bytes)> {
    let bc = dfa.byte_classes();
    let mut out: Vec<(u8, Bytes)> = Vec::new();
    let mut slot = [usize::MAX; 256];
    for c in 0..=255u8 {
        let k = usize::from(bc.get(c));
        if slot[k] == usize::MAX {
            slot[k] = out.len();
            out.push((c, [0; 4]));
        }
        if let Some((_, set)) = out.get_mut(slot[k]) {
            set[usize::from(c >> 6)] |= 1 << (c & 63);
        }
    }
    out
}

/// The bytes that can follow `lit` (every ASCII case variant) from one of `states` without
/// the DFA dying: `Some(None)` when not restricted (it can match, quit or is not known
/// inside the literal), `None` when the DFA fails.
fn next_after(
    dfa: &LazyDfa,
    cache: &mut LazyCache,
    classes: &[(u8, Bytes)],
    states: &[regex_automata::hybrid::LazyStateID],
    lit: &[u8],
) -> Option<Option<Bytes>> {
    let mut states = states.to_vec();
    for &c in lit {
        let (lo, up) = (c.to_ascii_lowercase(), c.to_ascii_uppercase());
        let mut next = Vec::new();
        for &s in &states {
            for v in [lo, up] {
                let n = dfa.next_state(cache, s, v).ok()?;
                if n.is_match() || n.is_quit() || n.is_unknown() {
                    return Some(None);
                }
                if !n.is_dead() && !next.contains(&n) {
                    next.push(n);
                }
            }
        }
        states = next;
    }
    let mut set = [0u64; 4];
    for &s in &states {
        for (rep, members) in classes {
            if !dfa.next_state(cache, s, *rep).ok()?.is_dead() {
                for k in 0..4 {
                    set[k] |= members[k];
                }
            }
        }
    }
    Some(Some(set))
}

/// The states `dfa` can be in after at most `max` bytes of `class` from one of `starts`
/// (the starts included), or `None` where that is not worth or not possible to tell (a
/// large class, too many states, a match or quit on the way).
fn walk_states(
    dfa: &LazyDfa,
    cache: &mut LazyCache,
    classes: &[(u8, Bytes)],
    starts: &[regex_automata::hybrid::LazyStateID],
    class: ByteSet,
    max: usize,
) -> Option<Vec<regex_automata::hybrid::LazyStateID>> {
    const MAX_STATES: usize = 512;
    // one byte of the walk-back class per DFA byte class
    let bytes: Vec<u8> = classes
        .iter()
        .filter_map(|(_, members)| (0..=255u8).find(|&c| class.has(c) && has(members, c)))
        .collect();
    let mut seen: std::collections::HashSet<regex_automata::hybrid::LazyStateID> =
        starts.iter().copied().collect();
    let mut out = starts.to_vec();
    let mut frontier = starts.to_vec();
    for _ in 0..max {
        let mut next = Vec::new();
        for &s in &frontier {
            for &c in &bytes {
                let n = dfa.next_state(cache, s, c).ok()?;
                if n.is_match() || n.is_quit() || n.is_unknown() {
                    return None;
                }
                if !n.is_dead() && seen.insert(n) {
                    out.push(n);
                    next.push(n);
                    if out.len() > MAX_STATES {
                        return None;
                    }
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Some(out)
}

/// A compiled rule table.
pub(crate) struct Table {
    pub rules: Vec<Rule>,
    /// PikeVM of each rule: answers where the lazy DFA cannot, and runs window searches.
    vms: Vec<PikeVM>,
    /// Bounded backtracker of each rule with a `v` group (finds the group in a hit's span).
    bts: Vec<Option<BoundedBacktracker>>,
    /// Forward lazy DFA of each rule (the anchored candidate checks); `None` where it could
    /// not be built.
    dfas: Arc<Vec<Option<LazyDfa>>>,
    /// Per-thread caches for `dfas`.
    caches: Pool<Caches, CachesFn>,
    has_group: Vec<bool>,
    /// For a rule whose `v` group ends the pattern as a run of one character class that the
    /// part before it can never end with, that class: the group is then the longest run of
    /// the class ending at the hit's end (see [`v_tail_class`]), found without the
    /// backtracker.
    v_tail: Vec<Option<TailClass>>,
    /// Each rule's line cap (see [`line_cap`]).
    line_caps: Vec<Option<usize>>,
    modes: Vec<Mode>,
    /// Rules with candidates at the start of the text (window and walk-back rules), in
    /// rule order.
    text_start_rules: Vec<u16>,
    /// Rules searched over the whole text ([`Mode::Full`]), in rule order.
    full_rule_ids: Vec<u16>,
    /// Trigger literals of each rule (ASCII lower case), found by the shared scanner.
    triggers: Vec<Vec<Vec<u8>>>,
    starts: Vec<Start>,
    /// The bytes a match of each rule can start with.
    first: Vec<StartBytes>,
    /// The third bytes after the two-byte literal starts of each rule.
    third: Vec<ThirdBytes>,
    /// Parsed patterns, for the gate conditions [`Prefilter::new`] derives; dropped once the
    /// prefilter is built ([`Table::drop_patterns`]).
    hirs: Vec<Hir>,
}

/// What the search does after a hit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Next {
    /// Hit used; continue after it.
    Accept,
    /// Hit rejected; continue after it.
    Skip,
    /// Hit rejected; continue one character after its start.
    Retry,
}

/// A raw hit: rule index and span.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    pub idx: usize,
    pub start: usize,
    pub end: usize,
}

fn pattern_error(
    detector: DetectorKind,
    e: impl std::error::Error + Send + Sync + 'static,
) -> BuildError {
    BuildError::Pattern {
        detector: detector.as_str(),
        source: Box::new(e),
    }
}

impl Table {
    pub fn new(detector: DetectorKind, rules: Vec<Rule>) -> Result<Table, BuildError> {
        let mut vms = Vec::with_capacity(rules.len());
        let mut bts = Vec::with_capacity(rules.len());
        let mut has_group = Vec::with_capacity(rules.len());
        let mut v_tail = Vec::with_capacity(rules.len());
        let mut line_caps = Vec::with_capacity(rules.len());
        let mut modes = Vec::with_capacity(rules.len());
        let mut triggers = Vec::with_capacity(rules.len());
        let mut starts = Vec::with_capacity(rules.len());
        let mut hirs = Vec::with_capacity(rules.len());
        let mut dfas = Vec::with_capacity(rules.len());
        let mut first = Vec::with_capacity(rules.len());
        let mut third = Vec::with_capacity(rules.len());
        for r in &rules {
            // Patterns go through the same folding as the text (accents, look-alikes), and
            // word boundaries are ASCII so the lazy DFA can run on any haystack.
            let pat = crate::normalize::normalize(r.pattern)
                .text
                .replace(r"\b", r"(?-u:\b)");
            let hir = gate::parse(&pat).map_err(|e| pattern_error(detector, e))?;
            let group = has_named_group(&hir, "v");
            let nfa = compile_nfa(&pat, group).map_err(|e| pattern_error(detector, e))?;
            let dfa = lazy_dfa_of(&nfa);
            first.push(dfa.as_ref().map_or_else(StartBytes::any, StartBytes::of));
            dfas.push(dfa);
            has_group.push(group);
            v_tail.push(if group {
                v_tail_class(&hir).map(TailClass::new)
            } else {
                None
            });
            line_caps.push(line_cap(&hir));
            bts.push(if group {
                Some(
                    BoundedBacktracker::new_from_nfa(nfa.clone())
                        .map_err(|e| pattern_error(detector, e))?,
                )
            } else {
                None
            });
            vms.push(PikeVM::new_from_nfa(nfa).map_err(|e| pattern_error(detector, e))?);
            let lower = |ts: &[&str]| -> Vec<Vec<u8>> {
                ts.iter()
                    .map(|t| t.as_bytes().to_ascii_lowercase())
                    .collect()
            };
            let (mode, src) = if let Some(b) = r.back {
                let mode = Mode::Back {
                    class: ByteSet::of(b.class),
                    max: b.max,
                };
                (mode, lower(b.triggers))
            } else if let Some(w) = r.window.filter(|w| w.triggers == DIGITS) {
                (Mode::DigitRun { back: w.back }, Vec::new())
            } else if let Some(w) = r.window {
                let mode = Mode::Window {
                    back: w.back,
                    fwd: w.fwd,
                };
                (mode, lower(w.triggers))
            } else if let Some(mut lits) = gate::prefix_literals(&hir) {
                // Any superset of the match starts will do: prefixes are cut to
                // [`PREFIX_LEN`] bytes. Longer prefixes cost a few scanner states but fewer
                // occurrences (`the ` is everywhere, `the resp` is not).
                for l in &mut lits {
                    l.truncate(PREFIX_LEN);
                }
                lits.sort();
                lits.dedup();
                (Mode::Prefix, lits)
            } else {
                (Mode::Full, Vec::new())
            };
            third.push(match dfas.last() {
                Some(Some(dfa)) => ThirdBytes::of(dfa, &src),
                _ => ThirdBytes::default(),
            });
            modes.push(mode);
            triggers.push(src);
            starts.push(Start::of(&hir));
            hirs.push(hir);
        }
        let dfas = Arc::new(dfas);
        let n = rules.len();
        // DFA caches too are created on first use: most rules never get a candidate
        let caches: CachesFn = Box::new(move || Caches {
            dfa: (0..n).map(|_| None).collect(),
            vm: (0..n).map(|_| None).collect(),
            bt: (0..n).map(|_| None).collect(),
            caps: (0..n).map(|_| None).collect(),
        });
        let rule_ids = |f: fn(&Mode) -> bool| -> Vec<u16> {
            (0..modes.len())
                .filter(|&i| f(&modes[i]))
                .map(|i| i as u16)
                .collect()
        };
        Ok(Table {
            rules,
            vms,
            bts,
            dfas,
            caches: Pool::new(caches),
            has_group,
            v_tail,
            line_caps,
            text_start_rules: rule_ids(|m| matches!(m, Mode::Window { .. } | Mode::Back { .. })),
            full_rule_ids: rule_ids(|m| matches!(m, Mode::Full)),
            modes,
            triggers,
            starts,
            first,
            third,
            hirs,
        })
    }

    /// Drops the parsed patterns once the prefilter over this table is built (they are
    /// only read by [`Prefilter::new`], and large alternations make them megabytes).
    pub fn drop_patterns(&mut self) {
        self.hirs = Vec::new();
    }

    /// Whether the parsed patterns are still held (tests).
    #[cfg(test)]
    pub fn holds_patterns(&self) -> bool {
        !self.hirs.is_empty()
    }

    /// For a rule whose candidates start at its literal (prefix rules, walk-back rules
    /// that do not walk), the bytes that may follow `lit` (three bytes or more, matched
    /// ASCII-case-insensitively) in a match starting with it: every case variant of `lit`
    /// is walked through the rule's lazy DFA from the anchored start states of every kind of
    /// look-behind, and a byte is kept unless all paths die on it. `None` where nothing is
    /// restricted or the DFA cannot tell (a match or quit within the literal, a quit at a
    /// start, a cache clear meanwhile). (The scan takes these sets from
    /// [`Table::hit_filters`] when the prefilter is built; this is the same for one literal.)
    #[cfg(test)]
    fn follow_set(&self, ri: usize, lit: &[u8]) -> Option<[u64; 4]> {
        if lit.len() < 3 || !self.starts_at_trigger(ri) {
            return None;
        }
        let f = self.hit_filters(ri, &[lit]).pop()??;
        (f.c_next != [u64::MAX; 4]).then_some(f.c_next)
    }

    /// Whether the candidates of rule `ri` start at its prefix or trigger literal (prefix
    /// rules, walk-back rules that do not walk).
    fn starts_at_trigger(&self, ri: usize) -> bool {
        match self.modes.get(ri) {
            Some(Mode::Prefix) => true,
            Some(Mode::Back { class, max }) => *max == 0 || class.0 == [0; 4],
            _ => false,
        }
    }

    /// The [`HitFilter`]s of rule `ri` for its trigger or prefix literals `lits`: which
    /// occurrences of a literal can give the rule a candidate at which it can match, by
    /// the byte before and the byte after the occurrence. A candidate starts at the literal
    /// itself (prefix rules; walk-back rules when the byte before is not in the class): the
    /// byte before must allow the rule's start assertion, and the byte after must not lead
    /// the rule's lazy DFA to the dead state after the literal (every ASCII case variant,
    /// from the anchored start state of every kind of look-behind). A walk-back rule whose
    /// byte before is in its class starts after up to `max` class bytes: the states the DFA
    /// can be in after any such bytes are explored at build time, and the byte after the
    /// literal must go on from one of them. Where the DFA can match or quit inside the
    /// literal (or the walk), the byte after is not restricted. `None` for rules of other
    /// kinds, literals with non-ASCII bytes, and where the DFA cannot tell.
    pub(crate) fn hit_filters(&self, ri: usize, lits: &[&[u8]]) -> Vec<Option<HitFilter>> {
        let mut out = vec![None; lits.len()];
        if self.hit_filters_into(ri, lits, &mut out).is_none() {
            out.fill(None);
        }
        out
    }

    fn hit_filters_into(
        &self,
        ri: usize,
        lits: &[&[u8]],
        out: &mut [Option<HitFilter>],
    ) -> Option<()> {
        const ALL: Bytes = [u64::MAX; 4];
        let walk = match self.modes.get(ri)? {
            Mode::Prefix => None,
            Mode::Back { class, max } if *max == 0 || class.0 == [0; 4] => None,
            Mode::Back { class, max } => Some((*class, *max)),
            _ => return None,
        };
        let dfa = self.dfas.get(ri)?.as_ref()?;
        let classes = dfa_classes(dfa);
        let (mut cache, anchored) = anchored_cache(dfa)?;
        let clears = cache.clear_count();
        let mut starts = Vec::new();
        for lb in LOOK_BEHINDS.iter().copied().chain([Some(0xC3)]) {
            let s = dfa
                .start_state(&mut cache, &anchored.clone().look_behind(lb))
                .ok()?;
            if s.is_match() || s.is_quit() || s.is_unknown() {
                return None;
            }
            if !s.is_dead() && !starts.contains(&s) {
                starts.push(s);
            }
        }
        let walked = walk
            .and_then(|(class, max)| walk_states(dfa, &mut cache, &classes, &starts, class, max));
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let bytes_where = |f: &dyn Fn(u8) -> bool| {
            let mut set = [0u64; 4];
            for c in 0..=255u8 {
                if f(c) {
                    set[usize::from(c >> 6)] |= 1 << (c & 63);
                }
            }
            set
        };
        let not_class = walk.map_or(ALL, |(class, _)| {
            [!class.0[0], !class.0[1], !class.0[2], !class.0[3]]
        });
        for (lit, slot) in lits.iter().zip(out.iter_mut()) {
            let Some(&first) = lit.first().filter(|_| lit.is_ascii()) else {
                continue;
            };
            // c: the candidate starts at the literal
            let start_ok = match self.starts.get(ri)? {
                Start::Any => ALL,
                Start::WordBoundary if word(first) => bytes_where(&|c| !word(c)),
                Start::WordBoundary => bytes_where(&|c| word(c)),
                Start::Line => bytes_where(&|c| c == b'\n' || c == b'\r'),
                Start::Text => [0; 4],
            };
            let mut f = HitFilter::default();
            for k in 0..4 {
                f.c_prev[k] = start_ok[k] & not_class[k];
            }
            f.c_next = next_after(dfa, &mut cache, &classes, &starts, lit)?.unwrap_or(ALL);
            // a: the candidate starts up to `max` class bytes before the literal
            if let Some((class, _)) = walk {
                f.a_prev = class.0;
                f.a_next = match &walked {
                    Some(states) => next_after(dfa, &mut cache, &classes, states, lit)?,
                    None => None,
                }
                .unwrap_or(ALL);
            }
            *slot = Some(f);
        }
        (cache.clear_count() == clears).then_some(())
    }

    /// Ids of rules that run over the whole text (no literal prefix and no window).
    #[cfg(test)]
    pub fn full_rules(&self) -> Vec<&'static str> {
        self.rules
            .iter()
            .zip(&self.modes)
            .filter(|(_, m)| matches!(m, Mode::Full))
            .map(|(r, _)| r.rule)
            .collect()
    }

    /// Pushes candidate `(p, i)` unless the rule's start assertion rules `p` out.
    #[inline(always)]
    fn push(&self, b: &[u8], p: usize, i: u16, cands: &mut Vec<(u32, u16)>) {
        let first_ok = self
            .first
            .get(usize::from(i))
            .is_none_or(|f| f.allows(b, p))
            && self
                .third
                .get(usize::from(i))
                .is_none_or(|t| t.allows(b, p));
        if first_ok && self.starts[usize::from(i)].holds(b, p) {
            cands.push((p as u32, i));
        }
    }

    /// Adds the start-of-text candidates of the open (`open[i]`) window and walk-back rules.
    fn add_text_start(&self, text: &str, open: &[bool], cands: &mut Vec<(u32, u16)>) {
        let b = text.as_bytes();
        for &i in &self.text_start_rules {
            if open[usize::from(i)] {
                self.push(b, 0, i, cands);
            }
        }
    }

    /// Adds the candidates of the open `Full` rules (searched over the whole text).
    fn add_full(&self, text: &str, open: &[bool], cands: &mut Vec<(u32, u16)>) {
        for i in self.full_rule_ids.iter().map(|&i| usize::from(i)) {
            if !open[i] {
                continue;
            }
            let mut guard = self.caches.get();
            let vm = &self.vms[i];
            let cache = guard.vm[i].get_or_insert_with(|| vm.create_cache());
            let mut at = 0;
            while at <= text.len() {
                let Some(m) = vm.find(&mut *cache, Input::new(text).range(at..)) else {
                    break;
                };
                cands.push((m.start() as u32, i as u16));
                at = if m.end() > m.start() {
                    m.end()
                } else {
                    m.end() + 1
                };
            }
        }
    }

    /// Turns one trigger hit of rule `i` (bytes `hs..he`) into candidates.
    fn add_hit(&self, text: &str, i: u16, hs: usize, he: usize, cands: &mut Vec<(u32, u16)>) {
        let b = text.as_bytes();
        match self.modes[usize::from(i)] {
            Mode::Prefix | Mode::Full => self.push(b, hs, i, cands),
            Mode::DigitRun { back } => {
                // the digit run starts at `hs`; a match may also start up to `back` bytes of
                // `+`, `(`, blank or letters before it (not on a blank)
                let mut p = hs;
                while p > 0
                    && hs - p < back
                    && matches!(b[p - 1], b'+' | b'(' | b' ' | b'A'..=b'Z' | b'a'..=b'z')
                {
                    p -= 1;
                }
                if p < hs && b[p] == b' ' {
                    p += 1;
                }
                self.push(b, p, i, cands);
                if p != hs {
                    self.push(b, hs, i, cands);
                }
            }
            Mode::Back { class, max } => {
                // back over at most `max` bytes of the class
                let lo = hs.saturating_sub(max);
                let k = b
                    .get(lo..hs)
                    .map_or(0, |w| w.iter().rev().take_while(|&&c| class.has(c)).count());
                let mut p = hs - k;
                while !text.is_char_boundary(p) {
                    p += 1;
                }
                self.push(b, p, i, cands);
            }
            Mode::Window { back, fwd } => {
                let mut ws = hs.saturating_sub(back);
                while !text.is_char_boundary(ws) {
                    ws += 1;
                }
                let mut we = (he + fwd).min(text.len());
                while !text.is_char_boundary(we) {
                    we -= 1;
                }
                let mut guard = self.caches.get();
                let vm = &self.vms[usize::from(i)];
                let cache = guard.vm[usize::from(i)].get_or_insert_with(|| vm.create_cache());
                let mut at = ws;
                while at <= we {
                    let Some(m) = vm.find(&mut *cache, Input::new(text).range(at..we)) else {
                        break;
                    };
                    cands.push((m.start() as u32, i));
                    at = if m.end() > m.start() {
                        m.end()
                    } else {
                        m.end() + 1
                    };
                }
            }
        }
    }

    /// Calls `f` on each hit, leftmost-first across the table's rules, using the prefilter's
    /// candidates. `f` decides whether the search continues after the hit ([`Next::Accept`],
    /// [`Next::Skip`]) or one character after its start ([`Next::Retry`], so a rejected
    /// candidate does not hide a later overlapping one).
    pub fn each(&self, text: &str, cands: &mut Vec<(u32, u16)>, f: impl FnMut(Hit) -> Next) {
        self.each_impl(text, cands, false, f);
    }

    /// Like [`Table::each`], but hits of *different* rules may overlap (each rule is searched
    /// leftmost-first on its own). Used where every technique should be reported.
    pub fn each_overlapping(
        &self,
        text: &str,
        cands: &mut Vec<(u32, u16)>,
        f: impl FnMut(Hit) -> Next,
    ) {
        self.each_impl(text, cands, true, f);
    }

    fn each_impl(
        &self,
        text: &str,
        cands: &mut Vec<(u32, u16)>,
        per_rule: bool,
        mut f: impl FnMut(Hit) -> Next,
    ) {
        order(cands);
        let per_rule = per_rule && self.rules.len() <= MAX_RULES;
        let mut rule_at = [0usize; MAX_RULES];
        let mut global_at = 0usize;
        let mut guard = self.caches.get();
        let Caches {
            dfa: dfa_caches,
            vm: vm_caches,
            bt: bt_caches,
            caps,
        } = &mut *guard;
        for &(pos, ri) in cands.iter() {
            let pos = pos as usize;
            let idx = usize::from(ri);
            let at = if per_rule {
                &mut rule_at[idx]
            } else {
                &mut global_at
            };
            if pos < *at {
                continue;
            }
            if let Some(Some(cap)) = self.line_caps.get(idx) {
                if beyond_line_cap(text.as_bytes(), pos, *cap) {
                    continue;
                }
            }
            let Some((m_start, m_end)) = self.find_anchored(idx, text, pos, dfa_caches, vm_caches)
            else {
                continue;
            };
            let next_at = if m_end > m_start { m_end } else { m_end + 1 };
            let (mut start, mut end) = (m_start, m_end);
            if let Some(Some(class)) = self.v_tail.get(idx) {
                // the group is the run of its class ending at the hit's end
                start = class_run_start(class, text, m_start, m_end);
            } else if self.has_group[idx] {
                let vm = &self.vms[idx];
                let c = caps[idx].get_or_insert_with(|| vm.create_captures());
                let input = Input::new(text)
                    .range(m_start..m_end)
                    .anchored(Anchored::Yes);
                // as `meta::Regex` does it: the backtracker where the span is short enough,
                // else the PikeVM (both give the leftmost-first captures)
                let done = match &self.bts[idx] {
                    Some(bt) if m_end - m_start <= bt.max_haystack_len() => {
                        let cache = bt_caches[idx].get_or_insert_with(|| bt.create_cache());
                        bt.try_search(cache, &input, c).is_ok()
                    }
                    _ => false,
                };
                if !done {
                    let cache = vm_caches[idx].get_or_insert_with(|| vm.create_cache());
                    vm.search(cache, &input, c);
                }
                match c.get_group_by_name("v") {
                    Some(g) => {
                        start = g.start;
                        end = g.end;
                    }
                    None => {
                        *at = next_at;
                        continue;
                    }
                }
            }
            match f(Hit { idx, start, end }) {
                Next::Accept | Next::Skip => *at = next_at,
                Next::Retry => {
                    let mut n = m_start + 1;
                    while n < text.len() && !text.is_char_boundary(n) {
                        n += 1;
                    }
                    *at = n;
                }
            }
        }
    }

    /// The leftmost-first match of rule `idx` starting exactly at `pos`: the rule's lazy DFA
    /// finds its end; where the DFA cannot answer (not built, gave up, quit on a non-ASCII
    /// byte next to a Unicode word boundary) the PikeVM does.
    #[inline]
    fn find_anchored(
        &self,
        idx: usize,
        text: &str,
        pos: usize,
        caches: &mut [Option<DfaCache>],
        vm_caches: &mut [Option<PikeCache>],
    ) -> Option<(usize, usize)> {
        if let (Some(Some(dfa)), Some(slot)) = (self.dfas.get(idx), caches.get_mut(idx)) {
            let dc = slot.get_or_insert_with(|| DfaCache::new(dfa));
            let b = text.as_bytes();
            let found = dc
                .start(dfa, b, pos)
                .and_then(|sid| dfa_walk(dfa, &mut dc.cache, b, pos, sid));
            match found {
                Ok(None) => return None,
                // an empty match may need the UTF-8 empty-match rules: the PikeVM decides
                Ok(Some(end)) if end > pos => return Some((pos, end)),
                Ok(Some(_)) | Err(()) => {}
            }
        }
        let input = Input::new(text).range(pos..).anchored(Anchored::Yes);
        let vm = &self.vms[idx];
        let cache = vm_caches[idx].get_or_insert_with(|| vm.create_cache());
        vm.find(cache, input).map(|m| (m.start(), m.end()))
    }
}

/// The shared literal scanner and rule gate over several tables.
pub(crate) struct Prefilter {
    scanner: Scanner,
    /// Gate conditions of every rule, tables concatenated.
    gate: Gate,
    /// Index in `conds` of each table's first rule.
    offsets: Vec<usize>,
    /// Table of each rule (tables concatenated).
    rule_table: Vec<u8>,
    /// Scanner literal id of each rot13 marker.
    markers: Vec<u32>,
    /// For each scanner literal `l`, `follow[follow_start[l]..]`, parallel to its targets:
    /// index in `follow_sets` of the bytes that may follow the literal in a match of the
    /// target rule starting with it ([`NO_FOLLOW`]: not restricted).
    follow_start: Vec<u32>,
    follow: Vec<u16>,
    /// Byte sets for `follow`.
    follow_sets: Vec<[u64; 4]>,
    /// Length of each scanner literal.
    lit_len: Vec<u16>,
}

/// [`Prefilter::follow`] of a target whose next byte is not restricted.
const NO_FOLLOW: u16 = u16::MAX;

/// Per-scan buffers, reused through a thread-local pool.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Candidate lists, one per table: (byte position, rule index).
    pub cands: Vec<Vec<(u32, u16)>>,
    /// Bit `i` set when marker `i` (see [`Prefilter::new`]) occurs in the text.
    pub markers: u64,
    /// Scanner literals present in the text.
    present: Vec<u64>,
    /// The same literals as a list.
    found: Vec<u32>,
    /// Gate scratch: leaves that hold, rules with a leaf that holds.
    leaves: Vec<u64>,
    marked: Vec<u16>,
    /// Gate scratch: rules with a leaf that holds.
    touched: Vec<u32>,
    /// For each scanner literal found in the text, the range of `open_targets` holding its
    /// targets (table, rule) that passed the gate.
    lit_open: Vec<(u32, u32)>,
    /// (table, rule, follow-set index) of the open targets.
    open_targets: Vec<(u8, u16, u16)>,
    /// Scanner occurrences of candidate literals.
    hits: Vec<(u32, u32)>,
    /// The scanner's per-lane match states.
    deferred: crate::gate::Deferred,
    /// Whether each rule (tables concatenated) passed the gate.
    open: Vec<bool>,
}

thread_local! {
    static POOL: RefCell<Vec<Scratch>> = const { RefCell::new(Vec::new()) };
}

impl Scratch {
    /// A scratch buffer from the thread-local pool (or a new one).
    pub fn take(tables: usize) -> Scratch {
        let mut s = POOL
            .with(|p| p.try_borrow_mut().ok().and_then(|mut v| v.pop()))
            .unwrap_or_default();
        s.cands.resize_with(tables, Vec::new);
        for c in &mut s.cands {
            c.clear();
        }
        s.markers = 0;
        s
    }

    /// Returns the buffer to the pool.
    pub fn give_back(self) {
        POOL.with(|p| {
            if let Ok(mut v) = p.try_borrow_mut() {
                if v.len() < 8 {
                    v.push(self);
                }
            }
        });
    }
}

impl Prefilter {
    /// `markers` (at most 64, ASCII case-insensitive, at least four bytes each) are reported
    /// as bits of [`Scratch::markers`].
    pub fn new(tables: &[&Table], markers: &[&str]) -> Result<Prefilter, BuildError> {
        let mut lits = Lits::default();
        let mut conds = Vec::new();
        let mut offsets = Vec::with_capacity(tables.len());
        for (ti, t) in tables.iter().enumerate() {
            let ti = u8::try_from(ti).map_err(|e| pattern_error(DetectorKind::Injection, e))?;
            offsets.push(conds.len());
            for (r, trig) in t.triggers.iter().enumerate() {
                // (a table whose patterns were dropped gates nothing: every rule stays open)
                conds.push(
                    t.hirs
                        .get(r)
                        .map_or(gate::Cond::True, |h| gate::rule_cond(h, &mut lits)),
                );
                let ri = u16::try_from(r).map_err(|e| pattern_error(DetectorKind::Injection, e))?;
                // A prefix literal of a rule whose matches start at a word boundary only
                // counts where the byte before gives that boundary.
                let word_start =
                    matches!(t.modes[r], Mode::Prefix) && t.starts[r] == Start::WordBoundary;
                if let Mode::DigitRun { .. } = t.modes[r] {
                    let id = lits.digit_run_id();
                    let lit = &mut lits.lits[id as usize];
                    if !lit.targets.contains(&(ti, ri)) {
                        lit.targets.push((ti, ri));
                    }
                }
                for l in trig {
                    let id = lits.id(l);
                    let lit = &mut lits.lits[id as usize];
                    if !lit.targets.contains(&(ti, ri)) {
                        lit.targets.push((ti, ri));
                    }
                    lit.ctx |= match l.first() {
                        Some(&c) if word_start && gate::is_word(c) => gate::AFTER_NON_WORD,
                        Some(_) if word_start => gate::AFTER_WORD,
                        _ => gate::AFTER_NON_WORD | gate::AFTER_WORD,
                    };
                }
            }
        }
        let markers = markers
            .iter()
            .take(64)
            .filter(|m| m.len() >= gate::MIN_LEN)
            .map(|m| lits.id(m.as_bytes()))
            .collect();
        let gate = Gate::new(&conds, lits.lits.len());
        let rule_table = (0..conds.len())
            .map(|r| offsets.partition_point(|&o| o <= r).saturating_sub(1) as u8)
            .collect();
        // which occurrences of each candidate literal can give one of its rules a candidate
        // (filters computed per rule, then combined per literal)
        let mut by_rule: HashMap<(u8, u16), Vec<u32>> = HashMap::new();
        for (li, l) in lits.lits.iter().enumerate() {
            for &t in &l.targets {
                by_rule.entry(t).or_default().push(li as u32);
            }
        }
        let mut filters: Vec<Option<Option<HitFilter>>> = vec![None; lits.lits.len()];
        let mut single: HashMap<(u32, u8, u16), Bytes> = HashMap::new();
        let mut rules: Vec<_> = by_rule.into_iter().collect();
        rules.sort_unstable();
        for ((ti, ri), ids) in rules {
            let bytes: Vec<&[u8]> = ids
                .iter()
                .map(|&li| lits.lits[li as usize].bytes.as_slice())
                .collect();
            let got = match tables.get(usize::from(ti)) {
                Some(t) => t.hit_filters(usize::from(ri), &bytes),
                None => vec![None; ids.len()],
            };
            for (&li, g) in ids.iter().zip(got) {
                // the byte after a literal of three bytes or more at which a candidate starts
                let at_trigger = tables
                    .get(usize::from(ti))
                    .is_some_and(|t| t.starts_at_trigger(usize::from(ri)));
                match g {
                    Some(g)
                        if at_trigger
                            && g.c_next != [u64::MAX; 4]
                            && lits.lits[li as usize].bytes.len() >= 3 =>
                    {
                        single.insert((li, ti, ri), g.c_next);
                    }
                    _ => {}
                }
                let slot = &mut filters[li as usize];
                *slot = match (*slot, g) {
                    (Some(None), _) | (_, None) => Some(None),
                    (None, Some(g)) => Some(Some(g)),
                    (Some(Some(f)), Some(g)) => Some(Some(f.union(&g))),
                };
            }
        }
        lits.filters = filters.into_iter().map(Option::flatten).collect();
        // the byte after a literal of three bytes or more that starts a candidate (rules
        // anchored at their prefix or trigger)
        let mut follow_sets: Vec<[u64; 4]> = Vec::new();
        let mut follow_start = Vec::with_capacity(lits.lits.len());
        let mut follow = Vec::new();
        for (li, l) in lits.lits.iter().enumerate() {
            follow_start.push(u32::try_from(follow.len()).unwrap_or(u32::MAX));
            follow.extend(l.targets.iter().map(|&(ti, ri)| {
                // the byte after the literal where the candidate starts at it (see
                // `Table::follow_set`), from the rule's hit filter
                let Some(&set) = single.get(&(li as u32, ti, ri)) else {
                    return NO_FOLLOW;
                };
                let k = match follow_sets.iter().position(|s| *s == set) {
                    Some(k) => k,
                    None => {
                        follow_sets.push(set);
                        follow_sets.len() - 1
                    }
                };
                u16::try_from(k)
                    .ok()
                    .filter(|&k| k != NO_FOLLOW)
                    .unwrap_or(NO_FOLLOW)
            }));
        }
        let lit_len = lits
            .lits
            .iter()
            .map(|l| u16::try_from(l.bytes.len()).unwrap_or(u16::MAX))
            .collect();
        Ok(Prefilter {
            lit_len,
            scanner: Scanner::new(lits).map_err(|e| pattern_error(DetectorKind::Injection, e))?,
            gate,
            offsets,
            rule_table,
            markers,
            follow_start,
            follow,
            follow_sets,
        })
    }

    #[cfg(test)]
    pub fn stats(&self) -> String {
        format!(
            "{} scanner literals, {} hit filters",
            self.scanner.lits.len(),
            self.scanner.filter_count()
        )
    }

    #[cfg(test)]
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// Whether rule `rule` of table `table` passed the gate in the last [`Prefilter::collect`]
    /// into `scratch`.
    #[cfg(test)]
    pub fn is_open(&self, scratch: &Scratch, table: usize, rule: usize) -> bool {
        scratch.open[self.offsets[table] + rule]
    }

    /// Walks `text` once and fills `scratch` with every enabled table's candidates.
    /// `enabled[t]` says whether table `t` runs.
    pub fn collect(&self, text: &str, tables: &[&Table], enabled: &[bool], scratch: &mut Scratch) {
        let Scratch {
            cands,
            markers,
            present,
            found,
            leaves,
            marked,
            touched,
            lit_open,
            open_targets,
            hits,
            deferred,
            open,
        } = scratch;
        self.scanner
            .run(text.as_bytes(), present, found, hits, deferred);
        for (mi, &id) in self.markers.iter().enumerate() {
            if present[(id / 64) as usize] & (1 << (id % 64)) != 0 {
                *markers |= 1 << mi;
            }
        }
        // table of each rule (tables concatenated)
        let rule_table = &self.rule_table;
        self.gate.eval(found, leaves, marked, touched, open, |r| {
            rule_table
                .get(r)
                .and_then(|&t| enabled.get(usize::from(t)))
                .copied()
                .unwrap_or(false)
        });
        for (ti, t) in tables.iter().enumerate() {
            if enabled[ti] {
                let off = self.offsets[ti];
                t.add_text_start(text, &open[off..off + t.rules.len()], &mut cands[ti]);
            }
        }
        // Most occurrences are of literals whose rules all failed the gate: list each
        // literal's open targets once per distinct literal, not once per occurrence. Every
        // literal with an occurrence is in `found`, so `lit_open` needs no reset.
        lit_open.resize(self.scanner.lits.len(), (0, 0));
        open_targets.clear();
        for &li in found.iter() {
            let lit = &self.scanner.lits[li as usize];
            let s = open_targets.len() as u32;
            let follow = self
                .follow_start
                .get(li as usize)
                .and_then(|&k| self.follow.get(k as usize..))
                .unwrap_or(&[]);
            for (k, &(ti, ri)) in lit.targets.iter().enumerate() {
                let ok = self
                    .offsets
                    .get(usize::from(ti))
                    .and_then(|&o| open.get(o + usize::from(ri)))
                    .copied()
                    .unwrap_or(false);
                if ok {
                    open_targets.push((ti, ri, follow.get(k).copied().unwrap_or(NO_FOLLOW)));
                }
            }
            lit_open[li as usize] = (s, open_targets.len() as u32);
        }
        for &(pos, li) in hits.iter() {
            let (s, e) = lit_open[li as usize];
            if s == e {
                continue;
            }
            let len = usize::from(self.lit_len[li as usize]);
            let pos = pos as usize;
            let b = text.as_bytes();
            // the byte after the occurrence (a literal starting on an ASCII byte starts the
            // candidate there)
            let next = b
                .get(pos)
                .filter(|c| c.is_ascii())
                .and_then(|_| b.get(pos + len).copied());
            for &(ti, ri, f) in &open_targets[s as usize..e as usize] {
                if let (Some(c), Some(set)) = (next, self.follow_sets.get(usize::from(f))) {
                    if !has(set, c) {
                        continue;
                    }
                }
                let ti = usize::from(ti);
                tables[ti].add_hit(text, ri, pos, pos + len, &mut cands[ti]);
            }
        }
        for (ti, t) in tables.iter().enumerate() {
            if enabled[ti] {
                let off = self.offsets[ti];
                t.add_full(text, &open[off..off + t.rules.len()], &mut cands[ti]);
            }
        }
    }
}

/// Sorts candidates by (position, rule) and removes duplicates. They arrive almost in order
/// (scanner hits are in end-position order; walk-backs and digit-run starts move a candidate back
/// by a few bytes), so an insertion sort does it in about one pass; past a budget of moves
/// (adversarial texts) the standard sort takes over.
fn order(cands: &mut Vec<(u32, u16)>) {
    let key = |&(p, r): &(u32, u16)| (u64::from(p) << 16) | u64::from(r);
    // already in order (the common case): only duplicates to remove
    if cands.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        cands.dedup();
        return;
    }
    let mut budget = 8 * cands.len() + 64;
    for i in 1..cands.len() {
        let x = cands[i];
        let kx = key(&x);
        let mut j = i;
        while j > 0 && key(&cands[j - 1]) > kx {
            cands[j] = cands[j - 1];
            j -= 1;
        }
        cands[j] = x;
        budget = budget.saturating_sub(i - j);
        if budget == 0 {
            cands.sort_unstable_by_key(key);
            break;
        }
    }
    cands.dedup();
}

/// Candidates of `tables` for `text` (unit tests of single detectors). Prefilters are
/// cached per table set (keyed by the first table's address) so tests stay fast.
#[cfg(test)]
pub(crate) fn test_cands(tables: &[&Table], text: &str) -> Vec<Vec<(u32, u16)>> {
    use std::sync::{Arc, Mutex, OnceLock};
    type Cache = Mutex<Vec<(usize, Arc<Prefilter>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = std::ptr::from_ref(tables[0]) as usize;
    let pf = {
        let mut c = CACHE.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap();
        match c.iter().find(|(k, _)| *k == key) {
            Some((_, p)) => Arc::clone(p),
            None => {
                let p = Arc::new(Prefilter::new(tables, &[]).unwrap());
                c.push((key, Arc::clone(&p)));
                p
            }
        }
    };
    let mut s = Scratch::take(tables.len());
    let enabled = vec![true; tables.len()];
    pf.collect(text, tables, &enabled, &mut s);
    s.cands
}

/// Per-rule cost profile of the anchored candidate checks (for `cand_stats`): for each
/// rule index, (candidates, bytes the rule's lazy DFA walks before it stops).
#[cfg(test)]
pub(crate) fn walk_profile(t: &Table, text: &str, cands: &[(u32, u16)]) -> Vec<(usize, usize)> {
    let mut out = vec![(0usize, 0usize); t.rules.len()];
    for &(pos, ri) in cands {
        let i = usize::from(ri);
        out[i].0 += 1;
        let Some(dfa) = &t.dfas[i] else { continue };
        let mut cache = LazyCache::new(dfa);
        let input = Input::new(text)
            .range(pos as usize..)
            .anchored(Anchored::Yes);
        let Ok(mut sid) = dfa.start_state_forward(&mut cache, &input) else {
            continue;
        };
        for &b in &text.as_bytes()[pos as usize..] {
            let Ok(n) = dfa.next_state(&mut cache, sid, b) else {
                break;
            };
            sid = n;
            if sid.is_dead() || sid.is_quit() {
                break;
            }
            out[i].1 += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::{random_text, xorshift};
    use regex_automata::meta::Regex;

    /// `p` as a `meta::Regex` with the rules' syntax (multi-line, CRLF).
    pub(super) fn crlf_regex(p: &str) -> Regex {
        Regex::builder().syntax(syntax_config()).build(p).unwrap()
    }

    /// `lit` with each letter upper- or lower-cased at random.
    fn random_case(lit: &[u8], x: &mut u64) -> String {
        lit.iter()
            .map(|&c| {
                if xorshift(x) % 2 == 0 {
                    char::from(c.to_ascii_uppercase())
                } else {
                    char::from(c)
                }
            })
            .collect()
    }

    #[test]
    fn order_sorts_and_dedups_like_a_full_sort() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut cases: Vec<Vec<(u32, u16)>> = vec![
            vec![],
            vec![(5, 1)],
            vec![(3, 2), (3, 1), (3, 2), (1, 0)],
            // reversed: exhausts the move budget, the full sort takes over
            (0..2000u32).rev().map(|p| (p, (p % 3) as u16)).collect(),
        ];
        for _ in 0..200 {
            // nearly sorted, as the scanner produces them: positions move back a little
            let n = (xorshift(&mut x) % 300) as u32;
            cases.push(
                (0..n)
                    .map(|i| {
                        let r = xorshift(&mut x);
                        let back = (r % 8) as u32;
                        (i.saturating_sub(back) * 3, (r >> 8) as u16 % 5)
                    })
                    .collect(),
            );
        }
        for c in cases {
            let mut want = c.clone();
            want.sort_unstable();
            want.dedup();
            let mut got = c;
            order(&mut got);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn start_bytes_never_exclude_a_match_start() {
        let patterns = [
            r"(?i)(?-u:\b)ignore[ \t]+(?:all|previous)",
            r"[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}",
            r"(?m)^[ \t]*(?:#{1,6})[ \t]*system",
            r"\+?\(?\d{3}\)?[ .\-]?\d{3}",
            r"a?",
            r"(?:x|)yz",
            r"\bcafé\b",
            r"[^.?!\n]{0,20}\?",
        ];
        let alphabet: Vec<char> = "aAbBiIgGnNoOrReE yYzZxX09+().-?#\n\t\r:éÉ"
            .chars()
            .collect();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for p in patterns {
            let pat = crate::normalize::normalize(p)
                .text
                .replace(r"\b", r"(?-u:\b)");
            let dfa = lazy_dfa(&pat).unwrap();
            let re = Regex::builder()
                .syntax(syntax::Config::new().multi_line(true).crlf(true))
                .build(&pat)
                .unwrap();
            let sb = StartBytes::of(&dfa);
            for _ in 0..300 {
                let t = random_text(&mut x, &alphabet, 12);
                for p in (0..=t.len()).filter(|&i| t.is_char_boundary(i)) {
                    let m = re.search(&Input::new(&t).range(p..).anchored(Anchored::Yes));
                    if m.is_some() {
                        assert!(
                            sb.allows(t.as_bytes(), p),
                            "pattern {pat:?} text {t:?} at {p}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn third_bytes_never_exclude_a_match_start() {
        let cases: &[(&str, &[&str])] = &[
            (
                r"(?:\A[ \t]*|[.!?][ \t]+|[.!?][ \t]*\r?\n[ \t]*)(?:How (?:do|is)|What is|Is it)\b[^.?!\n]{0,5}\?",
                &[". ", "? ", ".\n", "! "],
            ),
            (r"(?i)(?-u:\b)ig(?:nore|x)[ \t]+all", &["ig", "iG"]),
            (r"(?:%0a|;)[ \t]*(?:id|cat)\b", &["%0", ";"]),
            (r"\.-(?:[.-]{1,3} ){2}", &[".-", "-."]),
            (r"a?b?", &["ab"]),
            (r"\bcafé\b", &["ca"]),
        ];
        let alphabet: Vec<char> = "aAbBiIgGnNoOrReExXlL .!?\n\t%0;dctHWswhI-éÉ"
            .chars()
            .collect();
        let mut x = 0x5DEE_CE66_D1CE_4E5Bu64;
        for (p, lits) in cases {
            let pat = crate::normalize::normalize(p)
                .text
                .replace(r"\b", r"(?-u:\b)");
            let dfa = lazy_dfa(&pat).unwrap();
            let lits: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
            let tb = ThirdBytes::of(&dfa, &lits);
            let re = Regex::builder()
                .syntax(syntax::Config::new().multi_line(true).crlf(true))
                .build(&pat)
                .unwrap();
            for _ in 0..400 {
                let n = (xorshift(&mut x) % 14) as usize;
                let mut t: String = (0..n)
                    .map(|_| alphabet[(xorshift(&mut x) % alphabet.len() as u64) as usize])
                    .collect();
                // plant a literal start now and then
                if xorshift(&mut x) % 2 == 0 {
                    let l = &lits[(xorshift(&mut x) % lits.len() as u64) as usize];
                    let at = (0..=t.len()).filter(|&i| t.is_char_boundary(i)).count();
                    let at = (0..=t.len())
                        .filter(|&i| t.is_char_boundary(i))
                        .nth((xorshift(&mut x) % at as u64) as usize)
                        .unwrap();
                    t.insert_str(at, std::str::from_utf8(l).unwrap());
                }
                for q in (0..=t.len()).filter(|&i| t.is_char_boundary(i)) {
                    let m = re.search(&Input::new(&t).range(q..).anchored(Anchored::Yes));
                    if m.is_some() {
                        assert!(
                            tb.allows(t.as_bytes(), q),
                            "pattern {pat:?} text {t:?} at {q}"
                        );
                    }
                }
            }
        }
        // the filter does restrict where it can: after `. `, only `H`, `W`, `I` go on
        let (p, lits) = cases[0];
        let dfa = lazy_dfa(&p.replace(r"\b", r"(?-u:\b)")).unwrap();
        let tb = ThirdBytes::of(
            &dfa,
            &lits
                .iter()
                .map(|l| l.as_bytes().to_vec())
                .collect::<Vec<_>>(),
        );
        assert!(tb.allows(b". How is it?", 0));
        assert!(!tb.allows(b". The end?", 0));
    }

    #[test]
    fn follow_sets_never_exclude_a_match() {
        let patterns: &[&'static str] = &[
            r"(?i)\band[ \t]+then[ \t]+(?:follow|run)\b",
            r"(?i)\bthe[ \t]+(?:password|secret)",
            r"How (?:do|is)[ \t]+it",
            r"(?i)ignore(?:d|s)?\b",
            r"(?i)abc(?:|d)",
        ];
        let rules: Vec<Rule> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                rule(
                    "t",
                    ["r0", "r1", "r2", "r3", "r4"][i],
                    p,
                    0.5,
                    Severity::Low,
                )
            })
            .collect();
        let t = Table::new(DetectorKind::Injection, rules).unwrap();
        let alphabet: Vec<char> = "aAnNdDtThHeEpPsSwWoOrRbBcCiIgG \t.,ſé".chars().collect();
        let mut x = 0x0123_4567_89AB_CDEFu64;
        for (ri, p) in patterns.iter().enumerate() {
            let re = Regex::builder()
                .syntax(syntax::Config::new().multi_line(true).crlf(true))
                .build(&p.replace(r"\b", r"(?-u:\b)"))
                .unwrap();
            let lits = t.triggers[ri].clone();
            assert!(!lits.is_empty(), "{p}");
            for lit in &lits {
                let Some(set) = t.follow_set(ri, lit) else {
                    continue;
                };
                for _ in 0..300 {
                    // the literal in random case, then random bytes
                    let mut s = random_case(lit, &mut x);
                    for _ in 0..(xorshift(&mut x) % 12) {
                        s.push(alphabet[(xorshift(&mut x) % alphabet.len() as u64) as usize]);
                    }
                    // a candidate start where the text is the literal
                    let pre = ["", " ", "x", "\n"][(xorshift(&mut x) % 4) as usize];
                    let text = format!("{pre}{s}");
                    let q = pre.len();
                    let m = re.search(&Input::new(&text).range(q..).anchored(Anchored::Yes));
                    if m.is_some() {
                        if let Some(&c) = text.as_bytes().get(q + lit.len()) {
                            assert!(
                                set[usize::from(c >> 6)] & (1 << (c & 63)) != 0,
                                "pattern {p:?} text {text:?}"
                            );
                        }
                    }
                }
            }
        }
        // and it restricts: after `and ` only blanks and `t` go on
        let set = t.follow_set(0, b"and ").unwrap();
        let has = |c: u8| set[usize::from(c >> 6)] & (1 << (c & 63)) != 0;
        assert!(has(b't') && has(b'T') && has(b' ') && !has(b'p'));
    }

    #[test]
    fn anchored_dfa_walk_agrees_with_the_meta_regex() {
        let patterns = [
            r"(?i)(?-u:\b)ignore[ \t]+(?:all|previous)[ \t]+instructions",
            r"\d{3}-\d{2}-\d{4}",
            r"(?m)^[ \t]*system:",
            r"a*",
            r"(?:ab|a)(?:c|bcd)?$",
        ];
        let alphabet: Vec<char> = "aAbBcdiIgGnNoOrRsStT -:0123456789\nl".chars().collect();
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        for p in patterns {
            let dfa = lazy_dfa(p).unwrap();
            let mut cache = LazyCache::new(&dfa);
            let mut dc = DfaCache::new(&dfa);
            let re = crlf_regex(p);
            for _ in 0..300 {
                let t = random_text(&mut x, &alphabet, 40);
                for at in 0..=t.len() {
                    let input = Input::new(&t).range(at..).anchored(Anchored::Yes);
                    let want = re.search(&input).map(|m| m.end());
                    let got = dfa_anchored_end(&dfa, &mut cache, t.as_bytes(), at).unwrap();
                    assert_eq!(got, want, "pattern {p:?} text {t:?} at {at}");
                    // the same through the per-rule cache of start states
                    let b = t.as_bytes();
                    let got = dc
                        .start(&dfa, b, at)
                        .and_then(|sid| dfa_walk(&dfa, &mut dc.cache, b, at, sid))
                        .unwrap();
                    assert_eq!(got, want, "cached start: pattern {p:?} text {t:?} at {at}");
                }
            }
        }
    }

    #[test]
    fn hit_filters_never_drop_a_match() {
        // prefix rules (with and without word boundaries) and walk-back rules, as in the
        // real tables: a filter may drop an occurrence only where no match starts at the
        // candidate the occurrence gives
        fn letter(c: u8) -> bool {
            c.is_ascii_alphabetic()
        }
        let mut rules = vec![
            rule(
                "t",
                "split",
                r"[A-Za-z]+(?:(?:''|\x22\x22|\\|\^)[A-Za-z]+|'[A-Za-z]+'[A-Za-z]*|\x22[A-Za-z]+\x22[A-Za-z]*)+",
                0.5,
                Severity::Low,
            ),
            rule(
                "t",
                "v6",
                r"(?:[0-9A-Fa-f]{1,4}:|::)(?:[0-9A-Fa-f]{0,4}:){1,6}[0-9A-Fa-f]{0,4}",
                0.5,
                Severity::Low,
            ),
            rule(
                "t",
                "sentence",
                r"(?:[.!?][ \t]+)(?:How (?:do|is)|What is|Is it)\b[^.?!\n]{0,9}\?",
                0.5,
                Severity::Low,
            ),
            rule(
                "t",
                "then",
                r"(?i)\band[ \t]+then[ \t]+(?:follow|run)\b",
                0.5,
                Severity::Low,
            ),
            rule(
                "t",
                "semi",
                r"(?:;|%0a)[ \t]*(?:id|cat)\b",
                0.5,
                Severity::Low,
            ),
        ];
        set_back(&mut rules, "split", &["'", "\"", "\\", "^"], letter, 16);
        set_back(&mut rules, "v6", &[":"], class::hex, 4);
        set_back(&mut rules, "semi", &[";", "%0a"], class::none, 0);
        let t = Table::new(DetectorKind::Code, rules.clone()).unwrap();
        let alphabet: Vec<char> = "aAbBcCdDeEfFiIHWsStThHnNoOrRlLuU09:;%.?! \t'\"\\^\nxé"
            .chars()
            .collect();
        let mut x = 0x6A09_E667_F3BC_C909u64;
        let mut dropped = 0;
        for (ri, r) in rules.iter().enumerate() {
            let re = Regex::builder()
                .syntax(syntax::Config::new().multi_line(true).crlf(true))
                .build(&r.pattern.replace(r"\b", r"(?-u:\b)"))
                .unwrap();
            let lits = t.triggers[ri].clone();
            let refs: Vec<&[u8]> = lits.iter().map(Vec::as_slice).collect();
            let filters = t.hit_filters(ri, &refs);
            assert!(filters.iter().any(Option::is_some), "{}", r.rule);
            for (lit, f) in lits.iter().zip(&filters) {
                let Some(f) = f else { continue };
                for _ in 0..1500 {
                    let mut pre: String = (0..xorshift(&mut x) % 8)
                        .map(|_| alphabet[(xorshift(&mut x) % alphabet.len() as u64) as usize])
                        .collect();
                    let q = pre.len();
                    let lit_text = random_case(lit, &mut x);
                    pre.push_str(&lit_text);
                    for _ in 0..xorshift(&mut x) % 10 {
                        pre.push(alphabet[(xorshift(&mut x) % alphabet.len() as u64) as usize]);
                    }
                    let text = pre;
                    let b = text.as_bytes();
                    // the candidate the occurrence gives (as `Table::add_hit` computes it)
                    let p = match t.modes[ri] {
                        Mode::Back { class, max } => {
                            let lo = q.saturating_sub(max);
                            let k = b[lo..q].iter().rev().take_while(|&&c| class.has(c)).count();
                            let mut p = q - k;
                            while !text.is_char_boundary(p) {
                                p += 1;
                            }
                            p
                        }
                        _ => q,
                    };
                    let m = re.search(&Input::new(&text).range(p..).anchored(Anchored::Yes));
                    let prev = q.checked_sub(1).map(|i| b[i]);
                    let next = b.get(q + lit.len()).copied();
                    if m.is_some() {
                        assert!(
                            f.keeps(prev, next),
                            "rule {} literal {:?} text {text:?}",
                            r.rule,
                            String::from_utf8_lossy(lit)
                        );
                    } else if !f.keeps(prev, next) {
                        dropped += 1;
                    }
                }
            }
        }
        // and the filters do drop occurrences
        assert!(dropped > 1000, "{dropped}");
        // `"` of `split` needs a letter before it and a letter or quote after it
        assert!(t.triggers[0].iter().any(|l| l == b"\""));
        let f = t.hit_filters(0, &[b"\""])[0].unwrap();
        assert!(f.keeps(Some(b'o'), Some(b'k')) && f.keeps(Some(b'o'), Some(b'"')));
        assert!(!f.keeps(Some(b' '), Some(b'k')) && !f.keeps(Some(b's'), Some(b':')));
    }

    #[test]
    fn v_group_at_the_end_is_found_without_the_backtracker() {
        let hir = |p: &str| gate::parse(p).unwrap();
        // shapes that qualify, and the class found
        assert!(
            v_tail_class(&hir(
                r"\brm[ \t]+(?:-[A-Za-z]+[ \t]+|--[a-z\-]+[ \t]+)+(?P<v>[^\s;&|]+)"
            ))
            .is_some()
        );
        assert!(v_tail_class(&hir(r"key=(?P<v>[a-z0-9]{8,})")).is_some());
        // the part before may end in the class, the group is not last, or not a run
        assert!(v_tail_class(&hir(r"a[ \t]+(?P<v>[a-z ]+)")).is_none());
        assert!(v_tail_class(&hir(r"x(?P<v>[a-z]+)y")).is_none());
        assert!(v_tail_class(&hir(r"x=(?P<v>[a-z]+==)")).is_none());
        assert!(v_tail_class(&hir(r"x=?(?P<v>[a-z]+)")).is_none());
        // the run equals the backtracker's group on random texts
        let patterns = [
            r"\brm[ \t]+(?:-[A-Za-z]+[ \t]+|--[a-z\-]+[ \t]+)+(?P<v>[^\s;&|]+)",
            r"(?:key|tok)[=:](?P<v>[a-zé0-9]{2,})",
        ];
        let alphabet: Vec<char> = "rmkeytoa-fR =:;|&/.é\u{2028}x09\t\n".chars().collect();
        let mut x = 0xBB67_AE85_84CA_A73Bu64;
        for p in patterns {
            let pat = p.replace(r"\b", r"(?-u:\b)");
            let class = TailClass::new(v_tail_class(&hir(&pat)).unwrap());
            let re = Regex::builder()
                .syntax(syntax::Config::new().multi_line(true).crlf(true))
                .build(&pat)
                .unwrap();
            let mut hits = 0;
            for _ in 0..3000 {
                let mut t: String = if xorshift(&mut x) % 2 == 0 {
                    "rm -rf ".into()
                } else {
                    "key=".into()
                };
                for _ in 0..xorshift(&mut x) % 16 {
                    t.push(alphabet[(xorshift(&mut x) % alphabet.len() as u64) as usize]);
                }
                let mut caps = re.create_captures();
                re.captures(&t, &mut caps);
                let (Some(m), Some(g)) = (caps.get_match(), caps.get_group_by_name("v")) else {
                    continue;
                };
                hits += 1;
                assert_eq!(
                    class_run_start(&class, &t, m.start(), m.end()),
                    g.start,
                    "pattern {p:?} text {t:?}"
                );
            }
            assert!(hits > 100, "{p}: {hits}");
        }
    }
}

#[cfg(test)]
mod line_cap_tests {
    use super::tests::crlf_regex;
    use super::*;
    use crate::test_rng::random_text;

    fn cap(p: &str) -> Option<usize> {
        line_cap(&gate::parse(p).unwrap())
    }

    #[test]
    fn line_caps_of_patterns() {
        assert_eq!(cap(r"(?m)^[ \t]*(?:ab|c)[^\n]{3,20}?[.]?[ \t]*$"), Some(23));
        assert_eq!(
            cap(r"(?m)^[ \t]*(?:please[ \t]{1,4})?ab[^\n]{0,5}[ \t]*$"),
            Some(17)
        );
        // unbounded, a line feed possible, no end of line, not blanks before it
        assert_eq!(cap(r"(?m)^ab[^\n]*[ \t]*$"), None);
        assert_eq!(cap(r"(?m)^ab(?s:.){0,5}[ \t]*$"), None);
        assert_eq!(cap(r"(?m)^ab[^\n]{0,5}[ \t]*"), None);
        assert_eq!(cap(r"(?m)^ab[^\n]{0,5}[ \tx]*$"), None);
        assert_eq!(cap(r"(?m)^ab[\s]{0,5}[ \t]*$"), None);
    }

    #[test]
    fn beyond_line_cap_exact_cases() {
        // cap 5: "ab" + three more characters at most
        assert!(beyond_line_cap(b"abcdefg\n", 0, 5));
        assert!(beyond_line_cap(b"  \tabcdefg", 0, 5));
        assert!(!beyond_line_cap(b"abcde\n", 0, 5));
        assert!(!beyond_line_cap(b"abcde  \t\n", 0, 5));
        assert!(!beyond_line_cap(b"abcde", 0, 5));
        assert!(!beyond_line_cap(b"abc\rdefg", 0, 5));
        assert!(!beyond_line_cap(b"abcde\r\n", 0, 5));
        assert!(beyond_line_cap(b"xx\nabcdefg", 3, 5));
        // non-ASCII: not decided here
        assert!(!beyond_line_cap("ab\u{e9}defgh".as_bytes(), 0, 5));
    }

    #[test]
    fn beyond_line_cap_never_drops_a_match() {
        let patterns = [
            r"(?im)^[ \t]*(?:please[ \t]{1,3})?(?:ab|c)\b[^\n]{1,6}?[.?]?[ \t]*$",
            r"(?m)^[ \t]*a[^\n]{0,4}[ \t]*$",
        ];
        let alphabet: Vec<char> = "abcAB .?\t\n\r\u{e9}please".chars().collect();
        let mut x = 0x0bad_cafe_1234_5678u64;
        let mut dropped = 0;
        for p in patterns {
            let c = cap(p).unwrap();
            let re = crlf_regex(p);
            for _ in 0..3000 {
                let t = random_text(&mut x, &alphabet, 30);
                for at in (0..=t.len()).filter(|&i| t.is_char_boundary(i)) {
                    if beyond_line_cap(t.as_bytes(), at, c) {
                        dropped += 1;
                        let input = Input::new(&t).range(at..).anchored(Anchored::Yes);
                        assert_eq!(re.search(&input), None, "pattern {p:?} text {t:?} at {at}");
                    }
                }
            }
        }
        assert!(dropped > 1000, "only {dropped} positions dropped");
    }
}
