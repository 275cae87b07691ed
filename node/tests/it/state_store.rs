//! The state machine's store contract, run over the state engineer's
//! `MemStore` and the node's store on both backends: equal blocks must give
//! equal roots, provable lookups, ordered commits and recovery on reopen.

use palisade_consensus::executor::{ExecutionContext, Executor};
use palisade_consensus::state::{
    encode_payload, Authority, Genesis, MemStore, RegistryExecutor, StateCommit, StateReader,
    StateStore, StoreError,
};
use palisade_crypto::{
    BlockInfo, Digest, Endpoint, Enrollment, Registration, Role, SecretKey, SignedTransaction,
    Transaction, TxBody, Validator, VerifiedLedgerInfo,
};
use palisade_node::NodeStore;

pub(crate) fn genesis(validators: &[SecretKey], service: &SecretKey) -> Genesis {
    let mut g = Genesis::new(
        "test-chain",
        1_000_000,
        validators
            .iter()
            .map(|k| Validator {
                key: k.public(),
                power: 1,
            })
            .collect(),
        Authority {
            members: vec![validators[0].public()],
            threshold: 1,
        },
    );
    g.enrollments.push(Enrollment {
        identity: service.public(),
        namespaces: vec!["prod".into()],
        role: Role::Service,
    });
    g
}

pub(crate) fn register(
    genesis_hash: &Digest,
    key: &SecretKey,
    seq: u64,
    service: &str,
    instance: &str,
) -> SignedTransaction {
    Transaction {
        chain_id: "test-chain".into(),
        genesis_hash: *genesis_hash,
        signer: key.public(),
        sequence: seq,
        body: TxBody::Register(Registration {
            namespace: "prod".into(),
            service: service.into(),
            instance: instance.into(),
            endpoints: vec![Endpoint {
                protocol: "http".into(),
                host: "10.0.0.1".into(),
                port: 8080,
                weight: 1,
            }],
            labels: vec![],
            version: "1".into(),
            ttl_secs: 60,
            probe: None,
        }),
    }
    .sign(key)
}

fn run<S: StateStore>(
    store: S,
    g: &Genesis,
    svc: &SecretKey,
) -> (Vec<Digest>, RegistryExecutor<S>) {
    let mut exec = RegistryExecutor::open(store, g).unwrap();
    let mut roots = vec![exec.committed().1];
    for h in 1..=3u64 {
        let ctx = ExecutionContext {
            parent_id: exec.committed().0,
            block_id: Digest([h as u8; 32]),
            height: h,
            epoch: 0,
            timestamp_ms: 1_000_000 + h * 1000,
        };
        let payload = encode_payload(&[register(&g.hash(), svc, h - 1, "api", &format!("i{h}"))]);
        let result = exec.execute(&ctx, &payload).unwrap();
        exec.commit(&ctx.block_id).unwrap();
        roots.push(result.state_root);
    }
    (roots, exec)
}

