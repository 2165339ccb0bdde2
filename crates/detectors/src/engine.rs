//! Rule tables and the shared literal prefilter.
//!
//! Every rule compiles to its own `regex-automata` meta regex. At build time the literal
//! prefixes every match must start with are extracted from the rule's pattern (`regex-syntax`
//! literal extraction, ASCII case folded, cut to four bytes), and every rule gets a *gate
//! condition* over longer literals it must contain (see [`crate::gate`]). A scan walks the
//! text once with the shared [`Scanner`] ([`Prefilter::collect`]): it learns which literals
//! occur and where the prefixes and trigger words occur. Rules whose gate condition fails
//! cannot match and get no candidates; the others run their regex only *anchored* at the
//! positions where one of their prefixes occurs (and where the pattern's first assertion —
//! word boundary, line start — holds there). Rules whose matches have no usable prefix (a
//! pattern that starts with `^[ \t]*` or a character class) name trigger words and a walk-back
//! class instead ([`Back`]), or start at digit runs. Candidates are replayed in position
//! order, rule order breaking ties, which reproduces leftmost-first semantics of one
//! multi-pattern regex. Any superset of a rule's possible match starts gives the same hits,
//! which is what lets the gate, the cut prefixes and the start assertions skip work without
//! changing a finding.
//!
//! Scratch buffers come from a thread-local pool, so a scan allocates nothing in steady state
//! beyond the findings it returns.

use std::cell::RefCell;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::Hir;

use crate::gate::{self, Cond, Lits, Scanner};
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
    Back { class: fn(u8) -> bool, max: usize },
    /// Anchored at (and up to `back` bytes before) the start of every ASCII digit run.
    DigitRun { back: usize },
    /// Unanchored over the whole text (no usable literal; avoided).
    Full,
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

/// Most rules a table can hold for [`Table::each_overlapping`] (beyond it, hits never
/// overlap).
const MAX_RULES: usize = 128;

