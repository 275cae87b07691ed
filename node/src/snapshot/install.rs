//! Installing a certified state snapshot, all or nothing.
//!
//! The snapshot is built in a staging store beside the node's database
//! (`data_dir/snapshot-install/`), never in it:
//!
//! 1. [`Installer::begin`] removes any earlier staging folder (a crash
//!    mid-install restarts the install) and opens a fresh store.
//! 2. [`Installer::add_chunk`] feeds one page of leaves, in key-hash order,
//!    to jmt's restorer together with a range proof of the page's last key:
//!    the leaves so far plus the proof's right siblings must hash to the
//!    certified state root, or the chunk is refused (nothing of it is kept
//!    and the caller starts over from another peer).
//! 3. [`Installer::finish`] closes the tree, checks its root once more,
//!    writes what a restart needs to stand on that root (the state commit
//!    record, the block infos, the certificate, the committed log tail with
//!    the QC that committed the root, the epoch changes, the pruned mark at
//!    the snapshot, the old safety record) and then, last, a completion
//!    mark, synced.
//! 4. [`swap`]: the old database is renamed away, the staging folder renamed
//!    into its place, the old one deleted. [`complete_pending`] runs at every
//!    start, before the database is opened: a staging folder with the mark
//!    is swapped in, one without it is deleted. Renames are atomic, so the
//!    node always opens either its old state or the whole snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jmt::proof::SparseMerkleRangeProof;
use jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use jmt::{KeyHash, RootHash};
use palisade_consensus::hotstuff::CommittedBlock;
use palisade_consensus::state::CommitMeta;
use palisade_crypto::dc::LeafChange;
use palisade_crypto::{BlockInfo, CommitCertificate, Digest, JmtHasher};

use super::CatchUpError;
use crate::error::StorageError;
use crate::storage::{Batch, Cf, NodeStore};

/// The staging folder, under the data directory.
pub const STAGING: &str = "snapshot-install";
/// The database folder, under the data directory.
pub const DB: &str = "db";
const REPLACED: &str = "db.replaced";
const COMPLETE: &[u8] = b"snapshot_install_complete";
/// Meta record: the height of the snapshot this store was installed from.
pub const SNAPSHOT_HEIGHT: &[u8] = b"snapshot_height";

/// Where a test makes the install stop as if the process died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashPoint {
    /// Run to the end.
    #[default]
    Never,
    /// After this many chunks were written to the staging store.
    AfterChunks(usize),
    /// Everything written, before the completion mark.
    BeforeMark,
    /// Mark written, old database renamed away, staging not yet in place.
    MidSwap,
}

/// What the root of an installed snapshot stands on, all verified by the
/// caller: the certified block, its commit certificate, the committed log
/// tail ending at it, and the epoch changes from genesis.
#[derive(Debug, Clone)]
pub struct SnapshotRoot {
    /// The certified block (height = tree version of the snapshot).
    pub info: BlockInfo,
    /// Its commit certificate.
    pub certificate: CommitCertificate,
    /// Committed blocks, oldest first, ending at `info` (chained by ids and
    /// infos); the last one's QC commits `info`.
    pub committed: Vec<CommittedBlock>,
    /// Epoch-change certificates, in order (what `/v1/epochs` serves).
    pub epoch_changes: Vec<CommitCertificate>,
}

/// A snapshot being installed into the staging store.
pub struct Installer {
    data_dir: PathBuf,
    store: NodeStore,
    restore: Option<JellyfishMerkleRestore<JmtHasher>>,
    height: u64,
    root: Digest,
    last: Option<Digest>,
    /// Chunks accepted so far.
    pub chunks: usize,
    /// Leaves accepted so far.
    pub leaves: usize,
    crash: CrashPoint,
}

fn io(what: &Path, e: std::io::Error) -> CatchUpError {
    CatchUpError::Local(format!("{}: {e}", what.display()))
}

fn tree_err(e: impl std::fmt::Display) -> CatchUpError {
    CatchUpError::Local(format!("staging tree: {e}"))
}

/// Make a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), CatchUpError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(dir, e))
}

impl Installer {
    /// Start installing the state at `height` whose certified root is
    /// `root`, into a fresh staging store under `data_dir`.
    pub fn begin(
        data_dir: &Path,
        height: u64,
        root: Digest,
        crash: CrashPoint,
    ) -> Result<Self, CatchUpError> {
        let staging = data_dir.join(STAGING);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
        let store = NodeStore::open_rocks(&staging)?;
        let writer = Arc::new(store.tree().clone());
        let restore =
            JellyfishMerkleRestore::<JmtHasher>::new_overwrite(writer, height, RootHash(root.0))
                .map_err(tree_err)?;
        Ok(Installer {
            data_dir: data_dir.to_path_buf(),
            store,
            restore: Some(restore),
            height,
            root,
            last: None,
            chunks: 0,
            leaves: 0,
            crash,
        })
    }

