//! Speculative execution, commit, restart, determinism and provable queries.

use std::sync::Arc;

use palisade_crypto::{
    BlockInfo, CommitCertificate, LedgerInfo, SignedTransaction, TxBody, ValidatorSet,
};
use proptest::prelude::*;

use super::super::InstanceFilter;
use super::*;
use crate::executor::ExecutionError;

fn ctx(parent: Digest, height: u64, salt: u64, time: u64) -> ExecutionContext {
    ExecutionContext {
        parent_id: parent,
        block_id: block_id(&parent, height, salt),
        height,
        epoch: 0,
        timestamp_ms: time,
    }
}

fn register_payload(k: &SecretKey, seq: u64, inst: &str) -> Vec<u8> {
    encode_payload(&[sign(k, seq, TxBody::Register(reg("shop", "web", inst)))])
}

#[test]
fn branches_are_isolated_and_dropped_at_commit() {
    let mut exec = RegistryExecutor::open(MemStore::new(), &genesis()).unwrap();
    let (g, genesis_root) = exec.committed();
    let a1 = ctx(g, 1, 1, T0 + 1_000);
    let b1 = ctx(g, 1, 2, T0 + 1_000);
    let ra1 = exec
        .execute(&a1, &register_payload(&alice(), 0, "a"))
        .unwrap();
    let rb1 = exec
        .execute(&b1, &register_payload(&alice(), 0, "b"))
        .unwrap();
    assert_ne!(ra1.state_root, rb1.state_root);
    // Same block again: same answer; same id with another payload: refused.
    assert_eq!(
        exec.execute(&a1, &register_payload(&alice(), 0, "a"))
            .unwrap(),
        ra1
    );
    assert!(matches!(
        exec.execute(&a1, &register_payload(&alice(), 0, "z")),
        Err(ExecutionError::InvalidPayload(_))
    ));
    let a2 = ctx(a1.block_id, 2, 0, T0 + 2_000);
    let b2 = ctx(b1.block_id, 2, 0, T0 + 2_000);
    // a2 sees a1's instance (its sequence 0 is used), b2 sees only b1's.
    let ra2 = exec
        .execute(&a2, &register_payload(&alice(), 1, "a2"))
        .unwrap();
    exec.execute(&b2, &register_payload(&alice(), 1, "b2"))
        .unwrap();
    assert_eq!(exec.speculative_len(), 4);
    assert_eq!(exec.committed(), (g, genesis_root));
    assert_eq!(exec.store().node_count(), {
        // Nothing speculative reached the store.
        let fresh = RegistryExecutor::open(MemStore::new(), &genesis()).unwrap();
        fresh.store().node_count()
    });
    exec.commit(&a2.block_id).unwrap();
    assert_eq!(exec.committed(), (a2.block_id, ra2.state_root));
    assert_eq!(exec.speculative_len(), 0, "the b branch is dropped");
    assert_eq!(
        exec.execute(&ctx(b2.block_id, 3, 0, T0 + 3_000), &encode_payload(&[])),
        Err(ExecutionError::UnknownParent(b2.block_id))
    );
    assert!(matches!(
        exec.commit(&b1.block_id),
        Err(ExecutionError::BadCommit(..))
    ));
    // Committing again is a no-op; re-executing a committed block answers the same.
    exec.commit(&a2.block_id).unwrap();
    assert_eq!(
        exec.execute(&a2, &register_payload(&alice(), 1, "a2"))
            .unwrap(),
        ra2
    );
    let reader = exec.reader();
    assert_eq!(reader.root().unwrap(), ra2.state_root);
    assert_eq!(
        StateReader::at(exec.store(), 1).root().unwrap(),
        ra1.state_root,
        "version 1 is a1's"
    );
}

#[test]
fn malformed_blocks_are_refused() {
    let mut exec = RegistryExecutor::open(MemStore::new(), &genesis()).unwrap();
    let (g, _) = exec.committed();
    let bad_height = ctx(g, 2, 0, T0 + 1);
    assert!(matches!(
        exec.execute(&bad_height, &encode_payload(&[])),
        Err(ExecutionError::InvalidPayload(_))
    ));
    let past = ctx(g, 1, 0, T0 - 1);
    assert!(matches!(
        exec.execute(&past, &encode_payload(&[])),
        Err(ExecutionError::InvalidPayload(_))
    ));
    let garbage = ctx(g, 1, 1, T0 + 1);
    assert!(matches!(
        exec.execute(&garbage, &[1, 2, 3]),
        Err(ExecutionError::InvalidPayload(_))
    ));
    assert_eq!(exec.speculative_len(), 0);
}

