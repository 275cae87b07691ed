//! The tree of executed, uncommitted blocks above the committed root, the
//! QCs known for them, and a window of recently committed blocks.
//!
//! Invariants: every block in the tree was validated and executed (or is an
//! empty reconfiguration-suffix block) and descends from the root; the highest
//! QC always certifies a block in the tree or the root; committing moves a
//! path from the root into the committed window and drops every branch that
//! does not extend the new root.

use std::collections::{HashMap, HashSet, VecDeque};

use palisade_crypto::{BlockInfo, Digest};

use super::{Block, CommittedBlock, QuorumCert};

/// An executed block in the tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeBlock {
    pub(crate) block: Block,
    pub(crate) id: Digest,
    pub(crate) info: BlockInfo,
    /// The uncommitted block (this one or an ancestor) that ended the epoch, if any.
    pub(crate) epoch_end: Option<Digest>,
}

/// What a child needs to know about its parent.
#[derive(Debug, Clone)]
pub(crate) struct ParentView {
    pub(crate) id: Digest,
    pub(crate) round: u64,
    pub(crate) height: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) info_hash: Digest,
    pub(crate) state_root: Digest,
    pub(crate) epoch_end: Option<Digest>,
}

#[derive(Debug, Clone)]
pub(crate) struct BlockTree {
    root_info: BlockInfo,
    root_qc: QuorumCert,
    blocks: HashMap<Digest, TreeBlock>,
    qcs: HashMap<Digest, QuorumCert>,
    high_qc: QuorumCert,
    high_commit: Option<QuorumCert>,
    committed: VecDeque<CommittedBlock>,
    retain: usize,
}

impl BlockTree {
    pub(crate) fn new(root_info: BlockInfo, root_qc: QuorumCert, retain: usize) -> Self {
        BlockTree {
            root_info,
            high_qc: root_qc.clone(),
            root_qc,
            blocks: HashMap::new(),
            qcs: HashMap::new(),
            high_commit: None,
            committed: VecDeque::new(),
            retain: retain.max(1),
        }
    }