    /// Add one page of leaves (ascending key hashes, after every earlier
    /// one) with the range proof of its last key. A refused chunk spoils
    /// the restorer (it took the leaves before checking): the caller starts
    /// over.
    pub fn add_chunk(
        &mut self,
        leaves: Vec<LeafChange>,
        proof: SparseMerkleRangeProof<JmtHasher>,
    ) -> Result<(), CatchUpError> {
        let bad = |reason: String| CatchUpError::BadChunk(reason);
        let mut chunk = Vec::with_capacity(leaves.len());
        let mut prev = self.last;
        for leaf in leaves {
            if prev.is_some_and(|p| leaf.key_hash <= p) {
                return Err(bad("leaves do not ascend".into()));
            }
            prev = Some(leaf.key_hash);
            let value = leaf
                .value
                .ok_or_else(|| bad("a snapshot leaf without a value".into()))?;
            chunk.push((KeyHash(leaf.key_hash.0), value));
        }
        if chunk.is_empty() {
            return Err(bad("an empty chunk".into()));
        }
        let n = chunk.len();
        let restore = self
            .restore
            .as_mut()
            .ok_or_else(|| bad("the install was spoilt by an earlier chunk".into()))?;
        // jmt asserts on some inputs; a peer's bytes must never take the
        // node down, so a panic is a refused chunk.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            restore.add_chunk(chunk, proof)
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.restore = None;
                return Err(bad(format!(
                    "does not prove against the certified root: {e}"
                )));
            }
            Err(_) => {
                self.restore = None;
                return Err(bad("the tree refused the chunk".into()));
            }
        }
        self.last = prev;
        self.chunks += 1;
        self.leaves += n;
        if self.crash == CrashPoint::AfterChunks(self.chunks) {
            return Err(CatchUpError::Crashed("after chunks"));
        }
        Ok(())
    }

    /// Close the tree, check its root, write the root's records and the
    /// completion mark (synced), then swap the staging store in.
    pub fn finish(
        mut self,
        root: &SnapshotRoot,
        safety: Option<Vec<u8>>,
    ) -> Result<(), CatchUpError> {
        let restore = self
            .restore
            .take()
            .ok_or_else(|| CatchUpError::BadChunk("the install was spoilt".into()))?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| restore.finish()))
            .map_err(|_| CatchUpError::BadChunk("the tree refused to close".into()))?
            .map_err(tree_err)?;
        let tree = jmt::JellyfishMerkleTree::<_, JmtHasher>::new(self.store.tree());
        let got = tree
            .get_root_hash_option(self.height)
            .map_err(tree_err)?
            .map(|r| Digest(r.0));
        if got != Some(self.root) || root.info.state_root != self.root {
            return Err(CatchUpError::BadChunk(format!(
                "the installed tree's root {got:?} is not the certified {}",
                self.root
            )));
        }
        self.write_root(root, safety)?;
        if self.crash == CrashPoint::BeforeMark {
            return Err(CatchUpError::Crashed("before the completion mark"));
        }
        let mut mark = Batch::new();
        mark.put(Cf::Meta, COMPLETE, self.height.to_be_bytes());
        self.store.write_synced(mark)?;
        let crash = self.crash;
        let data_dir = self.data_dir.clone();
        drop(self);
        swap(&data_dir, crash)
    }

    fn write_root(&self, root: &SnapshotRoot, safety: Option<Vec<u8>>) -> Result<(), CatchUpError> {
        let info = &root.info;
        let last = root
            .committed
            .last()
            .filter(|c| c.info == *info)
            .ok_or_else(|| {
                CatchUpError::Local("the committed tail does not end at the root".into())
            })?;
        let meta = CommitMeta {
            block_id: info.block_id,
            height: info.height,
            epoch: last.block.epoch,
            timestamp_ms: info.timestamp_ms,
            state_root: info.state_root,
            tx_root: info.tx_root,
        };
        let store = &self.store;
        let mut batch = Batch::new();
        crate::storage::stage_state_meta(&mut batch, &meta);
        for cert in &root.epoch_changes {
            crate::storage::stage_epoch_change(&mut batch, cert);
        }
        let low = root
            .committed
            .first()
            .map_or(info.height, |c| c.info.height);
        crate::storage::prune::stage_pruned_below(&mut batch, low);
        batch.put(Cf::Meta, SNAPSHOT_HEIGHT, info.height.to_be_bytes());
        if let Some(safety) = safety {
            batch.put(Cf::Safety, b"safety".to_vec(), safety);
        }
        store.write_deferred(batch)?;
        store.put_committed_blocks(&root.committed)?;
        let infos: Vec<BlockInfo> = root.committed.iter().map(|c| c.info.clone()).collect();
        store.commit_ledger(&infos, Some(&root.certificate))?;
        store.sync()?;
        Ok(())
    }
}

