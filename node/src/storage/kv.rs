//! The key-value layer under every store: column families, atomic batches,
//! synced writes. Two backends share one contract and one test suite:
//! [`RocksKv`] (the node's) and [`MemKv`] (tests and tools).
//!
//! Two kinds of write: logged ([`KvBackend::write`]: through RocksDB's
//! write-ahead log, durable at the next sync) and unlogged
//! ([`KvBackend::write_unlogged`]: the memtables only, durable at the next
//! [`KvBackend::flush`]; a crash loses the unlogged writes since the last
//! flush, and only a suffix of them: RocksDB is opened with `atomic_flush`,
//! so every automatic flush persists all column families at one point).
//! The state commit is the one unlogged write: everything in it can be
//! rebuilt by executing the committed blocks again, which stay logged.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, SliceTransform,
    WriteOptions, DB,
};

use crate::error::StorageError;

/// Bound on the write-ahead log's total size (see [`RocksKv::open`]).
pub(super) const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;

/// The column families the state commit writes without the WAL (what
/// [`super::NodeStore::flush_state`] flushes).
pub(super) const UNLOGGED_CFS: [Cf; 7] = [
    Cf::Meta,
    Cf::JmtNodes,
    Cf::JmtValues,
    Cf::Stale,
    Cf::Heights,
    Cf::Receipts,
    Cf::Changes,
];

/// The length of the prefix [`Cf::JmtValues`] keys share per state key (its
/// key hash); RocksDB keeps a prefix bloom filter of it (see
/// [`KvBackend::seek_prev_in_prefix`]).
pub const VALUE_PREFIX_LEN: usize = 32;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);
type MemMap = BTreeMap<(Cf, Vec<u8>), Vec<u8>>;

/// A column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Blocks by id (proposed and committed).
    Blocks,
    /// Certificates: committed height -> commit certificate; also the highest QC.
    Certs,
    /// Safety state (synced before a vote or timeout leaves the node).
    Safety,
    /// Jellyfish Merkle Tree nodes.
    JmtNodes,
    /// Jellyfish Merkle Tree values by (key hash, version).
    JmtValues,
    /// Receipts by transaction id.
    Receipts,
    /// Per committed height: transaction ids, outcomes, changed services.
    Heights,
    /// Small records: committed height, epoch change index.
    Meta,
    /// Committed block infos by height.
    Infos,
    /// The committed consensus log: height -> block with the QC that committed it.
    Log,
    /// Change index: height (u64 big-endian) -> borsh `Vec<StateKey>` of every
    /// map key (all leaf kinds) the block at that height changed, written in
    /// the state commit's batch. Per-height; pruned with the retention window.
    Changes,
    /// Stale tree nodes: `stale_since_version (u64 BE) || borsh NodeKey` ->
    /// empty, from jmt's stale-node index of each committed batch; the
    /// pruner deletes the nodes stale since at most its mark.
    Stale,
}

impl Cf {
    /// Every column family.
    pub const ALL: [Cf; 12] = [
        Cf::Blocks,
        Cf::Certs,
        Cf::Safety,
        Cf::JmtNodes,
        Cf::JmtValues,
        Cf::Receipts,
        Cf::Heights,
        Cf::Meta,
        Cf::Infos,
        Cf::Log,
        Cf::Changes,
        Cf::Stale,
    ];

    /// RocksDB name.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Blocks => "blocks",
            Cf::Certs => "certs",
            Cf::Safety => "safety",
            Cf::JmtNodes => "jmt_nodes",
            Cf::JmtValues => "jmt_values",
            Cf::Receipts => "receipts",
            Cf::Heights => "heights",
            Cf::Meta => "meta",
            Cf::Infos => "infos",
            Cf::Log => "log",
            Cf::Changes => "changes",
            Cf::Stale => "stale",
        }
    }
}

/// Writes applied all together or not at all.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<(Cf, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set `key` to `value`.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), Some(value.into())));
    }
    /// Remove `key`.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), None));
    }
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The operations of this batch on the column families `keep` accepts.
    pub fn filtered(&self, keep: impl Fn(Cf) -> bool) -> Batch {
        Batch {
            ops: self
                .ops
                .iter()
                .filter(|(cf, _, _)| keep(*cf))
                .cloned()
                .collect(),
        }
    }
}

