//! `--fail-on` conditions: when a replay should fail a CI job.

use exchange::Decision;

use super::error::ReplayError;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A threshold: an absolute count or a percentage of the replayed records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// `N`: a number of records.
    Count(u64),
    /// `N%`: a percentage of the replayed records.
    Percent(f64),
}

/// What a condition counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// Records moving from `from` to `to` (`None`: any decision; the two differ).
    Transition {
        /// Baseline decision (`*`: any).
        from: Option<Decision>,
        /// Candidate decision (`*`: any).
        to: Option<Decision>,
    },
    /// Records whose decision changed.
    Changed,
    /// Records that could not be replayed.
    Unreplayable,
}

/// One `--fail-on` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOn {
    /// `FROM->TO > N[%]`, `changed > N[%]`, `unreplayable > N[%]`.
    Threshold {
        /// The condition as written (normalized spacing).
        text: String,
        /// What is counted.
        metric: Metric,
        /// `>` or `>=`.
        cmp: Cmp,
        /// The limit.
        threshold: Threshold,
    },
    /// `new-allowed-tool`: a response tool call the candidate lets through in a turn where
    /// the baseline did not.
    NewAllowedTool,
}

fn decision_or_any(s: &str) -> Result<Option<Decision>, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(None);
    }
    Decision::parse(s).map(Some).ok_or_else(|| {
        format!("`{s}` is not a decision (ALLOW, LOG, REDACT, CONSTRAIN, BLOCK or *)")
    })
}

impl FailOn {
    /// Parses a condition: `ALLOW->BLOCK > 1%`, `*->BLOCK >= 5`, `changed > 0`,
    /// `unreplayable > 10%`, `new-allowed-tool`.
    pub fn parse(text: &str) -> Result<FailOn, ReplayError> {
        let bad = |why: String| ReplayError::Usage(format!("--fail-on `{text}`: {why}"));
        let t = text.trim();
        if t.eq_ignore_ascii_case("new-allowed-tool") {
            return Ok(FailOn::NewAllowedTool);
        }
        let (lhs, cmp, rhs) = if let Some((l, r)) = t.split_once(">=") {
            (l, Cmp::Ge, r)
        } else if let Some((l, r)) = t.rsplit_once('>').filter(|(l, _)| !l.ends_with('-')) {
            (l, Cmp::Gt, r)
        } else {
            return Err(bad(
                "expected `FROM->TO > N` or `N%`, `changed > N`, `unreplayable > N` or `new-allowed-tool`"
                    .to_owned(),
            ));
        };
        let lhs = lhs.trim();
        let metric = if lhs.eq_ignore_ascii_case("changed") {
            Metric::Changed
        } else if lhs.eq_ignore_ascii_case("unreplayable") {
            Metric::Unreplayable
        } else if let Some((from, to)) = lhs.split_once("->") {
            Metric::Transition {
                from: decision_or_any(from).map_err(&bad)?,
                to: decision_or_any(to).map_err(&bad)?,
            }
        } else {
            return Err(bad(format!(
                "`{lhs}` is not `FROM->TO`, `changed` or `unreplayable`"
            )));
        };
        let rhs = rhs.trim();
        let threshold = match rhs.strip_suffix('%') {
            Some(p) => {
                let v: f64 = p
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("`{rhs}` is not a percentage")))?;
                if !(0.0..=100.0).contains(&v) {
                    return Err(bad(format!("`{rhs}` is not between 0% and 100%")));
                }
                Threshold::Percent(v)
            }
            None => Threshold::Count(
                rhs.parse()
                    .map_err(|_| bad(format!("`{rhs}` is not a whole number or a percentage")))?,
            ),
        };
        let op = match cmp {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        };
        Ok(FailOn::Threshold {
            text: format!("{lhs} {op} {rhs}"),
            metric,
            cmp,
            threshold,
        })
    }

    /// The condition as shown in reports.
    pub fn text(&self) -> String {
        match self {
            FailOn::Threshold { text, .. } => text.clone(),
            FailOn::NewAllowedTool => "new-allowed-tool".to_owned(),
        }
    }
}

/// Whether `value` (out of `total`) crosses the threshold.
pub(crate) fn crosses(cmp: Cmp, threshold: Threshold, value: u64, total: u64) -> bool {
    match threshold {
        Threshold::Count(n) => match cmp {
            Cmp::Gt => value > n,
            Cmp::Ge => value >= n,
        },
        Threshold::Percent(p) => {
            // value / total (>|>=) p / 100, in integers: value * 100 * 1e6 vs p * 1e6 * total.
            let lhs = u128::from(value) * 100_000_000;
            let rhs = (p * 1_000_000.0).round() as u128 * u128::from(total);
            match cmp {
                Cmp::Gt => lhs > rhs,
                Cmp::Ge => lhs >= rhs,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            FailOn::parse("ALLOW->BLOCK > 1%").unwrap(),
            FailOn::Threshold {
                text: "ALLOW->BLOCK > 1%".to_owned(),
                metric: Metric::Transition {
                    from: Some(Decision::Allow),
                    to: Some(Decision::Block)
                },
                cmp: Cmp::Gt,
                threshold: Threshold::Percent(1.0),
            }
        );
        assert_eq!(
            FailOn::parse("*->block>=3").unwrap().text(),
            "*->block >= 3"
        );
        assert_eq!(
            FailOn::parse("new-allowed-tool").unwrap(),
            FailOn::NewAllowedTool
        );
        assert!(matches!(
            FailOn::parse("changed > 0").unwrap(),
            FailOn::Threshold {
                metric: Metric::Changed,
                ..
            }
        ));
        assert_eq!(
            FailOn::parse("ALLOW->NOPE > 1").unwrap_err().to_string(),
            "replay: --fail-on `ALLOW->NOPE > 1`: `NOPE` is not a decision (ALLOW, LOG, REDACT, CONSTRAIN, BLOCK or *)"
        );
        assert!(FailOn::parse("ALLOW->BLOCK").is_err());
        assert!(FailOn::parse("ALLOW->BLOCK > 101%").is_err());
    }

    #[test]
    fn percentages_are_exact() {
        assert!(!crosses(Cmp::Gt, Threshold::Percent(1.0), 1, 100));
        assert!(crosses(Cmp::Ge, Threshold::Percent(1.0), 1, 100));
        assert!(crosses(Cmp::Gt, Threshold::Percent(1.0), 2, 100));
        assert!(!crosses(Cmp::Gt, Threshold::Percent(0.0), 0, 0));
        assert!(crosses(Cmp::Gt, Threshold::Count(0), 1, 0));
    }
}
