//! One storage suite, run over the in-memory backend and RocksDB.

use std::sync::Arc;

use jmt::JellyfishMerkleTree;
use palisade_crypto::{
    state_key_hash, BlockInfo, CommitCertificate, Digest, JmtHasher, LedgerInfo, MapProof, StateKey,
};
use palisade_node::storage::{
    Batch, Cf, HeightRecord, KvBackend, KvTreeStore, MemKv, NodeStore, RocksKv,
};

fn backends() -> Vec<(&'static str, Arc<dyn KvBackend>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let rocks: Arc<dyn KvBackend> = RocksKv::open(&dir.path().join("db")).unwrap();
    let mem: Arc<dyn KvBackend> = MemKv::new();
    vec![("mem", mem, None), ("rocks", rocks, Some(dir))]
}

#[test]
fn kv_batches_seeks_and_scans_agree_across_backends() {
    for (name, kv, _dir) in backends() {
        let mut b = Batch::new();
        for i in [1u8, 3, 5] {
            b.put(Cf::Blocks, vec![i], vec![i * 10]);
        }
        b.put(Cf::Certs, vec![4], vec![44]);
        kv.write(b, true).unwrap();
        assert_eq!(kv.get(Cf::Blocks, &[3]).unwrap(), Some(vec![30]), "{name}");
        assert_eq!(
            kv.get(Cf::Blocks, &[4]).unwrap(),
            None,
            "{name}: column families are separate"
        );
        assert_eq!(
            kv.seek_prev(Cf::Blocks, &[4]).unwrap(),
            Some((vec![3], vec![30])),
            "{name}"
        );
        assert_eq!(kv.seek_prev(Cf::Blocks, &[0]).unwrap(), None, "{name}");
        assert_eq!(
            kv.seek_prev(Cf::Certs, &[9]).unwrap(),
            Some((vec![4], vec![44])),
            "{name}"
        );
        let page = kv.scan(Cf::Blocks, &[2], 10).unwrap();
        assert_eq!(
            page,
            vec![(vec![3], vec![30]), (vec![5], vec![50])],
            "{name}"
        );
        assert_eq!(
            kv.scan(Cf::Blocks, &[0], 1).unwrap().len(),
            1,
            "{name}: limit"
        );
        let mut b = Batch::new();
        b.delete(Cf::Blocks, vec![3]);
        b.put(Cf::Blocks, vec![6], vec![60]);
        kv.write(b, false).unwrap();
        assert_eq!(kv.get(Cf::Blocks, &[3]).unwrap(), None, "{name}");
        assert_eq!(
            kv.seek_prev(Cf::Blocks, &[4]).unwrap(),
            Some((vec![1], vec![10])),
            "{name}"
        );
    }
}

/// Value keys (key hash || version) of prefixes 0..40 not divisible by 3,
/// at versions 2, 5 and 9: the first half flushed to table files, the
/// rest in memtables (unlogged, as the state commit writes them).
#[test]
fn value_seeks_stay_in_their_prefix_and_scans_see_every_key_on_every_backend() {
    use palisade_node::storage::VALUE_PREFIX_LEN;
    let prefix = |i: u8| [i.wrapping_mul(7); VALUE_PREFIX_LEN];
    let vkey = |i: u8, v: u64| {
        let mut k = prefix(i).to_vec();
        k.extend_from_slice(&v.to_be_bytes());
        k
    };
    let present = |i: u8| i % 3 != 0;
    for (name, kv, _dir) in backends() {
        for half in [0..20u8, 20..40] {
            let mut b = Batch::new();
            for i in half.clone().filter(|i| present(*i)) {
                for v in [2u64, 5, 9] {
                    b.put(Cf::JmtValues, vkey(i, v), vec![i, v as u8]);
                }
            }
            kv.write_unlogged(b).unwrap();
            if half.start == 0 {
                kv.flush_cf(Cf::JmtValues).unwrap();
            }
        }
        for i in 0..40u8 {
            for q in [0u64, 1, 2, 3, 5, 8, 9, 100] {
                let want = [9u64, 5, 2]
                    .into_iter()
                    .find(|v| present(i) && *v <= q)
                    .map(|v| (vkey(i, v), vec![i, v as u8]));
                let got = kv
                    .seek_prev_in_prefix(Cf::JmtValues, &vkey(i, q), VALUE_PREFIX_LEN)
                    .unwrap();
                assert_eq!(got, want, "{name}: prefix {i} at {q}");
            }
        }
        // Whole-order reads of the same family are not confined to a
        // prefix: a seek from a key never written lands on the previous
        // key, and a scan sees every key, in order.
        let before = kv.seek_prev(Cf::JmtValues, &vkey(3, 100)).unwrap();
        assert_eq!(
            before.map(|(k, _)| k),
            Some(vkey(2, 9)),
            "{name}: total order"
        );
        let all = kv.scan(Cf::JmtValues, &[], usize::MAX).unwrap();
        let mut want: Vec<Vec<u8>> = (0..40u8)
            .filter(|i| present(*i))
            .flat_map(|i| [2u64, 5, 9].map(|v| vkey(i, v)))
            .collect();
        want.sort();
        assert_eq!(
            all.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            want,
            "{name}: scan"
        );
    }
}

