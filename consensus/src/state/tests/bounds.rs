//! Record size bounds: no write can create a record a later block cannot
//! read, and genesis refuses limits that would allow one.

use palisade_crypto::{Endpoint, Label, ProbeKind, ProbeSpec, MAX_DECODE_BYTES};

use super::super::{Params, StateError};
use super::*;
use crate::executor::ExecutionError;

/// A registration with every field at its genesis maximum.
fn maximal(p: &Params, i: usize) -> Registration {
    let text = |c: char, n: u32| std::iter::repeat_n(c, n as usize).collect::<String>();
    let mut instance = format!("i{i}-");
    instance.push_str(&text('x', p.max_name_len - instance.len() as u32));
    Registration {
        namespace: "shop".into(),
        service: "web".into(),
        instance,
        endpoints: (0..p.max_endpoints)
            .map(|e| Endpoint {
                protocol: text('p', 16),
                host: text('h', p.max_host_len),
                port: 1 + e as u16,
                weight: 1,
            })
            .collect(),
        labels: (0..p.max_labels)
            .map(|l| {
                let mut key = format!("k{l}-");
                key.push_str(&text('k', p.max_label_key_len - key.len() as u32));
                Label {
                    key,
                    value: text('v', p.max_label_value_len),
                }
            })
            .collect(),
        version: text('1', p.max_text_len),
        ttl_secs: p.max_ttl_secs,
        probe: Some(ProbeSpec {
            kind: ProbeKind::Http {
                path: format!("/{}", text('a', p.max_text_len - 1)),
            },
            interval_secs: 10,
        }),
    }
}

/// The attack of issue 13 item 1: one enrolled identity registers maximal
/// instances into one service. It must end in a typed rejection, with every
/// later block executing (including the authority revoking the identity),
/// and the whole service still provable and readable.
#[test]
fn filling_a_service_with_maximal_instances_is_refused_and_blocks_go_on() {
    let g = genesis();
    let p = g.params.clone();
    let mut c = Chain::with(g);
    let max = p.max_instances_per_service as usize;
    let mut applied = 0;
    let mut refusal = None;
    // Bounded: the limit plus one block's worth.
    for batch in 0..(max / 64 + 2) {
        let txs: Vec<_> = (0..64)
            .map(|j| {
                let body = TxBody::Register(maximal(&p, batch * 64 + j));
                c.tx(&alice(), body)
            })
            .collect();
        let (_, r) = c.block(1_000, &txs);
        for receipt in &r.receipts {
            match &receipt.outcome {
                TxOutcome::Applied => applied += 1,
                TxOutcome::Rejected(why) => {
                    refusal.get_or_insert_with(|| why.clone());
                }
            }
        }
        if refusal.is_some() {
            break;
        }
    }
    assert_eq!(applied, max);
    assert_eq!(
        refusal,
        Some(TxRejection::ServiceFull {
            max: p.max_instances_per_service as u64
        })
    );
    // Every stored record is within its bound and the full service reads.
    let bounds = p.record_bounds();
    let proof = c.reader().service("shop", "web").unwrap();
    assert_eq!(proof.instances.len(), max);
    assert!(proof.lookup.value.as_ref().unwrap().len() as u64 <= bounds.service_index);
    for bytes in &proof.instances {
        assert!(bytes.len() as u64 <= bounds.instance);
    }
    // Later blocks execute: another identity registers, the authority revokes
    // the filler (which removes all its instances in one transaction).
    let other = c.tx(&bob(), TxBody::Register(reg("shop", "api", "b1")));
    assert_eq!(c.one(other), TxOutcome::Applied);
    let revoke = c.authority_tx(TxBody::Revoke {
        identity: alice().public(),
    });
    assert_eq!(c.one(revoke), TxOutcome::Applied);
    assert_eq!(c.service("shop", "web"), None);
    assert_eq!(c.instances("shop", "api"), vec!["b1"]);
}

#[test]
fn genesis_refuses_limits_that_allow_a_record_over_the_decode_cap() {
    let refused = |edit: &dyn Fn(&mut Params), what: &str| {
        let mut g = genesis();
        edit(&mut g.params);
        match g.validate() {
            Err(StateError::InvalidGenesis(msg)) => {
                assert!(msg.contains(what), "{msg}");
                assert!(msg.contains(&MAX_DECODE_BYTES.to_string()), "{msg}");
            }
            other => panic!("expected a refusal naming {what}, got {other:?}"),
        }
    };
    // The old default that let one service outgrow the cap.
    refused(
        &|p| p.max_instances_per_service = 1024,
        "whole-service lookup answer",
    );
    refused(&|p| p.max_labels = 20_000, "instance record");
    refused(
        &|p| p.max_instances_per_identity = 30_000,
        "owner index page",
    );
    refused(
        &|p| p.max_namespaces_per_identity = 70_000,
        "identity record",
    );
    refused(
        &|p| p.max_services_per_namespace = 70_000,
        "namespace record",
    );
    refused(&|p| p.max_namespaces = 70_000, "namespace directory");
    // The defaults fit, with every record under the cap.
    genesis().validate().unwrap();
    let b = Params::default().record_bounds();
    assert!(b.service_answer <= MAX_DECODE_BYTES as u64, "{b:?}");
}

