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
//! trigger words, rot13 markers — are found in one pass, eight bytes loaded at a time: a
//! table indexed by the two bytes at a position says whether a long literal, a short literal
//! (one to three bytes, in a context given by the byte before) or an ASCII digit-run start
//! can begin there, so most positions of ordinary text cost one lookup. Where a long literal
//! can, the next four bytes (ASCII case folded) are hashed into a 64 Kibit bloom filter, and
//! on a hit the literals in that hash bucket are compared in full. The pass records which
//! literals occur (a bit set and a list, for the gate, which only evaluates the rules those
//! literals touch) and where candidate literals and digit runs occur (for the rules), in
//! position order.

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
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(fold(&r.sub)),
        }),
        HirKind::Capture(c) => fold(&c.sub),
        HirKind::Concat(v) => Hir::concat(v.iter().map(fold).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.iter().map(fold).collect()),
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

/// Prefix literals (ASCII lower-cased, deduplicated) every match of `hir` starts with, or
/// `None` when some match can start without one.
pub(crate) fn prefix_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let seq = prefixes(&fold(hir), 8, 1000)?;
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
            .map(|(r, c)| compile(c, r as u32, &mut per_lit, &mut leaf_rule))
            .collect();
        let always = rules.iter().map(|n| n.eval(&[])).collect();
        let mut lit_starts = Vec::with_capacity(n_lits + 1);
        let mut lit_leaves = Vec::new();
        for v in &per_lit {
            lit_starts.push(lit_leaves.len() as u32);
            lit_leaves.extend_from_slice(v);
        }
        lit_starts.push(lit_leaves.len() as u32);
        Gate {
            rules,
            always,
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
        marked: &mut Vec<bool>,
        open: &mut Vec<bool>,
        enabled: impl Fn(usize) -> bool,
    ) {
        leaves.clear();
        leaves.resize(self.leaf_rule.len().div_ceil(64), 0);
        marked.clear();
        marked.extend_from_slice(&self.always);
        for &l in found {
            let l = l as usize;
            let (Some(&s), Some(&e)) = (self.lit_starts.get(l), self.lit_starts.get(l + 1)) else {
                continue;
            };
            for &leaf in self.lit_leaves.get(s as usize..e as usize).unwrap_or(&[]) {
                if let Some(w) = leaves.get_mut((leaf / 64) as usize) {
                    *w |= 1 << (leaf % 64);
                }
                if let Some(m) = marked.get_mut(self.leaf_rule[leaf as usize] as usize) {
                    *m = true;
                }
            }
        }
        open.clear();
        open.extend(
            self.rules
                .iter()
                .zip(marked.iter())
                .enumerate()
                .map(|(r, (n, &m))| m && enabled(r) && n.eval(leaves)),
        );
    }
}

/// Bits of the bloom filter / bucket index.
const HASH_BITS: u32 = 16;