/// A database written before the value family had its prefix extractor
/// (table files with whole-key filters only): the prefix-mode read must not
/// trust a filter those files do not have. RocksDB records each table's
/// extractor and skips the prefix check where it differs; a wrong "never
/// written" here would be cached and fork the state root.
#[test]
fn value_seeks_are_right_on_table_files_written_before_the_prefix_filter() {
    use palisade_node::storage::VALUE_PREFIX_LEN;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let vkey = |i: u8, v: u64| {
        let mut k = vec![i; VALUE_PREFIX_LEN];
        k.extend_from_slice(&v.to_be_bytes());
        k
    };
    {
        // The old layout: every family with the default options.
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&opts, &path, Cf::ALL.iter().map(|c| c.name())).unwrap();
        let cf = db.cf_handle(Cf::JmtValues.name()).unwrap();
        for i in (0..60u8).filter(|i| i % 2 == 0) {
            db.put_cf(cf, vkey(i, 4), [i]).unwrap();
        }
        db.flush_cf(cf).unwrap();
    }
    let kv = RocksKv::open(&path).unwrap();
    // Newer versions of some keys, in memtables and in a new table file.
    let mut b = Batch::new();
    for i in (0..60u8).filter(|i| i % 4 == 0) {
        b.put(Cf::JmtValues, vkey(i, 8), vec![i, 8]);
    }
    kv.write_unlogged(b).unwrap();
    let check = |when: &str| {
        for i in 0..60u8 {
            for q in [3u64, 4, 7, 8, 100] {
                let want = [(8u64, i % 4 == 0), (4, i % 2 == 0)]
                    .into_iter()
                    .find(|(v, written)| *written && *v <= q)
                    .map(|(v, _)| v);
                let got = kv
                    .seek_prev_in_prefix(Cf::JmtValues, &vkey(i, q), VALUE_PREFIX_LEN)
                    .unwrap()
                    .map(|(k, _)| u64::from_be_bytes(k[32..].try_into().unwrap()));
                assert_eq!(got, want, "{when}: key {i} at {q}");
            }
        }
    };
    check("old table file + memtable");
    kv.flush_cf(Cf::JmtValues).unwrap();
    check("old and new table files");
}

fn key(i: u32) -> StateKey {
    StateKey::System {
        name: format!("k{i}"),
    }
}

/// Writes versions 0..5 through jmt, returns the roots.
fn write_tree(tree: &KvTreeStore) -> Vec<Digest> {
    let mut roots = Vec::new();
    for version in 0u64..5 {
        let jmt = JellyfishMerkleTree::<_, JmtHasher>::new(tree);
        let mut writes = vec![];
        for i in 0..(version as u32 + 2) {
            writes.push((
                state_key_hash(&key(i)),
                Some(format!("v{version}-{i}").into_bytes()),
            ));
        }
        if version == 3 {
            writes.push((state_key_hash(&key(0)), None));
        }
        let (root, batch) = jmt.put_value_set(writes, version).unwrap();
        jmt::storage::TreeWriter::write_node_batch(tree, &batch.node_batch).unwrap();
        roots.push(Digest(root.0));
    }
    roots
}

