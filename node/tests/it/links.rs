//! Cross-DC import over real stores: a remote chain executed by the real
//! registry state machine and certified by its validator keys, exported by
//! the real export code, imported into a mirror, looked up and verified by
//! the SDK against the remote genesis set. Lying sources, equivocation and
//! the mirror's root property.

use std::sync::{Arc, Mutex};

use palisade_client::{verify_lookup, TrustedChain};
use palisade_consensus::executor::{ExecutionContext, Executor};
use palisade_consensus::state::{Genesis, RegistryExecutor};
use palisade_crypto::dc::{
    EquivocationEvidence, ExportChanges, ExportHead, ExportSnapshot, LeafChange,
};
use palisade_crypto::{
    decode, BlockInfo, CommitCertificate, Digest, Hex, LedgerInfo, SecretKey, ValidatorSet,
};
use palisade_node::links::export::{export_changes, export_head, export_snapshot};
use palisade_node::links::mirror::Mirror;
use palisade_node::links::{Importer, LinkError, RoundOutcome, Source};
use palisade_node::NodeStore;

use super::state_store::{genesis, register};

/// A remote datacenter in one process: its validators' keys, its executor
/// and its node store, committing one certified block per call.
struct RemoteChain {
    keys: Vec<SecretKey>,
    service: SecretKey,
    exec: RegistryExecutor<NodeStore>,
    validators: ValidatorSet,
    store: NodeStore,
    last: BlockInfo,
    seq: u64,
    genesis_hash: Digest,
}

impl RemoteChain {
    fn new() -> Self {
        let keys: Vec<SecretKey> = (1..=4).map(|i| SecretKey::from_seed([i; 32])).collect();
        let service = SecretKey::from_seed([9; 32]);
        let g: Genesis = genesis(&keys, &service);
        let store = NodeStore::in_memory();
        let exec = RegistryExecutor::open(store.clone(), &g).unwrap();
        let last = exec.committed_meta().genesis_info();
        store
            .commit_ledger(std::slice::from_ref(&last), None)
            .unwrap();
        RemoteChain {
            validators: g.validators.clone(),
            keys,
            service,
            exec,
            store,
            last,
            seq: 0,
            genesis_hash: g.hash(),
        }
    }

    fn trust(&self) -> TrustedChain {
        TrustedChain::new("test-chain", self.validators.clone()).unwrap()
    }

    fn certify(&self, info: &BlockInfo) -> CommitCertificate {
        let li = LedgerInfo {
            chain_id: "test-chain".into(),
            // network_of() names no genesis (zero) for this chain.
            genesis_hash: Digest::ZERO,
            epoch: 0,
            commit: Some(info.clone()),
            consensus_data_hash: Digest([7; 32]),
        };
        let digest = li.digest();
        CommitCertificate {
            signatures: self.keys[..3]
                .iter()
                .map(|k| (k.public(), k.sign_digest(&digest)))
                .collect(),
            ledger_info: li,
        }
    }

    /// Register `instance` of `service` in one block; certify it when `cert`.
    fn register(&mut self, service: &str, instance: &str, cert: bool) -> BlockInfo {
        let h = self.last.height + 1;
        let ctx = ExecutionContext {
            parent_id: self.exec.committed().0,
            block_id: Digest([h as u8; 32]),
            height: h,
            epoch: 0,
            timestamp_ms: 1_000_000 + h * 1000,
        };
        let tx = register(
            &self.genesis_hash,
            &self.service,
            self.seq,
            service,
            instance,
        );
        self.seq += 1;
        let payload = palisade_consensus::state::encode_payload(&[tx]);
        let result = self.exec.execute(&ctx, &payload).unwrap();
        self.exec.commit(&ctx.block_id).unwrap();
        let info = BlockInfo {
            round: h,
            height: h,
            block_id: ctx.block_id,
            state_root: result.state_root,
            tx_root: result.tx_root,
            timestamp_ms: ctx.timestamp_ms,
            next_validators: None,
            parent_info: self.last.hash(),
        };
        let c = cert.then(|| self.certify(&info));
        self.store
            .commit_ledger(std::slice::from_ref(&info), c.as_ref())
            .unwrap();
        self.last = info.clone();
        info
    }
}

/// How a test source lies.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lie {
    Honest,
    OmitChange,
    AlterValue,
    Silent,
}

/// A remote node: the real export code over a remote store, possibly lying.
struct StoreSource {
    store: NodeStore,
    lie: Arc<Mutex<Lie>>,
}

