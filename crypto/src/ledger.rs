//! Validator sets, ledger infos and commit certificates.
//!
//! A vote signs a [`LedgerInfo`]: the block it commits (if any) and a hash of
//! the consensus data it votes on. Signatures of distinct validators holding
//! more than two thirds of the voting power make a quorum certificate; when the
//! ledger info names a committed block it is a [`CommitCertificate`], which a
//! client checks with the trusted validator set alone ([TMBC-VAL-COMMIT]-style,
//! Jolteon §4 2-chain commit).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{hash_encoded, verify_batch, CertError, Digest, Domain, PublicKey, Signature};

/// A validator and its voting power.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Validator {
    /// Consensus key.
    pub key: PublicKey,
    /// Voting power (> 0).
    pub power: u64,
}

/// The validators of one epoch.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ValidatorSet {
    /// The epoch these validators sign for.
    pub epoch: u64,
    /// Members, in leader-rotation order.
    pub validators: Vec<Validator>,
}

/// Largest total power accepted, so that `3 * power` never overflows.
const MAX_TOTAL_POWER: u64 = u64::MAX / 4;

impl ValidatorSet {
    /// Check the set is well formed: non-empty, positive powers, distinct keys,
    /// bounded total.
    pub fn validate(&self) -> Result<(), CertError> {
        if self.validators.is_empty() {
            return Err(CertError::InvalidSet("no validators".into()));
        }
        let mut total: u64 = 0;
        for (i, v) in self.validators.iter().enumerate() {
            if v.power == 0 {
                return Err(CertError::InvalidSet(format!(
                    "validator {} has zero power",
                    v.key
                )));
            }
            if self.validators[..i].iter().any(|w| w.key == v.key) {
                return Err(CertError::InvalidSet(format!(
                    "validator {} listed twice",
                    v.key
                )));
            }
            total = total
                .checked_add(v.power)
                .filter(|t| *t <= MAX_TOTAL_POWER)
                .ok_or_else(|| CertError::InvalidSet("total power too large".into()))?;
        }
        Ok(())
    }

    /// Sum of all voting power.
    pub fn total_power(&self) -> u64 {
        self.validators.iter().map(|v| v.power).sum()
    }

    /// The power a quorum needs: the least integer strictly above 2/3 of total.
    pub fn quorum_power(&self) -> u64 {
        self.total_power() * 2 / 3 + 1
    }

    /// The power that guarantees at least one honest member: more than 1/3 of total (f+1).
    pub fn validity_power(&self) -> u64 {
        self.total_power() / 3 + 1
    }

    /// Voting power of `key`, if it is a member.
    pub fn power_of(&self, key: &PublicKey) -> Option<u64> {
        self.validators
            .iter()
            .find(|v| &v.key == key)
            .map(|v| v.power)
    }

    /// Position of `key` in the set.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.validators.iter().position(|v| &v.key == key)
    }

    /// The set's hash (what a ledger info's epoch change commits to).
    pub fn hash(&self) -> Digest {
        hash_encoded(Domain::ValidatorSet, self)
    }

    /// Check that distinct members holding a quorum signed `digest`. Every
    /// signature must verify (a certificate carrying a bad one is refused).
    /// Returns the signers' power.
    pub fn verify_quorum(
        &self,
        digest: &Digest,
        signatures: &[(PublicKey, Signature)],
    ) -> Result<u64, CertError> {
        let power = self.check_signers(signatures)?;
        let needed = self.quorum_power();
        if power < needed {
            return Err(CertError::InsufficientPower {
                got: power,
                needed,
                total: self.total_power(),
            });
        }
        let items: Vec<_> = signatures.iter().map(|(k, s)| (*k, *digest, *s)).collect();
        verify_batch(&items).map_err(|e| CertError::Signature(e.error))?;
        Ok(power)
    }

    /// Membership and distinctness of signers; returns their summed power.
    /// Cheap checks come before any signature is verified.
    fn check_signers(&self, signatures: &[(PublicKey, Signature)]) -> Result<u64, CertError> {
        let mut power = 0u64;
        for (i, (key, _)) in signatures.iter().enumerate() {
            if signatures[..i].iter().any(|(k, _)| k == key) {
                return Err(CertError::DuplicateSigner(*key));
            }
            power += self.power_of(key).ok_or(CertError::UnknownSigner(*key))?;
        }
        Ok(power)
    }
}

