//! Storage of the authenticated map behind a narrow trait.
//!
//! The registry keeps its state in a Jellyfish Merkle Tree (`jmt`) versioned
//! by block height: the tree after block `h` is version `h` (genesis is 0).
//! [`StateStore`] is everything the state machine needs from storage: read a
//! tree node, read the newest value of a key at or below a version, read the
//! metadata of the last committed block, and write one committed block
//! atomically. The node implements it over RocksDB; [`MemStore`] is the
//! in-memory implementation used by tests, the simulator and the audits.
//!
//! The invariants a store must keep are on [`StateStore`].

use std::collections::HashMap;
use std::sync::RwLock;

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use palisade_crypto::Digest;

use super::receipts::BlockReceipts;
use super::StateKey;

/// Why the store failed. Storage failures abort the block being executed or
/// committed; they are never a transaction's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, RocksDB error).
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// Stored bytes are not what the state machine wrote.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A commit that does not extend the stored chain by exactly one height.
    #[error("commit of height {got} does not follow stored height {stored:?}")]
    OutOfOrder {
        /// Height of the refused commit.
        got: u64,
        /// Height of the last stored commit (`None`: empty store).
        stored: Option<u64>,
    },
}

/// What the store remembers about the last committed block.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitMeta {
    /// Block id (the genesis hash for height 0).
    pub block_id: Digest,
    /// Height, which is also the tree version.
    pub height: u64,
    /// Epoch the block was executed in.
    pub epoch: u64,
    /// Block time in ms.
    pub timestamp_ms: u64,
    /// Root of the map after the block.
    pub state_root: Digest,
    /// Root of the block's transaction ids.
    pub tx_root: Digest,
}

impl CommitMeta {
    /// The root block info replicas start from when this is the genesis
    /// commit (height 0, round 0, no parent).
    pub fn genesis_info(&self) -> palisade_crypto::BlockInfo {
        palisade_crypto::BlockInfo {
            round: 0,
            height: 0,
            block_id: self.block_id,
            state_root: self.state_root,
            tx_root: self.tx_root,
            timestamp_ms: self.timestamp_ms,
            next_validators: None,
            parent_info: Digest::ZERO,
        }
    }
}

/// One committed block, written atomically by [`StateStore::write_commit`].
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateCommit {
    /// The block's metadata (becomes [`StateStore::last_commit`]).
    pub meta: CommitMeta,
    /// The jmt nodes and values of version `meta.height`. Its
    /// `stale_node_index_batch` names nodes that later versions no longer
    /// reference; a store may use it to prune old versions (then those
    /// versions stop proving).
    pub tree: TreeUpdateBatch,
    /// Receipts of the block's transactions (stored by nodes that serve them).
    pub receipts: BlockReceipts,
    /// Keys the block changed, sorted (for watch streams and indexes).
    pub changed: Vec<StateKey>,
}

/// Storage of the authenticated map. Object-safe: `&dyn StateStore` and
/// `Arc<dyn StateStore>` work. Methods take `&self` so a store can be shared
/// between the executor and the query path; implementations synchronise
/// internally.
///
/// Invariants a store must keep (the executor relies on them):
/// - Only committed blocks reach the store, one [`StateCommit`] per height, in
///   height order (genesis first). Speculative blocks never do, so two blocks
///   of one height on different branches never share a tree version here.
/// - A [`StateCommit`] is written atomically: after a crash either all of its
///   nodes, values and metadata are visible or none is.
/// - Values are versioned: [`StateStore::value`] returns the newest entry whose
///   version is `<= max_version`, and a deletion (`None` in the batch) is kept as
///   a tombstone so that an older value does not shine through.
/// - Nodes are immutable once written (a `NodeKey` carries its version).
///
/// A key-value backend can map this directly: nodes under `borsh(NodeKey)`;
/// values under `key_hash || version.to_be_bytes()` so that `value` is one
/// reverse seek from `key_hash || max_version` (a deletion is an entry with an
/// empty marker); the [`CommitMeta`] under a fixed key, all in one write batch.
/// `state::testing::check_store` (feature `testing`) checks a
/// backend against these invariants.
pub trait StateStore {
    /// The tree node at `key`, if stored.
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError>;

    /// The newest value of `key_hash` with version `<= max_version`; `None`
    /// when there is none or the newest entry is a deletion.
    fn value(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError>;

    /// Metadata of the last committed block; `None` for an empty store.
    fn last_commit(&self) -> Result<Option<CommitMeta>, StoreError>;

    /// Write one committed block atomically. `commit.meta.height` must be 0 on
    /// an empty store and `last_commit().height + 1` otherwise.
    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError>;
}

impl<T: StateStore + ?Sized> StateStore for &T {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        (**self).node(key)
    }
    fn value(&self, v: Version, k: KeyHash) -> Result<Option<OwnedValue>, StoreError> {
        (**self).value(v, k)
    }
    fn last_commit(&self) -> Result<Option<CommitMeta>, StoreError> {
        (**self).last_commit()
    }
    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError> {
        (**self).write_commit(commit)
    }
}

impl<T: StateStore + ?Sized> StateStore for std::sync::Arc<T> {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        (**self).node(key)
    }
    fn value(&self, v: Version, k: KeyHash) -> Result<Option<OwnedValue>, StoreError> {
        (**self).value(v, k)
    }
    fn last_commit(&self) -> Result<Option<CommitMeta>, StoreError> {
        (**self).last_commit()
    }
    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError> {
        (**self).write_commit(commit)
    }
}

