//! Starting an audit from a certified snapshot instead of genesis
//! (`palisade-audit --from-snapshot`), for nodes that prune their history.
//!
//! Trust still comes from network.json alone:
//! 1. [`EpochChain`] follows the epoch-change certificates (`/v1/epochs`)
//!    from network.json's genesis set, each verified by the set it ends,
//!    up to the snapshot height `H`; the head certificate of `H`
//!    (`/v1/export/head`) must verify with the set of its epoch, an epoch
//!    that had not ended below `H` ([`EpochChain::verify_head`]).
//! 2. The block at `H` (`/v1/audit/blocks/H`) must be the certified one.
//! 3. [`SnapshotRestore`] takes the leaves at `H` page by page
//!    (`/v1/export/snapshot`, `(key hash, value)` pairs in key-hash order),
//!    each page with the range proof of its last key (`/v1/snapshot/proof`)
//!    checked against the certified state root before the next page is
//!    asked for: a tampered page is named by its number. The tree it
//!    rebuilds must have the certified root.
//! 4. The registry state machine needs no keys: it reads the map by key
//!    hash ([`StateStore::value`]) and walks the tree by node keys, so the
//!    restored [`SnapshotStore`] is a complete state at version `H`, and
//!    [`crate::audit::Auditor::from_snapshot`] re-executes every block
//!    after `H` against it exactly as the audit from genesis does.
//!
//! Bounds: at most `MAX_EXPORT_LEAVES` leaves a page and
//! [`MAX_SNAPSHOT_LEAVES`] in all; at most [`MAX_EPOCH_CHANGES`] epoch
//! changes followed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use palisade_consensus::hotstuff::CommittedBlock;
use palisade_consensus::state::jmt::proof::SparseMerkleRangeProof;
use palisade_consensus::state::jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use palisade_consensus::state::jmt::storage::{
    LeafNode, Node, NodeBatch, NodeKey, TreeReader, TreeWriter,
};
use palisade_consensus::state::jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, Version};
use palisade_consensus::state::{CommitMeta, StateCommit, StateStore, StoreError};
use palisade_crypto::dc::{LeafChange, MAX_EXPORT_LEAVES};
use palisade_crypto::{BlockInfo, CommitCertificate, Digest, JmtHasher, NetworkFile, ValidatorSet};

/// Most leaves a snapshot may hold (the auditor keeps them in memory).
pub const MAX_SNAPSHOT_LEAVES: usize = 4 << 20;
/// Most epoch changes followed to reach a snapshot.
pub const MAX_EPOCH_CHANGES: usize = 100_000;

/// Why a snapshot cannot be the audit's start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A certificate (the head's or an epoch change's) does not verify.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// A page, or the tree the pages build, is not the certified state.
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    /// The block served at the snapshot height is not the certified one.
    #[error("altered block: {0}")]
    AlteredBlock(String),
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<NodeKey, Node>,
    /// Per key, `(version, value)` in increasing version order.
    values: HashMap<KeyHash, Vec<(Version, Option<OwnedValue>)>>,
    last: Option<CommitMeta>,
}

/// An in-memory [`StateStore`] that starts at a snapshot height `H`: the
/// restore writes the tree of version `H` into it (as a jmt
/// [`TreeWriter`]), [`SnapshotStore::start_at`] records the certified
/// block, and from then on it takes commits `H+1, H+2, ...` like
/// `MemStore` takes them from genesis.
#[derive(Default)]
pub struct SnapshotStore {
    inner: RwLock<Inner>,
}

impl SnapshotStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the certified block the restored tree belongs to; once only.
    fn start_at(&self, meta: CommitMeta) -> Result<(), StoreError> {
        let mut inner = self.write();
        if let Some(last) = &inner.last {
            return Err(StoreError::OutOfOrder {
                got: meta.height,
                stored: Some(last.height),
            });
        }
        inner.last = Some(meta);
        Ok(())
    }

    fn put_batch(inner: &mut Inner, batch: &NodeBatch) {
        for (key, node) in batch.nodes() {
            inner.nodes.insert(key.clone(), node.clone());
        }
        for ((version, key_hash), value) in batch.values() {
            inner
                .values
                .entry(*key_hash)
                .or_default()
                .push((*version, value.clone()));
        }
    }
}

