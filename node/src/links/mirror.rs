//! A mirror of another datacenter's authenticated map, in its own store
//! (`data_dir/links/<chain_id>/`, so dropping a link is deleting a folder).
//!
//! Invariant: the mirror only ever holds trees whose root equals the state
//! root of a remote block the caller verified as certified. [`Mirror::apply`]
//! computes the new root from the delta first and writes nothing when it
//! differs, so a delta that omits or alters a change cannot be accepted
//! (the jmt root commits to every leaf). jmt versions must be dense, so the
//! mirror's tree versions are import sequence numbers (0 = first import);
//! the [`ImportRecord`] maps the newest one to the remote height.
//!
//! Crash safety: the tree nodes, values and the import record move in one
//! synced batch, so after a crash the record names exactly the newest tree
//! that is complete on disk.

use std::collections::BTreeMap;
use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::{JellyfishMerkleTree, KeyHash};
use palisade_consensus::state::StateReader;
use palisade_crypto::api::LookupResponse;
use palisade_crypto::dc::LeafChange;
use palisade_crypto::{
    decode, encode, BlockInfo, CommitCertificate, Digest, Hex, InstanceRecord, JmtHasher,
    ServiceRecord,
};

use crate::storage::{Batch, Cf, KvTreeStore, NodeStore};

use super::LinkError;

const IMPORT_RECORD: &[u8] = b"link_import_record";
const FROZEN: &[u8] = b"link_frozen";
/// Set by [`Mirror::unfreeze`]: the next import is a snapshot (as a net
/// delta over the mirror), not a delta from the imported block, which may
/// be the other side of the fork.
const RESYNC: &[u8] = b"link_resync";

/// The synced progress of an import: which remote block the mirror holds.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ImportRecord {
    /// The mirror's tree version holding that block's state.
    pub version: u64,
    /// The remote block (height, state root, timestamp, hash for the chain).
    pub info: BlockInfo,
    /// Its remote commit certificate (served with every remote answer).
    pub certificate: CommitCertificate,
}

/// A mirror of one remote datacenter's tree.
#[derive(Clone, Debug)]
pub struct Mirror {
    store: NodeStore,
}

