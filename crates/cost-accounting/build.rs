//! Writes the compact token tables of `o200k_base` and `cl100k_base` to `OUT_DIR`, taking
//! every rank's bytes from `tiktoken-rs` (a build dependency only): the vocabularies are
//! never committed here, and the gateway never builds tiktoken's hash maps at run time.
//! Layout: `src/tokens/table.rs`.

use std::collections::HashSet;
use std::error::Error;
use std::path::Path;
use std::time::Instant;

use tiktoken_rs::CoreBPE;

#[path = "src/tokens/table.rs"]
#[allow(dead_code)]
mod table;

/// Ranks probed for a token; both encodings stay well below.
const RANK_LIMIT: u32 = 1 << 20;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/tokens/table.rs");
    let out_dir = std::env::var_os("OUT_DIR").ok_or("build script: OUT_DIR is not set")?;
    let out_dir = Path::new(&out_dir);
    let started = Instant::now();
    write_table(out_dir, "o200k_base", &tiktoken_rs::o200k_base()?)?;
    write_table(out_dir, "cl100k_base", &tiktoken_rs::cl100k_base()?)?;
    // Not a cargo warning (it would show on every workspace build): a file beside the tables.
    std::fs::write(
        out_dir.join("build-time.txt"),
        format!("{} ms\n", started.elapsed().as_millis()),
    )?;
    Ok(())
}

fn write_table(out_dir: &Path, name: &str, bpe: &CoreBPE) -> Result<(), Box<dyn Error>> {
    let specials: HashSet<u32> = bpe
        .special_tokens()
        .into_iter()
        .flat_map(|s| bpe.encode_with_special_tokens(s))
        .collect();
    let mut tokens: Vec<Option<Vec<u8>>> = Vec::new();
    for rank in 0..RANK_LIMIT {
        if specials.contains(&rank) {
            tokens.push(None);
        } else if let Ok(bytes) = bpe.decode_bytes(&[rank]) {
            if bytes.is_empty() {
                return Err(format!("{name}: rank {rank} has no bytes").into());
            }
            tokens.push(Some(bytes));
        } else {
            tokens.push(None);
        }
    }
    while tokens.last().is_some_and(Option::is_none) {
        tokens.pop();
    }
    let n_ranks = u32::try_from(tokens.len())?;
    let present = tokens.iter().flatten().count();
    let n_slots = (present * 2).next_power_of_two();
    let mask = n_slots - 1;

    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    let mut pool = Vec::new();
    offsets.push(0u32);
    for t in &tokens {
        pool.extend_from_slice(t.as_deref().unwrap_or_default());
        offsets.push(u32::try_from(pool.len())?);
    }

    let mut slots = vec![table::EMPTY_SLOT; n_slots];
    let mut max_probe = 0usize;
    for (rank, t) in tokens.iter().enumerate() {
        let Some(bytes) = t else { continue };
        let mut i = (table::hash_bytes(bytes) as usize) & mask;
        let mut probe = 0;
        while slots[i] != table::EMPTY_SLOT {
            let other = tokens[slots[i] as usize].as_deref();
            if other == Some(bytes.as_slice()) {
                return Err(format!("{name}: rank {rank} repeats rank {}", slots[i]).into());
            }
            i = (i + 1) & mask;
            probe += 1;
        }
        slots[i] = u32::try_from(rank)?;
        max_probe = max_probe.max(probe);
    }
    // The merge step relies on every single byte being a token (as tiktoken does).
    let singles: HashSet<u8> = tokens
        .iter()
        .flatten()
        .filter(|t| t.len() == 1)
        .map(|t| t[0])
        .collect();
    if singles.len() != 256 {
        return Err(format!("{name}: only {} single-byte tokens", singles.len()).into());
    }

    let mut blob =
        Vec::with_capacity(table::HEADER_LEN + 4 * (offsets.len() + slots.len()) + pool.len());
    blob.extend_from_slice(&table::MAGIC);
    for v in [
        table::VERSION,
        n_ranks,
        u32::try_from(n_slots)?,
        u32::try_from(max_probe)?,
        u32::try_from(pool.len())?,
    ] {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    for v in offsets.iter().chain(&slots) {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    blob.extend_from_slice(&pool);
    std::fs::write(out_dir.join(format!("{name}.bpe")), &blob)?;
    std::fs::write(
        out_dir.join(format!("{name}.txt")),
        format!(
            "ranks {n_ranks} tokens {present} slots {n_slots} max_probe {max_probe} pool {} blob {}\n",
            pool.len(),
            blob.len()
        ),
    )?;
    Ok(())
}