impl TreeWriter for SnapshotStore {
    fn write_node_batch(&self, batch: &NodeBatch) -> anyhow::Result<()> {
        let mut inner = self.write();
        if inner.last.is_some() {
            anyhow::bail!("the snapshot is already installed");
        }
        Self::put_batch(&mut inner, batch);
        Ok(())
    }
}

impl TreeReader for SnapshotStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.read().nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(StateStore::value(self, max_version, key_hash)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("rightmost-leaf lookup is not supported (the restore starts afresh)")
    }
}

impl StateStore for SnapshotStore {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        Ok(self.read().nodes.get(key).cloned())
    }

    fn value(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        let inner = self.read();
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
        Ok(self.read().last.clone())
    }

    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError> {
        let mut inner = self.write();
        let stored = inner.last.as_ref().map(|m| m.height);
        // No genesis here: the first commit is the snapshot's (start_at).
        if stored.is_none_or(|h| commit.meta.height != h + 1) {
            return Err(StoreError::OutOfOrder {
                got: commit.meta.height,
                stored,
            });
        }
        Self::put_batch(&mut inner, &commit.tree.node_batch);
        inner.last = Some(commit.meta.clone());
        Ok(())
    }
}

/// The validator sets from genesis to a snapshot height, each reached by a
/// verified epoch-change certificate.
#[derive(Debug, Clone)]
pub struct EpochChain {
    chain_id: String,
    genesis_hash: Digest,
    /// Per epoch: its set and, once ended, the height of its last block.
    sets: BTreeMap<u64, (ValidatorSet, Option<u64>)>,
}

impl EpochChain {
    /// Follow `changes` (in order, as `/v1/epochs` serves them) from
    /// network.json's set, up to the changes that end at or below `height`;
    /// later ones are left to re-execution. (A change ending at `height`
    /// is followed so that a head certificate of either epoch verifies,
    /// as the client's trust chain accepts it.)
    pub fn follow(
        network: &NetworkFile,
        changes: &[CommitCertificate],
        height: u64,
    ) -> Result<Self, SnapshotError> {
        let bad = |e: String| SnapshotError::BadCertificate(e);
        if changes.len() > MAX_EPOCH_CHANGES {
            return Err(bad(format!("more than {MAX_EPOCH_CHANGES} epoch changes")));
        }
        let mut sets = BTreeMap::new();
        let mut current = network.validators.clone();
        for cert in changes {
            let li = &cert.ledger_info;
            let end = li.commit.as_ref().map(|b| b.height);
            if end.is_none_or(|e| e > height) {
                break;
            }
            if li.epoch != current.epoch {
                return Err(bad(format!(
                    "epoch change signed in epoch {}, the chain is at epoch {}",
                    li.epoch, current.epoch
                )));
            }
            if li.genesis_hash != network.genesis_hash {
                return Err(bad(format!(
                    "epoch change of epoch {} names genesis {}, the network's is {}",
                    li.epoch, li.genesis_hash, network.genesis_hash
                )));
            }
            let next = cert
                .next_epoch(&current, &network.chain_id)
                .map_err(|e| bad(format!("epoch change of epoch {}: {e}", li.epoch)))?;
            sets.insert(current.epoch, (current, end));
            current = next;
        }
        sets.insert(current.epoch, (current, None));
        Ok(EpochChain {
            chain_id: network.chain_id.clone(),
            genesis_hash: network.genesis_hash,
            sets,
        })
    }

