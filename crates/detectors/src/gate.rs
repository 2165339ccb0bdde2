//! The literal scanner and the rule gate.
//!
//! **Gate.** At build time every rule's pattern is reduced to a *necessary condition* over
//! literals: a tree of "one of these literals occurs" leaves combined by AND (a concatenation
//! needs each of its parts) and OR (an alternation needs one of its branches). Literals come
//! from `regex-syntax` prefix extraction of each part after ASCII case folding, so matched
//! ASCII-case-insensitively they cover every way the part can match. Only literals of at
//! least [`MIN_LEN`] bytes are used (shorter ones occur everywhere and decide nothing); a part
//! without such literals is simply not required. A rule whose condition fails on a text
//! cannot match anywhere in it, so none of its candidates is searched. The gate never changes
//! results, it only skips work (a rule without a usable literal is always let through).
//!
//! **Scanner.** All literals of at least four bytes — gate literals, rule prefix literals,
//! trigger words, rot13 markers —, the shorter literals that trigger rules (one to three
//! bytes, counted only in a context given by the byte before) and the ten ASCII digits
//! (starts of digit runs) are found in one pass by a dense Aho-Corasick DFA (ASCII case
//! insensitive, all overlapping occurrences): one byte-class lookup and one transition per
//! text byte. The automaton is built with the `aho-corasick` crate and copied into a table
//! whose match states come first, so a single comparison per byte tells whether any literal
//! ends there; match states are collected in small batches and each lists the meaning of its
//! literals contiguously. All bytes of 0x80 and above share one byte class (the table stays
//! small); literals containing such bytes are compared with the text when the automaton
//! reports them. The pass records which literals occur (a bit set and a list, for the gate,
//! which only evaluates the rules those literals touch) and where candidate literals and
//! digit runs occur (for the rules), in the order of their end positions. An occurrence of a
//! candidate literal is recorded only where its [`HitFilter`] allows (the byte before and the
//! byte after can start a match of one of its rules); the transition table is padded to a
//! power-of-two size and indexed through a mask.

use std::collections::HashMap;

use regex_syntax::hir::literal::{ExtractKind, Extractor, Seq};
use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange};
use regex_syntax::hir::{Hir, HirKind, Repetition};

/// Shortest literal the scanner handles (and the gate requires).
pub(crate) const MIN_LEN: usize = 4;

/// Longest gate literal kept (longer ones are cut; a cut literal is still a valid prefix).
const MAX_LEN: usize = 8;

/// A necessary condition for a rule to match.
#[derive(Clone, Debug)]
pub(crate) enum Cond {
    /// No usable condition: the rule may match anywhere.
    True,
    /// One of these literals (scanner literal ids) occurs.
    Any(Vec<u32>),
    /// Every sub-condition holds.
    All(Vec<Cond>),
    /// One of the sub-conditions holds.
    Or(Vec<Cond>),
}

fn bit(set: &[u64], i: u32) -> bool {
    set.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// A literal of the scanner and what its occurrences mean.
#[derive(Debug, Default)]
pub(crate) struct Lit {
    /// ASCII lower-cased bytes (matched ASCII-case-insensitively).
    pub bytes: Vec<u8>,
    /// `(table, rule)` pairs for which every occurrence is a candidate trigger.
    pub targets: Vec<(u8, u16)>,
    /// For literals shorter than [`MIN_LEN`]: where occurrences count, by the byte before
    /// them ([`AFTER_NON_WORD`], [`AFTER_WORD`]).
    pub ctx: u8,
}

/// A set of bytes (256 bits).
pub(crate) type Bytes = [u64; 4];

/// Whether byte `c` is in `set`.
#[inline]
pub(crate) fn has(set: &Bytes, c: u8) -> bool {
    set[usize::from(c >> 6)] & (1 << (c & 63)) != 0
}

/// Which occurrences of a candidate literal can start a match of one of its target rules,
/// told by the byte before the occurrence and the byte after it: an occurrence is kept if
/// (`a_prev` holds the byte before and `a_next` the byte after) or (`c_prev` … and
/// `c_next` …). The *a* branch is for rules that walk back from their trigger over a byte
/// class (the byte before is in the class), the *c* branch for candidates starting at the
/// literal itself. Occurrences at the start or the end of the text are always kept. Built
/// from the rules' lazy DFAs (see `Table::hit_filter`); a filter only drops occurrences at
/// which no target rule can match, so it changes no finding. Filters of several targets
/// are combined by [`HitFilter::union`] (a superset of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct HitFilter {
    pub a_prev: Bytes,
    pub a_next: Bytes,
    pub c_prev: Bytes,
    pub c_next: Bytes,
}

impl HitFilter {
    /// A filter that keeps an occurrence wherever `self` or `o` keeps it.
    pub fn union(&self, o: &HitFilter) -> HitFilter {
        let or = |a: &Bytes, b: &Bytes| [a[0] | b[0], a[1] | b[1], a[2] | b[2], a[3] | b[3]];
        HitFilter {
            a_prev: or(&self.a_prev, &o.a_prev),
            a_next: or(&self.a_next, &o.a_next),
            c_prev: or(&self.c_prev, &o.c_prev),
            c_next: or(&self.c_next, &o.c_next),
        }
    }

    /// Whether the filter keeps every occurrence.
    pub fn keeps_all(&self) -> bool {
        let all = [u64::MAX; 4];
        (self.a_prev == all && self.a_next == all) || (self.c_prev == all && self.c_next == all)
    }

    /// The filter as two byte tables (see [`Scanner::filters`]).
    fn tables(&self) -> [[u8; 256]; 2] {
        let mut t = [[0u8; 256]; 2];
        for c in 0..=255u8 {
            let i = usize::from(c);
            t[0][i] = u8::from(has(&self.a_prev, c)) | (u8::from(has(&self.c_prev, c)) << 1);
            t[1][i] = u8::from(has(&self.a_next, c)) | (u8::from(has(&self.c_next, c)) << 1);
        }
        t
    }

    /// Whether an occurrence with `prev` before it and `next` after it is kept.
    #[cfg(test)]
    pub fn keeps(&self, prev: Option<u8>, next: Option<u8>) -> bool {
        let (Some(p), Some(n)) = (prev, next) else {
            return true;
        };
        (has(&self.a_prev, p) && has(&self.a_next, n))
            || (has(&self.c_prev, p) && has(&self.c_next, n))
    }
}

/// Context bit: the byte before is not an ASCII word byte (or there is none).
pub(crate) const AFTER_NON_WORD: u8 = 1;
/// Context bit: the byte before is an ASCII word byte.
pub(crate) const AFTER_WORD: u8 = 2;

/// Whether `c` is an ASCII word byte (`[0-9A-Za-z_]`).
pub(crate) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Literal table being built: interns literals (ASCII lower-cased) into ids.
#[derive(Default)]
pub(crate) struct Lits {
    ids: HashMap<Vec<u8>, u32>,
    pub lits: Vec<Lit>,
    /// Id of the pseudo literal "start of an ASCII digit run" (no bytes), once created.
    pub digit_run: Option<u32>,
    /// For each literal (by id; missing: `None`), which occurrences can give a candidate to
    /// one of its targets, by the bytes around them (`None`: every occurrence is recorded).
    /// Moved into the scanner's compact form by [`Scanner::new`].
    pub filters: Vec<Option<HitFilter>>,
}

impl Lits {
    /// Id of the pseudo literal "start of an ASCII digit run" (a digit not preceded by a
    /// digit); the scanner reports its occurrences like those of a literal.
    pub fn digit_run_id(&mut self) -> u32 {
        if let Some(i) = self.digit_run {
            return i;
        }
        let i = self.lits.len() as u32;
        self.lits.push(Lit::default());
        self.digit_run = Some(i);
        i
    }

