//! Errors of loading and validating a pack.

use std::fmt;

/// One problem in a pack: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIssue {
    /// The pack file (or the `source` name given to [`crate::CompiledPack::from_yaml`]).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Key path, e.g. `rules[0].condition.matches_pattern`; empty for the whole document.
    pub key: String,
    /// Lower-case, one-line message.
    pub message: String,
}

impl fmt::Display for PackIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.key, self.message
            )
        }
    }
}

/// A pack that could not be loaded: every problem found, in file order.
///
/// `Display` prints one line per problem: `<file>:<line>:<column>: <key.path>: <message>`.
#[derive(Debug, thiserror::Error)]
pub struct PackError {
    issues: Vec<PackIssue>,
    #[source]
    io: Option<std::io::Error>,
}

impl PackError {
    pub(crate) fn new(mut issues: Vec<PackIssue>) -> PackError {
        issues.sort_by_key(|i| (i.line, i.column));
        PackError { issues, io: None }
    }

    pub(crate) fn io(file: &str, e: std::io::Error) -> PackError {
        PackError {
            issues: vec![PackIssue {
                file: file.to_owned(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read policy pack: {e}"),
            }],
            io: Some(e),
        }
    }

    /// Every problem, sorted by position.
    pub fn issues(&self) -> &[PackIssue] {
        &self.issues
    }
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}
