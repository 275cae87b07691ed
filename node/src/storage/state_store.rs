//! The state machine's [`StateStore`] over the node's key-value backend.
//!
//! One [`StateCommit`] becomes one atomic batch: its tree nodes and values,
//! the height's [`HeightRecord`], receipt index and change index, and the commit metadata,
//! so after a crash either all of a height's state is visible or none is.
//! It is written without the WAL ([`NodeStore::write_unlogged`]): a crash
//! may lose the commits since the last flush (a suffix, never a part of
//! one), and recovery executes their blocks again from the committed log.

use jmt::storage::{Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use palisade_consensus::state::{CommitMeta, StateCommit, StateStore, StoreError};
use palisade_crypto::{decode, encode, StateKey};

use super::{Batch, Cf, HeightRecord, KvTreeStore, NodeStore};
use crate::error::StorageError;

const META_STATE: &[u8] = b"state_last_commit";

/// Stage the state machine's commit record (what `last_commit` reads) into
/// `batch`: a snapshot install stands the executor on the snapshot's height.
pub(crate) fn stage_state_meta(batch: &mut Batch, meta: &CommitMeta) {
    batch.put(Cf::Meta, META_STATE, encode(meta));
}

impl NodeStore {
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
        self.write_unlogged(batch).map_err(backend)?;
        self.tree().committed(&commit.tree.node_batch);
        Ok(())
    }
}