    /// Id of `lit` (not empty), interning it.
    pub fn id(&mut self, lit: &[u8]) -> u32 {
        let lower = lit.to_ascii_lowercase();
        if let Some(&i) = self.ids.get(&lower) {
            return i;
        }
        let i = self.lits.len() as u32;
        self.ids.insert(lower.clone(), i);
        self.lits.push(Lit {
            bytes: lower,
            ..Lit::default()
        });
        i
    }
}

/// ASCII case folding of a HIR for literal extraction: a class holding an ASCII letter in
/// both cases keeps only the lower case one, and literals are lower-cased. Everything else
/// is kept, so the literals of the folded HIR, matched ASCII-case-insensitively, cover every
/// match of the original (including non-ASCII case variants such as `ſ` or the Kelvin sign).
fn fold(h: &Hir) -> Hir {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => h.clone(),
        HirKind::Literal(l) => Hir::literal(l.0.to_ascii_lowercase()),
        HirKind::Class(Class::Unicode(c)) => {
            let ranges = c.ranges();
            let n: u32 = ranges
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if n > 16 {
                return h.clone();
            }
            let chars: Vec<char> = ranges.iter().flat_map(|r| r.start()..=r.end()).collect();
            let kept = chars
                .iter()
                .copied()
                .filter(|ch| !(ch.is_ascii_uppercase() && chars.contains(&ch.to_ascii_lowercase())))
                .map(|ch| ClassUnicodeRange::new(ch, ch));
            Hir::class(Class::Unicode(ClassUnicode::new(kept)))
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ranges = c.ranges();
            let n: u32 = ranges
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if n > 16 {
                return h.clone();
            }
            let bytes: Vec<u8> = ranges.iter().flat_map(|r| r.start()..=r.end()).collect();
            let kept = bytes
                .iter()
                .copied()
                .filter(|b| !(b.is_ascii_uppercase() && bytes.contains(&b.to_ascii_lowercase())))
                .map(|b| ClassBytesRange::new(b, b));
            Hir::class(Class::Bytes(ClassBytes::new(kept)))
        }
        HirKind::Repetition(_)
        | HirKind::Capture(_)
        | HirKind::Concat(_)
        | HirKind::Alternation(_) => map_children(h, fold),
    }
}

/// `h` with `f` applied to each direct sub-expression (captures are dropped: literal
/// extraction does not need them); leaves are cloned.
fn map_children(h: &Hir, f: fn(&Hir) -> Hir) -> Hir {
    match h.kind() {
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(f(&r.sub)),
        }),
        HirKind::Capture(c) => f(&c.sub),
        HirKind::Concat(v) => Hir::concat(v.iter().map(f).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.iter().map(f).collect()),
        _ => h.clone(),
    }
}

/// Parses a (normalised) rule pattern the way the rule regexes are built.
pub(crate) fn parse(pattern: &str) -> Result<Hir, regex_syntax::Error> {
    regex_syntax::ParserBuilder::new()
        .multi_line(true)
        .crlf(true)
        .build()
        .parse(pattern)
}

/// Prefix literals of a folded HIR: every match starts with one of them (ASCII case
/// insensitively). `None` if some match can start without a literal or there are too many.
fn prefixes(h: &Hir, max_len: usize, total: usize) -> Option<Seq> {
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix)
        .limit_class(16)
        .limit_repeat(4)
        .limit_literal_len(max_len)
        .limit_total(total);
    let mut seq = ex.extract(h);
    seq.dedup();
    let lits = seq.literals()?;
    if lits.is_empty() || lits.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some(seq)
}

/// Whether `h` is the class of exactly a space and a tab.
pub(crate) fn is_blank_class(h: &Hir) -> bool {
    match h.kind() {
        HirKind::Class(Class::Unicode(c)) => {
            c.ranges()
                == [
                    ClassUnicodeRange::new('\t', '\t'),
                    ClassUnicodeRange::new(' ', ' '),
                ]
        }
        HirKind::Class(Class::Bytes(c)) => {
            c.ranges()
                == [
                    ClassBytesRange::new(b'\t', b'\t'),
                    ClassBytesRange::new(b' ', b' '),
                ]
        }
        _ => false,
    }
}

/// The same language with every unbounded blank run (`[ \t]+`, `[ \t]*`) written as
/// "(none,) one space, a space and more blanks, or a tab and any blanks": literal
/// extraction then goes on after a single space instead of stopping at the repetition.
fn split_blank_runs(h: &Hir) -> Hir {
    match h.kind() {
        HirKind::Repetition(r) if r.max.is_none() && r.min <= 1 && is_blank_class(&r.sub) => {
            // (nothing |) a space | a space and more blanks | a tab and any blanks: only a
            // single space continues the literals, the others end them
            let b = (*r.sub).clone();
            let rep = |min| {
                Hir::repetition(Repetition {
                    min,
                    max: None,
                    greedy: r.greedy,
                    sub: Box::new(b.clone()),
                })
            };
            let mut alts = Vec::new();
            if r.min == 0 {
                alts.push(Hir::empty());
            }
            alts.push(Hir::literal(*b" "));
            alts.push(Hir::concat(vec![Hir::literal(*b" "), rep(1)]));
            alts.push(Hir::concat(vec![Hir::literal(*b"\t"), rep(0)]));
            Hir::alternation(alts)
        }
        _ => map_children(h, split_blank_runs),
    }
}

/// Prefix literals (ASCII lower-cased, deduplicated) every match of `hir` starts with, or
/// `None` when some match can start without one.
pub(crate) fn prefix_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let folded = fold(hir);
    let plain = prefixes(&folded, 8, 1000)?;
    // Blank runs split into "one blank" and "two blanks or more": the literals then go on
    // past a single blank (`the firs` instead of `the `), which is far rarer in prose;
    // the same language, so the literals still cover every match. Kept only where no
    // literal gets shorter.
    let seq = match prefixes(&split_blank_runs(&folded), 8, 1000) {
        Some(split)
            if split.min_literal_len() >= plain.min_literal_len()
                && split.len().is_some_and(|n| n <= 256) =>
        {
            split
        }
        _ => plain,
    };
    let mut out: Vec<Vec<u8>> = seq
        .literals()?
        .iter()
        .map(|l| l.as_bytes().to_ascii_lowercase())
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}

/// Literals worth requiring: all at least [`MIN_LEN`] bytes, not too many.
fn strong(h: &Hir) -> Option<Seq> {
    let seq = prefixes(h, MAX_LEN, 256)?;
    let lits = seq.literals()?;
    (lits.len() <= 128 && lits.iter().all(|l| l.len() >= MIN_LEN)).then_some(seq)
}

/// Rank of a literal set: longer shortest literal first, then fewer literals.
fn rank(s: &Seq) -> (usize, std::cmp::Reverse<usize>) {
    (
        s.min_literal_len().unwrap_or(0),
        std::cmp::Reverse(s.len().unwrap_or(usize::MAX)),
    )
}

fn any_of(seq: &Seq, lits: &mut Lits) -> Cond {
    let ids = seq
        .literals()
        .unwrap_or(&[])
        .iter()
        .map(|l| lits.id(l.as_bytes()))
        .collect();
    Cond::Any(ids)
}

/// Whether every literal of `s` is part of a literal of a run in `taken` (a redundant
/// requirement).
fn covered(s: &Seq, taken: &[&Seq]) -> bool {
    s.literals().unwrap_or(&[]).iter().all(|l| {
        taken.iter().any(|t| {
            t.literals()
                .unwrap_or(&[])
                .iter()
                .any(|m| m.as_bytes().windows(l.len()).any(|w| w == l.as_bytes()))
        })
    })
}