#[test]
fn reopening_a_store_resumes_identically() {
    let store = Arc::new(MemStore::new());
    let mut a = Chain::with(genesis());
    let mut exec = RegistryExecutor::open(store.clone(), &genesis()).unwrap();
    let tx = a.tx(&alice(), TxBody::Register(reg("shop", "web", "a1")));
    let payload = encode_payload(&[tx]);
    for e in [&mut a.exec as &mut dyn Executor, &mut exec] {
        let c = a_ctx(e.committed().0, 1, T0 + 1_000);
        e.execute(&c, &payload).unwrap();
        e.commit(&c.block_id).unwrap();
    }
    drop(exec);
    let mut reopened = RegistryExecutor::open(store.clone(), &genesis()).unwrap();
    assert_eq!(reopened.committed(), a.exec.committed());
    // The rebuilt lease index expires a1 exactly like the original.
    for e in [&mut a.exec as &mut dyn Executor, &mut reopened] {
        let c = a_ctx(e.committed().0, 2, T0 + 60_000);
        e.execute(&c, &encode_payload(&[])).unwrap();
        e.commit(&c.block_id).unwrap();
    }
    assert_eq!(reopened.committed(), a.exec.committed());
    assert_eq!(
        reopened
            .reader()
            .service("shop", "web")
            .unwrap()
            .lookup
            .value,
        None
    );
    let mut other = genesis();
    other.chain_id = "other".into();
    assert!(matches!(
        RegistryExecutor::open(store, &other),
        Err(crate::state::StateError::GenesisMismatch { .. })
    ));
}

fn a_ctx(parent: Digest, height: u64, time: u64) -> ExecutionContext {
    ctx(parent, height, 0, time)
}

#[test]
fn receipts_prove_inclusion_and_lookups_verify_under_a_certificate() {
    let mut c = Chain::new();
    let txs = vec![
        c.tx(&alice(), TxBody::Register(reg("shop", "web", "a1"))),
        c.tx(&bob(), heartbeat("shop", "web", "zz")),
        c.tx(&bob(), TxBody::Register(reg("shop", "web", "b1"))),
    ];
    let (result, receipts) = c.block(1_000, &txs);
    assert_eq!(receipts.tx_root, result.tx_root);
    for (i, stx) in txs.iter().enumerate() {
        let proof = receipts.inclusion_proof(i).unwrap();
        let outcome = receipts.receipts[i].outcome.code();
        proof
            .verify_receipt(&result.tx_root, &stx.id(), outcome)
            .unwrap();
        // The outcome is bound: the other verdict does not verify.
        let flipped = if outcome == palisade_crypto::OUTCOME_APPLIED {
            TxRejection::SequenceExhausted.code()
        } else {
            palisade_crypto::OUTCOME_APPLIED
        };
        assert!(proof
            .verify_receipt(&result.tx_root, &stx.id(), flipped)
            .is_err());
        assert_eq!(receipts.receipts[i].index as usize, i);
        assert_eq!(receipts.find(&stx.id()), Some(&receipts.receipts[i]));
    }
    assert!(rejected(&receipts.receipts[1].outcome).is_some());
    let stored = c.exec.store().block_receipts(1).unwrap();
    assert_eq!(stored, receipts);

    // A commit certificate by the genesis validators over this block.
    let meta = c.exec.committed_meta().clone();
    let set = genesis().validators;
    let li = LedgerInfo {
        chain_id: CHAIN.into(),
        genesis_hash: genesis().hash(),
        epoch: 0,
        commit: Some(BlockInfo {
            round: 1,
            height: meta.height,
            block_id: meta.block_id,
            state_root: meta.state_root,
            tx_root: meta.tx_root,
            timestamp_ms: meta.timestamp_ms,
            next_validators: None,
            parent_info: Digest::ZERO,
        }),
        consensus_data_hash: Digest::ZERO,
    };
    let signatures = validators()
        .iter()
        .map(|k| (k.public(), k.sign_digest(&li.digest())))
        .collect();
    let cert = CommitCertificate {
        ledger_info: li,
        signatures,
    };
    let verified = cert.verify(&set, CHAIN).unwrap();
    let lookup = c.reader().service("shop", "web").unwrap();
    let record = lookup.verify(&verified).unwrap().record.unwrap();
    let names: Vec<_> = record
        .instances
        .iter()
        .map(|i| i.instance.as_str())
        .collect();
    assert_eq!(names, vec!["a1", "b1"]);
    // Records known for this exact index are taken as they are (the index
    // lists their hashes); for any other index bytes the store is read.
    let index = lookup.lookup.value.clone().unwrap();
    let known = vec![b"known".to_vec()];
    let reused = c
        .reader()
        .service_reusing("shop", "web", Some((&index, &known)))
        .unwrap();
    assert_eq!(reused.instances, known);
    assert_eq!(reused.lookup, lookup.lookup);
    let mut other = index.clone();
    other.push(0);
    let read = c
        .reader()
        .service_reusing("shop", "web", Some((&other, &known)))
        .unwrap();
    assert_eq!(read.instances, lookup.instances);
    let absent = c.reader().service("shop", "nothing").unwrap();
    assert_eq!(absent.verify(&verified).unwrap().record, None);
    let ns = c.reader().namespace("shop").unwrap();
    assert_eq!(
        ns.verify(&meta.state_root).unwrap().unwrap().services,
        vec!["web"]
    );
    // Filters run over the proven set.
    let filter = InstanceFilter {
        labels: vec![palisade_crypto::Label {
            key: "zone".into(),
            value: "a".into(),
        }],
        passing_only: true,
        live_at_ms: Some(meta.timestamp_ms),
    };
    assert_eq!(filter.apply(&record).len(), 2);
    let other_zone = InstanceFilter {
        labels: vec![palisade_crypto::Label {
            key: "zone".into(),
            value: "b".into(),
        }],
        ..InstanceFilter::default()
    };
    assert!(other_zone.apply(&record).is_empty());
    let _ = ValidatorSet::hash(&set);
}

