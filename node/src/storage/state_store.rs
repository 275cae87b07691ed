//! The state machine's [`StateStore`] over the node's key-value backend.
//!
//! One [`StateCommit`] becomes one atomic batch: its tree nodes and values,
//! the height's [`HeightRecord`], receipt index and change index, and the
//! commit metadata. Above genesis it is written without the WAL
//! ([`NodeStore::write_unlogged`]): a crash may lose the commits since the
//! last flush, in some column families and not others (RocksDB flushes one
//! family at a time), so at open the state is put back to its durable mark
//! ([`NodeStore::flush_state`]) and recovery executes the blocks above it
//! again from the committed log. The genesis state is written logged (and
//! synced before anything runs): there is no block to rebuild it from, and
//! the first mark is written only after it.

use jmt::storage::{Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use palisade_consensus::state::{CommitMeta, StateCommit, StateStore, StoreError};
use palisade_crypto::{decode, encode, StateKey};

use super::{Batch, Cf, HeightRecord, KvTreeStore, NodeStore};
use crate::error::StorageError;

const META_STATE: &[u8] = b"state_last_commit";
/// The state commit record of the last height every unlogged column family
/// is known to hold on disk (written, logged and synced, after a flush of
/// all of them: [`NodeStore::flush_state`]).
const META_STATE_DURABLE: &[u8] = b"state_durable_commit";

/// Stage the durable mark: `record` is the state commit record read before
/// the flushes that made it true.
pub(super) fn stage_durable_mark(batch: &mut Batch, record: &[u8]) {
    batch.put(Cf::Meta, META_STATE_DURABLE, record.to_vec());
}

/// The height a state commit record names.
pub(super) fn record_height(record: &[u8]) -> Result<u64, StorageError> {
    decode::<CommitMeta>(record)
        .map(|m| m.height)
        .map_err(|e| super::corrupt("meta", e))
}

/// Stage the state machine's commit record (what `last_commit` reads) into
/// `batch`: a snapshot install stands the executor on the snapshot's height.
pub(crate) fn stage_state_meta(batch: &mut Batch, meta: &CommitMeta) {
    batch.put(Cf::Meta, META_STATE, encode(meta));
}

impl NodeStore {
    /// The state machine's commit record, as stored.
    pub(super) fn state_record(&self) -> Result<Option<Vec<u8>>, StorageError> {
        self.kv().get(Cf::Meta, META_STATE)
    }

    /// At open: put the state's commit record back to the durable mark, the
    /// last height every unlogged family holds (above it a crash may have
    /// kept some families' writes and not others'); the committed blocks
    /// above it are then executed again (`node::recovery`). Without a mark
    /// (a store from before unlogged state commits, a snapshot just
    /// installed) the record stands: all of it was written logged. Returns
    /// the state height known durable.
    pub(super) fn back_to_durable_mark(&self) -> Result<u64, StorageError> {
        let record = self.state_record()?;
        let Some(mark) = self.kv().get(Cf::Meta, META_STATE_DURABLE)? else {
            return record.map_or(Ok(0), |r| record_height(&r));
        };
        let durable = record_height(&mark)?;
        if record.as_deref() != Some(&mark[..]) {
            let above = record.as_deref().map(record_height).transpose()?;
            let mut batch = Batch::new();
            batch.put(Cf::Meta, META_STATE, mark);
            self.kv().write(batch, true)?;
            tracing::info!(
                durable,
                recorded = above,
                "state put back to its durable mark; the heights above execute again"
            );
        }
        Ok(durable)
    }

    /// The state machine's committed height (`None` before genesis is written).
    pub fn state_height(&self) -> Result<Option<u64>, StorageError> {
        match self.kv().get(Cf::Meta, META_STATE)? {
            None => Ok(None),
            Some(bytes) => decode::<CommitMeta>(&bytes)
                .map(|m| Some(m.height))
                .map_err(|e| super::corrupt("meta", e)),
        }
    }
}

fn backend(e: StorageError) -> StoreError {
    match e {
        StorageError::Corrupt { cf, reason } => StoreError::Corrupt(format!("{cf}: {reason}")),
        other => StoreError::Backend(other.to_string()),
    }
}

impl StateStore for NodeStore {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        self.tree()
            .get_node_option(key)
            .map_err(|e| StoreError::Backend(format!("{e:#}")))
    }

    fn value(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        self.tree()
            .get_value_option(max_version, key_hash)
            .map_err(|e| StoreError::Backend(format!("{e:#}")))
    }

    fn last_commit(&self) -> Result<Option<CommitMeta>, StoreError> {
        match self.kv().get(Cf::Meta, META_STATE).map_err(backend)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("state commit meta: {e}"))),
        }
    }

    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError> {
        let stored = self.last_commit()?.map(|m| m.height);
        let expected = stored.map_or(0, |h| h + 1);
        if commit.meta.height != expected {
            return Err(StoreError::OutOfOrder {
                got: commit.meta.height,
                stored,
            });
        }
        let mut batch = Batch::new();
        KvTreeStore::stage(&commit.tree.node_batch, &mut batch);
        KvTreeStore::stage_stale(&commit.tree.stale_node_index_batch, &mut batch);
        let record = HeightRecord {
            tx_ids: commit.receipts.tx_ids(),
            outcomes: commit
                .receipts
                .receipts
                .iter()
                .map(|r| r.outcome.describe())
                .collect(),
            codes: commit
                .receipts
                .receipts
                .iter()
                .map(|r| r.outcome.code())
                .collect(),
            changed: commit
                .changed
                .iter()
                .filter_map(|k| match k {
                    StateKey::Service { namespace, service }
                    | StateKey::Instance {
                        namespace, service, ..
                    } => Some((namespace.clone(), service.clone())),
                    _ => None,
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        self.stage_height(&mut batch, commit.meta.height, &record)
            .map_err(backend)?;
        Self::stage_changes(&mut batch, commit.meta.height, &commit.changed);
        batch.put(Cf::Meta, META_STATE, encode(&commit.meta));
        if commit.meta.height == 0 {
            self.write_deferred(batch).map_err(backend)?;
        } else {
            self.write_unlogged(batch).map_err(backend)?;
        }
        self.tree().committed(&commit.tree);
        Ok(())
    }
}
