//! The registry's [`Executor`]: speculative execution on branches, commit to
//! the store.
//!
//! Invariants:
//! - Each executed, uncommitted block keeps its own jmt write batch (version =
//!   its height) and lease delta; a block reads its parent's state through a
//!   [`BranchReader`] that layers its uncommitted ancestors' batches over the
//!   store. Sibling blocks of one height never see each other's batch.
//! - Only [`Executor::commit`] writes to the store, one [`StateCommit`] per
//!   height in order, so two blocks of one height on different branches never
//!   share a tree version in storage. Blocks that do not descend from the new
//!   committed block are dropped at commit.
//! - Execution is a pure function of (parent state, context, payload):
//!   executing a block id again returns the remembered result (and refuses a
//!   different context or payload under the same id).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use jmt::storage::TreeUpdateBatch;
use palisade_crypto::{hash, tx_root, Digest, Domain, StateKey};

use super::block::{encoded_len, execute_block, genesis_state, BlockOutput, Chain};
use super::error::StateError;
use super::genesis::{Authority, Genesis, Params};
use super::lease::{LeaseDelta, LeaseIndex, LeaseView};
use super::query::StateReader;
use super::receipts::{decode_payload, BlockReceipts};
use super::store::{BranchReader, CommitMeta, StateCommit, StateStore};
use crate::executor::{ExecutionContext, ExecutionError, ExecutionResult, Executor};
use crate::hotstuff::{SignatureVerifier, StrictVerifier};

/// How many committed blocks' results are remembered for idempotent re-execution.
const RECENT_COMMITTED: usize = 64;

/// An executed, uncommitted block.
struct Speculative {
    ctx: ExecutionContext,
    payload: Digest,
    result: ExecutionResult,
    batch: TreeUpdateBatch,
    leases: LeaseDelta,
    receipts: BlockReceipts,
    changed: Vec<StateKey>,
}

/// The registry state machine over a [`StateStore`].
pub struct RegistryExecutor<S: StateStore> {
    store: S,
    chain_id: String,
    genesis_hash: Digest,
    params: Params,
    authority: Authority,
    verifier: Arc<dyn SignatureVerifier>,
    committed: CommitMeta,
    leases: LeaseIndex,
    blocks: HashMap<Digest, Speculative>,
    recent: VecDeque<(ExecutionContext, Digest, ExecutionResult)>,
}

/// A local fingerprint of a payload (never sent or signed), to recognise a
/// block executed again under the same id.
fn fingerprint(payload: &[u8]) -> Digest {
    hash(Domain::Block, payload)
}

fn storage(e: StateError) -> ExecutionError {
    match e {
        StateError::Inadmissible { tx_ids, reason } => ExecutionError::Inadmissible {
            tx_ids,
            reason: reason.to_string(),
        },
        e => ExecutionError::Storage(e.to_string()),
    }
}

impl<S: StateStore> RegistryExecutor<S> {
    /// Open `store` for `genesis`: on an empty store, write the genesis state
    /// (height 0, block id = [`Genesis::hash`]); otherwise check that the
    /// store holds this genesis's chain and rebuild the lease index from the
    /// last committed version.
    pub fn open(store: S, genesis: &Genesis) -> Result<Self, StateError> {
        genesis.validate()?;
        let genesis_hash = genesis.hash();
        let committed = match store.last_commit()? {
            Some(meta) => {
                let chain = StateReader::at(&store, meta.height).chain()?;
                if chain.genesis_hash != genesis_hash {
                    return Err(StateError::GenesisMismatch {
                        stored: chain.genesis_hash,
                        expected: genesis_hash,
                    });
                }
                meta
            }
            None => {
                let reader = BranchReader::committed(&store, 0);
                let out = genesis_state(&reader, genesis)?;
                let meta = CommitMeta {
                    block_id: genesis_hash,
                    height: 0,
                    epoch: 0,
                    timestamp_ms: genesis.genesis_time_ms,
                    state_root: out.state_root,
                    tx_root: tx_root(&[]),
                };
                store.write_commit(&StateCommit {
                    meta: meta.clone(),
                    tree: out.batch,
                    receipts: out.receipts,
                    changed: out.changed,
                })?;
                tracing::info!(root = %meta.state_root, genesis = %genesis_hash, "genesis state written");
                meta
            }
        };
        let leases = StateReader::at(&store, committed.height).lease_index()?;
        Ok(RegistryExecutor {
            store,
            chain_id: genesis.chain_id.clone(),
            genesis_hash,
            params: genesis.params.clone(),
            authority: genesis.authority.clone(),
            verifier: Arc::new(StrictVerifier),
            committed,
            leases,
            blocks: HashMap::new(),
            recent: VecDeque::new(),
        })
    }