#[test]
fn registry_executor_agrees_on_mem_store_and_node_stores() {
    let validators: Vec<SecretKey> = (1..=4).map(|i| SecretKey::from_seed([i; 32])).collect();
    let svc = SecretKey::from_seed([9; 32]);
    let g = genesis(&validators, &svc);
    let (expected, _) = run(MemStore::new(), &g, &svc);
    let dir = tempfile::tempdir().unwrap();
    let stores = [
        ("mem", NodeStore::in_memory()),
        (
            "rocks",
            NodeStore::open_rocks(&dir.path().join("db")).unwrap(),
        ),
    ];
    for (name, store) in stores {
        let (roots, exec) = run(store.clone(), &g, &svc);
        assert_eq!(roots, expected, "{name}: roots per height");
        let lookup = StateReader::at(&store, 3).service("prod", "api").unwrap();
        let info = BlockInfo {
            round: 3,
            height: 3,
            block_id: Digest([3; 32]),
            state_root: roots[3],
            tx_root: Digest::ZERO,
            timestamp_ms: 0,
            next_validators: None,
            parent_info: Digest::ZERO,
        };
        let verified = lookup.verify(&verified_ledger(info)).unwrap();
        assert_eq!(verified.record.unwrap().instances.len(), 3, "{name}");
        let rec = store.height_record(2).unwrap().unwrap();
        assert_eq!(rec.outcomes, vec!["applied".to_string()], "{name}");
        assert_eq!(
            rec.changed,
            vec![("prod".to_string(), "api".to_string())],
            "{name}"
        );
        // The change index keeps every leaf kind the block changed, not
        // only services: the registration's instance, its service index and
        // the signer's sequence.
        let changes = store.changes_at(2).unwrap().unwrap();
        assert!(
            changes.contains(&palisade_crypto::StateKey::Account { key: svc.public() }),
            "{name}: {changes:?}"
        );
        assert!(
            changes
                .iter()
                .any(|k| matches!(k, palisade_crypto::StateKey::Instance { instance, .. } if instance.as_str() == "i2")),
            "{name}: {changes:?}"
        );
        assert!(changes
            .iter()
            .any(|k| matches!(k, palisade_crypto::StateKey::Service { .. })));
        assert_eq!(store.changes_at(99).unwrap(), None, "{name}");
        // Commits must follow the stored height by exactly one.
        let meta = store.last_commit().unwrap().unwrap();
        let bad = StateCommit {
            meta: palisade_consensus::state::CommitMeta { height: 7, ..meta },
            tree: Default::default(),
            receipts: palisade_consensus::state::BlockReceipts {
                height: 7,
                tx_root: Digest::ZERO,
                receipts: vec![],
            },
            changed: vec![],
        };
        assert_eq!(
            store.write_commit(&bad),
            Err(StoreError::OutOfOrder {
                got: 7,
                stored: Some(3)
            }),
            "{name}"
        );
        drop(exec);
    }
    // Reopen RocksDB: the executor resumes at height 3 with the same root.
    let store = NodeStore::open_rocks(&dir.path().join("db")).unwrap();
    let exec = RegistryExecutor::open(store, &g).unwrap();
    assert_eq!(exec.committed().1, expected[3]);
}

/// A ledger info for proof checks (certificates are tested elsewhere).
fn verified_ledger(info: BlockInfo) -> VerifiedLedgerInfo {
    use palisade_crypto::{CommitCertificate, LedgerInfo, ValidatorSet};
    let key = SecretKey::from_seed([1; 32]);
    let set = ValidatorSet {
        epoch: 0,
        validators: vec![Validator {
            key: key.public(),
            power: 1,
        }],
    };
    let li = LedgerInfo {
        chain_id: "c".into(),
        genesis_hash: Digest::ZERO,
        epoch: 0,
        commit: Some(info),
        consensus_data_hash: Digest::ZERO,
    };
    let sig = key.sign_digest(&li.digest());
    CommitCertificate {
        ledger_info: li,
        signatures: vec![(key.public(), sig)],
    }
    .verify(&set, "c")
    .unwrap()
}

/// Commits record jmt's stale-node index, so the pruner can delete the
/// nodes that block 3's state no longer uses; block 3 still proves.
#[test]
fn commits_record_stale_nodes_that_the_pruner_deletes_and_the_kept_height_proves() {
    use palisade_node::storage::{prune, Cf};
    let validators: Vec<SecretKey> = (1..=4).map(|i| SecretKey::from_seed([i; 32])).collect();
    let svc = SecretKey::from_seed([9; 32]);
    let g = genesis(&validators, &svc);
    let store = NodeStore::in_memory();
    let (roots, exec) = run(store.clone(), &g, &svc);
    drop(exec);
    let stale = store.kv().scan(Cf::Stale, &[], 100_000).unwrap().len();
    assert!(stale > 0, "no stale-node index recorded at commit");
    let nodes = store.kv().scan(Cf::JmtNodes, &[], 100_000).unwrap().len();
    let t = prune::prune_stale(store.kv().as_ref(), 3, usize::MAX).unwrap();
    assert!(t.nodes > 0, "{t:?}");
    assert_eq!(
        store.kv().scan(Cf::JmtNodes, &[], 100_000).unwrap().len(),
        nodes - t.nodes as usize
    );
    // A fresh store over the same data (no node cache): height 3 proves.
    let fresh = NodeStore::new(store.kv().clone());
    let lookup = StateReader::at(&fresh, 3).service("prod", "api").unwrap();
    let info = BlockInfo {
        round: 3,
        height: 3,
        block_id: Digest([3; 32]),
        state_root: roots[3],
        tx_root: Digest::ZERO,
        timestamp_ms: 0,
        next_validators: None,
        parent_info: Digest::ZERO,
    };
    let verified = lookup.verify(&verified_ledger(info)).unwrap();
    assert_eq!(verified.record.unwrap().instances.len(), 3);
}
