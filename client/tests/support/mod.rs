//! Test doubles: realistic certified answers, and a real HTTP stand-in node.
#![allow(dead_code)]

pub mod fixture;
pub mod server;

use palisade_crypto::api::Receipt;
use palisade_crypto::{receipt_root, tx_root, BlockInfo, Digest, Hex, TxInclusionProof};

use fixture::{now_ms, Chain};

/// The outcome code the test receipts use for `outcome`: applied, or the
/// state machine's "stale sequence" code for any rejection.
pub fn outcome_code(outcome: &str) -> u16 {
    if outcome == "applied" {
        palisade_crypto::OUTCOME_APPLIED
    } else {
        10
    }
}

/// A receipt for `tx_id`, included at position 1 of a 3-transaction block at
/// height 10, followed by `descendants` blocks, the last one certified.
pub fn receipt(chain: &Chain, tx_id: Digest, descendants: usize, outcome: &str) -> Receipt {
    let leaves = vec![
        (Digest([1; 32]), outcome_code("applied")),
        (tx_id, outcome_code(outcome)),
        (Digest([2; 32]), outcome_code("rejected: stale")),
    ];
    let mut blocks = vec![BlockInfo {
        round: 20,
        height: 10,
        block_id: Digest([10; 32]),
        state_root: Digest([4; 32]),
        tx_root: receipt_root(&leaves),
        timestamp_ms: now_ms(),
        next_validators: None,
        parent_info: Digest([5; 32]),
    }];
    for i in 0..descendants {
        let parent = blocks.last().unwrap();
        blocks.push(BlockInfo {
            round: parent.round + 1,
            height: parent.height + 1,
            block_id: Digest([11 + i as u8; 32]),
            tx_root: tx_root(&[]),
            parent_info: parent.hash(),
            ..parent.clone()
        });
    }
    let certificate = chain.quorum(blocks.last().unwrap().clone());
    Receipt {
        tx_id,
        height: 10,
        block: Hex::new(&blocks[0]),
        inclusion: Hex::new(&TxInclusionProof::build_receipt(&leaves, 1)),
        descendants: blocks[1..].iter().map(Hex::new).collect(),
        certificate: Hex::new(&certificate),
        outcome: outcome.to_string(),
        outcome_code: outcome_code(outcome),
        block_info: Some(blocks[0].clone()),
        certified: Some((&certificate).into()),
    }
}

use std::sync::{Arc, Mutex};

use palisade_crypto::api::{AccountResponse, SubmitRequest, SubmitResponse, TxStatus};
use palisade_crypto::SignedTransaction;
use server::{MockNode, Reply, Request};

/// How a stand-in node treats submitted transactions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TxBehavior {
    Commit,
    Reject(&'static str),
    PendingThenCommit,
    AlwaysPending,
    ForgeReceipt,
    /// Loses the first submission (unknown to `GET /v1/tx`), commits the next.
    LoseFirst,
    /// Reports every transaction applied, but the state never changes.
    Pretend,
    /// Commits, but reports the outcome "rejected: ..." beside the proof of
    /// "applied".
    FlipOutcome,
    /// Commits, but the certified state holds every registration with
    /// another version, TTL and probe than asked for.
    OtherVersion,
    /// Commits, but suggests `u64::MAX - 1` as every signer's next sequence
    /// (beside an honest proof of the committed one).
    LieAccount,
}

impl TxBehavior {
    fn applies(self) -> bool {
        matches!(
            self,
            TxBehavior::Commit
                | TxBehavior::PendingThenCommit
                | TxBehavior::LoseFirst
                | TxBehavior::LieAccount
                | TxBehavior::OtherVersion
        )
    }
}

/// The certified state after applying the registrations and deregistrations
/// of `txs` in order, answering for `namespace/service` at height 11.
fn state_answer(
    chain: &Chain,
    txs: &[SignedTransaction],
    namespace: &str,
    service: &str,
) -> palisade_crypto::api::LookupResponse {
    use palisade_crypto::{Health, InstanceRecord, ServiceRecord, TxBody};
    let mut instances: Vec<InstanceRecord> = Vec::new();
    for tx in txs {
        match &tx.tx.body {
            TxBody::Register(r) if r.namespace == namespace && r.service == service => {
                instances.retain(|i| i.instance != r.instance);
                instances.push(InstanceRecord {
                    instance: r.instance.clone(),
                    owner: tx.tx.signer,
                    endpoints: r.endpoints.clone(),
                    labels: r.labels.clone(),
                    version: r.version.clone(),
                    ttl_secs: r.ttl_secs,
                    registered_at_ms: now_ms(),
                    lease_expires_at_ms: now_ms() + u64::from(r.ttl_secs) * 1000,
                    health: Health::Passing,
                    dissenting_reporters: vec![],
                    probe: r.probe.clone(),
                });
            }
            TxBody::Deregister {
                namespace: ns,
                service: svc,
                instance,
            } if ns == namespace && svc == service => instances.retain(|i| &i.instance != instance),
            _ => {}
        }
    }
    instances.sort_by(|a, b| a.instance.cmp(&b.instance));
    let mut state = fixture::State::new();
    let key = fixture::service_key(namespace, service);
    // An unrelated key keeps the tree non-empty when the service is absent.
    state.put(vec![(fixture::service_key("zz", "other"), Some(vec![1]))]);
    if !instances.is_empty() {
        state.put_record(&ServiceRecord {
            namespace: namespace.into(),
            service: service.into(),
            instances,
        });
    }
    let cert = chain.quorum(fixture::block(11, state.root, now_ms()));
    let (value, proof) = state.prove(&key);
    let instances = state.instance_bytes(namespace, service);
    fixture::lookup_response(cert, namespace, service, value, proof, instances)
}

