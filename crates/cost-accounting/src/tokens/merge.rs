//! tiktoken's byte-pair merge, counting only: start from single bytes and repeatedly merge
//! the adjacent pair whose concatenation has the lowest rank (ties to the leftmost pair)
//! until no adjacent pair is a token; the answer is the number of parts left.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// Pieces shorter than this use the quadratic scan on stack arrays (fast for words);
/// longer ones use a heap of candidate merges (`O(n log n)`).
const SMALL: usize = 128;

/// Rank of "no merge possible".
const NONE: u32 = u32::MAX;

/// Tokens in one pre-tokenized piece.
pub(crate) fn count_piece(vocab: &Vocab, piece: &[u8]) -> usize {
    match piece.len() {
        0 => 0,
        // Every single byte is a token (checked when the table is built).
        1 => 1,
        _ if vocab.rank(piece).is_some() => 1,
        n if n < SMALL => count_small(vocab, piece),
        _ => count_large(vocab, piece),
    }
}

/// Rank of `piece[a..b]`, or [`NONE`].
#[inline]
fn rank_of(vocab: &Vocab, piece: &[u8], a: usize, b: usize) -> u32 {
    piece
        .get(a..b)
        .and_then(|bytes| vocab.rank(bytes))
        .unwrap_or(NONE)
}

/// `starts[k]` is where part `k` begins (`starts[len - 1]` = end of piece, a sentinel);
/// `ranks[k]` is the rank of merging parts `k` and `k + 1`.
fn count_small(vocab: &Vocab, piece: &[u8]) -> usize {
    let n = piece.len();
    let mut starts = [0usize; SMALL + 1];
    let mut ranks = [NONE; SMALL + 1];
    for (i, s) in starts.iter_mut().enumerate().take(n + 1) {
        *s = i;
    }
    for (i, r) in ranks.iter_mut().enumerate().take(n - 1) {
        *r = rank_of(vocab, piece, i, i + 2);
    }
    let mut len = n + 1;
    loop {
        let mut best = (NONE, 0);
        for (i, &r) in ranks[..len - 1].iter().enumerate() {
            if r < best.0 {
                best = (r, i);
            }
        }
        let (rank, i) = best;
        if rank == NONE {
            break;
        }
        // Part i absorbs part i + 1.
        starts.copy_within(i + 2..len, i + 1);
        ranks.copy_within(i + 2..len, i + 1);
        len -= 1;
        ranks[i] = pair_rank(vocab, piece, &starts, len, i);
        if i > 0 {
            ranks[i - 1] = pair_rank(vocab, piece, &starts, len, i - 1);
        }
    }
    len - 1
}

/// Rank of merging parts `i` and `i + 1` out of `len - 1` parts.
#[inline]
fn pair_rank(vocab: &Vocab, piece: &[u8], starts: &[usize], len: usize, i: usize) -> u32 {
    if i + 2 < len {
        rank_of(vocab, piece, starts[i], starts[i + 2])
    } else {
        NONE
    }
}

/// The same merge order with a min-heap of `(rank, start)` candidates; a candidate is stale
/// when the pair starting at `start` no longer has that rank (a pair's rank identifies its
/// bytes, so a changed pair never keeps its rank).
fn count_large(vocab: &Vocab, piece: &[u8]) -> usize {
    let n = piece.len();
    // Part starting at i (if alive) ends at end[i]; prev[i] is the start of the part before.
    let mut end: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    let mut pair: Vec<u32> = vec![NONE; n];
    let mut heap = BinaryHeap::with_capacity(n);
    for (i, slot) in pair.iter_mut().enumerate().take(n - 1) {
        let r = rank_of(vocab, piece, i, i + 2);
        *slot = r;
        if r != NONE {
            heap.push(Reverse((r, i)));
        }
    }
    let mut parts = n;
    while let Some(Reverse((rank, left))) = heap.pop() {
        if pair[left] != rank {
            continue;
        }
        let right = end[left];
        let right_end = end[right];
        end[left] = right_end;
        pair[right] = NONE;
        parts -= 1;
        if right_end < n {
            prev[right_end] = left;
            let r = rank_of(vocab, piece, left, end[right_end]);
            pair[left] = r;
            if r != NONE {
                heap.push(Reverse((r, left)));
            }
        } else {
            pair[left] = NONE;
        }
        if left > 0 {
            let p = prev[left];
            let r = rank_of(vocab, piece, p, right_end);
            pair[p] = r;
            if r != NONE {
                heap.push(Reverse((r, p)));
            }
        }
    }
    parts
}
