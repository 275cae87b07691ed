//! A deterministic hash-chain [`Executor`] for tests and the simulator.
//!
//! The payload is a list of 32-byte transaction ids; the state root of a
//! block is the hash of (parent root, height, timestamp, payload), its
//! transaction root is `palisade_crypto::tx_root` of the ids. Configured
//! heights end the epoch with a given validator set. Speculative blocks are
//! kept per id until a commit prunes them, like the real state machine.

use std::collections::{BTreeMap, HashMap};

use palisade_crypto::{hash_encoded, tx_root, BlockInfo, Digest, Domain, ValidatorSet};

use crate::executor::{ExecutionContext, ExecutionError, ExecutionResult, Executor};

#[derive(Debug, Clone)]
struct SimBlock {
    parent: Digest,
    height: u64,
    state_root: Digest,
}

/// Hash-chain executor (test double).
#[derive(Debug, Clone)]
pub struct SimExecutor {
    committed_id: Digest,
    committed_root: Digest,
    committed_height: u64,
    blocks: HashMap<Digest, SimBlock>,
    epoch_changes: BTreeMap<u64, ValidatorSet>,
    fail_commit_from: Option<u64>,
}

impl SimExecutor {
    /// An executor at the genesis block `id` with state root `root`.
    pub fn new(id: Digest, root: Digest) -> Self {
        Self::at(id, root, 0)
    }

    /// An executor whose committed state is block `id` at `height` (a restart).
    pub fn at(id: Digest, root: Digest, height: u64) -> Self {
        SimExecutor {
            committed_id: id,
            committed_root: root,
            committed_height: height,
            blocks: HashMap::new(),
            epoch_changes: BTreeMap::new(),
            fail_commit_from: None,
        }
    }

    /// Make every commit reaching `height` or above fail as a storage
    /// failure would (to test that replicas stop).
    pub fn with_commit_failure_from(mut self, height: u64) -> Self {
        self.fail_commit_from = Some(height);
        self
    }

    /// The genesis block info for an executor made with [`SimExecutor::new`].
    pub fn genesis_info(id: Digest, root: Digest, timestamp_ms: u64) -> BlockInfo {
        BlockInfo {
            round: 0,
            height: 0,
            block_id: id,
            state_root: root,
            tx_root: tx_root(&[]),
            timestamp_ms,
            next_validators: None,
            parent_info: Digest::ZERO,
        }
    }

    /// Blocks executed at `height` end the epoch with `next` (whose epoch must
    /// be the block's epoch + 1 to take effect).
    pub fn with_epoch_change(mut self, height: u64, next: ValidatorSet) -> Self {
        self.epoch_changes.insert(height, next);
        self
    }

    /// Committed height.
    pub fn committed_height(&self) -> u64 {
        self.committed_height
    }

    /// Split a payload into transaction ids.
    pub fn tx_ids(payload: &[u8]) -> Result<Vec<Digest>, ExecutionError> {
        if payload.len() % 32 != 0 {
            return Err(ExecutionError::InvalidPayload(format!(
                "{} bytes is not a list of 32-byte ids",
                payload.len()
            )));
        }
        Ok(payload
            .chunks(32)
            .map(|c| Digest(c.try_into().expect("32-byte chunk")))
            .collect())
    }
}

impl Executor for SimExecutor {
    fn committed(&self) -> (Digest, Digest) {
        (self.committed_id, self.committed_root)
    }

    fn execute(
        &mut self,
        ctx: &ExecutionContext,
        payload: &[u8],
    ) -> Result<ExecutionResult, ExecutionError> {
        let parent_root = if ctx.parent_id == self.committed_id {
            self.committed_root
        } else {
            self.blocks
                .get(&ctx.parent_id)
                .ok_or(ExecutionError::UnknownParent(ctx.parent_id))?
                .state_root
        };
        let ids = Self::tx_ids(payload)?;
        let state_root = hash_encoded(
            Domain::Message,
            &(parent_root, ctx.height, ctx.timestamp_ms, payload),
        );
        self.blocks.insert(
            ctx.block_id,
            SimBlock {
                parent: ctx.parent_id,
                height: ctx.height,
                state_root,
            },
        );
        let next_validators = self
            .epoch_changes
            .get(&ctx.height)
            .filter(|set| set.epoch == ctx.epoch + 1)
            .cloned();
        Ok(ExecutionResult {
            state_root,
            tx_root: tx_root(&ids),
            next_validators,
        })
    }

    fn commit(&mut self, block_id: &Digest) -> Result<(), ExecutionError> {
        if *block_id == self.committed_id {
            return Ok(());
        }
        let target = self
            .blocks
            .get(block_id)
            .cloned()
            .ok_or_else(|| ExecutionError::BadCommit(*block_id, "not executed".into()))?;
        if self.fail_commit_from.is_some_and(|h| target.height >= h) {
            return Err(ExecutionError::Storage("injected write failure".into()));
        }
        // The target must descend from the committed block.
        let mut cursor = target.parent;
        while cursor != self.committed_id {
            cursor = self
                .blocks
                .get(&cursor)
                .ok_or_else(|| {
                    ExecutionError::BadCommit(
                        *block_id,
                        "does not extend the committed chain".into(),
                    )
                })?
                .parent;
        }
        self.committed_id = *block_id;
        self.committed_root = target.state_root;
        self.committed_height = target.height;
        let height = target.height;
        self.blocks.retain(|_, b| b.height > height);
        Ok(())
    }
}