impl<T: StateStore + ?Sized> StateStore for Box<T> {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        (**self).node(key)
    }
    fn value(&self, v: Version, k: KeyHash) -> Result<Option<OwnedValue>, StoreError> {
        (**self).value(v, k)
    }
    fn last_commit(&self) -> Result<Option<CommitMeta>, StoreError> {
        (**self).last_commit()
    }
    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError> {
        (**self).write_commit(commit)
    }
}

#[derive(Default)]
struct MemInner {
    nodes: HashMap<NodeKey, Node>,
    /// Per key, `(version, value)` in increasing version order.
    values: HashMap<KeyHash, Vec<(Version, Option<OwnedValue>)>>,
    last: Option<CommitMeta>,
    receipts: HashMap<Digest, (u64, u32)>,
    blocks: Vec<BlockReceipts>,
}

/// An in-memory [`StateStore`]; keeps every version and every receipt.
#[derive(Default)]
pub struct MemStore {
    inner: RwLock<MemInner>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The receipts of the committed block at `height`.
    pub fn block_receipts(&self, height: u64) -> Option<BlockReceipts> {
        let inner = self.inner.read().expect("MemStore lock poisoned");
        inner.blocks.get(height as usize).cloned()
    }

    /// Height and index of a committed transaction.
    pub fn locate_tx(&self, tx_id: &Digest) -> Option<(u64, u32)> {
        let inner = self.inner.read().expect("MemStore lock poisoned");
        inner.receipts.get(tx_id).copied()
    }

    /// Number of stored tree nodes (for benches and tests).
    pub fn node_count(&self) -> usize {
        self.inner
            .read()
            .expect("MemStore lock poisoned")
            .nodes
            .len()
    }
}

impl StateStore for MemStore {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        let inner = self.inner.read().expect("MemStore lock poisoned");
        Ok(inner.nodes.get(key).cloned())
    }

    fn value(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        let inner = self.inner.read().expect("MemStore lock poisoned");
        let Some(history) = inner.values.get(&key_hash) else {
            return Ok(None);
        };
        Ok(history
            .iter()
            .rev()
            .find(|(v, _)| *v <= max_version)
            .and_then(|(_, value)| value.clone()))
    }

    fn last_commit(&self) -> Result<Option<CommitMeta>, StoreError> {
        let inner = self.inner.read().expect("MemStore lock poisoned");
        Ok(inner.last.clone())
    }

    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError> {
        let mut inner = self.inner.write().expect("MemStore lock poisoned");
        let stored = inner.last.as_ref().map(|m| m.height);
        let expected = stored.map_or(0, |h| h + 1);
        if commit.meta.height != expected {
            return Err(StoreError::OutOfOrder {
                got: commit.meta.height,
                stored,
            });
        }
        for (key, node) in commit.tree.node_batch.nodes() {
            inner.nodes.insert(key.clone(), node.clone());
        }
        for ((version, key_hash), value) in commit.tree.node_batch.values() {
            inner
                .values
                .entry(*key_hash)
                .or_default()
                .push((*version, value.clone()));
        }
        for r in &commit.receipts.receipts {
            inner.receipts.insert(r.tx_id, (r.height, r.index));
        }
        inner.blocks.push(commit.receipts.clone());
        inner.last = Some(commit.meta.clone());
        Ok(())
    }
}

/// A jmt [`TreeReader`] over a store plus the write batches of uncommitted
/// ancestors (speculative execution). `batches` holds, for each uncommitted
/// ancestor height above `committed`, that block's batch; every node in the
/// batch of height `h` has version `h`, so a node is looked up in exactly one
/// place.
pub(crate) struct BranchReader<'a> {
    store: &'a dyn StateStore,
    committed: u64,
    /// `batches[i]` is the batch of height `committed + 1 + i`.
    batches: Vec<&'a TreeUpdateBatch>,
}

impl<'a> BranchReader<'a> {
    /// A reader of the committed store alone, whose last commit is `committed`.
    pub(crate) fn committed(store: &'a dyn StateStore, committed: u64) -> Self {
        BranchReader {
            store,
            committed,
            batches: Vec::new(),
        }
    }

    /// A reader seeing `batches` (oldest first, consecutive heights above
    /// `committed`) over the store.
    pub(crate) fn with_batches(
        store: &'a dyn StateStore,
        committed: u64,
        batches: Vec<&'a TreeUpdateBatch>,
    ) -> Self {
        BranchReader {
            store,
            committed,
            batches,
        }
    }

    fn batch_at(&self, version: Version) -> Option<&'a TreeUpdateBatch> {
        let offset = version.checked_sub(self.committed + 1)?;
        self.batches.get(usize::try_from(offset).ok()?).copied()
    }

    /// Typed node lookup.
    pub(crate) fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        if key.version() > self.committed {
            return Ok(self
                .batch_at(key.version())
                .and_then(|b| b.node_batch.get_node(key).cloned()));
        }
        self.store.node(key)
    }

    /// Typed value lookup (newest at or below `max_version`).
    pub(crate) fn value(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        let newest = self.committed + self.batches.len() as u64;
        let mut version = max_version.min(newest);
        while version > self.committed {
            if let Some(batch) = self.batch_at(version) {
                if let Some(value) = batch.node_batch.values().get(&(version, key_hash)) {
                    return Ok(value.clone());
                }
            }
            version -= 1;
        }
        self.store.value(max_version.min(self.committed), key_hash)
    }
}

impl TreeReader for BranchReader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.node(node_key)?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.value(max_version, key_hash)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only jmt's chunked restore calls this; Palisade syncs state by
        // replaying committed blocks, never by restoring tree chunks.
        anyhow::bail!("rightmost-leaf lookup (tree restore) is not supported by Palisade stores")
    }
}
