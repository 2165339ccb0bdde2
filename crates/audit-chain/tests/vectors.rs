//! The test vectors in docs/audit-format.md are what this crate computes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use audit_chain::{AuditEvent, GENESIS_PREV_HASH, chain_hash};
use policy_engine::ContentCapture;

fn doc() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/audit-format.md");
    std::fs::read_to_string(p).unwrap()
}

/// `(prev_hash, canonical, hash)` of each ```vector block.
fn doc_vectors() -> Vec<(String, String, String)> {
    let doc = doc();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "```vector" {
            let mut prev = String::new();
            let mut canon = String::new();
            let mut hash = String::new();
            for l in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                if let Some(v) = l.strip_prefix("prev_hash ") {
                    prev = v.to_owned();
                } else if let Some(v) = l.strip_prefix("canonical ") {
                    canon = v.to_owned();
                } else if let Some(v) = l.strip_prefix("hash ") {
                    hash = v.to_owned();
                }
            }
            out.push((prev, canon, hash));
        }
    }
    out
}

fn computed() -> Vec<(String, String, String)> {
    let ctx = common::ctx(ContentCapture::Redacted);
    let mut prev = GENESIS_PREV_HASH;
    let mut out = Vec::new();
    for n in 0..3u64 {
        let ev = AuditEvent::from_exchange(&common::exchange(n), &ctx, n + 1, prev).unwrap();
        let bytes = ev.canonical_bytes().unwrap();
        let hash = chain_hash(&prev, &bytes);
        assert_eq!(ev.hash, hex::encode(hash));
        out.push((
            hex::encode(prev),
            String::from_utf8(bytes).unwrap(),
            hex::encode(hash),
        ));
        prev = hash;
    }
    out
}

#[test]
fn doc_test_vectors_hash_as_stated() {
    let vectors = doc_vectors();
    assert_eq!(vectors.len(), 3);
    for (prev, canon, hash) in &vectors {
        let prev: [u8; 32] = hex::decode(prev).unwrap().try_into().unwrap();
        assert_eq!(&hex::encode(chain_hash(&prev, canon.as_bytes())), hash);
    }
    // And the chain links: each vector's prev_hash is the previous vector's hash.
    assert_eq!(vectors[0].0, "0".repeat(64));
    assert_eq!(vectors[1].0, vectors[0].2);
    assert_eq!(vectors[2].0, vectors[1].2);
}

#[test]
fn doc_test_vectors_are_what_the_event_model_produces() {
    assert_eq!(doc_vectors(), computed());
}

/// `cargo test -p audit-chain --test vectors -- --ignored --nocapture print_vectors`
#[test]
#[ignore = "prints the vectors for docs/audit-format.md"]
fn print_vectors() {
    for (prev, canon, hash) in computed() {
        println!("```vector\nprev_hash {prev}\ncanonical {canon}\nhash {hash}\n```\n");
    }
}

#[test]
fn serde_output_is_the_canonical_form() {
    for content in [
        ContentCapture::Full,
        ContentCapture::Redacted,
        ContentCapture::None,
    ] {
        let mut ctx = common::ctx(content);
        ctx.settings
            .tags
            .push(("seq".to_owned(), "x\u{1f}\u{7f}/\\\"é".to_owned()));
        for n in 0..6u64 {
            let mut ex = common::exchange(n);
            ex.outcome = match n {
                3 => exchange::Outcome::Rejected {
                    status: 400,
                    code: "bad".to_owned(),
                },
                4 => exchange::Outcome::UpstreamError {
                    status: 502,
                    reason: "r".to_owned(),
                },
                5 => exchange::Outcome::Pending,
                _ => ex.outcome,
            };
            let ev = AuditEvent::from_exchange(&ex, &ctx, n + 1, GENESIS_PREV_HASH).unwrap();
            assert_eq!(
                String::from_utf8(ev.canonical_bytes().unwrap()).unwrap(),
                String::from_utf8(ev.canonical_bytes_slow().unwrap()).unwrap()
            );
            let back: AuditEvent = serde_json::from_slice(&ev.to_json_line().unwrap()).unwrap();
            assert_eq!(back, ev);
        }
    }
}