/// The gate condition of a (folded) HIR.
fn cond_of(h: &Hir, lits: &mut Lits) -> Cond {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Cond::True,
        HirKind::Literal(_) | HirKind::Class(_) => match strong(h) {
            Some(s) => any_of(&s, lits),
            None => Cond::True,
        },
        HirKind::Capture(c) => cond_of(&c.sub, lits),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                Cond::True
            } else {
                cond_of(&r.sub, lits)
            }
        }
        HirKind::Concat(v) => {
            // Literal runs starting at each part (prefix extraction crosses adjacent parts,
            // so `your[ \t]+answer` yields `your answer`, `your\tanswer`); parts without one
            // contribute their own condition.
            let mut runs: Vec<Seq> = Vec::new();
            let mut all = Vec::new();
            for (i, c) in v.iter().enumerate() {
                match strong(&Hir::concat(v[i..].to_vec())) {
                    Some(s) => {
                        if !runs.contains(&s) {
                            runs.push(s);
                        }
                    }
                    None => {
                        if !matches!(
                            c.kind(),
                            HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_)
                        ) {
                            match cond_of(c, lits) {
                                Cond::True => {}
                                x => all.push(x),
                            }
                        }
                    }
                }
            }
            // The best run, and at most two more rare-looking ones that are not parts of a
            // run already taken.
            runs.sort_by_key(|s| std::cmp::Reverse(rank(s)));
            let mut taken: Vec<&Seq> = Vec::new();
            for s in &runs {
                let rare = s.min_literal_len().unwrap_or(0) > MIN_LEN;
                if taken.is_empty() || (taken.len() < 3 && rare && !covered(s, &taken)) {
                    all.push(any_of(s, lits));
                    taken.push(s);
                }
            }
            match all.len() {
                0 => Cond::True,
                1 => all.pop().unwrap_or(Cond::True),
                _ => Cond::All(all),
            }
        }
        HirKind::Alternation(v) => {
            let mut any = Vec::new();
            for b in v {
                match cond_of(b, lits) {
                    Cond::True => return Cond::True,
                    x => any.push(x),
                }
            }
            Cond::Or(any)
        }
    }
}

/// The gate condition of a rule pattern's HIR, interning its literals into `lits`.
pub(crate) fn rule_cond(hir: &Hir, lits: &mut Lits) -> Cond {
    cond_of(&fold(hir), lits)
}

