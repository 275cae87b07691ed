//! Proofs over the authenticated map (Jellyfish Merkle Tree, BLAKE3 hasher).
//!
//! An inclusion proof shows `key -> value` under a root; an absence proof shows
//! no value under `key`. Verification needs no storage. `jmt`'s verifier
//! explains failures in text; we keep its text in [`ProofError::Mismatch`].

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use jmt::{KeyHash, RootHash};

use crate::{
    decode, encode, Digest, JmtHasher, ProofError, ServiceName, ServiceRecord, StateKey,
    VerifiedLedgerInfo,
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

/// A node's answer to "what are the instances of namespace/service".
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct ServiceLookup {
    /// Namespace asked for.
    pub namespace: ServiceName,
    /// Service asked for.
    pub service: ServiceName,
    /// Canonical encoding of the [`ServiceRecord`], or `None` when absent.
    pub value: Option<Vec<u8>>,
    /// Proof against the certified state root.
    pub proof: MapProof,
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

impl ServiceLookup {
    /// Verify the answer against a certified ledger info.
    pub fn verify(&self, ledger: &VerifiedLedgerInfo) -> Result<VerifiedLookup, ProofError> {
        let key = StateKey::Service {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
        };
        self.proof
            .verify(&ledger.block().state_root, &key, self.value.as_deref())?;
        let record = match &self.value {
            None => None,
            Some(bytes) => {
                let record: ServiceRecord = decode(bytes)?;
                if record.namespace != self.namespace || record.service != self.service {
                    return Err(ProofError::WrongRecord(format!(
                        "record names {}/{}",
                        record.namespace, record.service
                    )));
                }
                Some(record)
            }
        };
        Ok(VerifiedLookup {
            height: ledger.block().height,
            timestamp_ms: ledger.block().timestamp_ms,
            record,
        })
    }
}
