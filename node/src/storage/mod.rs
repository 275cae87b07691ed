//! Durable node state: the committed chain, certificates, safety state,
//! consensus records, the authenticated map and indexes.
//!
//! Invariants:
//! - A committed block, its certificate (when it has one), its receipts and
//!   the committed height move in one atomic batch, after the block's tree
//!   nodes; a crash between the two leaves tree nodes of a height the node
//!   does not claim, which re-execution rewrites identically.
//! - Safety records are written with `sync`, and return only once durable, so
//!   a vote or timeout sent after [`NodeStore::put_safety`] survives SIGKILL.
//!   RocksDB's WAL is sequential, so a synced write also makes every earlier
//!   write durable.

mod jmt_store;
mod kv;

use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{decode, encode, BlockInfo, CommitCertificate, Digest};

pub use jmt_store::KvTreeStore;
pub use kv::{Batch, Cf, Entry, KvBackend, MemKv, RocksKv};

use crate::error::StorageError;

const META_COMMITTED: &[u8] = b"committed_height";
const META_EPOCH_PREFIX: &[u8] = b"epoch_end/";

/// A committed block as the node indexes it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommittedEntry {
    /// The block's info (what certificates commit).
    pub info: BlockInfo,
    /// Its transaction ids, in block order.
    pub tx_ids: Vec<Digest>,
    /// The state machine's verdict per transaction ("applied" or a reason).
    pub outcomes: Vec<String>,
    /// Services whose record changed in this block, `(namespace, service)`.
    pub changed: Vec<(String, String)>,
}

/// Where a committed transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxLocation {
    /// Height of its block.
    pub height: u64,
    /// Index within the block.
    pub index: u32,
}

/// The node's store over one backend.
#[derive(Clone)]
pub struct NodeStore {
    kv: Arc<dyn KvBackend>,
    tree: KvTreeStore,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeStore")
    }
}

fn corrupt(cf: &'static str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        cf,
        reason: e.to_string(),
    }
}

impl NodeStore {
    /// A store over `kv`.
    pub fn new(kv: Arc<dyn KvBackend>) -> Self {
        NodeStore {
            tree: KvTreeStore::new(kv.clone()),
            kv,
        }
    }

    /// Open RocksDB at `path`.
    pub fn open_rocks(path: &std::path::Path) -> Result<Self, StorageError> {
        let kv: Arc<dyn KvBackend> = RocksKv::open(path)?;
        Ok(Self::new(kv))
    }

    /// An in-memory store.
    pub fn in_memory() -> Self {
        let kv: Arc<dyn KvBackend> = MemKv::new();
        Self::new(kv)
    }