/// A key-value store with column families. Writes are atomic per batch;
/// `sync = true` returns only once the batch is durable (fsync of the WAL).
pub trait KvBackend: Send + Sync + 'static {
    /// Value under `key`.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Apply `batch` atomically.
    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError>;
    /// The last entry whose key is `<= key`.
    fn seek_prev(&self, cf: Cf, key: &[u8]) -> Result<Option<Entry>, StorageError>;
    /// The last entry whose key is `<= key` and starts with `key`'s first
    /// `prefix_len` bytes (`None` when there is none, whatever precedes
    /// it). The same answer as [`KvBackend::seek_prev`] filtered, but a
    /// backend may answer from a prefix filter without a seek: RocksDB does
    /// for [`Cf::JmtValues`] and [`VALUE_PREFIX_LEN`], where the newest
    /// value of a key never written (a new instance, a registration's first
    /// read) was a reverse seek through every memtable and level.
    fn seek_prev_in_prefix(
        &self,
        cf: Cf,
        key: &[u8],
        prefix_len: usize,
    ) -> Result<Option<Entry>, StorageError> {
        let prefix = &key[..prefix_len.min(key.len())];
        Ok(self
            .seek_prev(cf, key)?
            .filter(|(k, _)| k.starts_with(prefix)))
    }
    /// Up to `limit` entries with keys `>= start`, ascending.
    fn scan(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError>;
    /// Make every write applied so far durable (fsync of the WAL), as a
    /// synced write would.
    fn sync(&self) -> Result<(), StorageError>;
    /// Apply `batch` atomically without the write-ahead log: visible at
    /// once, durable in a column family only once a later
    /// [`KvBackend::flush_cf`] of that family returns (or RocksDB flushes
    /// every family on its own, atomically). A crash before loses it.
    fn write_unlogged(&self, batch: Batch) -> Result<(), StorageError>;
    /// Persist every write applied so far to `cf`, unlogged ones included
    /// (RocksDB: a flush of that family's memtables to table files; the
    /// WAL up to it is synced too). One family only: a crash between the
    /// flushes of two families leaves an unlogged batch in one and not in
    /// the other ([`super::NodeStore::flush_state`] copes). Slow; off the
    /// critical path.
    fn flush_cf(&self, cf: Cf) -> Result<(), StorageError>;
}

/// RocksDB, one column family per [`Cf`].
pub struct RocksKv {
    db: DB,
}

impl std::fmt::Debug for RocksKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RocksKv({})", self.db.path().display())
    }
}

impl RocksKv {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Bound the background work so an idle node stays idle.
        opts.increase_parallelism(2);
        // A WAL file is kept until every column family that wrote to it has
        // flushed; rarely written families (safety, meta) pinned hundreds of
        // MB of WAL in the issue-16 soak. Past this total, RocksDB flushes
        // the families holding the oldest WAL so it can be deleted.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // The state commit is written without the WAL: every flush RocksDB
        // starts on its own (a full memtable, the WAL bound above) persists
        // all column families at one sequence number, so what a crash leaves
        // of the unlogged writes is a prefix of them (RocksDB documents the
        // option for exactly this case).
        opts.set_atomic_flush(true);
        // Bloom filters: most point reads (receipts of transactions not
        // yet committed, tree nodes) miss or hit one SST file; the filter
        // answers without reading blocks. One block cache for every family.
        let cache = rocksdb::Cache::new_lru_cache(64 << 20)?;
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&cache);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            if *cf == Cf::JmtValues {
                // Values are keyed key hash || version: a prefix bloom of the
                // key hash (in table files and memtables) answers "never
                // written" without a seek. Table files written before it
                // have no prefix filter and are searched as before.
                o.set_prefix_extractor(SliceTransform::create_fixed_prefix(VALUE_PREFIX_LEN));
                o.set_memtable_prefix_bloom_ratio(0.05);
            }
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Arc::new(RocksKv { db }))
    }

    fn write_with(&self, batch: Batch, wo: &WriteOptions) -> Result<(), StorageError> {
        let mut wb = rocksdb::WriteBatch::default();
        for (cf, key, value) in batch.ops {
            let handle = self.cf(cf)?;
            match value {
                Some(v) => wb.put_cf(handle, key, v),
                None => wb.delete_cf(handle, key),
            }
        }
        Ok(self.db.write_opt(wb, wo)?)
    }

    /// Read options for an iterator over the whole key order: a family
    /// with a prefix extractor would otherwise iterate in prefix mode, where
    /// leaving the first key's prefix is undefined.
    fn total_order() -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        ro
    }

    fn first_reverse(
        &self,
        cf: Cf,
        key: &[u8],
        ro: ReadOptions,
    ) -> Result<Option<Entry>, StorageError> {
        let mut it = self.db.iterator_cf_opt(
            self.cf(cf)?,
            ro,
            IteratorMode::From(key, Direction::Reverse),
        );
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((k.into_vec(), v.into_vec())))
            }
        }
    }

    fn cf(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StorageError::Rocks(format!("column family {} missing", cf.name())))
    }
}