fn workload(seed: u64, blocks: usize) -> Vec<(u64, Vec<SignedTransaction>)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let signers = [alice(), bob(), admin(), carol()];
    let mut seqs = [0u64; 4];
    let vs = validators();
    let mut vseq = [0u64; 4];
    (0..blocks)
        .map(|_| {
            let n = rng.gen_range(0..8);
            let txs = (0..n)
                .map(|_| {
                    let s = rng.gen_range(0..4);
                    // Signers write only where enrolled: a block carrying an
                    // unauthorized write is refused whole (the admission rule).
                    let _ = rng.gen_bool(0.8);
                    let ns = if s == 3 { "billing" } else { "shop" };
                    let inst = format!("i{}", rng.gen_range(0..6));
                    let body = match rng.gen_range(0..5) {
                        0 | 1 => TxBody::Register(reg(ns, "web", &inst)),
                        2 => heartbeat(ns, "web", &inst),
                        3 => TxBody::Deregister {
                            namespace: ns.into(),
                            service: "web".into(),
                            instance: inst,
                        },
                        _ => {
                            let v = rng.gen_range(0..4);
                            vseq[v] += 1;
                            return sign(
                                &vs[v],
                                vseq[v],
                                TxBody::HealthReport {
                                    namespace: ns.into(),
                                    service: "web".into(),
                                    instance: inst,
                                    passing: rng.gen_bool(0.5),
                                },
                            );
                        }
                    };
                    seqs[s] += 1;
                    sign(&signers[s], seqs[s], body)
                })
                .collect();
            (rng.gen_range(1..25_000), txs)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Independent executors fed the same blocks agree on every root, also
    /// when one of them executed (and then dropped) a competing branch.
    #[test]
    fn replicas_agree_on_every_root(seed in any::<u64>()) {
        let blocks = workload(seed, 20);
        let mut replicas: Vec<_> = (0..3)
            .map(|_| RegistryExecutor::open(MemStore::new(), &genesis()).unwrap())
            .collect();
        let mut time = T0;
        for (h, (dt, txs)) in blocks.iter().enumerate() {
            time += dt;
            let height = h as u64 + 1;
            let payload = encode_payload(txs);
            let mut roots = Vec::new();
            for (r, exec) in replicas.iter_mut().enumerate() {
                let parent = exec.committed().0;
                if r == 2 {
                    // A competing proposal at this height, executed and dropped.
                    let fork = ctx(parent, height, 99, time);
                    exec.execute(&fork, &encode_payload(&txs[..txs.len() / 2])).unwrap();
                }
                let c = ctx(parent, height, 0, time);
                let res = exec.execute(&c, &payload).unwrap();
                exec.commit(&c.block_id).unwrap();
                roots.push(res);
            }
            prop_assert!(roots.windows(2).all(|w| w[0] == w[1]), "height {}", height);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Rejected transactions change nothing but their signer's sequence,
    /// which they consume: replaying only the applied ones gives the same
    /// registry (services, namespaces, identities) at every height, and in
    /// the full chain every signer's next sequence is one past the last
    /// sequence it put into the chain, applied or rejected.
    #[test]
    fn rejected_transactions_change_nothing(seed in any::<u64>()) {
        let blocks = workload(seed, 15);
        let mut full = RegistryExecutor::open(MemStore::new(), &genesis()).unwrap();
        let mut applied_only = RegistryExecutor::open(MemStore::new(), &genesis()).unwrap();
        let mut time = T0;
        let mut rejections = 0;
        let mut last_seq = std::collections::BTreeMap::new();
        for (h, (dt, txs)) in blocks.iter().enumerate() {
            time += dt;
            let height = h as u64 + 1;
            let c = ctx(full.committed().0, height, 0, time);
            full.execute(&c, &encode_payload(txs)).unwrap();
            let receipts = full.speculative_receipts(&c.block_id).unwrap().clone();
            full.commit(&c.block_id).unwrap();
            let kept: Vec<_> = txs
                .iter()
                .zip(&receipts.receipts)
                .filter(|(_, r)| r.outcome == TxOutcome::Applied)
                .map(|(t, _)| t.clone())
                .collect();
            rejections += txs.len() - kept.len();
            for t in txs {
                last_seq.insert(t.tx.signer, t.tx.sequence);
            }
            let c2 = ctx(applied_only.committed().0, height, 0, time);
            applied_only.execute(&c2, &encode_payload(&kept)).unwrap();
            applied_only.commit(&c2.block_id).unwrap();
            let (a, b) = (full.reader(), applied_only.reader());
            for ns in ["shop", "billing"] {
                prop_assert_eq!(
                    a.service_record(ns, "web").unwrap(),
                    b.service_record(ns, "web").unwrap(),
                    "height {}", height
                );
            }
            prop_assert_eq!(a.namespaces().unwrap(), b.namespaces().unwrap());
            for (signer, seq) in &last_seq {
                prop_assert_eq!(a.identity(signer).unwrap(), b.identity(signer).unwrap());
                prop_assert_eq!(a.next_sequence(signer).unwrap(), seq + 1);
            }
        }
        // The workload must exercise rejections for the test to mean anything.
        prop_assert!(rejections > 0);
    }
}

/// Signatures are checked through the executor's verifier (a node plugs in
/// the verdict cache its admission filled): every transaction signature goes
/// through it, and a verifier that refuses makes the block invalid.
#[test]
fn transaction_signatures_go_through_the_executors_verifier() {
    use crate::hotstuff::SignatureVerifier;
    use palisade_crypto::{PublicKey, SigError, Signature};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicUsize,
        refuse: bool,
    }
    impl SignatureVerifier for Counting {
        fn verify(
            &self,
            key: &PublicKey,
            digest: &Digest,
            sig: &Signature,
        ) -> Result<(), SigError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.refuse {
                return Err(SigError::BadSignature(*key));
            }
            key.verify_digest(digest, sig)
        }
    }
    let counting = Arc::new(Counting::default());
    let mut exec = RegistryExecutor::open(MemStore::new(), &genesis())
        .unwrap()
        .with_verifier(counting.clone());
    let (g, _) = exec.committed();
    let payload = encode_payload(&[
        sign(&alice(), 0, TxBody::Register(reg("shop", "web", "a"))),
        sign(&bob(), 0, TxBody::Register(reg("shop", "web", "b"))),
    ]);
    exec.execute(&ctx(g, 1, 1, T0 + 1_000), &payload).unwrap();
    assert_eq!(counting.calls.load(Ordering::Relaxed), 2);

    let refusing = Arc::new(Counting {
        refuse: true,
        ..Counting::default()
    });
    let mut exec = RegistryExecutor::open(MemStore::new(), &genesis())
        .unwrap()
        .with_verifier(refusing);
    assert!(matches!(
        exec.execute(&ctx(g, 1, 1, T0 + 1_000), &payload),
        Err(ExecutionError::Inadmissible { .. })
    ));
}