    /// Check transaction signatures through `verifier` (a node shares one
    /// verdict cache between admission and execution, so each signature is
    /// verified once per process). It must give `verify_strict`'s verdict.
    pub fn with_verifier(mut self, verifier: Arc<dyn SignatureVerifier>) -> Self {
        self.verifier = verifier;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Metadata of the last committed block.
    pub fn committed_meta(&self) -> &CommitMeta {
        &self.committed
    }

    /// The genesis hash (the genesis block's id).
    pub fn genesis_hash(&self) -> Digest {
        self.genesis_hash
    }

    /// The chain's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// A reader of the last committed state.
    pub fn reader(&self) -> StateReader<'_> {
        StateReader::at(&self.store, self.committed.height)
    }

    /// Receipts of an executed, not yet committed block.
    pub fn speculative_receipts(&self, block_id: &Digest) -> Option<&BlockReceipts> {
        self.blocks.get(block_id).map(|b| &b.receipts)
    }

    /// Number of executed, uncommitted blocks held in memory.
    pub fn speculative_len(&self) -> usize {
        self.blocks.len()
    }

    /// The uncommitted ancestors of `parent` (inclusive), oldest first.
    fn branch(&self, parent: &Digest) -> Result<Vec<&Speculative>, ExecutionError> {
        let mut chain = Vec::new();
        let mut cursor = *parent;
        while cursor != self.committed.block_id {
            let block = self
                .blocks
                .get(&cursor)
                .ok_or(ExecutionError::UnknownParent(*parent))?;
            chain.push(block);
            cursor = block.ctx.parent_id;
        }
        chain.reverse();
        Ok(chain)
    }

    fn run(&self, ctx: &ExecutionContext, payload: &[u8]) -> Result<BlockOutput, ExecutionError> {
        let chain = self.branch(&ctx.parent_id)?;
        let (parent_height, parent_time) = match chain.last() {
            Some(b) => (b.ctx.height, b.ctx.timestamp_ms),
            None => (self.committed.height, self.committed.timestamp_ms),
        };
        if ctx.height != parent_height + 1 {
            return Err(ExecutionError::InvalidPayload(format!(
                "height {} does not follow the parent's {parent_height}",
                ctx.height
            )));
        }
        if ctx.timestamp_ms < parent_time {
            return Err(ExecutionError::InvalidPayload(format!(
                "timestamp {} is before the parent's {parent_time}",
                ctx.timestamp_ms
            )));
        }
        let txs = decode_payload(payload, &self.params).map_err(ExecutionError::InvalidPayload)?;
        let txs: Vec<_> = txs
            .into_iter()
            .map(|t| {
                let n = encoded_len(&t);
                (t, n)
            })
            .collect();
        let reader = BranchReader::with_batches(
            &self.store,
            self.committed.height,
            chain.iter().map(|b| &b.batch).collect(),
        );
        let leases = LeaseView::new(&self.leases, chain.iter().map(|b| &b.leases).collect());
        let env = Chain {
            chain_id: &self.chain_id,
            genesis_hash: self.genesis_hash,
            params: &self.params,
            authority: &self.authority,
            verifier: self.verifier.as_ref(),
        };
        execute_block(
            &reader,
            &leases,
            &env,
            (ctx.height, ctx.epoch, ctx.timestamp_ms),
            &txs,
        )
        .map_err(storage)
    }

    fn remembered(
        &self,
        ctx: &ExecutionContext,
        payload: &[u8],
    ) -> Option<Result<ExecutionResult, ExecutionError>> {
        let (c, p, r) = match self.blocks.get(&ctx.block_id) {
            Some(b) => (&b.ctx, &b.payload, &b.result),
            None => {
                let (c, p, r) = self
                    .recent
                    .iter()
                    .find(|(c, _, _)| c.block_id == ctx.block_id)?;
                (c, p, r)
            }
        };
        Some(if c == ctx && *p == fingerprint(payload) {
            Ok(r.clone())
        } else {
            Err(ExecutionError::InvalidPayload(format!(
                "block {} was executed with another context or payload",
                ctx.block_id
            )))
        })
    }

