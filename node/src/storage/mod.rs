//! Durable node state: the committed chain, certificates, safety state,
//! consensus records, the authenticated map and indexes.
//!
//! Invariants:
//! - A committed block, its certificate (when it has one), its receipts and
//!   the committed height move in one atomic batch, after the block's tree
//!   nodes; a crash between the two leaves tree nodes of a height the node
//!   does not claim, which re-execution rewrites identically.
//! - One fsync per round: the consensus records of a round (its block, the
//!   safety record, the state commit, the ledger) are written without sync,
//!   and the driver calls [`NodeStore::sync`] once before anything that
//!   depends on them leaves the node (a vote, a timeout, a proposal, a
//!   receipt). RocksDB's WAL is sequential, so the sync makes every earlier
//!   write durable, and a crash at any point leaves a prefix of the writes:
//!   the same states recovery already handled when each write was synced on
//!   its own. Receipts are served only up to [`NodeStore::served_ledger_height`]:
//!   the ledger height made durable here, or a written height the driver
//!   released because a quorum already made its commit durable
//!   ([`NodeStore::release_ledger`]).
//! - The state commit (tree nodes and values, the stale index, the height's
//!   record, receipt and change indexes, the state's commit record) is
//!   written without the WAL ([`KvBackend::write_unlogged`]): a crash may
//!   leave the state below the ledger, at the last height a flush made
//!   durable ([`NodeStore::flush_state`], every few seconds off the
//!   driver's path, and RocksDB's own flushes). Recovery executes the
//!   committed blocks above it again (`node::recovery`), which are logged.
//!   Nothing is pruned above the state height known durable
//!   ([`NodeStore::durable_state_height`]), so those blocks stay.

mod consensus;
mod jmt_store;
mod kv;
pub mod prune;
mod state_store;
mod tree_cache;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{decode, encode, BlockInfo, CommitCertificate, Digest, StateKey};

pub use jmt_store::KvTreeStore;
pub use kv::{Batch, Cf, Entry, KvBackend, MemKv, RocksKv, VALUE_PREFIX_LEN};
pub(crate) use state_store::stage_state_meta;

use crate::error::StorageError;

const META_COMMITTED: &[u8] = b"committed_height";
const META_LAYOUT: &[u8] = b"state_layout";
const META_EPOCH_PREFIX: &[u8] = b"epoch_end/";

/// The state layout this binary reads and writes, marked in every store it
/// creates. Layouts differ in which map keys hold what, so they compute
/// different state roots: a binary cannot continue a chain another layout
/// wrote. For its own data it says so at open, instead of failing on the
/// first record it cannot decode; the mark guards local data only (an empty
/// node syncing from peers of another layout still fails on their records).
/// - 1: the identity record holds the list of instances it owns (before
///   wave 7; its stores carry no mark).
/// - 2: that list lives in hash-bucketed `StateKey::OwnerPage` leaves.
pub const STATE_LAYOUT: u32 = 2;

/// Check the layout mark of an opened store, writing it (synced) into an
/// empty one. A store that holds data but no mark was written by layout 1.
fn check_layout(kv: &dyn KvBackend) -> Result<(), StorageError> {
    if let Some(b) = kv.get(Cf::Meta, META_LAYOUT)? {
        let found = <[u8; 4]>::try_from(b.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| corrupt("meta", "the state layout mark is not 4 bytes"))?;
        if found != STATE_LAYOUT {
            return Err(StorageError::Layout {
                found,
                expected: STATE_LAYOUT,
            });
        }
        return Ok(());
    }
    for cf in Cf::ALL {
        if !kv.scan(cf, &[], 1)?.is_empty() {
            return Err(StorageError::Layout {
                found: 1,
                expected: STATE_LAYOUT,
            });
        }
    }
    let mut batch = Batch::new();
    batch.put(Cf::Meta, META_LAYOUT, STATE_LAYOUT.to_be_bytes());
    kv.write(batch, true)
}

/// Stage an epoch-ending certificate (served by `/v1/epochs`) into `batch`.
pub(crate) fn stage_epoch_change(batch: &mut Batch, cert: &CommitCertificate) {
    let mut key = META_EPOCH_PREFIX.to_vec();
    key.extend_from_slice(&cert.ledger_info.epoch.to_be_bytes());
    batch.put(Cf::Meta, key, encode(cert));
}

