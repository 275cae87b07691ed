//! The authenticated map's nodes and values over a [`KvBackend`].
//!
//! Values are keyed `key_hash (32 bytes) || version (u64 big-endian)`, so the
//! newest value at or below a version is one reverse seek. Nodes are keyed by
//! their borsh `NodeKey`. Each commit also records jmt's stale-node
//! index ([`Cf::Stale`]); the pruner deletes nodes stale since at most its
//! mark, and values superseded at or below it (`prune::prune_stale`). Hot nodes and the newest value of
//! each key are served from memory ([`TreeCache`]); a commit tells the cache
//! what it wrote ([`KvTreeStore::committed`]).

use std::sync::Arc;

use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader, TreeWriter};
use jmt::{KeyHash, OwnedValue, Version};
use palisade_crypto::{decode, encode};

use super::kv::{Batch, Cf, KvBackend, VALUE_PREFIX_LEN};
use super::tree_cache::TreeCache;
use crate::error::StorageError;

/// jmt's `TreeReader`/`TreeWriter` over a key-value backend.
#[derive(Clone)]
pub struct KvTreeStore {
    kv: Arc<dyn KvBackend>,
    cache: Arc<TreeCache>,
}

impl std::fmt::Debug for KvTreeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvTreeStore")
    }
}

fn value_key(key_hash: &KeyHash, version: Version) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&key_hash.0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The stale index key: version first, so a range scan finds every node
/// stale since at most a version.
pub(crate) fn stale_key(since: Version, node_key: &NodeKey) -> Vec<u8> {
    let mut k = since.to_be_bytes().to_vec();
    k.extend_from_slice(&encode(node_key));
    k
}

/// The value key of `key_hash` at `version`.
pub(crate) fn value_key_of(key_hash: &KeyHash, version: Version) -> Vec<u8> {
    value_key(key_hash, version)
}

impl KvTreeStore {
    /// A tree store over `kv`.
    pub fn new(kv: Arc<dyn KvBackend>) -> Self {
        KvTreeStore {
            kv,
            cache: Arc::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn cache_for_tests(&self) -> &TreeCache {
        &self.cache
    }

    /// An update staged with [`KvTreeStore::stage`] and
    /// [`KvTreeStore::stage_stale`] was written: its nodes and values are now
    /// the newest, and the nodes it made stale are no longer hot.
    pub fn committed(&self, update: &jmt::storage::TreeUpdateBatch) {
        self.cache
            .committed(&update.node_batch, &update.stale_node_index_batch);
    }

    /// Add a node batch's writes to `batch` (so a commit lands atomically with its block).
    pub fn stage(node_batch: &NodeBatch, batch: &mut Batch) {
        for (key, node) in node_batch.nodes() {
            batch.put(Cf::JmtNodes, encode(key), encode(node));
        }
        for ((version, key_hash), value) in node_batch.values() {
            batch.put(Cf::JmtValues, value_key(key_hash, *version), encode(value));
        }
    }

    /// Add a batch's stale-node index to `batch` (what the pruner deletes
    /// once no kept version needs it).
    pub fn stage_stale(stale: &jmt::storage::StaleNodeIndexBatch, batch: &mut Batch) {
        for s in stale {
            batch.put(
                Cf::Stale,
                stale_key(s.stale_since_version, &s.node_key),
                Vec::new(),
            );
        }
    }

    fn corrupt(cf: &'static str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt {
            cf,
            reason: e.to_string(),
        }
    }
}

impl TreeReader for KvTreeStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if let Some(node) = self.cache.node(node_key) {
            return Ok(Some(node));
        }
        match self.kv.get(Cf::JmtNodes, &encode(node_key))? {
            None => Ok(None),
            Some(bytes) => {
                let node: Node = decode(&bytes).map_err(|e| Self::corrupt("jmt_nodes", e))?;
                self.cache.put_node(node_key, &node);
                Ok(Some(node))
            }
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let ticket = match self.cache.value(max_version, &key_hash) {
            Ok(value) => return Ok(value),
            Err(ticket) => ticket,
        };
        let found = self.kv.seek_prev_in_prefix(
            Cf::JmtValues,
            &value_key(&key_hash, max_version),
            VALUE_PREFIX_LEN,
        )?;
        let (version, value) = match found {
            Some((k, v)) if k.len() == 40 && k[..32] == key_hash.0 => {
                let version = u64::from_be_bytes(k[32..].try_into().expect("8 bytes"));
                let value: Option<Vec<u8>> =
                    decode(&v).map_err(|e| Self::corrupt("jmt_values", e))?;
                (version, value)
            }
            _ => (0, None),
        };
        self.cache.fill(ticket, &key_hash, version, &value);
        Ok(value)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only used when restoring a tree from chunks: a full scan is acceptable.
        let mut best: Option<(NodeKey, LeafNode)> = None;
        let mut start = Vec::new();
        loop {
            let page = self.kv.scan(Cf::JmtNodes, &start, 1024)?;
            let Some((last, _)) = page.last() else { break };
            let mut next = last.clone();
            next.push(0);
            for (k, v) in &page {
                if let Node::Leaf(leaf) =
                    decode::<Node>(v).map_err(|e| Self::corrupt("jmt_nodes", e))?
                {
                    if best
                        .as_ref()
                        .is_none_or(|(_, b)| leaf.key_hash() > b.key_hash())
                    {
                        let key: NodeKey = decode(k).map_err(|e| Self::corrupt("jmt_nodes", e))?;
                        best = Some((key, leaf));
                    }
                }
            }
            if page.len() < 1024 {
                break;
            }
            start = next;
        }
        Ok(best)
    }
}

impl TreeWriter for KvTreeStore {
    fn write_node_batch(&self, node_batch: &NodeBatch) -> anyhow::Result<()> {
        let mut batch = Batch::new();
        Self::stage(node_batch, &mut batch);
        self.kv.write(batch, false)?;
        self.cache.committed(node_batch, &Default::default());
        Ok(())
    }
}
