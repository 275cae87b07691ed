//! Blocks: what a leader proposes.
//!
//! A block names its parent through the QC that certifies it (`parent_qc`),
//! carries the leader's payload and the result of executing it (execute
//! before vote, DiemBFT v4 §5), and chains client-visible [`BlockInfo`]s
//! through `parent_info`. Its id is the [`Domain::Block`] hash of everything
//! known before execution (epoch, round, height, parent QC, payload, proposer,
//! timestamp, parent info), so the executor can key speculative state by it;
//! the execution results (state root, transaction root, next validators) are
//! bound by the votes instead, through [`super::VoteData::info_hash`].

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{hash_encoded, BlockInfo, Digest, Domain, PublicKey, ValidatorSet};

use super::QuorumCert;

/// A proposed block.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    /// Epoch of the validators that certify it.
    pub epoch: u64,
    /// Consensus round (strictly above the parent's).
    pub round: u64,
    /// Height: parent height + 1.
    pub height: u64,
    /// The QC certifying the parent block.
    pub parent_qc: QuorumCert,
    /// Opaque payload for the [`crate::executor::Executor`].
    pub payload: Vec<u8>,
    /// The leader that proposed it.
    pub proposer: PublicKey,
    /// Block time in ms, after the parent's.
    pub timestamp_ms: u64,
    /// State root after executing the payload.
    pub state_root: Digest,
    /// Transaction root of the payload.
    pub tx_root: Digest,
    /// Set when executing this block ended the epoch.
    pub next_validators: Option<ValidatorSet>,
    /// Hash of the parent's [`BlockInfo`].
    pub parent_info: Digest,
}

impl Block {
    /// The block id.
    pub fn id(&self) -> Digest {
        hash_encoded(
            Domain::Block,
            &(
                self.epoch,
                self.round,
                self.height,
                &self.parent_qc,
                &self.payload,
                &self.proposer,
                self.timestamp_ms,
                &self.parent_info,
            ),
        )
    }

    /// Id of the parent block.
    pub fn parent_id(&self) -> Digest {
        self.parent_qc.certified_id()
    }

    /// The block as a client sees it once committed.
    pub fn info(&self) -> BlockInfo {
        self.info_with_id(self.id())
    }

    /// What the proposer signs: chain id, block id and the hash of the block
    /// info, so the claimed execution results are the proposer's word too.
    pub fn signing_digest(&self, chain_id: &str) -> Digest {
        let id = self.id();
        self.signing_digest_with_id(chain_id, &id)
    }

    pub(crate) fn signing_digest_with_id(&self, chain_id: &str, id: &Digest) -> Digest {
        let info_hash = self.info_with_id(*id).hash();
        hash_encoded(Domain::Proposal, &(chain_id, id, info_hash))
    }

    pub(crate) fn info_with_id(&self, id: Digest) -> BlockInfo {
        BlockInfo {
            round: self.round,
            height: self.height,
            block_id: id,
            state_root: self.state_root,
            tx_root: self.tx_root,
            timestamp_ms: self.timestamp_ms,
            next_validators: self.next_validators.clone(),
            parent_info: self.parent_info,
        }
    }
}
