//! Pure verification of node answers: lookups and commit receipts.
//!
//! Nothing here does I/O or reads a clock; `now_ms` comes in as an argument.
//! Every field a node sends that is not covered by a certificate (the
//! "unverified" conveniences of the API types) is ignored.

use std::time::Duration;

use palisade_crypto::api::{AccountResponse, LookupResponse, NamespaceResponse, Receipt};
use palisade_crypto::{
    BlockInfo, CommitCertificate, Digest, Hex, InstanceRecord, MapProof, NamespaceRecord,
    ServiceLookup, ServiceName, ServiceProof, ServiceRecord, StateKey, VerifiedLedgerInfo,
    OUTCOME_APPLIED,
};

use crate::{ClientError, TrustedChain};

/// Longest chain of block infos accepted between a receipt's block and the
/// certified one.
pub const MAX_RECEIPT_DESCENDANTS: usize = 10_000;

/// How recent certified state must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Oldest acceptable certified block time, relative to the local clock.
    pub max_age: Duration,
    /// How far the certified block time may be ahead of the local clock.
    pub max_skew: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            max_age: Duration::from_secs(60),
            max_skew: Duration::from_secs(10),
        }
    }
}

impl Freshness {
    /// Check a certified block time against the local clock.
    pub fn check(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), ClientError> {
        let max_age_ms = self.max_age.as_millis() as u64;
        let max_skew_ms = self.max_skew.as_millis() as u64;
        if timestamp_ms > now_ms {
            let ahead_ms = timestamp_ms - now_ms;
            if ahead_ms > max_skew_ms {
                return Err(ClientError::FromTheFuture {
                    ahead_ms,
                    max_skew_ms,
                });
            }
            return Ok(());
        }
        let age_ms = now_ms - timestamp_ms;
        if age_ms > max_age_ms {
            return Err(ClientError::Stale { age_ms, max_age_ms });
        }
        Ok(())
    }
}

/// A service's instances, proven against a certified state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedService {
    /// Namespace.
    pub namespace: ServiceName,
    /// Service.
    pub service: ServiceName,
    /// Height of the certified block.
    pub height: u64,
    /// Its block time (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// Epoch of the validators that certified it.
    pub epoch: u64,
    /// The certified state root.
    pub state_root: Digest,
    /// The record; `None` is a proven absence.
    pub record: Option<ServiceRecord>,
}

impl VerifiedService {
    /// The instances (empty for a proven absence).
    pub fn instances(&self) -> &[InstanceRecord] {
        self.record.as_ref().map_or(&[], |r| &r.instances)
    }

    /// `namespace/service`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.service)
    }
}

/// Verify a lookup answer for `namespace/service`: the certificate against
/// the trusted set of its epoch, the proof of the service's index leaf
/// against the certified root, the answer's subject, every instance record
/// against the hash the index lists for it (none omitted, added, reordered
/// or altered; see [`ServiceProof::verify`]), and (when `freshness` is
/// given) the block time against `now_ms`.
pub fn verify_lookup(
    trust: &TrustedChain,
    namespace: &str,
    service: &str,
    response: &LookupResponse,
    now_ms: u64,
    freshness: Option<&Freshness>,
) -> Result<VerifiedService, ClientError> {
    let cert = response
        .certificate
        .decode()
        .map_err(|e| ClientError::Malformed(format!("certificate: {e}")))?;
    let lookup: ServiceLookup = response
        .lookup
        .decode()
        .map_err(|e| ClientError::Malformed(format!("lookup proof: {e}")))?;
    let max = palisade_crypto::MAX_DECODE_BYTES;
    let total: usize = response.instances.iter().map(|i| i.bytes().len()).sum();
    if total > max {
        return Err(ClientError::Malformed(format!(
            "instance records of {total} bytes, at most {max} accepted"
        )));
    }
    if lookup.namespace != namespace || lookup.service != service {
        return Err(ClientError::WrongService {
            asked: format!("{namespace}/{service}"),
            got: format!("{}/{}", lookup.namespace, lookup.service),
        });
    }
    let ledger = trust.verify(&cert)?;
    let proof = ServiceProof {
        lookup,
        instances: response
            .instances
            .iter()
            .map(|i| i.bytes().to_vec())
            .collect(),
    };
    let verified = proof.verify(&ledger).map_err(ClientError::ForgedProof)?;
    let lookup = proof.lookup;
    if let Some(f) = freshness {
        f.check(verified.timestamp_ms, now_ms)?;
    }
    Ok(VerifiedService {
        namespace: lookup.namespace,
        service: lookup.service,
        height: verified.height,
        timestamp_ms: verified.timestamp_ms,
        epoch: ledger.epoch(),
        state_root: ledger.block().state_root,
        record: verified.record,
    })
}