/// A committed block, as a client sees it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct BlockInfo {
    /// Consensus round of the block.
    pub round: u64,
    /// Height (number of committed blocks before it, genesis = 0).
    pub height: u64,
    /// Block id.
    pub block_id: Digest,
    /// Root of the authenticated map after executing the block.
    pub state_root: Digest,
    /// rs_merkle root of the block's transaction ids.
    pub tx_root: Digest,
    /// Block time in milliseconds since the Unix epoch (proposed by the leader).
    pub timestamp_ms: u64,
    /// Set when this block ends its epoch: the validators of the next one.
    pub next_validators: Option<ValidatorSet>,
    /// [`BlockInfo::hash`] of the parent block (`Digest::ZERO` for genesis), so
    /// a chain of infos back from a certified one is checked by hashes alone.
    pub parent_info: Digest,
}

impl BlockInfo {
    /// The hash a child names in `parent_info`.
    pub fn hash(&self) -> Digest {
        hash_encoded(Domain::BlockInfo, self)
    }
}

/// What validators sign in a vote.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct LedgerInfo {
    /// Chain id.
    pub chain_id: String,
    /// Hash of the chain's genesis document (`network.json`'s
    /// `genesis_hash`): a chain is named by (chain id, genesis hash), so the
    /// keys of an old chain cannot certify a re-genesised one with the same
    /// chain id to a client that trusts the new genesis.
    pub genesis_hash: Digest,
    /// The epoch of the signing validators.
    pub epoch: u64,
    /// The block this vote commits (2-chain rule), if any.
    pub commit: Option<BlockInfo>,
    /// Hash of the consensus data voted on (block id, round, parent; see consensus).
    pub consensus_data_hash: Digest,
}

impl LedgerInfo {
    /// The digest validators sign.
    pub fn digest(&self) -> Digest {
        hash_encoded(Domain::LedgerInfo, self)
    }
}

/// A ledger info with a quorum of signatures.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitCertificate {
    /// What was signed.
    pub ledger_info: LedgerInfo,
    /// Signers and signatures.
    pub signatures: Vec<(PublicKey, Signature)>,
}

/// A committed block whose certificate verified against a trusted set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLedgerInfo {
    chain_id: String,
    genesis_hash: Digest,
    epoch: u64,
    block: BlockInfo,
}

impl VerifiedLedgerInfo {
    /// The committed block.
    pub fn block(&self) -> &BlockInfo {
        &self.block
    }
    /// Epoch of the signers.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    /// Genesis hash the signers named.
    pub fn genesis_hash(&self) -> Digest {
        self.genesis_hash
    }
}

impl CommitCertificate {
    /// Accept exactly when distinct members of `set`, holding more than 2/3 of
    /// its power, signed this ledger info for `chain_id` and `set.epoch`, and
    /// the ledger info commits a block. The genesis hash is signed but not
    /// compared here: the trust anchor that knows it does
    /// (`TrustedChain` in the client, which is built from `network.json`).
    pub fn verify(
        &self,
        set: &ValidatorSet,
        chain_id: &str,
    ) -> Result<VerifiedLedgerInfo, CertError> {
        let li = &self.ledger_info;
        if li.chain_id != chain_id {
            return Err(CertError::WrongChain {
                got: li.chain_id.clone(),
                expected: chain_id.to_string(),
            });
        }
        if li.epoch != set.epoch {
            return Err(CertError::WrongEpoch {
                got: li.epoch,
                expected: set.epoch,
            });
        }
        let block = li.commit.clone().ok_or(CertError::NotACommit)?;
        set.verify_quorum(&li.digest(), &self.signatures)?;
        Ok(VerifiedLedgerInfo {
            chain_id: li.chain_id.clone(),
            genesis_hash: li.genesis_hash,
            epoch: li.epoch,
            block,
        })
    }

    /// Follow an epoch change: `self` must be a certificate by `current` for a
    /// block that ends the epoch; returns the next epoch's set.
    pub fn next_epoch(
        &self,
        current: &ValidatorSet,
        chain_id: &str,
    ) -> Result<ValidatorSet, CertError> {
        let verified = self.verify(current, chain_id)?;
        let next = verified
            .block
            .next_validators
            .ok_or(CertError::BadEpochChange {
                got: current.epoch,
                expected: current.epoch + 1,
            })?;
        if next.epoch != current.epoch + 1 {
            return Err(CertError::BadEpochChange {
                got: next.epoch,
                expected: current.epoch + 1,
            });
        }
        next.validate()?;
        Ok(next)
    }
}
