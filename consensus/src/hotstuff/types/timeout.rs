//! Timeouts and timeout certificates (Jolteon §4, quadratic view change).
//!
//! A replica whose round timer expires signs `(chain, epoch, round, highest QC
//! round)` and broadcasts it with its highest QC. Timeouts of distinct
//! validators holding a quorum of power make a TC; the TC carries the highest
//! of the reported QCs, which the next leader must extend (the 2-chain locking
//! rule: a block justified by a TC must extend a QC at least that high).

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{hash_encoded, Digest, Domain, PublicKey, Signature, ValidatorSet};

use super::{qc::check_quorum, QuorumCert};
use crate::hotstuff::{ConsensusError, SignatureVerifier};

/// A timeout: "I give up on `round`; the highest QC I know is `high_qc`".
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Timeout {
    /// Epoch.
    pub epoch: u64,
    /// The round timed out.
    pub round: u64,
    /// The sender's highest QC.
    pub high_qc: QuorumCert,
    /// Signature over the [`palisade_crypto::Domain::Timeout`] hash of
    /// `(chain_id, epoch, round, high_qc.round())`.
    pub signature: Signature,
}

/// The digest a timeout signs.
pub(crate) fn timeout_digest(
    chain_id: &str,
    genesis_hash: &Digest,
    epoch: u64,
    round: u64,
    high_qc_round: u64,
) -> Digest {
    // The genesis hash is signed too (wave-3 review H1): otherwise, after a
    // re-genesis that keeps the chain id and the keys, the old chain's
    // timeouts would form valid timeout certificates on the new one.
    hash_encoded(
        Domain::Timeout,
        &(chain_id, genesis_hash, epoch, round, high_qc_round),
    )
}

/// A quorum of timeouts for one round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TimeoutCert {
    /// Epoch.
    pub epoch: u64,
    /// The round that timed out.
    pub round: u64,
    /// The highest QC among the timeouts (its round is the max of the reported rounds).
    pub high_qc: QuorumCert,
    /// Signers, the QC round each reported, and their signatures.
    pub signatures: Vec<(PublicKey, u64, Signature)>,
}

impl TimeoutCert {
    /// Highest QC round any signer reported.
    pub fn high_qc_round(&self) -> u64 {
        self.signatures
            .iter()
            .map(|(_, r, _)| *r)
            .max()
            .unwrap_or(0)
    }

    /// Verify against the epoch's set; `verify_qc` checks the carried QC
    /// (it may be the replica's root certificate).
    pub(crate) fn verify(
        &self,
        chain_id: &str,
        genesis_hash: &Digest,
        set: &ValidatorSet,
        verifier: &dyn SignatureVerifier,
        verify_qc: impl FnOnce(&QuorumCert) -> Result<(), ConsensusError>,
    ) -> Result<(), ConsensusError> {
        if self.epoch != set.epoch {
            return Err(ConsensusError::WrongEpoch {
                got: self.epoch,
                current: set.epoch,
            });
        }
        let keys: Vec<PublicKey> = self.signatures.iter().map(|(k, _, _)| *k).collect();
        check_quorum(set, &keys)?;
        if self.high_qc.round() != self.high_qc_round() {
            return Err(ConsensusError::MalformedCertificate(
                "TC's QC is not the highest one its signers reported",
            ));
        }
        if self.signatures.iter().any(|(_, r, _)| *r >= self.round) {
            return Err(ConsensusError::MalformedCertificate(
                "a timeout reports a QC not below its round",
            ));
        }
        verify_qc(&self.high_qc)?;
        let items: Vec<_> = self
            .signatures
            .iter()
            .map(|(k, r, s)| {
                (
                    *k,
                    timeout_digest(chain_id, genesis_hash, self.epoch, self.round, *r),
                    *s,
                )
            })
            .collect();
        verifier
            .verify_batch(&items)
            .map_err(|e| ConsensusError::Signature(e.error))?;
        Ok(())
    }
}
