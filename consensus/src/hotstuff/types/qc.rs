//! Quorum certificates.
//!
//! A QC is a [`LedgerInfo`] signed by distinct validators holding more than
//! two thirds of the epoch's power ([`ValidatorSet::verify_quorum`]), together
//! with the [`VoteData`] whose hash the ledger info carries. When the ledger
//! info commits a block (2-chain rule), the QC *is* a
//! [`CommitCertificate`] for it ([`QuorumCert::commit_certificate`]).
//!
//! The root of each epoch (genesis, or the block that ended the previous
//! epoch) is certified by an unsigned *root certificate* that every replica
//! derives identically ([`QuorumCert::root`]); the core accepts an unsigned
//! certificate only when it is exactly its own root's.

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{
    BlockInfo, CertError, CommitCertificate, Digest, LedgerInfo, PublicKey, Signature, ValidatorSet,
};

use super::VoteData;
use crate::hotstuff::{ConsensusError, SignatureVerifier, StrictVerifier};

/// A quorum certificate for one block.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QuorumCert {
    /// The certified block.
    pub vote_data: VoteData,
    /// What the quorum signed.
    pub ledger_info: LedgerInfo,
    /// Distinct signers and their signatures over `ledger_info.digest()`.
    pub signatures: Vec<(PublicKey, Signature)>,
}

impl QuorumCert {
    /// The unsigned certificate of an epoch's root block (genesis or the
    /// previous epoch's last block), identical on every replica. `round` is
    /// the round the epoch's first block must exceed.
    pub fn root(
        chain_id: &str,
        genesis_hash: Digest,
        epoch: u64,
        root: &BlockInfo,
        round: u64,
    ) -> Self {
        let vote_data = VoteData {
            epoch,
            block_id: root.block_id,
            round,
            height: root.height,
            parent_id: Digest::ZERO,
            parent_round: 0,
            info_hash: root.hash(),
        };
        let ledger_info = LedgerInfo {
            chain_id: chain_id.to_string(),
            genesis_hash,
            epoch,
            commit: None,
            consensus_data_hash: vote_data.hash(),
        };
        QuorumCert {
            vote_data,
            ledger_info,
            signatures: Vec::new(),
        }
    }

    /// Id of the certified block.
    pub fn certified_id(&self) -> Digest {
        self.vote_data.block_id
    }

    /// Round of the certified block.
    pub fn round(&self) -> u64 {
        self.vote_data.round
    }

    /// Epoch of the signers.
    pub fn epoch(&self) -> u64 {
        self.ledger_info.epoch
    }

    /// An unsigned root certificate.
    pub fn is_root(&self) -> bool {
        self.signatures.is_empty()
    }

    /// The block this QC commits under the 2-chain rule, if any.
    pub fn commit_info(&self) -> Option<&BlockInfo> {
        self.ledger_info.commit.as_ref()
    }

    /// The commit certificate this QC doubles as, when it commits a block.
    pub fn commit_certificate(&self) -> Option<CommitCertificate> {
        self.ledger_info.commit.as_ref()?;
        Some(CommitCertificate {
            ledger_info: self.ledger_info.clone(),
            signatures: self.signatures.clone(),
        })
    }

    /// Internal consistency, chain (id and genesis) and epoch; no
    /// signature is checked here.
    pub(crate) fn check_shape(
        &self,
        chain_id: &str,
        genesis_hash: Digest,
        epoch: u64,
    ) -> Result<(), ConsensusError> {
        let li = &self.ledger_info;
        if li.chain_id != chain_id {
            return Err(ConsensusError::WrongChain {
                got: li.chain_id.clone(),
                expected: chain_id.to_string(),
            });
        }
        if li.genesis_hash != genesis_hash {
            return Err(ConsensusError::WrongChain {
                got: format!("{} with genesis {}", li.chain_id, li.genesis_hash),
                expected: format!("{chain_id} with genesis {genesis_hash}"),
            });
        }
        if li.epoch != epoch {
            return Err(ConsensusError::WrongEpoch {
                got: li.epoch,
                current: epoch,
            });
        }
        if self.vote_data.epoch != li.epoch {
            return Err(ConsensusError::MalformedCertificate(
                "vote data and ledger info name different epochs",
            ));
        }
        if li.consensus_data_hash != self.vote_data.hash() {
            return Err(ConsensusError::MalformedCertificate(
                "ledger info does not carry the hash of the vote data",
            ));
        }
        if self.vote_data.round <= self.vote_data.parent_round && !self.is_root() {
            return Err(ConsensusError::MalformedCertificate(
                "certified round does not exceed the parent round",
            ));
        }
        if let Some(commit) = &li.commit {
            // 2-chain rule: only a vote for the direct successor round commits,
            // and what it commits is the parent or (reconfiguration suffix) an
            // ancestor of it.
            let consecutive =
                self.vote_data.parent_round.checked_add(1) == Some(self.vote_data.round);
            if !consecutive
                || commit.round > self.vote_data.parent_round
                || commit.height >= self.vote_data.height
            {
                return Err(ConsensusError::MalformedCertificate(
                    "commit does not follow the 2-chain rule",
                ));
            }
        }
        Ok(())
    }

    /// Full verification against the epoch's validator set (strict signatures).
    pub fn verify(
        &self,
        chain_id: &str,
        genesis_hash: Digest,
        set: &ValidatorSet,
    ) -> Result<(), ConsensusError> {
        self.verify_with(chain_id, genesis_hash, set, &StrictVerifier)
    }

    /// Full verification, signatures checked by `verifier`.
    pub fn verify_with(
        &self,
        chain_id: &str,
        genesis_hash: Digest,
        set: &ValidatorSet,
        verifier: &dyn SignatureVerifier,
    ) -> Result<(), ConsensusError> {
        self.check_shape(chain_id, genesis_hash, set.epoch)?;
        if self.is_root() {
            return Err(ConsensusError::UnknownRootCertificate(self.certified_id()));
        }
        let keys: Vec<PublicKey> = self.signatures.iter().map(|(k, _)| *k).collect();
        check_quorum(set, &keys)?;
        let digest = self.ledger_info.digest();
        let items: Vec<_> = self
            .signatures
            .iter()
            .map(|(k, s)| (*k, digest, *s))
            .collect();
        verifier
            .verify_batch(&items)
            .map_err(|e| CertError::Signature(e.error))?;
        Ok(())
    }
}

/// Distinct members of `set` holding a quorum (the cheap checks of
/// [`ValidatorSet::verify_quorum`], before any signature is verified).
pub(crate) fn check_quorum(set: &ValidatorSet, signers: &[PublicKey]) -> Result<(), CertError> {
    let mut power = 0u64;
    for (i, key) in signers.iter().enumerate() {
        if signers[..i].contains(key) {
            return Err(CertError::DuplicateSigner(*key));
        }
        power += set.power_of(key).ok_or(CertError::UnknownSigner(*key))?;
    }
    if power < set.quorum_power() {
        return Err(CertError::InsufficientPower {
            got: power,
            needed: set.quorum_power(),
            total: set.total_power(),
        });
    }
    Ok(())
}