impl Source for StoreSource {
    fn name(&self) -> String {
        format!("store({:?})", self.lie.lock().unwrap())
    }
    fn head(&self, _after: Option<u64>) -> Result<ExportHead, LinkError> {
        if *self.lie.lock().unwrap() == Lie::Silent {
            return Err(LinkError::Remote {
                node: self.name(),
                reason: "silent".into(),
            });
        }
        Ok(export_head(&self.store).unwrap())
    }
    fn changes(&self, from: u64) -> Result<ExportChanges, LinkError> {
        if *self.lie.lock().unwrap() == Lie::Silent {
            return Err(LinkError::Remote {
                node: self.name(),
                reason: "silent".into(),
            });
        }
        // The export's refusal, as the HTTP source reports a 410/409.
        let mut page = export_changes(&self.store, from).map_err(|e| LinkError::Remote {
            node: self.name(),
            reason: match e {
                palisade_node::links::export::ExportError::SnapshotRequired { .. } => {
                    format!("status 410: snapshot_required: {e}")
                }
                other => other.to_string(),
            },
        })?;
        let mut changes: Vec<LeafChange> = page.changes.decode().unwrap();
        match *self.lie.lock().unwrap() {
            Lie::OmitChange => {
                changes.pop();
            }
            Lie::AlterValue => {
                if let Some(c) = changes.iter_mut().find(|c| c.value.is_some()) {
                    c.value.as_mut().unwrap().push(0);
                }
            }
            _ => {}
        }
        page.changes = Hex::new(&changes);
        Ok(page)
    }
    fn snapshot(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, LinkError> {
        Ok(export_snapshot(&self.store, height, after).unwrap())
    }
    fn epochs(&self, _from: u64) -> Result<Vec<CommitCertificate>, LinkError> {
        Ok(vec![])
    }
}

fn source(store: &NodeStore, lie: Lie) -> (Box<dyn Source>, Arc<Mutex<Lie>>) {
    let lie = Arc::new(Mutex::new(lie));
    (
        Box::new(StoreSource {
            store: store.clone(),
            lie: lie.clone(),
        }),
        lie,
    )
}

fn verified_instances(mirror: &Mirror, trust: &TrustedChain, service: &str) -> (u64, usize) {
    let answer = mirror.lookup("prod", service).unwrap().expect("imported");
    let v =
        verify_lookup(trust, "prod", service, &answer, 0, None).expect("remote answer verifies");
    (v.height, v.record.map_or(0, |r| r.instances.len()))
}

#[test]
fn import_snapshot_then_deltas_and_serve_verified_remote_lookups() {
    let mut remote = RemoteChain::new();
    remote.register("api", "i1", true);
    let (honest, _) = source(&remote.store, Lie::Honest);
    let mut imp = Importer::new(remote.trust(), Mirror::in_memory(), vec![honest]);
    assert_eq!(
        imp.round(1),
        RoundOutcome::Imported(1),
        "first import from a snapshot"
    );
    // Heights 2 and 3 uncertified, 4 certified: one coalesced delta to 4.
    remote.register("api", "i2", false);
    remote.register("web", "w1", false);
    remote.register("api", "i3", true);
    assert_eq!(imp.round(2), RoundOutcome::Imported(4));
    assert_eq!(imp.round(3), RoundOutcome::UpToDate);
    let trust = remote.trust();
    assert_eq!(verified_instances(imp.mirror(), &trust, "api"), (4, 3));
    assert_eq!(verified_instances(imp.mirror(), &trust, "web"), (4, 1));
    // A service the remote never had: a verified absence.
    assert_eq!(verified_instances(imp.mirror(), &trust, "none"), (4, 0));
    // Against another datacenter's validators the remote answer fails.
    let other: Vec<SecretKey> = (11..=14).map(|i| SecretKey::from_seed([i; 32])).collect();
    let other_trust = TrustedChain::new(
        "test-chain",
        genesis(&other, &remote.service).validators.clone(),
    )
    .unwrap();
    let answer = imp.mirror().lookup("prod", "api").unwrap().unwrap();
    assert!(verify_lookup(&other_trust, "prod", "api", &answer, 0, None).is_err());
}

#[test]
fn a_delta_that_omits_or_alters_a_change_is_refused_and_another_node_is_used() {
    for lie in [Lie::OmitChange, Lie::AlterValue] {
        let mut remote = RemoteChain::new();
        remote.register("api", "i1", true);
        let (liar, _) = source(&remote.store, lie);
        let (honest, _) = source(&remote.store, Lie::Honest);
        // The liar is asked first for the head and the first import is a
        // snapshot (honest in both), so let the first round import.
        let mut imp = Importer::new(remote.trust(), Mirror::in_memory(), vec![liar, honest]);
        assert_eq!(imp.round(1), RoundOutcome::Imported(1));
        remote.register("api", "i2", true);
        assert_eq!(
            imp.round(2),
            RoundOutcome::Refused("root_mismatch"),
            "{lie:?}"
        );
        assert_eq!(
            imp.mirror().record().unwrap().unwrap().info.height,
            1,
            "nothing applied"
        );
        assert_eq!(
            imp.round(3),
            RoundOutcome::Imported(2),
            "{lie:?}: the honest node serves"
        );
        assert_eq!(imp.refusals.get("root_mismatch"), Some(&1));
        let (h, n) = verified_instances(imp.mirror(), &remote.trust(), "api");
        assert_eq!((h, n), (2, 2));
    }
}

#[test]
fn a_pruned_change_index_falls_back_to_a_snapshot_that_deletes_what_is_gone() {
    let mut remote = RemoteChain::new();
    remote.register("api", "i1", true);
    remote.register("api", "i2", true);
    let (src, _) = source(&remote.store, Lie::Honest);
    let mut imp = Importer::new(remote.trust(), Mirror::in_memory(), vec![src]);
    assert_eq!(imp.round(1), RoundOutcome::Imported(2));
    // B deregisters i1 (a leaf disappears), registers i3, and prunes its
    // change index below height 5.
    let h = remote.last.height + 1;
    let ctx = ExecutionContext {
        parent_id: remote.exec.committed().0,
        block_id: Digest([h as u8; 32]),
        height: h,
        epoch: 0,
        timestamp_ms: 1_000_000 + h * 1000,
    };
    let tx = palisade_crypto::Transaction {
        chain_id: "test-chain".into(),
        genesis_hash: remote.genesis_hash,
        signer: remote.service.public(),
        sequence: remote.seq,
        body: palisade_crypto::TxBody::Deregister {
            namespace: "prod".into(),
            service: "api".into(),
            instance: "i1".into(),
        },
    }
    .sign(&remote.service);
    remote.seq += 1;
    let result = remote
        .exec
        .execute(&ctx, &palisade_consensus::state::encode_payload(&[tx]))
        .unwrap();
    remote.exec.commit(&ctx.block_id).unwrap();
    let info = BlockInfo {
        round: h,
        height: h,
        block_id: ctx.block_id,
        state_root: result.state_root,
        tx_root: result.tx_root,
        timestamp_ms: ctx.timestamp_ms,
        next_validators: None,
        parent_info: remote.last.hash(),
    };
    remote
        .store
        .commit_ledger(std::slice::from_ref(&info), None)
        .unwrap();
    remote.last = info;
    remote.register("api", "i3", true);
    let mut prune = palisade_node::storage::Batch::new();
    for h in 0..5u64 {
        prune.delete(palisade_node::storage::Cf::Changes, h.to_be_bytes());
    }
    remote.store.kv().write(prune, true).unwrap();
    assert_eq!(imp.round(2), RoundOutcome::Imported(4));
    let answer = imp.mirror().lookup("prod", "api").unwrap().unwrap();
    let v = verify_lookup(&remote.trust(), "prod", "api", &answer, 0, None).unwrap();
    let names: Vec<_> = v.instances().iter().map(|i| i.instance.clone()).collect();
    assert_eq!(names, vec!["i2".to_string(), "i3".to_string()]);
}

#[test]
fn silence_from_every_node_is_unreachable_and_keeps_the_imported_state() {
    let mut remote = RemoteChain::new();
    remote.register("api", "i1", true);
    let (src, lie) = source(&remote.store, Lie::Honest);
    let mut imp = Importer::new(remote.trust(), Mirror::in_memory(), vec![src]);
    assert_eq!(imp.round(0), RoundOutcome::Imported(1));
    *lie.lock().unwrap() = Lie::Silent;
    assert_eq!(imp.round(1_000), RoundOutcome::Unreachable);
    let timing = palisade_node::links::ImportTiming::default();
    assert_eq!(imp.status("dc-b", 1_000, &timing).state, "live");
    let status = imp.status("dc-b", 1_000 + timing.partition_after_ms + 1, &timing);
    assert_eq!(status.state, "partitioned");
    assert_eq!(status.imported_height, 1);
    assert_eq!(
        verified_instances(imp.mirror(), &remote.trust(), "api"),
        (1, 1)
    );
}

#[test]
fn two_certified_blocks_at_one_height_freeze_the_link_with_evidence() {
    // Twin datacenter: the same validator keys and genesis certify two
    // different blocks at height 2.
    let mut a = RemoteChain::new();
    let mut b = RemoteChain::new();
    a.register("api", "i1", true);
    b.register("api", "i1", true);
    a.register("api", "left", true);
    b.register("api", "right", true);
    // Four remote nodes, f + 1 = 2 asked per round: one of each history.
    let sources = vec![
        source(&a.store, Lie::Honest).0,
        source(&b.store, Lie::Honest).0,
        source(&a.store, Lie::Honest).0,
        source(&b.store, Lie::Honest).0,
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut imp = Importer::new(a.trust(), Mirror::in_memory(), sources)
        .with_evidence_dir(dir.path().to_path_buf());
    assert_eq!(imp.round(1), RoundOutcome::Frozen);
    assert_eq!(imp.round(2), RoundOutcome::Frozen, "stays frozen");
    assert!(imp.mirror().record().unwrap().is_none(), "nothing imported");
    assert!(imp.mirror().frozen().unwrap().is_some());
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
    let ev: EquivocationEvidence = decode(&bytes).unwrap();
    assert_ne!(ev.first.ledger_info.commit, ev.second.ledger_info.commit);
    // Anyone with B's network file confirms it offline...
    let network = network_of(&a);
    assert!(matches!(
        palisade_client::verify_evidence(&network, &ev),
        Ok(palisade_client::Equivocation::SameHeight { height: 2, .. })
    ));
    // ...and a doctored file is refused: one certificate twice, or a
    // certificate its validators did not sign.
    let mut same = ev.clone();
    same.second = same.first.clone();
    assert!(palisade_client::verify_evidence(&network, &same).is_err());
    let mut forged = ev.clone();
    forged.second.signatures.truncate(2);
    assert!(palisade_client::verify_evidence(&network, &forged).is_err());
    let other = palisade_crypto::NetworkFile {
        chain_id: "other-chain".into(),
        ..network
    };
    assert!(palisade_client::verify_evidence(&other, &ev).is_err());
}

fn network_of(chain: &RemoteChain) -> palisade_crypto::NetworkFile {
    palisade_crypto::NetworkFile {
        chain_id: "test-chain".into(),
        datacenter: "dc-b".into(),
        genesis_hash: Digest::ZERO,
        validators: chain.validators.clone(),
        nodes: vec![],
    }
}

#[test]
fn evidence_file_format_known_answer() {
    // borsh layout of EquivocationEvidence: changing it breaks every
    // evidence file already written.
    let info = BlockInfo {
        round: 1,
        height: 2,
        block_id: Digest([3; 32]),
        state_root: Digest([4; 32]),
        tx_root: Digest([5; 32]),
        timestamp_ms: 6,
        next_validators: None,
        parent_info: Digest([7; 32]),
    };
    let cert = |id: u8| CommitCertificate {
        ledger_info: LedgerInfo {
            chain_id: "kat".into(),
            genesis_hash: Digest([9; 32]),
            epoch: 0,
            commit: Some(BlockInfo {
                block_id: Digest([id; 32]),
                ..info.clone()
            }),
            consensus_data_hash: Digest([8; 32]),
        },
        signatures: vec![],
    };
    let ev = EquivocationEvidence {
        chain_id: "kat".into(),
        epoch_changes: vec![],
        first: cert(0xa1),
        second: cert(0xb2),
        chain: vec![info],
    };
    let bytes = palisade_crypto::encode(&ev);
    assert_eq!(hex::encode(&bytes), EVIDENCE_KAT);
    assert_eq!(decode::<EquivocationEvidence>(&bytes).unwrap(), ev);
}

/// borsh(EquivocationEvidence) of the vector above: chain id, no epoch
/// changes, two certificates (ledger info, no signatures), one block info.
const EVIDENCE_KAT: &str = concat!(
    "030000006b617400000000030000006b6174090909090909090909090909090909090909090909090909090909090909090900000000000000000101000000000000000200000000",
    "000000a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a10404040404",
    "04040404040404040404040404040404040404040404040404040405050505050505050505050505",
    "05050505050505050505050505050505050505060000000000000000070707070707070707070707",
    "07070707070707070707070707070707070707070808080808080808080808080808080808080808",
    "08080808080808080808080800000000030000006b617409090909090909090909090909090909090909090909090909090909090909090000000000000000010100000000000000",
    "0200000000000000b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
    "04040404040404040404040404040404040404040404040404040404040404040505050505050505",
    "05050505050505050505050505050505050505050505050506000000000000000007070707070707",
    "07070707070707070707070707070707070707070707070707080808080808080808080808080808",
    "08080808080808080808080808080808080000000001000000010000000000000002000000000000",
    "00030303030303030303030303030303030303030303030303030303030303030304040404040404",
    "04040404040404040404040404040404040404040404040404050505050505050505050505050505",
    "05050505050505050505050505050505050600000000000000000707070707070707070707070707",
    "070707070707070707070707070707070707",
);

#[test]
fn a_certified_chain_that_does_not_reach_the_imported_block_freezes_the_link() {
    let mut a = RemoteChain::new();
    let mut b = RemoteChain::new();
    a.register("api", "i1", true);
    b.register("api", "i1", true);
    a.register("api", "left", true);
    b.register("api", "right", false);
    b.register("api", "more", true);
    let (sa, switch_a) = source(&a.store, Lie::Honest);
    let (sb, _) = source(&b.store, Lie::Honest);
    let dir = tempfile::tempdir().unwrap();
    // Only A answers at first: import A's height 2.
    *switch_a.lock().unwrap() = Lie::Honest;
    let mut imp = Importer::new(a.trust(), Mirror::in_memory(), vec![sa])
        .with_evidence_dir(dir.path().to_path_buf());
    assert_eq!(imp.round(1), RoundOutcome::Imported(2));
    // Then B's fork (height 3, certified) arrives from another node.
    let mirror = imp.mirror().clone();
    let mut imp =
        Importer::new(a.trust(), mirror, vec![sb]).with_evidence_dir(dir.path().to_path_buf());
    assert_eq!(imp.round(2), RoundOutcome::Frozen);
    let record = imp.mirror().record().unwrap().unwrap();
    assert!(imp.mirror().frozen().unwrap().is_some());
    assert_eq!(
        record.info.height, 2,
        "the imported state stays served, frozen"
    );
    assert_eq!(imp.round(3), RoundOutcome::Frozen, "no import once frozen");
    // The operator's act resumes with a snapshot of the side still served
    // (root-checked), not a delta from the imported block: that block is
    // the other side of the fork, and would freeze the link again.
    imp.mirror().unfreeze().unwrap();
    assert!(imp.mirror().resync_pending().unwrap());
    assert_eq!(imp.round(4), RoundOutcome::Imported(3));
    assert!(!imp.mirror().resync_pending().unwrap());
    assert_eq!(verified_instances(imp.mirror(), &a.trust(), "api"), (3, 3));
    assert_eq!(imp.round(5), RoundOutcome::UpToDate);
}

mod root_property {
    use std::collections::BTreeMap;

    use jmt::storage::TreeWriter;
    use jmt::{JellyfishMerkleTree, KeyHash};
    use palisade_crypto::{state_key_hash, JmtHasher, StateKey};
    use proptest::prelude::*;

    use super::*;

    fn key(k: u8) -> Digest {
        Digest(
            state_key_hash(&StateKey::System {
                name: k.to_string(),
            })
            .0,
        )
    }

    fn info(root: Digest, height: u64) -> BlockInfo {
        BlockInfo {
            round: height,
            height,
            block_id: Digest([height as u8; 32]),
            state_root: root,
            tx_root: Digest::ZERO,
            timestamp_ms: 0,
            next_validators: None,
            parent_info: Digest::ZERO,
        }
    }

    fn cert() -> CommitCertificate {
        CommitCertificate {
            ledger_info: LedgerInfo {
                chain_id: "test-chain".into(),
                genesis_hash: Digest::ZERO,
                epoch: 0,
                commit: None,
                consensus_data_hash: Digest::ZERO,
            },
            signatures: vec![],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// The mirror accepts a delta exactly when it is the complete and
        /// correct net change: omitting, altering or adding one change
        /// always gives another root.
        #[test]
        fn mirror_root_matches_iff_the_delta_is_complete_and_correct(
            base in proptest::collection::btree_map(0u8..24, proptest::collection::vec(any::<u8>(), 1..6), 1..16),
            writes in proptest::collection::btree_map(0u8..24, proptest::option::of(proptest::collection::vec(any::<u8>(), 1..6)), 1..10),
            mutation in 0u8..4,
            pick in any::<prop::sample::Index>(),
        ) {
            // The truth: the remote tree at versions 0 and 1.
            let truth = NodeStore::in_memory();
            let tree = JellyfishMerkleTree::<_, JmtHasher>::new(truth.tree());
            let (root0, b0) = tree
                .put_value_set(base.iter().map(|(k, v)| (KeyHash(key(*k).0), Some(v.clone()))), 0)
                .unwrap();
            truth.tree().write_node_batch(&b0.node_batch).unwrap();
            // The net delta: only keys whose value really changes.
            let delta: BTreeMap<u8, Option<Vec<u8>>> = writes
                .into_iter()
                .filter(|(k, v)| base.get(k) != v.as_ref())
                .collect();
            let (root1, _) = tree
                .put_value_set(delta.iter().map(|(k, v)| (KeyHash(key(*k).0), v.clone())), 1)
                .unwrap();
            let mirror = Mirror::in_memory();
            let snapshot: Vec<LeafChange> = base
                .iter()
                .map(|(k, v)| LeafChange { key_hash: key(*k), value: Some(v.clone()) })
                .collect();
            mirror.apply(&snapshot, &info(Digest(root0.0), 1), &cert()).unwrap();
            let mut changes: Vec<LeafChange> = delta
                .iter()
                .map(|(k, v)| LeafChange { key_hash: key(*k), value: v.clone() })
                .collect();
            let mutated = match mutation {
                1 if !changes.is_empty() => {
                    changes.remove(pick.index(changes.len()));
                    true
                }
                2 if !changes.is_empty() => {
                    let i = pick.index(changes.len());
                    changes[i].value = match changes[i].value.take() {
                        Some(mut v) => { v.push(1); Some(v) }
                        None => Some(vec![0xee]),
                    };
                    true
                }
                3 => {
                    // A change the remote did not make: a key outside the
                    // delta set to a value it never had.
                    let k = (24u8..).find(|k| !delta.contains_key(k)).unwrap();
                    changes.push(LeafChange { key_hash: key(k), value: Some(vec![0xab; 7]) });
                    true
                }
                _ => false,
            };
            let result = mirror.apply(&changes, &info(Digest(root1.0), 2), &cert());
            prop_assert_eq!(result.is_ok(), !mutated, "{:?}", result);
            let height = mirror.record().unwrap().unwrap().info.height;
            prop_assert_eq!(height, if mutated { 1 } else { 2 });
        }
    }
}

#[test]
fn unfreezing_is_the_operators_act_on_a_stopped_node() {
    let remote = RemoteChain::new();
    let dir = tempfile::tempdir().unwrap();
    let net_file = dir.path().join("b.json");
    let mut network = network_of(&remote);
    network.nodes.push(palisade_crypto::NodeEndpoint {
        name: "node0".into(),
        public_key: remote.keys[0].public(),
        api_url: "http://127.0.0.1:1".into(),
        p2p_addr: "/ip4/127.0.0.1/tcp/1".into(),
    });
    std::fs::write(&net_file, serde_json::to_string(&network).unwrap()).unwrap();
    let mut config = palisade_node::NodeConfig::new(
        dir.path().join("data"),
        dir.path().join("k"),
        dir.path().join("g"),
    );
    config.links.push(palisade_node::LinkConfig {
        datacenter: "dc-b".into(),
        network_file: net_file,
    });
    let mirror_dir = dir.path().join("data/links/test-chain/mirror");
    {
        let mirror = Mirror::open(&mirror_dir).unwrap();
        mirror.freeze("equivocation at remote height 2").unwrap();
    }
    let was = palisade_node::links::unfreeze(&config, "dc-b").unwrap();
    assert_eq!(was.as_deref(), Some("equivocation at remote height 2"));
    assert_eq!(
        palisade_node::links::unfreeze(&config, "dc-b").unwrap(),
        None
    );
    assert!(Mirror::open(&mirror_dir)
        .unwrap()
        .frozen()
        .unwrap()
        .is_none());
    assert!(palisade_node::links::unfreeze(&config, "dc-x").is_err());
}

/// The binary (borsh) export answers on a real node: the same content as
/// the JSON ones at about half the size, and an importer over HTTP (which
/// asks for binary) imports from them and serves lookups that verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_export_answers_carry_the_json_content_and_import_over_http() {
    use palisade_crypto::dc::EXPORT_BINARY_TYPE;
    use palisade_crypto::{NetworkFile, NodeEndpoint};
    use palisade_node::links::{HttpSource, ImportTiming};

    let c = super::cluster::Cluster::start(1).await;
    c.wait_height(0, 1).await;
    let tx = register(&c.genesis.hash(), &c.service, 0, "api", "i1");
    let (status, resp) = c.submit(0, &tx, true).await;
    assert_eq!(status, 200, "{resp:?}");
    let committed = resp.receipt.as_ref().unwrap().height;
    let head = c.wait_height(0, committed + 3).await;
    let url = format!("http://{}", c.api(0));
    let from = head.saturating_sub(3);
    let (json, binary) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(std::time::Duration::from_secs(5)))
                .build()
                .into();
            let path = format!("{url}/v1/export/changes?from_height={from}");
            let fetch = || {
                let json = agent
                    .get(&path)
                    .call()
                    .unwrap()
                    .into_body()
                    .read_to_vec()
                    .unwrap();
                let mut r = agent
                    .get(&path)
                    .header("accept", EXPORT_BINARY_TYPE)
                    .call()
                    .unwrap();
                assert_eq!(r.headers().get("content-type").unwrap(), EXPORT_BINARY_TYPE);
                (json, r.body_mut().read_to_vec().unwrap())
            };
            // The node keeps certifying: the two reads match when no new
            // certificate landed between them (bounded retries).
            let mut pair = fetch();
            for _ in 0..20 {
                let j: ExportChanges = serde_json::from_slice(&pair.0).unwrap();
                let b: ExportChanges = palisade_crypto::decode(&pair.1).unwrap();
                if j.height == b.height {
                    break;
                }
                pair = fetch();
            }
            pair
        }
    })
    .await
    .unwrap();
    let from_json: ExportChanges = serde_json::from_slice(&json).unwrap();
    let from_binary: ExportChanges = palisade_crypto::decode(&binary).unwrap();
    assert_eq!(
        serde_json::to_string(&from_json).unwrap(),
        serde_json::to_string(&from_binary).unwrap()
    );
    assert!(
        binary.len() * 2 <= json.len() + 64,
        "binary {} bytes, JSON {}",
        binary.len(),
        json.len()
    );

    let network = NetworkFile {
        chain_id: c.genesis.chain_id.clone(),
        datacenter: "dc-b".into(),
        genesis_hash: c.genesis.hash(),
        validators: c.validators(),
        nodes: vec![NodeEndpoint {
            name: "node0".into(),
            public_key: c.keys[0].public(),
            api_url: url.clone(),
            p2p_addr: c.configs[0].listen_p2p.clone(),
        }],
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let trust = TrustedChain::from_network(&network).unwrap();
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let source = HttpSource::new(&url, &ImportTiming::default(), bytes.clone());
        let mut imp = Importer::new(trust.clone(), Mirror::in_memory(), vec![Box::new(source)]);
        let first = imp.round(1);
        let (_, n) = verified_instances(imp.mirror(), &trust, "api");
        (first, n, bytes.load(std::sync::atomic::Ordering::Relaxed))
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome.0, RoundOutcome::Imported(_)),
        "{outcome:?}"
    );
    assert_eq!(outcome.1, 1, "the imported record verifies");
    assert!(outcome.2 > 0);
    c.shutdown().await;
}