impl KvBackend for RocksKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.write_with(batch, &wo)
    }

    fn write_unlogged(&self, batch: Batch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.write_with(batch, &wo)
    }

    fn flush_cf(&self, cf: Cf) -> Result<(), StorageError> {
        // rocksdb 0.20 (and the C API of RocksDB 7.8) flushes one column
        // family per call: atomic for that family alone.
        Ok(self.db.flush_cf(self.cf(cf)?)?)
    }

    fn seek_prev(&self, cf: Cf, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        self.first_reverse(cf, key, Self::total_order())
    }

    fn seek_prev_in_prefix(
        &self,
        cf: Cf,
        key: &[u8],
        prefix_len: usize,
    ) -> Result<Option<Entry>, StorageError> {
        let prefix = &key[..prefix_len.min(key.len())];
        let ro = if cf == Cf::JmtValues && prefix.len() == VALUE_PREFIX_LEN {
            // Prefix mode: the filters of the key's prefix decide which
            // memtables and table files are searched at all, and the
            // iterator stops at the prefix's first key.
            let mut ro = ReadOptions::default();
            ro.set_prefix_same_as_start(true);
            ro
        } else {
            Self::total_order()
        };
        Ok(self
            .first_reverse(cf, key, ro)?
            .filter(|(k, _)| k.starts_with(prefix)))
    }

    fn scan(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        let it = self.db.iterator_cf_opt(
            self.cf(cf)?,
            Self::total_order(),
            IteratorMode::From(start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in it.take(limit) {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(self.db.flush_wal(true)?)
    }
}

/// An in-memory backend with the same contract (durability aside).
#[derive(Debug, Default)]
pub struct MemKv {
    maps: RwLock<MemMap>,
}

impl MemKv {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl KvBackend for MemKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let maps = self.maps.read().expect("memkv lock poisoned");
        Ok(maps.get(&(cf, key.to_vec())).cloned())
    }

    fn write(&self, batch: Batch, _sync: bool) -> Result<(), StorageError> {
        let mut maps = self.maps.write().expect("memkv lock poisoned");
        for (cf, key, value) in batch.ops {
            match value {
                Some(v) => maps.insert((cf, key), v),
                None => maps.remove(&(cf, key)),
            };
        }
        Ok(())
    }

    fn seek_prev(&self, cf: Cf, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        let maps = self.maps.read().expect("memkv lock poisoned");
        let found = maps
            .range((
                Bound::Included((cf, Vec::new())),
                Bound::Included((cf, key.to_vec())),
            ))
            .next_back();
        Ok(found.map(|((_, k), v)| (k.clone(), v.clone())))
    }

    fn scan(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        let maps = self.maps.read().expect("memkv lock poisoned");
        Ok(maps
            .range((cf, start.to_vec())..)
            .take_while(|((c, _), _)| *c == cf)
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn write_unlogged(&self, batch: Batch) -> Result<(), StorageError> {
        self.write(batch, false)
    }

    fn flush_cf(&self, _cf: Cf) -> Result<(), StorageError> {
        Ok(())
    }
}
