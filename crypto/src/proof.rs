//! Proofs over the authenticated map (Jellyfish Merkle Tree, BLAKE3 hasher).
//!
//! An inclusion proof shows `key -> value` under a root; an absence proof shows
//! no value under `key`. Verification needs no storage. `jmt`'s verifier
//! explains failures in text; we keep its text in [`ProofError::Mismatch`].

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use jmt::{KeyHash, RootHash};

use crate::{
    decode, encode, instance_record_hash, Digest, InstanceRecord, JmtHasher, ProofError,
    ServiceIndex, ServiceName, ServiceRecord, StateKey, VerifiedLedgerInfo,
};

/// The jmt key hash of a state key.
pub fn state_key_hash(key: &StateKey) -> KeyHash {
    KeyHash::with::<JmtHasher>(encode(key))
}

/// A proof of presence or absence of one key.
#[derive(Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct MapProof(pub SparseMerkleProof<JmtHasher>);

impl std::fmt::Debug for MapProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MapProof({} bytes)", crate::encode(self).len())
    }
}

impl MapProof {
    /// Check that `key` maps to `value` (or to nothing, when `value` is `None`)
    /// under `root`.
    pub fn verify(
        &self,
        root: &Digest,
        key: &StateKey,
        value: Option<&[u8]>,
    ) -> Result<(), ProofError> {
        self.0
            .verify(RootHash(root.0), state_key_hash(key), value)
            .map_err(|e| ProofError::Mismatch {
                root: *root,
                reason: e.to_string(),
            })
    }
}

/// A node's proof of a service's index leaf (or its absence).
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct ServiceLookup {
    /// Namespace asked for.
    pub namespace: ServiceName,
    /// Service asked for.
    pub service: ServiceName,
    /// Canonical encoding of the [`ServiceIndex`], or `None` when absent.
    pub value: Option<Vec<u8>>,
    /// Proof against the certified state root.
    pub proof: MapProof,
}

/// A whole service's answer: the index leaf's proof and every instance
/// record it lists, in index order. Each record is capped on its own, so no
/// single decode grows with the service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceProof {
    /// The index leaf and its proof.
    pub lookup: ServiceLookup,
    /// Canonical encodings of the instance records, in index order.
    pub instances: Vec<Vec<u8>>,
}

/// A lookup answer proven against a certified root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLookup {
    /// Height of the certified block.
    pub height: u64,
    /// Its block time (ms).
    pub timestamp_ms: u64,
    /// The record; `None` is a proven absence.
    pub record: Option<ServiceRecord>,
}

impl ServiceProof {
    /// Verify the answer against a certified ledger info: the index leaf's
    /// proof, its subject, then exactly one record per index entry, in order,
    /// each hashing to its entry and naming its entry's id. An omitted, added,
    /// reordered or altered record fails.
    pub fn verify(&self, ledger: &VerifiedLedgerInfo) -> Result<VerifiedLookup, ProofError> {
        let lookup = &self.lookup;
        let key = StateKey::Service {
            namespace: lookup.namespace.clone(),
            service: lookup.service.clone(),
        };
        lookup
            .proof
            .verify(&ledger.block().state_root, &key, lookup.value.as_deref())?;
        let record = match &lookup.value {
            None => {
                if !self.instances.is_empty() {
                    return Err(ProofError::WrongRecord(format!(
                        "{} instance records for an absent service",
                        self.instances.len()
                    )));
                }
                None
            }
            Some(bytes) => {
                let index: ServiceIndex = decode(bytes)?;
                if index.namespace != lookup.namespace || index.service != lookup.service {
                    return Err(ProofError::WrongRecord(format!(
                        "index names {}/{}",
                        index.namespace, index.service
                    )));
                }
                if index.instances.len() != self.instances.len() {
                    return Err(ProofError::WrongRecord(format!(
                        "index lists {} instances, the answer carries {}",
                        index.instances.len(),
                        self.instances.len()
                    )));
                }
                let mut instances = Vec::with_capacity(index.instances.len());
                for (entry, bytes) in index.instances.iter().zip(&self.instances) {
                    if instance_record_hash(bytes) != entry.record_hash {
                        return Err(ProofError::WrongRecord(format!(
                            "record of instance {} does not match the index's hash",
                            entry.instance
                        )));
                    }
                    let record: InstanceRecord = decode(bytes)?;
                    if record.instance != entry.instance {
                        return Err(ProofError::WrongRecord(format!(
                            "record names instance {}, the index {}",
                            record.instance, entry.instance
                        )));
                    }
                    instances.push(record);
                }
                Some(ServiceRecord {
                    namespace: index.namespace,
                    service: index.service,
                    instances,
                })
            }
        };
        Ok(VerifiedLookup {
            height: ledger.block().height,
            timestamp_ms: ledger.block().timestamp_ms,
            record,
        })
    }
}
