//! The authenticated map's hot data in memory: tree nodes by key and the
//! newest value of each key, so that execution, admission and lookups do not
//! open a RocksDB iterator per read (reverse seeks were a third of a loaded
//! node's CPU).
//!
//! Correctness rests on three facts:
//! - a tree node is immutable under its [`NodeKey`] (version + path): a
//!   committed version is written once, and re-execution after a crash writes
//!   the same bytes; so any cached node is the stored node;
//! - the value cache holds, per key hash, the value at the **newest version
//!   written** for it. A commit updates it for every key it writes, after
//!   the write; a read fills it only with what it found at or above the newest
//!   committed version, and only where no newer version is cached (the
//!   newer one wins, whatever the order of the read and the commit). A read
//!   at an older version than the cached one goes to the store;
//! - clearing (the bound) bumps a generation, and a read started before a
//!   clear does not fill afterwards (it could otherwise put back a value a
//!   commit had just replaced and the clear had dropped);
//! - nothing is filled by reads until a commit told the cache which version
//!   is the newest: a store just opened may hold versions above any height a
//!   reader asks for (a restart after a crash between the state commit and
//!   the ledger write leaves the newest certificate below the state), and a
//!   writer that never reports its commits (a link's mirror) never arms it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use jmt::storage::{Node, NodeBatch, NodeKey, StaleNodeIndexBatch};
use jmt::{KeyHash, OwnedValue, Version};

/// Most nodes kept (an internal node is at most ≈ 0.7 KB).
const MAX_NODES: usize = 1 << 17;
/// Most value bytes kept.
const MAX_VALUE_BYTES: usize = 64 << 20;

#[derive(Default)]
struct Values {
    map: HashMap<[u8; 32], (Version, Option<OwnedValue>)>,
    bytes: usize,
    generation: u64,
}

impl Values {
    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
        self.generation += 1;
    }

    /// Keep `(version, value)` for `key` unless a newer version is kept.
    fn offer(&mut self, key: [u8; 32], version: Version, value: Option<OwnedValue>) {
        let size = value.as_ref().map_or(0, Vec::len) + 64;
        if let Some((v, old)) = self.map.get(&key) {
            if *v > version {
                return;
            }
            self.bytes -= old.as_ref().map_or(0, Vec::len) + 64;
        }
        if self.bytes + size > MAX_VALUE_BYTES {
            self.clear();
        }
        self.bytes += size;
        self.map.insert(key, (version, value));
    }
}

/// Hot tree nodes and newest values (see the module docs).
#[derive(Default)]
pub(crate) struct TreeCache {
    nodes: Mutex<HashMap<NodeKey, Node>>,
    values: Mutex<Values>,
    /// Newest version a commit wrote (0 before any).
    newest: AtomicU64,
    /// Set by the first reported commit; reads fill only once it is set.
    armed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for TreeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TreeCache")
    }
}

/// What a store read must remember to fill the value cache afterwards.
pub(crate) struct Ticket {
    generation: u64,
    fill: bool,
}

impl TreeCache {
    #[cfg(test)]
    fn nodes_kept(&self) -> usize {
        self.nodes.lock().expect("cache lock").len()
    }

    pub(crate) fn node(&self, key: &NodeKey) -> Option<Node> {
        self.nodes.lock().expect("cache lock").get(key).cloned()
    }

    pub(crate) fn put_node(&self, key: &NodeKey, node: &Node) {
        let mut nodes = self.nodes.lock().expect("cache lock");
        if nodes.len() >= MAX_NODES {
            nodes.clear();
        }
        nodes.insert(key.clone(), node.clone());
    }

    /// The newest value of `key` when it is cached and not newer than
    /// `max_version`; otherwise a ticket for [`TreeCache::fill`].
    pub(crate) fn value(
        &self,
        max_version: Version,
        key: &KeyHash,
    ) -> Result<Option<OwnedValue>, Ticket> {
        let values = self.values.lock().expect("cache lock");
        if let Some((v, value)) = values.map.get(&key.0) {
            if *v <= max_version {
                return Ok(value.clone());
            }
        }
        Err(Ticket {
            generation: values.generation,
            fill: self.armed.load(Ordering::SeqCst)
                && max_version >= self.newest.load(Ordering::SeqCst),
        })
    }

    /// Remember what a store read at `max_version` found for `key`
    /// (`found_version` is the version of the entry it found, 0 for none).
    pub(crate) fn fill(
        &self,
        ticket: Ticket,
        key: &KeyHash,
        found_version: Version,
        value: &Option<OwnedValue>,
    ) {
        if !ticket.fill {
            return;
        }
        let mut values = self.values.lock().expect("cache lock");
        if values.generation == ticket.generation {
            values.offer(key.0, found_version, value.clone());
        }
    }

