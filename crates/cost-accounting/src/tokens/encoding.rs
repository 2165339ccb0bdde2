//! One encoding (`o200k_base` or `cl100k_base`): the pre-tokenizer, the embedded token
//! table and the merge, counting tokens exactly as tiktoken's `encode_ordinary(text).len()`.

use super::merge::count_piece;
use super::pretokenize::{CL100K_PATTERNS, O200K_PATTERNS, Pretokenizer};
use super::vocab::{TableError, Vocab};

static O200K_TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.bpe"));
static CL100K_TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.bpe"));

/// A loaded encoding; cheap to open (the table is read in place), shared by reference.
#[derive(Debug)]
pub(crate) struct Encoding {
    vocab: Vocab,
    pretokenizer: Pretokenizer,
}

impl Encoding {
    /// `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o-series; the default).
    pub(crate) fn o200k() -> Result<Self, TableError> {
        Self::open("o200k_base", O200K_TABLE, &O200K_PATTERNS)
    }

    /// `cl100k_base` (GPT-4, GPT-3.5, `text-embedding-3-*`).
    pub(crate) fn cl100k() -> Result<Self, TableError> {
        Self::open("cl100k_base", CL100K_TABLE, &CL100K_PATTERNS)
    }

    fn open(
        name: &'static str,
        blob: &'static [u8],
        patterns: &[&str; 3],
    ) -> Result<Self, TableError> {
        let vocab = Vocab::open(name, blob)?;
        let pretokenizer = Pretokenizer::new(patterns).map_err(|e| TableError::Pattern {
            name,
            source: Box::new(e),
        })?;
        Ok(Self {
            vocab,
            pretokenizer,
        })
    }

    /// Tokens in `text` (what `encode_ordinary(text).len()` returns).
    pub(crate) fn count(&self, text: &str) -> usize {
        let mut n = 0;
        self.pretokenizer
            .for_each_piece(text, |piece| n += count_piece(&self.vocab, piece));
        n
    }

    /// The token table.
    #[cfg(test)]
    pub(crate) fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The pieces of `text` (tests compare them with tiktoken's).
    #[cfg(test)]
    pub(crate) fn pieces<'t>(&self, text: &'t str) -> Vec<&'t [u8]> {
        let mut out = Vec::new();
        let base = text.as_ptr() as usize;
        self.pretokenizer.for_each_piece(text, |p| {
            let at = p.as_ptr() as usize - base;
            out.push(&text.as_bytes()[at..at + p.len()]);
        });
        out
    }
}
