//! A table of rules compiled into one multi-pattern `regex-automata` matcher.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, PatternID};

use crate::types::{BuildError, DetectorKind, Severity};

/// One pattern rule. If the pattern has a capture group named `v`, the finding's span is that
/// group; otherwise it is the whole match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    pub kind: &'static str,
    pub rule: &'static str,
    pub pattern: &'static str,
    pub score: f32,
    pub severity: Severity,
}

/// A compiled rule table.
pub(crate) struct Table {
    pub rules: Vec<Rule>,
    re: Regex,
    has_group: Vec<bool>,
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

impl Table {
    pub fn new(detector: DetectorKind, rules: Vec<Rule>) -> Result<Table, BuildError> {
        // Patterns go through the same folding as the text (accents, look-alikes), and word
        // boundaries are ASCII so the lazy DFA can run on any haystack.
        let pats: Vec<String> = rules
            .iter()
            .map(|r| {
                crate::normalize::normalize(r.pattern)
                    .text
                    .replace(r"\b", r"(?-u:\b)")
            })
            .collect();
        let re = Regex::builder()
            .syntax(syntax::Config::new().multi_line(true).crlf(true))
            .configure(
                Regex::config()
                    .hybrid_cache_capacity(8 * (1 << 20))
                    .nfa_size_limit(Some(64 * (1 << 20)))
                    .match_kind(regex_automata::MatchKind::LeftmostFirst),
            )
            .build_many(&pats)
            .map_err(|e| BuildError::Pattern {
                detector: detector.as_str(),
                source: Box::new(e),
            })?;
        let has_group = (0..rules.len())
            .map(|i| {
                re.group_info()
                    .to_index(PatternID::new_unchecked(i), "v")
                    .is_some()
            })
            .collect();
        Ok(Table {
            rules,
            re,
            has_group,
        })
    }

    /// Calls `f` on each hit, leftmost-first. `f` decides whether the search continues after
    /// the hit ([`Next::Accept`], [`Next::Skip`]) or one character after its start
    /// ([`Next::Retry`], so a rejected candidate does not hide a later overlapping one).
    pub fn each(&self, text: &str, mut f: impl FnMut(Hit) -> Next) {
        let mut caps = None;
        let mut at = 0;
        while at <= text.len() {
            let Some(m) = self.re.search(&Input::new(text).range(at..)) else {
                break;
            };
            let idx = m.pattern().as_usize();
            let next_at = if m.end() > m.start() {
                m.end()
            } else {
                m.end() + 1
            };
            let (mut start, mut end) = (m.start(), m.end());
            if self.has_group[idx] {
                let c = caps.get_or_insert_with(|| self.re.create_captures());
                let input = Input::new(text)
                    .range(m.range())
                    .anchored(Anchored::Pattern(m.pattern()));
                self.re.search_captures(&input, c);
                match c.get_group_by_name("v") {
                    Some(g) => {
                        start = g.start;
                        end = g.end;
                    }
                    None => {
                        at = next_at;
                        continue;
                    }
                }
            }
            match f(Hit { idx, start, end }) {
                Next::Accept | Next::Skip => at = next_at,
                Next::Retry => {
                    let mut n = m.start() + 1;
                    while n < text.len() && !text.is_char_boundary(n) {
                        n += 1;
                    }
                    at = n;
                }
            }
        }
    }
}