/// The services of a namespace, proven against a certified state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNamespace {
    /// Namespace.
    pub namespace: ServiceName,
    /// Height of the certified block.
    pub height: u64,
    /// Its block time (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// Epoch of the validators that certified it.
    pub epoch: u64,
    /// Services with instances, sorted (empty for a proven absence).
    pub services: Vec<ServiceName>,
}

/// Verify a namespace listing like a lookup: certificate, proof of the
/// namespace leaf (or its absence), subject, freshness.
pub fn verify_namespace(
    trust: &TrustedChain,
    namespace: &str,
    response: &NamespaceResponse,
    now_ms: u64,
    freshness: Option<&Freshness>,
) -> Result<VerifiedNamespace, ClientError> {
    if response.namespace != namespace {
        return Err(ClientError::WrongService {
            asked: namespace.to_string(),
            got: response.namespace.clone(),
        });
    }
    let key = StateKey::Namespace {
        namespace: namespace.to_string(),
    };
    let value = response.value.as_ref().map(|v| v.bytes());
    let ledger = verify_leaf(
        trust,
        &response.certificate,
        &response.proof,
        &key,
        value,
        "namespace",
    )?;
    let services = match &response.value {
        None => Vec::new(),
        Some(hex) => {
            let record: NamespaceRecord = hex
                .decode()
                .map_err(|e| ClientError::ForgedProof(palisade_crypto::ProofError::Malformed(e)))?;
            if record.namespace != namespace {
                return Err(ClientError::WrongService {
                    asked: namespace.to_string(),
                    got: record.namespace,
                });
            }
            record.services
        }
    };
    if let Some(f) = freshness {
        f.check(ledger.block().timestamp_ms, now_ms)?;
    }
    Ok(VerifiedNamespace {
        namespace: namespace.to_string(),
        height: ledger.block().height,
        timestamp_ms: ledger.block().timestamp_ms,
        epoch: ledger.epoch(),
        services,
    })
}

/// One state leaf (or its absence) of an answer: the certificate against the
/// trusted validator sets, then `value` under `key` against its certified
/// root. `what` names the proof in a decoding error.
fn verify_leaf(
    trust: &TrustedChain,
    certificate: &Hex<CommitCertificate>,
    proof: &Hex<MapProof>,
    key: &StateKey,
    value: Option<&[u8]>,
    what: &str,
) -> Result<VerifiedLedgerInfo, ClientError> {
    let cert = certificate
        .decode()
        .map_err(|e| ClientError::Malformed(format!("certificate: {e}")))?;
    let proof = proof
        .decode()
        .map_err(|e| ClientError::Malformed(format!("{what} proof: {e}")))?;
    let ledger = trust.verify(&cert)?;
    proof
        .verify(&ledger.block().state_root, key, value)
        .map_err(ClientError::ForgedProof)?;
    Ok(ledger)
}

/// A signer's committed next sequence, proven against a certified root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAccount {
    /// The sequence number the signer must use next (at least).
    pub next_sequence: u64,
    /// Height of the certified state.
    pub height: u64,
}

/// Verify an account answer: the certificate against the trusted set, the
/// proof of `StateKey::Account` against the certified root, and the subject.
/// The node's `next_sequence` suggestion is not covered.
pub fn verify_account(
    trust: &TrustedChain,
    key: &palisade_crypto::PublicKey,
    response: &AccountResponse,
    now_ms: u64,
    freshness: Option<&Freshness>,
) -> Result<VerifiedAccount, ClientError> {
    if response.key != *key {
        return Err(ClientError::Malformed(format!(
            "asked for account {key}, got {}",
            response.key
        )));
    }
    let value = response.value.as_ref().map(|v| v.bytes());
    let ledger = verify_leaf(
        trust,
        &response.certificate,
        &response.proof,
        &StateKey::Account { key: *key },
        value,
        "account",
    )?;
    // An old certified state proves an old sequence: a node showing one
    // would have the signer sign a stale sequence that honest nodes refuse.
    if let Some(f) = freshness {
        f.check(ledger.block().timestamp_ms, now_ms)?;
    }
    let next_sequence = match &response.value {
        None => 0,
        Some(hex) => hex
            .decode()
            .map_err(|e| ClientError::ForgedProof(palisade_crypto::ProofError::Malformed(e)))?,
    };
    Ok(VerifiedAccount {
        next_sequence,
        height: ledger.block().height,
    })
}