/// What the node indexes about a committed height's state transition.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HeightRecord {
    /// Transaction ids, in block order.
    pub tx_ids: Vec<Digest>,
    /// The state machine's verdict per transaction ("applied" or a reason),
    /// as text for people.
    pub outcomes: Vec<String>,
    /// The verdict's stable code per transaction (what the transaction root
    /// hashes: `TxOutcome::code`).
    pub codes: Vec<u16>,
    /// Services whose record changed at this height, `(namespace, service)`.
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

/// What has been written and what is durable.
#[derive(Debug, Default)]
struct Durability {
    /// A write since the last sync.
    unsynced: AtomicBool,
    /// Highest ledger height written.
    ledger_written: AtomicU64,
    /// Highest ledger height made durable by a sync.
    ledger_durable: AtomicU64,
    /// A state height known durable (the state at open, or at the start of
    /// the last flush); the state on disk is at or above it.
    state_durable: AtomicU64,
    /// Highest written ledger height released before its sync (its commit
    /// is durable through the quorum that certified it).
    ledger_released: AtomicU64,
}

/// The node's store over one backend.
#[derive(Clone)]
pub struct NodeStore {
    kv: Arc<dyn KvBackend>,
    tree: KvTreeStore,
    durability: Arc<Durability>,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeStore")
    }
}

pub(crate) fn corrupt(cf: &'static str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        cf,
        reason: e.to_string(),
    }
}

impl NodeStore {
    /// A store over `kv`.
    pub fn new(kv: Arc<dyn KvBackend>) -> Self {
        let store = NodeStore {
            tree: KvTreeStore::new(kv.clone()),
            kv,
            durability: Arc::default(),
        };
        // What the backend holds at open is what survived: durable.
        let h = store.committed_height().unwrap_or(0);
        store.durability.ledger_written.store(h, Ordering::SeqCst);
        store.durability.ledger_durable.store(h, Ordering::SeqCst);
        match store.back_to_durable_mark() {
            Ok(s) => store.durability.state_durable.store(s, Ordering::SeqCst),
            // Nothing is pruned above a durable height of 0; the reads that
            // failed here fail again, loudly, when the executor opens.
            Err(e) => tracing::error!(error = %e, "reading the state's durable mark failed"),
        }
        store
    }

    /// Write `batch` without the WAL (the state commit): durable once a
    /// later [`NodeStore::flush_state`] returns (or RocksDB flushes on its own).
    pub fn write_unlogged(&self, batch: Batch) -> Result<(), StorageError> {
        self.kv.write_unlogged(batch)
    }

    /// Persist the state written so far; returns the state height it made
    /// durable. The column families the state commit writes are flushed one
    /// by one (RocksDB 7.8's C API flushes one family per call), while the
    /// driver goes on writing: after a crash in the middle, or after one
    /// RocksDB began on its own, the families on disk may hold different
    /// heights, and the state's commit record alone cannot say which height
    /// all of them hold. So the record read *before* the first flush (every
    /// family then holds all of its height) is written, logged and synced,
    /// as the durable mark *after* the last flush; at open the state is put
    /// back to that mark ([`NodeStore::new`]) and the heights above it are
    /// executed again, rewriting identical bytes over whatever part of them
    /// survived. Slow: call it off the driver's path.
    pub fn flush_state(&self) -> Result<u64, StorageError> {
        let Some(record) = self.state_record()? else {
            return Ok(0);
        };
        let h = state_store::record_height(&record)?;
        for cf in kv::UNLOGGED_CFS {
            self.kv.flush_cf(cf)?;
        }
        let mut mark = Batch::new();
        state_store::stage_durable_mark(&mut mark, &record);
        self.kv.write(mark, true)?;
        self.durability.state_durable.fetch_max(h, Ordering::SeqCst);
        Ok(h)
    }

    /// A state height known durable: after a crash the state is at or above
    /// it, and every committed block above it is needed to rebuild the rest.
    pub fn durable_state_height(&self) -> u64 {
        self.durability.state_durable.load(Ordering::SeqCst)
    }