/// An equivalent, flatter form of a condition: nested ORs and ANDs are flattened, and an
/// OR of literal sets is one literal set (their union), so more rules are decided by the
/// leaf counters of [`Gate::eval`] instead of a tree walk.
fn simplify(c: &Cond) -> Cond {
    match c {
        Cond::True => Cond::True,
        Cond::Any(ids) => Cond::Any(ids.clone()),
        Cond::All(v) => {
            let mut out = Vec::new();
            for x in v.iter().map(simplify) {
                match x {
                    Cond::True => {}
                    Cond::All(w) => out.extend(w),
                    x => out.push(x),
                }
            }
            match out.len() {
                0 => Cond::True,
                1 => out.pop().unwrap_or(Cond::True),
                _ => Cond::All(out),
            }
        }
        Cond::Or(v) => {
            let mut out = Vec::new();
            for x in v.iter().map(simplify) {
                match x {
                    Cond::True => return Cond::True,
                    Cond::Or(w) => out.extend(w),
                    x => out.push(x),
                }
            }
            if out.iter().all(|x| matches!(x, Cond::Any(_))) {
                let mut ids: Vec<u32> = out
                    .iter()
                    .flat_map(|x| match x {
                        Cond::Any(ids) => ids.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                return Cond::Any(ids);
            }
            match out.len() {
                0 => Cond::Or(out),
                1 => out.pop().unwrap_or(Cond::True),
                _ => Cond::Or(out),
            }
        }
    }
}

/// A gate condition compiled for evaluation from the literals found in a text: leaves are
/// numbered, and each literal knows the leaves it satisfies.
#[derive(Debug)]
enum Node {
    True,
    Leaf(u32),
    All(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn eval(&self, leaves: &[u64]) -> bool {
        match self {
            Node::True => true,
            Node::Leaf(i) => bit(leaves, *i),
            Node::All(v) => v.iter().all(|n| n.eval(leaves)),
            Node::Or(v) => v.iter().any(|n| n.eval(leaves)),
        }
    }
}

/// The gate conditions of all rules, evaluated from the list of literals a text contains:
/// only rules one of whose leaves holds (or whose condition needs no literal) are evaluated,
/// so the cost follows the literals found, not the number of rules or literals.
#[derive(Debug)]
pub(crate) struct Gate {
    rules: Vec<Node>,
    /// Rules whose condition holds with no literal present.
    always: Vec<bool>,
    /// The same rules as a list.
    always_ids: Vec<u32>,
    /// How each rule's condition is decided once one of its leaves holds: [`SIMPLE`] (a
    /// leaf, or leaves combined by OR: it holds), `n` (an AND of `n` leaves: it holds when
    /// all `n` do), 0 (evaluate the tree).
    all_of: Vec<u16>,
    /// `lit_starts[l]..lit_starts[l + 1]` indexes `lit_leaves` for literal `l`.
    lit_starts: Vec<u32>,
    lit_leaves: Vec<u32>,
    /// Rule of each leaf.
    leaf_rule: Vec<u32>,
}

impl Gate {
    /// Compiles the conditions of all rules (`conds[r]` for rule `r`) over `n_lits` literals.
    pub fn new(conds: &[Cond], n_lits: usize) -> Gate {
        fn compile(
            c: &Cond,
            rule: u32,
            per_lit: &mut [Vec<u32>],
            leaf_rule: &mut Vec<u32>,
        ) -> Node {
            match c {
                Cond::True => Node::True,
                Cond::Any(ids) => {
                    let leaf = leaf_rule.len() as u32;
                    leaf_rule.push(rule);
                    for &i in ids {
                        if let Some(v) = per_lit.get_mut(i as usize) {
                            if !v.contains(&leaf) {
                                v.push(leaf);
                            }
                        }
                    }
                    Node::Leaf(leaf)
                }
                Cond::All(v) => Node::All(
                    v.iter()
                        .map(|c| compile(c, rule, per_lit, leaf_rule))
                        .collect(),
                ),
                Cond::Or(v) => Node::Or(
                    v.iter()
                        .map(|c| compile(c, rule, per_lit, leaf_rule))
                        .collect(),
                ),
            }
        }
        let mut per_lit = vec![Vec::new(); n_lits];
        let mut leaf_rule = Vec::new();
        let rules: Vec<Node> = conds
            .iter()
            .enumerate()
            .map(|(r, c)| compile(&simplify(c), r as u32, &mut per_lit, &mut leaf_rule))
            .collect();
        let always: Vec<bool> = rules.iter().map(|n| n.eval(&[])).collect();
        let all_of = rules
            .iter()
            .map(|n| match n {
                Node::True | Node::Leaf(_) => SIMPLE,
                Node::Or(v) if v.iter().all(|c| matches!(c, Node::Leaf(_))) => SIMPLE,
                Node::All(v)
                    if v.len() < usize::from(SIMPLE)
                        && v.iter().all(|c| matches!(c, Node::Leaf(_))) =>
                {
                    v.len() as u16
                }
                _ => 0,
            })
            .collect();
        let mut lit_starts = Vec::with_capacity(n_lits + 1);
        let mut lit_leaves = Vec::new();
        for v in &per_lit {
            lit_starts.push(lit_leaves.len() as u32);
            lit_leaves.extend_from_slice(v);
        }
        lit_starts.push(lit_leaves.len() as u32);
        let always_ids = (0..rules.len())
            .filter(|&r| always[r])
            .map(|r| r as u32)
            .collect();
        Gate {
            rules,
            always,
            always_ids,
            all_of,
            lit_starts,
            lit_leaves,
            leaf_rule,
        }
    }

    /// Sets `open[r]` (all rules, tables concatenated) to whether rule `r` is enabled
    /// (`enabled(r)`) and its condition holds, given the literals `found` in the text.
    /// `leaves` and `marked` are scratch space.
    pub fn eval(
        &self,
        found: &[u32],
        leaves: &mut Vec<u64>,
        counts: &mut Vec<u16>,
        touched: &mut Vec<u32>,
        open: &mut Vec<bool>,
        enabled: impl Fn(usize) -> bool,
    ) {
        leaves.clear();
        leaves.resize(self.leaf_rule.len().div_ceil(64), 0);
        // `counts` is all zero between calls (only touched rules are counted, and they are
        // reset below), so it is sized once instead of cleared
        if counts.len() != self.rules.len() {
            counts.clear();
            counts.resize(self.rules.len(), 0);
        }
        touched.clear();
        touched.extend_from_slice(&self.always_ids);
        for &l in found {
            let l = l as usize;
            let (Some(&s), Some(&e)) = (self.lit_starts.get(l), self.lit_starts.get(l + 1)) else {
                continue;
            };
            for &leaf in self.lit_leaves.get(s as usize..e as usize).unwrap_or(&[]) {
                let Some(w) = leaves.get_mut((leaf / 64) as usize) else {
                    continue;
                };
                let bit = 1 << (leaf % 64);
                if *w & bit == 0 {
                    *w |= bit;
                    let r = self.leaf_rule[leaf as usize];
                    if let Some(c) = counts.get_mut(r as usize) {
                        if *c == 0 && !self.always[r as usize] {
                            touched.push(r);
                        }
                        *c += 1;
                    }
                }
            }
        }
        // only rules with a leaf that holds (or needing none) can hold
        if open.len() == self.rules.len() {
            open.fill(false);
        } else {
            open.clear();
            open.resize(self.rules.len(), false);
        }
        for &r in touched.iter() {
            let r = r as usize;
            let (Some(n), Some(c), Some(&need)) =
                (self.rules.get(r), counts.get_mut(r), self.all_of.get(r))
            else {
                continue;
            };
            let c = std::mem::take(c);
            let holds = enabled(r)
                && match need {
                    SIMPLE => true,
                    0 => n.eval(leaves),
                    need => c == need,
                };
            if let Some(o) = open.get_mut(r) {
                *o = holds;
            }
        }
    }
}

/// [`Gate::all_of`] of a rule whose condition holds once one of its leaves does.
const SIMPLE: u16 = u16::MAX;

/// What an occurrence of one scanner pattern means (see [`Scanner`]).
#[derive(Clone, Copy, Debug)]
struct Pat {
    /// Scanner literal id.
    lit: u32,
    /// Pattern length in bytes.
    len: u32,
    /// [`PAT_LONG`], [`PAT_SHORT`] or [`PAT_DIGIT`].
    kind: u8,
    /// For short literals: where occurrences count ([`AFTER_NON_WORD`], [`AFTER_WORD`]).
    ctx: u8,
    /// Whether occurrences are recorded (the literal has targets).
    recorded: bool,
    /// Index in [`Scanner::filters`] of the literal's [`HitFilter`] ([`NO_FILTER`]: none).
    filter: u16,
    /// Whether the literal has bytes of 0x80 and above (the automaton saw them as 0x80): an
    /// occurrence counts only if the text's bytes are the literal's.
    verify: bool,
}

/// [`Pat::filter`] of a literal whose occurrences are all recorded.
const NO_FILTER: u16 = u16::MAX;

/// A literal of [`MIN_LEN`] bytes or more, or a shorter one that counts after any byte:
/// every occurrence marks it present.
const PAT_LONG: u8 = 0;
/// A shorter literal with targets: occurrences count where the byte before allows.
const PAT_SHORT: u8 = 1;
/// An ASCII digit: the start of a digit run where the byte before is not a digit.
const PAT_DIGIT: u8 = 2;

/// One-pass finder for all literals: a dense Aho-Corasick DFA (ASCII case insensitive, all
/// overlapping occurrences) over the literals of [`MIN_LEN`] bytes or more, the shorter
/// literals with targets and the ten ASCII digits (digit-run starts). The automaton is built
/// by the `aho-corasick` crate and copied into a table of our own layout: match states are
/// numbered first, so one comparison per byte says whether anything ends there, and each
/// match state lists the meaning of its patterns ([`Pat`]) contiguously. Each text byte
/// costs one class lookup and one transition.
pub(crate) struct Scanner {
    pub lits: Vec<Lit>,
    /// Byte class of each byte (bytes no literal contains share class 0).
    classes: [u8; 256],
    /// Transitions: `trans[s + classes[b]]` for state `s` (ids are multiples of the stride,
    /// the number of classes).
    trans: Trans,
    /// `ceil(2^32 / stride)`: `(s * recip) >> 32` is the index of state `s`.
    recip: u64,
    /// States with ids below this are match states.
    match_limit: u32,
    /// The start state.
    start: u32,
    /// The longest pattern, in bytes: a walk started this far back is in step.
    span: u32,
    /// `pat_starts[m]..pat_starts[m + 1]` indexes `pats` for match state `m * stride`.
    pat_starts: Vec<u32>,
    pats: Vec<Pat>,
    /// Hit filters of the literals (see [`Pat::filter`]) as two byte tables: for the byte
    /// before an occurrence and the byte after it, bit 0 where the *a* branch holds and
    /// bit 1 where the *c* branch does; an occurrence is kept where the two share a bit.
    filters: Vec<[[u8; 256]; 2]>,
}

/// The scanner's transition table. Tables that fit are padded to a power-of-two size
/// (2^21 or 2^22 entries) so the walk indexes them through a mask instead of a bounds check.
enum Trans {
    Mask21(Box<[u32; 1 << 21]>),
    Mask22(Box<[u32; 1 << 22]>),
    Plain(Vec<u32>),
}

impl Trans {
    /// A zeroed table of at least `len` entries.
    fn zeroed(len: usize) -> Trans {
        fn boxed<const N: usize>() -> Option<Box<[u32; N]>> {
            vec![0u32; N].into_boxed_slice().try_into().ok()
        }
        let t = if len <= 1 << 21 {
            boxed::<{ 1 << 21 }>().map(Trans::Mask21)
        } else if len <= 1 << 22 {
            boxed::<{ 1 << 22 }>().map(Trans::Mask22)
        } else {
            None
        };
        t.unwrap_or_else(|| Trans::Plain(vec![0u32; len]))
    }

    fn as_mut_slice(&mut self) -> &mut [u32] {
        match self {
            Trans::Mask21(t) => &mut t[..],
            Trans::Mask22(t) => &mut t[..],
            Trans::Plain(t) => t,
        }
    }

    #[cfg(test)]
    fn as_slice(&self) -> &[u32] {
        match self {
            Trans::Mask21(t) => &t[..],
            Trans::Mask22(t) => &t[..],
            Trans::Plain(t) => t,
        }
    }
}

/// Where the scanner's occurrences go (see [`Scanner::run`]).
struct Out<'a> {
    present: &'a mut [u64],
    found: &'a mut Vec<u32>,
    hits: &'a mut Vec<(u32, u32)>,
    /// Each lane's match states (end position, state), handled in lane order.
    deferred: &'a mut [Vec<(u32, u32)>; LANES],
}

/// Match states of a walk (end position, state), handled [`BATCH`] at a time.
struct Batch {
    items: [(u32, u32); BATCH],
    n: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            items: [(0, 0); BATCH],
            n: 0,
        }
    }

    /// Adds match state `s` ending at `end`; a full batch is handed to [`Scanner::matched`].
    #[inline(always)]
    fn push(&mut self, sc: &Scanner, text: &[u8], end: u32, s: u32, out: &mut Out<'_>) {
        self.items[self.n % BATCH] = (end, s);
        self.n += 1;
        if self.n == BATCH {
            sc.matched(text, &self.items, out);
            self.n = 0;
        }
    }

    /// The match states not handed over yet.
    fn rest(&self) -> &[(u32, u32)] {
        &self.items[..self.n.min(BATCH)]
    }
}