/// Move a complete staging store into place (see the module doc).
fn swap(data_dir: &Path, crash: CrashPoint) -> Result<(), CatchUpError> {
    let db = data_dir.join(DB);
    let staging = data_dir.join(STAGING);
    let replaced = data_dir.join(REPLACED);
    if db.exists() {
        if replaced.exists() {
            std::fs::remove_dir_all(&replaced).map_err(|e| io(&replaced, e))?;
        }
        std::fs::rename(&db, &replaced).map_err(|e| io(&db, e))?;
        sync_dir(data_dir)?;
    }
    if crash == CrashPoint::MidSwap {
        return Err(CatchUpError::Crashed("mid swap"));
    }
    std::fs::rename(&staging, &db).map_err(|e| io(&staging, e))?;
    sync_dir(data_dir)?;
    if replaced.exists() {
        std::fs::remove_dir_all(&replaced).map_err(|e| io(&replaced, e))?;
    }
    Ok(())
}

/// At start, before the database is opened: finish an install whose
/// staging store is complete, drop one that is not. Returns the height of a
/// snapshot swapped in now.
pub fn complete_pending(data_dir: &Path) -> Result<Option<u64>, CatchUpError> {
    let staging = data_dir.join(STAGING);
    let replaced = data_dir.join(REPLACED);
    if !staging.exists() {
        if replaced.exists() {
            std::fs::remove_dir_all(&replaced).map_err(|e| io(&replaced, e))?;
        }
        return Ok(None);
    }
    // A staging store RocksDB cannot open (a crash while it was created,
    // a full disk) is incomplete by definition: dropped, never a reason to
    // refuse every start (review S6).
    let complete = match NodeStore::open_rocks(&staging) {
        Ok(store) => store.kv().get(Cf::Meta, COMPLETE).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the staging store's completion mark is unreadable");
            None
        }),
        // A store another release wrote (perhaps a finished install): not
        // this binary's to drop or to swap in; the start stops and says why.
        Err(e @ StorageError::Layout { .. }) => {
            return Err(CatchUpError::Local(format!(
                "a snapshot install left by another release in {}: {e} (or remove that \
                 folder, with the node stopped, to drop the install)",
                staging.display()
            )))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the staging store does not open");
            None
        }
    };
    match complete {
        Some(h) => {
            let height = u64::from_be_bytes(
                h.as_slice()
                    .try_into()
                    .map_err(|_| CatchUpError::Local("bad completion mark".into()))?,
            );
            swap(data_dir, CrashPoint::Never)?;
            tracing::info!(
                height,
                "finished installing a snapshot left by an earlier run"
            );
            Ok(Some(height))
        }
        None => {
            std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
            // A swap cut short renamed the old database away: put it back.
            let db = data_dir.join(DB);
            if !db.exists() && replaced.exists() {
                std::fs::rename(&replaced, &db).map_err(|e| io(&replaced, e))?;
            }
            sync_dir(data_dir)?;
            tracing::warn!("dropped an unfinished snapshot install; it starts over");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_store_that_does_not_open_is_dropped_and_the_old_database_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A staging folder RocksDB refuses (a torn CURRENT file).
        let staging = d.join(STAGING);
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("CURRENT"), b"MANIFEST-999999").unwrap();
        assert!(
            NodeStore::open_rocks(&staging).is_err(),
            "the torn store opens"
        );
        assert_eq!(complete_pending(d).unwrap(), None);
        assert!(!staging.exists(), "dropped");
        // The same after a swap cut short: the old database comes back.
        {
            let old = NodeStore::open_rocks(&d.join(REPLACED)).unwrap();
            drop(old);
        }
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("CURRENT"), b"MANIFEST-999999").unwrap();
        assert_eq!(complete_pending(d).unwrap(), None);
        assert!(!staging.exists() && !d.join(REPLACED).exists());
        assert!(
            NodeStore::open_rocks(&d.join(DB)).is_ok(),
            "the old database is back"
        );
    }

    /// A staging store of another state layout (an earlier release's
    /// install, perhaps finished) is neither dropped nor swapped in: the
    /// start stops with the layout's error and every file stays.
    #[test]
    fn a_staging_store_of_another_layout_stops_the_start_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let staging = d.join(STAGING);
        {
            use crate::storage::KvBackend;
            let kv = crate::storage::RocksKv::open(&staging).unwrap();
            let mut b = Batch::new();
            b.put(Cf::Meta, COMPLETE, 7u64.to_be_bytes());
            kv.write(b, true).unwrap();
        }
        {
            let old = NodeStore::open_rocks(&d.join(REPLACED)).unwrap();
            drop(old);
        }
        let err = complete_pending(d).unwrap_err().to_string();
        assert!(err.contains("state layout 1"), "{err}");
        assert!(staging.exists(), "the staging store was dropped");
        assert!(d.join(REPLACED).exists() && !d.join(DB).exists());
    }
}