/// A compiled rule table.
pub(crate) struct Table {
    pub rules: Vec<Rule>,
    regexes: Vec<Regex>,
    has_group: Vec<bool>,
    modes: Vec<Mode>,
    /// Trigger literals of each rule (ASCII lower case), found by the shared scanner.
    triggers: Vec<Vec<Vec<u8>>>,
    starts: Vec<Start>,
    /// Parsed patterns (for the gate).
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
        let mut regexes = Vec::with_capacity(rules.len());
        let mut has_group = Vec::with_capacity(rules.len());
        let mut modes = Vec::with_capacity(rules.len());
        let mut triggers = Vec::with_capacity(rules.len());
        let mut starts = Vec::with_capacity(rules.len());
        let mut hirs = Vec::with_capacity(rules.len());
        for r in &rules {
            // Patterns go through the same folding as the text (accents, look-alikes), and
            // word boundaries are ASCII so the lazy DFA can run on any haystack.
            let pat = crate::normalize::normalize(r.pattern)
                .text
                .replace(r"\b", r"(?-u:\b)");
            let re = Regex::builder()
                .syntax(syntax::Config::new().multi_line(true).crlf(true))
                .configure(
                    Regex::config()
                        .hybrid_cache_capacity(2 * (1 << 20))
                        .nfa_size_limit(Some(32 * (1 << 20)))
                        .match_kind(regex_automata::MatchKind::LeftmostFirst),
                )
                .build(&pat)
                .map_err(|e| pattern_error(detector, e))?;
            has_group.push(
                re.group_info()
                    .to_index(regex_automata::PatternID::ZERO, "v")
                    .is_some(),
            );
            regexes.push(re);
            let hir = gate::parse(&pat).map_err(|e| pattern_error(detector, e))?;
            let lower = |ts: &[&str]| -> Vec<Vec<u8>> {
                ts.iter()
                    .map(|t| t.as_bytes().to_ascii_lowercase())
                    .collect()
            };
            let (mode, src) = if let Some(b) = r.back {
                let mode = Mode::Back {
                    class: b.class,
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
                // Any superset of the match starts will do: long prefixes are cut to the
                // scanner's four-byte key, which needs no further comparison.
                for l in &mut lits {
                    l.truncate(gate::MIN_LEN);
                }
                lits.sort();
                lits.dedup();
                (Mode::Prefix, lits)
            } else {
                (Mode::Full, Vec::new())
            };
            modes.push(mode);
            triggers.push(src);
            starts.push(Start::of(&hir));
            hirs.push(hir);
        }
        Ok(Table {
            rules,
            regexes,
            has_group,
            modes,
            triggers,
            starts,
            hirs,
        })
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
    #[inline]
    fn push(&self, b: &[u8], p: usize, i: u16, cands: &mut Vec<(u32, u16)>) {
        if self.starts[usize::from(i)].holds(b, p) {
            cands.push((p as u32, i));
        }
    }

    /// Adds the candidates of the open rules (`open[i]`) that do not come from the shared
    /// scanner: digit runs, `Full` rules (searched over the whole text), and the start of
    /// the text for window and walk-back rules.
    fn add_own(&self, text: &str, open: &[bool], cands: &mut Vec<(u32, u16)>) {
        let b = text.as_bytes();
        let mut digit_rules = false;
        for (i, m) in self.modes.iter().enumerate() {
            if !open[i] {
                continue;
            }
            let i16 = i as u16;
            if let Mode::Window { .. } | Mode::Back { .. } = m {
                self.push(b, 0, i16, cands);
            }
            if let Mode::DigitRun { .. } = m {
                digit_rules = true;
            }
            if matches!(m, Mode::Full) {
                let mut at = 0;
                while at <= text.len() {
                    let Some(m) = self.regexes[i].search(&Input::new(text).range(at..)) else {
                        break;
                    };
                    cands.push((m.start() as u32, i16));
                    at = if m.end() > m.start() {
                        m.end()
                    } else {
                        m.end() + 1
                    };
                }
            }
        }
        if digit_rules {
            self.add_digit_runs(b, open, cands);
        }
    }

    /// Candidates of the open digit-run rules: the start of every ASCII digit run, and the
    /// position up to `back` bytes of `+`, `(`, blank or letters before it.
    fn add_digit_runs(&self, b: &[u8], open: &[bool], cands: &mut Vec<(u32, u16)>) {
        let mut j = 0;
        while j < b.len() {
            if !b[j].is_ascii_digit() {
                j += 1;
                continue;
            }
            for (i, m) in self.modes.iter().enumerate() {
                let Mode::DigitRun { back } = *m else {
                    continue;
                };
                if !open[i] {
                    continue;
                }
                let mut p = j;
                while p > 0
                    && j - p < back
                    && matches!(b[p - 1], b'+' | b'(' | b' ' | b'A'..=b'Z' | b'a'..=b'z')
                {
                    p -= 1;
                }
                if p < j && b[p] == b' ' {
                    p += 1;
                }
                self.push(b, p, i as u16, cands);
                if p != j {
                    self.push(b, j, i as u16, cands);
                }
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
    }

    /// Turns one trigger hit of rule `i` (bytes `hs..he`) into candidates.
    fn add_hit(&self, text: &str, i: u16, hs: usize, he: usize, cands: &mut Vec<(u32, u16)>) {
        let b = text.as_bytes();
        match self.modes[usize::from(i)] {
            Mode::Prefix | Mode::Full | Mode::DigitRun { .. } => self.push(b, hs, i, cands),
            Mode::Back { class, max } => {
                let mut p = hs;
                while p > 0 && hs - p < max && class(b[p - 1]) {
                    p -= 1;
                }
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
                let re = &self.regexes[usize::from(i)];
                let mut at = ws;
                while at <= we {
                    let Some(m) = re.search(&Input::new(text).range(at..we)) else {
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
        // (position, rule) order; one integer key compares faster than a tuple
        cands.sort_unstable_by_key(|&(p, r)| (u64::from(p) << 16) | u64::from(r));
        cands.dedup();
        let per_rule = per_rule && self.rules.len() <= MAX_RULES;
        let mut rule_at = [0usize; MAX_RULES];
        let mut global_at = 0usize;
        let mut caps: Option<regex_automata::util::captures::Captures> = None;
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
            let re = &self.regexes[idx];
            let input = Input::new(text).range(pos..).anchored(Anchored::Yes);
            let Some(m) = re.search(&input) else {
                continue;
            };
            let next_at = if m.end() > m.start() {
                m.end()
            } else {
                m.end() + 1
            };
            let (mut start, mut end) = (m.start(), m.end());
            if self.has_group[idx] {
                // captures belong to one regex: a fresh set per hit (hits are rare)
                let c = caps.insert(re.create_captures());
                let input = Input::new(text).range(m.range()).anchored(Anchored::Yes);
                re.search_captures(&input, c);
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
                    let mut n = m.start() + 1;
                    while n < text.len() && !text.is_char_boundary(n) {
                        n += 1;
                    }
                    *at = n;
                }
            }
        }
    }
}

/// The shared literal scanner and rule gate over several tables.
pub(crate) struct Prefilter {
    scanner: Scanner,
    /// Gate condition of every rule, tables concatenated.
    conds: Vec<Cond>,
    /// Index in `conds` of each table's first rule.
    offsets: Vec<usize>,
    /// Scanner literal id of each rot13 marker.
    markers: Vec<u32>,
}

/// Per-scan buffers, reused through a thread-local pool.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Candidate lists, one per table: (byte position, rule index).
    pub cands: Vec<Vec<(u32, u16)>>,
    /// Bit `i` set when marker `i` (see [`Prefilter::new`]) occurs in the text.
    pub markers: u64,
    /// Scanner literals present in the text.
    present: Vec<u64>,
    /// Scanner occurrences of candidate literals.
    hits: Vec<(u32, u32)>,
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
                conds.push(gate::rule_cond(&t.hirs[r], &mut lits));
                let ri = u16::try_from(r).map_err(|e| pattern_error(DetectorKind::Injection, e))?;
                // A prefix literal of a rule whose matches start at a word boundary only
                // counts where the byte before gives that boundary.
                let word_start =
                    matches!(t.modes[r], Mode::Prefix) && t.starts[r] == Start::WordBoundary;
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
        Ok(Prefilter {
            scanner: Scanner::new(lits),
            conds,
            offsets,
            markers,
        })
    }

    #[cfg(test)]
    pub fn stats(&self) -> String {
        format!("{} scanner literals", self.scanner.lits.len())
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
            hits,
            open,
        } = scratch;
        self.scanner.run(text.as_bytes(), present, hits);
        for (mi, &id) in self.markers.iter().enumerate() {
            if present[(id / 64) as usize] & (1 << (id % 64)) != 0 {
                *markers |= 1 << mi;
            }
        }
        open.clear();
        open.resize(self.conds.len(), false);
        for (ti, t) in tables.iter().enumerate() {
            if !enabled[ti] {
                continue;
            }
            let off = self.offsets[ti];
            for ri in 0..t.rules.len() {
                open[off + ri] = self.conds[off + ri].eval(present);
            }
        }
        for &(pos, li) in hits.iter() {
            let lit = &self.scanner.lits[li as usize];
            for &(ti, ri) in &lit.targets {
                let ti = usize::from(ti);
                if open[self.offsets[ti] + usize::from(ri)] {
                    let pos = pos as usize;
                    tables[ti].add_hit(text, ri, pos, pos + lit.bytes.len(), &mut cands[ti]);
                }
            }
        }
        for (ti, t) in tables.iter().enumerate() {
            if enabled[ti] {
                let off = self.offsets[ti];
                t.add_own(text, &open[off..off + t.rules.len()], &mut cands[ti]);
            }
        }
    }
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