    /// Of the epoch-change lists several nodes served, the chain that
    /// reaches the newest epoch at or below `height` (lists that do not
    /// verify are left out; a node cannot forge a change, only withhold
    /// one). The audited node alone could withhold the change that retired
    /// an epoch whose leaked keys then sign a made-up head (review-3 AUD-1);
    /// one honest node's list brings it back, and the head is refused.
    /// `Err` only when no list verifies (the first list's error).
    pub fn longest(
        network: &NetworkFile,
        lists: &[Vec<CommitCertificate>],
        height: u64,
    ) -> Result<Self, SnapshotError> {
        let mut best: Option<Self> = None;
        let mut first_error = None;
        for list in lists {
            match Self::follow(network, list, height) {
                Ok(chain) => {
                    if best
                        .as_ref()
                        .is_none_or(|b| chain.latest().epoch > b.latest().epoch)
                    {
                        best = Some(chain);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        best.ok_or_else(|| {
            first_error.unwrap_or_else(|| SnapshotError::BadCertificate("no epoch changes".into()))
        })
    }

    /// The newest epoch reached (the one blocks after the last followed
    /// change run in).
    pub fn latest(&self) -> &ValidatorSet {
        &self
            .sets
            .values()
            .next_back()
            .expect("the genesis set at least")
            .0
    }

    /// Verify the head certificate of `height`: the set of its epoch signs
    /// it, that epoch had not ended below `height`, and it certifies a
    /// block at `height` of this network. Returns the certified block.
    pub fn verify_head(
        &self,
        cert: &CommitCertificate,
        height: u64,
    ) -> Result<BlockInfo, SnapshotError> {
        let bad = |e: String| SnapshotError::BadCertificate(e);
        let li = &cert.ledger_info;
        if li.genesis_hash != self.genesis_hash {
            return Err(bad(format!(
                "names genesis {}, the network's is {}",
                li.genesis_hash, self.genesis_hash
            )));
        }
        let (set, ended) = self.sets.get(&li.epoch).ok_or_else(|| {
            bad(format!(
                "signed in epoch {}, but the certified epoch changes below height {height} reach epoch {}",
                li.epoch,
                self.latest().epoch
            ))
        })?;
        if let Some(end) = ended.filter(|e| *e < height) {
            return Err(bad(format!(
                "signed in epoch {}, which ended at height {end}",
                li.epoch
            )));
        }
        let verified = cert
            .verify(set, &self.chain_id)
            .map_err(|e| bad(e.to_string()))?;
        let info = verified.block().clone();
        if info.height != height {
            return Err(bad(format!(
                "certifies height {}, the head names {height}",
                info.height
            )));
        }
        Ok(info)
    }
}

/// The certified start of an audit: the block at `H` and the validators of
/// the blocks after it.
#[derive(Debug, Clone)]
pub struct SnapshotStart {
    /// The certified block info at `H`.
    pub info: BlockInfo,
    /// The epoch block `H` ran in.
    pub epoch: u64,
    /// The validators of height `H + 1`.
    pub validators: ValidatorSet,
}

impl SnapshotStart {
    /// Check the block a node serves at the certified height against the
    /// certified info and the epoch chain.
    pub fn new(
        chain: &EpochChain,
        info: BlockInfo,
        block: &CommittedBlock,
    ) -> Result<Self, SnapshotError> {
        let bad = |e: String| SnapshotError::AlteredBlock(e);
        if block.info != info || block.block.info() != info {
            return Err(bad(format!(
                "the block served at height {} is not the certified one",
                info.height
            )));
        }
        Self::in_epoch(chain, info, block.block.epoch)
    }

    /// The start at the certified `info`, whose block ran in `epoch`: the
    /// latest epoch followed, or the one before it when a followed change
    /// ends at this very block.
    pub fn in_epoch(
        chain: &EpochChain,
        info: BlockInfo,
        epoch: u64,
    ) -> Result<Self, SnapshotError> {
        let latest = chain.latest();
        // Block H runs in the latest epoch followed, or ends the epoch
        // before it (a change ending at H was followed: its info names the
        // latest set).
        let ends_here = epoch + 1 == latest.epoch
            && chain.sets.get(&epoch).and_then(|s| s.1) == Some(info.height);
        if epoch != latest.epoch && !ends_here {
            return Err(SnapshotError::BadCertificate(format!(
                "the block at {} runs in epoch {epoch}, the certified epoch changes to it reach epoch {}",
                info.height, latest.epoch
            )));
        }
        if ends_here && info.next_validators.as_ref() != Some(latest) {
            return Err(SnapshotError::BadCertificate(format!(
                "the epoch change at {} names another set than the certified block there",
                info.height
            )));
        }
        let validators = info
            .next_validators
            .clone()
            .unwrap_or_else(|| latest.clone());
        Ok(SnapshotStart {
            epoch,
            validators,
            info,
        })
    }
}

/// Rebuilds the tree at a certified height from pages of leaves, each
/// checked against the certified root.
pub struct SnapshotRestore {
    store: Arc<SnapshotStore>,
    restore: Option<JellyfishMerkleRestore<JmtHasher>>,
    height: u64,
    root: Digest,
    last: Option<Digest>,
    /// Pages taken.
    pub pages: usize,
    /// Leaves taken.
    pub leaves: usize,
}

impl SnapshotRestore {
    /// Start restoring the state whose certified root is `root` at `height`.
    pub fn new(height: u64, root: Digest) -> Result<Self, SnapshotError> {
        let store = Arc::new(SnapshotStore::default());
        let restore = JellyfishMerkleRestore::<JmtHasher>::new_overwrite(
            store.clone(),
            height,
            RootHash(root.0),
        )
        .map_err(|e| SnapshotError::BadSnapshot(e.to_string()))?;
        Ok(SnapshotRestore {
            store,
            restore: Some(restore),
            height,
            root,
            last: None,
            pages: 0,
            leaves: 0,
        })
    }

    /// Take the next page: its leaves must ascend past the previous page's
    /// and, with them, prove against the certified root (`proof` is the
    /// range proof of the page's last key).
    pub fn add_page(
        &mut self,
        leaves: Vec<LeafChange>,
        proof: SparseMerkleRangeProof<JmtHasher>,
    ) -> Result<(), SnapshotError> {
        let page = self.pages + 1;
        let bad = |reason: String| SnapshotError::BadSnapshot(format!("page {page}: {reason}"));
        if leaves.is_empty() {
            return Err(bad("no leaves".into()));
        }
        if leaves.len() > MAX_EXPORT_LEAVES || self.leaves + leaves.len() > MAX_SNAPSHOT_LEAVES {
            return Err(bad(format!(
                "above the bounds ({MAX_EXPORT_LEAVES} a page, {MAX_SNAPSHOT_LEAVES} in all)"
            )));
        }
        let mut chunk = Vec::with_capacity(leaves.len());
        let mut prev = self.last;
        for leaf in leaves {
            if prev.is_some_and(|p| leaf.key_hash <= p) {
                return Err(bad(format!("leaf {} does not ascend", leaf.key_hash)));
            }
            prev = Some(leaf.key_hash);
            let value = leaf
                .value
                .ok_or_else(|| bad(format!("leaf {} without a value", leaf.key_hash)))?;
            chunk.push((KeyHash(leaf.key_hash.0), value));
        }
        let n = chunk.len();
        let restore = self
            .restore
            .as_mut()
            .ok_or_else(|| bad("an earlier page spoilt the restore".into()))?;
        // jmt asserts on some malformed input: a panic is a refused page.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            restore.add_chunk(chunk, proof)
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.restore = None;
                return Err(bad(format!(
                    "does not prove against the certified state root {}: {e}",
                    self.root
                )));
            }
            Err(_) => {
                self.restore = None;
                return Err(bad("the tree refused it".into()));
            }
        }
        self.last = prev;
        self.pages += 1;
        self.leaves += n;
        Ok(())
    }

    /// The key hash the next page starts after.
    pub fn last_key(&self) -> Option<Digest> {
        self.last
    }

    /// Close the tree, check its root is the certified one, and record the
    /// certified block (`epoch`: the epoch block `H` ran in). The store is
    /// then a complete state at `H`.
    pub fn finish(
        mut self,
        info: &BlockInfo,
        epoch: u64,
    ) -> Result<Arc<SnapshotStore>, SnapshotError> {
        let bad = |reason: String| SnapshotError::BadSnapshot(reason);
        if info.height != self.height || info.state_root != self.root {
            return Err(bad("restored for another block".into()));
        }
        let restore = self
            .restore
            .take()
            .ok_or_else(|| bad("an earlier page spoilt the restore".into()))?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| restore.finish()))
            .map_err(|_| bad("the tree refused to close".into()))?
            .map_err(|e| bad(format!("the tree does not close: {e}")))?;
        let got = JellyfishMerkleTree::<_, JmtHasher>::new(self.store.as_ref())
            .get_root_hash_option(self.height)
            .map_err(|e| bad(format!("the restored tree: {e}")))?
            .map(|r| Digest(r.0));
        if got != Some(self.root) {
            return Err(bad(format!(
                "the restored tree's root {got:?} is not the certified {} ({} leaves in {} pages)",
                self.root, self.leaves, self.pages
            )));
        }
        self.store
            .start_at(CommitMeta {
                block_id: info.block_id,
                height: info.height,
                epoch,
                timestamp_ms: info.timestamp_ms,
                state_root: info.state_root,
                tx_root: info.tx_root,
            })
            .map_err(|e| bad(e.to_string()))?;
        Ok(self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::{LedgerInfo, SecretKey, Validator};

    const CHAIN: &str = "audit-snapshot-test";
    const GENESIS: Digest = Digest([9; 32]);

    fn keys(epoch: u64) -> Vec<SecretKey> {
        (0..4u8)
            .map(|i| SecretKey::from_seed([epoch as u8 * 16 + i + 1; 32]))
            .collect()
    }

    fn set(epoch: u64) -> ValidatorSet {
        ValidatorSet {
            epoch,
            validators: keys(epoch)
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        }
    }

    fn network() -> NetworkFile {
        NetworkFile {
            chain_id: CHAIN.into(),
            datacenter: "dc1".into(),
            genesis_hash: GENESIS,
            validators: set(0),
            nodes: Vec::new(),
        }
    }

    fn block(height: u64, next: Option<ValidatorSet>) -> BlockInfo {
        BlockInfo {
            round: height + 1,
            height,
            block_id: Digest([height as u8; 32]),
            state_root: Digest([height as u8 + 100; 32]),
            tx_root: Digest([1; 32]),
            timestamp_ms: 1_000 + height,
            next_validators: next,
            parent_info: Digest::ZERO,
        }
    }

    /// A certificate of `block` by three of epoch `epoch`'s four.
    fn certify(epoch: u64, block: BlockInfo) -> CommitCertificate {
        let ledger_info = LedgerInfo {
            chain_id: CHAIN.into(),
            genesis_hash: GENESIS,
            epoch,
            commit: Some(block),
            consensus_data_hash: Digest([7; 32]),
        };
        let digest = ledger_info.digest();
        CommitCertificate {
            signatures: keys(epoch)[..3]
                .iter()
                .map(|k| (k.public(), k.sign_digest(&digest)))
                .collect(),
            ledger_info,
        }
    }

    /// Epoch 0 ends at height 5, epoch 1 at height 10.
    fn changes() -> Vec<CommitCertificate> {
        vec![
            certify(0, block(5, Some(set(1)))),
            certify(1, block(10, Some(set(2)))),
        ]
    }

    #[test]
    fn follows_epoch_changes_below_the_snapshot() {
        let chain = EpochChain::follow(&network(), &changes(), 12).expect("follows");
        assert_eq!(chain.latest().epoch, 2);
        let info = chain
            .verify_head(&certify(2, block(12, None)), 12)
            .expect("the head verifies with epoch 2");
        assert_eq!(info, block(12, None));
        // A change ending at the snapshot itself: epoch 1 certifies its
        // own last block, and the next validators are epoch 2's.
        let chain = EpochChain::follow(&network(), &changes(), 10).expect("follows");
        assert_eq!(chain.latest().epoch, 2);
        let info = chain
            .verify_head(&certify(1, block(10, Some(set(2)))), 10)
            .expect("epoch 1 certifies its last block");
        // The next epoch may certify it too (as the client's trust chain accepts).
        chain
            .verify_head(&certify(2, block(10, Some(set(2)))), 10)
            .expect("epoch 2 certifies the block that started it");
        let start = SnapshotStart::in_epoch(&chain, info.clone(), 1).expect("ends epoch 1");
        assert_eq!(start.validators.epoch, 2);
        // Its info must name the followed set.
        let other = BlockInfo {
            next_validators: Some(set(0)),
            ..info.clone()
        };
        assert!(SnapshotStart::in_epoch(&chain, other, 1).is_err());
        // Above the change, the block must run in the latest epoch.
        let chain = EpochChain::follow(&network(), &changes(), 12).expect("follows");
        let at_12 = block(12, None);
        assert!(SnapshotStart::in_epoch(&chain, at_12.clone(), 1).is_err());
        let start = SnapshotStart::in_epoch(&chain, at_12, 2).expect("runs in epoch 2");
        assert_eq!(start.validators.epoch, 2);
    }

    #[test]
    fn refuses_a_head_of_a_retired_unknown_or_wrong_epoch() {
        let chain = EpochChain::follow(&network(), &changes(), 12).expect("follows");
        // Epoch 1 ended at 10: its signers cannot certify height 12.
        let err = chain.verify_head(&certify(1, block(12, None)), 12);
        assert!(
            matches!(&err, Err(SnapshotError::BadCertificate(r)) if r.contains("ended at height 10")),
            "{err:?}"
        );
        // A withheld epoch change: epoch 2 is unknown.
        let chain = EpochChain::follow(&network(), &changes()[..1], 12).expect("follows");
        let err = chain.verify_head(&certify(2, block(12, None)), 12);
        assert!(
            matches!(&err, Err(SnapshotError::BadCertificate(r)) if r.contains("reach epoch 1")),
            "{err:?}"
        );
        // A head certifying another height than it names.
        let chain = EpochChain::follow(&network(), &changes(), 12).expect("follows");
        assert!(chain.verify_head(&certify(2, block(11, None)), 12).is_err());
    }

    /// Review-3 AUD-1: the audited node withholds the change that retired
    /// epoch 0 and serves a head signed with epoch 0's (leaked) keys. Alone
    /// it passes; with another node's list, which has the change, the
    /// longest chain reaches epoch 2 and the head is refused.
    #[test]
    fn a_change_one_node_withholds_is_taken_from_another() {
        let forged_head = certify(0, block(12, None));
        let withheld: Vec<CommitCertificate> = Vec::new();
        let alone =
            EpochChain::longest(&network(), std::slice::from_ref(&withheld), 12).expect("follows");
        assert!(
            alone.verify_head(&forged_head, 12).is_ok(),
            "alone, the lie passes"
        );
        // Another node's list, plus a list that does not verify (ignored).
        let mut bogus = changes();
        bogus.swap(0, 1);
        let chain = EpochChain::longest(&network(), &[withheld, bogus, changes()], 12)
            .expect("one list verifies");
        assert_eq!(chain.latest().epoch, 2);
        let err = chain.verify_head(&forged_head, 12);
        assert!(
            matches!(&err, Err(SnapshotError::BadCertificate(r)) if r.contains("ended at height 5")),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_an_epoch_change_not_signed_by_the_set_it_ends() {
        // Epoch 1's change signed by epoch 2's keys (a made-up chain).
        let mut forged = changes();
        let li = forged[1].ledger_info.clone();
        forged[1] = certify(2, li.commit.expect("a block"));
        forged[1].ledger_info.epoch = 1;
        let err = EpochChain::follow(&network(), &forged, 12);
        assert!(
            matches!(&err, Err(SnapshotError::BadCertificate(r)) if r.contains("epoch change of epoch 1")),
            "{err:?}"
        );
        // Out of order: epoch 1's change first.
        let mut swapped = changes();
        swapped.swap(0, 1);
        assert!(EpochChain::follow(&network(), &swapped, 12).is_err());
    }

    /// A tree of `n` leaves at version 0; its leaves in key-hash order and
    /// a source to prove ranges from.
    fn source(n: u8) -> (SnapshotStore, Digest, Vec<LeafChange>) {
        let store = SnapshotStore::default();
        let leaves: BTreeMap<KeyHash, OwnedValue> = (0..n)
            .map(|i| (KeyHash::with::<JmtHasher>([i]), vec![i; 1 + i as usize]))
            .collect();
        let (root, batch) = JellyfishMerkleTree::<_, JmtHasher>::new(&store)
            .put_value_set(leaves.iter().map(|(k, v)| (*k, Some(v.clone()))), 0)
            .expect("tree");
        store
            .write_node_batch(&batch.node_batch)
            .expect("source written");
        let leaves = leaves
            .into_iter()
            .map(|(k, v)| LeafChange {
                key_hash: Digest(k.0),
                value: Some(v),
            })
            .collect();
        (store, Digest(root.0), leaves)
    }

    fn proof(store: &SnapshotStore, last: &LeafChange) -> SparseMerkleRangeProof<JmtHasher> {
        JellyfishMerkleTree::<_, JmtHasher>::new(store)
            .get_range_proof(KeyHash(last.key_hash.0), 0)
            .expect("range proof")
    }

    fn restore_pages(
        n: u8,
        page: usize,
        tamper: impl Fn(usize, &mut Vec<LeafChange>),
    ) -> Result<(), SnapshotError> {
        let (src, root, leaves) = source(n);
        let info = BlockInfo {
            state_root: root,
            ..block(0, None)
        };
        let mut restore = SnapshotRestore::new(0, root)?;
        for (i, chunk) in leaves.chunks(page).enumerate() {
            let p = proof(&src, chunk.last().expect("a leaf"));
            let mut chunk = chunk.to_vec();
            tamper(i, &mut chunk);
            restore.add_page(chunk, p)?;
        }
        restore.finish(&info, 0).map(|_| ())
    }

    #[test]
    fn pages_that_prove_rebuild_the_certified_state() {
        restore_pages(50, 7, |_, _| {}).expect("restored");
        let (src, root, leaves) = source(50);
        let mut restore = SnapshotRestore::new(0, root).expect("restore");
        for chunk in leaves.chunks(7) {
            let p = proof(&src, chunk.last().expect("a leaf"));
            restore.add_page(chunk.to_vec(), p).expect("page proves");
        }
        let info = BlockInfo {
            state_root: root,
            ..block(0, None)
        };
        let store = restore.finish(&info, 0).expect("closes on the root");
        for l in &leaves {
            assert_eq!(
                StateStore::value(store.as_ref(), 0, KeyHash(l.key_hash.0)).expect("read"),
                l.value
            );
        }
        assert_eq!(
            store.last_commit().expect("meta").map(|m| m.height),
            Some(0)
        );
    }

    #[test]
    fn a_tampered_page_is_named() {
        // An altered value in page 3.
        let err = restore_pages(50, 7, |i, c| {
            if i == 2 {
                c[1].value = Some(b"forged".to_vec());
            }
        });
        assert!(
            matches!(&err, Err(SnapshotError::BadSnapshot(r)) if r.starts_with("page 3: does not prove")),
            "{err:?}"
        );
        // A leaf left out of page 2.
        let err = restore_pages(50, 7, |i, c| {
            if i == 1 {
                c.remove(0);
            }
        });
        assert!(
            matches!(&err, Err(SnapshotError::BadSnapshot(r)) if r.starts_with("page 2: ")),
            "{err:?}"
        );
        // Pages out of order.
        let err = restore_pages(50, 7, |i, c| {
            if i == 1 {
                c.reverse();
            }
        });
        assert!(
            matches!(&err, Err(SnapshotError::BadSnapshot(r)) if r.contains("does not ascend")),
            "{err:?}"
        );
    }

    #[test]
    fn a_truncated_snapshot_does_not_close_on_the_root() {
        let (src, root, leaves) = source(50);
        let info = BlockInfo {
            state_root: root,
            ..block(0, None)
        };
        let mut restore = SnapshotRestore::new(0, root).expect("restore");
        let first = leaves[..20].to_vec();
        let p = proof(&src, first.last().expect("a leaf"));
        restore.add_page(first, p).expect("page 1 proves");
        let err = restore.finish(&info, 0).map(|_| ());
        assert!(
            matches!(&err, Err(SnapshotError::BadSnapshot(_))),
            "{err:?}"
        );
    }
}