/// Lanes of the scanner walk (see [`Scanner::walk`]).
pub(crate) const LANES: usize = 4;

/// Bytes per block of the scanner walk (see [`Scanner::walk`]).
const BLOCK: usize = 16 * 1024;

/// Per-lane buffers of the scanner walk, kept between scans.
pub(crate) type Deferred = [Vec<(u32, u32)>; LANES];

/// Sets bit `li` of `present`; a literal seen for the first time is appended to `found`.
#[inline]
fn mark(present: &mut [u64], found: &mut Vec<u32>, li: u32) {
    if let Some(w) = present.get_mut((li / 64) as usize) {
        let bit = 1u64 << (li % 64);
        if *w & bit == 0 {
            *w |= bit;
            found.push(li);
        }
    }
}

/// Match states the scanner collects before handling them.
const BATCH: usize = 32;

/// Error building the scanner automaton.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScannerError {
    /// The Aho-Corasick automaton could not be built.
    #[error("scanner automaton: {0}")]
    Build(#[from] aho_corasick::BuildError),
    /// The automaton has more states than the scanner's 32-bit ids hold.
    #[error("scanner automaton: too many states")]
    TooLarge,
}

impl Scanner {
    /// Counts for tuning (`cand_stats`): states and memory, positions where the automaton
    /// is in a match state, pattern occurrences, and the literals occurring most often.
    #[cfg(test)]
    pub fn profile(&self, text: &[u8]) -> String {
        let mut per: HashMap<String, usize> = HashMap::new();
        let (mut states, mut occ) = (0, 0);
        let mut s = self.start;
        for &b in text {
            s = self.trans.as_slice()[s as usize + usize::from(self.classes[usize::from(b)])];
            if s < self.match_limit {
                states += 1;
                let m = self.index(s);
                for p in &self.pats[self.pat_starts[m] as usize..self.pat_starts[m + 1] as usize] {
                    occ += 1;
                    let key = match p.kind {
                        PAT_DIGIT => "<digit>".to_string(),
                        _ => String::from_utf8_lossy(&self.lits[p.lit as usize].bytes).into_owned(),
                    };
                    *per.entry(key).or_default() += 1;
                }
            }
        }
        let mut v: Vec<_> = per.into_iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v.truncate(40);
        format!(
            "{} bytes: {} patterns, {} states x stride {}, {} KiB; match states {states}, occurrences {occ}; top {v:?}",
            text.len(),
            self.pats.len(),
            self.trans.as_slice().len() / self.stride(),
            self.stride(),
            self.trans.as_slice().len() * 4 / 1024
        )
    }

    /// Number of distinct hit filters (`cand_stats`).
    #[cfg(test)]
    pub fn filter_count(&self) -> usize {
        self.filters.len()
    }

    /// Builds the scanner over `lits`.
    pub fn new(lits: Lits) -> Result<Scanner, ScannerError> {
        use aho_corasick::Anchored;
        use aho_corasick::automaton::Automaton;
        let digit_run = lits.digit_run;
        let lit_filters = lits.filters;
        let lits = lits.lits;
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut meaning = Vec::new();
        let mut filters: Vec<HitFilter> = Vec::new();
        for (i, l) in lits.iter().enumerate() {
            let recorded = !l.targets.is_empty();
            let kind = if l.bytes.len() >= MIN_LEN {
                PAT_LONG
            } else if !l.bytes.is_empty() && recorded && l.ctx == AFTER_NON_WORD | AFTER_WORD {
                // counts after any byte: no context to check
                PAT_LONG
            } else if !l.bytes.is_empty() && recorded && l.ctx != 0 {
                PAT_SHORT
            } else {
                continue;
            };
            let filter = match lit_filters
                .get(i)
                .copied()
                .flatten()
                .filter(|f| recorded && !f.keeps_all())
            {
                Some(f) => match filters.iter().position(|g| *g == f) {
                    Some(k) => u16::try_from(k).unwrap_or(NO_FILTER),
                    None if filters.len() < usize::from(NO_FILTER) => {
                        filters.push(f);
                        (filters.len() - 1) as u16
                    }
                    None => NO_FILTER,
                },
                None => NO_FILTER,
            };
            patterns.push(l.bytes.clone());
            meaning.push(Pat {
                lit: i as u32,
                len: l.bytes.len() as u32,
                kind,
                ctx: l.ctx,
                recorded,
                filter,
                verify: false,
            });
        }
        if let Some(d) =
            digit_run.filter(|&d| lits.get(d as usize).is_some_and(|l| !l.targets.is_empty()))
        {
            for c in b'0'..=b'9' {
                patterns.push(vec![c]);
                meaning.push(Pat {
                    lit: d,
                    len: 1,
                    kind: PAT_DIGIT,
                    ctx: 0,
                    recorded: true,
                    filter: NO_FILTER,
                    verify: false,
                });
            }
        }
        // Byte classes: transitions depend only on which (ASCII case folded) pattern byte a
        // text byte is, if any. To keep the table small, all bytes of 0x80 and above share
        // one class: the automaton is built over patterns with each such byte replaced by
        // 0x80, and occurrences of those patterns are compared with the literal afterwards
        // (`Pat::verify`). Class 0 holds the ASCII bytes no pattern contains.
        let mut used = [false; 0x81];
        for p in &patterns {
            for &c in p {
                used[usize::from(c.to_ascii_lowercase().min(0x80))] = true;
            }
        }
        let mut classes = [0u8; 256];
        let mut reps: Vec<u8> = vec![0];
        for c in 0..=0x80u8 {
            if used[usize::from(c)] && !c.is_ascii_uppercase() {
                classes[usize::from(c)] = reps.len() as u8;
                reps.push(c);
            }
        }
        for c in 0..=255u8 {
            classes[usize::from(c)] = classes[usize::from(c.to_ascii_lowercase().min(0x80))];
        }
        for (m, p) in meaning.iter_mut().zip(&patterns) {
            m.verify = !p.is_ascii();
        }
        let patterns: Vec<Vec<u8>> = patterns
            .iter()
            .map(|p| p.iter().map(|&c| c.min(0x80)).collect())
            .collect();
        // The automaton is only read (its transitions, through `next_state`, which follows
        // failure links), so the compact NFA does: a DFA of the same states would allocate
        // a 256-entry row per state (≈ 18 MB, the largest allocation of a build).
        let ac = aho_corasick::nfa::noncontiguous::Builder::new()
            .match_kind(aho_corasick::MatchKind::Standard)
            .ascii_case_insensitive(true)
            .prefilter(false)
            .build(&patterns)?;
        // Every state, in discovery order from the start state.
        let start = ac
            .start_state(Anchored::No)
            .map_err(|_| ScannerError::TooLarge)?;
        let mut ids: HashMap<aho_corasick::automaton::StateID, usize> = HashMap::new();
        let mut order = vec![start];
        ids.insert(start, 0);
        // (rows are not kept: they are read again from the automaton when the table is
        // filled, which keeps the build's peak memory down)
        let mut i = 0;
        while let Some(&s) = order.get(i) {
            for &c in &reps {
                let n = ac.next_state(Anchored::No, s, c);
                if let std::collections::hash_map::Entry::Vacant(e) = ids.entry(n) {
                    e.insert(order.len());
                    order.push(n);
                }
            }
            i += 1;
        }
        // Match states first.
        let mut rank: Vec<usize> = (0..order.len()).collect();
        rank.sort_by_key(|&k| !ac.is_match(order[k]));
        let mut new_of = vec![0usize; order.len()];
        for (new, &old) in rank.iter().enumerate() {
            new_of[old] = new;
        }
        let n_match = order.iter().filter(|&&s| ac.is_match(s)).count();
        let stride = reps.len();
        let total = order.len() * stride;
        if u32::try_from(total).is_err() {
            return Err(ScannerError::TooLarge);
        }
        let mut table = Trans::zeroed(total);
        let trans = table.as_mut_slice();
        let mut pat_starts = Vec::with_capacity(n_match + 1);
        let mut pats = Vec::new();
        for &old in &rank {
            let base = new_of[old] * stride;
            for (c, &byte) in reps.iter().enumerate() {
                let n = ac.next_state(Anchored::No, order[old], byte);
                trans[base + c] = (ids.get(&n).map_or(0, |&k| new_of[k]) * stride) as u32;
            }
            if ac.is_match(order[old]) {
                pat_starts.push(pats.len() as u32);
                for k in 0..ac.match_len(order[old]) {
                    if let Some(&p) = meaning.get(ac.match_pattern(order[old], k).as_usize()) {
                        pats.push(p);
                    }
                }
            }
        }
        pat_starts.push(pats.len() as u32);
        Ok(Scanner {
            lits,
            classes,
            trans: table,
            recip: (1u64 << 32).div_ceil(stride as u64),
            match_limit: (n_match * stride) as u32,
            start: (new_of[0] * stride) as u32,
            span: patterns.iter().map(Vec::len).max().unwrap_or(0) as u32,
            pat_starts,
            pats,
            filters: filters.iter().map(HitFilter::tables).collect(),
        })
    }