    pub(crate) fn root_info(&self) -> &BlockInfo {
        &self.root_info
    }
    pub(crate) fn root_qc(&self) -> &QuorumCert {
        &self.root_qc
    }
    pub(crate) fn high_qc(&self) -> &QuorumCert {
        &self.high_qc
    }
    pub(crate) fn high_commit(&self) -> Option<&QuorumCert> {
        self.high_commit.as_ref()
    }
    pub(crate) fn committed_height(&self) -> u64 {
        self.root_info.height
    }
    /// Round of the root within the current epoch.
    pub(crate) fn root_round(&self) -> u64 {
        self.root_qc.round()
    }
    pub(crate) fn get(&self, id: &Digest) -> Option<&TreeBlock> {
        self.blocks.get(id)
    }
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }
    pub(crate) fn contains(&self, id: &Digest) -> bool {
        *id == self.root_info.block_id || self.blocks.contains_key(id)
    }

    pub(crate) fn parent_view(&self, id: &Digest) -> Option<ParentView> {
        if *id == self.root_info.block_id {
            let r = &self.root_info;
            return Some(ParentView {
                id: *id,
                round: self.root_qc.round(),
                height: r.height,
                timestamp_ms: r.timestamp_ms,
                info_hash: r.hash(),
                state_root: r.state_root,
                epoch_end: None,
            });
        }
        self.blocks.get(id).map(|b| ParentView {
            id: *id,
            round: b.block.round,
            height: b.block.height,
            timestamp_ms: b.block.timestamp_ms,
            info_hash: b.info.hash(),
            state_root: b.block.state_root,
            epoch_end: b.epoch_end,
        })
    }

    /// Add a validated, executed block whose parent is known.
    pub(crate) fn insert(&mut self, block: TreeBlock) {
        let parent_qc = block.block.parent_qc.clone();
        self.blocks.insert(block.id, block);
        self.insert_qc(parent_qc);
    }

    /// Remember a QC whose block is known; returns whether it became the highest.
    pub(crate) fn insert_qc(&mut self, qc: QuorumCert) -> bool {
        if !self.contains(&qc.certified_id()) {
            return false;
        }
        if qc.certified_id() == self.root_info.block_id {
            // A signed QC for the root replaces a local unsigned one, so
            // proposals and timeouts built on the root verify at peers.
            if self.root_qc.is_root() && !qc.is_root() && qc.round() == self.root_qc.round() {
                if self.high_qc == self.root_qc {
                    self.high_qc = qc.clone();
                }
                self.root_qc = qc;
            }
            return false;
        }
        let higher = qc.round() > self.high_qc.round();
        if qc.commit_info().is_some()
            && self
                .high_commit
                .as_ref()
                .is_none_or(|h| h.round() < qc.round())
        {
            self.high_commit = Some(qc.clone());
        }
        if higher {
            self.high_qc = qc.clone();
        }
        self.qcs.entry(qc.certified_id()).or_insert(qc);
        higher
    }

    /// What a vote for a child of `parent` commits under the 2-chain rule:
    /// the parent, or the epoch-ending block the parent descends from.
    pub(crate) fn commit_target(&self, parent: &Digest) -> Option<BlockInfo> {
        let entry = self.blocks.get(parent)?;
        match entry.epoch_end {
            Some(end) if end != *parent => self.blocks.get(&end).map(|b| b.info.clone()),
            _ => Some(entry.info.clone()),
        }
    }

    /// Blocks from just above the root up to `id`, oldest first.
    pub(crate) fn path_to(&self, id: &Digest) -> Option<Vec<Digest>> {
        let mut path = Vec::new();
        let mut cursor = *id;
        while cursor != self.root_info.block_id {
            let b = self.blocks.get(&cursor)?;
            path.push(cursor);
            cursor = b.block.parent_id();
        }
        path.reverse();
        Some(path)
    }

    /// Commit the path up to `target` with `qc`: the path's blocks move to the
    /// committed window, `target` becomes the root, other branches are dropped.
    pub(crate) fn commit(&mut self, target: &Digest, qc: &QuorumCert) -> Vec<CommittedBlock> {
        let Some(path) = self.path_to(target) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(path.len());
        for id in &path {
            let b = self.blocks.remove(id).expect("path blocks are in the tree");
            let entry = CommittedBlock {
                block: b.block,
                info: b.info,
                commit_qc: qc.clone(),
            };
            self.committed.push_back(entry.clone());
            out.push(entry);
        }
        while self.committed.len() > self.retain {
            self.committed.pop_front();
        }
        if let Some(last) = out.last() {
            self.root_info = last.info.clone();
            self.root_qc = match self.qcs.get(target) {
                Some(qc) => qc.clone(),
                // Committed through sync without a child yet: a local root
                // certificate until the real one arrives (see insert_qc).
                None => QuorumCert::root(
                    &self.root_qc.ledger_info.chain_id,
                    self.root_qc.ledger_info.genesis_hash,
                    self.root_qc.epoch(),
                    &self.root_info,
                    self.root_info.round,
                ),
            };
        }
        self.prune();
        out
    }

    /// Keep only descendants of the root, and the QCs of kept blocks.
    fn prune(&mut self) {
        let mut ordered: Vec<(u64, Digest, Digest)> = self
            .blocks
            .values()
            .map(|b| (b.block.height, b.id, b.block.parent_id()))
            .collect();
        ordered.sort();
        let mut alive: HashSet<Digest> = HashSet::from([self.root_info.block_id]);
        for (_, id, parent) in ordered {
            if alive.contains(&parent) {
                alive.insert(id);
            }
        }
        self.blocks.retain(|id, _| alive.contains(id));
        self.qcs.retain(|id, _| alive.contains(id));
        if !alive.contains(&self.high_qc.certified_id()) {
            self.high_qc = self.root_qc.clone();
        }
    }

    /// Start a new epoch at `root_info`, certified by `root_qc`.
    pub(crate) fn reset_epoch(&mut self, root_info: BlockInfo, root_qc: QuorumCert) {
        self.root_info = root_info;
        self.high_qc = root_qc.clone();
        self.root_qc = root_qc;
        self.blocks.clear();
        self.qcs.clear();
        self.high_commit = None;
    }

    /// Record blocks committed before a restart (oldest first), for sync and reputation.
    pub(crate) fn restore_committed(&mut self, committed: &[CommittedBlock]) {
        for c in committed {
            self.committed.push_back(c.clone());
        }
        while self.committed.len() > self.retain {
            self.committed.pop_front();
        }
    }

    /// After a restart: the QC that committed the root (verified by the
    /// caller) is the highest commit QC again.
    pub(crate) fn restore_high_commit(&mut self, qc: QuorumCert) {
        if qc.commit_info() == Some(&self.root_info)
            && self
                .high_commit
                .as_ref()
                .is_none_or(|h| h.round() < qc.round())
        {
            self.high_commit = Some(qc);
        }
    }

    /// `id` and up to `max - 1` ancestors of its epoch, newest first, from
    /// the tree and the committed window.
    pub(crate) fn chain_back(&self, id: &Digest, max: usize) -> Vec<Block> {
        let mut out: Vec<Block> = Vec::new();
        let mut cursor = *id;
        while out.len() < max {
            let block = if let Some(b) = self.blocks.get(&cursor) {
                &b.block
            } else if let Some(c) = self
                .committed
                .iter()
                .rev()
                .find(|c| c.info.block_id == cursor)
            {
                &c.block
            } else {
                break;
            };
            if out.first().is_some_and(|first| first.epoch != block.epoch) {
                break;
            }
            cursor = block.parent_id();
            out.push(block.clone());
        }
        out
    }

    /// Committed blocks from `height`, at most about `max`, never crossing an
    /// epoch end, with a QC that commits the last one.
    pub(crate) fn committed_from(
        &self,
        height: u64,
        max: usize,
    ) -> Option<(Vec<Block>, QuorumCert)> {
        let start = self
            .committed
            .iter()
            .position(|c| c.info.height == height)?;
        let first_epoch = self.committed[start].block.epoch;
        let mut blocks = Vec::new();
        let mut qc = None;
        for c in self.committed.iter().skip(start) {
            if c.block.epoch != first_epoch {
                break;
            }
            let commits_this =
                c.commit_qc.commit_info().map(|i| i.block_id) == Some(c.info.block_id);
            blocks.push(c.block.clone());
            if commits_this {
                qc = Some(c.commit_qc.clone());
                if blocks.len() >= max || c.info.next_validators.is_some() {
                    break;
                }
            }
        }
        let qc = qc?;
        // Drop blocks after the last one the QC commits.
        let last = qc.commit_info()?.height;
        blocks.retain(|b| b.height <= last);
        Some((blocks, qc))
    }
}