/// Hash bucket of four bytes (ORed with 0x20, so ASCII letters of either case meet; the
/// comparison after it is exact).
#[inline]
fn bucket(w: u32) -> usize {
    ((w | 0x2020_2020).wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// ASCII lower case of eight bytes at once.
#[inline]
fn lower8(w: u64) -> u64 {
    let h = w & 0x7F7F_7F7F_7F7F_7F7F;
    let ge_a = h.wrapping_add(0x3F3F_3F3F_3F3F_3F3F); // bit 7 set where byte >= b'A'
    let gt_z = h.wrapping_add(0x2525_2525_2525_2525); // bit 7 set where byte > b'Z'
    let upper = ge_a & !gt_z & !w & 0x8080_8080_8080_8080;
    w | (upper >> 2)
}

/// Up to eight bytes of `text` from `pos`, little endian, zero padded.
#[inline]
fn load8(text: &[u8], pos: usize) -> u64 {
    match text.get(pos..pos + 8) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => {
            let mut buf = [0u8; 8];
            let rest = text.get(pos..).unwrap_or(&[]);
            buf[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(buf)
        }
    }
}

/// Literals by hash bucket, with a bloom filter over the buckets in use.
struct Buckets {
    bloom: Box<[u64; 1 << (HASH_BITS - 6)]>,
    /// `starts[b]..starts[b + 1]` indexes `items` for bucket `b`.
    starts: Vec<u32>,
    items: Vec<Item>,
}

impl Buckets {
    fn new(per: &[Vec<Item>]) -> Buckets {
        let mut bloom = Box::new([0u64; 1 << (HASH_BITS - 6)]);
        let mut starts = Vec::with_capacity(per.len() + 1);
        let mut items = Vec::new();
        for (b, p) in per.iter().enumerate() {
            if !p.is_empty() {
                bloom[b / 64] |= 1 << (b % 64);
            }
            starts.push(items.len() as u32);
            items.extend_from_slice(p);
        }
        starts.push(items.len() as u32);
        Buckets {
            bloom,
            starts,
            items,
        }
    }

    /// Whether bucket `b` holds literals.
    #[inline]
    fn maybe(&self, b: usize) -> bool {
        self.bloom[(b / 64) & ((1 << (HASH_BITS - 6)) - 1)] & (1 << (b % 64)) != 0
    }

    fn get(&self, b: usize) -> &[Item] {
        match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(&s), Some(&e)) => self.items.get(s as usize..e as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// A literal as compared by the scanner: its first (up to) eight bytes, lower case, and the
/// mask of those bytes.
#[derive(Clone, Copy)]
struct Item {
    key: u64,
    mask: u64,
    lit: u32,
    len: u32,
    ctx: u8,
}

impl Item {
    fn new(l: &Lit, lit: u32) -> Item {
        let n = l.bytes.len().min(8);
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(&l.bytes[..n]);
        let mask = if n == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        Item {
            key: u64::from_le_bytes(buf),
            mask,
            lit,
            len: l.bytes.len() as u32,
            ctx: l.ctx,
        }
    }
}

/// Bits of the per-byte-pair table [`Scanner::pair`].
const PAIR_AFTER_NON_WORD: u8 = AFTER_NON_WORD;
const PAIR_AFTER_WORD: u8 = AFTER_WORD;
/// A literal of [`MIN_LEN`] bytes or more may start with this pair (ASCII case folded).
const PAIR_LONG: u8 = 4;
/// The first byte is an ASCII digit and digit-run starts are recorded.
const PAIR_DIGIT: u8 = 8;
const PAIR_SHORT: u8 = PAIR_AFTER_NON_WORD | PAIR_AFTER_WORD;

/// One-pass finder for all literals: literals of [`MIN_LEN`] bytes or more through a bloom
/// filter on the four bytes at each position, shorter ones through a table of their first
/// byte (restricted by the byte before, see [`Lit::ctx`]). One table indexed by the two bytes
/// at a position says which of these checks can succeed there, so most positions of ordinary
/// text cost one table lookup.
pub(crate) struct Scanner {
    pub lits: Vec<Lit>,
    /// Literals of four bytes or more, by the hash of their first four.
    long4: Buckets,
    /// By the two bytes at a position (little endian): `PAIR_*` bits.
    pair: Box<[u8; 65536]>,
    /// `short_starts[q]..short_starts[q + 1]` indexes `short` for the byte pair `q` (little
    /// endian) at a position: the literals of one to three bytes that may start there.
    short_starts: Vec<u32>,
    short: Vec<Item>,
    /// Literals with targets (their occurrences are recorded).
    recorded: Vec<bool>,
    /// The pseudo literal standing for "start of an ASCII digit run", if some rule uses it.
    digit_run: Option<u32>,
}

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

impl Scanner {
    /// Counts for tuning (`cand_stats`): short literals, and for `text` the positions whose
    /// pair bits are set (short, long, digit), bloom hits, and bloom hits on buckets whose
    /// literals are all unrecorded.
    #[cfg(test)]
    pub fn profile(&self, text: &[u8]) -> String {
        let shorts: Vec<String> = self
            .lits
            .iter()
            .filter(|l| !l.bytes.is_empty() && l.bytes.len() < MIN_LEN)
            .map(|l| {
                format!(
                    "{:?}/{}/{}",
                    String::from_utf8_lossy(&l.bytes),
                    l.ctx,
                    l.targets.len()
                )
            })
            .collect();
        let (mut ps, mut pl, mut pd, mut bh, mut bu) = (0, 0, 0, 0, 0);
        for pos in 0..text.len().saturating_sub(4) {
            let w = u32::from_le_bytes([text[pos], text[pos + 1], text[pos + 2], text[pos + 3]]);
            let p = self.pair[(w & 0xFFFF) as usize];
            ps += usize::from(p & PAIR_SHORT != 0);
            pd += usize::from(p & PAIR_DIGIT != 0);
            let mut probe = |bk: &Buckets, b: usize| {
                pl += 1;
                if bk.maybe(b) {
                    bh += 1;
                    if bk.get(b).iter().all(|it| !self.recorded[it.lit as usize]) {
                        bu += 1;
                    }
                }
            };
            if p & PAIR_LONG != 0 {
                probe(&self.long4, bucket(w));
            }
        }
        let mut per: HashMap<String, (usize, usize, usize)> = HashMap::new();
        let mut items = 0;
        for pos in 0..text.len().saturating_sub(4) {
            let w = u32::from_le_bytes([text[pos], text[pos + 1], text[pos + 2], text[pos + 3]]);
            let p = self.pair[(w & 0xFFFF) as usize];
            let b = bucket(w);
            if p & PAIR_LONG != 0 && self.long4.maybe(b) {
                let its = self.long4.get(b);
                items += its.len();
                let rec = its
                    .iter()
                    .filter(|it| self.recorded[it.lit as usize])
                    .count();
                let e = per
                    .entry(String::from_utf8_lossy(&text[pos..pos + 4]).to_lowercase())
                    .or_default();
                e.0 += 1;
                e.1 = its.len();
                e.2 = rec;
            }
        }
        let mut v: Vec<_> = per.into_iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1.0 * x.1.1));
        v.truncate(30);
        format!(
            "{} bytes: short-pair {ps}, long-pair {pl}, digit {pd}, bloom hits {bh} (unrecorded buckets {bu}), items compared {items}; top (4 bytes, (hits, items, recorded items)) {v:?}; short literals {shorts:?}",
            text.len()
        )
    }

    /// Builds the scanner over `lits`.
    pub fn new(lits: Lits) -> Scanner {
        let digit_run = lits.digit_run;
        let lits = lits.lits;
        let nb = 1usize << HASH_BITS;
        let mut per4: Vec<Vec<Item>> = vec![Vec::new(); nb];
        let mut per_pair: Vec<Vec<Item>> = vec![Vec::new(); 65536];
        let mut pair = Box::new([0u8; 65536]);
        let cases = |c: u8| [c, c.to_ascii_uppercase()];
        for (i, l) in lits.iter().enumerate() {
            let item = Item::new(l, i as u32);
            if l.bytes.len() >= MIN_LEN {
                per4[bucket(load8(&l.bytes, 0) as u32)].push(item);
            } else if let Some(&c) = l.bytes.first() {
                let ctx = if l.targets.is_empty() { 0 } else { l.ctx };
                let seconds: Vec<u8> = match l.bytes.get(1) {
                    Some(&c2) => cases(c2).to_vec(),
                    None => (0..=255u8).collect(),
                };
                for x in cases(c) {
                    for &y in &seconds {
                        let q = usize::from(x) | usize::from(y) << 8;
                        pair[q] |= ctx;
                        if !per_pair[q].iter().any(|it| it.lit == i as u32) {
                            per_pair[q].push(item);
                        }
                    }
                }
            }
        }
        for (per, flag) in [(&per4, PAIR_LONG)] {
            for it in per.iter().flatten() {
                let l = &lits[it.lit as usize];
                // the exact comparison lower-cases ASCII letters of the text only
                for x in cases(l.bytes[0]) {
                    for y in cases(l.bytes[1]) {
                        pair[usize::from(x) | usize::from(y) << 8] |= flag;
                    }
                }
            }
        }
        if digit_run.is_some_and(|d| lits.get(d as usize).is_some_and(|l| !l.targets.is_empty())) {
            for x in b'0'..=b'9' {
                for y in 0..=255u8 {
                    pair[usize::from(x) | usize::from(y) << 8] |= PAIR_DIGIT;
                }
            }
        }
        let mut short_starts = Vec::with_capacity(65537);
        let mut short = Vec::new();
        for p in &per_pair {
            short_starts.push(short.len() as u32);
            short.extend_from_slice(p);
        }
        short_starts.push(short.len() as u32);
        let recorded = lits.iter().map(|l| !l.targets.is_empty()).collect();
        Scanner {
            lits,
            long4: Buckets::new(&per4),
            pair,
            short_starts,
            short,
            recorded,
            digit_run,
        }
    }

    /// Walks `text` once: sets bit `i` of `present` for every literal `i` that occurs (short
    /// literals only where their context allows) and appends each literal seen to `found`
    /// once, and appends `(position, literal)` to `hits` for each occurrence of a literal
    /// with targets (and each start of an ASCII digit run, as the digit-run pseudo literal),
    /// in position order.
    pub fn run(
        &self,
        text: &[u8],
        present: &mut Vec<u64>,
        found: &mut Vec<u32>,
        hits: &mut Vec<(u32, u32)>,
    ) {
        present.clear();
        present.resize(self.lits.len().div_ceil(64), 0);
        found.clear();
        hits.clear();
        let n = text.len();
        let mut pos = 0;
        // Eight bytes at a time give the pairs and four-byte keys of four positions.
        while let Some(chunk) = text.get(pos..pos + 8) {
            let x = u64::from_le_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ]);
            for k in 0..4 {
                let w = (x >> (8 * k)) as u32;
                // branch-free: the pair bits, with the long bit kept only on a bloom hit
                let p = self.pair[(w & 0xFFFF) as usize];
                if p != 0 {
                    self.at(text, pos + k, w, p, present, found, hits);
                }
            }
            pos += 4;
        }
        while pos < n {
            let mut buf = [0u8; 4];
            let rest = &text[pos..(pos + 4).min(n)];
            buf[..rest.len()].copy_from_slice(rest);
            let w = u32::from_le_bytes(buf);
            let mut p = self.pair[(w & 0xFFFF) as usize];
            if pos + MIN_LEN > n {
                p &= !PAIR_LONG;
            }
            if p != 0 {
                self.at(text, pos, w, p, present, found, hits);
            }
            pos += 1;
        }
    }

    /// The checks at one position whose pair bits `p` are not zero; `w` holds the four
    /// bytes from `pos` (zero padded).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn at(
        &self,
        text: &[u8],
        pos: usize,
        w: u32,
        p: u8,
        present: &mut [u64],
        found: &mut Vec<u32>,
        hits: &mut Vec<(u32, u32)>,
    ) {
        if p & (PAIR_SHORT | PAIR_DIGIT) != 0 {
            self.short_hits(text, pos, p, present, found, hits);
        }
        if p & PAIR_LONG != 0 {
            let b = bucket(w);
            if self.long4.maybe(b) {
                self.bucket_hits(&self.long4, text, pos, b, present, found, hits);
            }
        }
    }

    #[inline(never)]
    fn short_hits(
        &self,
        text: &[u8],
        pos: usize,
        p: u8,
        present: &mut [u64],
        found: &mut Vec<u32>,
        hits: &mut Vec<(u32, u32)>,
    ) {
        let prev = pos.checked_sub(1).and_then(|i| text.get(i)).copied();
        if p & PAIR_SHORT != 0 {
            let ctx = if prev.is_some_and(is_word) {
                AFTER_WORD
            } else {
                AFTER_NON_WORD
            };
            if p & ctx != 0 {
                let t = lower8(load8(text, pos));
                // the pair as in the text (not lower-cased): lists hold both cases
                let q = usize::from(text[pos])
                    | usize::from(text.get(pos + 1).copied().unwrap_or(0)) << 8;
                let (s, e) = (
                    self.short_starts[q] as usize,
                    self.short_starts[q + 1] as usize,
                );
                for it in &self.short[s..e] {
                    if it.ctx & ctx != 0
                        && t & it.mask == it.key
                        && pos + it.len as usize <= text.len()
                    {
                        mark(present, found, it.lit);
                        hits.push((pos as u32, it.lit));
                    }
                }
            }
        }
        if p & PAIR_DIGIT != 0 && !prev.is_some_and(|c| c.is_ascii_digit()) {
            if let Some(d) = self.digit_run {
                mark(present, found, d);
                hits.push((pos as u32, d));
            }
        }
    }

    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn bucket_hits(
        &self,
        buckets: &Buckets,
        text: &[u8],
        pos: usize,
        b: usize,
        present: &mut [u64],
        found: &mut Vec<u32>,
        hits: &mut Vec<(u32, u32)>,
    ) {
        let t = lower8(load8(text, pos));
        for it in buckets.get(b) {
            if t & it.mask != it.key {
                continue;
            }
            let li = it.lit as usize;
            let len = it.len as usize;
            let Some(whole) = text.get(pos..pos + len) else {
                continue;
            };
            if len > 8 && !whole[8..].eq_ignore_ascii_case(&self.lits[li].bytes[8..]) {
                continue;
            }
            mark(present, found, it.lit);
            if self.recorded[li] {
                hits.push((pos as u32, it.lit));
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
        let s = Scanner::new(l);
        let (mut present, mut found, mut hits) = (Vec::new(), Vec::new(), Vec::new());
        s.run(b"a12 3x45 6", &mut present, &mut found, &mut hits);
        assert_eq!(hits, vec![(1, d), (4, d), (5, x), (6, d), (9, d)]);
        assert_eq!(found, vec![d, x]);
    }

    #[test]
    fn lower8_lowercases_ascii_letters_only() {
        let w = u64::from_le_bytes(*b"A[z@Z\xC3Q`");
        assert_eq!(lower8(w).to_le_bytes(), *b"a[z@z\xC3q`");
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b; 8]);
            assert_eq!(lower8(w).to_le_bytes(), [b.to_ascii_lowercase(); 8]);
        }
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
        let s = Scanner::new(l);
        let mut present = Vec::new();
        let mut found = Vec::new();
        let mut hits = Vec::new();
        s.run(
            b"IGNORE all; xignore X a LONGER literal",
            &mut present,
            &mut found,
            &mut hits,
        );
        assert_eq!(
            hits,
            vec![(0, a), (8, d), (12, e), (13, a), (20, e), (22, f)]
        );
        assert!(bit(&present, a) && bit(&present, b) && !bit(&present, c));
        // the tail: a literal running past the end is not found
        found.sort_unstable();
        assert_eq!(found, vec![a, b, d, e, f]);
        s.run(b"a longer litera", &mut present, &mut found, &mut hits);
        assert_eq!(hits, vec![]);
    }
}