    /// Write `batch` without sync; durable once [`NodeStore::sync`] returns.
    pub fn write_deferred(&self, batch: Batch) -> Result<(), StorageError> {
        self.kv.write(batch, false)?;
        self.durability.unsynced.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Make every write so far durable (one fsync; nothing when nothing was
    /// written since the last sync).
    pub fn sync(&self) -> Result<(), StorageError> {
        let d = &self.durability;
        if !d.unsynced.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let ledger = d.ledger_written.load(Ordering::SeqCst);
        if let Err(e) = self.kv.sync() {
            d.unsynced.store(true, Ordering::SeqCst);
            return Err(e);
        }
        d.ledger_durable.fetch_max(ledger, Ordering::SeqCst);
        Ok(())
    }

    /// Whether something was written since the last sync.
    pub fn has_unsynced(&self) -> bool {
        self.durability.unsynced.load(Ordering::SeqCst)
    }

    /// The highest ledger height a sync made durable: receipts are answered
    /// up to it only, so no acknowledged write can be lost.
    pub fn durable_ledger_height(&self) -> u64 {
        self.durability.ledger_durable.load(Ordering::SeqCst)
    }

    /// Release written ledger heights up to `height` for receipts before
    /// the next sync. Only for a commit that no crash or power loss of this
    /// node can undo: the driver calls it when the QC that committed the
    /// height carries no vote of this node that is not yet durable (every
    /// signer then persisted the lock on the committed block before
    /// signing, so every future chain holds the block, and this node,
    /// recovering, commits it again at the same height with the same
    /// receipts).
    pub fn release_ledger(&self, height: u64) {
        self.durability
            .ledger_released
            .fetch_max(height, Ordering::SeqCst);
    }

    /// The highest ledger height whose receipts may be served: durable here,
    /// or released by [`NodeStore::release_ledger`].
    pub fn served_ledger_height(&self) -> u64 {
        let d = &self.durability;
        d.ledger_durable
            .load(Ordering::SeqCst)
            .max(d.ledger_released.load(Ordering::SeqCst))
    }

    /// Open RocksDB at `path`: a new store is marked with [`STATE_LAYOUT`],
    /// an existing one must carry that mark ([`StorageError::Layout`]).
    pub fn open_rocks(path: &std::path::Path) -> Result<Self, StorageError> {
        Self::open_rocks_checked(path, true)
    }

    /// Open RocksDB at `path` without the layout mark: for a store whose
    /// leaves are another chain's (a linked datacenter's mirror), which the
    /// remote's certificates describe, not this binary's layout.
    pub fn open_rocks_unmarked(path: &std::path::Path) -> Result<Self, StorageError> {
        Self::open_rocks_checked(path, false)
    }

    fn open_rocks_checked(path: &std::path::Path, layout: bool) -> Result<Self, StorageError> {
        let kv: Arc<dyn KvBackend> = RocksKv::open(path)?;
        if layout {
            // Before `new`, which reads the store's records.
            check_layout(kv.as_ref())?;
        }
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

    /// Record a safety record under `name`; durable once
    /// [`NodeStore::sync`] returns (call it before the vote leaves).
    pub fn put_safety(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let mut batch = Batch::new();
        batch.put(Cf::Safety, name.as_bytes(), bytes);
        self.write_deferred(batch)
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

    /// Highest height whose block info and certificate chain is stored (0 = genesis only).
    pub fn committed_height(&self) -> Result<u64, StorageError> {
        match self.kv.get(Cf::Meta, META_COMMITTED)? {
            None => Ok(0),
            Some(b) => decode(&b).map_err(|e| corrupt("meta", e)),
        }
    }

    /// Stage one height's state record and receipt index into `batch` (the
    /// state commit writes it atomically with the height's tree nodes). A
    /// transaction id already indexed keeps its first location: a replayed
    /// transaction's later, rejected inclusion does not hide its receipt.
    pub fn stage_height(
        &self,
        batch: &mut Batch,
        height: u64,
        record: &HeightRecord,
    ) -> Result<(), StorageError> {
        batch.put(Cf::Heights, height.to_be_bytes(), encode(record));
        for (i, id) in record.tx_ids.iter().enumerate() {
            if self.kv.get(Cf::Receipts, &id.0)?.is_none() {
                let loc = TxLocation {
                    height,
                    index: i as u32,
                };
                batch.put(Cf::Receipts, id.0, encode(&loc));
            }
        }
        Ok(())
    }

    /// Stage the change index of `height` (every map key the block changed,
    /// all leaf kinds) into `batch`, so it lands with the height's state.
    pub fn stage_changes(batch: &mut Batch, height: u64, changed: &[StateKey]) {
        batch.put(Cf::Changes, height.to_be_bytes(), encode(&changed.to_vec()));
    }

    /// The map keys changed at committed height `height`; `None` when the
    /// height is not committed here or its entry was pruned (the cross-DC
    /// export then answers that a snapshot is needed).
    pub fn changes_at(&self, height: u64) -> Result<Option<Vec<StateKey>>, StorageError> {
        match self.kv.get(Cf::Changes, &height.to_be_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("changes", e))?)),
        }
    }

    /// Write a staged batch durably (synced).
    pub fn write_synced(&self, batch: Batch) -> Result<(), StorageError> {
        self.kv.write(batch, true)
    }

    /// Record committed block infos (oldest first, consecutive) and, when
    /// given, the certificate of the block it names (one of `infos` or an
    /// earlier stored one), atomically; durable, and their receipts served,
    /// once [`NodeStore::sync`] returns.
    pub fn commit_ledger(
        &self,
        infos: &[BlockInfo],
        cert: Option<&CommitCertificate>,
    ) -> Result<(), StorageError> {
        let Some(last) = infos.last() else {
            return Ok(());
        };
        let mut batch = Batch::new();
        for info in infos {
            batch.put(Cf::Infos, info.height.to_be_bytes(), encode(info));
        }
        if let Some(cert) = cert {
            if let Some(named) = &cert.ledger_info.commit {
                batch.put(Cf::Certs, named.height.to_be_bytes(), encode(cert));
                if named.next_validators.is_some() {
                    let mut key = META_EPOCH_PREFIX.to_vec();
                    key.extend_from_slice(&cert.ledger_info.epoch.to_be_bytes());
                    batch.put(Cf::Meta, key, encode(cert));
                }
            }
        }
        batch.put(Cf::Meta, META_COMMITTED, encode(&last.height));
        self.write_deferred(batch)?;
        self.durability
            .ledger_written
            .fetch_max(last.height, Ordering::SeqCst);
        Ok(())
    }

    /// The state record of committed height `height`.
    pub fn height_record(&self, height: u64) -> Result<Option<HeightRecord>, StorageError> {
        match self.kv.get(Cf::Heights, &height.to_be_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("heights", e))?)),
        }
    }

    /// The block info of committed height `height`.
    pub fn block_info(&self, height: u64) -> Result<Option<BlockInfo>, StorageError> {
        match self.kv.get(Cf::Infos, &height.to_be_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("infos", e))?)),
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