    /// Walks `text` once: sets bit `i` of `present` for every literal `i` that occurs (short
    /// literals only where their context allows) and appends each literal seen to `found`
    /// once, and appends `(position, literal)` to `hits` for each occurrence of a literal
    /// with targets (and each start of an ASCII digit run, as the digit-run pseudo literal),
    /// in the order of their end positions.
    pub fn run(
        &self,
        text: &[u8],
        present: &mut Vec<u64>,
        found: &mut Vec<u32>,
        hits: &mut Vec<(u32, u32)>,
        deferred: &mut Deferred,
    ) {
        present.clear();
        present.resize(self.lits.len().div_ceil(64), 0);
        found.clear();
        hits.clear();
        let mut out = Out {
            present,
            found,
            hits,
            deferred,
        };
        // a table of a power-of-two size is indexed through a mask (no bounds check)
        match &self.trans {
            Trans::Mask21(t) => self.walk(text, |i| t[i & ((1 << 21) - 1)], &mut out),
            Trans::Mask22(t) => self.walk(text, |i| t[i & ((1 << 22) - 1)], &mut out),
            Trans::Plain(t) => self.walk(text, |i| t[i], &mut out),
        }
    }

    /// [`Scanner::run`] in one lane over the whole text: the reference for the lanes.
    #[cfg(test)]
    fn run_one_lane(&self, text: &[u8]) -> (Vec<u64>, Vec<u32>, Vec<(u32, u32)>) {
        let (mut present, mut found, mut hits) = (Vec::new(), Vec::new(), Vec::new());
        present.resize(self.lits.len().div_ceil(64), 0);
        let mut deferred = Deferred::default();
        let mut out = Out {
            present: &mut present,
            found: &mut found,
            hits: &mut hits,
            deferred: &mut deferred,
        };
        let t = self.trans.as_slice();
        self.one_lane(text, 0, text.len(), self.start as usize, |i| t[i], &mut out);
        (present, found, hits)
    }

    /// The walk of [`Scanner::run`] with transition lookup `next` (`trans[i]`).
    ///
    /// Each byte's transition depends on the one before, so a single walk waits for every
    /// table load in turn. The text is therefore walked in blocks of [`BLOCK`] bytes, each
    /// cut into [`LANES`] parts walked at once, whose table loads overlap. A lane other than
    /// the first starts at the start state `span` bytes (the longest pattern) before its
    /// part: by the part's start it is in the state a walk from the text's start would be
    /// in (an automaton state is the longest suffix of the text read that is a pattern
    /// prefix). Each lane keeps only the match states that end in its own part, and the
    /// parts are handled in order, so the occurrences come out as from a single walk.
    #[inline(always)]
    fn walk(&self, text: &[u8], next: impl Fn(usize) -> u32 + Copy, out: &mut Out<'_>) {
        let mut s = self.start as usize;
        let mut lo = 0;
        while lo < text.len() {
            // a short last block joins the one before
            let hi = if text.len() - lo < 2 * BLOCK {
                text.len()
            } else {
                lo + BLOCK
            };
            s = if hi - lo >= LANES * (4 * self.span as usize).max(64) {
                self.lanes(text, lo, hi, s, next, out)
            } else {
                self.one_lane(text, lo, hi, s, next, out)
            };
            lo = hi;
        }
    }

    /// Walks `text[lo..hi]` from state `s` in one lane; returns the state at `hi`.
    #[inline(always)]
    fn one_lane(
        &self,
        text: &[u8],
        lo: usize,
        hi: usize,
        mut s: usize,
        next: impl Fn(usize) -> u32,
        out: &mut Out<'_>,
    ) -> usize {
        let classes = &self.classes;
        let limit = self.match_limit;
        let mut batch = Batch::new();
        for (k, &b) in text.get(lo..hi).unwrap_or(&[]).iter().enumerate() {
            s = next(s + usize::from(classes[usize::from(b)])) as usize;
            if (s as u32) < limit {
                batch.push(self, text, (lo + k + 1) as u32, s as u32, out);
            }
        }
        self.matched(text, batch.rest(), out);
        s
    }

    /// Walks `text[lo..hi]` from state `s` in [`LANES`] lanes (see [`Scanner::walk`]);
    /// returns the state at `hi`. `hi - lo` is at least `LANES * 4 * span`.
    #[inline(always)]
    fn lanes(
        &self,
        text: &[u8],
        lo: usize,
        hi: usize,
        s: usize,
        next: impl Fn(usize) -> u32,
        out: &mut Out<'_>,
    ) -> usize {
        let classes = &self.classes;
        let limit = self.match_limit;
        let span = self.span as usize;
        let q = (hi - lo) / LANES;
        // lane j walks from `from[j]` and keeps match states ending in (ends[j], ends[j + 1]]
        let mut from = [0usize; LANES];
        let mut ends = [0u32; LANES + 1];
        let mut st = [self.start as usize; LANES];
        for j in 0..LANES {
            from[j] = if j == 0 { lo } else { lo + j * q - span };
            ends[j] = (lo + j * q) as u32;
        }
        ends[LANES] = hi as u32;
        st[0] = s;
        // every lane walks as many bytes as the last one needs (the others run on into the
        // next part, where what they find is dropped)
        let steps = hi - from[LANES - 1];
        for d in out.deferred.iter_mut() {
            d.clear();
        }
        for k in 0..steps {
            for j in 0..LANES {
                let b = text.get(from[j] + k).copied().unwrap_or(0);
                st[j] = next(st[j] + usize::from(classes[usize::from(b)])) as usize;
                if (st[j] as u32) < limit {
                    let end = (from[j] + k + 1) as u32;
                    if end > ends[j] && end <= ends[j + 1] {
                        out.deferred[j].push((end, st[j] as u32));
                    }
                }
            }
        }
        for j in 0..LANES {
            let d = std::mem::take(&mut out.deferred[j]);
            self.matched(text, &d, out);
            out.deferred[j] = d;
        }
        st[LANES - 1]
    }

