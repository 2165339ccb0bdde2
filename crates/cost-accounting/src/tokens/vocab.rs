//! A token table read in place from the bytes `build.rs` embedded (layout in `table.rs`):
//! nothing is copied or allocated when it is opened.

use super::table::{EMPTY_SLOT, HEADER_LEN, MAGIC, VERSION, hash_bytes};

/// Why an embedded token table could not be opened (a build defect, never input-dependent).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TableError {
    /// The blob does not start with the table header.
    #[error("token table `{0}`: bad magic or version")]
    Header(&'static str),
    /// The sizes in the header do not add up to the blob's length.
    #[error("token table `{0}`: sizes in the header do not match the blob")]
    Size(&'static str),
    /// The pre-tokenizer pattern did not compile.
    #[error("token table `{name}`: pre-tokenizer pattern does not compile")]
    Pattern {
        /// The encoding.
        name: &'static str,
        /// The regex error.
        #[source]
        source: Box<regex_automata::hybrid::BuildError>,
    },
}

/// Reads the little-endian `u32` number `i` of `buf`.
#[inline]
fn u32_at(buf: &[u8], i: usize) -> Option<u32> {
    let at = i.checked_mul(4)?;
    let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// The ranks of one encoding: token bytes → rank, borrowed from static data.
#[derive(Debug)]
pub(crate) struct Vocab {
    offsets: &'static [u8],
    slots: &'static [u8],
    pool: &'static [u8],
    mask: usize,
    max_probe: usize,
}

impl Vocab {
    /// Opens a table written by `build.rs`.
    pub(crate) fn open(name: &'static str, blob: &'static [u8]) -> Result<Self, TableError> {
        let header = |i| u32_at(blob.get(4..HEADER_LEN).unwrap_or_default(), i);
        if blob.get(..4) != Some(MAGIC.as_slice()) || header(0) != Some(VERSION) {
            return Err(TableError::Header(name));
        }
        let field = |i| {
            header(i)
                .map(|v| v as usize)
                .ok_or(TableError::Header(name))
        };
        let (n_ranks, n_slots, max_probe, n_bytes) = (field(1)?, field(2)?, field(3)?, field(4)?);
        let ends = || {
            let offsets_end = HEADER_LEN.checked_add(n_ranks.checked_add(1)?.checked_mul(4)?)?;
            let slots_end = offsets_end.checked_add(n_slots.checked_mul(4)?)?;
            Some((offsets_end, slots_end, slots_end.checked_add(n_bytes)?))
        };
        let Some((offsets_end, slots_end, blob_len)) = ends() else {
            return Err(TableError::Size(name));
        };
        if !n_slots.is_power_of_two() || blob.len() != blob_len {
            return Err(TableError::Size(name));
        }
        let (Some(offsets), Some(slots), Some(pool)) = (
            blob.get(HEADER_LEN..offsets_end),
            blob.get(offsets_end..slots_end),
            blob.get(slots_end..),
        ) else {
            return Err(TableError::Size(name));
        };
        Ok(Self {
            offsets,
            slots,
            pool,
            mask: n_slots - 1,
            max_probe,
        })
    }

    /// Highest rank + 1 (holes included).
    #[cfg(test)]
    pub(crate) fn n_ranks(&self) -> usize {
        self.offsets.len() / 4 - 1
    }

    /// The bytes of token `rank` (`None` for a hole or out of range).
    pub(crate) fn token(&self, rank: u32) -> Option<&'static [u8]> {
        let r = rank as usize;
        let (start, end) = (u32_at(self.offsets, r)?, u32_at(self.offsets, r + 1)?);
        let pool: &'static [u8] = self.pool;
        pool.get(start as usize..end as usize)
            .filter(|t| !t.is_empty())
    }

    /// The rank of the token whose bytes are `bytes`, if there is one.
    #[inline]
    pub(crate) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let mut i = (hash_bytes(bytes) as usize) & self.mask;
        for _ in 0..=self.max_probe {
            let r = u32_at(self.slots, i)?;
            if r == EMPTY_SLOT {
                return None;
            }
            if self.token(r) == Some(bytes) {
                return Some(r);
            }
            i = (i + 1) & self.mask;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n_ranks: u32, n_slots: u32, n_bytes: u32, len: usize) -> &'static [u8] {
        let mut b = MAGIC.to_vec();
        for v in [VERSION, n_ranks, n_slots, 0, n_bytes] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.resize(len, 0);
        Box::leak(b.into_boxed_slice())
    }

    #[test]
    fn rejects_blobs_that_are_not_tables() {
        let err = |b| Vocab::open("x", b).unwrap_err().to_string();
        assert_eq!(err(b"nope"), "token table `x`: bad magic or version");
        assert_eq!(
            err(&b"PBPE\x09\0\0\0"[..]),
            "token table `x`: bad magic or version"
        );
        // 24 header + 2 offsets + 2 slots + 3 bytes = 43.
        assert_eq!(
            err(blob(1, 2, 3, 42)),
            "token table `x`: sizes in the header do not match the blob"
        );
        assert_eq!(
            err(blob(1, 3, 3, 43)),
            "token table `x`: sizes in the header do not match the blob"
        );
        assert_eq!(
            err(blob(u32::MAX, u32::MAX, u32::MAX, 43)),
            "token table `x`: sizes in the header do not match the blob"
        );
        let ok = Vocab::open("x", blob(1, 2, 3, 43)).unwrap();
        assert_eq!(ok.n_ranks(), 1);
        assert_eq!(ok.rank(b"abc"), None);
    }
}