impl Mirror {
    /// Open (creating) the mirror stored at `dir`.
    pub fn open(dir: &Path) -> Result<Self, LinkError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LinkError::Io(format!("{}: {e}", dir.display())))?;
        Ok(Mirror {
            // The remote's leaves: its layout, not this binary's mark.
            store: NodeStore::open_rocks_unmarked(dir)?,
        })
    }

    /// A mirror in memory (tests and tools).
    pub fn in_memory() -> Self {
        Mirror {
            store: NodeStore::in_memory(),
        }
    }

    /// The import record, `None` before the first import.
    pub fn record(&self) -> Result<Option<ImportRecord>, LinkError> {
        match self.store.kv().get(Cf::Meta, IMPORT_RECORD)? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| {
                LinkError::Storage(crate::storage::corrupt("meta", e))
            })?)),
        }
    }

    /// The root the mirror would have after `changes`, and the batch to get
    /// there, without writing anything.
    fn compute(
        &self,
        version: u64,
        changes: &[LeafChange],
    ) -> Result<(Digest, jmt::storage::TreeUpdateBatch), LinkError> {
        let mut set: BTreeMap<KeyHash, Option<Vec<u8>>> = BTreeMap::new();
        for c in changes {
            if set.insert(KeyHash(c.key_hash.0), c.value.clone()).is_some() {
                return Err(LinkError::BadDelta(format!(
                    "key hash {} appears twice",
                    c.key_hash.to_hex()
                )));
            }
        }
        let tree = JellyfishMerkleTree::<_, JmtHasher>::new(self.store.tree());
        // jmt asserts on some malformed inputs; a remote node's bytes must
        // never take the node down, so a panic is a refused delta.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tree.put_value_set(set, version)
        }))
        .map_err(|_| LinkError::BadDelta("the tree refused the delta".into()))?;
        let (root, batch) = result.map_err(|e| LinkError::BadDelta(format!("{e:#}")))?;
        Ok((Digest(root.0), batch))
    }

    /// Apply `changes` (every leaf that changed since the imported block,
    /// with its value at `info`), accepting them only when the resulting
    /// root is `info.state_root`. `info` and `certificate` must already be
    /// verified by the caller (certificate against the remote trusted chain,
    /// `info` linked to the imported block by parent hashes). On the first
    /// import `changes` is the whole tree (a snapshot).
    pub fn apply(
        &self,
        changes: &[LeafChange],
        info: &BlockInfo,
        certificate: &CommitCertificate,
    ) -> Result<(), LinkError> {
        if let Some(frozen) = self.frozen()? {
            return Err(LinkError::Frozen(frozen));
        }
        let previous = self.record()?;
        let version = previous.as_ref().map_or(0, |r| r.version + 1);
        let (root, batch) = self.compute(version, changes)?;
        if root != info.state_root {
            return Err(LinkError::RootMismatch {
                height: info.height,
                computed: root,
                certified: info.state_root,
            });
        }
        let record = ImportRecord {
            version,
            info: info.clone(),
            certificate: certificate.clone(),
        };
        let mut kv_batch = Batch::new();
        KvTreeStore::stage(&batch.node_batch, &mut kv_batch);
        kv_batch.put(Cf::Meta, IMPORT_RECORD, encode(&record));
        kv_batch.delete(Cf::Meta, RESYNC);
        self.store.write_synced(kv_batch)?;
        Ok(())
    }

    /// Every leaf of the imported tree (key hashes only), at most `limit`;
    /// `None` when there are more.
    pub fn leaf_hashes(&self, limit: usize) -> Result<Option<Vec<Digest>>, LinkError> {
        let Some(record) = self.record()? else {
            return Ok(Some(Vec::new()));
        };
        let reader = std::sync::Arc::new(self.store.tree().clone());
        let iter = jmt::JellyfishMerkleIterator::new(reader, record.version, KeyHash([0; 32]))
            .map_err(|e| LinkError::Mirror(format!("{e:#}")))?;
        let mut out = Vec::new();
        for item in iter {
            let (hash, _) = item.map_err(|e| LinkError::Mirror(format!("{e:#}")))?;
            if out.len() == limit {
                return Ok(None);
            }
            out.push(Digest(hash.0));
        }
        Ok(Some(out))
    }

    /// Why importing is stopped, if it is (evidence of equivocation).
    pub fn frozen(&self) -> Result<Option<String>, LinkError> {
        match self.store.kv().get(Cf::Meta, FROZEN)? {
            None => Ok(None),
            Some(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        }
    }

    /// Stop importing (evidence of equivocation), synced; the imported
    /// state stays served, marked frozen. Only [`Mirror::unfreeze`] resumes.
    pub fn freeze(&self, reason: &str) -> Result<(), LinkError> {
        let mut batch = Batch::new();
        batch.put(Cf::Meta, FROZEN, reason.as_bytes());
        self.store.write_synced(batch)?;
        Ok(())
    }

    /// Resume importing: an operator's act after reading the evidence. The
    /// imported block may be on the side of the fork that is gone, so the
    /// next import is a snapshot over the mirror (still root-checked), and
    /// the imported block is not compared with the new heads.
    pub fn unfreeze(&self) -> Result<(), LinkError> {
        let mut batch = Batch::new();
        batch.delete(Cf::Meta, FROZEN);
        batch.put(Cf::Meta, RESYNC, b"1");
        self.store.write_synced(batch)?;
        Ok(())
    }

    /// Whether the next import must be a snapshot (after an unfreeze).
    pub fn resync_pending(&self) -> Result<bool, LinkError> {
        Ok(self.store.kv().get(Cf::Meta, RESYNC)?.is_some())
    }

    /// A service of the remote datacenter as imported, proven against the
    /// remote certificate; `None` before the first import.
    pub fn lookup(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Option<LookupResponse>, LinkError> {
        let Some(record) = self.record()? else {
            return Ok(None);
        };
        let proof = StateReader::at(&self.store, record.version)
            .service(namespace, service)
            .map_err(|e| LinkError::Mirror(e.to_string()))?;
        let instances: Vec<InstanceRecord> = proof
            .instances
            .iter()
            .map(|b| decode(b))
            .collect::<Result<_, _>>()
            .map_err(|e| LinkError::Mirror(e.to_string()))?;
        let record_json = proof.lookup.value.as_ref().map(|_| ServiceRecord {
            namespace: namespace.to_string(),
            service: service.to_string(),
            instances,
        });
        Ok(Some(LookupResponse {
            height: record.info.height,
            certificate: Hex::new(&record.certificate),
            lookup: Hex::new(&proof.lookup),
            instances: proof.instances.into_iter().map(Hex::from_bytes).collect(),
            record: record_json,
            certified: Some((&record.certificate).into()),
        }))
    }
}