#[test]
fn tree_store_serves_proofs_at_every_version_on_every_backend() {
    let mut all_roots = Vec::new();
    for (name, kv, _dir) in backends() {
        let tree = KvTreeStore::new(kv);
        let roots = write_tree(&tree);
        let jmt = JellyfishMerkleTree::<_, JmtHasher>::new(&tree);
        for (version, root) in roots.iter().enumerate() {
            let version = version as u64;
            for i in 0..7u32 {
                let (value, proof) = jmt
                    .get_with_proof(state_key_hash(&key(i)), version)
                    .unwrap();
                let expected = if (version == 3 && i == 0) || i >= version as u32 + 2 {
                    None
                } else {
                    Some(format!("v{version}-{i}").into_bytes())
                };
                assert_eq!(value, expected, "{name}: key {i} at version {version}");
                MapProof(proof.clone())
                    .verify(root, &key(i), value.as_deref())
                    .unwrap_or_else(|e| panic!("{name}: proof for {i}@{version}: {e}"));
                assert!(
                    MapProof(proof)
                        .verify(root, &key(i), Some(b"forged"))
                        .is_err(),
                    "{name}: a proof must not vouch for another value"
                );
            }
        }
        all_roots.push(roots);
    }
    assert_eq!(
        all_roots[0], all_roots[1],
        "backends must yield identical roots"
    );
}

fn info(height: u64, next: bool) -> BlockInfo {
    BlockInfo {
        round: height + 1,
        height,
        block_id: Digest([height as u8; 32]),
        state_root: Digest([7; 32]),
        tx_root: Digest::ZERO,
        timestamp_ms: 1000 * height,
        next_validators: next.then(|| palisade_crypto::ValidatorSet {
            epoch: 1,
            validators: vec![],
        }),
        parent_info: Digest::ZERO,
    }
}

fn cert(info: &BlockInfo) -> CommitCertificate {
    CommitCertificate {
        ledger_info: LedgerInfo {
            chain_id: "test".into(),
            genesis_hash: Digest::ZERO,
            epoch: 0,
            commit: Some(info.clone()),
            consensus_data_hash: Digest::ZERO,
        },
        signatures: vec![],
    }
}

fn record(ids: &[u8]) -> HeightRecord {
    HeightRecord {
        tx_ids: ids.iter().map(|i| Digest([*i; 32])).collect(),
        outcomes: ids.iter().map(|_| "applied".to_string()).collect(),
        codes: ids.iter().map(|_| 0).collect(),
        changed: vec![("ns".into(), "svc".into())],
    }
}

fn stage(store: &NodeStore, height: u64, ids: &[u8]) {
    let mut batch = Batch::new();
    store
        .stage_height(&mut batch, height, &record(ids))
        .unwrap();
    store.write_synced(batch).unwrap();
}

#[test]
fn node_store_indexes_commits_receipts_certs_and_epochs() {
    for (name, kv, _dir) in backends() {
        let store = NodeStore::new(kv);
        assert_eq!(store.committed_height().unwrap(), 0, "{name}");
        assert!(store.latest_cert().unwrap().is_none(), "{name}");
        stage(&store, 1, &[1, 2]);
        stage(&store, 2, &[3]);
        // Height 3 replays transaction 2: its receipt stays at height 1.
        stage(&store, 3, &[2]);
        // Heights 1 and 2 committed together; the certificate names 2.
        store
            .commit_ledger(
                &[info(1, false), info(2, false)],
                Some(&cert(&info(2, false))),
            )
            .unwrap();
        // Height 3 ends epoch 0.
        store
            .commit_ledger(&[info(3, true)], Some(&cert(&info(3, true))))
            .unwrap();
        assert_eq!(store.committed_height().unwrap(), 3, "{name}");
        assert_eq!(
            store.height_record(1).unwrap(),
            Some(record(&[1, 2])),
            "{name}"
        );
        assert_eq!(store.block_info(2).unwrap(), Some(info(2, false)), "{name}");
        assert_eq!(
            store.cert_at(1).unwrap(),
            None,
            "{name}: height 1 has no own certificate"
        );
        assert_eq!(
            store.cert_from(1).unwrap().map(|(h, _)| h),
            Some(2),
            "{name}"
        );
        assert_eq!(
            store.latest_cert().unwrap().map(|(h, _)| h),
            Some(3),
            "{name}"
        );
        let loc = store.tx_location(&Digest([2; 32])).unwrap().unwrap();
        assert_eq!(
            (loc.height, loc.index),
            (1, 1),
            "{name}: first inclusion wins"
        );
        assert_eq!(store.tx_location(&Digest([9; 32])).unwrap(), None, "{name}");
        let epochs = store.epoch_changes(0, 10).unwrap();
        assert_eq!(epochs.len(), 1, "{name}");
        assert_eq!(
            epochs[0].ledger_info.commit.as_ref().unwrap().height,
            3,
            "{name}"
        );
        assert!(store.epoch_changes(1, 10).unwrap().is_empty(), "{name}");
        store.put_safety("safety", b"round=7").unwrap();
        assert_eq!(
            store.safety("safety").unwrap(),
            Some(b"round=7".to_vec()),
            "{name}"
        );
    }
}