    /// Index of state `s` (exact: `s` is a multiple of the stride below 2^32).
    #[inline]
    fn index(&self, s: u32) -> usize {
        ((u64::from(s) * self.recip) >> 32) as usize
    }

    /// The stride (number of byte classes).
    #[cfg(test)]
    fn stride(&self) -> usize {
        self.classes
            .iter()
            .map(|&c| usize::from(c))
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Whether `text[start..end]` is literal `lit` (ASCII case insensitively).
    #[cold]
    fn same(&self, text: &[u8], start: usize, end: usize, lit: u32) -> bool {
        match (text.get(start..end), self.lits.get(lit as usize)) {
            (Some(t), Some(l)) => t.eq_ignore_ascii_case(&l.bytes),
            _ => false,
        }
    }

    /// The occurrences of the patterns of the match states in `batch` (end position, state).
    #[inline(never)]
    fn matched(&self, text: &[u8], batch: &[(u32, u32)], out: &mut Out<'_>) {
        for &(end, s) in batch {
            let m = self.index(s);
            let Some(&[a, z]) = self.pat_starts.get(m..m + 2) else {
                continue;
            };
            for p in self.pats.get(a as usize..z as usize).unwrap_or(&[]) {
                let start = end as usize - p.len as usize;
                if p.kind != PAT_LONG || p.verify {
                    if p.verify && !self.same(text, start, end as usize, p.lit) {
                        continue;
                    }
                    let prev = start.checked_sub(1).and_then(|i| text.get(i)).copied();
                    let keep = match p.kind {
                        PAT_LONG => true,
                        PAT_SHORT => {
                            let ctx = if prev.is_some_and(is_word) {
                                AFTER_WORD
                            } else {
                                AFTER_NON_WORD
                            };
                            p.ctx & ctx != 0
                        }
                        _ => !prev.is_some_and(|c| c.is_ascii_digit()),
                    };
                    if !keep {
                        continue;
                    }
                }
                mark(out.present, out.found, p.lit);
                if p.recorded {
                    if let Some([before, after]) = self.filters.get(usize::from(p.filter)) {
                        let prev = start.checked_sub(1).and_then(|i| text.get(i)).copied();
                        if let (Some(c), Some(&n)) = (prev, text.get(end as usize)) {
                            if before[usize::from(c)] & after[usize::from(n)] == 0 {
                                continue;
                            }
                        }
                    }
                    out.hits.push((start as u32, p.lit));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(p: &str) -> (Cond, Lits) {
        let mut l = Lits::default();
        let c = rule_cond(&parse(p).unwrap(), &mut l);
        (c, l)
    }

    fn names(l: &Lits, c: &Cond) -> String {
        match c {
            Cond::True => "T".into(),
            Cond::Any(ids) => {
                let mut v: Vec<String> = ids
                    .iter()
                    .map(|&i| String::from_utf8_lossy(&l.lits[i as usize].bytes).into_owned())
                    .collect();
                v.sort();
                format!("any{v:?}")
            }
            Cond::All(v) => format!(
                "all({})",
                v.iter().map(|c| names(l, c)).collect::<Vec<_>>().join(", ")
            ),
            Cond::Or(v) => format!(
                "or({})",
                v.iter().map(|c| names(l, c)).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    #[test]
    fn conditions_require_the_literals_every_match_contains() {
        // Long s and the Kelvin sign are Unicode case variants of `s` and `k`; literals are
        // cut at eight bytes (possibly inside a character: they are byte strings).
        let cases: &[(&str, &str)] = &[
            (
                r"(?i)\bsecret key\b",
                "all(any[\"ecret ke\", \"ecret \u{FFFD}\"], \
                 any[\"secret k\", \"secret \u{FFFD}\", \"\u{17F}ecret \"])",
            ),
            (
                r"(?i)\b(?:ignore|disregard)[ \t]+(?:all|any)[ \t]+rules",
                "all(any[\"disregar\", \"di\u{17F}rega\", \"ignore\\t\", \"ignore \"], \
                 any[\"rules\", \"rule\u{17F}\"])",
            ),
            (
                r"(?-u:\b)your[ \t]+(?:answer|reply)",
                r#"all(any["your\t", "your "], any["answer", "reply"])"#,
            ),
            (r"[a-z]+@[a-z]+\.com", r#"any[".com"]"#),
            (r"\d+", "T"),
            (r"(?:abcd|x)yz", "T"),
            (r"(?:abcd|wxyz)q", r#"any["abcdq", "wxyzq"]"#),
        ];
        for (p, want) in cases {
            let (c, l) = cond(p);
            assert_eq!(names(&l, &c), *want, "pattern {p}");
        }
    }

    #[test]
    fn scanner_reports_digit_run_starts_in_position_order() {
        let mut l = Lits::default();
        let x = l.id(b"x");
        let d = l.digit_run_id();
        l.lits[d as usize].targets.push((0, 1));
        l.lits[x as usize].targets.push((0, 2));
        l.lits[x as usize].ctx = AFTER_WORD | AFTER_NON_WORD;
        let s = Scanner::new(l).unwrap();
        let (mut present, mut found, mut hits) = (Vec::new(), Vec::new(), Vec::new());
        let mut deferred = Deferred::default();
        s.run(
            b"a12 3x45 6",
            &mut present,
            &mut found,
            &mut hits,
            &mut deferred,
        );
        assert_eq!(hits, vec![(1, d), (4, d), (5, x), (6, d), (9, d)]);
        assert_eq!(found, vec![d, x]);
    }

    #[test]
    fn gate_opens_exactly_the_rules_whose_condition_holds() {
        // literals 0..4; rules: a leaf, an OR, an AND of leaves, a nested tree, always
        let any = |ids: &[u32]| Cond::Any(ids.to_vec());
        let conds = vec![
            any(&[0]),
            Cond::Or(vec![any(&[1]), any(&[2])]),
            Cond::All(vec![any(&[0]), any(&[1, 3])]),
            Cond::Or(vec![Cond::All(vec![any(&[2]), any(&[3])]), any(&[4])]),
            Cond::True,
        ];
        let gate = Gate::new(&conds, 5);
        let (mut leaves, mut counts, mut touched, mut open) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for mask in 0u32..32 {
            let found: Vec<u32> = (0..5).filter(|i| mask & (1 << i) != 0).collect();
            gate.eval(
                &found,
                &mut leaves,
                &mut counts,
                &mut touched,
                &mut open,
                |r| r != 1 || mask != 2,
            );
            let has = |i: u32| found.contains(&i);
            let want = vec![
                has(0),
                (has(1) || has(2)) && mask != 2,
                has(0) && (has(1) || has(3)),
                (has(2) && has(3)) || has(4),
                true,
            ];
            assert_eq!(open, want, "literals {found:?}");
        }
    }

    #[test]
    fn simplified_conditions_are_equivalent() {
        fn eval(c: &Cond, found: &[u32]) -> bool {
            match c {
                Cond::True => true,
                Cond::Any(ids) => ids.iter().any(|i| found.contains(i)),
                Cond::All(v) => v.iter().all(|c| eval(c, found)),
                Cond::Or(v) => v.iter().any(|c| eval(c, found)),
            }
        }
        let any = |ids: &[u32]| Cond::Any(ids.to_vec());
        let conds = vec![
            Cond::Or(vec![any(&[0]), any(&[1, 2])]),
            Cond::Or(vec![any(&[0]), Cond::Or(vec![any(&[3]), any(&[4])])]),
            Cond::All(vec![
                any(&[0]),
                Cond::All(vec![any(&[1]), any(&[2])]),
                Cond::True,
            ]),
            Cond::All(vec![
                Cond::Or(vec![any(&[0]), any(&[1])]),
                Cond::Or(vec![Cond::All(vec![any(&[2]), any(&[3])]), any(&[4])]),
            ]),
            Cond::Or(vec![any(&[0]), Cond::True]),
            Cond::All(vec![Cond::True]),
            Cond::Or(vec![
                Cond::All(vec![any(&[0]), any(&[1])]),
                any(&[]),
                any(&[2]),
            ]),
            any(&[]),
        ];
        for c in &conds {
            for mask in 0u32..32 {
                let found: Vec<u32> = (0..5).filter(|i| mask & (1 << i) != 0).collect();
                assert_eq!(
                    eval(&simplify(c), &found),
                    eval(c, &found),
                    "{c:?} {found:?}"
                );
            }
        }
        // an OR of literal sets is one literal set (decided by the counters, not a tree)
        assert!(matches!(simplify(&conds[1]), Cond::Any(ref v) if v == &[0, 3, 4]));
    }

    #[test]
    fn scanner_compares_literals_with_non_ascii_bytes() {
        // `ſ` is C5 BF and `ž` is C5 BE: the automaton sees both as the same class
        let mut l = Lits::default();
        let a = l.id("ſecret".as_bytes());
        let b = l.id("žecret".as_bytes());
        l.lits[a as usize].targets.push((0, 1));
        let s = Scanner::new(l).unwrap();
        let (mut present, mut found, mut hits) = (Vec::new(), Vec::new(), Vec::new());
        let mut deferred = Deferred::default();
        s.run(
            "x žecret ſECRET žx".as_bytes(),
            &mut present,
            &mut found,
            &mut hits,
            &mut deferred,
        );
        assert_eq!(hits, vec![(10, a)]);
        assert_eq!(found, vec![b, a]);
        s.run(
            "ſecreT".as_bytes(),
            &mut present,
            &mut found,
            &mut hits,
            &mut deferred,
        );
        assert_eq!(hits, vec![(0, a)]);
        assert_eq!(found, vec![a]);
    }

    #[test]
    fn scanner_finds_literals_case_insensitively_anywhere() {
        let mut l = Lits::default();
        let a = l.id(b"ignore");
        let b = l.id(b"gnore all");
        let c = l.id(b"absent");
        let d = l.id(b"ll;");
        let e = l.id(b"x");
        let f = l.id(b"a longer literal");
        l.lits[a as usize].targets.push((0, 7));
        l.lits[d as usize].targets.push((0, 8));
        l.lits[d as usize].ctx = AFTER_WORD;
        l.lits[e as usize].targets.push((0, 9));
        l.lits[e as usize].ctx = AFTER_NON_WORD;
        l.lits[f as usize].targets.push((0, 10));
        let s = Scanner::new(l).unwrap();
        let mut present = Vec::new();
        let mut found = Vec::new();
        let mut hits = Vec::new();
        let mut deferred = Deferred::default();
        s.run(
            b"IGNORE all; xignore X a LONGER literal",
            &mut present,
            &mut found,
            &mut hits,
            &mut deferred,
        );
        assert_eq!(
            hits,
            vec![(0, a), (8, d), (12, e), (13, a), (20, e), (22, f)]
        );
        assert!(bit(&present, a) && bit(&present, b) && !bit(&present, c));
        // the tail: a literal running past the end is not found
        found.sort_unstable();
        assert_eq!(found, vec![a, b, d, e, f]);
        s.run(
            b"a longer litera",
            &mut present,
            &mut found,
            &mut hits,
            &mut deferred,
        );
        assert_eq!(hits, vec![]);
    }

    #[test]
    fn split_blank_runs_keeps_the_language_and_lengthens_prefixes() {
        use regex_automata::meta::Regex;
        let patterns = [
            r"(?i)\bthe[ \t]+first[ \t]*(?:letter|word)",
            r"a[ \t]*b[ \t]+c",
            r"(?:x[ \t]+)+y",
            r"[ \t]+z",
        ];
        let alphabet: Vec<char> = "theFIRSTlwordabcxyz \t\n".chars().collect();
        let mut x = 0x3C6E_F372_FE94_F82Bu64;
        for p in patterns {
            let h = fold(&parse(p).unwrap());
            let a = Regex::builder().build_from_hir(&h).unwrap();
            let b = Regex::builder()
                .build_from_hir(&split_blank_runs(&h))
                .unwrap();
            for _ in 0..3000 {
                let t = crate::test_rng::random_text(&mut x, &alphabet, 16);
                for at in 0..=t.len() {
                    let input = regex_automata::Input::new(&t)
                        .range(at..)
                        .anchored(regex_automata::Anchored::Yes);
                    assert_eq!(
                        a.search(&input).map(|m| m.end()).is_some(),
                        b.search(&input).map(|m| m.end()).is_some(),
                        "pattern {p:?} text {t:?} at {at}"
                    );
                }
            }
        }
        // the prefixes go on past the blank run instead of stopping at `the `
        let lits = prefix_literals(&parse(r"(?i)\bthe[ \t]+first[ \t]+letter").unwrap()).unwrap();
        let lits: Vec<String> = lits
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert!(lits.contains(&"the firs".to_string()), "{lits:?}");
        assert!(lits.iter().all(|l| l.len() >= 5), "{lits:?}");
    }

    #[test]
    fn lanes_find_exactly_what_one_walk_finds() {
        let mut l = Lits::default();
        let words: [&[u8]; 7] = [b"ab", b"abcab", b"bca", b"cabcabcabca", b"xyz", b"zz", b"y"];
        for (k, w) in words.iter().enumerate() {
            let id = l.id(w);
            l.lits[id as usize].targets.push((0, k as u16));
            l.lits[id as usize].ctx = AFTER_NON_WORD | AFTER_WORD;
        }
        let d = l.digit_run_id();
        l.lits[d as usize].targets.push((0, 9));
        let s = Scanner::new(l).unwrap();
        let alphabet = b"abcxyz 0912";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut byte =
            || alphabet[(crate::test_rng::xorshift(&mut seed) % alphabet.len() as u64) as usize];
        let (mut present, mut found, mut hits) = (Vec::new(), Vec::new(), Vec::new());
        let mut deferred = Deferred::default();
        let sizes = [
            0,
            1,
            63,
            255,
            256,
            1000,
            4096,
            BLOCK - 1,
            2 * BLOCK + 17,
            3 * BLOCK + 999,
        ];
        for &n in &sizes {
            // random, and periodic (the longest literal occurs across every part boundary)
            let random: Vec<u8> = (0..n).map(|_| byte()).collect();
            let periodic: Vec<u8> = b"abc".iter().copied().cycle().take(n).collect();
            for text in [random, periodic] {
                s.run(&text, &mut present, &mut found, &mut hits, &mut deferred);
                let (p1, f1, h1) = s.run_one_lane(&text);
                assert_eq!((&present, &found), (&p1, &f1), "text of {n} bytes");
                assert_eq!(hits, h1, "text of {n} bytes");
                assert!(
                    n < 1000 || hits.len() > n / 10,
                    "text of {n} bytes: too few hits"
                );
            }
        }
    }
}