/// Flush the state when it advanced by this many heights since the last flush
/// (bounds what a restart after a crash executes again).
pub const FLUSH_HEIGHTS: u64 = 512;
/// ... or when it advanced at all and this long passed.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const FLUSH_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Persist the state every [`FLUSH_HEIGHTS`] heights or [`FLUSH_INTERVAL`]
/// (off the async runtime and off the driver's path) until shutdown; the
/// pruner keeps every block above the height the last flush made durable.
pub(crate) async fn run_flusher(store: NodeStore, mut shutdown: crate::shutdown::Shutdown) {
    let mut ticker = tokio::time::interval(FLUSH_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = ticker.tick() => {
                let durable = store.durable_state_height();
                let height = match store.state_height() {
                    Ok(h) => h.unwrap_or(0),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the state height failed");
                        continue;
                    }
                };
                let due = height >= durable.saturating_add(FLUSH_HEIGHTS)
                    || (height > durable && last.elapsed() >= FLUSH_INTERVAL);
                if !due {
                    continue;
                }
                last = std::time::Instant::now();
                let s = store.clone();
                let started = std::time::Instant::now();
                match tokio::task::spawn_blocking(move || s.flush_state()).await {
                    Ok(Ok(h)) => tracing::info!(
                        height = h,
                        flush_ms = started.elapsed().as_millis() as u64,
                        "state flushed"
                    ),
                    Ok(Err(e)) => tracing::warn!(error = %e, "flushing the state failed"),
                    Err(e) => tracing::warn!(error = %e, "flush task failed"),
                }
            }
        }
    }
}
