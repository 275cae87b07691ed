//! The seam between consensus and the state machine ("execute before vote").
//!
//! A leader executes its payload to learn the post-execution state root it
//! proposes; a voter re-executes and votes only if its root matches. Execution
//! is speculative: each executed block's state is layered over its parent's
//! and only [`Executor::commit`] makes it permanent; branches that do not
//! extend a committed block are dropped then. Implementations are pure and
//! deterministic: equal inputs give equal outputs on every replica.

use palisade_crypto::{Digest, ValidatorSet};

/// The block a payload executes as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionContext {
    /// Id of the parent block (whose state this block builds on).
    pub parent_id: Digest,
    /// Id of this block.
    pub block_id: Digest,
    /// Height of this block (parent height + 1).
    pub height: u64,
    /// Epoch of this block.
    pub epoch: u64,
    /// Block time in ms (leader-proposed, checked by voters).
    pub timestamp_ms: u64,
}

/// What executing a block yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionResult {
    /// Root of the authenticated map after the block.
    pub state_root: Digest,
    /// Root of the block's transaction ids (`palisade_crypto::tx_root`).
    pub tx_root: Digest,
    /// Set when this block ends the epoch.
    pub next_validators: Option<ValidatorSet>,
}

/// Why a block could not be executed (voters refuse to vote for it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// The parent block was never executed here (or was pruned).
    #[error("parent block {0} is not executed")]
    UnknownParent(Digest),
    /// The payload does not decode or breaks a block-level bound.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// The payload carries transactions no block may carry (they fail the
    /// state machine's admission rule): voters refuse the block; a leader
    /// drops `tx_ids` from its payload and proposes again.
    #[error("invalid payload: {n} inadmissible transaction(s): {reason}", n = tx_ids.len())]
    Inadmissible {
        /// The transactions to drop.
        tx_ids: Vec<Digest>,
        /// Why (the first one).
        reason: String,
    },
    /// Commit of a block that is not executed or does not extend the committed chain.
    #[error("cannot commit block {0}: {1}")]
    BadCommit(Digest, String),
    /// The state store failed. Not a verdict on the block: a replica that sees
    /// it must not vote, and must stop rather than go on past a failed commit.
    #[error("state storage failed: {0}")]
    Storage(String),
}

/// Executes payloads on speculative branches and commits them.
pub trait Executor {
    /// Id and state root of the last committed block (genesis at start).
    fn committed(&self) -> (Digest, Digest);

    /// Execute `payload` as the block described by `ctx`, on top of the
    /// parent's (possibly speculative) state. Executing the same block twice
    /// returns the same result.
    fn execute(
        &mut self,
        ctx: &ExecutionContext,
        payload: &[u8],
    ) -> Result<ExecutionResult, ExecutionError>;

    /// Make `block_id` (and every uncommitted ancestor, oldest first)
    /// permanent; drop branches that conflict with it.
    fn commit(&mut self, block_id: &Digest) -> Result<(), ExecutionError>;
}
