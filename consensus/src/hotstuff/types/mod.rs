//! Consensus data types: blocks, votes, certificates and wire messages.

mod block;
mod message;
mod qc;
mod timeout;
#[cfg(test)]
mod vectors;
mod vote;

pub use block::Block;
pub use message::{
    BlockRequest, BlockResponse, CommitRequest, CommitResponse, Message, Proposal, SyncInfo,
    MAX_MESSAGE_BYTES,
};
pub use qc::QuorumCert;
pub(crate) use timeout::timeout_digest;
pub use timeout::{Timeout, TimeoutCert};
pub use vote::{Vote, VoteData};
