//! Layout of the embedded token tables, shared by `build.rs` (which writes them) and the
//! counter (which reads them in place, without copying).
//!
//! A table is one little-endian blob:
//!
//! | field      | size                 | meaning                                           |
//! |------------|----------------------|---------------------------------------------------|
//! | magic      | 4                    | `PBPE`                                            |
//! | version    | u32                  | [`VERSION`]                                       |
//! | `n_ranks`  | u32                  | highest rank + 1 (holes included)                 |
//! | `n_slots`  | u32                  | hash-index slots, a power of two                  |
//! | max probe  | u32                  | longest probe sequence of a stored key            |
//! | `n_bytes`  | u32                  | length of the byte pool                           |
//! | offsets    | (`n_ranks` + 1) × u32 | token `r` is `pool[offsets[r]..offsets[r + 1]]`   |
//! | slots      | `n_slots` × u32      | open addressing, linear probing: a rank or [`EMPTY_SLOT`] |
//! | pool       | `n_bytes`            | every token's bytes, in rank order                |
//!
//! A hole (a rank with no ordinary token, e.g. a special token's id) has an empty range.
//! The index is fixed at build time, so the cost of a lookup is bounded by the longest
//! cluster, whatever the input.

/// First bytes of a table.
pub const MAGIC: [u8; 4] = *b"PBPE";
/// Format version; bump when the layout or [`hash_bytes`] changes.
pub const VERSION: u32 = 1;
/// Bytes before the offsets.
pub const HEADER_LEN: usize = 24;
/// Marks a free slot of the hash index.
pub const EMPTY_SLOT: u32 = u32::MAX;

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The (unkeyed, deterministic) hash of a token's bytes used by the index.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
}