    /// A commit wrote `batch`: its nodes and values are the newest, and the
    /// nodes it made stale (`stale`) leave the cache. So the cache holds the live tree
    /// (plus nodes read back from the store), not every version of every
    /// path: it stays at the live tree's size instead of filling up and being
    /// cleared every ~10^4 transactions, and a freed node's memory is reused
    /// by the next one instead of new pages (page faults were ~20 % of a
    /// loaded node's CPU, an eighth of them this cache's growth). A reader at
    /// an older version finds a stale node in the store, as before.
    pub(crate) fn committed(&self, batch: &NodeBatch, stale: &StaleNodeIndexBatch) {
        {
            let mut nodes = self.nodes.lock().expect("cache lock");
            for stale in stale {
                nodes.remove(&stale.node_key);
            }
            for (key, node) in batch.nodes() {
                if nodes.len() >= MAX_NODES {
                    nodes.clear();
                }
                nodes.insert(key.clone(), node.clone());
            }
        }
        let mut newest = batch
            .nodes()
            .keys()
            .map(NodeKey::version)
            .max()
            .unwrap_or(0);
        let mut values = self.values.lock().expect("cache lock");
        for ((version, key), value) in batch.values() {
            values.offer(key.0, *version, value.clone());
            newest = newest.max(*version);
        }
        if newest > 0 {
            self.newest.fetch_max(newest, Ordering::SeqCst);
            self.armed.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> KeyHash {
        KeyHash([n; 32])
    }

    #[test]
    fn newer_versions_win_and_old_reads_go_to_the_store() {
        let c = TreeCache::default();
        let mut values = c.values.lock().unwrap();
        values.offer([1; 32], 5, Some(b"five".to_vec()));
        values.offer([1; 32], 3, Some(b"three".to_vec()));
        drop(values);
        assert_eq!(c.value(9, &k(1)).ok(), Some(Some(b"five".to_vec())));
        assert!(
            c.value(4, &k(1)).is_err(),
            "an older version is read from the store"
        );
    }

    #[test]
    fn a_read_overtaken_by_a_clear_does_not_fill() {
        let c = TreeCache::default();
        c.newest.store(7, Ordering::SeqCst);
        c.armed.store(true, Ordering::SeqCst);
        let ticket = c.value(7, &k(2)).unwrap_err();
        c.values.lock().unwrap().clear();
        c.fill(ticket, &k(2), 6, &Some(b"stale".to_vec()));
        assert!(c.value(7, &k(2)).is_err());
        // Reads below the newest committed version never fill.
        let ticket = c.value(6, &k(2)).unwrap_err();
        c.fill(ticket, &k(2), 6, &Some(b"old".to_vec()));
        assert!(c.value(7, &k(2)).is_err());
        let ticket = c.value(7, &k(2)).unwrap_err();
        c.fill(ticket, &k(2), 6, &None);
        assert_eq!(c.value(7, &k(2)).ok(), Some(None));
    }

    /// Review finding F2: after a restart the store may hold versions above
    /// the height a reader asks for (state committed, ledger not); a read at
    /// that lower height must not become the key's "newest value", or the
    /// executor later reads it at the state height and computes another root.
    #[test]
    fn reads_fill_nothing_until_a_commit_names_the_newest_version() {
        let c = TreeCache::default();
        let ticket = c.value(4, &k(3)).unwrap_err();
        c.fill(ticket, &k(3), 2, &Some(b"old".to_vec()));
        assert!(
            c.value(9, &k(3)).is_err(),
            "a fill before any commit was kept"
        );
        // A commit of version 9 arms it: reads at 9 fill, reads below do not.
        let mut batch = NodeBatch::default();
        batch.extend(vec![], vec![((9, k(4)), Some(b"nine".to_vec()))]);
        c.committed(&batch, &Default::default());
        let ticket = c.value(8, &k(3)).unwrap_err();
        c.fill(ticket, &k(3), 2, &Some(b"old".to_vec()));
        assert!(c.value(9, &k(3)).is_err());
        let ticket = c.value(9, &k(3)).unwrap_err();
        c.fill(ticket, &k(3), 7, &Some(b"seven".to_vec()));
        assert_eq!(c.value(9, &k(3)).ok(), Some(Some(b"seven".to_vec())));
    }

    /// The cache holds the live tree, not every version: after many commits
    /// that rewrite a few keys each, it keeps exactly the nodes written and
    /// not yet made stale; a read at an old version still proves, from the
    /// store. Without the stale eviction it keeps every node ever written.
    #[test]
    fn stale_nodes_leave_the_cache_and_old_versions_still_prove() {
        use crate::storage::kv::{Batch, KvBackend, MemKv};
        use crate::storage::KvTreeStore;
        use jmt::JellyfishMerkleTree;
        use palisade_crypto::JmtHasher;
        use std::collections::HashSet;

        let kv = MemKv::new();
        let store = KvTreeStore::new(kv.clone());
        let (mut written, mut stale) = (HashSet::new(), HashSet::new());
        let mut roots = Vec::new();
        for v in 0..300u64 {
            let set: Vec<_> = (0..4u64)
                .map(|j| {
                    let key = KeyHash([((v * 7 + j * 11) % 64) as u8; 32]);
                    (key, Some(format!("v{v}-{j}").into_bytes()))
                })
                .collect();
            let tree = JellyfishMerkleTree::<_, JmtHasher>::new(&store);
            let (root, update) = tree.put_value_set(set, v).unwrap();
            let mut batch = Batch::new();
            KvTreeStore::stage(&update.node_batch, &mut batch);
            KvTreeStore::stage_stale(&update.stale_node_index_batch, &mut batch);
            kv.write(batch, false).unwrap();
            store.committed(&update);
            written.extend(update.node_batch.nodes().keys().cloned());
            stale.extend(
                update
                    .stale_node_index_batch
                    .iter()
                    .map(|s| s.node_key.clone()),
            );
            roots.push(root);
        }
        let live = written.difference(&stale).count();
        assert!(live < written.len() / 4, "{live} live of {}", written.len());
        assert_eq!(store.cache_for_tests().nodes_kept(), live);
        // An old version's nodes are stale now: read from the store, they prove.
        let tree = JellyfishMerkleTree::<_, JmtHasher>::new(&store);
        for v in [3u64, 150, 299] {
            let key = KeyHash([((v * 7) % 64) as u8; 32]);
            let (value, proof) = tree.get_with_proof(key, v).unwrap();
            assert_eq!(value, Some(format!("v{v}-0").into_bytes()));
            proof
                .verify(roots[v as usize], key, value.as_deref())
                .unwrap();
        }
    }
}