/// A source that counts the requests it is asked (heads and deltas).
struct Counting {
    inner: Box<dyn Source>,
    asked: Arc<std::sync::atomic::AtomicU64>,
}

impl Counting {
    fn bump(&self) {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Source for Counting {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn head(&self, after: Option<u64>) -> Result<ExportHead, LinkError> {
        self.bump();
        self.inner.head(after)
    }
    fn changes(&self, from: u64) -> Result<ExportChanges, LinkError> {
        self.bump();
        self.inner.changes(from)
    }
    fn snapshot(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, LinkError> {
        self.inner.snapshot(height, after)
    }
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, LinkError> {
        self.inner.epochs(from)
    }
}

/// With a witness interval, the f witnesses are asked for their heads at
/// most once per interval while the lead answers deltas (a head is a
/// certificate over the link per witness per change), and at once when the
/// lead fails.
#[test]
fn witnesses_are_asked_once_per_interval_while_the_lead_answers() {
    let mut remote = RemoteChain::new();
    remote.register("api", "i1", true);
    let (lead, lead_lie) = source(&remote.store, Lie::Honest);
    let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let witness = Counting {
        inner: source(&remote.store, Lie::Honest).0,
        asked: asked.clone(),
    };
    let sources: Vec<Box<dyn Source>> = vec![
        lead,
        Box::new(witness),
        source(&remote.store, Lie::Honest).0,
        source(&remote.store, Lie::Honest).0,
    ];
    let count = || asked.load(std::sync::atomic::Ordering::SeqCst);
    let mut imp =
        Importer::new(remote.trust(), Mirror::in_memory(), sources).with_witness_interval(1_000);
    assert_eq!(imp.round(0), RoundOutcome::Imported(1));
    assert_eq!(count(), 1, "the first import asks the witnesses");
    remote.register("api", "i2", true);
    assert_eq!(imp.round(10), RoundOutcome::Imported(2));
    assert_eq!(count(), 1, "within the interval only the lead is asked");
    remote.register("api", "i3", true);
    assert_eq!(imp.round(1_100), RoundOutcome::Imported(3));
    assert_eq!(count(), 2, "once the interval passed, the witnesses too");
    // The lead falls silent: the next round goes to the witness.
    *lead_lie.lock().unwrap() = Lie::Silent;
    remote.register("api", "i4", true);
    assert_eq!(imp.round(1_200), RoundOutcome::Unreachable);
    assert_eq!(imp.round(1_300), RoundOutcome::Imported(4));
    assert!(count() >= 3, "the witness was asked after the lead failed");
    assert_eq!(
        verified_instances(imp.mirror(), &remote.trust(), "api"),
        (4, 4)
    );
}

/// The link between two datacenters as the simulator would run it: B is a
/// real executor and store certifying blocks, A's importer reads it through
/// four remote nodes over a seeded lossy network on one virtual clock.
mod two_dcs_virtual_clock {
    use std::sync::atomic::{AtomicBool, Ordering};

    use palisade_node::links::ImportTiming;

    use super::*;

    /// The network between A and B: one seeded RNG, the virtual time, a cut.
    struct Net {
        rng: u64,
        now_ms: u64,
        cut: Option<(u64, u64)>,
        drop_per_mille: u64,
    }

    impl Net {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn deliver(&mut self) -> Result<(), LinkError> {
            let down = |reason: &str| LinkError::Remote {
                node: "sim".into(),
                reason: reason.into(),
            };
            if self
                .cut
                .is_some_and(|(from, to)| (from..to).contains(&self.now_ms))
            {
                return Err(down("cut"));
            }
            if self.next() % 1000 < self.drop_per_mille {
                return Err(down("dropped"));
            }
            Ok(())
        }
    }

    /// A remote node reached over [`Net`]; `fork` (when set) answers from
    /// the other side of a fork once `forked` is raised.
    struct Lossy {
        inner: Box<dyn Source>,
        fork: Option<(Box<dyn Source>, Arc<AtomicBool>)>,
        net: Arc<Mutex<Net>>,
    }

    impl Lossy {
        fn via<T>(&self, f: impl Fn(&dyn Source) -> Result<T, LinkError>) -> Result<T, LinkError> {
            self.net.lock().unwrap().deliver()?;
            match &self.fork {
                Some((fork, on)) if on.load(Ordering::SeqCst) => f(fork.as_ref()),
                _ => f(self.inner.as_ref()),
            }
        }
    }

    impl Source for Lossy {
        fn name(&self) -> String {
            self.inner.name()
        }
        fn head(&self, after: Option<u64>) -> Result<ExportHead, LinkError> {
            self.via(|s| s.head(after))
        }
        fn changes(&self, from: u64) -> Result<ExportChanges, LinkError> {
            self.via(|s| s.changes(from))
        }
        fn snapshot(
            &self,
            height: u64,
            after: Option<Digest>,
        ) -> Result<ExportSnapshot, LinkError> {
            self.via(|s| s.snapshot(height, after))
        }
        fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, LinkError> {
            self.via(|s| s.epochs(from))
        }
    }

    const ROUNDS: u64 = 90;
    const TICK_MS: u64 = 250;
    /// B stops changing here; by the last round A must hold B's newest
    /// certified state (when no fork).
    const QUIET_FROM: u64 = 60;

    /// One seed: what happened, for the failure message.
    fn run(seed: u64) -> String {
        let lie = [Lie::Honest, Lie::OmitChange, Lie::AlterValue, Lie::Silent][(seed % 4) as usize];
        let forks = seed % 3 == 0;
        let fork_round = 20 + seed % 15;
        // A cut of 7-9 virtual seconds in seeds without a fork.
        let cut = (!forks && seed % 2 == 0).then(|| {
            let from = (15 + seed % 10) * TICK_MS;
            (from, from + 7_000 + (seed % 3) * 1_000)
        });
        let net = Arc::new(Mutex::new(Net {
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            now_ms: 0,
            cut,
            drop_per_mille: 50,
        }));
        let mut b = RemoteChain::new();
        let mut fork = forks.then(RemoteChain::new);
        let forked = Arc::new(AtomicBool::new(false));
        b.register("api", "i0", true);
        if let Some(f) = fork.as_mut() {
            f.register("api", "i0", true);
        }
        let lossy = |store: &NodeStore, lie: Lie, fork: Option<&RemoteChain>| -> Box<dyn Source> {
            Box::new(Lossy {
                inner: source(store, lie).0,
                fork: fork.map(|f| (source(&f.store, Lie::Honest).0, forked.clone())),
                net: net.clone(),
            })
        };
        // Node 0 lies (it leads first); node 1 turns to the fork's side.
        let sources = vec![
            lossy(&b.store, lie, None),
            lossy(&b.store, Lie::Honest, fork.as_ref()),
            lossy(&b.store, Lie::Honest, None),
            lossy(&b.store, Lie::Honest, None),
        ];
        let dir = tempfile::tempdir().unwrap();
        let trust = b.trust();
        let timing = ImportTiming::default();
        let mut imp = Importer::new(trust.clone(), Mirror::in_memory(), sources)
            .with_evidence_dir(dir.path().to_path_buf());
        let mut log =
            format!("seed {seed}: lie {lie:?}, fork {forks} at round {fork_round}, cut {cut:?}");
        let mut served_before_cut: Option<usize> = None;
        let mut n = 0u64;
        for round in 0..ROUNDS {
            let now = round * TICK_MS;
            net.lock().unwrap().now_ms = now;
            if forks && round == fork_round {
                forked.store(true, Ordering::SeqCst);
            }
            // B changes about every other round, certifying most blocks;
            // before the fork point the fork does exactly the same.
            let roll = net.lock().unwrap().next();
            if round < QUIET_FROM && roll % 2 == 0 {
                n += 1;
                let cert = roll % 8 != 0 || round + 1 == QUIET_FROM;
                b.register("api", &format!("i{n}"), cert);
                if let Some(f) = fork.as_mut() {
                    let name = if round >= fork_round {
                        format!("fork{n}")
                    } else {
                        format!("i{n}")
                    };
                    f.register("api", &name, cert);
                }
            }
            let outcome = imp.round(now);
            // No wrong root: what A holds is a block B (or, past the fork
            // point, the fork) certified, and its answers verify.
            if let Some(r) = imp.mirror().record().unwrap() {
                let h = r.info.height;
                let ours = b.store.block_info(h).unwrap();
                let theirs = fork.as_ref().and_then(|f| f.store.block_info(h).unwrap());
                assert!(
                    ours.as_ref() == Some(&r.info) || (forks && theirs.as_ref() == Some(&r.info)),
                    "{log}: round {round} ({outcome:?}): imported block at {h} is neither side's"
                );
                let (vh, count) = verified_instances(imp.mirror(), &trust, "api");
                assert_eq!(vh, h);
                if let Some((from, to)) = cut {
                    if now < from {
                        served_before_cut = Some(count);
                    } else if now < to {
                        assert!(
                            count >= served_before_cut.unwrap_or(0),
                            "{log}: round {round}: an instance was lost during the cut"
                        );
                    }
                }
            }
            if let Some((from, to)) = cut {
                // Partitioned within the bound, until the heal.
                if now >= from + 7_000 && now < to {
                    let s = imp.status("dc-b", now, &timing);
                    assert_eq!(s.state, "partitioned", "{log}: round {round}: {s:?}");
                }
            }
        }
        let end = ROUNDS * TICK_MS;
        if forks {
            assert!(
                imp.mirror().frozen().unwrap().is_some(),
                "{log}: the fork was never caught"
            );
            let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
            assert!(!files.is_empty(), "{log}: no evidence file");
            for f in files {
                let ev: EquivocationEvidence = decode(&std::fs::read(f.path()).unwrap()).unwrap();
                palisade_client::verify_evidence(&network_of(&b), &ev)
                    .unwrap_or_else(|e| panic!("{log}: evidence does not verify: {e}"));
            }
            log += "; frozen with evidence";
        } else {
            // Live: A holds B's newest certified state.
            let (newest, _) = b.store.latest_cert().unwrap().unwrap();
            let record = imp.mirror().record().unwrap().unwrap();
            assert_eq!(
                record.info.height,
                newest,
                "{log}: A did not catch up by the end ({:?})",
                imp.status("dc-b", end, &timing)
            );
            log += &format!("; caught up to {newest}");
        }
        log
    }

    #[test]
    fn lossy_link_cuts_a_lying_node_and_a_fork_over_many_seeds() {
        let seeds: u64 = std::env::var("DC_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(32);
        let lines: Vec<String> = (0..seeds).map(run).collect();
        // Every kind of run happened (with the default seeds).
        if seeds >= 12 {
            for kind in [
                "frozen with evidence",
                "caught up",
                "cut Some",
                "lie Silent",
            ] {
                assert!(lines.iter().any(|l| l.contains(kind)), "no {kind:?} run");
            }
        }
    }
}
