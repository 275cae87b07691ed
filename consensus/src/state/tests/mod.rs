//! Tests of the state machine: a small harness that drives a
//! [`RegistryExecutor`] block by block, and one module per concern.

use std::collections::HashMap;

use palisade_crypto::{
    hash_encoded, Digest, Domain, Endpoint, Enrollment, Label, PublicKey, Registration, Role,
    SecretKey, ServiceRecord, SignedTransaction, Transaction, TxBody, Validator,
};

use super::{
    encode_payload, Authority, BlockReceipts, Genesis, IdentityRecord, MemStore, RegistryExecutor,
    StateKey, StateReader, TxOutcome, TxRejection,
};
use crate::executor::{ExecutionContext, ExecutionError, ExecutionResult, Executor};

mod bounds;
mod exec;
mod map;
mod owners;
mod rules;
mod silence;
mod table;
mod vectors;

pub(super) const CHAIN: &str = "palisade-test";
pub(super) const T0: u64 = 1_700_000_000_000;

pub(super) fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

/// Validators are keys 1..=4, the authority 10..=12 (2 of 3).
pub(super) fn validators() -> Vec<SecretKey> {
    (1..=4).map(key).collect()
}
pub(super) fn authority() -> Vec<SecretKey> {
    (10..=12).map(key).collect()
}
pub(super) fn alice() -> SecretKey {
    key(20)
}
pub(super) fn bob() -> SecretKey {
    key(21)
}
pub(super) fn admin() -> SecretKey {
    key(22)
}
pub(super) fn carol() -> SecretKey {
    key(23)
}

pub(super) fn genesis() -> Genesis {
    let mut g = Genesis::new(
        CHAIN,
        T0,
        validators()
            .iter()
            .map(|k| Validator {
                key: k.public(),
                power: 1,
            })
            .collect(),
        Authority {
            members: authority().iter().map(|k| k.public()).collect(),
            threshold: 2,
        },
    );
    let enroll = |k: SecretKey, ns: &[&str], role| Enrollment {
        identity: k.public(),
        namespaces: ns.iter().map(|s| s.to_string()).collect(),
        role,
    };
    g.enrollments = vec![
        enroll(alice(), &["shop"], Role::Service),
        enroll(bob(), &["shop"], Role::Service),
        enroll(admin(), &["shop"], Role::Admin),
        enroll(carol(), &["billing"], Role::Service),
    ];
    g
}

pub(super) fn reg(ns: &str, svc: &str, inst: &str) -> Registration {
    Registration {
        namespace: ns.into(),
        service: svc.into(),
        instance: inst.into(),
        endpoints: vec![Endpoint {
            protocol: "http".into(),
            host: "10.0.0.1".into(),
            port: 8080,
            weight: 1,
        }],
        labels: vec![Label {
            key: "zone".into(),
            value: "a".into(),
        }],
        version: "1.0.0".into(),
        ttl_secs: 30,
        probe: None,
    }
}

pub(super) fn heartbeat(ns: &str, svc: &str, inst: &str) -> TxBody {
    TxBody::Heartbeat {
        namespace: ns.into(),
        service: svc.into(),
        instance: inst.into(),
    }
}

/// Sign for the default [`genesis`].
pub(super) fn sign(k: &SecretKey, seq: u64, body: TxBody) -> SignedTransaction {
    sign_for(&genesis().hash(), k, seq, body)
}

/// Sign for the genesis of hash `genesis_hash`.
pub(super) fn sign_for(
    genesis_hash: &Digest,
    k: &SecretKey,
    seq: u64,
    body: TxBody,
) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        genesis_hash: *genesis_hash,
        signer: k.public(),
        sequence: seq,
        body,
    }
    .sign(k)
}

/// A chain of committed blocks over one executor.
pub(super) struct Chain {
    pub(super) exec: RegistryExecutor<MemStore>,
    pub(super) time: u64,
    height: u64,
    seqs: HashMap<PublicKey, u64>,
    /// The genesis every transaction of [`Chain::tx`] is signed for.
    pub(super) genesis_hash: Digest,
}

pub(super) fn block_id(parent: &Digest, height: u64, salt: u64) -> Digest {
    hash_encoded(Domain::Block, &(parent, height, salt))
}

impl Chain {
    pub(super) fn new() -> Self {
        Self::with(genesis())
    }

    pub(super) fn with(g: Genesis) -> Self {
        Chain {
            exec: RegistryExecutor::open(MemStore::new(), &g).expect("genesis opens"),
            time: g.genesis_time_ms,
            height: 0,
            seqs: HashMap::new(),
            genesis_hash: g.hash(),
        }
    }

