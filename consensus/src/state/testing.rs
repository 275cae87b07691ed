//! A conformance suite for [`StateStore`] implementations (feature
//! `testing`): run it against every backend, e.g. the node's RocksDB store,
//! so that all of them keep the invariants the executor relies on.

use palisade_crypto::{Digest, StateKey};

use super::store::{CommitMeta, StateCommit, StateStore, StoreError};
use super::{compute_update, BlockReceipts, StateReader};

fn key(i: u8) -> StateKey {
    StateKey::System {
        name: format!("conformance-{i}"),
    }
}

fn commit(
    height: u64,
    writes: Vec<(StateKey, Option<Vec<u8>>)>,
    store: &dyn StateStore,
) -> StateCommit {
    let (root, tree) = compute_update(store, height, writes).expect("update computes");
    StateCommit {
        meta: CommitMeta {
            block_id: Digest([height as u8 + 1; 32]),
            height,
            epoch: 0,
            timestamp_ms: 1_000 + height,
            state_root: root,
            tx_root: Digest::ZERO,
        },
        tree,
        receipts: BlockReceipts::new(height, Vec::new()),
        changed: Vec::new(),
    }
}

/// Check an empty `store`: commits in order only, metadata round-trips,
/// values are versioned with deletions kept as tombstones, and every
/// committed version still proves against its root. Panics on a violation.
pub fn check_store(store: &dyn StateStore) {
    assert_eq!(store.last_commit().unwrap(), None, "a new store is empty");
    let c0 = commit(
        0,
        vec![
            (key(1), Some(b"one".to_vec())),
            (key(2), Some(b"two".to_vec())),
        ],
        store,
    );
    let mut early = c0.clone();
    early.meta.height = 1;
    assert!(
        matches!(
            store.write_commit(&early),
            Err(StoreError::OutOfOrder {
                got: 1,
                stored: None
            })
        ),
        "height 1 before genesis must be refused"
    );
    store.write_commit(&c0).unwrap();
    assert_eq!(store.last_commit().unwrap(), Some(c0.meta.clone()));
    let c1 = commit(
        1,
        vec![(key(1), None), (key(3), Some(b"three".to_vec()))],
        store,
    );
    store.write_commit(&c1).unwrap();
    assert!(
        matches!(
            store.write_commit(&c1),
            Err(StoreError::OutOfOrder {
                got: 1,
                stored: Some(1)
            })
        ),
        "a height committed twice must be refused"
    );
    let c2 = commit(2, vec![(key(1), Some(b"again".to_vec()))], store);
    store.write_commit(&c2).unwrap();
    assert_eq!(store.last_commit().unwrap(), Some(c2.meta.clone()));
    let expected: [(u64, [Option<&[u8]>; 3]); 3] = [
        (0, [Some(b"one"), Some(b"two"), None]),
        (1, [None, Some(b"two"), Some(b"three")]),
        (2, [Some(b"again"), Some(b"two"), Some(b"three")]),
    ];
    for ((version, values), c) in expected.iter().zip([&c0, &c1, &c2]) {
        let reader = StateReader::at(store, *version);
        assert_eq!(
            reader.root().unwrap(),
            c.meta.state_root,
            "root of version {version}"
        );
        for (i, want) in values.iter().enumerate() {
            let k = key(i as u8 + 1);
            let (value, proof) = reader.prove(&k).unwrap();
            assert_eq!(
                value.as_deref(),
                *want,
                "value of {k:?} at version {version}"
            );
            proof
                .verify(&c.meta.state_root, &k, value.as_deref())
                .expect("proof verifies against its version's root");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_store_conforms() {
        super::check_store(&super::super::MemStore::new());
    }
}
