//! Property tests of the authenticated map: proofs of presence and absence
//! verify against their root at every version, and any tampering fails.

use std::collections::BTreeMap;

use palisade_crypto::{decode, encode, Digest, MapProof, StateKey};
use proptest::prelude::*;

use super::super::store::{CommitMeta, StateCommit, StateStore};
use super::super::{compute_update, BlockReceipts, MemStore, StateReader};

/// One version's writes: key index -> value (`None` deletes).
type Batch = Vec<(u8, Option<Vec<u8>>)>;

fn k(i: u8) -> StateKey {
    StateKey::System {
        name: format!("k{i}"),
    }
}

/// Commit `batches` as versions 0.., returning each version's root and model.
fn build(store: &MemStore, batches: &[Batch]) -> Vec<(Digest, BTreeMap<u8, Vec<u8>>)> {
    let mut model = BTreeMap::new();
    let mut out = Vec::new();
    for (version, batch) in batches.iter().enumerate() {
        let version = version as u64;
        let writes = batch.iter().map(|(i, v)| (k(*i), v.clone()));
        let (root, tree) = compute_update(store, version, writes).unwrap();
        store
            .write_commit(&StateCommit {
                meta: CommitMeta {
                    block_id: Digest([version as u8; 32]),
                    height: version,
                    epoch: 0,
                    timestamp_ms: version,
                    state_root: root,
                    tx_root: Digest::ZERO,
                },
                tree,
                receipts: BlockReceipts::new(version, Vec::new()),
                changed: Vec::new(),
            })
            .unwrap();
        for (i, v) in batch {
            match v {
                Some(v) => model.insert(*i, v.clone()),
                None => model.remove(i),
            };
        }
        out.push((root, model.clone()));
    }
    out
}

fn batches() -> impl Strategy<Value = Vec<Batch>> {
    let write = (
        0u8..48,
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..40)),
    );
    prop::collection::vec(prop::collection::vec(write, 0..24), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_version_proves_presence_and_absence(batches in batches()) {
        let store = MemStore::new();
        let versions = build(&store, &batches);
        for (version, (root, model)) in versions.iter().enumerate() {
            let reader = StateReader::at(&store, version as u64);
            prop_assert_eq!(reader.root().unwrap(), *root);
            for i in 0u8..64 {
                let (value, proof) = reader.prove(&k(i)).unwrap();
                prop_assert_eq!(value.as_ref(), model.get(&i));
                prop_assert!(proof.verify(root, &k(i), value.as_deref()).is_ok());
                // The other verdict never verifies.
                match &value {
                    Some(_) => prop_assert!(proof.verify(root, &k(i), None).is_err()),
                    None => prop_assert!(proof.verify(root, &k(i), Some(b"x")).is_err()),
                }
            }
        }
    }

    #[test]
    fn tampering_with_value_proof_or_root_fails(batches in batches(), pick in 0u8..64, flip in any::<u8>()) {
        let store = MemStore::new();
        let versions = build(&store, &batches);
        let (root, _) = versions.last().unwrap();
        let reader = StateReader::at(&store, versions.len() as u64 - 1);
        let key = k(pick);
        let (value, proof) = reader.prove(&key).unwrap();
        let mask = flip | 1;
        if let Some(v) = &value {
            for i in 0..v.len() {
                let mut bad = v.clone();
                bad[i] ^= mask;
                prop_assert!(proof.verify(root, &key, Some(&bad)).is_err());
            }
        }
        for i in 0..32 {
            let mut bad = *root;
            bad.0[i] ^= mask;
            prop_assert!(proof.verify(&bad, &key, value.as_deref()).is_err());
        }
        let bytes = encode(&proof);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            if let Ok(p) = decode::<MapProof>(&bad) {
                prop_assert!(p.verify(root, &key, value.as_deref()).is_err(), "flip at {}", i);
            }
        }
    }
}

#[test]
fn empty_tree_proves_absence() {
    let store = MemStore::new();
    let versions = build(&store, &[vec![]]);
    let reader = StateReader::at(&store, 0);
    let (value, proof) = reader.prove(&k(1)).unwrap();
    assert_eq!(value, None);
    proof.verify(&versions[0].0, &k(1), None).unwrap();
}