    /// Sign with the signer's next sequence number.
    pub(super) fn tx(&mut self, k: &SecretKey, body: TxBody) -> SignedTransaction {
        let seq = self.seqs.entry(k.public()).or_insert(0);
        let stx = sign_for(&self.genesis_hash, k, *seq, body);
        *seq += 1;
        stx
    }

    /// An authority act signed by members 0 and 1.
    pub(super) fn authority_tx(&mut self, body: TxBody) -> SignedTransaction {
        let auth = authority();
        let mut stx = self.tx(&auth[0], body);
        stx.cosign(&auth[1]);
        stx
    }

    pub(super) fn context(&self, dt_ms: u64) -> ExecutionContext {
        let (parent, _) = self.exec.committed();
        ExecutionContext {
            parent_id: parent,
            block_id: block_id(&parent, self.height + 1, 0),
            height: self.height + 1,
            epoch: self.exec.committed_meta().epoch,
            timestamp_ms: self.time + dt_ms,
        }
    }

    /// Execute and commit a block `dt_ms` after the previous one.
    pub(super) fn block(
        &mut self,
        dt_ms: u64,
        txs: &[SignedTransaction],
    ) -> (ExecutionResult, BlockReceipts) {
        let ctx = self.context(dt_ms);
        let result = self
            .exec
            .execute(&ctx, &encode_payload(txs))
            .expect("block executes");
        let receipts = self
            .exec
            .speculative_receipts(&ctx.block_id)
            .expect("receipts kept")
            .clone();
        self.exec.commit(&ctx.block_id).expect("block commits");
        self.height += 1;
        self.time = ctx.timestamp_ms;
        (result, receipts)
    }

    /// Execute a block and commit it only if it executes; a refused block
    /// leaves the chain as it was.
    pub(super) fn try_block(
        &mut self,
        dt_ms: u64,
        txs: &[SignedTransaction],
    ) -> Result<(ExecutionResult, BlockReceipts), ExecutionError> {
        let ctx = self.context(dt_ms);
        self.exec.execute(&ctx, &encode_payload(txs))?;
        Ok(self.block(dt_ms, txs))
    }

    /// Apply one transaction in its own block; its outcome.
    pub(super) fn one(&mut self, stx: SignedTransaction) -> TxOutcome {
        let (_, receipts) = self.block(1_000, &[stx]);
        receipts.receipts[0].outcome.clone()
    }

    pub(super) fn reader(&self) -> StateReader<'_> {
        self.exec.reader()
    }

    pub(super) fn service(&self, ns: &str, svc: &str) -> Option<ServiceRecord> {
        self.reader().service_record(ns, svc).expect("readable")
    }

    pub(super) fn instances(&self, ns: &str, svc: &str) -> Vec<String> {
        self.service(ns, svc)
            .map(|s| s.instances.into_iter().map(|i| i.instance).collect())
            .unwrap_or_default()
    }

    pub(super) fn root(&self) -> Digest {
        self.exec.committed().1
    }

    /// Everything the registry holds but accounts (sequences): every
    /// namespace's listing and service records, and the identity record of
    /// every key this chain has signed with.
    pub(super) fn services_and_identities(&self) -> RegistryContent {
        let reader = self.reader();
        let mut services = Vec::new();
        for ns in reader.namespaces().expect("readable") {
            let listing: Option<palisade_crypto::NamespaceRecord> = reader
                .get(&StateKey::Namespace {
                    namespace: ns.clone(),
                })
                .expect("readable");
            let records = listing
                .map(|l| l.services)
                .unwrap_or_default()
                .iter()
                .map(|svc| reader.service_record(&ns, svc).expect("readable"))
                .collect();
            services.push((ns, records));
        }
        let mut keys: Vec<_> = self.seqs.keys().copied().collect();
        keys.sort_by_key(|k| k.to_string());
        let identities = keys
            .iter()
            .map(|k| reader.identity(k).expect("readable"))
            .collect();
        (services, identities)
    }
}

/// Every namespace's service records, and the identity records of known
/// keys ([`Chain::services_and_identities`]).
pub(super) type RegistryContent = (
    Vec<(String, Vec<Option<ServiceRecord>>)>,
    Vec<Option<IdentityRecord>>,
);

pub(super) fn rejected(outcome: &TxOutcome) -> Option<&TxRejection> {
    match outcome {
        TxOutcome::Rejected(r) => Some(r),
        TxOutcome::Applied => None,
    }
}