/// A commit receipt whose inclusion proof, block chain and certificate verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// Transaction id.
    pub tx_id: Digest,
    /// The block that includes it.
    pub block: BlockInfo,
    /// Height of the certified block (at or above `block.height`).
    pub certified_height: u64,
    /// The state machine's verdict as text ("applied" or `"rejected:
    /// <reason>"`): the node's wording, checked only to agree with
    /// `outcome_code` on applied versus rejected.
    pub outcome: String,
    /// The verdict's stable code, covered by the certificate: the block's
    /// transaction root binds it to the transaction id.
    pub outcome_code: u16,
}

impl VerifiedReceipt {
    /// Whether the certified outcome is "applied".
    pub fn applied(&self) -> bool {
        self.outcome_code == OUTCOME_APPLIED
    }
}

/// Verify that `receipt` proves `tx_id` committed with the outcome it states:
/// the inclusion proof of `(tx_id, outcome)` against the block's transaction
/// root, the chain of block infos from that
/// block up to the certified one (each naming its parent's hash), and the
/// certificate against the trusted set.
pub fn verify_receipt(
    trust: &TrustedChain,
    tx_id: &Digest,
    receipt: &Receipt,
) -> Result<VerifiedReceipt, ClientError> {
    let forged = |s: String| ClientError::ForgedReceipt(s);
    if receipt.tx_id != *tx_id {
        return Err(forged(format!(
            "receipt is for transaction {}, expected {tx_id}",
            receipt.tx_id
        )));
    }
    let block = receipt
        .block
        .decode()
        .map_err(|e| ClientError::Malformed(format!("receipt block: {e}")))?;
    if block.height != receipt.height {
        return Err(forged(format!(
            "receipt says height {} but its block is at height {}",
            receipt.height, block.height
        )));
    }
    let inclusion = receipt
        .inclusion
        .decode()
        .map_err(|e| ClientError::Malformed(format!("inclusion proof: {e}")))?;
    inclusion
        .verify_receipt(&block.tx_root, tx_id, receipt.outcome_code)
        .map_err(|e| {
            forged(format!(
                "inclusion proof with outcome code {}: {e}",
                receipt.outcome_code
            ))
        })?;
    if (receipt.outcome == "applied") != (receipt.outcome_code == OUTCOME_APPLIED) {
        return Err(forged(format!(
            "outcome text {:?} contradicts the certified code {}",
            receipt.outcome, receipt.outcome_code
        )));
    }
    if receipt.descendants.len() > MAX_RECEIPT_DESCENDANTS {
        return Err(forged(format!(
            "{} descendant blocks, at most {MAX_RECEIPT_DESCENDANTS} accepted",
            receipt.descendants.len()
        )));
    }
    let mut tip = block.clone();
    for hex in &receipt.descendants {
        let child = hex
            .decode()
            .map_err(|e| ClientError::Malformed(format!("descendant block: {e}")))?;
        if child.parent_info != tip.hash() || tip.height.checked_add(1) != Some(child.height) {
            return Err(forged(format!(
                "block at height {} does not extend block {} of the chain",
                child.height, tip.height
            )));
        }
        tip = child;
    }
    let cert = receipt
        .certificate
        .decode()
        .map_err(|e| ClientError::Malformed(format!("receipt certificate: {e}")))?;
    let ledger = trust.verify(&cert)?;
    if *ledger.block() != tip {
        return Err(forged(format!(
            "certificate is for block {} at height {}, the receipt's chain ends at height {}",
            ledger.block().block_id,
            ledger.block().height,
            tip.height
        )));
    }
    Ok(VerifiedReceipt {
        tx_id: *tx_id,
        certified_height: tip.height,
        block,
        outcome: receipt.outcome.clone(),
        outcome_code: receipt.outcome_code,
    })
}