    /// Drop every speculative block that does not descend from the committed one.
    fn prune(&mut self) {
        let committed = self.committed.block_id;
        let mut keep: HashMap<Digest, bool> = HashMap::new();
        let ids: Vec<Digest> = self.blocks.keys().copied().collect();
        for id in ids {
            let mut path = Vec::new();
            let mut cursor = id;
            let verdict = loop {
                if cursor == committed {
                    break true;
                }
                if let Some(v) = keep.get(&cursor) {
                    break *v;
                }
                match self.blocks.get(&cursor) {
                    Some(b) if b.ctx.height > self.committed.height => {
                        path.push(cursor);
                        cursor = b.ctx.parent_id;
                    }
                    _ => break false,
                }
            };
            for p in path {
                keep.insert(p, verdict);
            }
        }
        let before = self.blocks.len();
        self.blocks
            .retain(|id, _| keep.get(id).copied().unwrap_or(false));
        let dropped = before - self.blocks.len();
        if dropped > 0 {
            tracing::debug!(dropped, "dropped conflicting speculative blocks");
        }
    }
}

impl<S: StateStore> Executor for RegistryExecutor<S> {
    fn committed(&self) -> (Digest, Digest) {
        (self.committed.block_id, self.committed.state_root)
    }

    fn execute(
        &mut self,
        ctx: &ExecutionContext,
        payload: &[u8],
    ) -> Result<ExecutionResult, ExecutionError> {
        if let Some(answer) = self.remembered(ctx, payload) {
            return answer;
        }
        let out = self.run(ctx, payload)?;
        let result = ExecutionResult {
            state_root: out.state_root,
            tx_root: out.receipts.tx_root,
            next_validators: out.next_validators,
        };
        tracing::debug!(height = ctx.height, block = %ctx.block_id, root = %result.state_root, "executed block");
        self.blocks.insert(
            ctx.block_id,
            Speculative {
                ctx: ctx.clone(),
                payload: fingerprint(payload),
                result: result.clone(),
                batch: out.batch,
                leases: out.leases,
                receipts: out.receipts,
                changed: out.changed,
            },
        );
        Ok(result)
    }

    fn commit(&mut self, block_id: &Digest) -> Result<(), ExecutionError> {
        if *block_id == self.committed.block_id {
            return Ok(());
        }
        let mut path = Vec::new();
        let mut cursor = *block_id;
        while cursor != self.committed.block_id {
            let block = self.blocks.get(&cursor).ok_or_else(|| {
                ExecutionError::BadCommit(
                    *block_id,
                    "not executed here, or does not extend the committed block".into(),
                )
            })?;
            path.push(cursor);
            cursor = block.ctx.parent_id;
        }
        for id in path.into_iter().rev() {
            let block = self.blocks.remove(&id).expect("on the path above");
            let meta = CommitMeta {
                block_id: id,
                height: block.ctx.height,
                epoch: block.ctx.epoch,
                timestamp_ms: block.ctx.timestamp_ms,
                state_root: block.result.state_root,
                tx_root: block.result.tx_root,
            };
            let commit = StateCommit {
                meta: meta.clone(),
                tree: block.batch,
                receipts: block.receipts,
                changed: block.changed,
            };
            if let Err(e) = self.store.write_commit(&commit) {
                // Put the block back: nothing of it reached the store.
                self.blocks.insert(
                    id,
                    Speculative {
                        batch: commit.tree,
                        receipts: commit.receipts,
                        changed: commit.changed,
                        ..block
                    },
                );
                return Err(ExecutionError::Storage(format!(
                    "committing block {id}: {e}"
                )));
            }
            self.leases.apply(&block.leases);
            self.committed = meta;
            tracing::debug!(height = self.committed.height, block = %id, "committed block");
            self.recent
                .push_back((block.ctx, block.payload, block.result));
            if self.recent.len() > RECENT_COMMITTED {
                self.recent.pop_front();
            }
        }
        self.prune();
        Ok(())
    }
}