#[test]
fn rocks_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = NodeStore::open_rocks(&path).unwrap();
        stage(&store, 1, &[5]);
        store
            .commit_ledger(&[info(1, false)], Some(&cert(&info(1, false))))
            .unwrap();
        store.put_safety("safety", b"voted").unwrap();
        write_tree(store.tree());
    }
    let store = NodeStore::open_rocks(&path).unwrap();
    assert_eq!(store.committed_height().unwrap(), 1);
    assert_eq!(store.safety("safety").unwrap(), Some(b"voted".to_vec()));
    assert!(store.tx_location(&Digest([5; 32])).unwrap().is_some());
    let jmt = JellyfishMerkleTree::<_, JmtHasher>::new(store.tree());
    let (value, _) = jmt.get_with_proof(state_key_hash(&key(1)), 4).unwrap();
    assert_eq!(value, Some(b"v4-1".to_vec()));
}

/// A store written in another state layout is refused at open with the
/// layout's error, not decoded until the first record that does not fit;
/// a new store is marked, and a marked store reopens.
#[test]
fn a_store_of_another_state_layout_is_refused_at_open() {
    use palisade_node::storage::STATE_LAYOUT;
    use palisade_node::StorageError;
    let dir = tempfile::tempdir().unwrap();
    // Written before layout marks (layout 1): data, no mark.
    let old = dir.path().join("old");
    {
        let kv = RocksKv::open(&old).unwrap();
        let mut b = Batch::new();
        b.put(Cf::Safety, b"safety".to_vec(), b"voted".to_vec());
        kv.write(b, true).unwrap();
    }
    match NodeStore::open_rocks(&old) {
        Err(StorageError::Layout { found, expected }) => {
            assert_eq!((found, expected), (1, STATE_LAYOUT));
        }
        other => panic!("a layout-1 store opened: {:?}", other.map(|_| ())),
    }
    // The refusal wrote nothing: the store is as it was.
    {
        let kv = RocksKv::open(&old).unwrap();
        assert_eq!(kv.scan(Cf::Meta, &[], 10).unwrap(), vec![]);
    }
    // A new store is marked and reopens; a mark of another layout is refused.
    let new = dir.path().join("new");
    {
        let store = NodeStore::open_rocks(&new).unwrap();
        store.put_safety("safety", b"voted").unwrap();
        store.sync().unwrap();
    }
    {
        let store = NodeStore::open_rocks(&new).unwrap();
        assert_eq!(store.safety("safety").unwrap(), Some(b"voted".to_vec()));
        let mut b = Batch::new();
        b.put(
            Cf::Meta,
            b"state_layout".to_vec(),
            3u32.to_be_bytes().to_vec(),
        );
        store.kv().write(b, true).unwrap();
    }
    let err = NodeStore::open_rocks(&new).map(|_| ()).unwrap_err();
    assert!(
        matches!(err, StorageError::Layout { found: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("new network"), "{err}");
}