/// Issue 13 item 2: a lying node that tells a signer its next sequence is
/// `u64::MAX - 1` can no longer make the signer's next transaction exhaust
/// the account: a sequence more than `MAX_SEQUENCE_STEP` past the signer's
/// next makes its block invalid (changing nothing), and the signer carries
/// on. (Invalid rather than rejected since the issue-13 review: a rejected
/// transaction consumes its sequence, and this one cannot.)
#[test]
fn a_sequence_far_ahead_is_refused_and_cannot_exhaust_the_account() {
    use palisade_crypto::MAX_SEQUENCE_STEP;
    let mut c = Chain::new();
    let first = sign(&alice(), 0, TxBody::Register(reg("shop", "web", "a1")));
    assert_eq!(c.one(first), TxOutcome::Applied);
    let inadmissible = |got: Result<_, ExecutionError>| match got {
        Err(ExecutionError::Inadmissible { reason, .. }) => Some(reason),
        _ => None,
    };
    let lured = sign(&alice(), u64::MAX - 1, heartbeat("shop", "web", "a1"));
    assert_eq!(
        inadmissible(c.try_block(1_000, &[lured])),
        Some(
            TxRejection::SequenceTooFar {
                got: u64::MAX - 1,
                next: 1,
                max: 1 + MAX_SEQUENCE_STEP,
            }
            .to_string()
        )
    );
    let exhausted = sign(&alice(), u64::MAX, heartbeat("shop", "web", "a1"));
    assert_eq!(
        inadmissible(c.try_block(1_000, &[exhausted])),
        Some(TxRejection::SequenceExhausted.to_string())
    );
    assert_eq!(c.reader().next_sequence(&alice().public()).unwrap(), 1);
    // Just past the step is refused, the step itself is a valid gap.
    let past = sign(
        &alice(),
        2 + MAX_SEQUENCE_STEP,
        heartbeat("shop", "web", "a1"),
    );
    assert!(inadmissible(c.try_block(1_000, &[past])).is_some_and(|r| r.contains("too far ahead")));
    let gap = sign(
        &alice(),
        1 + MAX_SEQUENCE_STEP,
        heartbeat("shop", "web", "a1"),
    );
    assert_eq!(c.one(gap), TxOutcome::Applied);
    let next = sign(
        &alice(),
        2 + MAX_SEQUENCE_STEP,
        heartbeat("shop", "web", "a1"),
    );
    assert_eq!(c.one(next), TxOutcome::Applied);
}

/// Issue-13 review: a rejection is not free. A signature-valid, correctly
/// sequenced transaction that execution rejects consumes its sequence (its
/// receipt says rejected), so the same sequence cannot be rejected again in
/// a later block: one signer puts at most one transaction per sequence into
/// the chain.
#[test]
fn a_rejected_transaction_consumes_its_sequence() {
    let mut c = Chain::new();
    // A heartbeat for an instance that does not exist: rejected.
    let refused = sign(&alice(), 0, heartbeat("shop", "web", "nothing"));
    assert!(matches!(
        rejected(&c.one(refused)),
        Some(TxRejection::UnknownInstance { .. })
    ));
    assert_eq!(c.reader().next_sequence(&alice().public()).unwrap(), 1);
    // Another rejected body at the same sequence: the block is invalid.
    let again = sign(&alice(), 0, heartbeat("shop", "web", "other"));
    let before = c.root();
    assert!(matches!(
        c.try_block(1_000, &[again]),
        Err(ExecutionError::Inadmissible { reason, .. })
            if reason == TxRejection::StaleSequence { got: 0, next: 1 }.to_string()
    ));
    assert_eq!(c.root(), before);
    // In one block, too: the second rejection at one sequence is refused.
    let r1 = sign(&alice(), 1, heartbeat("shop", "web", "x1"));
    let r2 = sign(&alice(), 1, heartbeat("shop", "web", "x2"));
    assert!(matches!(
        c.try_block(1_000, &[r1.clone(), r2]),
        Err(ExecutionError::Inadmissible { .. })
    ));
    // The signer carries on from the next sequence.
    assert!(rejected(&c.one(r1)).is_some());
    let ok = sign(&alice(), 2, TxBody::Register(reg("shop", "web", "a1")));
    assert_eq!(c.one(ok), TxOutcome::Applied);
    assert_eq!(c.reader().next_sequence(&alice().public()).unwrap(), 3);
}

/// Issue-13 review: after a re-genesis that keeps the chain id and the
/// keys, sequences start over, so a transaction signed for the old genesis
/// would replay. It names the genesis it was signed for and is refused.
#[test]
fn a_transaction_signed_for_another_genesis_with_the_same_chain_id_and_keys_is_refused() {
    let old = genesis();
    let mut new = genesis();
    new.genesis_time_ms += 1;
    assert_eq!(old.chain_id, new.chain_id);
    assert_ne!(old.hash(), new.hash());
    let mut c = Chain::with(new.clone());
    let replayed = sign_for(
        &old.hash(),
        &alice(),
        0,
        TxBody::Register(reg("shop", "web", "a1")),
    );
    let reason = match c.try_block(1_000, &[replayed]) {
        Err(ExecutionError::Inadmissible { reason, .. }) => Some(reason),
        _ => None,
    };
    assert_eq!(
        reason,
        Some(
            TxRejection::WrongGenesis {
                got: old.hash(),
                expected: new.hash(),
            }
            .to_string()
        )
    );
    // Signed for the new genesis, the same act is applied.
    let fresh = c.tx(&alice(), TxBody::Register(reg("shop", "web", "a1")));
    assert_eq!(c.one(fresh), TxOutcome::Applied);
}
