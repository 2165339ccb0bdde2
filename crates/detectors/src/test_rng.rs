//! Deterministic random texts for the property tests of the detector modules.

/// The next value of a xorshift64 generator with state `x`.
pub(crate) fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A random text of fewer than `max` characters of `alphabet`.
pub(crate) fn random_text(x: &mut u64, alphabet: &[char], max: u64) -> String {
    let n = (xorshift(x) % max) as usize;
    (0..n)
        .map(|_| alphabet[(xorshift(x) % alphabet.len() as u64) as usize])
        .collect()
}
