use std::collections::BTreeMap;

use jmt::mock::MockTreeStore;
use jmt::JellyfishMerkleTree;
use palisade_crypto::{
    encode, state_key_hash, tx_root, Digest, JmtHasher, MapProof, ProofError, StateKey,
    TxInclusionProof,
};
use proptest::prelude::*;

fn skey(i: u32) -> StateKey {
    StateKey::Service {
        namespace: "ns".into(),
        service: format!("svc-{i}"),
    }
}

/// Build a tree holding `entries` at version 0; return it with its root.
fn tree(entries: &BTreeMap<u32, Vec<u8>>) -> (MockTreeStore, Digest) {
    let store = MockTreeStore::default();
    let t = JellyfishMerkleTree::<_, JmtHasher>::new(&store);
    let (root, batch) = t
        .put_value_set(
            entries
                .iter()
                .map(|(k, v)| (state_key_hash(&skey(*k)), Some(v.clone()))),
            0,
        )
        .unwrap();
    store.write_tree_update_batch(batch).unwrap();
    (store, Digest(root.0))
}

fn proof(store: &MockTreeStore, k: u32) -> (Option<Vec<u8>>, MapProof) {
    let t = JellyfishMerkleTree::<_, JmtHasher>::new(store);
    let (v, p) = t.get_with_proof(state_key_hash(&skey(k)), 0).unwrap();
    (v, MapProof(p))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_and_absence_verify_and_tampering_fails(
        entries in proptest::collection::btree_map(0u32..500, proptest::collection::vec(any::<u8>(), 1..40), 1..30),
        missing in 500u32..1000,
        flip in any::<prop::sample::Index>(),
    ) {
        let (store, root) = tree(&entries);
        for (k, v) in &entries {
            let (got, p) = proof(&store, *k);
            prop_assert_eq!(got.as_ref(), Some(v));
            p.verify(&root, &skey(*k), Some(v)).unwrap();
            // Wrong value, wrong key, wrong root all fail.
            let mut wrong = v.clone();
            let i = flip.index(wrong.len());
            wrong[i] ^= 1;
            prop_assert!(p.verify(&root, &skey(*k), Some(&wrong)).is_err());
            prop_assert!(p.verify(&root, &skey(*k + 1000), Some(v)).is_err());
            let mut bad_root = root;
            bad_root.0[flip.index(32)] ^= 1;
            prop_assert!(p.verify(&bad_root, &skey(*k), Some(v)).is_err());
            // Claiming absence of a present key fails.
            prop_assert!(p.verify(&root, &skey(*k), None).is_err());
            // Flipping any byte of the encoded proof breaks it (or its decoding).
            let bytes = encode(&p);
            let mut b = bytes.clone();
            let j = flip.index(b.len());
            b[j] ^= 1;
            if let Ok(p2) = palisade_crypto::decode::<MapProof>(&b) {
                prop_assert!(p2.verify(&root, &skey(*k), Some(v)).is_err());
            }
        }
        let (got, p) = proof(&store, missing);
        prop_assert!(got.is_none());
        p.verify(&root, &skey(missing), None).unwrap();
        let refused = matches!(
            p.verify(&root, &skey(missing), Some(b"x")),
            Err(ProofError::Mismatch { .. })
        );
        prop_assert!(refused, "absence proof accepted as inclusion");
    }

    #[test]
    fn tx_inclusion_proofs_verify_for_every_index(n in 1usize..40, pick in any::<prop::sample::Index>()) {
        let ids: Vec<Digest> = (0..n).map(|i| Digest([i as u8; 32])).collect();
        let root = tx_root(&ids);
        for (i, id) in ids.iter().enumerate() {
            TxInclusionProof::build(&ids, i).verify(&root, id).unwrap();
        }
        let i = pick.index(n);
        let p = TxInclusionProof::build(&ids, i);
        prop_assert!(p.verify(&root, &Digest([0xee; 32])).is_err());
        let mut moved = p.clone();
        moved.index = ((i + 1) % n) as u32;
        if n > 1 {
            prop_assert!(moved.verify(&root, &ids[i]).is_err());
        }
        // The count is bound into the root: a shorter block cannot claim it.
        let mut shorter = p.clone();
        shorter.total = n as u32 + 1;
        prop_assert!(shorter.verify(&root, &ids[i]).is_err());
    }
}

#[test]
fn empty_block_root_differs_from_any_single_tx_root() {
    assert_ne!(tx_root(&[]), tx_root(&[Digest::ZERO]));
}
