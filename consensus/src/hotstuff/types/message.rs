//! The wire messages between replicas (borsh, size-capped before decoding).
//!
//! The sender of every message is the authenticated peer key the transport
//! hands to [`crate::hotstuff::Replica::handle_message`]; no message names
//! its own author.

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{decode_capped, encode, Digest, Signature};

use super::{Block, QuorumCert, Timeout, TimeoutCert, Vote};
use crate::hotstuff::ConsensusError;

/// Largest encoded message accepted (checked before decoding).
pub const MAX_MESSAGE_BYTES: usize = palisade_crypto::MAX_DECODE_BYTES;

/// A leader's block, justified by its parent QC and, after a timeout, a TC.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// The block.
    pub block: Block,
    /// The TC of `block.round - 1`, when the leader entered its round by timeout.
    pub tc: Option<TimeoutCert>,
    /// Proposer's signature over [`Block::signing_digest`].
    pub signature: Signature,
}

/// The certificates a replica knows, so a lagging peer can catch up.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncInfo {
    /// Highest QC.
    pub high_qc: QuorumCert,
    /// The QC that committed the highest committed block (absent before the first commit of the epoch).
    pub high_commit: Option<QuorumCert>,
    /// Highest TC of the epoch, if above `high_qc`.
    pub high_tc: Option<TimeoutCert>,
}

/// Ask for a block and up to `max_blocks - 1` of its ancestors.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockRequest {
    /// The newest block wanted (certified by a QC the requester verified).
    pub block_id: Digest,
    /// How many blocks at most, newest first.
    pub max_blocks: u32,
}

/// Blocks newest first: `blocks[0]` is the one asked for, each next one the
/// previous one's parent. Checked by hashes alone.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockResponse {
    /// The block asked for.
    pub block_id: Digest,
    /// The chain back from it.
    pub blocks: Vec<Block>,
}

/// Ask for committed blocks above `from_height - 1` of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitRequest {
    /// The requester's epoch.
    pub epoch: u64,
    /// First height wanted (the requester's committed height + 1).
    pub from_height: u64,
}

/// Committed blocks in ascending height, the last one committed by
/// `commit_qc` (signed by the epoch of the first block; a response never
/// crosses an epoch boundary).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitResponse {
    /// The blocks, oldest first, each the parent of the next.
    pub blocks: Vec<Block>,
    /// A QC committing the last block.
    pub commit_qc: QuorumCert,
}

/// Every message between replicas.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    /// A leader's proposal (broadcast).
    Proposal(Proposal),
    /// A vote (sent to the next round's leader).
    Vote(Vote),
    /// A timeout (broadcast).
    Timeout(Timeout),
    /// Certificates for a lagging peer.
    SyncInfo(SyncInfo),
    /// Fetch uncommitted (or recent) blocks by id.
    BlockRequest(BlockRequest),
    /// Answer to a [`BlockRequest`].
    BlockResponse(BlockResponse),
    /// Fetch committed blocks by height.
    CommitRequest(CommitRequest),
    /// Answer to a [`CommitRequest`].
    CommitResponse(CommitResponse),
}

impl Message {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decode wire bytes, refusing more than [`MAX_MESSAGE_BYTES`] before looking at them.
    pub fn decode(bytes: &[u8]) -> Result<Self, ConsensusError> {
        Ok(decode_capped(bytes, MAX_MESSAGE_BYTES)?)
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Proposal(_) => "proposal",
            Message::Vote(_) => "vote",
            Message::Timeout(_) => "timeout",
            Message::SyncInfo(_) => "sync_info",
            Message::BlockRequest(_) => "block_request",
            Message::BlockResponse(_) => "block_response",
            Message::CommitRequest(_) => "commit_request",
            Message::CommitResponse(_) => "commit_response",
        }
    }
}