/// The next sequence number stand-in nodes report for every account.
pub const NEXT_SEQUENCE: u64 = 3;

/// An account answer whose committed next sequence `proven` is proven
/// against a state certified by `chain`, with the node suggesting `suggested`.
pub fn account_answer(
    chain: &Chain,
    key: palisade_crypto::PublicKey,
    proven: u64,
    suggested: u64,
) -> AccountResponse {
    account_answer_at(chain, key, proven, suggested, now_ms())
}

/// [`account_answer`] for a state certified at `timestamp_ms`.
pub fn account_answer_at(
    chain: &Chain,
    key: palisade_crypto::PublicKey,
    proven: u64,
    suggested: u64,
    timestamp_ms: u64,
) -> AccountResponse {
    let mut state = fixture::State::new();
    let account = palisade_crypto::StateKey::Account { key };
    state.put(vec![
        (fixture::service_key("zz", "other"), Some(vec![1])),
        (
            account.clone(),
            (proven > 0).then(|| palisade_crypto::encode(&proven)),
        ),
    ]);
    let cert = chain.quorum(fixture::block(11, state.root, timestamp_ms));
    let (value, proof) = state.prove(&account);
    AccountResponse {
        key,
        next_sequence: suggested,
        height: 11,
        certificate: Hex::new(&cert),
        value: value.map(Hex::from_bytes),
        proof: Hex::new(&proof),
    }
}

/// A node that accepts transactions and answers with receipts certified by `chain`.
pub fn tx_node(
    chain: Chain,
    behavior: TxBehavior,
) -> (MockNode, Arc<Mutex<Vec<SignedTransaction>>>) {
    let seen: Arc<Mutex<Vec<SignedTransaction>>> = Arc::default();
    let log = seen.clone();
    let node = MockNode::start(move |req: &Request| {
        let committed = |id: Digest, outcome: &str| SubmitResponse {
            tx_id: id,
            status: if outcome == "applied" {
                TxStatus::Committed
            } else {
                TxStatus::Rejected
            },
            receipt: Some(receipt(&chain, id, 1, outcome)),
        };
        if let Some(key) = req.path.strip_prefix("/v1/accounts/") {
            let key = palisade_crypto::PublicKey::from_hex(key).unwrap();
            let suggested = if behavior == TxBehavior::LieAccount {
                u64::MAX - 1
            } else {
                NEXT_SEQUENCE
            };
            return Reply::ok(&account_answer(&chain, key, NEXT_SEQUENCE, suggested));
        }
        if let Some(rest) = req.path.strip_prefix("/v1/services/") {
            // The SDK's lookup asks `?record=false`: the query is not the name.
            let rest = rest.split('?').next().unwrap_or_default();
            let (ns, svc) = rest.split_once('/').unwrap();
            let txs = if behavior.applies() {
                log.lock().unwrap().clone()
            } else {
                Vec::new()
            };
            let mut txs = txs;
            if behavior == TxBehavior::OtherVersion {
                for tx in &mut txs {
                    if let palisade_crypto::TxBody::Register(r) = &mut tx.tx.body {
                        r.version = "0.0.0-other".into();
                    }
                }
            }
            return Reply::ok(&state_answer(&chain, &txs, ns, svc));
        }
        if let Some(id) = req.path.strip_prefix("/v1/tx/") {
            let id = Digest::from_hex(id).unwrap();
            if behavior == TxBehavior::LoseFirst && log.lock().unwrap().len() < 2 {
                return Reply::error(404, "unknown_tx");
            }
            return match behavior {
                TxBehavior::AlwaysPending => Reply::ok(&SubmitResponse {
                    tx_id: id,
                    status: TxStatus::Pending,
                    receipt: None,
                }),
                _ => Reply::ok(&committed(id, "applied")),
            };
        }
        if req.method == "POST" && req.path == "/v1/tx" {
            let submit: SubmitRequest = serde_json::from_slice(&req.body).unwrap();
            let tx: SignedTransaction = submit.tx.decode().unwrap();
            let id = tx.id();
            log.lock().unwrap().push(tx);
            let pending = SubmitResponse {
                tx_id: id,
                status: TxStatus::Pending,
                receipt: None,
            };
            return match behavior {
                TxBehavior::Commit
                | TxBehavior::Pretend
                | TxBehavior::LieAccount
                | TxBehavior::OtherVersion => Reply::ok(&committed(id, "applied")),
                TxBehavior::FlipOutcome => {
                    let mut r = receipt(&chain, id, 1, "applied");
                    r.outcome = "rejected: forged".into();
                    Reply::ok(&SubmitResponse {
                        tx_id: id,
                        status: TxStatus::Rejected,
                        receipt: Some(r),
                    })
                }
                TxBehavior::Reject(reason) => Reply::ok(&committed(id, reason)),
                TxBehavior::PendingThenCommit
                | TxBehavior::AlwaysPending
                | TxBehavior::LoseFirst => Reply::ok(&pending),
                TxBehavior::ForgeReceipt => {
                    let mut forged = receipt(&chain, Digest([43; 32]), 1, "applied");
                    forged.tx_id = id;
                    Reply::ok(&SubmitResponse {
                        tx_id: id,
                        status: TxStatus::Committed,
                        receipt: Some(forged),
                    })
                }
            };
        }
        Reply::error(404, "not_found")
    });
    (node, seen)
}
