//! Votes: a validator's signature on a [`LedgerInfo`].
//!
//! The ledger info binds the consensus data voted on ([`VoteData`], hashed in
//! [`Domain::VoteData`]) and, under the 2-chain commit rule (Jolteon §4), the
//! [`palisade_crypto::BlockInfo`] of the block this vote commits: voting for
//! B' whose parent B has round(B') = round(B) + 1 commits B. A quorum of such
//! votes is therefore also a commit certificate.

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{hash_encoded, Digest, Domain, LedgerInfo, Signature};

/// What a vote says about the block it votes for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct VoteData {
    /// Epoch of the block.
    pub epoch: u64,
    /// The block voted for.
    pub block_id: Digest,
    /// Its round.
    pub round: u64,
    /// Its height.
    pub height: u64,
    /// Its parent.
    pub parent_id: Digest,
    /// The parent's round.
    pub parent_round: u64,
    /// Hash of the block's [`palisade_crypto::BlockInfo`]: binds the
    /// post-execution state root, transaction root and next validator set
    /// the voter computed by re-executing the block.
    pub info_hash: Digest,
}

impl VoteData {
    /// The hash a ledger info carries in `consensus_data_hash`.
    pub fn hash(&self) -> Digest {
        hash_encoded(Domain::VoteData, self)
    }
}

/// A vote. The voter is the authenticated sender of the message, never a field.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// The block voted for.
    pub vote_data: VoteData,
    /// What is signed: `consensus_data_hash = vote_data.hash()`, plus the commit.
    pub ledger_info: LedgerInfo,
    /// Signature over `ledger_info.digest()`.
    pub signature: Signature,
}