    /// The backend.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.kv
    }

    /// The authenticated map's tree store.
    pub fn tree(&self) -> &KvTreeStore {
        &self.tree
    }

    /// Durably record a safety record under `name` (synced before returning).
    pub fn put_safety(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let mut batch = Batch::new();
        batch.put(Cf::Safety, name.as_bytes(), bytes);
        self.kv.write(batch, true)
    }

    /// The safety record under `name`.
    pub fn safety(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.kv.get(Cf::Safety, name.as_bytes())
    }

    /// Store a consensus block (proposal) by id; durable once a later synced write returns.
    pub fn put_block(&self, id: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        let mut batch = Batch::new();
        batch.put(Cf::Blocks, id.0, bytes);
        self.kv.write(batch, false)
    }

    /// A consensus block by id.
    pub fn block(&self, id: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        self.kv.get(Cf::Blocks, &id.0)
    }

    /// Highest committed height (0 = genesis only).
    pub fn committed_height(&self) -> Result<u64, StorageError> {
        match self.kv.get(Cf::Meta, META_COMMITTED)? {
            None => Ok(0),
            Some(b) => decode(&b).map_err(|e| corrupt("meta", e)),
        }
    }

    /// Record committed blocks atomically (with their tree nodes staged in
    /// `batch`), oldest first; `cert` certifies the last one. Synced.
    pub fn commit(
        &self,
        mut batch: Batch,
        entries: &[CommittedEntry],
        cert: Option<&CommitCertificate>,
    ) -> Result<(), StorageError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        for entry in entries {
            let h = entry.info.height;
            batch.put(Cf::Heights, h.to_be_bytes(), encode(entry));
            for (i, id) in entry.tx_ids.iter().enumerate() {
                let loc = TxLocation {
                    height: h,
                    index: i as u32,
                };
                batch.put(Cf::Receipts, id.0, encode(&loc));
            }
        }
        if let Some(cert) = cert {
            batch.put(Cf::Certs, last.info.height.to_be_bytes(), encode(cert));
            if let Some(info) = &cert.ledger_info.commit {
                if info.next_validators.is_some() {
                    let mut key = META_EPOCH_PREFIX.to_vec();
                    key.extend_from_slice(&cert.ledger_info.epoch.to_be_bytes());
                    batch.put(Cf::Meta, key, encode(cert));
                }
            }
        }
        batch.put(Cf::Meta, META_COMMITTED, encode(&last.info.height));
        self.kv.write(batch, true)
    }

    /// The committed entry at `height`.
    pub fn entry(&self, height: u64) -> Result<Option<CommittedEntry>, StorageError> {
        match self.kv.get(Cf::Heights, &height.to_be_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("heights", e))?)),
        }
    }

    /// The certificate stored for exactly `height`.
    pub fn cert_at(&self, height: u64) -> Result<Option<CommitCertificate>, StorageError> {
        match self.kv.get(Cf::Certs, &height.to_be_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("certs", e))?)),
        }
    }

    /// The first certificate at or above `height`, with its height.
    pub fn cert_from(&self, height: u64) -> Result<Option<(u64, CommitCertificate)>, StorageError> {
        let page = self.kv.scan(Cf::Certs, &height.to_be_bytes(), 1)?;
        match page.into_iter().next() {
            None => Ok(None),
            Some((k, v)) => {
                let h = u64::from_be_bytes(k.try_into().map_err(|_| corrupt("certs", "bad key"))?);
                Ok(Some((h, decode(&v).map_err(|e| corrupt("certs", e))?)))
            }
        }
    }

    /// The highest certified height and its certificate.
    pub fn latest_cert(&self) -> Result<Option<(u64, CommitCertificate)>, StorageError> {
        match self.kv.seek_prev(Cf::Certs, &u64::MAX.to_be_bytes())? {
            None => Ok(None),
            Some((k, v)) => {
                let h = u64::from_be_bytes(k.try_into().map_err(|_| corrupt("certs", "bad key"))?);
                Ok(Some((h, decode(&v).map_err(|e| corrupt("certs", e))?)))
            }
        }
    }

    /// Where a committed transaction is.
    pub fn tx_location(&self, id: &Digest) -> Result<Option<TxLocation>, StorageError> {
        match self.kv.get(Cf::Receipts, &id.0)? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("receipts", e))?)),
        }
    }

    /// Epoch-ending certificates for epochs `>= from`, in order, at most `limit`.
    pub fn epoch_changes(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<CommitCertificate>, StorageError> {
        let mut start = META_EPOCH_PREFIX.to_vec();
        start.extend_from_slice(&from.to_be_bytes());
        let page = self.kv.scan(Cf::Meta, &start, limit)?;
        page.into_iter()
            .take_while(|(k, _)| k.starts_with(META_EPOCH_PREFIX))
            .map(|(_, v)| decode(&v).map_err(|e| corrupt("meta", e)))
            .collect()
    }

    /// Put an arbitrary small record (consensus bookkeeping such as the highest QC); not synced.
    pub fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let mut batch = Batch::new();
        batch.put(Cf::Meta, name.as_bytes(), bytes);
        self.kv.write(batch, false)
    }

    /// A record put with [`NodeStore::put_meta`].
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.kv.get(Cf::Meta, name.as_bytes())
    }
}
