//! Properties: any chain verifies; any single-byte change, deletion, swap or truncation
//! is detected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use audit_chain::{
    AuditEvent, CheckpointSigner, GENESIS_PREV_HASH, VerifyOptions, VerifyReport,
    verify_jsonl_reader,
};
use policy_engine::ContentCapture;
use proptest::prelude::*;

fn lines(kinds: &[u64]) -> (Vec<Vec<u8>>, [u8; 32]) {
    let ctx = common::ctx(ContentCapture::Redacted);
    let mut prev = GENESIS_PREV_HASH;
    let mut out = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let ev =
            AuditEvent::from_exchange(&common::exchange(*k), &ctx, i as u64 + 1, prev).unwrap();
        prev = hex::decode(&ev.hash).unwrap().try_into().unwrap();
        out.push(ev.to_json_line().unwrap());
    }
    (out, prev)
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn verify(bytes: &[u8], key: Option<&CheckpointSigner>) -> VerifyReport {
    verify_jsonl_reader(
        bytes,
        &VerifyOptions {
            from_seq: Some(1),
            public_key: key.map(CheckpointSigner::public_key),
        },
    )
    .unwrap()
}

fn checkpoint_line(signer: &CheckpointSigner, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let cp = signer.sign(seq, hash, "2025-01-01T00:00:00.000000Z");
    let v = serde_json::json!({"checkpoint": {
        "seq": cp.seq, "hash": hex::encode(&cp.hash), "time": cp.time,
        "key_id": cp.key_id, "signature": hex::encode(&cp.signature)}});
    audit_chain::to_canonical(&v).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_appends_verifies(kinds in prop::collection::vec(0u64..1000, 1..30)) {
        let (l, head) = lines(&kinds);
        let r = verify(&join(&l), None);
        prop_assert_eq!(r.broken, None);
        prop_assert_eq!(r.events_verified, kinds.len() as u64);
        prop_assert_eq!(r.head_hash, Some(hex::encode(head)));
    }

    #[test]
    fn any_single_byte_change_is_detected(
        kinds in prop::collection::vec(0u64..1000, 1..12),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let (l, _) = lines(&kinds);
        let mut bytes = join(&l);
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        prop_assert!(verify(&bytes, None).broken.is_some());
    }

    #[test]
    fn any_deletion_swap_or_truncation_is_detected(
        kinds in prop::collection::vec(0u64..1000, 2..16),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        op in 0u8..3,
    ) {
        let signer = CheckpointSigner::generate();
        let (mut l, head) = lines(&kinds);
        let n = l.len();
        // The signed head travels with the file (as a checkpoint line at the end).
        let cp = checkpoint_line(&signer, n as u64, &head);
        match op {
            0 => { l.remove(a.index(n)); }
            1 => {
                let (i, j) = (a.index(n), b.index(n));
                prop_assume!(i != j);
                l.swap(i, j);
            }
            _ => { l.truncate(a.index(n)); }
        }
        l.push(cp);
        let r = verify(&join(&l), Some(&signer));
        prop_assert!(r.broken.is_some(), "op {} not detected", op);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The same through the writer and the SQLite store: appends verify; a changed byte in
    /// any stored event is found at that event.
    #[test]
    fn store_appends_verify_and_a_changed_byte_is_found(
        kinds in prop::collection::vec(0u64..1000, 1..10),
        row in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        byte in 0x20u8..0x7f,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let w = audit_chain::AuditWriter::open(dir.path(), audit_chain::WriterConfig::default()).unwrap();
            let ctx = common::ctx(ContentCapture::Redacted);
            for k in &kinds {
                w.append(&common::exchange(*k), &ctx).await.unwrap();
            }
            w.close();
        });
        let db = audit_chain::db_path(dir.path());
        let ok = audit_chain::verify_store(&db, &VerifyOptions::default()).unwrap();
        prop_assert_eq!(ok.broken, None);
        prop_assert_eq!(ok.events_verified, kinds.len() as u64);
        let seq = row.index(kinds.len()) as i64 + 1;
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut ev: Vec<u8> = conn
            .query_row("SELECT event FROM audit_events WHERE seq = ?1", [seq], |r| r.get::<_, String>(0))
            .unwrap()
            .into_bytes();
        let i = pos.index(ev.len());
        prop_assume!(ev[i] != byte);
        ev[i] = byte;
        prop_assume!(std::str::from_utf8(&ev).is_ok());
        conn.execute("UPDATE audit_events SET event = ?1 WHERE seq = ?2", rusqlite::params![String::from_utf8(ev).unwrap(), seq]).unwrap();
        let r = audit_chain::verify_store(&db, &VerifyOptions::default()).unwrap();
        prop_assert_eq!(r.broken.map(|b| b.seq), Some(seq as u64));
    }
}
